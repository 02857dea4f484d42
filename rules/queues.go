package rules

import (
	"fmt"

	"github.com/tcpvet/tcpvet/diag"
)

func zeroWindow(c conn) *Finding {
	s := c.Socket
	persist := s.Timer.Kind == diag.TimerPersist
	closed := s.TCPInfo != nil && s.TCPInfo.Size >= 232 && s.TCPInfo.SndWnd == 0 && s.SendQ > 0 && s.State == diag.Established
	if !persist && !closed {
		return nil
	}
	return &Finding{
		Rule:     RuleZeroWindow,
		Severity: Warning,
		Summary: fmt.Sprintf("%s: the peer's receive window is closed, so its application is not reading; %d bytes wait here and writes block (%s so far)",
			ends(s), s.SendQ, plural(int(s.Timer.Retrans), "window probe")),
		Evidence: Evidence{QueueEvidence: &QueueEvidence{SendQ: s.SendQ, WindowProbes: s.Timer.Retrans, Timer: s.Timer.Kind.String()}},
		Fix: append([]Fix{{Where: "the peer", Snippet: fmt.Sprintf("find why the process behind %s stopped reading (stuck thread, full downstream, deadlock)", s.Remote)}},
			userTimeoutFixes(suggestedUserTimeout, c.snap.Target.Sysctls)[:2]...),
	}
}

func closeWait(c conn) *Finding {
	s := c.Socket
	if s.State != diag.CloseWait {
		return nil
	}
	return &Finding{
		Rule:     RuleCloseWait,
		Severity: Warning,
		Summary:  fmt.Sprintf("%s: the peer closed this connection and the local application never did; each one leaks a descriptor", ends(s)),
		Evidence: Evidence{QueueEvidence: &QueueEvidence{RecvQ: s.RecvQ, Processes: s.Processes}},
		Fix:      []Fix{{Where: "the application", Snippet: "close the socket when a read returns 0 / io.EOF, and on every error path (defer conn.Close())"}},
	}
}

func recvBacklog(c conn) *Finding {
	s := c.Socket
	unread := s.RecvQ
	if finReceived(s.State) && unread > 0 {
		// The receive queue counts the peer's FIN as one byte until the
		// application reads the end of the stream: that is close-wait's
		// business, not data.
		unread--
	}
	if s.State == diag.Listen || unread == 0 || s.TCPInfo == nil ||
		s.TCPInfo.SinceDataRecv() < unreadFor {
		return nil
	}
	age := s.TCPInfo.SinceDataRecv()
	verb := "have"
	if unread == 1 {
		verb = "has"
	}
	return &Finding{
		Rule:     RuleRecvBacklog,
		Severity: Warning,
		Summary:  fmt.Sprintf("%s: %s of data %s arrived and sat unread for at least %s: the local application is not reading", ends(s), plural(int(unread), "byte"), verb, human(age)),
		Evidence: Evidence{QueueEvidence: &QueueEvidence{RecvQ: s.RecvQ, LastDataRecvMS: s.TCPInfo.LastDataRecvMS, Processes: s.Processes}},
		Fix:      []Fix{{Where: "the application", Snippet: "find the reader that stopped: a blocked goroutine or thread, a full channel, a lock (kill -QUIT a Go process for its stacks)"}},
	}
}

func listenOverflow(c conn) *Finding {
	s := c.Socket
	if s.State != diag.Listen || s.SendQ == 0 || s.RecvQ < s.SendQ {
		return nil
	}
	return &Finding{
		Rule:     RuleListenOverflow,
		Severity: Critical,
		Failing:  FailingNow,
		Summary:  fmt.Sprintf("listener %s%s: its accept queue is full (%d of %d): new connections are dropped or time out", s.Local, who(s), s.RecvQ, s.SendQ),
		Evidence: Evidence{QueueEvidence: &QueueEvidence{AcceptQueue: s.RecvQ, Backlog: s.SendQ}},
		Fix: []Fix{
			{Where: "the application", Snippet: "accept faster (the accept loop is blocked or too slow), or pass a larger backlog to listen()"},
			{Where: "namespace sysctl", Snippet: "net.core.somaxconn caps the backlog listen() may ask for"},
		},
	}
}

// finReceived reports whether a socket in state st has received its
// peer's FIN.
func finReceived(st diag.State) bool {
	switch st {
	case diag.CloseWait, diag.LastAck, diag.Closing, diag.TimeWait:
		return true
	}
	return false
}

package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcpvet/tcpvet/diag"
	"github.com/tcpvet/tcpvet/internal/testnet"
	"github.com/tcpvet/tcpvet/rules"
)

// grpcPeer builds internal/testnet/grpcpeer into dir.
func grpcPeer(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "grpcpeer")
	if out, err := exec.Command("go", "build", "-o", bin, "./internal/testnet/grpcpeer").CombinedOutput(); err != nil {
		t.Fatalf("go build grpcpeer: %v\n%s", err, out)
	}
	return bin
}

// selfSigned writes a self-signed certificate for the name "grpcpeer" and
// its key into dir.
func selfSigned(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "grpcpeer"}, DNSNames: []string{"grpcpeer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// startPeer runs bin with args inside ns and returns what it printed after
// "ready"; the process is stopped when the test ends.
func startPeer(t *testing.T, ns *testnet.NS, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name, bin}, args...)...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Scan()
		line <- sc.Text()
		for sc.Scan() {
		}
	}()
	select {
	case l := <-line:
		ready, ok := strings.CutPrefix(l, "ready ")
		if !ok {
			t.Fatalf("grpcpeer %v: %q, want ready", args, l)
		}
		return ready
	case <-time.After(15 * time.Second):
		t.Fatalf("grpcpeer %v: not ready", args)
	}
	return ""
}

// TestWatchSeesGRPCPings runs real grpc-go clients against a grpc-go
// server, over h2c and over TLS, each with keepalive pings every 10 s or
// none, and SO_KEEPALIVE on with the system's 7200 s as grpc-go sets it.
// Judged against a load balancer that resets flows idle 30 s, one snapshot
// calls all four critical; a 25 s watch must find the pings, time them
// within 10%, and leave critical only the connections without them.
func TestWatchSeesGRPCPings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := grpcPeer(t, dir)
	cert, key := selfSigned(t, dir)
	client, server := testnet.New(t), testnet.New(t)
	_, sAddr := testnet.Link(t, client, server, 4)
	// Go's own keepalive on accepted connections (15 s) would refresh
	// every flow from the server's end, pings or not: turn it off, as a
	// server in most other languages has it.
	startPeer(t, server, bin, "server", "-listen", ":7080", "-tcp-keepalive", "-1s")
	startPeer(t, server, bin, "server", "-listen", ":7443", "-cert", cert, "-key", key, "-tcp-keepalive", "-1s")
	h2c, tlsAddr := sAddr.V4+":7080", sAddr.V4+":7443"
	type variant struct {
		pings, tls bool
		local      string
	}
	variants := map[string]*variant{
		"h2c pings": {pings: true}, "h2c no pings": {},
		"tls pings": {pings: true, tls: true}, "tls no pings": {tls: true},
	}
	for _, v := range variants {
		args := []string{"client", "-to", h2c}
		if v.tls {
			args = []string{"client", "-to", tlsAddr, "-ca", cert}
		}
		if v.pings {
			args = append(args, "-ping", "10s")
		}
		v.local = startPeer(t, client, bin, args...)
	}

	// The connections' first exchanges (TLS 1.3 session tickets, HTTP/2
	// settings and their acknowledgements) are over before the watch: a
	// loaded machine may otherwise delay one into it, and a connection
	// silent since would read as refreshed by data.
	time.Sleep(2 * time.Second)
	r := watchReport(t, 25*time.Second, "--netns", client.Path, "--host-netns", client.Path, "--middlebox", "lb=30s,reset")
	found := findingsFor(r)
	for name, v := range variants {
		t.Run(name, func(t *testing.T) {
			s := socketAt(r, v.local)
			if s == nil || s.Observed == nil {
				t.Fatalf("socket %s: %v, want it observed", v.local, s)
			}
			o := s.Observed
			t.Logf("observed %+v pings %+v; tcp_info segs out/in %d/%d, data segs out/in %d/%d, bytes sent/received %d/%d",
				*o, o.Pings, s.TCPInfo.SegsOut, s.TCPInfo.SegsIn, s.TCPInfo.DataSegsOut, s.TCPInfo.DataSegsIn, s.TCPInfo.BytesSent, s.TCPInfo.BytesReceived)
			critical := false
			for _, f := range found[v.local] {
				t.Logf("%s %s: %s", f.Severity, f.Rule, f.Summary)
				critical = critical || f.Severity == rules.Critical
			}
			if s.Keepalive.Enabled == nil || !*s.Keepalive.Enabled {
				t.Errorf("keepalive %+v, want SO_KEEPALIVE on, as grpc-go sets it", s.Keepalive)
			}
			if !v.pings {
				if o.RefreshedBy != diag.RefreshedByNone || !critical || !hasRule(found[v.local], rules.RuleKeepaliveTooSlow) {
					t.Errorf("refreshed by %q, critical %v: want nothing seen, and keepalive-too-slow critical", o.RefreshedBy, critical)
				}
				return
			}
			p := o.Pings
			if o.RefreshedBy != diag.RefreshedByAppPings || p == nil {
				t.Fatalf("refreshed by %q, want app-pings", o.RefreshedBy)
			}
			size := p.SizeBytes == 17
			if v.tls {
				size = p.SizeBytes >= 39 && p.SizeBytes <= 46
			}
			if !size || math.Abs(p.PeriodS-10) > 1 || p.Count < 2 {
				t.Errorf("pings %+v, want HTTP/2 PINGs every 10 s", *p)
			}
			if critical || !hasRule(found[v.local], rules.RuleKeepaliveTooSlow) {
				t.Errorf("critical %v: want keepalive-too-slow as information, saying what keeps it alive", critical)
			}
		})
	}
}

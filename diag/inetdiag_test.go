package diag

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The golden files are inet_diag replies captured from Linux 6.18 by
// TestCaptureGolden; the expected values are what ss showed for them.
func TestDecodeDiagMsgGolden(t *testing.T) {
	tests := []struct {
		file string
		want rawSocket
		info *TCPInfo // checked field by field where set
	}{
		{
			file: "listen6.bin",
			want: rawSocket{
				Family: 10, State: Listen, Timer: TimerOff,
				Local:  netip.MustParseAddrPort("[::]:8001"),
				Remote: netip.MustParseAddrPort("[::]:0"),
				Cookie: 4146, SendQ: 4096, Inode: 13437, Cong: "bbr",
			},
			info: &TCPInfo{Size: 280, State: 10, Sacked: 4096, SndCwnd: 10, Reordering: 3,
				PacingRate: ^uint64(0), MaxPacingRate: ^uint64(0)},
		},
		{
			file: "established6.bin",
			want: rawSocket{
				Family: 10, State: Established, Timer: TimerKeepalive, Expires: 600000,
				Local:  netip.MustParseAddrPort("[fd00:7c:9::1]:37714"),
				Remote: netip.MustParseAddrPort("[fd00:7c:9::2]:7001"),
				Cookie: 4147, Inode: 13441, Cong: "bbr",
			},
			info: &TCPInfo{Size: 280, State: 1, Options: 7, SndWscale: 10, RcvWscale: 10,
				RTOUs: 3092000, SndMSS: 1428, RcvMSS: 536, PMTU: 1500, RcvSsthresh: 64108,
				RTTUs: 1029578, RTTVarUs: 514789, SndSsthresh: 2147483647, SndCwnd: 10, AdvMSS: 1428,
				Reordering: 3, RcvSpace: 14280, PacingRate: 39406, MaxPacingRate: ^uint64(0),
				BytesAcked: 1, SegsOut: 2, SegsIn: 1, MinRTTUs: 1029578, Delivered: 1,
				SndWnd: 64260, RcvWnd: 65536, Rehash: 1, TotalRTO: 1, TotalRTORecoveries: 1},
		},
		{
			file: "timewait4.bin",
			want: rawSocket{
				Family: 2, State: TimeWait, Timer: TimerTimeWait, Expires: 60000,
				Local:  netip.MustParseAddrPort("198.18.9.1:41230"),
				Remote: netip.MustParseAddrPort("198.18.9.2:7001"),
				Cookie: 4145,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := decodeDiagMsg(readGolden(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			tt.want.Info = tt.info
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("decode (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeDiagMsgRejectsShortAndForeign(t *testing.T) {
	good := readGolden(t, "established6.bin")
	if _, err := decodeDiagMsg(good[:inetDiagMsgLen-1]); !errors.Is(err, errShortMessage) {
		t.Errorf("short header: err = %v, want errShortMessage", err)
	}
	foreign := bytes.Clone(good)
	foreign[0] = 1 // AF_UNIX
	if _, err := decodeDiagMsg(foreign); err == nil {
		t.Error("AF_UNIX reply decoded without error")
	}
	// A truncated attribute must be an error, not a silent half-decode.
	if _, err := decodeDiagMsg(good[:len(good)-3]); err == nil {
		t.Error("truncated attributes decoded without error")
	}
}

// TestDecodeTCPInfoAnyLength feeds the captured tcp_info cut to the sizes
// older kernels sent, and padded as a newer kernel might send it.
func TestDecodeTCPInfoAnyLength(t *testing.T) {
	full, err := decodeDiagMsg(readGolden(t, "established6.bin"))
	if err != nil {
		t.Fatal(err)
	}
	raw := tcpInfoBytes(t, readGolden(t, "established6.bin"))
	tests := []struct {
		name string
		size int
		want func(TCPInfo) TCPInfo
	}{
		{"4.2 (up to segs_in)", 144, func(i TCPInfo) TCPInfo {
			return TCPInfo{Size: 144, State: i.State, Options: i.Options, SndWscale: i.SndWscale, RcvWscale: i.RcvWscale,
				RTOUs: i.RTOUs, SndMSS: i.SndMSS, RcvMSS: i.RcvMSS, PMTU: i.PMTU, RcvSsthresh: i.RcvSsthresh, RTTUs: i.RTTUs,
				RTTVarUs: i.RTTVarUs, SndSsthresh: i.SndSsthresh, SndCwnd: i.SndCwnd, AdvMSS: i.AdvMSS, Reordering: i.Reordering,
				RcvSpace: i.RcvSpace, PacingRate: i.PacingRate, MaxPacingRate: i.MaxPacingRate, BytesAcked: i.BytesAcked,
				SegsOut: i.SegsOut, SegsIn: i.SegsIn}
		}},
		{"3.x (up to total_retrans)", 104, func(i TCPInfo) TCPInfo {
			return TCPInfo{Size: 104, State: i.State, Options: i.Options, SndWscale: i.SndWscale, RcvWscale: i.RcvWscale,
				RTOUs: i.RTOUs, SndMSS: i.SndMSS, RcvMSS: i.RcvMSS, PMTU: i.PMTU, RcvSsthresh: i.RcvSsthresh, RTTUs: i.RTTUs,
				RTTVarUs: i.RTTVarUs, SndSsthresh: i.SndSsthresh, SndCwnd: i.SndCwnd, AdvMSS: i.AdvMSS, Reordering: i.Reordering,
				RcvSpace: i.RcvSpace}
		}},
		{"field cut in half", 10, func(i TCPInfo) TCPInfo {
			return TCPInfo{Size: 10, State: i.State, Options: i.Options, SndWscale: i.SndWscale, RcvWscale: i.RcvWscale}
		}},
		{"empty", 0, func(TCPInfo) TCPInfo { return TCPInfo{} }},
		{"this kernel", len(raw), func(i TCPInfo) TCPInfo { return i }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want(*full.Info), decodeTCPInfo(raw[:tt.size])); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	t.Run("newer kernel, longer struct", func(t *testing.T) {
		longer := append(bytes.Clone(raw), bytes.Repeat([]byte{0xff}, 64)...)
		got := decodeTCPInfo(longer)
		want := *full.Info
		want.Size = len(longer)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}

// tcpInfoBytes finds the INET_DIAG_INFO payload in a captured reply.
func tcpInfoBytes(t testing.TB, msg []byte) []byte {
	t.Helper()
	b := msg[inetDiagMsgLen:]
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b))
		if binary.NativeEndian.Uint16(b[2:]) == attrInfo {
			return b[4:l]
		}
		b = b[(l+3)&^3:]
	}
	t.Fatal("no INET_DIAG_INFO in golden reply")
	return nil
}

// TestDiagRequestBytes pins the request to the bytes the kernel expects
// for inet_diag_req_v2 (what ss -tanoi sends, plus the class id).
func TestDiagRequestBytes(t *testing.T) {
	m := diagRequest(10)
	want := []byte{
		10, 6, 1<<1 | 1<<3 | 1<<5, 0, // AF_INET6, IPPROTO_TCP, INFO|CONG|TCLASS, pad
		0xff, 0xff, 0xff, 0xff, // every state
		0, 0, 0, 0, // ports
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // src
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // dst
		0, 0, 0, 0, // ifindex
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // no cookie
	}
	if !bytes.Equal(m.Data, want) {
		t.Errorf("request = %v\nwant      %v", m.Data, want)
	}
	if m.Header.Type != sockDiagByFamily || m.Header.Flags != 0x301 {
		t.Errorf("header = %+v, want SOCK_DIAG_BY_FAMILY with REQUEST|DUMP", m.Header)
	}
}

// TestBothFamiliesRequestBytes pins the older request to struct
// inet_diag_req: family, prefix lengths, extensions, the socket id, then
// the states.
func TestBothFamiliesRequestBytes(t *testing.T) {
	m := bothFamiliesRequest()
	want := []byte{
		0, 0, 0, 1<<1 | 1<<3 | 1<<5, // AF_UNSPEC, no prefixes, INFO|CONG|TCLASS
		0, 0, 0, 0, // ports
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // src
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // dst
		0, 0, 0, 0, // ifindex
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // no cookie
		0xff, 0xff, 0xff, 0xff, // every state
		0, 0, 0, 0, // dbs
	}
	if !bytes.Equal(m.Data, want) {
		t.Errorf("request = %v\nwant      %v", m.Data, want)
	}
	if m.Header.Type != 18 || m.Header.Flags != 0x301 {
		t.Errorf("header = %+v, want TCPDIAG_GETSOCK with REQUEST|DUMP", m.Header)
	}
}

func FuzzDecodeDiagMsg(f *testing.F) {
	for _, name := range []string{"listen6.bin", "established6.bin", "timewait4.bin"} {
		f.Add(readGolden(f, name))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeDiagMsg(b)
		if err != nil {
			return
		}
		if s.Info != nil && s.Info.Size > len(b) {
			t.Errorf("tcp_info of %d bytes from a %d-byte message", s.Info.Size, len(b))
		}
	})
}

func FuzzDecodeTCPInfo(f *testing.F) {
	f.Add(tcpInfoBytes(f, readGolden(f, "established6.bin")))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		if got := decodeTCPInfo(b); got.Size != len(b) {
			t.Errorf("Size = %d, want %d", got.Size, len(b))
		}
	})
}

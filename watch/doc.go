// Package watch follows a namespace's connections over time: it takes a
// snapshot every interval and, from how each socket's tcp_info counters
// move between samples, tells what keeps its flow alive on the path —
// the application's data, its pings, TCP keepalive probes, or nothing —
// and how long it was seen quiet.
//
// The kernel's counters say which is which (net/ipv4/tcp_output.c,
// __tcp_transmit_skb): every segment sent counts in segs_out, and only a
// segment with payload also counts in data_segs_out and bytes_sent and
// moves last_data_sent. A keepalive probe (tcp_write_wakeup with nothing
// to send, tcp_xmit_probe_skb) carries no payload and the sequence number
// snd_una-1: it moves segs_out alone. Its answer is a bare ACK: segs_in
// moves, data_segs_in does not, and tcp_ack stamps last_ack_recv. A
// peer's probe arrives below rcv_nxt, is dropped before tcp_ack with a
// duplicate ACK in reply: segs_in and segs_out move, last_ack_recv does
// not. An application ping moves data_segs and bytes both ways by the same
// small amount, again and again.
package watch

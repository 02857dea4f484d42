// Package testnet builds throwaway network namespaces, veth links and
// processes holding real TCP connections inside them, for tcpvet's tests.
//
// Every namespace, link and process is removed when the test ends, even when
// it fails. Addresses are taken from 198.18.0.0/15 and fd00:7c::/64 and live
// only inside namespaces the test created.
package testnet

// Package metrics exports what tcpvet's latest sweep found to Prometheus.
//
// A [Collector] holds one [node.Sweep] at a time and turns it into counts per
// namespace at scrape time: findings by rule and severity, sockets by TCP
// state. It never emits one series per connection, so the number of series
// grows with the pods on a node, not with their traffic, and its labels
// carry only names, UIDs and namespace inodes, never addresses or ports.
//
// [Run] is the exporter around it: a background loop that sweeps every
// interval and an HTTP server for /metrics and /healthz that only ever reads
// the last completed sweep, so a slow sweep never holds up a scrape.
package metrics

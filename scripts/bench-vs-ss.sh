#!/usr/bin/env bash
# Times `tcpvet --json` against `ss -tan` (the goal: within 2x) and
# `ss -tanoiep` (which also finds owners and reads tcp_info) on one namespace holding about
# SOCKETS (default 40000) idle loopback TCP sockets. Needs root.
#   scripts/bench-vs-ss.sh [SOCKETS] [RUNS]
set -euo pipefail
sockets=${1:-40000}
runs=${2:-5}
cd "$(dirname "$0")/.."

work=$(mktemp -d)
ns=tcpvet-bench-$$
cleanup() {
  exec 3>&- 2>/dev/null || true
  ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/tcpvet" .
go build -o "$work/sockfarm" ./internal/cmd/sockfarm
ip netns add "$ns"
ip -n "$ns" link set lo up

mkfifo "$work/ctl"
ip netns exec "$ns" "$work/sockfarm" -sockets "$sockets" <"$work/ctl" >"$work/farm.out" &
exec 3>"$work/ctl"
for _ in $(seq 300); do grep -q ready "$work/farm.out" 2>/dev/null && break; sleep 0.2; done
grep -q ready "$work/farm.out" || { echo "sockfarm did not get ready" >&2; exit 1; }

count=$(ip netns exec "$ns" ss -Htan 2>/dev/null | wc -l)
echo "namespace $ns: $count TCP sockets, $runs runs each"

# measure CMD...: the median wall time of $runs runs, in milliseconds.
measure() {
  local times=() start
  for _ in $(seq "$runs"); do
    start=$(date +%s%N)
    "$@" >/dev/null 2>&1
    times+=($(( ($(date +%s%N) - start) / 1000000 )))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}
t_tcpvet=$(measure "$work/tcpvet" --json --netns "/run/netns/$ns")
t_tan=$(measure ip netns exec "$ns" ss -tan)
t_ss=$(measure ip netns exec "$ns" ss -tanoiep)
echo "tcpvet --json:  ${t_tcpvet} ms (median)"
echo "ss -tan:        ${t_tan} ms (median)"
echo "ss -tanoiep:    ${t_ss} ms (median)"
if [ -x /usr/bin/time ]; then
  rss=$(/usr/bin/time -f %M "$work/tcpvet" --json --netns "/run/netns/$ns" 2>&1 >/dev/null | tail -1)
  echo "tcpvet --json peak RSS: $((rss / 1024)) MiB"
fi

#!/usr/bin/env bash
# Times `tcpvet --json` against `ss -tan` (the goal: within 2x), `ss -tanp`
# (which finds each socket's owners as tcpvet does, by reading every
# descriptor link under /proc) and `ss -tanoiep` (owners and tcp_info) on
# one namespace holding about SOCKETS (default 40000) idle loopback TCP
# sockets. Needs root.
#   scripts/bench-vs-ss.sh [SOCKETS] [RUNS]
# BASELINE=path/to/an/older/tcpvet also times that binary in the same rounds,
# for a before-and-after on the same sockets and the same load.
set -euo pipefail
sockets=${1:-40000}
runs=${2:-5}
cd "$(dirname "$0")/.."

. scripts/farm.sh
work=$(mktemp -d)
ns=tcpvet-bench-$$
cleanup() {
  farm_stop "$ns"
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/tcpvet" .
farm_start "$ns" "$sockets" "$work"

count=$(ip netns exec "$ns" ss -Htan 2>/dev/null | wc -l)
echo "namespace $ns: $count TCP sockets, $runs runs each"

# Each round runs every command once, in turn, so that a machine busy for a
# while slows them alike; each figure is the median of $runs rounds.
# time_ms CMD...: one run's wall time in milliseconds.
time_ms() {
  local start
  start=$(date +%s%N)
  "$@" >/dev/null 2>&1
  echo $(( ($(date +%s%N) - start) / 1000000 ))
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
tcpvet=("$work/tcpvet" --json --netns "/run/netns/$ns")
tan=(ip netns exec "$ns" ss -tan)
owners=(ip netns exec "$ns" ss -tanp)
full=(ip netns exec "$ns" ss -tanoiep)
: >"$work/t.tcpvet"; : >"$work/t.tan"; : >"$work/t.owners"; : >"$work/t.full"; : >"$work/t.base"
for _ in $(seq "$runs"); do
  if [ -n "${BASELINE:-}" ]; then time_ms "$BASELINE" --json --netns "/run/netns/$ns" >>"$work/t.base"; fi
  time_ms "${tcpvet[@]}" >>"$work/t.tcpvet"
  time_ms "${tan[@]}" >>"$work/t.tan"
  time_ms "${owners[@]}" >>"$work/t.owners"
  time_ms "${full[@]}" >>"$work/t.full"
done
t_tcpvet=$(median <"$work/t.tcpvet")
t_tan=$(median <"$work/t.tan")
t_ss=$(median <"$work/t.full")
echo "tcpvet --json:  ${t_tcpvet} ms (median; runs: $(tr '\n' ' ' <"$work/t.tcpvet"))"
echo "ss -tan:        ${t_tan} ms (median; runs: $(tr '\n' ' ' <"$work/t.tan"))"
echo "ss -tanp:       $(median <"$work/t.owners") ms (median)"
echo "ss -tanoiep:    ${t_ss} ms (median)"
if [ -n "${BASELINE:-}" ]; then
  t_base=$(median <"$work/t.base")
  echo "baseline:       ${t_base} ms (median; runs: $(tr '\n' ' ' <"$work/t.base"))"
  awk -v a="$t_base" -v b="$t_tan" 'BEGIN {printf "ratio baseline / ss -tan: %.2f\n", a / b}'
fi
awk -v a="$t_tcpvet" -v b="$t_tan" 'BEGIN {printf "ratio tcpvet --json / ss -tan: %.2f (goal: at most 2.0)\n", a / b}'
if [ -x /usr/bin/time ]; then
  rss=0
  for _ in $(seq "$runs"); do
    r=$(/usr/bin/time -f %M "${tcpvet[@]}" 2>&1 >/dev/null | tail -1)
    [ "$r" -gt "$rss" ] && rss=$r
  done
  echo "tcpvet --json peak RSS: $((rss / 1024)) MiB (the largest of $runs runs; goal: at most 64 MiB)"
fi

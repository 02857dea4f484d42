#!/usr/bin/env bash
# Runs the live view (tcpvet with no --json, in a 160x40 tmux) for SECONDS
# (default 20) on one namespace holding about SOCKETS (default 40000) idle
# loopback TCP sockets, refreshing every second, and prints its resident
# memory every 2 s and its peak (VmHWM; the goal: under 100 MiB). Needs root
# and tmux.
#   scripts/bench-liveview.sh [SOCKETS] [SECONDS]
# BASELINE=path/to/an/older/tcpvet measures that binary afterwards, on the
# same sockets; ENV="GOGC=50" (say) sets the Go runtime's knobs for both.
set -euo pipefail
sockets=${1:-40000}
seconds=${2:-20}
cd "$(dirname "$0")/.."

. scripts/farm.sh
work=$(mktemp -d)
ns=tcpvet-liveview-$$
session=tcpvet-liveview-$$
cleanup() {
  tmux kill-session -t "$session" 2>/dev/null || true
  farm_stop "$ns"
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/tcpvet" .
farm_start "$ns" "$sockets" "$work"
echo "namespace $ns: $(ip netns exec "$ns" ss -Htan 2>/dev/null | wc -l) TCP sockets"

# measure NAME BINARY: the live view of BINARY for $seconds.
measure() {
  local name=$1 bin=$2 pid="" line
  tmux new-session -d -s "$session" -x 160 -y 40 \
    "TERM=xterm-256color ${ENV:-} $bin --netns /run/netns/$ns --interval 1s"
  for _ in $(seq 100); do
    pid=$(pgrep -f -n "^$bin --netns /run/netns/$ns" || true)
    [ -n "$pid" ] && break
    sleep 0.1
  done
  [ -n "$pid" ] || { echo "$name: the view did not start" >&2; exit 1; }
  line="$name RSS MiB:"
  local tick cpu0 cpu1
  tick=$(getconf CLK_TCK)
  cpu0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  for _ in $(seq $((seconds / 2))); do
    sleep 2
    [ -r "/proc/$pid/status" ] || { echo "$name: the view exited" >&2; tmux capture-pane -p -t "$session" >&2 || true; exit 1; }
    line+=" $(awk '/^VmRSS/ {print int($2 / 1024)}' "/proc/$pid/status")"
  done
  cpu1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  echo "$line"
  awk -v n="$name" -v c=$((cpu1 - cpu0)) -v t="$tick" -v s="$seconds" \
    'BEGIN {printf "%s CPU: %.0f%% of one core over the last %d s\n", n, 100 * c / t / s, s}'
  awk -v n="$name" '/^VmHWM/ {printf "%s peak RSS: %d MiB (goal: under 100 MiB)\n", n, $2 / 1024}' "/proc/$pid/status"
  tmux capture-pane -p -t "$session" | grep -m1 -o 'taken [0-9:]*' | sed "s/^/$name screen: /" || true
  tmux kill-session -t "$session"
}
measure tcpvet "$work/tcpvet"
if [ -n "${BASELINE:-}" ]; then measure baseline "$BASELINE"; fi

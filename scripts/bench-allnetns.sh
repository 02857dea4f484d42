#!/usr/bin/env bash
# Times `tcpvet --all-netns --json` against `nsenter --net=/run/netns/NS ss -tanoie`
# run over every namespace (the goal: at most half its time), on NAMESPACES
# (default 100) namespaces each holding about SOCKETS (default 200) idle
# loopback TCP sockets: the median of RUNS (default 5) alternating runs,
# then tcpvet's peak RSS. Needs root.
#   scripts/bench-allnetns.sh [NAMESPACES] [SOCKETS] [RUNS]
# With TCPVET_BENCH_CMD set, it runs that shell command against the
# namespaces instead (the binary is $TCPVET), e.g. to profile.
#
# It runs in PID and mount namespaces of its own, with its own /run/netns,
# so that the sweep sees the benchmark's namespaces and no one else's: the
# machine's other processes and namespaces are out of its sight, and
# nothing it makes outlives it.
set -euo pipefail
count=${1:-100}
sockets=${2:-200}
runs=${3:-5}
cd "$(dirname "$0")/.."

if [ -z "${TCPVET_BENCH_ISOLATED:-}" ]; then
  export TCPVET_BENCH_ISOLATED=1
  exec unshare --pid --fork --kill-child --mount-proc --propagation private "$0" "$@"
fi

work=$(mktemp -d)
# A private /run/netns: `ip netns add` binds here, in this mount namespace alone.
mkdir -p /run/netns
mount -t tmpfs tcpvet-bench /run/netns
names=()
cleanup() {
  exec 3>&- 2>/dev/null || true
  for ns in "${names[@]}"; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  umount /run/netns 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/tcpvet" .
go build -o "$work/sockfarm" ./internal/cmd/sockfarm

mkfifo "$work/ctl"
for i in $(seq "$count"); do
  ns=bench$i
  ip netns add "$ns"
  names+=("$ns")
  ip -n "$ns" link set lo up
  ip netns exec "$ns" "$work/sockfarm" -sockets "$sockets" <"$work/ctl" >"$work/farm$i.out" &
done
# Every farm holds its sockets until this end of the pipe closes.
exec 3>"$work/ctl"
for i in $(seq "$count"); do
  for _ in $(seq 300); do grep -q ready "$work/farm$i.out" 2>/dev/null && break; sleep 0.1; done
  grep -q ready "$work/farm$i.out" || { echo "sockfarm $i did not get ready" >&2; exit 1; }
done

total=0
for ns in "${names[@]}"; do
  total=$((total + $(nsenter --net="/run/netns/$ns" ss -Htan | wc -l)))
done
found=$("$work/tcpvet" --all-netns --json | grep -o '"netns_inode":' | wc -l)
echo "$count namespaces, $total TCP sockets in them; the sweep lists $((found - 1)) namespaces (theirs and this shell's); $runs runs each"

if [ -n "${TCPVET_BENCH_CMD:-}" ]; then
  # Profiling: run this command against the namespaces instead of timing.
  TCPVET="$work/tcpvet" sh -c "$TCPVET_BENCH_CMD"
  exit
fi

ss_all() {
  for ns in "${names[@]}"; do nsenter --net="/run/netns/$ns" ss -tanoie; done
}
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
t_tcpvet=() t_ss=()
for _ in $(seq "$runs"); do
  start=$(date +%s%N); "$work/tcpvet" --all-netns --json >/dev/null 2>"$work/err" || { echo "tcpvet --all-netns failed: $(cat "$work/err")" >&2; exit 1; }; t_tcpvet+=("$(ms "$start")")
  start=$(date +%s%N); ss_all >/dev/null 2>&1; t_ss+=("$(ms "$start")")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
m_tcpvet=$(median "${t_tcpvet[@]}")
m_ss=$(median "${t_ss[@]}")
echo "tcpvet --all-netns --json:      ${m_tcpvet} ms (median; runs ${t_tcpvet[*]})"
echo "nsenter ss -tanoie, every ns:   ${m_ss} ms (median; runs ${t_ss[*]})"
awk -v a="$m_tcpvet" -v b="$m_ss" 'BEGIN { if (b > 0) printf "ratio: %.2f (goal: at most 0.50)\n", a / b }'
if [ -x /usr/bin/time ]; then
  out=$(/usr/bin/time -f '%e %M' "$work/tcpvet" --all-netns --json 2>&1 >/dev/null | tail -1)
  echo "tcpvet --all-netns --json: ${out% *} s wall, peak RSS $(( ${out#* } / 1024 )) MiB"
fi

# Sourced by the benchmark scripts: one namespace of idle loopback TCP
# sockets, held by internal/cmd/sockfarm.
#   farm_start NS SOCKETS WORK  builds sockfarm into WORK, makes NS with lo
#                               up and fills it; returns once it is ready
#   farm_stop NS                ends the farm and removes NS (for a trap)

farm_start() {
  local ns=$1 sockets=$2 work=$3
  go build -o "$work/sockfarm" ./internal/cmd/sockfarm
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  mkfifo "$work/ctl"
  ip netns exec "$ns" "$work/sockfarm" -sockets "$sockets" <"$work/ctl" >"$work/farm.out" &
  # The farm holds its sockets until its stdin closes: fd 3, until farm_stop.
  exec 3>"$work/ctl"
  for _ in $(seq 300); do grep -q ready "$work/farm.out" 2>/dev/null && break; sleep 0.2; done
  grep -q ready "$work/farm.out" || { echo "sockfarm did not get ready" >&2; return 1; }
}

farm_stop() {
  local ns=$1
  exec 3>&- 2>/dev/null || true
  ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
}

#!/usr/bin/env bash
# Runs go test with the arguments given, the test binaries as root: the kernel
# tests build network namespaces. For a user only the test binaries go through
# sudo, so the build cache, the checkout and everything else stay the user's.
#
# The tests run with a temporary directory of their own, removed afterwards
# whatever happened: some leave files in TMPDIR (cli_test.go's binary), tmux
# puts its server's socket under TMUX_TMPDIR, and nstat (hardening_test.go)
# keeps its history in /tmp/.nstat.u<uid> unless NSTAT_HISTORY says where.
set -euo pipefail

sudo=
[ "$(id -u)" -eq 0 ] || sudo=sudo
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tcpvet-test.XXXXXX")
trap '$sudo rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
# Like /tmp: the tests run tcpvet as nobody from a binary built in here.
chmod 1777 "$tmp"
export TMPDIR=$tmp TMUX_TMPDIR=$tmp NSTAT_HISTORY=$tmp/nstat-history

goexec=()
if [ -n "$sudo" ]; then
	# One password prompt now, rather than one from each test binary that go
	# test starts in parallel.
	sudo -v
	# sudo resets the environment; the tests need the user's PATH (they run
	# go) with root's sbin directories added (nft, sysctl, conntrack), and the
	# temporary directory. go test splits this string, honouring quotes.
	path=$PATH:/usr/local/sbin:/usr/sbin:/sbin
	goexec=(-exec "sudo env 'PATH=$path' 'TMPDIR=$TMPDIR' 'TMUX_TMPDIR=$TMUX_TMPDIR' 'NSTAT_HISTORY=$NSTAT_HISTORY'")
fi
"${GO:-go}" test "${goexec[@]}" "$@"

#!/usr/bin/env bash
# Installs the packages of scripts/deb-packages that are missing. With all of
# them present it returns at once, without apt-get: `make check` runs it every
# time. Root installs directly; anyone else through sudo. DEB_PACKAGES_FILE
# names another list.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pkg in $(sed 's/#.*//' "${DEB_PACKAGES_FILE:-scripts/deb-packages}"); do
	# dpkg-query rather than command -v: several packages have no command of
	# their own name (iproute2, procps, libc6-dev, openssh-server).
	if [ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)" != installed ]; then
		missing+=("$pkg")
	fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=
[ "$(id -u)" -eq 0 ] || sudo=sudo
echo "deps: installing ${missing[*]}"
# env, because sudo drops DEBIAN_FRONTEND and a package may ask a question
# nobody (CI, no stdin) is there to answer. The lock timeout waits out another
# apt (unattended-upgrades, a second checkout's make check) rather than fail.
apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300)
$sudo "${apt[@]}" update -qq
$sudo "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}"

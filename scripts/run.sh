#!/usr/bin/env bash
# godm's run command. On a Xen dom0 (when /dev/xen/privcmd exists) it runs
# godm with the arguments given (e.g. scripts/run.sh serve -domid 5).
# Elsewhere it runs the demo on the built-in simulated Xen: godm sim, with
# the arguments given; "-linux" boots a real Linux guest whose devices godm
# serves (the kernel, busybox and the guest test driver are fetched and
# built into .cache/guest first).
#
# "-xen" boots real Xen in a box instead (Xen 4.17 and a Debian dom0 under
# QEMU's TCG; the packages are fetched into .cache/xenbox first) and shows
# an HVM guest created by xl whose device model is godm.
#
# A godm subcommand given first (sim, bench, serve, passthrough, help) is
# run as given, e.g. scripts/run.sh bench.
#
# Usage: scripts/run.sh [godm args...]
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .cache
CGO_ENABLED=0 go build -o .cache/godm ./cmd/godm
if [ "${1:-}" = "-xen" ] || [ "${1:-}" = "--xen" ]; then
	shift
	command -v qemu-system-x86_64 >/dev/null || { echo "run.sh: -xen needs qemu-system-x86 (see scripts/test-packages.txt)" >&2; exit 1; }
	echo "xenbox: fetching Xen 4.17, a dom0 kernel and tools (Debian packages, cached in .cache/xenbox)"
	dir=$(scripts/xenbox.sh)
	exec go run ./internal/xenbox/demo -assets "$dir" "$@"
fi
cmd=sim
case "${1:-}" in
sim | bench | serve | passthrough | help | -h | -help | --help)
	cmd=$1
	shift
	;;
*)
	if [ -e /dev/xen/privcmd ] && [ $# -gt 0 ]; then
		exec .cache/godm "$@"
	fi
	;;
esac
if [ "$cmd" != sim ]; then
	exec .cache/godm "$cmd" "$@"
fi
if [ ! -e /dev/xen/privcmd ]; then
	echo "run.sh: no Xen here (/dev/xen/privcmd is missing): running godm on the simulated Xen" >&2
fi
for a in "$@"; do
	case "$a" in
	-linux | --linux)
		for p in $(sed 's/#.*//' scripts/test-packages.txt); do
			dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="${need:-} $p"
		done
		if [ -n "${need:-}" ]; then
			SUDO=""
			[ "$(id -u)" -eq 0 ] || SUDO="sudo"
			$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need >/dev/null
		fi
		GODM_GUEST_DIR=$(scripts/guest-assets.sh)
		export GODM_GUEST_DIR
		;;
	esac
done
exec .cache/godm sim "$@"

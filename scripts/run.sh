#!/usr/bin/env bash
# godm's run command. On a Xen dom0 (when /dev/xen/privcmd exists) it runs
# godm, the device model, with the arguments given (e.g. scripts/run.sh
# serve -domid 5). Elsewhere, or without arguments, it runs the demo on the
# built-in simulated Xen: godm-lab sim, with the arguments given; "-linux"
# boots a real Linux guest whose devices godm serves (the kernel, busybox
# and the guest test driver are fetched and built into .cache/guest first).
#
# A subcommand given first is run by the binary that has it: serve and
# passthrough by godm, sim and bench by godm-lab (e.g. scripts/run.sh
# bench); help prints both binaries' usage.
#
# "-xen" boots real Xen in a box instead (Xen 4.17 and a Debian dom0 under
# QEMU's TCG; the packages are fetched into .cache/xenbox first) and shows
# a Debian Linux HVM guest created by xl whose device model is godm, booted
# by SeaBIOS from godm's IDE disk ("-xen -firmware": a quicker test
# firmware instead).
#
# Usage: scripts/run.sh [command] [args...]
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .cache
CGO_ENABLED=0 go build -o .cache/godm ./cmd/godm
CGO_ENABLED=0 go build -o .cache/godm-usernet ./cmd/godm-usernet
CGO_ENABLED=0 go build -o .cache/godm-lab ./cmd/godm-lab
if [ "${1:-}" = "-xen" ] || [ "${1:-}" = "--xen" ]; then
	shift
	command -v qemu-system-x86_64 >/dev/null || { echo "run.sh: -xen needs qemu-system-x86 (see scripts/test-packages.txt)" >&2; exit 1; }
	echo "xenbox: fetching Xen 4.17, a dom0 kernel and tools (Debian packages, cached in .cache/xenbox)"
	dir=$(scripts/xenbox.sh)
	exec go run ./internal/xenbox/demo -assets "$dir" "$@"
fi
cmd=sim
case "${1:-}" in
serve | passthrough)
	exec .cache/godm "$@"
	;;
bench)
	exec .cache/godm-lab "$@"
	;;
help | -h | -help | --help)
	.cache/godm help
	echo
	exec .cache/godm-lab help
	;;
sim)
	shift
	;;
*)
	if [ -e /dev/xen/privcmd ] && [ $# -gt 0 ]; then
		exec .cache/godm "$@"
	fi
	;;
esac
if [ ! -e /dev/xen/privcmd ]; then
	echo "run.sh: no Xen here (/dev/xen/privcmd is missing): running godm on the simulated Xen (godm-lab sim)" >&2
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
exec .cache/godm-lab "$cmd" "$@"

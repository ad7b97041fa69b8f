#!/usr/bin/env bash
# godm's run command. On a Xen dom0 (when /dev/xen/privcmd exists) it runs
# godm with the arguments given; elsewhere it runs the demo on the built-in
# simulated Xen (godm sim).
#
# Usage: scripts/run.sh [godm args...]
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .cache
CGO_ENABLED=0 go build -o .cache/godm ./cmd/godm
if [ -e /dev/xen/privcmd ] && [ $# -gt 0 ]; then
	exec .cache/godm "$@"
fi
if [ ! -e /dev/xen/privcmd ]; then
	echo "run.sh: no Xen here (/dev/xen/privcmd is missing): running the simulated-Xen demo" >&2
fi
exec .cache/godm sim "$@"

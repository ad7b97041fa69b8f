#!/usr/bin/env bash
# godm's test command: installs the system packages the tests need when
# they are missing (Debian; run as root, or with sudo available), builds the
# reference-library capture tools, regenerates and checks the golden ABI
# fixtures when libxen-dev is present, fetches the real-Xen box's packages
# (.cache/xenbox, for internal/xenbox), and runs the whole suite with -race.
#
# Usage: scripts/test.sh [go test args...]   (default: ./...)
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for p in $(cat scripts/test-packages.txt | sed 's/#.*//'); do
	have_pkg "$p" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	echo "test.sh: installing ${need[*]}"
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# A second Xen release's public headers (Debian trixie, Xen 4.20) for the
# domctl layout check (cached in .cache/xen-headers).
scripts/xen-headers.sh >/dev/null

# Golden ABI fixtures: regenerate from the reference C libraries and fail on
# any difference from the committed ones.
if [ -x tools/xencapture/regen.sh ]; then
	tools/xencapture/regen.sh --check
fi

# Real-guest harness assets (Debian kernel, busybox), cached in .cache/guest.
GODM_GUEST_DIR=$(scripts/guest-assets.sh)
export GODM_GUEST_DIR

# Real Xen in a box (internal/xenbox): Debian's Xen 4.17, a dom0 kernel
# and tools, unpacked (not installed) in .cache/xenbox; and Debian
# trixie's Xen 4.20 with its tools in .cache/xenbox-4.20 (the same
# scenarios, the same godm binary).
GODM_XENBOX_DIR=$(scripts/xenbox.sh -q)
GODM_XENBOX_DIR_420=$(scripts/xenbox.sh -q 4.20)
export GODM_XENBOX_DIR GODM_XENBOX_DIR_420

if [ $# -eq 0 ]; then
	set -- ./...
fi
# 40 m: the real-Xen boxes (4.17 with its Linux guest, then 4.20) run in
# one test binary; on a loaded 2-core host they need more than 20.
go test -race -count=1 -timeout 40m "$@"

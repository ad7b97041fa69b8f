#!/usr/bin/env bash
# Regenerates godm's golden ABI fixtures from the reference C libraries
# (Debian libxen-dev): hyp/testdata/golden/{dm,fmem,evtchn,xc}_*.json and
# hyp/xenabi/testdata/layout.json, then the per-release domctl layouts
# (domctl-layouts.sh: hyp/domctl/testdata/layout). Everything is built in a temporary
# directory; nothing built is committed.
#
# Usage: tools/xencapture/regen.sh [--check]
#   --check  regenerate into the temporary directory and fail, showing a
#            diff, if the result differs from the committed files.
set -euo pipefail
src=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$src/../.." && pwd)
check=0
if [ "${1:-}" = "--check" ]; then
	check=1
fi

golden=$root/hyp/testdata/golden
layout=$root/hyp/xenabi/testdata/layout.json
# The fixtures this script owns (the xenstore capture writes its own).
owned='dm_* fmem_* evtchn_* xc_*'

work=$(mktemp -d "${TMPDIR:-/tmp}/xencapture.XXXXXX")
trap 'rm -rf "$work"' EXIT

CC=${CC:-gcc}
CFLAGS="-O1 -Wall -Wextra"
$CC $CFLAGS -fPIC -shared -o "$work/libxencapture.so" "$src/capture.c" -ldl
$CC $CFLAGS -Wno-format-zero-length -o "$work/driver" "$src/driver.c" \
	-lxenctrl -lxendevicemodel -lxenevtchn -lxenforeignmemory -ldl
$CC $CFLAGS -o "$work/layout" "$src/layout.c"

mkdir -p "$work/golden"
# Two passes with different stack and heap poison: pass 2 marks the bytes
# that differ (left uninitialised by the libraries) and fails on any that
# the capture does not know to be padding or reserved.
for pass in 1 2; do
	poison=0xaa
	[ "$pass" = 2 ] && poison=0x55
	env -i PATH="$PATH" XENCAPTURE_PASS=$pass XENCAPTURE_POISON=$poison \
		XENCAPTURE_OUT="$work/golden" LD_PRELOAD="$work/libxencapture.so" "$work/driver"
done
rm -f "$work/golden"/*.bin
"$work/layout" >"$work/layout.json"

if [ "$check" = 1 ]; then
	status=0
	mkdir -p "$work/committed"
	(cd "$golden" 2>/dev/null && for p in $owned; do [ -e "$p" ] && cp "$p" "$work/committed/"; done) || true
	if ! diff -ru "$work/committed" "$work/golden"; then
		echo "regen.sh: golden fixtures differ from hyp/testdata/golden (run tools/xencapture/regen.sh)" >&2
		status=1
	fi
	if ! diff -u "$layout" "$work/layout.json"; then
		echo "regen.sh: layout differs from hyp/xenabi/testdata/layout.json (run tools/xencapture/regen.sh)" >&2
		status=1
	fi
	[ "$status" = 0 ] || exit 1
else
	mkdir -p "$golden" "$(dirname "$layout")"
	(cd "$golden" && for p in $owned; do [ -e "$p" ] && rm -f "$p"; done) || true
	cp "$work/golden"/*.json "$golden/"
	cp "$work/layout.json" "$layout"
fi

# The domctl layouts of each Xen release (hyp/domctl/testdata/layout).
"$src/domctl-layouts.sh" "$@"

# privcmd's irqfd/ioeventfd layouts from Linux's uapi header
# (hyp/privcmd/testdata/eventfd_layout.json).
"$src/eventfd-layout.sh" "$@"

if [ -x "$src/xenstore/regen.sh" ]; then
	"$src/xenstore/regen.sh" "$@"
fi

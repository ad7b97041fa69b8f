#!/usr/bin/env bash
# Regenerates or checks hyp/domctl/testdata/layout/xen-4.NN.json, the
# layout of every domctl structure godm issues in each Xen release's public
# headers (domctl_layout.c), which hyp/domctl's layout test checks its
# codecs against. Sources of headers, each used when present:
#
#   - the installed libxen-dev (/usr/include/xen; its release from dpkg);
#   - .cache/xen-headers/4.NN/usr/include, unpacked distribution packages
#     of other releases (scripts/xen-headers.sh fetches 4.20);
#   - XEN_SRC=<a git clone of the Xen tree>: every release 4.15..4.22 from
#     its newest RELEASE-4.NN.* tag (xen/include/public). This is how the
#     releases no distribution package here carries were generated.
#
# Usage: tools/xencapture/domctl-layouts.sh [--check]
#   --check  fail, showing a diff, if a source's layout differs from the
#            committed file of its release; a source that is absent is
#            skipped with a message saying so.
set -euo pipefail
src=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$src/../.." && pwd)
out=$root/hyp/domctl/testdata/layout
check=0
if [ "${1:-}" = "--check" ]; then
	check=1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/domctl-layouts.XXXXXX")
trap 'rm -rf "$work"' EXIT
CC=${CC:-gcc}
status=0
checked=()

# layout RELEASE INCLUDE-DIR SOURCE-NAME
layout() {
	local rel=$1 inc=$2 what=$3
	$CC -O0 -Wall -Wextra -I "$inc" -o "$work/domctl_layout-$rel" "$src/domctl_layout.c"
	"$work/domctl_layout-$rel" "$rel" >"$work/xen-$rel.json"
	if [ "$check" = 1 ]; then
		if [ ! -f "$out/xen-$rel.json" ]; then
			echo "domctl-layouts.sh: no committed layout for Xen $rel ($what)" >&2
			status=1
		elif ! diff -u "$out/xen-$rel.json" "$work/xen-$rel.json"; then
			echo "domctl-layouts.sh: Xen $rel's headers ($what) differ from hyp/domctl/testdata/layout/xen-$rel.json" >&2
			status=1
		fi
	else
		mkdir -p "$out"
		cp "$work/xen-$rel.json" "$out/xen-$rel.json"
	fi
	checked+=("$rel ($what)")
}

# The installed libxen-dev.
if [ -f /usr/include/xen/domctl.h ] && v=$(dpkg-query -W -f='${Version}' libxen-dev 2>/dev/null); then
	layout "$(cut -d. -f1,2 <<<"$v")" /usr/include "libxen-dev $v"
else
	echo "domctl-layouts.sh: no installed libxen-dev; skipping its release" >&2
fi

# Unpacked packages of other releases.
found=0
for d in "$root"/.cache/xen-headers/*/; do
	[ -f "$d/usr/include/xen/domctl.h" ] || continue
	rel=$(basename "$d")
	found=1
	layout "$rel" "$d/usr/include" "$(cat "$d/STAMP" 2>/dev/null || echo "$d")"
done
if [ "$found" = 0 ]; then
	echo "domctl-layouts.sh: SKIPPING the Xen 4.20 header check: no headers in .cache/xen-headers (run scripts/xen-headers.sh)" >&2
fi

# Every release from a Xen git tree.
if [ -n "${XEN_SRC:-}" ]; then
	for minor in 15 16 17 18 19 20 21 22; do
		tag=$(git -C "$XEN_SRC" tag -l "RELEASE-4.$minor.*" | sort -V | tail -1)
		if [ -z "$tag" ]; then
			echo "domctl-layouts.sh: $XEN_SRC has no RELEASE-4.$minor.* tag" >&2
			status=1
			continue
		fi
		mkdir -p "$work/src-4.$minor/xen"
		git -C "$XEN_SRC" archive "$tag" xen/include/public | tar -x -C "$work/src-4.$minor/xen" --strip-components=3
		layout "4.$minor" "$work/src-4.$minor" "$tag"
	done
fi

if [ "${#checked[@]}" -gt 0 ]; then
	printf 'domctl-layouts.sh: %s Xen %s\n' "$([ "$check" = 1 ] && echo checked || echo wrote)" "${checked[*]}" >&2
fi
exit "$status"

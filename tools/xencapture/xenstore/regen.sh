#!/bin/sh
# Regenerates the xenstore wire fixtures in hyp/xenstore/testdata/golden/
# from Debian's libxenstore (libxen-dev), served by godm's simulated
# xenstored: builds driver.c in a temporary directory, runs the capture
# tool, and replaces the fixtures. With --check, compares instead and fails
# on any difference. Nothing built is left in the tree.
#
# Needs: gcc, /usr/include/xenstore.h, -lxenstore, go.
set -eu

check=0
case "${1:-}" in
--check) check=1 ;;
"") ;;
*) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
golden="$root/hyp/xenstore/testdata/golden"
cc=${CC:-gcc}

if ! command -v "$cc" >/dev/null 2>&1; then
	echo "xenstore regen: $cc not found" >&2; exit 1
fi
if [ ! -f /usr/include/xenstore.h ]; then
	echo "xenstore regen: /usr/include/xenstore.h missing (apt-get install libxen-dev)" >&2; exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

"$cc" -O1 -Wall -Werror -o "$tmp/xsdriver" "$here/driver.c" -lxenstore
(cd "$root" && go build -o "$tmp/capture" ./tools/xencapture/xenstore/capture)
"$tmp/capture" -driver "$tmp/xsdriver" -out "$tmp/golden"

if [ "$check" = 1 ]; then
	if ! diff -ru "$golden" "$tmp/golden"; then
		echo "xenstore regen --check: fixtures differ from libxenstore's output (run $0)" >&2
		exit 1
	fi
	echo "xenstore fixtures up to date"
	exit 0
fi

mkdir -p "$golden"
rm -f "$golden"/*.json
cp "$tmp/golden"/*.json "$golden/"
echo "xenstore fixtures regenerated in $golden"

#!/usr/bin/env bash
# Fetches a second Xen release's public headers for the domctl layout
# check: Debian trixie's libxen-dev (Xen 4.20, XEN_DOMCTL_INTERFACE_VERSION
# 0x17), unpacked into .cache/xen-headers/4.20 (never committed). Prints
# that directory. Cached: nothing is downloaded when the unpacked headers
# and their stamp are there.
#
# The package comes through apt itself, with a private apt state (nothing
# of the system's apt configuration changes): the Debian archive the system
# already uses (the source of its own Debian main suite; XEN_HEADERS_ARCHIVE
# overrides it), suite trixie, signed by the Debian archive keyring. apt
# checks the InRelease signature, the Packages index against it and the
# .deb against the Packages index; the script checks the .deb's SHA256
# against the index once more before unpacking it.
#
# Offline-safe: if the download fails (no network), it says so on stderr,
# prints nothing and exits 0, and the layout check skips 4.20 saying why.
# A hash mismatch or a package without the headers is an error (exit 1).
#
# Usage: scripts/xen-headers.sh
set -euo pipefail
cd "$(dirname "$0")/.."

release=4.20
suite=trixie
pkg=libxen-dev
dir=.cache/xen-headers/$release
stamp=$dir/STAMP

if [ -s "$stamp" ] && [ -f "$dir/usr/include/xen/domctl.h" ]; then
	echo "$dir"
	exit 0
fi

skip() {
	echo "xen-headers.sh: $*; the Xen $release header check will be SKIPPED" >&2
	exit 0
}

archive=${XEN_HEADERS_ARCHIVE:-}
if [ -z "$archive" ]; then
	# The archive of the system's Debian main suite (not -security or
	# -updates): " 500 URI bookworm/main amd64 Packages".
	archive=$(apt-cache policy 2>/dev/null | awk '$2 ~ /^https?:/ && $3 ~ /^[a-z]+\/main$/ {print $2; exit}')
fi
[ -n "$archive" ] || skip "no Debian archive in the system's apt sources (set XEN_HEADERS_ARCHIVE)"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$keyring" ] || skip "no $keyring to verify $suite's signature"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/xen-headers.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/etc/preferences.d" "$tmp/etc/sources.list.d"
echo "deb [signed-by=$keyring] $archive $suite main" >"$tmp/etc/sources.list"
apt=(-o "Dir::Etc::SourceList=$tmp/etc/sources.list" -o "Dir::Etc::SourceParts=$tmp/etc/sources.list.d"
	-o "Dir::Etc::Preferences=$tmp/etc/preferences" -o "Dir::Etc::PreferencesParts=$tmp/etc/preferences.d"
	-o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache" -o "Dir::State::Status=/dev/null"
	-o "APT::Sandbox::User=root" -o "Acquire::Languages=none" -o "APT::Architecture=amd64"
	-o "Debug::NoLocking=1")

# apt-get update exits 0 on a fetch failure (it only warns): the index
# must be there.
apt-get "${apt[@]}" -qq update >"$tmp/update.log" 2>&1 || true
if ! ls "$tmp"/lists/*_dists_"$suite"_main_binary-amd64_Packages* >/dev/null 2>&1; then
	sed 's/^/  /' "$tmp/update.log" >&2
	skip "could not download the $suite package index"
fi
info=$(apt-cache "${apt[@]}" show "$pkg" 2>/dev/null | awk 'BEGIN{RS=""} NR==1' || true)
version=$(awk '/^Version:/{print $2}' <<<"$info")
sha=$(awk '/^SHA256:/{print $2}' <<<"$info")
if [ -z "$version" ] || [ -z "$sha" ]; then
	echo "xen-headers.sh: $suite has no $pkg (or no SHA256 for it)" >&2
	exit 1
fi
case $version in
$release.*) ;;
*)
	echo "xen-headers.sh: $suite's $pkg is $version, not Xen $release" >&2
	exit 1
	;;
esac
if ! (cd "$tmp" && apt-get "${apt[@]}" -qq download "$pkg=$version" >"$tmp/download.log" 2>&1); then
	sed 's/^/  /' "$tmp/download.log" >&2
	skip "could not download $pkg $version"
fi
deb=$(ls "$tmp"/"$pkg"_*.deb)
got=$(sha256sum "$deb" | cut -d' ' -f1)
if [ "$got" != "$sha" ]; then
	echo "xen-headers.sh: $deb has SHA256 $got, the $suite index says $sha" >&2
	exit 1
fi
dpkg-deb -x "$deb" "$tmp/x"
if [ ! -f "$tmp/x/usr/include/xen/domctl.h" ]; then
	echo "xen-headers.sh: $pkg $version has no usr/include/xen/domctl.h" >&2
	exit 1
fi
rm -rf "$dir"
mkdir -p "$dir/usr"
mv "$tmp/x/usr/include" "$dir/usr/include"
printf '%s %s sha256=%s\n' "$pkg" "$version" "$sha" >"$stamp"
echo "$dir"

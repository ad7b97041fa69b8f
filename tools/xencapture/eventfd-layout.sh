#!/usr/bin/env bash
# Regenerates or checks hyp/privcmd/testdata/eventfd_layout.json: the
# layout of struct privcmd_irqfd and struct privcmd_ioeventfd, their
# request numbers and flags, as the Linux uapi header <xen/privcmd.h>
# (Linux >= 6.7, package linux-libc-dev) defines them. hyp/privcmd's
# layout test checks its mirrors (hyp/xenabi) against that file. The Xen
# 4.17 libraries have no caller of these ioctls, so the header is their
# only C reference.
#
# The header tree is, the first that has IOCTL_PRIVCMD_IOEVENTFD:
#   - $LINUX_UAPI_INCLUDE (a directory like /usr/include);
#   - /usr/include (the installed linux-libc-dev);
#   - .cache/linux-uapi/usr/include, Debian trixie's linux-libc-dev,
#     fetched here when absent: through apt with a private state (nothing
#     of the system's apt configuration changes), from the Debian archive
#     the system already uses (LINUX_UAPI_ARCHIVE overrides it), signed by
#     the Debian archive keyring; the .deb's SHA256 is checked against the
#     signed index before it is unpacked. Never committed.
# Offline-safe: with no header tree and no download, it says so and exits 0
# (the Go test then checks against the committed file only).
#
# The uapi header includes <xen/interface/xen.h>, a kernel-internal header
# that linux-libc-dev does not ship, for domid_t and xen_pfn_t; a two-line
# stand-in (uint16_t: xen/include/public/xen.h; unsigned long on x86:
# xen/include/public/arch-x86/xen.h) is generated for the build.
#
# Usage: tools/xencapture/eventfd-layout.sh [--check]
set -euo pipefail
src=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$src/../.." && pwd)
out=$root/hyp/privcmd/testdata/eventfd_layout.json
check=0
if [ "${1:-}" = "--check" ]; then
	check=1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/eventfd-layout.XXXXXX")
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"

has_eventfd() { [ -f "$1/xen/privcmd.h" ] && grep -q IOCTL_PRIVCMD_IOEVENTFD "$1/xen/privcmd.h"; }

skip() {
	echo "eventfd-layout.sh: $*; SKIPPING the irqfd/ioeventfd header check" >&2
	exit 0
}

# fetch unpacks trixie's linux-libc-dev into .cache/linux-uapi.
fetch() {
	local suite=trixie pkg=linux-libc-dev dir=$root/.cache/linux-uapi
	local archive=${LINUX_UAPI_ARCHIVE:-}
	if [ -z "$archive" ]; then
		archive=$(apt-cache policy 2>/dev/null | awk '$2 ~ /^https?:/ && $3 ~ /^[a-z]+\/main$/ {print $2; exit}')
	fi
	[ -n "$archive" ] || skip "no Debian archive in the system's apt sources (set LINUX_UAPI_ARCHIVE)"
	local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
	[ -r "$keyring" ] || skip "no $keyring to verify $suite's signature"
	local a=$work/apt
	mkdir -p "$a/lists/partial" "$a/cache/archives/partial" "$a/etc/preferences.d" "$a/etc/sources.list.d" "$a/dl"
	echo "deb [signed-by=$keyring] $archive $suite main" >"$a/etc/sources.list"
	local apt=(-o "Dir::Etc::SourceList=$a/etc/sources.list" -o "Dir::Etc::SourceParts=$a/etc/sources.list.d"
		-o "Dir::Etc::Preferences=$a/etc/preferences" -o "Dir::Etc::PreferencesParts=$a/etc/preferences.d"
		-o "Dir::State::Lists=$a/lists" -o "Dir::Cache=$a/cache" -o "Dir::State::Status=/dev/null"
		-o "APT::Sandbox::User=root" -o "Acquire::Languages=none" -o "APT::Architecture=amd64"
		-o "Debug::NoLocking=1")
	apt-get "${apt[@]}" -qq update >"$a/update.log" 2>&1 || true
	if ! ls "$a"/lists/*_dists_"$suite"_main_binary-*_Packages* >/dev/null 2>&1; then
		sed 's/^/  /' "$a/update.log" >&2
		skip "could not download the $suite package index"
	fi
	local info version sha
	info=$(apt-cache "${apt[@]}" show "$pkg" 2>/dev/null | awk 'BEGIN{RS=""} NR==1' || true)
	version=$(awk '/^Version:/{print $2}' <<<"$info")
	sha=$(awk '/^SHA256:/{print $2}' <<<"$info")
	if [ -z "$version" ] || [ -z "$sha" ]; then
		echo "eventfd-layout.sh: $suite has no $pkg (or no SHA256 for it)" >&2
		exit 1
	fi
	if ! (cd "$a/dl" && apt-get "${apt[@]}" -qq download "$pkg=$version" >"$a/download.log" 2>&1); then
		sed 's/^/  /' "$a/download.log" >&2
		skip "could not download $pkg $version"
	fi
	local deb got
	deb=$(ls "$a"/dl/"$pkg"_*.deb)
	got=$(sha256sum "$deb" | cut -d' ' -f1)
	if [ "$got" != "$sha" ]; then
		echo "eventfd-layout.sh: $deb has SHA256 $got, the $suite index says $sha" >&2
		exit 1
	fi
	dpkg-deb -x "$deb" "$a/x"
	has_eventfd "$a/x/usr/include" || {
		echo "eventfd-layout.sh: $pkg $version has no IOCTL_PRIVCMD_IOEVENTFD in xen/privcmd.h" >&2
		exit 1
	}
	rm -rf "$dir"
	mkdir -p "$dir/usr"
	mv "$a/x/usr/include" "$dir/usr/include"
	printf '%s %s sha256=%s\n' "$pkg" "$version" "$sha" >"$dir/STAMP"
}

inc=""
what=""
if [ -n "${LINUX_UAPI_INCLUDE:-}" ]; then
	has_eventfd "$LINUX_UAPI_INCLUDE" || {
		echo "eventfd-layout.sh: LINUX_UAPI_INCLUDE=$LINUX_UAPI_INCLUDE has no IOCTL_PRIVCMD_IOEVENTFD in xen/privcmd.h" >&2
		exit 1
	}
	inc=$LINUX_UAPI_INCLUDE what="LINUX_UAPI_INCLUDE=$inc"
elif has_eventfd /usr/include; then
	inc=/usr/include what="the installed linux-libc-dev $(dpkg-query -W -f='${Version}' linux-libc-dev 2>/dev/null || true)"
else
	cache=$root/.cache/linux-uapi
	if ! has_eventfd "$cache/usr/include" || [ ! -s "$cache/STAMP" ]; then
		fetch
	fi
	inc=$cache/usr/include what=$(cat "$cache/STAMP")
fi

mkdir -p "$work/shim/xen/interface"
cat >"$work/shim/xen/interface/xen.h" <<'H'
/* Generated stand-in: domid_t (xen/include/public/xen.h) and x86's
 * xen_pfn_t (xen/include/public/arch-x86/xen.h). */
#include <stdint.h>
typedef uint16_t domid_t;
typedef unsigned long xen_pfn_t;
H
CC=${CC:-gcc}
$CC -O0 -Wall -Wextra -I "$work/shim" -I "$inc" -o "$work/eventfd_layout" "$src/eventfd_layout.c"
"$work/eventfd_layout" >"$work/eventfd_layout.json"
if [ "$check" = 1 ]; then
	if ! diff -u "$out" "$work/eventfd_layout.json"; then
		echo "eventfd-layout.sh: $what differs from hyp/privcmd/testdata/eventfd_layout.json (run tools/xencapture/eventfd-layout.sh)" >&2
		exit 1
	fi
	echo "eventfd-layout.sh: checked against $what" >&2
else
	mkdir -p "$(dirname "$out")"
	cp "$work/eventfd_layout.json" "$out"
	echo "eventfd-layout.sh: wrote $out from $what" >&2
fi

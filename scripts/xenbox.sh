#!/usr/bin/env bash
# Fetches and unpacks the assets of the real-Xen box (internal/xenbox) into
# .cache/xenbox (never committed) and prints that directory:
#   debs/        the Debian bookworm packages, fetched with apt-get download
#                (apt checks their checksums); reused when present
#   root/        the packages unpacked with dpkg-deb -x (nothing is installed
#                on the host, /boot is untouched)
#   xen.elf      the hypervisor as an ELF32 (QEMU's multiboot loader needs it)
#   vmlinux      the dom0 kernel's ELF vmlinux (Xen would spend ~24 s under
#                TCG decompressing the bzImage)
#   modules/     the dom0 kernel's Xen modules (xenfs, privcmd, evtchn, ...)
#   release      the Xen release ("4.17"); the harness takes the tools'
#                directory (usr/lib/xen-<release>/bin) from it
# Idempotent: a stamp names the package set the unpacked tree came from.
# Progress goes to stderr; -q silences it.
#
# Usage: scripts/xenbox.sh [-q] [4.17|4.20]
#   4.20 builds the second box in .cache/xenbox-4.20 (see xenbox420 below):
#   Debian trixie's Xen 4.20 and its libraries beside the 4.17 box's dom0
#   kernel, busybox and SeaBIOS.
set -euo pipefail
cd "$(dirname "$0")/.."
quiet=0
[ "${1:-}" = "-q" ] && quiet=1 && shift
release=${1:-4.17}
say() { [ $quiet -eq 1 ] || echo "xenbox: $*" >&2; }

# xenbox420 builds .cache/xenbox-4.20 and prints it. The packages come
# through apt with a private state (as in scripts/xen-headers.sh: the
# system's Debian archive, suite trixie, signed by the Debian archive
# keyring; nothing of the system's apt configuration changes), cached in
# debs/. trixie's Xen tools need trixie's glibc and libraries, so those
# come from trixie too; the dom0 kernel (vmlinux, modules), busybox-static,
# seabios and qemu-system-xen (QEMU-xen 7.2, the reference device model;
# its libraries come from the host as in the 4.17 box) are bookworm's,
# from the 4.17 box. Two fixes to the
# unpacked root: gconv goes (its modules need libraries the box does not
# carry), and trixie's loader is a real file at lib64/ (the interpreter
# path of its binaries; else the dom0 closure takes the host's bookworm
# loader, which trixie's libc rejects: xenstored fails on
# __tunable_is_initialized).
xenbox420() {
	local base dir pkgs missing p deb stamp archive keyring apt
	base=$(scripts/xenbox.sh -q 4.17)
	dir=.cache/xenbox-4.20
	mkdir -p "$dir/debs"
	pkgs=(xen-hypervisor-4.20-amd64 xen-utils-4.20 xen-utils-common xenstore-utils
		libxenmisc4.20 libxenstore4 libxencall1 libxenevtchn1 libxenforeignmemory1
		libxengnttab1 libxentoollog1 libxenhypfs1 libxentoolcore1 libxendevicemodel1
		libc6 libgcc-s1 libyajl2 libncurses6 libtinfo6 libext2fs2t64 liblzma5 libuuid1
		libzstd1 zlib1g libcom-err2 libblkid1)
	missing=()
	for p in "${pkgs[@]}"; do
		ls "$dir/debs/${p}"_*.deb >/dev/null 2>&1 || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		archive=${XEN_HEADERS_ARCHIVE:-}
		if [ -z "$archive" ]; then
			archive=$(apt-cache policy 2>/dev/null | awk '$2 ~ /^https?:/ && $3 ~ /^[a-z]+\/main$/ {print $2; exit}')
		fi
		[ -n "$archive" ] || { echo "xenbox: no Debian archive in the system's apt sources (set XEN_HEADERS_ARCHIVE)" >&2; exit 1; }
		keyring=/usr/share/keyrings/debian-archive-keyring.gpg
		[ -r "$keyring" ] || { echo "xenbox: no $keyring to verify trixie's signature" >&2; exit 1; }
		rm -rf "$dir/apt"
		mkdir -p "$dir/apt/lists/partial" "$dir/apt/cache/archives/partial" "$dir/apt/etc/preferences.d" "$dir/apt/etc/sources.list.d"
		chmod -R 755 "$dir/apt"
		local a=$PWD/$dir/apt
		echo "deb [signed-by=$keyring] $archive trixie main" >"$a/etc/sources.list"
		apt=(-o "Dir::Etc::SourceList=$a/etc/sources.list" -o "Dir::Etc::SourceParts=$a/etc/sources.list.d"
			-o "Dir::Etc::Preferences=$a/etc/preferences" -o "Dir::Etc::PreferencesParts=$a/etc/preferences.d"
			-o "Dir::State::Lists=$a/lists" -o "Dir::Cache=$a/cache" -o "Dir::State::Status=/dev/null"
			-o "APT::Sandbox::User=root" -o "Acquire::Languages=none" -o "APT::Architecture=amd64"
			-o "Debug::NoLocking=1")
		say "downloading ${#missing[@]} Debian trixie packages (${missing[*]})"
		apt-get "${apt[@]}" -qq update >&2
		ls "$a"/lists/*_dists_trixie_main_binary-amd64_Packages* >/dev/null 2>&1 || { echo "xenbox: no trixie package index" >&2; exit 1; }
		(cd "$dir/debs" && apt-get "${apt[@]}" download "${missing[@]}" >&2)
		rm -rf "$dir/apt"
	fi
	local bw=()
	for p in busybox-static seabios qemu-system-xen; do
		bw+=("$(ls "$base/debs/${p}"_*.deb | head -1)")
	done
	stamp=$( (printf '%s\n' "${pkgs[@]}"; ls "$dir/debs"; basename -a "${bw[@]}"; cat "$base/stamp") | sha256sum | cut -c1-16)
	if [ "$(cat "$dir/stamp" 2>/dev/null)" != "$stamp" ]; then
		say "unpacking Xen 4.20"
		rm -rf "$dir/root" "$dir/modules" "$dir/xen.elf" "$dir/vmlinux" "$dir/stamp" "$dir/release"
		mkdir -p "$dir/root"
		for p in "${pkgs[@]}"; do
			dpkg-deb -x "$(ls "$dir/debs/${p}"_*.deb | head -1)" "$dir/root"
		done
		for deb in "${bw[@]}"; do
			dpkg-deb -x "$deb" "$dir/root"
		done
		find "$dir/root" -type d -name gconv -prune -exec rm -rf {} +
		rm -f "$dir/root/lib64/ld-linux-x86-64.so.2"
		mkdir -p "$dir/root/lib64"
		cp "$dir/root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" "$dir/root/lib64/"
		cp -r "$base/modules" "$dir/modules"
		cp "$base/vmlinux" "$dir/vmlinux"
		zcat "$dir/root/boot/xen-4.20-amd64.gz" >"$dir/xen.elf"
		echo 4.20 >"$dir/release"
		echo "$stamp" >"$dir/stamp"
	fi
	say "assets ready in $dir"
	echo "$PWD/$dir"
}

case $release in
4.17) ;;
4.20)
	xenbox420
	exit 0
	;;
*)
	echo "xenbox: unknown release $release (4.17 or 4.20)" >&2
	exit 1
	;;
esac

dir=.cache/xenbox
mkdir -p "$dir/debs"

kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}' || true)
if [ -z "$kpkg" ]; then
	apt-get update -qq >/dev/null 2>&1 || sudo apt-get update -qq >/dev/null
	kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
fi
# Xen 4.17 (bookworm), its tools and their libraries; hvmloader is in
# xen-utils-4.17, SeaBIOS's bios-256k.bin and VGA BIOSes in seabios;
# busybox for dom0; QEMU's own Xen device model (qemu-system-xen), the
# reference beside godm (its libraries are the host's qemu-system-x86's).
pkgs=(xen-hypervisor-4.17-amd64 xen-utils-4.17 xen-utils-common xenstore-utils
	libyajl2 libxenmisc4.17 libxenstore4 libxencall1 libxenevtchn1
	libxenforeignmemory1 libxengnttab1 libxentoollog1 libxenhypfs1
	libxentoolcore1 libxendevicemodel1 busybox-static seabios qemu-system-xen "$kpkg")

missing=()
for p in "${pkgs[@]}"; do
	ls "$dir/debs/${p}"_*.deb >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	say "downloading ${#missing[@]} Debian packages (${missing[*]})"
	(cd "$dir/debs" && apt-get download "${missing[@]}" >&2)
fi

stamp=$(printf '%s\n' "${pkgs[@]}" | sort | sha256sum | cut -c1-16)-$(ls "$dir/debs" | sha256sum | cut -c1-16)
if [ "$(cat "$dir/stamp" 2>/dev/null)" != "$stamp" ]; then
	say "unpacking"
	rm -rf "$dir/root" "$dir/modules" "$dir/xen.elf" "$dir/vmlinux" "$dir/stamp"
	mkdir -p "$dir/root" "$dir/modules"
	for p in "${pkgs[@]}"; do
		deb=$(ls "$dir/debs/${p}"_*.deb | head -1)
		if [ "$p" = "$kpkg" ]; then
			tmp=$(mktemp -d)
			# Only the kernel image and the Xen modules dom0 needs.
			dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" --wildcards './boot/vmlinuz-*' './lib/modules/*/kernel/drivers/xen/*'
			find "$tmp/lib/modules" -name '*.ko*' -exec cp {} "$dir/modules/" \;
			bz=$(ls "$tmp"/boot/vmlinuz-*)
			# The bzImage carries an XZ stream (CONFIG_KERNEL_XZ): find
			# its magic and decompress it to the ELF vmlinux.
			off=$(grep -abo $'\xfd7zXZ' "$bz" | head -1 | cut -d: -f1)
			tail -c +$((off + 1)) "$bz" | xz -dc >"$dir/vmlinux.tmp" 2>/dev/null || true
			rm -rf "$tmp"
			head -c 4 "$dir/vmlinux.tmp" | grep -q $'\x7fELF' || { echo "xenbox: no ELF vmlinux in $deb" >&2; exit 1; }
			mv "$dir/vmlinux.tmp" "$dir/vmlinux"
		else
			dpkg-deb -x "$deb" "$dir/root"
		fi
	done
	for m in "$dir"/modules/*.ko.xz; do
		[ -e "$m" ] && xz -d "$m"
	done
	xen=$(ls "$dir"/root/boot/xen-4.17-amd64.gz 2>/dev/null || ls "$dir"/root/boot/xen-*.gz | head -1)
	zcat "$xen" >"$dir/xen.elf"
	echo "$stamp" >"$dir/stamp"
fi
echo 4.17 >"$dir/release"
say "assets ready in $dir"
echo "$PWD/$dir"

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
# Idempotent: a stamp names the package set the unpacked tree came from.
# Progress goes to stderr; -q silences it.
set -euo pipefail
cd "$(dirname "$0")/.."
quiet=0
[ "${1:-}" = "-q" ] && quiet=1
say() { [ $quiet -eq 1 ] || echo "xenbox: $*" >&2; }

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
say "assets ready in $dir"
echo "$PWD/$dir"

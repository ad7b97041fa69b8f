#!/usr/bin/env bash
# Prepares the real-guest harness assets in .cache/guest (never committed):
# Debian's kernel (linux-image-amd64, fetched with apt-get download) with the
# uncompressed vmlinux extracted for direct PVH boot by QEMU, and a link to
# the static busybox. Prints the directory. Idempotent and cached by kernel
# package version.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.cache/guest
mkdir -p "$dir"

pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}' || true)
if [ -z "$pkg" ]; then
	apt-get update -qq >/dev/null 2>&1 || sudo apt-get update -qq >/dev/null
	pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
fi
if [ ! -s "$dir/$pkg/vmlinux" ]; then
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && apt-get download "$pkg" >/dev/null 2>&1)
	dpkg-deb -x "$tmp"/"$pkg"_*.deb "$tmp/x"
	bz=$(ls "$tmp"/x/boot/vmlinuz-*)
	# The bzImage carries an XZ stream (CONFIG_KERNEL_XZ); find its magic
	# and decompress it to the ELF vmlinux (the kernel's extract-vmlinux
	# method). xz ignores the trailing bytes after the stream.
	off=$(grep -abo $'\xfd7zXZ' "$bz" | head -1 | cut -d: -f1)
	mkdir -p "$dir/$pkg"
	tail -c +$((off + 1)) "$bz" | xz -dc > "$dir/$pkg/vmlinux.tmp" 2>/dev/null || true
	head -c 4 "$dir/$pkg/vmlinux.tmp" | grep -q $'\x7fELF' || { echo "guest-assets: no ELF vmlinux in $bz" >&2; exit 1; }
	mv "$dir/$pkg/vmlinux.tmp" "$dir/$pkg/vmlinux"
fi
ln -sfn "$pkg/vmlinux" "$dir/vmlinux"

# Debian's NIC drivers for the real-guest NIC tests (8139cp and the mii
# library it needs for the rtl8139, e1000 for the e1000), and its virtio
# modules for the virtio-blk and virtio-net guest tests (the virtio core,
# ring, PCI transport, virtio_blk, and virtio_net with the failover and
# net_failover modules it depends on), nvme, nvme-core and what nvme-core
# needs (t10-pi, its CRC libraries and their generic crypto) for the NVMe
# guest test, and its USB and input modules for the USB tablet test
# (usbcore, the UHCI driver, the HID core, usbhid, hid-generic, evdev),
# the SCSI core, libata with the AHCI driver, the CD-ROM layer, sr_mod
# and isofs for the AHCI CD-ROM guest test, and its DRM modules for the
# display tests (drm, drm_kms_helper, ttm, drm_ttm_helper, drm_vram_helper
# and bochs for the standard VGA; drm_shmem_helper and cirrus for the
# Cirrus), from the same kernel package.
kos="mii 8139cp e1000 virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk failover net_failover virtio_net"
kos="$kos crct10dif_common crct10dif_generic crc-t10dif crc64 crc64_rocksoft_generic crc64-rocksoft t10-pi nvme-core nvme"
kos="$kos usb-common usbcore uhci-hcd hid usbhid hid-generic evdev"
kos="$kos scsi_common scsi_mod libata libahci ahci cdrom sr_mod isofs"
kos="$kos drm drm_kms_helper ttm drm_ttm_helper drm_vram_helper bochs drm_shmem_helper cirrus"
mods=""
for ko in $kos; do
	[ -s "$dir/$pkg/$ko.ko" ] || mods=1
done
if [ -n "$mods" ]; then
	mt=$(mktemp -d)
	(cd "$mt" && apt-get download "$pkg" >/dev/null 2>&1)
	dpkg-deb --fsys-tarfile "$mt"/"$pkg"_*.deb | tar -x -C "$mt" --wildcards \
		'./lib/modules/*/kernel/drivers/net/mii.ko' './lib/modules/*/kernel/drivers/net/ethernet/realtek/8139cp.ko' \
		'./lib/modules/*/kernel/drivers/net/ethernet/intel/e1000/e1000.ko' \
		'./lib/modules/*/kernel/drivers/virtio/virtio*.ko' './lib/modules/*/kernel/drivers/block/virtio_blk.ko' \
		'./lib/modules/*/kernel/drivers/net/virtio_net.ko' './lib/modules/*/kernel/drivers/net/net_failover.ko' \
		'./lib/modules/*/kernel/net/core/failover.ko' \
		'./lib/modules/*/kernel/drivers/nvme/host/nvme.ko' './lib/modules/*/kernel/drivers/nvme/host/nvme-core.ko' \
		'./lib/modules/*/kernel/block/t10-pi.ko' './lib/modules/*/kernel/lib/crc-t10dif.ko' \
		'./lib/modules/*/kernel/lib/crc64.ko' './lib/modules/*/kernel/lib/crc64-rocksoft.ko' \
		'./lib/modules/*/kernel/crypto/crct10dif_common.ko' './lib/modules/*/kernel/crypto/crct10dif_generic.ko' \
		'./lib/modules/*/kernel/crypto/crc64_rocksoft_generic.ko' \
		'./lib/modules/*/kernel/drivers/usb/common/usb-common.ko' './lib/modules/*/kernel/drivers/usb/core/usbcore.ko' \
		'./lib/modules/*/kernel/drivers/usb/host/uhci-hcd.ko' './lib/modules/*/kernel/drivers/hid/hid.ko' \
		'./lib/modules/*/kernel/drivers/hid/usbhid/usbhid.ko' './lib/modules/*/kernel/drivers/hid/hid-generic.ko' \
		'./lib/modules/*/kernel/drivers/input/evdev.ko' \
		'./lib/modules/*/kernel/drivers/scsi/scsi_common.ko' './lib/modules/*/kernel/drivers/scsi/scsi_mod.ko' \
		'./lib/modules/*/kernel/drivers/ata/libata.ko' './lib/modules/*/kernel/drivers/ata/libahci.ko' \
		'./lib/modules/*/kernel/drivers/ata/ahci.ko' './lib/modules/*/kernel/drivers/cdrom/cdrom.ko' \
		'./lib/modules/*/kernel/drivers/scsi/sr_mod.ko' './lib/modules/*/kernel/fs/isofs/isofs.ko' \
		'./lib/modules/*/kernel/drivers/gpu/drm/drm.ko' './lib/modules/*/kernel/drivers/gpu/drm/drm_kms_helper.ko' \
		'./lib/modules/*/kernel/drivers/gpu/drm/ttm/ttm.ko' './lib/modules/*/kernel/drivers/gpu/drm/drm_ttm_helper.ko' \
		'./lib/modules/*/kernel/drivers/gpu/drm/drm_vram_helper.ko' './lib/modules/*/kernel/drivers/gpu/drm/drm_shmem_helper.ko' \
		'./lib/modules/*/kernel/drivers/gpu/drm/tiny/bochs.ko' './lib/modules/*/kernel/drivers/gpu/drm/tiny/cirrus.ko'
	# -n: modules already there stay (a test may be loading them).
	find "$mt/lib" -name '*.ko' -exec cp -n {} "$dir/$pkg/" \;
	rm -rf "$mt"
fi
for ko in $kos; do
	[ -s "$dir/$pkg/$ko.ko" ] || { echo "guest-assets: no $ko.ko in $pkg" >&2; exit 1; }
	ln -sfn "$pkg/$ko.ko" "$dir/$ko.ko"
done

# The guest test driver (tools/guestdrv), built against the matching
# headers, cached by kernel and source hash.
hdr=${pkg/linux-image-/linux-headers-}
if ! dpkg-query -W -f='${Status}' "$hdr" 2>/dev/null | grep -q "install ok installed"; then
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$hdr" >/dev/null
fi
sum=$(cat tools/guestdrv/godmtest.c tools/guestdrv/Kbuild | sha256sum | cut -c1-16)
ko="$dir/$pkg/godmtest-$sum.ko"
if [ ! -s "$ko" ]; then
	b=$(mktemp -d)
	cp tools/guestdrv/godmtest.c tools/guestdrv/Kbuild "$b/"
	kver=${pkg#linux-image-}
	make -s -C "/usr/src/linux-headers-$kver" M="$b" modules >/dev/null 2>&1 ||
		{ echo "guest-assets: building tools/guestdrv failed" >&2; rm -rf "$b"; exit 1; }
	mv "$b/godmtest.ko" "$ko"
	rm -rf "$b"
fi
ln -sfn "${ko#$dir/}" "$dir/godmtest.ko"
ln -sfn /bin/busybox "$dir/busybox"
echo "$PWD/$dir"

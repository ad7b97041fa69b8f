package guest

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"sort"

	"github.com/u-root/u-root/pkg/cpio"
)

// initScript is the guest's /init: it mounts the pseudo file systems, runs
// /test.sh, reports its exit status on the console and powers off.
const initScript = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo GODM-GUEST-UP
sh /test.sh
echo "GODM-GUEST-EXIT $?"
poweroff -f
`

// BuildInitramfs returns a gzipped newc cpio archive holding busybox (read
// from busyboxPath), the init script, the test script and extra files
// (path → contents; mode 0755).
func BuildInitramfs(busyboxPath, script string, extra map[string][]byte) ([]byte, error) {
	bb, err := os.ReadFile(busyboxPath)
	if err != nil {
		return nil, fmt.Errorf("guest: busybox: %w", err)
	}
	recs := []cpio.Record{
		cpio.Directory("bin", 0o755),
		cpio.Directory("dev", 0o755),
		cpio.Directory("proc", 0o755),
		cpio.Directory("sys", 0o755),
		cpio.Directory("tmp", 0o1777),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.StaticFile("bin/busybox", string(bb), 0o755),
		cpio.StaticFile("init", initScript, 0o755),
		cpio.StaticFile("test.sh", script, 0o755),
	}
	names := make([]string, 0, len(extra))
	for n := range extra {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		recs = append(recs, cpio.StaticFile(n, string(extra[n]), 0o755))
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	w := cpio.Newc.Writer(zw)
	if err := cpio.WriteRecordsAndDirs(w, recs); err != nil {
		return nil, fmt.Errorf("guest: initramfs: %w", err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		return nil, fmt.Errorf("guest: initramfs: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// cmosBootMark is the CMOS RAM byte RebootOnce uses: one that QEMU's pc
// machine (hw/i386/pc.c fills 0x0f-0x3d and 0x5b-0x5f for the firmware)
// does not assign. QEMU's RTC keeps its RAM across a system reset.
const cmosBootMark = 0x6e

// RebootOnce returns a test script that runs first, then reboots the guest
// (reboot -f: the kernel's reset, which QEMU turns into a system reset),
// and runs second in the next boot; the exit status of second is the
// script's. The boot is told apart by a mark in CMOS RAM, so it needs
// Config.Reboot.
func RebootOnce(first, second string) string {
	return fmt.Sprintf(`
cmos() { printf "\\$(printf %%o %d)" | dd of=/dev/port bs=1 seek=112 count=1 2>/dev/null; }
cmos; mark=$(dd if=/dev/port bs=1 skip=113 count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
if [ "$mark" != 71 ]; then
	echo "GODM-BOOT 1"
	(
%s
	)
	cmos; printf '\107' | dd of=/dev/port bs=1 seek=113 count=1 conv=notrunc 2>/dev/null
	echo GODM-REBOOT
	reboot -f
	sleep 30
	exit 99
fi
echo "GODM-BOOT 2"
cmos; printf '\000' | dd of=/dev/port bs=1 seek=113 count=1 conv=notrunc 2>/dev/null
%s
`, cmosBootMark, first, second)
}

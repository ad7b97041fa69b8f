package xenbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Scenario is a piece of dom0 shell run by /init after the toolstack is
// up; it passes when it exits 0. Its output is prefixed "[Name] " on the
// console. It may print "XENBOX-FACT key=value" lines, which end up in
// the result's fields.
type Scenario struct {
	Name   string
	Script string
}

// Dom0 builds the dom0 root file system: busybox, Debian's Xen tools (4.17 or 4.20)
// and firmware (the unpacked packages, without documentation) with their
// shared-library closure from the host, the dom0 kernel's Xen modules,
// the files in extra (archive path -> host path, e.g. static test
// binaries) and an /init that brings up the toolstack and runs the
// scenarios in order. hostLibDirs are searched for libraries the
// packages do not carry (the host is Debian bookworm too).
func Dom0(a Assets, extra map[string]string, scenarios []Scenario, hostLibDirs []string) (*Initramfs, error) {
	f := NewInitramfs()
	skip := func(rel string) bool {
		return rel == "boot" || strings.HasPrefix(rel, "usr/share/doc") || strings.HasPrefix(rel, "usr/share/man") ||
			strings.Contains(rel, "/python") || strings.Contains(rel, "xenfsimage") || strings.HasSuffix(rel, "pygrub") || strings.HasPrefix(rel, "usr/share/lintian")
	}
	if err := f.Tree("", a.Root(), skip); err != nil {
		return nil, err
	}
	for _, m := range []string{"xenfs", "xen-privcmd", "xen-evtchn", "xen-gntdev", "xen-gntalloc"} {
		f.File("lib/modules/"+m+".ko", filepath.Join(a.Modules(), m+".ko"), 0o644)
	}
	// pciback is there for scenarios that hand a PCI function to a
	// guest; /init does not load it.
	if p := filepath.Join(a.Modules(), "xen-pciback.ko"); fileExists(p) {
		f.File("lib/modules/xen-pciback.ko", p, 0o644)
	}
	for dst, src := range extra {
		f.File(dst, src, 0o755)
	}
	// xl create aborts without libgcc_s (glibc loads it for thread
	// cancellation).
	for _, d := range hostLibDirs {
		if p := filepath.Join(d, "libgcc_s.so.1"); fileExists(p) {
			f.File(filepath.Join(LibraryDirs[0], "libgcc_s.so.1"), p, 0o644)
			break
		}
	}
	// qemu-system-xen reads a keymap even with -vnc none; the host's
	// qemu-system-data (a dependency of qemu-system-x86, which runs the
	// box) has it.
	if p := "/usr/share/qemu/keymaps/en-us"; fileExists(p) {
		f.File(p, p, 0o644)
	}
	if err := f.AddLibraryClosure(hostLibDirs); err != nil {
		return nil, err
	}
	// sbin: busybox --install -s puts applets such as ip there, and a
	// missing directory leaves them out of PATH (busybox's own shell
	// runs its applets anyway; bash, for Debian's hotplug scripts, does
	// not).
	for _, d := range []string{"proc", "sys", "dev", "run", "tmp", "sbin", "var/log/xen", "var/lib/xen", "var/lib/xenstored", "etc/xen"} {
		f.Dir(d)
	}
	f.Symlink("var/run", "/run")
	bin, err := a.XenBin()
	if err != nil {
		return nil, err
	}
	f.Bytes("init", []byte(InitScript(bin, scenarios)), 0o755)
	return f, nil
}

// InitScript is dom0's /init: mounts, the Xen modules, xenstored,
// xen-init-dom0 and xenconsoled (REAL-XEN), then the scenarios, each
// between XENBOX-BEGIN and XENBOX-RESULT markers, then XENBOX-DONE.
// xenBin is the release's tool directory (Assets.XenBin).
func InitScript(xenBin string, scenarios []Scenario) string {
	var b strings.Builder
	b.WriteString(`#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/xenbox/bin:/` + xenBin + `:/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mkdir -p /run/xen /run/xenstored /var/log/xen/console
fail() { echo "XENBOX-RESULT name=boot status=fail why=$1"; echo XENBOX-DONE; poweroff -f; sleep 1000; }
for m in xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xenfs; do
	insmod /lib/modules/$m.ko || fail insmod-$m
done
mkdir -p /proc/xen
mount -t xenfs xenfs /proc/xen || fail xenfs
xenstored --pid-file /run/xenstored.pid || fail xenstored
i=0
while [ ! -S /run/xenstored/socket ]; do
	i=$((i+1)); [ $i -gt 300 ] && fail xenstored-socket; sleep 0.1
done
xen-init-dom0 || fail xen-init-dom0
xenconsoled --log=guest || fail xenconsoled
# The scenarios' output shares dom0's console with the kernel's: keep
# kernel messages (an "hrtimer: interrupt took" under load) from landing
# in the middle of a relayed line.
dmesg -n 1
echo XENBOX-UP
# gone DOMID SECONDS: wait until Xen no longer lists the domain.
gone() {
	i=0
	while xl list "$1" >/dev/null 2>&1; do
		i=$((i+1)); [ $i -gt $(($2*5)) ] && return 1; sleep 0.2
	done
	return 0
}
# godmgone SECONDS: wait until no godm process runs.
godmgone() {
	i=0
	while pidof godm >/dev/null; do
		i=$((i+1)); [ $i -gt $(($1*5)) ] && return 1; sleep 0.2
	done
	return 0
}
# waitfor FILE PATTERN SECONDS
waitfor() {
	i=0
	while ! grep -q "$2" "$1" 2>/dev/null; do
		i=$((i+1)); [ $i -gt $(($3*5)) ] && return 1; sleep 0.2
	done
	return 0
}
`)
	for _, s := range scenarios {
		fmt.Fprintf(&b, "echo 'XENBOX-BEGIN name=%s'\n", s.Name)
		// The output goes to the console as it comes (prefixed) and to a
		// file for the facts; the exit status through a file, as a
		// pipeline's status is its last command's.
		fmt.Fprintf(&b, "( ( %s\n) 2>&1; echo $? >/tmp/%s.rc ) | tee /tmp/%s.out | sed 's/^/[%s] /'\n", s.Script, s.Name, s.Name, s.Name)
		fmt.Fprintf(&b, "rc=$(cat /tmp/%s.rc 2>/dev/null || echo 255)\n", s.Name)
		fmt.Fprintf(&b, "facts=$(sed -n 's/^XENBOX-FACT //p' /tmp/%s.out | tr '\\n' ' ')\n", s.Name)
		fmt.Fprintf(&b, "if [ $rc -eq 0 ]; then st=pass; else st=fail; fi\n")
		fmt.Fprintf(&b, "echo \"XENBOX-RESULT name=%s status=$st rc=$rc $facts\"\n", s.Name)
	}
	b.WriteString("xl list\necho XENBOX-DONE\nsleep 2\npoweroff -f\n")
	return b.String()
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

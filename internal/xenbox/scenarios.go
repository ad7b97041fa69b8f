package xenbox

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Paths inside dom0.
const (
	GodmPath    = "/xenbox/bin/godm"
	DMWrapPath  = "/xenbox/bin/dmwrap"
	HyptestPath = "/xenbox/bin/hyptest.test"
	ProbeFWPath = "/xenbox/fw/probe.elf"
	SpinFWPath  = "/xenbox/fw/spin.elf"
	// QEMUXenPath is Debian's qemu-system-xen.
	QEMUXenPath = "/usr/libexec/xen-qemu-system-i386"
)

// GuestConfig is an xl configuration of a small HVM guest whose firmware
// is fw and whose device model is dmwrap in the given mode. vkb_device = 0
// spares the ~25 s wait for a vkbd backend; no display (REAL-XEN). Only
// a power-off destroys the domain: after a crash or reboot it stays, so
// a scenario waiting for the guest's end fails.
func GuestConfig(name, fw, mode string) string {
	return fmt.Sprintf(`name = "%s"
type = "hvm"
memory = 32
vcpus = 1
firmware_override = "%s"
device_model_version = "qemu-xen"
device_model_override = "%s"
device_model_args = [ "-godm-mode=%s" ]
vkb_device = 0
vnc = 0
sdl = 0
on_poweroff = "destroy"
on_reboot = "preserve"
on_crash = "preserve"
`, name, fw, DMWrapPath, mode)
}

func writeCfg(name, fw, mode string) string {
	return fmt.Sprintf("cat > /tmp/%s.cfg <<'EOF'\n%sEOF\n", name, GuestConfig(name, fw, mode))
}

// HyptestScenario runs the hyp/hyptest conformance suite against a
// paused HVM guest whose device model is godm: the suite's own ioreq
// server lives beside godm's on the same domain (Xen allows eight).
func HyptestScenario() Scenario {
	return Scenario{Name: "hyptest", Script: writeCfg("hyptest", SpinFWPath, "serve") + `
xl create -p /tmp/hyptest.cfg || exit 1
d=$(xl domid hyptest)
echo "XENBOX-FACT domid=$d"
GODM_XEN_TEST_DOMID=$d ` + HyptestPath + ` -test.run 'RealXen' -test.v -test.timeout 180s
rc=$?
xl destroy hyptest
gone $d 30 || { echo "domain $d still listed after xl destroy"; xl list; rc=1; }
exit $rc`}
}

// FirmwareScenario creates an HVM guest with real xl whose device model
// is godm (through dmwrap) and whose firmware is the probe firmware: it
// passes when the guest powers itself off and godm is gone afterwards;
// what the firmware read is checked by the harness from the relayed
// COM1 output.
func FirmwareScenario() Scenario {
	return Scenario{Name: "firmware", Script: writeCfg("fw", ProbeFWPath, "serve") + `
xl create -p /tmp/fw.cfg || exit 1
d=$(xl domid fw)
echo "XENBOX-FACT domid=$d"
xl unpause $d || exit 1
gone $d 180 || { echo "the guest did not power off"; xl list; xl destroy $d; exit 1; }
godmgone 10 || { echo "godm still runs after the guest ended"; exit 1; }
exit 0`}
}

// DestroyScenario starts godm by hand on a running guest (its libxl
// device model only did the handshake), destroys the guest with xl and
// checks that godm notices and exits and that the domain is gone from
// Xen, not left a zombie by godm's mappings.
func DestroyScenario() Scenario {
	return Scenario{Name: "destroy", Script: writeCfg("dest", SpinFWPath, "idle") + `
xl create -p /tmp/dest.cfg || exit 1
d=$(xl domid dest)
echo "XENBOX-FACT domid=$d"
( ` + GodmPath + ` serve -domid $d -serial stdio -v & echo $! >/tmp/dest-godm.pid; wait $!; echo "GODM-EXIT rc=$?" ) >/tmp/dest-godm.log 2>&1 &
if ! waitfor /tmp/dest-godm.log "godm: serving" 60; then
	echo "godm did not start"; cat /tmp/dest-godm.log; xl destroy $d; exit 1
fi
xl unpause $d
if ! waitfor /tmp/dest-godm.log "FW SPIN" 60; then
	echo "no output from the guest"; cat /tmp/dest-godm.log; xl destroy $d; exit 1
fi
t0=$(cut -d' ' -f1 /proc/uptime)
xl destroy $d
t1=$(cut -d' ' -f1 /proc/uptime)
echo "XENBOX-FACT xl_destroy=$(awk "BEGIN{print $t1-$t0}")s"
rc=0
if waitfor /tmp/dest-godm.log "GODM-EXIT" 30; then
	t2=$(cut -d' ' -f1 /proc/uptime)
	echo "XENBOX-FACT godm_exit_after_xl=$(awk "BEGIN{print $t2-$t1}")s"
else
	echo "godm did not exit within 30 s of xl destroy"; rc=1
	kill -9 $(cat /tmp/dest-godm.pid)
fi
gone $d 30 || { echo "domain $d still in Xen"; xl list; rc=1; }
cat /tmp/dest-godm.log
exit $rc`}
}

// QEMUFirmwareScenario runs the probe firmware with QEMU's own Xen device
// model (qemu-system-xen, started by libxl natively; -L finds the Cirrus
// VGA BIOS libxl's default display asks for in SeaBIOS's directory). The
// guest's COM1 goes to a file, relayed afterwards prefixed
// "qemu-dm[<domid>] ". It passes when the guest powers itself off.
func QEMUFirmwareScenario() Scenario {
	cfg := fmt.Sprintf(`name = "qfw"
type = "hvm"
memory = 32
vcpus = 1
firmware_override = "%s"
device_model_version = "qemu-xen"
device_model_override = "%s"
device_model_args = [ "-L", "/usr/share/seabios" ]
serial = "file:/tmp/qfw.serial"
vkb_device = 0
vnc = 0
sdl = 0
on_poweroff = "destroy"
on_reboot = "preserve"
on_crash = "preserve"
`, ProbeFWPath, QEMUXenPath)
	return Scenario{Name: "qemu", Script: "cat > /tmp/qfw.cfg <<'EOF'\n" + cfg + `EOF
xl create -p /tmp/qfw.cfg || { cat /var/log/xen/qemu-dm-qfw.log; exit 1; }
d=$(xl domid qfw)
echo "XENBOX-FACT domid=$d"
xl unpause $d || exit 1
rc=0
gone $d 180 || { echo "the guest did not power off under QEMU"; xl list; xl destroy $d; rc=1; }
sed "s/^/qemu-dm[$d] /" /tmp/qfw.serial
sed 's/^/qemu-dm-log: /' /var/log/xen/qemu-dm-qfw.log
exit $rc`}
}

// LibxlConfig is an xl configuration whose device model is godm itself
// (no dmwrap): libxl runs it with qemu-xen's command line and does its
// own handshake with it (issue 12, docs/xl.md). extra is appended.
func LibxlConfig(name, fw, extra string) string {
	return fmt.Sprintf(`name = "%s"
type = "hvm"
memory = 32
vcpus = 1
firmware_override = "%s"
device_model_version = "qemu-xen"
device_model_override = "%s"
vkb_device = 0
vnc = 0
sdl = 0
on_poweroff = "destroy"
on_reboot = "preserve"
on_crash = "preserve"
%s`, name, fw, GodmPath, extra)
}

// LibxlScenario runs the xl life cycle with godm as libxl's device model
// (device_model_override = godm, vga="none", COM1 to a file): xl create
// -p (libxl waits for device-model/<domid>/state = running, then
// query-chardev), xl list, xl qemu-monitor-command (human-monitor-command
// through QMP), xl unpause (the spin firmware's "FW SPIN" on COM1 through
// godm's UART), xl pause and unpause (the domain; godm keeps running),
// xl destroy (libxl's SIGHUP; godm exits, the domain is gone). godm
// deprivileges itself though libxl did not ask (no dm_restrict): its
// seccomp filter and no_new_privs are checked.
func LibxlScenario() Scenario {
	cfg := LibxlConfig("lx", SpinFWPath, `vga = "none"
serial = "file:/tmp/lx-com1.log"
maxvcpus = 2
`)
	return Scenario{Name: "libxl", Script: fmt.Sprintf("cat > /tmp/lx.cfg <<'EOF'\n%sEOF\n", cfg) + `
log=/var/log/xen/qemu-dm-lx.log
fail() { echo "$1"; echo "--- $log"; cat $log; xl list; exit 1; }
t0=$(cut -d' ' -f1 /proc/uptime)
xl create -p /tmp/lx.cfg || fail "xl create -p failed"
t1=$(cut -d' ' -f1 /proc/uptime)
d=$(xl domid lx)
echo "XENBOX-FACT domid=$d"
# xl create -p includes libxl's spawn of godm and its readiness wait.
echo "XENBOX-FACT xl_create_p=$(awk "BEGIN{print $t1-$t0}")s"
pid=$(pidof godm) || fail "no godm process"
echo "XENBOX-FACT godm_rss=$(awk '/^VmRSS:/{print $2 $3}' /proc/$pid/status)"
echo "XENBOX-FACT seccomp=$(awk '/^Seccomp:/{print $2}' /proc/$pid/status) no_new_privs=$(awk '/^NoNewPrivs:/{print $2}' /proc/$pid/status)"
grep -q '^Seccomp:[[:space:]]*2$' /proc/$pid/status || fail "godm runs without its seccomp filter"
grep -q '^NoNewPrivs:[[:space:]]*1$' /proc/$pid/status || fail "godm runs without no_new_privs"
xl list lx || fail "xl list lx failed"
st=$(xl qemu-monitor-command lx "info status") || fail "xl qemu-monitor-command failed"
echo "XENBOX-FACT hmp_status=$(echo $st | tr -d '\r' | tr ' ' '_')"
# xl vcpu-set: libxl's query-cpus-fast, query-hotpluggable-cpus and
# device_add of vCPU 1 (maxvcpus = 2, vcpus = 1), then cpu/1/availability.
xl vcpu-set $d 2 || fail "xl vcpu-set $d 2 failed"
cpus=$(xl qemu-monitor-command lx "info cpus") || fail "xl qemu-monitor-command info cpus failed"
echo "XENBOX-FACT hmp_cpus=$(echo "$cpus" | grep -c 'CPU #')"
echo "XENBOX-FACT cpu1=$(xenstore-read /local/domain/$d/cpu/1/availability)"
xl unpause $d || fail "xl unpause failed"
waitfor /tmp/lx-com1.log "FW SPIN" 60 || fail "no FW SPIN on COM1 (the serial file:)"
xl pause $d || fail "xl pause failed"
xl unpause $d || fail "xl unpause after pause failed"
xl destroy $d || fail "xl destroy failed"
gone $d 30 || fail "domain $d still listed after xl destroy"
godmgone 10 || fail "godm still runs after xl destroy"
echo "--- $log"; cat $log
exit 0`}
}

// LibxlRefusedScenario is a config godm cannot serve yet (a sound
// card): xl create must fail, and the device model's log must hold
// godm's one line naming the xl.cfg key to change.
func LibxlRefusedScenario() Scenario {
	cfg := LibxlConfig("lxr", SpinFWPath, "soundhw = \"hda\"\n")
	return Scenario{Name: "libxl-refused", Script: fmt.Sprintf("cat > /tmp/lxr.cfg <<'EOF'\n%sEOF\n", cfg) + `
log=/var/log/xen/qemu-dm-lxr.log
if xl create -p /tmp/lxr.cfg; then
	echo "xl create succeeded with a sound card"; xl destroy lxr; exit 1
fi
grep -q 'godm: -.*: no sound device yet: remove soundhw=' $log || { echo "no refusal line in $log:"; cat $log; exit 1; }
gone lxr 30 || { echo "libxl left the domain after the failed create"; xl list; exit 1; }
exit 0`}
}

// LibxlRestrictScenario is dm_restrict=1 with godm itself as the device
// model, a pty serial port and xen_platform_pci=0: libxl pre-opens the
// QMP socket, passes -S, -xen-domid-restrict, -chroot and -runas, and
// requires query-status to answer "prelaunch"; its post-configuration
// writes serial/0/tty from query-chardev. The guest's COM1 output is
// read from that pty; godm must run as the qemu user inside the chroot,
// under its seccomp filter and no_new_privs (package sandbox).
func LibxlRestrictScenario() Scenario {
	cfg := LibxlConfig("lxs", SpinFWPath, `vga = "none"
serial = "pty"
xen_platform_pci = 0
dm_restrict = 1
`)
	return Scenario{Name: "libxl-restrict", Script: fmt.Sprintf("cat > /tmp/lxs.cfg <<'EOF'\n%sEOF\n", cfg) + `
log=/var/log/xen/qemu-dm-lxs.log
fail() { echo "$1"; echo "--- $log"; cat $log; xl list; exit 1; }
# libxl runs a restricted device model as a qemu user (xl.cfg(5)).
grep -q '^xen-qemuuser-shared:' /etc/passwd 2>/dev/null || echo 'xen-qemuuser-shared:x:997:997:godm:/:/bin/false' >> /etc/passwd
xl create -p /tmp/lxs.cfg || fail "xl create -p failed"
d=$(xl domid lxs)
echo "XENBOX-FACT domid=$d"
tty=$(xenstore-read /local/domain/$d/serial/0/tty) || fail "no serial/0/tty"
echo "XENBOX-FACT tty=$tty"
pid=$(pidof godm) || fail "no godm process"
echo "XENBOX-FACT uid=$(awk '/^Uid:/{print $2}' /proc/$pid/status)"
echo "XENBOX-FACT root=$(readlink /proc/$pid/root)"
echo "XENBOX-FACT seccomp=$(awk '/^Seccomp:/{print $2}' /proc/$pid/status) no_new_privs=$(awk '/^NoNewPrivs:/{print $2}' /proc/$pid/status)"
grep -q '^Seccomp:[[:space:]]*2$' /proc/$pid/status || fail "godm runs without its seccomp filter"
grep -q '^NoNewPrivs:[[:space:]]*1$' /proc/$pid/status || fail "godm runs without no_new_privs"
cat $tty > /tmp/lxs-com1.log 2>&1 &
catpid=$!
xl unpause $d || fail "xl unpause failed"
waitfor /tmp/lxs-com1.log "FW SPIN" 60 || fail "no FW SPIN on the pty $tty"
xl destroy $d || fail "xl destroy failed"
kill $catpid 2>/dev/null
gone $d 30 || fail "domain $d still listed after xl destroy"
godmgone 10 || fail "godm still runs after xl destroy"
echo "--- $log"; cat $log
exit 0`}
}

// QEMUReferenceScenario is the libxl scenario's config with libxl's
// default device model, QEMU-xen 7.2 (qemu-system-xen), instead of
// godm: the same xl create -p time (spawn + readiness) and the device
// model's RSS, for comparison with godm's.
func QEMUReferenceScenario() Scenario {
	cfg := strings.Replace(LibxlConfig("lq", SpinFWPath, `vga = "none"
serial = "file:/tmp/lq-com1.log"
maxvcpus = 2
`), "device_model_override = \""+GodmPath+"\"\n", "", 1)
	return Scenario{Name: "qemu-ref", Script: fmt.Sprintf("cat > /tmp/lq.cfg <<'EOF'\n%sEOF\n", cfg) + `
log=/var/log/xen/qemu-dm-lq.log
fail() { echo "$1"; echo "--- $log"; cat $log; xl list; exit 1; }
[ -x /usr/libexec/xen-qemu-system-i386 ] || fail "no QEMU-xen in dom0 (qemu-system-xen)"
# QEMU loads the VNC keymap even with -vnc none; the box leaves out
# qemu-system-data, so an empty en-us (no key mappings) stands in.
mkdir -p /usr/share/qemu/keymaps
[ -f /usr/share/qemu/keymaps/en-us ] || : > /usr/share/qemu/keymaps/en-us
t0=$(cut -d' ' -f1 /proc/uptime)
xl create -p /tmp/lq.cfg || fail "xl create -p failed"
t1=$(cut -d' ' -f1 /proc/uptime)
d=$(xl domid lq)
echo "XENBOX-FACT domid=$d"
echo "XENBOX-FACT xl_create_p=$(awk "BEGIN{print $t1-$t0}")s"
pid=$(pidof xen-qemu-system-i386) || fail "no QEMU process"
echo "XENBOX-FACT qemu_rss=$(awk '/^VmRSS:/{print $2 $3}' /proc/$pid/status)"
# The same xl vcpu-set on QEMU-xen, for reference (recorded, not required).
xl vcpu-set $d 2 && echo "XENBOX-FACT vcpu_set=ok" || echo "XENBOX-FACT vcpu_set=failed"
echo "XENBOX-FACT hmp_cpus=$(xl qemu-monitor-command lq "info cpus" | grep -c 'CPU #')"
echo "XENBOX-FACT cpu1=$(xenstore-read /local/domain/$d/cpu/1/availability)"
xl unpause $d || fail "xl unpause failed"
waitfor /tmp/lq-com1.log "FW SPIN" 60 || fail "no FW SPIN on COM1"
xl destroy $d || fail "xl destroy failed"
gone $d 30 || fail "domain $d still listed after xl destroy"
echo "--- $log"; cat $log
exit 0`}
}

// LibxlDiskScenario boots a guest from godm's IDE disk under libxl with
// its own firmware: hvmloader and SeaBIOS (no firmware_override). The
// disks come as the -drive/-device strings libxl writes for disk=[...]
// (libxl_dm.c), given through device_model_args_hvm: a disk=[...] entry
// would also make libxl attach a PV backend (vbd), which this dom0 has
// no blkback, loop hotplug or qdisk for, so xl create fails before the
// device model starts. SeaBIOS probes godm's PIIX3 IDE (ATA IDENTIFY on
// the disk, ATAPI on the CD-ROM drive, whose blank medium it tries
// first), loads the disk's MBR, whose code prints BootMBRLine and then
// the disk's second sector read through INT 13h (BootSector2) on COM1.
// Then xl destroy, godm gone.
func LibxlDiskScenario() Scenario {
	cfg := strings.Replace(LibxlConfig("ld", "", `vga = "none"
serial = "file:/tmp/ld-com1.log"
boot = "dc"
device_model_args_hvm = [ "-drive", "file=`+BootDiskPath+`,if=ide,index=0,media=disk,format=raw,cache=writeback",
  "-drive", "if=none,readonly=on,id=ide-5632,file=/tmp/ld-cd.iso,format=raw",
  "-device", "ide-cd,id=ide-5632,drive=ide-5632,bus=ide.1,unit=0" ]
`), "firmware_override = \"\"\n", "", 1)
	return Scenario{Name: "libxl-disk", Script: fmt.Sprintf("cat > /tmp/ld.cfg <<'EOF'\n%sEOF\n", cfg) + `
log=/var/log/xen/qemu-dm-ld.log
fail() { echo "$1"; echo "--- $log"; cat $log; echo "--- COM1"; cat /tmp/ld-com1.log; xl list; exit 1; }
dd if=/dev/zero of=/tmp/ld-cd.iso bs=2048 count=64 2>/dev/null || fail "no CD image"
t0=$(cut -d' ' -f1 /proc/uptime)
xl create -p /tmp/ld.cfg || fail "xl create -p failed"
d=$(xl domid ld)
echo "XENBOX-FACT domid=$d"
xl unpause $d || fail "xl unpause failed"
waitfor /tmp/ld-com1.log "` + BootSector2 + `" 300 || fail "SeaBIOS did not boot from godm's IDE disk"
t1=$(cut -d' ' -f1 /proc/uptime)
echo "XENBOX-FACT boot=$(awk "BEGIN{print $t1-$t0}")s"
echo "XENBOX-FACT com1=$(tr -d '\r' < /tmp/ld-com1.log | tr '\n' '|')"
xl destroy $d || fail "xl destroy failed"
gone $d 30 || fail "domain $d still listed after xl destroy"
i=0
while pidof godm >/dev/null; do
	i=$((i+1)); [ $i -gt 50 ] && fail "godm still runs after xl destroy"; sleep 0.2
done
echo "--- $log"; cat $log
exit 0`}
}

// LibxlAHCIDiskScenario is LibxlDiskScenario on the AHCI controller: the
// strings libxl_dm.c writes for hdtype="ahci" with one disk (-device
// ahci,id=ahci0, then if=none,id=ahcidisk-0 and ide-hd,bus=ahci0.0,unit=0),
// given through device_model_args_hvm for the reason LibxlDiskScenario
// says. (hdtype="ahci" itself cannot be used: the box's first run showed
// libxl's own -device ahci coming after device_model_args_hvm, so the
// disk named a bus that did not exist yet, which QEMU refuses as godm
// does.) No
// CD-ROM drive: SeaBIOS finds the IDE controller empty, probes godm's
// AHCI port (IDENTIFY through a command list, READ DMA EXT through a
// PRDT), loads the MBR and the boot sector prints BootMBRLine and the
// second sector read through INT 13h (BootSector2) on COM1.
func LibxlAHCIDiskScenario() Scenario {
	cfg := strings.Replace(LibxlConfig("la", "", `vga = "none"
serial = "file:/tmp/la-com1.log"
boot = "c"
device_model_args_hvm = [ "-device", "ahci,id=ahci0",
  "-drive", "file=`+BootDiskPath+`,if=none,id=ahcidisk-0,format=raw,cache=writeback",
  "-device", "ide-hd,bus=ahci0.0,unit=0,drive=ahcidisk-0" ]
`), "firmware_override = \"\"\n", "", 1)
	return Scenario{Name: "libxl-ahci-disk", Script: fmt.Sprintf("cat > /tmp/la.cfg <<'EOF'\n%sEOF\n", cfg) + `
log=/var/log/xen/qemu-dm-la.log
fail() { echo "$1"; echo "--- $log"; cat $log; echo "--- COM1"; cat /tmp/la-com1.log; xl list; exit 1; }
t0=$(cut -d' ' -f1 /proc/uptime)
xl create -p /tmp/la.cfg || fail "xl create -p failed"
d=$(xl domid la)
echo "XENBOX-FACT domid=$d"
xl unpause $d || fail "xl unpause failed"
waitfor /tmp/la-com1.log "` + BootSector2 + `" 300 || fail "SeaBIOS did not boot from godm's AHCI disk"
t1=$(cut -d' ' -f1 /proc/uptime)
echo "XENBOX-FACT boot=$(awk "BEGIN{print $t1-$t0}")s"
echo "XENBOX-FACT com1=$(tr -d '\r' < /tmp/la-com1.log | tr '\n' '|')"
xl destroy $d || fail "xl destroy failed"
gone $d 30 || fail "domain $d still listed after xl destroy"
i=0
while pidof godm >/dev/null; do
	i=$((i+1)); [ $i -gt 50 ] && fail "godm still runs after xl destroy"; sleep 0.2
done
echo "--- $log"; cat $log
exit 0`}
}

// EnvVGAP2M set to "off" runs the stdvga and cirrus scenarios with
// trapped VRAM (-global DRIVER.x-godm-vram-p2m=off, the opt-out; godm's
// default is VRAM in the p2m): a comparison run.
const EnvVGAP2M = "GODM_XENBOX_VGA_P2M"

// VNCCapPath is the box's VNC client (internal/xenbox/vnccap).
const VNCCapPath = "/xenbox/bin/vnccap"

// EnvShot names a file TestRealXen writes the stdvga scenario's VNC
// picture (PNG) to.
const EnvShot = "GODM_XENBOX_SHOT"

// VNCCapPNG reassembles the PNG vnccap -png printed ("VNCCAP png
// <base64 chunk>" lines, in order) among a boot's console lines.
func VNCCapPNG(lines []Line) ([]byte, error) {
	var enc strings.Builder
	for _, l := range lines {
		if _, chunk, ok := strings.Cut(l.Text, "VNCCAP png "); ok {
			enc.WriteString(strings.TrimSpace(chunk))
		}
	}
	if enc.Len() == 0 {
		return nil, errors.New("xenbox: no VNCCAP png lines")
	}
	return base64.StdEncoding.DecodeString(enc.String())
}

// StdVGAScenario is vga="stdvga" vnc=1 (with a password) and the real
// firmware, hvmloader and SeaBIOS, with godm as libxl's device model:
// SeaBIOS finds the VGA BIOS in godm's ROM BAR and runs it, which sets
// text mode through the legacy ports and draws SeaBIOS's banner through
// the 0xa0000 window, all on Xen's ioreq path. libxl records the VNC port
// from query-vnc (console/vnc-port) and sends change-vnc-password; the
// box's VNC client logs in with the password and its picture must equal
// godm's screendump (HMP, through xl qemu-monitor-command) and show
// SeaBIOS's banner on the first line: "SeaBIOS (version ..." as cells
// with ink, "#######.########.#...". godm's sandbox is off here: HMP's
// screendump writes a file in dom0's file system, which a sandboxed godm
// (an empty root, no open after the drop) cannot; VNC itself works under
// the sandbox.
//
// The domain also has usb=1 usbdevice="tablet" (a usual line of xl
// configs with VNC): libxl adds -usb -usbdevice tablet, godm puts its
// UHCI at 00:01.2 (HMP info pci must show 8086:7020 there) with the
// tablet on port 1, and SeaBIOS's USB initialisation walks its schedule
// on the way to the banner.
//
// The VGA's VRAM is guest RAM in the p2m here (godm's default):
// hvmloader's BAR programming moves its frames to the LFB, and godm's log
// must say so (XENBOX-FACT vram_p2m, a count). At the banner the domain
// is saved and restored (vgaSaveRestore).
func StdVGAScenario() Scenario {
	return vgaScenario("stdvga", "lv", "vga = \"stdvga\"\nusb = 1\nusbdevice = \"tablet\"\n", `xl qemu-monitor-command lv "info pci" >/tmp/lv-pci.txt 2>&1 || fail "HMP info pci failed"
cat /tmp/lv-pci.txt
grep -A1 'device   1, function 2:' /tmp/lv-pci.txt | grep -q 'PCI device 8086:7020' || fail "no UHCI (8086:7020) at 00:01.2 in info pci"
echo "XENBOX-FACT uhci=00:01.2"
`+vgaSaveRestore)
}

// vgaSaveRestore is the stdvga scenario's xl save and xl restore of the
// domain at SeaBIOS's banner, paused on both sides, then xl migrate to
// this host (left paused): godm's screendump after each must equal the
// one before (the new godm shows the VRAM frames Xen's stream brought
// back), the new godms' logs must say they took the frames over
// (XENBOX-FACT vram_adopted, a count) and the domain's memory must not
// grow (a second copy of VRAM).
const vgaSaveRestore = `xl pause $d || fail "xl pause failed"
rm -f /tmp/lv-pre.ppm /tmp/lv-post.ppm
xl qemu-monitor-command lv "screendump /tmp/lv-pre.ppm" >/dev/null 2>&1 || fail "screendump before the save failed"
mem0=$(xl list $d | awk 'NR==2{print $3}')
xl save lv /tmp/lv.save || fail "xl save failed"
GODM_VERBOSE=1 xl restore -p /tmp/lv.save || fail "xl restore failed"
d=$(xl domid lv)
mem1=$(xl list $d | awk 'NR==2{print $3}')
echo "XENBOX-FACT mem_before_save=$mem0 mem_after_restore=$mem1"
xl qemu-monitor-command lv "screendump /tmp/lv-post.ppm" >/dev/null 2>&1 || fail "screendump after the restore failed"
if cmp -s /tmp/lv-pre.ppm /tmp/lv-post.ppm; then echo "XENBOX-FACT sr_screen=equal"; else echo "XENBOX-FACT sr_screen=differs"; fi
# Then a live migration to this host (log-dirty on, the VRAM frames sent
# as RAM), the domain left paused on arrival.
rm -f /tmp/lv-mig.ppm
GODM_VERBOSE=1 xl migrate -s "" lv "xl migrate-receive -p" || fail "xl migrate to localhost failed"
d=$(xl domid lv)
mem2=$(xl list $d | awk 'NR==2{print $3}')
echo "XENBOX-FACT mem_after_migrate=$mem2"
xl qemu-monitor-command lv "screendump /tmp/lv-mig.ppm" >/dev/null 2>&1 || fail "screendump after the migration failed"
if cmp -s /tmp/lv-pre.ppm /tmp/lv-mig.ppm; then echo "XENBOX-FACT migrate_screen=equal"; else echo "XENBOX-FACT migrate_screen=differs"; fi
# The migration's receiver is domain lv--incoming until it completes:
# its godm logs to qemu-dm-lv--incoming.log.
echo "XENBOX-FACT vram_adopted=$(cat /var/log/xen/qemu-dm-lv*.log* | grep -c "VRAM taken over from the restored domain")"
echo "XENBOX-FACT vram_trapped_after=$(cat /var/log/xen/qemu-dm-lv*.log* | grep -c "VRAM stays trapped")"
for l in /var/log/xen/qemu-dm-lv*.log*; do [ "$l" = "$log" ] || { echo "--- $l"; cat $l; }; done
xl unpause $d || fail "xl unpause after the restore failed"
`

// CirrusScenario is StdVGAScenario with an unchanged config's display:
// no vga= line, so libxl's default, the Cirrus VGA (-device
// cirrus-vga,vgamem_mb=8), whose VGA BIOS (vgabios-cirrus.bin, from
// godm's ROM BAR) draws SeaBIOS's banner. In the box the banner took
// 242 s after unpause (the guest in SeaBIOS between its option ROM and
// its banner for most of it), hence the scenarios' 400 s budget.
func CirrusScenario() Scenario { return vgaScenario("cirrus", "lc", "", "") }

// vgaScenario is the VNC banner scenario named name for a domain called
// dom with vgaLine in its config; extra runs after the banner was seen,
// before the domain is destroyed.
func vgaScenario(name, dom, vgaLine, extra string) Scenario {
	drv := "VGA"
	if name == "cirrus" {
		drv = "cirrus-vga"
	}
	extraArgs := ""
	if os.Getenv(EnvVGAP2M) == "off" {
		extraArgs = `, "-global", "` + drv + `.x-godm-vram-p2m=off"` // for a comparison run
	}
	cfg := fmt.Sprintf(`name = "lv"
type = "hvm"
memory = 32
vcpus = 1
device_model_version = "qemu-xen"
device_model_override = "%s"
%svnc = 1
vnclisten = "127.0.0.1"
vncpasswd = "s3cret"
device_model_args_hvm = [ "-godm-sandbox", "off"%s ]
vkb_device = 0
sdl = 0
serial = "file:/tmp/lv-com1.log"
on_poweroff = "destroy"
on_reboot = "preserve"
on_crash = "preserve"
`, GodmPath, vgaLine, extraArgs)
	script := fmt.Sprintf("cat > /tmp/lv.cfg <<'EOF'\n%sEOF\n", cfg) + `
log=/var/log/xen/qemu-dm-lv.log
fail() { echo "$1"; echo "--- $log"; cat $log; xl list; xl destroy lv 2>/dev/null; exit 1; }
# VNC listens on dom0's loopback, which the initramfs leaves down.
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up || fail "cannot bring up lo"
XLENV xl create -p /tmp/lv.cfg || fail "xl create -p failed"
d=$(xl domid lv)
echo "XENBOX-FACT domid=$d"
port=$(xenstore-read /local/domain/$d/console/vnc-port) || port=
echo "XENBOX-FACT vnc_port=${port:-none}"
[ -n "$port" ] || port=5900
xl unpause $d || fail "xl unpause failed"
ok=0
t0=$(cut -d' ' -f1 /proc/uptime)
for i in $(seq 1 100); do
	sleep 4
	rm -f /tmp/lv.ppm
	xl qemu-monitor-command lv "screendump /tmp/lv.ppm" >/tmp/lv-hmp.txt 2>&1 || continue
	if ` + VNCCapPath + ` -addr 127.0.0.1:$port -passwd s3cret -ppm /tmp/lv.ppm PNG >/tmp/lv-cap.txt 2>&1 &&
		grep -q '^VNCCAP row 00 #######\.########\.#' /tmp/lv-cap.txt; then
		ok=1; break
	fi
done
t1=$(cut -d' ' -f1 /proc/uptime)
cat /tmp/lv-cap.txt
cat /tmp/lv-hmp.txt
[ $ok = 1 ] || fail "no banner seen over VNC equal to the screendump within 400 s"
echo "XENBOX-FACT banner_after=$(awk "BEGIN{print $t1-$t0}")s"
echo "XENBOX-FACT row0=$(sed -n 's/^VNCCAP row 00 //p' /tmp/lv-cap.txt)"
echo "XENBOX-FACT size=$(sed -n 's/^VNCCAP size=\([0-9x]*\).*/\1/p' /tmp/lv-cap.txt)"
echo "XENBOX-FACT vram_p2m=$(grep -c "VRAM in the guest's p2m" $log)"
if ` + VNCCapPath + ` -addr 127.0.0.1:$port -passwd wrong >/tmp/lv-wrong.txt 2>&1; then
	fail "a wrong VNC password was accepted"
fi
` + extra + `xl destroy $d || fail "xl destroy failed"
gone $d 30 || fail "domain $d still listed after xl destroy"
echo "--- $log"; cat $log
exit 0`
	// Only the stdvga scenario prints its picture (VNCCapPNG reads one).
	png := ""
	if name == "stdvga" {
		png = "-png"
	}
	script = strings.Replace(script, " PNG >", " "+png+" >", 1)
	// godm's informational lines (GODM_VERBOSE, inherited through xl and
	// libxl) carry the VRAM's move into the p2m.
	script = strings.Replace(script, "XLENV ", "GODM_VERBOSE=1 ", 1)
	// The domain's name and its files follow dom.
	for _, w := range []string{`"lv"`, "/tmp/lv", "qemu-dm-lv", " lv ", " lv)"} {
		script = strings.ReplaceAll(script, w, strings.Replace(w, "lv", dom, 1))
	}
	return Scenario{Name: name, Script: script}
}

package xenbox

import (
	"fmt"
	"strconv"
	"strings"

	"godm/internal/qtest"
)

// The passthrough scenario: a standalone `godm passthrough` ioreq server
// beside godm as libxl's device model, on the same domain.
const (
	// PTFWPath is the passthrough scenario's firmware in dom0.
	PTFWPath = "/xenbox/fw/pt.elf"
	// PTDevDir holds the simulated function's sysfs files in dom0
	// (passthrough/pttest's sample: config, resource, vendor, device,
	// class, irq); the scenario builds a sysfs tree from them.
	PTDevDir = "/xenbox/ptdev"
	// PTHostBDF is the simulated function's host address
	// (pttest.SampleAddr): it exists only in that tree.
	PTHostBDF = "0000:00:03.0"
	// PTSlot is the guest slot the standalone server claims: godm's
	// xenfv machine with vga="none" uses slots 0-2.
	PTSlot = 6
	// PTGo is the byte dom0 sends to the guest's COM1 once the
	// standalone server is stopped; the firmware never prints it.
	PTGo = '!'
)

// ptWait marks the firmware's wait for PTGo in a probe list (no port
// access: size 0).
var ptWait = Probe{Step: qtest.Step{Port: 0, Size: 0}}

// IsPTWait reports whether p is the wait marker of PTProbes.
func IsPTWait(p Probe) bool { return p.Step.Size == 0 && p.Step.Port == 0 }

// PTProbes is what the passthrough scenario's firmware does, in order,
// with the wait for dom0 between the two phases. While both servers
// run: the main device model's host bridge and platform device, the
// whole configuration space of the standalone server's function at
// PTSlot, its BAR sizing (the sample's BAR0 is 512 KiB of 64-bit
// memory, BAR0-1 a pair), then what a firmware does to use it (BAR0 at
// 0xe0000000, memory decoding on), and an empty slot. After dom0 stopped
// the standalone server: the slot is empty (all-ones), the main device
// model's functions and COM1 still answer.
func PTProbes() []Probe {
	var ps []Probe
	id := func(dev uint8, v uint64, why string) {
		p := cfgRead(dev, 0, 0, 4)
		p[1].Known, p[1].Why = known(v), why
		ps = append(ps, p...)
	}
	id(0, 0x12378086, "host bridge (the main device model)")
	id(2, 0x00015853, "Xen platform device (the main device model)")
	for reg := 0; reg < 256; reg += 4 {
		p := cfgRead(PTSlot, 0, uint8(reg), 4)
		switch reg {
		case 0:
			p[1].Known, p[1].Why = known(0x10411af4), "the simulated function's vendor:device (standalone server)"
		case 0x08:
			p[1].Known, p[1].Why = known(0x02000001), "class 020000, revision 1 (standalone server)"
		}
		ps = append(ps, p...)
	}
	for _, bar := range []uint8{0x10, 0x14, 0x18} {
		ps = append(ps, cfgWrite(PTSlot, 0, bar, 4, 0xffffffff)...)
		p := cfgRead(PTSlot, 0, bar, 4)
		switch bar {
		case 0x10:
			p[1].Known, p[1].Why = known(0xfff80004), "BAR0 size mask: 512 KiB of 64-bit memory"
		case 0x14:
			p[1].Known, p[1].Why = known(0xffffffff), "BAR1: the upper half of BAR0"
		case 0x18:
			p[1].Known, p[1].Why = known(0), "BAR2: not implemented"
		}
		ps = append(ps, p...)
		ps = append(ps, cfgWrite(PTSlot, 0, bar, 4, 0)...)
	}
	ps = append(ps, cfgWrite(PTSlot, 0, 0x10, 4, 0xe0000000)...)
	ps = append(ps, cfgWrite(PTSlot, 0, 0x04, 2, 0x0002)...)
	p := cfgRead(PTSlot, 0, 0x10, 4)
	p[1].Known, p[1].Why = known(0xe0000004), "BAR0 placed at 0xe0000000"
	ps = append(ps, p...)
	ps = append(ps, cfgRead(PTSlot, 0, 0x04, 2)...)
	id(7, 0xffffffff, "an empty slot")
	ps = append(ps, ptWait)
	id(PTSlot, 0xffffffff, "the slot after the standalone server stopped")
	id(0, 0x12378086, "host bridge after the standalone server stopped")
	id(2, 0x00015853, "platform device after the standalone server stopped")
	ps = append(ps, Probe{Step: qtest.Out(0x3ff, 0x5a)},
		Probe{Step: in(0x3ff, 1), Known: known(0x5a), Why: "COM1 scratch (the main device model) after the stop"})
	return ps
}

// FWOp is one step of the passthrough firmwares: a port or MMIO access,
// or the wait for dom0's go byte (PTGo on COM1) between two phases.
type FWOp struct {
	Kind  FWOpKind
	Addr  uint32 // the port or the physical address
	Size  uint8  // 1, 2 or 4
	Write bool
	Value uint32
	// Known is the read's fixed answer (nil: none), Why its reason.
	Known *uint64
	Why   string
}

// FWOpKind says what an FWOp does.
type FWOpKind uint8

// The kinds of FWOp (the firmware's op table holds the number).
const (
	FWWait FWOpKind = iota
	FWPort
	FWMMIO
)

// probeOps turns port probes (with ptWait markers) into FWOps.
func probeOps(ps []Probe) []FWOp {
	ops := make([]FWOp, 0, len(ps))
	for _, p := range ps {
		if IsPTWait(p) {
			ops = append(ops, FWOp{Kind: FWWait})
			continue
		}
		size := p.Step.Size
		if size == 0 {
			size = 1
		}
		ops = append(ops, FWOp{Kind: FWPort, Addr: uint32(p.Step.Port), Size: size, Write: p.Step.Write,
			Value: uint32(p.Step.Value), Known: p.Known, Why: p.Why})
	}
	return ops
}

// PTFirmwareSource is the passthrough scenario's firmware
// (OpsFirmwareSource of the probes).
func PTFirmwareSource(ps []Probe) string { return OpsFirmwareSource(probeOps(ps)) }

// OpsFirmwareSource is a firmware that runs ops up to a wait, prints
// their reads ("FW <index> <hex>" pairs as the probe firmware does),
// prints "FW WAIT" and polls COM1 for PTGo ("FW NOGO" if it never comes,
// and goes on), then the next phase; "FW END <reads>" and a power-off
// through PM1a control. MMIO accesses are plain loads and stores: Xen
// starts the firmware in flat 32-bit protected mode without paging.
func OpsFirmwareSource(ops []FWOp) string {
	var b strings.Builder
	b.WriteString(fwPrelude)
	b.WriteString("struct xop { u32 addr; u8 kind, size, write; u32 value; };\nstatic const struct xop ops[] = {\n")
	for _, o := range ops {
		w := 0
		if o.Write {
			w = 1
		}
		fmt.Fprintf(&b, "\t{%#x, %d, %d, %d, %#x},\n", o.Addr, o.Kind, o.Size, w, o.Value)
	}
	fmt.Fprintf(&b, "};\n#define NOPS %d\nstatic u32 res[NOPS];\n", len(ops))
	b.WriteString(`static u32 mmio_read(u32 a, u8 size) {
	if (size == 1) return *(volatile u8 *)a;
	if (size == 2) return *(volatile u16 *)a;
	return *(volatile u32 *)a;
}
static void mmio_write(u32 a, u8 size, u32 v) {
	if (size == 1) *(volatile u8 *)a = v;
	else if (size == 2) *(volatile u16 *)a = v;
	else *(volatile u32 *)a = v;
}
/* Polls COM1's line status for the go byte, with a delay between
 * polls (each poll is a round trip to the main device model). */
static int waitgo(void) {
	for (u32 k = 0; k < 200000; k++) {
		if (in(0x3fd, 1) & 1) {
			if (in(0x3f8, 1) == ` + strconv.Itoa(PTGo) + `) return 1;
			continue;
		}
		for (volatile u32 j = 0; j < 20000; j++) ;
	}
	return 0;
}
void fwmain(void) {
	puts_("\nFW START\n");
	u32 reads = 0;
	int i = 0;
	while (i < NOPS) {
		int from = i;
		/* Every access of the phase first, so that printing cannot
		 * change what is read. */
		for (; i < NOPS && ops[i].kind != ` + strconv.Itoa(int(FWWait)) + `; i++) {
			const struct xop *o = &ops[i];
			if (o->kind == ` + strconv.Itoa(int(FWMMIO)) + `) {
				if (o->write) mmio_write(o->addr, o->size, o->value);
				else res[i] = mmio_read(o->addr, o->size);
			} else {
				if (o->write) out(o->addr, o->size, o->value);
				else res[i] = in(o->addr, o->size);
			}
		}
		u32 k = 0;
		for (int j = from; j < i; j++) {
			if (ops[j].write) continue;
			reads++;
			if (k == 0) puts_("FW");
			putc_(' '); putdec(j); putc_(' '); puthex(res[j]);
			if (++k == 6) { puts_("\n"); k = 0; }
		}
		if (k) puts_("\n");
		if (i < NOPS) {
			puts_("FW WAIT\n");
			if (!waitgo()) puts_("FW NOGO\n");
			i++;
		}
	}
	puts_("FW END "); putdec(reads); puts_("\n");
	out(` + strconv.Itoa(pm1aCnt) + `, 2, ` + strconv.Itoa(slpEn) + `);
	for (;;) __asm__ volatile("sti; hlt");
}
`)
	b.WriteString(fwStart)
	return b.String()
}

// BuildPTFirmware compiles PTFirmwareSource(PTProbes()) into dir/name.elf.
func BuildPTFirmware(dir, name string) (string, error) {
	return compileFirmware(dir, name, PTFirmwareSource(PTProbes()))
}

// PassthroughScenario is a standalone `godm passthrough` ioreq server
// beside godm as libxl's device model on the same real domain (issue
// 11): xl create -p with device_model_override = godm (vga="none", COM1
// on a pty); then `godm passthrough` claims the simulated function (a
// sysfs tree built from PTDevDir, -no-assign-check: Xen has no such
// function to assign) at guest slot PTSlot; the firmware reads both
// servers' functions and waits; dom0 stops the standalone server
// (SIGTERM: it must exit 0) and sends PTGo on the pty; the firmware
// reads again, through the main device model only, and powers off
// through it. The harness compares what the guest read with godm on
// xensim. Facts: both servers' ids (Xen gives each server of a domain
// its own), whether the standalone server refused to map the function
// when the guest enabled its decoding (Xen says the domain has no IOMMU
// context), and the guest's COM1 output relayed as "pt-com1[<domid>] ".
func PassthroughScenario() Scenario {
	cfg := LibxlConfig("pt", PTFWPath, `vga = "none"
serial = "pty"
`)
	return Scenario{Name: "passthrough", Script: fmt.Sprintf("cat > /tmp/pt.cfg <<'EOF'\n%sEOF\n", cfg) + fmt.Sprintf(`
log=/var/log/xen/qemu-dm-pt.log
sa=/tmp/pt-standalone.log
fail() { echo "$1"; echo "--- $log"; cat $log; echo "--- $sa"; cat $sa; echo "--- COM1"; cat /tmp/pt-com1.log; xl list; xl destroy pt 2>/dev/null; exit 1; }
# The simulated function: a sysfs tree of its files, bound to pciback.
S=/tmp/ptsys; D=$S/bus/pci/devices/%[1]s
mkdir -p $D $S/bus/pci/drivers/pciback || fail "no sysfs tree"
cp %[2]s/* $D/ && ln -s $S/bus/pci/drivers/pciback $D/driver || fail "no sysfs tree"
xl create -p /tmp/pt.cfg || fail "xl create -p failed"
d=$(xl domid pt)
echo "XENBOX-FACT domid=$d"
main=$(pidof godm) || fail "no godm process"
tty=$(xenstore-read /local/domain/$d/serial/0/tty) || fail "no serial/0/tty"
stty -F $tty raw -echo 2>/dev/null
cat $tty > /tmp/pt-com1.log 2>&1 &
catpid=$!
( %[3]s passthrough -domid $d -bdf %[1]s -guest-slot %[4]d -sysfs $S -no-assign-check -v & echo $! >/tmp/pt-sa.pid; wait $!; echo "PT-EXIT rc=$?" ) >$sa 2>&1 &
waitfor $sa "passed through to" 60 || fail "the standalone server did not start"
echo "XENBOX-FACT main_server=$(sed -n 's/.*godm: serving .* as ioreq server \([0-9]*\).*/\1/p' $log | head -1)"
echo "XENBOX-FACT pt_server=$(sed -n 's/.*passed through to .* (ioreq server \([0-9]*\)).*/\1/p' $sa | head -1)"
echo "XENBOX-FACT godm_procs=$(pidof godm | wc -w)"
xl unpause $d || fail "xl unpause failed"
waitfor /tmp/pt-com1.log "FW WAIT" 180 || fail "the firmware did not reach its wait"
kill -TERM $(cat /tmp/pt-sa.pid)
waitfor $sa "PT-EXIT" 30 || fail "the standalone server did not exit on SIGTERM"
echo "XENBOX-FACT pt_exit=$(sed -n 's/^PT-EXIT rc=//p' $sa)"
echo "XENBOX-FACT pt_unassigned=$(grep -c 'guest enabled a function Xen has not assigned to it' $sa)"
kill -0 $main 2>/dev/null || fail "the main godm died with the standalone server"
printf '%[5]c' > $tty
gone $d 180 || fail "the guest did not power off through the main godm"
godmgone 10 || fail "godm still runs after the guest ended"
kill $catpid 2>/dev/null
sed "s/^/pt-com1[$d] /" /tmp/pt-com1.log
echo "--- $sa"; cat $sa
echo "--- $log"; cat $log
grep -q '^PT-EXIT rc=0$' $sa || exit 1
exit 0`, PTHostBDF, PTDevDir, GodmPath, PTSlot, PTGo)}
}

// The pci-attach scenario: xl pci-attach and pci-detach of a real PCI
// function with godm as libxl's device model, in the IOMMU box.
const (
	// PAFWPath is the pci-attach scenario's firmware in dom0.
	PAFWPath = "/xenbox/fw/pa.elf"
	// PABAR is where the firmware places the function's BAR0.
	PABAR = 0xe0000000
	// eduID is QEMU's edu device (hw/misc/edu.c: vendor 0x1234, device
	// 0x11e8; BAR0 1 MiB of 32-bit memory; register 0x00 reads the
	// identification 0x010000ed, register 0x04 returns the complement of
	// what was written to it, "card liveness check").
	eduID = 0x11e81234
)

// IOMMUConfig is c for the IOMMU box: QEMU's q35 machine with its
// emulated AMD IOMMU (hw/i386/amd_iommu.c, which builds the IVRS table
// Xen's AMD-Vi driver reads; q35 only) and QEMU's edu device as the
// function dom0 gives to a guest, and Xen's IOMMU on (its AMD driver:
// the box's CPU is qemu64, an AMD model). Measured on Xen 4.17: "AMD-Vi:
// IOMMU 0 Enabled", "Interrupt remapping enabled".
func IOMMUConfig(c Config) Config {
	c.Machine = "q35"
	c.Extra = append(append([]string(nil), c.Extra...), "-device", "amd-iommu", "-device", "edu")
	c.XenArgs = strings.TrimSpace(c.XenArgs + " iommu=on")
	return c
}

// PAOps is what the pci-attach scenario's firmware does. After xl
// pci-attach (before the guest runs): the real function's identity and
// BAR0 size at PTSlot through godm's passthrough, BAR0 placed at PABAR
// with memory decoding on, then the function's own registers through
// the BAR, which Xen mapped into the guest (no device model on that
// path). After xl pci-detach: the slot is empty, the BAR no longer
// mapped, the platform still answers.
func PAOps() []FWOp {
	var ops []FWOp
	port := func(p uint16, size uint8, write bool, v uint32) *FWOp {
		ops = append(ops, FWOp{Kind: FWPort, Addr: uint32(p), Size: size, Write: write, Value: v})
		return &ops[len(ops)-1]
	}
	cfg := func(dev, reg uint8, size uint8, write bool, v uint32) *FWOp {
		port(0xcf8, 4, true, uint32(cfgAddr(dev, 0, reg)))
		return port(0xcfc+uint16(reg&3), size, write, v)
	}
	mmio := func(a uint32, write bool, v uint32) *FWOp {
		ops = append(ops, FWOp{Kind: FWMMIO, Addr: a, Size: 4, Write: write, Value: v})
		return &ops[len(ops)-1]
	}
	fact := func(o *FWOp, v uint64, why string) { o.Known, o.Why = known(v), why }
	fact(cfg(PTSlot, 0, 4, false, 0), eduID, "edu's vendor:device through godm's passthrough")
	cfg(PTSlot, 0x08, 4, false, 0) // class and revision (recorded)
	cfg(PTSlot, 0x10, 4, true, 0xffffffff)
	fact(cfg(PTSlot, 0x10, 4, false, 0), 0xfff00000, "BAR0 size mask: 1 MiB of 32-bit memory")
	cfg(PTSlot, 0x10, 4, true, PABAR)
	cfg(PTSlot, 0x04, 2, true, 0x0002)
	fact(cfg(PTSlot, 0x10, 4, false, 0), PABAR, "BAR0 placed")
	fact(mmio(PABAR, false, 0), 0x010000ed, "edu's identification register through Xen's mapping of BAR0")
	mmio(PABAR+4, true, 0x12345678)
	fact(mmio(PABAR+4, false, 0), 0xedcba987, "edu's liveness register: the complement of the value written")
	ops = append(ops, FWOp{Kind: FWWait})
	fact(cfg(PTSlot, 0, 4, false, 0), 0xffffffff, "the slot after xl pci-detach")
	fact(mmio(PABAR, false, 0), 0xffffffff, "BAR0 no longer mapped after xl pci-detach")
	fact(cfg(2, 0, 4, false, 0), 0x00015853, "platform device after xl pci-detach")
	return ops
}

// BuildPAFirmware compiles OpsFirmwareSource(PAOps()) into dir/name.elf.
func BuildPAFirmware(dir, name string) (string, error) {
	return compileFirmware(dir, name, OpsFirmwareSource(PAOps()))
}

// PCIAttachScenario is issue 12's xl pci-attach / pci-detach with godm
// as libxl's device model, in the IOMMU box (IOMMUConfig): dom0 binds
// the box's edu function to pciback (xl pci-assignable-add), creates a
// paused guest with an IOMMU context (passthrough = "enabled"), and xl
// pci-attach puts the function at guest slot PTSlot (libxl's QMP
// device_add of xen-pci-passthrough, query-pci, then its grants and
// XEN_DOMCTL_assign_device); xl pci-list and HMP info pci must show it.
// The firmware reads it (PAOps) and waits; xl pci-detach (device_del,
// query-pci until it is gone, deassignment); the firmware reads again
// and powers off. godm runs with its sandbox off: passthrough needs
// hypercalls the sandbox restricts, and godm refuses device_add with a
// line saying so otherwise: the scenario first tries the attach on a
// sandboxed godm and expects xl to fail with that line. Facts: the pciback
// binding, the pci-list lines, HMP's line for the slot, AMD-Vi page
// faults in Xen's log, the COM1 output relayed as "pa-com1[<domid>] ".
func PCIAttachScenario() Scenario {
	cfg := LibxlConfig("pa", PAFWPath, `vga = "none"
serial = "pty"
passthrough = "enabled"
device_model_args_hvm = [ "-godm-sandbox", "off" ]
`)
	sandboxed := LibxlConfig("pas", SpinFWPath, `vga = "none"
passthrough = "enabled"
`)
	return Scenario{Name: "pci-attach", Script: fmt.Sprintf("cat > /tmp/pa.cfg <<'EOF'\n%sEOF\ncat > /tmp/pas.cfg <<'EOF'\n%sEOF\n", cfg, sandboxed) + fmt.Sprintf(`
log=/var/log/xen/qemu-dm-pa.log
fail() { echo "$1"; echo "--- $log"; cat $log; echo "--- COM1"; cat /tmp/pa-com1.log; xl list; xl dmesg | tail -20; xl destroy pa 2>/dev/null; exit 1; }
grep -q '^xen_pciback ' /proc/modules || insmod /lib/modules/xen-pciback.ko || fail "cannot load xen-pciback"
bdf=
for f in /sys/bus/pci/devices/*; do
	[ "$(cat $f/vendor)" = 0x1234 ] && [ "$(cat $f/device)" = 0x11e8 ] && bdf=$(basename $f)
done
[ -n "$bdf" ] || fail "no edu function in dom0 (the IOMMU box has one)"
echo "XENBOX-FACT bdf=$bdf"
xl pci-assignable-add $bdf || fail "xl pci-assignable-add $bdf failed"
xl pci-assignable-list | grep -q "$bdf" || fail "xl pci-assignable-list does not list $bdf"
echo "XENBOX-FACT stub=$(basename $(readlink /sys/bus/pci/devices/$bdf/driver))"
# godm under its sandbox (the default) refuses the device_add with its
# line, which xl shows; the function stays assignable.
xl create -p /tmp/pas.cfg || fail "xl create -p (sandboxed) failed"
if xl pci-attach pas $bdf@%[1]d >/tmp/pas-attach.txt 2>&1; then
	cat /tmp/pas-attach.txt; xl destroy pas; fail "xl pci-attach succeeded under godm's sandbox"
fi
cat /tmp/pas-attach.txt
echo "XENBOX-FACT sandbox_refusal=$(grep -c "PCI passthrough needs hypercalls godm's sandbox restricts" /tmp/pas-attach.txt)"
xl destroy pas || fail "xl destroy pas failed"
gone pas 30 || fail "pas still listed after xl destroy"
godmgone 10 || fail "the sandboxed godm still runs after xl destroy"
xl pci-assignable-list | grep -q "$bdf" || fail "$bdf no longer assignable after the refused attach"
xl create -p /tmp/pa.cfg || fail "xl create -p failed"
d=$(xl domid pa)
echo "XENBOX-FACT domid=$d"
tty=$(xenstore-read /local/domain/$d/serial/0/tty) || fail "no serial/0/tty"
stty -F $tty raw -echo 2>/dev/null
cat $tty > /tmp/pa-com1.log 2>&1 &
catpid=$!
xl pci-attach pa $bdf@%[1]d || fail "xl pci-attach failed"
echo "XENBOX-FACT attached=$(xl pci-list pa | grep -c "^0*%[1]x\.0 *$bdf")"
xl qemu-monitor-command pa "info pci" >/tmp/pa-pci.txt || fail "HMP info pci failed"
echo "XENBOX-FACT hmp=$(grep -A1 'device *%[1]d, function 0:' /tmp/pa-pci.txt | sed -n 's/.*PCI device \([0-9a-f:]*\).*/\1/p')"
xl unpause $d || fail "xl unpause failed"
waitfor /tmp/pa-com1.log "FW WAIT" 180 || fail "the firmware did not reach its wait"
xl pci-detach pa $bdf || fail "xl pci-detach failed"
echo "XENBOX-FACT detached=$(xl pci-list pa | grep -c "$bdf" | sed 's/^0$/yes/')"
printf '%[2]c' > $tty
gone $d 180 || fail "the guest did not power off"
godmgone 10 || fail "godm still runs after the guest ended"
kill $catpid 2>/dev/null
xl pci-assignable-remove $bdf || fail "xl pci-assignable-remove $bdf failed"
echo "XENBOX-FACT io_page_faults=$(xl dmesg | grep -c 'IO_PAGE_FAULT')"
sed "s/^/pa-com1[$d] /" /tmp/pa-com1.log
echo "--- $log"; cat $log
exit 0`, PTSlot, PTGo)}
}

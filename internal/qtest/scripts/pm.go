package scripts

import "godm/internal/qtest"

// PIIX4 PM I/O as hvmloader places it (tools/firmware/hvmloader/config.h
// and tools/libacpi/static_tables.c: the V1 fixed-hardware blocks).
const (
	PMDevfn    = 1<<3 | 3
	PM1aEvent  = 0xb000 // PM1a_STS/PM1a_EN: Xen's (xen/arch/x86/hvm/pmtimer.c)
	PM1aCnt    = 0xb004 // PM1a_CNT: the device model's
	PMTimer    = 0xb008 // PM_TMR: Xen's
	GPE0       = 0xafe0 // GPE0_STS (2 bytes), GPE0_EN (2 bytes)
	PCIHotplug = 0xae00 // PCIU, PCID, B0EJ (Xen's DSDT, tools/libacpi/mk_dsdt.c)
	SCI        = 9
)

// xenOwned documents a read of a register Xen emulates itself: godm must
// not claim it, so through Xen the device model never sees it, and a
// bare godm leaves it unclaimed (all-ones). QEMU's qtest machine has it.
const xenOwned = "Xen emulates PM1a_STS/PM1a_EN and the PM timer itself (xen/arch/x86/hvm/pmtimer.c); godm does not claim them"

// ignore documents the bits of a read that differ from QEMU on purpose.
func ignore(s qtest.Step, mask uint64, why string) qtest.Step {
	s.Why, s.Ignore = why, mask
	return s
}

// ignoreAll documents a read whose whole value differs from QEMU on
// purpose (its interrupt edges are still compared).
func ignoreAll(s qtest.Step, why string) qtest.Step {
	size := s.Size
	if size == 0 {
		size = 1
	}
	return ignore(s, 1<<(8*uint(size))-1, why)
}

// PIIX4PMIO returns the PM function's I/O script: hvmloader's programming
// of 00:01.3 (tools/firmware/hvmloader/pci.c: SMBus off, IRQ 9, PMBA
// 0xb001, PMREGMISC I/O enable), then PM1a_CNT without SLP_EN (SLP_EN
// shuts down or suspends; internal/machine tests those), the GPE0 block,
// the PCI hotplug registers Xen's DSDT uses, with the SCI (IRQ 9)
// watched. The steps where godm differs on purpose say why.
func PIIX4PMIO() []qtest.Step {
	in := func(p uint16, size uint8) qtest.Step { return qtest.Step{Port: p, Size: size} }
	out := func(p uint16, size uint8, v uint64) qtest.Step {
		return qtest.Step{Write: true, Port: p, Size: size, Value: v}
	}
	return Cat(
		ConfigWriteN(PMDevfn, 0x20, 2, 0), ConfigWriteN(PMDevfn, 0xd2, 2, 0), ConfigWriteN(PMDevfn, 0x22, 2, 0),
		ConfigWriteN(PMDevfn, 0x3c, 2, SCI), ConfigWriteN(PMDevfn, 0x3d, 2, 1),
		ConfigWrite(PMDevfn, 0x40, PM1aEvent|1), ConfigWriteN(PMDevfn, 0x80, 1, 1),
		ConfigRead(PMDevfn, 0x3c), ConfigRead(PMDevfn, 0x40), ConfigRead(PMDevfn, 0x80),
		[]qtest.Step{
			ignore(in(PM1aCnt, 2), 1, "SCI_EN at reset: QEMU sets it only without SMM (hw/acpi/piix4.c: "+
				"acpi_pm1_cnt_init's acpi_only), which is the Xen case; the TCG pc machine has SMM"),
			out(PM1aCnt, 2, 0x0001), in(PM1aCnt, 2),
			out(PM1aCnt, 2, 0x1c01), in(PM1aCnt, 2), // SLP_TYP 7, no SLP_EN
			out(PM1aCnt, 1, 0x00),
			ignore(in(PM1aCnt, 2), 0xff00, "after a byte write of PM1a_CNT's low byte: QEMU widens it to a word "+
				"write with a zero high byte (hw/acpi/core.c acpi_pm_cnt_ops, impl.min_access_size 2), "+
				"losing SLP_TYP; godm changes only the byte written, as the register's two bytes are"),
			in(PM1aCnt, 1),
			ignoreAll(in(PM1aCnt+1, 1), "QEMU's acpi-cnt region implements word accesses only and ignores the "+
				"offset (hw/acpi/core.c acpi_pm_cnt_ops), so a byte read of 0xb005 returns the low byte; "+
				"godm returns the high byte of PM1a_CNT"),
			ignoreAll(in(PM1aCnt, 4), "the dword spans PM1a_CNT and the unclaimed 0xb006: Xen hands an access "+
				"only to a server whose range holds all of it (xen/arch/x86/hvm/ioreq.c), and godm's port "+
				"space does the same, so all-ones; QEMU's own dispatch splits it"),
			out(PM1aCnt, 2, 0x0001), in(PM1aCnt, 2),
			ignoreAll(in(PM1aEvent, 2), xenOwned), ignoreAll(in(PM1aEvent+2, 2), xenOwned),
			ignoreAll(in(PMTimer, 4), xenOwned),
			in(GPE0, 1), in(GPE0+1, 1), in(GPE0+2, 1), in(GPE0+3, 1),
			out(GPE0+2, 1, 0xff), in(GPE0+2, 1), out(GPE0+3, 1, 0xff), in(GPE0+3, 1), in(GPE0, 4),
			out(GPE0, 1, 0xff), in(GPE0, 1), out(GPE0+2, 2, 0), in(GPE0, 4),
			in(PCIHotplug, 4), in(PCIHotplug+4, 4), in(PCIHotplug+8, 4),
			ignoreAll(in(PCIHotplug+12, 4), "RMV: QEMU reports its removable slots there; Xen's DSDT never reads "+
				"it (tools/libacpi/mk_dsdt.c uses PCIU, PCID and B0EJ only)"),
			ignoreAll(in(PCIHotplug+16, 4), "SEL: QEMU's hotplug block has the bus selector; Xen's DSDT reserves "+
				"0xae00-0xae0f only"),
		},
	)
}

package scripts

import "godm/internal/qtest"

// SystemReset returns the machine-reset script: every device the godm
// and QEMU machines share gets guest-written state (COM1's registers
// with loopback data in its FIFO, the i8042's command byte and a
// self-test reply waiting, the three platform functions' configuration
// registers, CONFIG_ADDRESS, PIIX3's reset control, PM1a_CNT and GPE0
// enable), then the machine resets (QEMU's system_reset), then
// everything is read back: CONFIG_ADDRESS first (configuration reads
// overwrite it), COM1, the i8042 and its command byte, PIIX3's reset
// control, every configuration dword of 00:00.0, 00:01.0 and 00:01.3,
// and the PM registers after hvmloader's programming of 00:01.3 (a reset
// clears PMBA, and firmware places the block again). dev holds the
// configuration deviations by devfn; watch IRQ 1, 4, 9 and 12.
func SystemReset(dev map[uint8][]Deviation) []qtest.Step {
	u := uart(COM1)
	in := func(p uint16, size uint8) qtest.Step { return qtest.Step{Port: p, Size: size} }
	out := func(p uint16, size uint8, v uint64) qtest.Step {
		return qtest.Step{Write: true, Port: p, Size: size, Value: v}
	}
	hvmloaderPM := Cat(
		ConfigWriteN(PMDevfn, 0x3c, 2, SCI), ConfigWriteN(PMDevfn, 0x3d, 2, 1),
		ConfigWrite(PMDevfn, 0x40, PM1aEvent|1), ConfigWriteN(PMDevfn, 0x80, 1, 1),
	)
	var dirty []qtest.Step
	for _, devfn := range []uint8{0, 1 << 3, PMDevfn} {
		// Every writable byte of the device-specific area and the
		// header's writable registers.
		for reg := uint32(0x40); reg < 0x100; reg += 4 {
			if devfn == PMDevfn && reg == 0x40 {
				continue // PMBA: placed by hvmloaderPM
			}
			dirty = append(dirty, ConfigWrite(devfn, reg, 0x5a5a5a5a^reg)...)
		}
		dirty = append(dirty, ConfigWriteN(devfn, 0x04, 2, 0x0107)...)
		dirty = append(dirty, ConfigWriteN(devfn, 0x0c, 1, 0x10)...)
		dirty = append(dirty, ConfigWriteN(devfn, 0x3c, 1, 0x0b)...)
	}
	readConfig := func(devfn uint8) []qtest.Step {
		var s []qtest.Step
		for reg := uint32(0); reg < 0x100; reg += 4 {
			r := ConfigRead(devfn, reg)
			r[1].Why += " after reset"
			for _, d := range dev[devfn] {
				if d.Reg&0xfc == reg {
					r[1].Ignore |= uint64(d.Mask)
					r[1].Why += "; differs on purpose: " + d.Why
				}
			}
			s = append(s, r...)
		}
		return s
	}
	return Cat(
		hvmloaderPM,
		dirty,
		hvmloaderPM,
		[]qtest.Step{
			u.out(3, 0x80), u.out(0, 0x01), u.out(1, 0x00), u.out(3, 0x1b),
			u.out(4, 0x1b), u.out(2, 0x01), u.out(0, 0x41), u.out(0, 0x42),
			u.out(1, 0x0f), u.out(7, 0xa5),
			cmd(0x60), data(0x47), cmd(0xaa),
			out(0xcf9, 1, 0x02), // PIIX3 reset control: SYS_RST, no reset yet
			out(PM1aCnt, 2, 0x1c01), out(GPE0+2, 2, 0xffff),
			{Write: true, Port: ConfigAddress, Size: 4, Value: 0x8000_1234},
			{Reset: true, Why: "system_reset"},
			in(ConfigAddress, 4),
		},
		u.readAll(), u.readAll(),
		[]qtest.Step{st(), rd(), st(), cmd(0x20), st(), rd(), in(0xcf9, 1)},
		readConfig(0), readConfig(1<<3), readConfig(PMDevfn),
		hvmloaderPM,
		[]qtest.Step{
			ignore(in(PM1aCnt, 2), 1, "SCI_EN after reset: QEMU sets it only without SMM (hw/acpi/core.c "+
				"acpi_pm1_cnt_reset), which is the Xen case; the TCG pc machine has SMM"),
			in(GPE0, 4),
			in(PCIHotplug, 4), in(PCIHotplug+4, 4),
		},
	)
}

package scripts

import (
	"fmt"
	"math/rand/v2"

	"godm/internal/qtest"
)

// PCI configuration mechanism #1 ports.
const (
	ConfigAddress = 0xcf8
	ConfigData    = 0xcfc
)

// Deviation is a documented difference of a configuration register from
// QEMU's: the bits of the dword at Reg that may differ, and why.
type Deviation struct {
	Reg  uint32
	Mask uint32
	Why  string
}

// ConfigRead returns the two steps of a guest's dword configuration read
// of register reg of bus 0, devfn: the address to 0xcf8, the data from
// 0xcfc.
func ConfigRead(devfn uint8, reg uint32) []qtest.Step {
	return []qtest.Step{
		{Write: true, Port: ConfigAddress, Size: 4, Value: configAddress(devfn, reg)},
		{Port: ConfigData, Size: 4, Why: fmt.Sprintf("00:%02x.%d config[%#02x]", devfn>>3, devfn&7, reg&0xfc)},
	}
}

// ConfigReadN returns the two steps of a guest's configuration read of
// size bytes (1, 2 or 4, not crossing a dword) of register reg of bus 0,
// devfn: the dword address to 0xcf8, the data from 0xcfc+(reg&3).
func ConfigReadN(devfn uint8, reg uint32, size uint8) []qtest.Step {
	return []qtest.Step{
		{Write: true, Port: ConfigAddress, Size: 4, Value: configAddress(devfn, reg)},
		{Port: ConfigData + uint16(reg&3), Size: size, Why: fmt.Sprintf("00:%02x.%d config[%#02x]/%d", devfn>>3, devfn&7, reg, size)},
	}
}

// ConfigWrite returns the two steps of a guest's dword configuration
// write of v to register reg of bus 0, devfn.
func ConfigWrite(devfn uint8, reg uint32, v uint32) []qtest.Step {
	return ConfigWriteN(devfn, reg, 4, v)
}

// ConfigWriteN returns the two steps of a guest's configuration write of
// size bytes (1, 2 or 4, not crossing a dword) of v to register reg of bus
// 0, devfn: the dword address to 0xcf8, the data to 0xcfc+(reg&3).
func ConfigWriteN(devfn uint8, reg uint32, size uint8, v uint32) []qtest.Step {
	return []qtest.Step{
		{Write: true, Port: ConfigAddress, Size: 4, Value: configAddress(devfn, reg)},
		{Write: true, Port: ConfigData + uint16(reg&3), Size: size, Value: uint64(v) & (1<<(8*uint(size)) - 1)},
	}
}

func configAddress(devfn uint8, reg uint32) uint64 {
	return uint64(0x80000000 | uint32(devfn)<<8 | reg&0xfc)
}

// PCIConfig returns the configuration-space check of function devfn on
// bus 0, through 0xcf8/0xcfc as firmware does it: every dword of the
// 256-byte space at reset, then an all-ones write to every dword except
// the BARs (0x10-0x27) and the expansion ROM BAR (0x30), which shows the
// writable masks, then every dword again. A Deviation's bits are not
// compared at its register (Why names it on a mismatch).
func PCIConfig(devfn uint8, dev ...Deviation) []qtest.Step {
	readAll := func(when string) []qtest.Step {
		var s []qtest.Step
		for reg := uint32(0); reg < 0x100; reg += 4 {
			r := ConfigRead(devfn, reg)
			r[1].Why += " " + when
			for _, d := range dev {
				if d.Reg&0xfc == reg {
					r[1].Ignore |= uint64(d.Mask)
					r[1].Why += "; differs on purpose in " + fmt.Sprintf("%#08x", d.Mask) + ": " + d.Why
				}
			}
			s = append(s, r...)
		}
		return s
	}
	s := readAll("at reset")
	for reg := uint32(0); reg < 0x100; reg += 4 {
		if (reg >= 0x10 && reg < 0x28) || reg == 0x30 {
			continue
		}
		s = append(s, ConfigWrite(devfn, reg, 0xffffffff)...)
	}
	return append(s, readAll("after all-ones writes")...)
}

// ConfigMechanism returns the checks of configuration mechanism #1
// itself: the address register reads back what a dword write stored
// (Linux's arch/x86/pci/direct.c pci_check_type1 and SeaBIOS's
// pci_probe_host require it, or they decide the machine has no PCI), data cycles with the enable bit
// clear or for a bus that does not exist read all-ones, and the byte at
// 0xcf9 is PIIX3's reset control register, not part of the address.
// readback documents a deviation of the address readback steps
// (empty: none; Ignore then covers the whole value).
func ConfigMechanism(readback string) []qtest.Step {
	rb := func(size uint8) qtest.Step {
		s := qtest.Step{Port: ConfigAddress, Size: size, Why: "CONFIG_ADDRESS readback"}
		if readback != "" {
			s.Why += "; " + readback
			s.Ignore = 1<<(8*uint(size)) - 1
		}
		return s
	}
	return []qtest.Step{
		{Write: true, Port: ConfigAddress, Size: 4, Value: 0x80000000}, rb(4),
		{Write: true, Port: ConfigAddress, Size: 4, Value: 0x8000083c}, rb(4), rb(1),
		{Port: ConfigData, Size: 4, Why: "00:01.0 config[0x3c]"},
		{Port: ConfigData + 2, Size: 2, Why: "00:01.0 config[0x3e]"},
		{Port: ConfigAddress + 1, Size: 1, Why: "PIIX3 reset control register"},
		{Port: ConfigAddress + 2, Size: 2, Why: "CONFIG_ADDRESS read as a word at 0xcfa"},
		{Port: ConfigAddress + 3, Size: 1, Why: "CONFIG_ADDRESS read as a byte at 0xcfb"},
		{Write: true, Port: ConfigAddress, Size: 2, Value: 0x1234},
		{Write: true, Port: ConfigAddress + 2, Size: 2, Value: 0x5678},
		rb(4),
		{Write: true, Port: ConfigAddress, Size: 4, Value: 0x0000083c},
		{Port: ConfigData, Size: 4, Why: "enable bit clear: no config cycle"},
		{Write: true, Port: ConfigAddress, Size: 4, Value: 0x80010000},
		{Port: ConfigData, Size: 4, Why: "bus 1 does not exist"},
		{Write: true, Port: ConfigAddress, Size: 4, Value: 0x80000000},
		{Port: ConfigData, Size: 4, Why: "00:00.0 IDs"},
	}
}

// PIIX4PMDeviations are the documented differences of godm's PIIX4 PM
// function (00:01.3) from QEMU's under qtest: QEMU's TCG "pc" machine has
// SMM, so QEMU leaves 0x5b at 0; under Xen there is no SMM and QEMU sets
// 0x02 there (hw/acpi/piix4.c piix4_pm_realize), as godm does.
func PIIX4PMDeviations() []Deviation {
	return []Deviation{{Reg: 0x58, Mask: 0xff000000,
		Why: "QEMU's TCG pc machine has SMM and leaves 0x5b at 0; under Xen there is no SMM and QEMU sets 0x02, as godm does"}}
}

// PCIConfigRandom returns a random configuration script of at least n
// steps for the functions devfns on bus 0: reads and writes of 1, 2 and
// 4 bytes (naturally aligned) anywhere in the 256-byte space except the
// BARs and the expansion ROM BAR, through 0xcf8/0xcfc, with values biased
// to all-zeros, all-ones and bit patterns. dev holds each function's
// deviations; they apply to the reads of their dword as in PCIConfig (a
// narrower read ignores the corresponding bytes of the mask).
func PCIConfigRandom(r *rand.Rand, n int, devfns []uint8, dev map[uint8][]Deviation) []qtest.Step {
	values := [...]uint32{0, 0xffffffff, 0x55555555, 0xaaaaaaaa, 0x01010101, 0x80808080}
	var s []qtest.Step
	for len(s) < n {
		devfn := devfns[r.IntN(len(devfns))]
		size := uint8(1) << r.IntN(3)
		var reg uint32
		for {
			reg = uint32(r.IntN(0x100)) &^ uint32(size-1)
			if !(reg >= 0x10 && reg < 0x28) && reg&^3 != 0x30 {
				break
			}
		}
		if r.IntN(2) == 0 {
			v := values[r.IntN(len(values))]
			if r.IntN(3) == 0 {
				v = r.Uint32()
			}
			s = append(s, ConfigWriteN(devfn, reg, size, v>>(8*(reg&3)))...)
			continue
		}
		st := ConfigReadN(devfn, reg, size)
		for _, d := range dev[devfn] {
			if d.Reg&^3 == reg&^3 {
				st[1].Ignore |= uint64(d.Mask>>(8*(reg&3))) & (1<<(8*uint(size)) - 1)
				st[1].Why += "; differs on purpose: " + d.Why
			}
		}
		s = append(s, st...)
	}
	return s
}

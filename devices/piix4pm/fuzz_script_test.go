package piix4pm

import (
	"fmt"
	"testing"

	"godm/devices"
	"godm/pci"
	"godm/pci/pcitest"
)

// pmModel is the guest-visible register state the ACPI tables and the
// DSDT define for these ports (ACPI 6.x §4.8.3: PM1 control with
// write-only SLP_EN, GPE0 status write-1-to-clear and enable; the PCIU,
// PCID, B0EJ and RMV fields and PRST of tools/libacpi/mk_dsdt.c).
type pmModel struct {
	pm1, sts, en uint16
	up, down     uint32
	rmv          uint32
	cpus         [CPUPresentLen]byte
	debug        [DebugLen]byte
	vcpus        int
}

func (p *pmModel) reset() {
	p.pm1, p.sts, p.en, p.up, p.down = pm1SCIEnable, 0, 0, 0, 0
	p.debug = [DebugLen]byte{}
	if p.cpus == ([CPUPresentLen]byte{}) {
		for c := range p.vcpus {
			p.cpus[c/8] |= 1 << (c % 8)
		}
	}
}

func (p *pmModel) byteAt(kind int, off uint64) byte {
	word := func(w uint32) byte { return byte(w >> (8 * (off % 4))) }
	switch kind {
	case kindPM1Cnt:
		return byte(p.pm1 >> (8 * off))
	case kindGPE0:
		return byte((uint32(p.sts) | uint32(p.en)<<16) >> (8 * off))
	case kindHotplug:
		switch off / 4 {
		case 0:
			return word(p.up)
		case 1:
			return word(p.down)
		case 3:
			return word(p.rmv)
		}
		return 0
	case kindCPU:
		return p.cpus[off]
	case kindDebug:
		return p.debug[off]
	}
	return 0
}

// write applies a guest write and returns the calls it must make.
func (p *pmModel) write(kind int, off uint64, size uint8, v uint64) []string {
	var calls []string
	switch kind {
	case kindPM1Cnt:
		cnt := p.pm1
		for i := range uint64(size) {
			sh := 8 * (off + i)
			cnt = cnt&^(0xff<<sh) | uint16(byte(v>>(8*i)))<<sh
		}
		p.pm1 = cnt &^ pm1SleepEnable
		if cnt&pm1SleepEnable != 0 {
			switch cnt & pm1SleepType >> 10 {
			case SleepTypeOff:
				calls = append(calls, "shutdown 0")
			case SleepTypeS3:
				calls = append(calls, "s3")
			}
		}
	case kindGPE0:
		for i := range uint64(size) {
			b := uint16(byte(v >> (8 * i)))
			if o := off + i; o < 2 {
				p.sts &^= b << (8 * o)
			} else {
				p.en = p.en&^(0xff<<(8*(o-2))) | b<<(8*(o-2))
			}
		}
	case kindHotplug:
		var ej uint32
		for i := range uint64(size) {
			if o := off + i; o >= 8 && o < 12 {
				ej |= uint32(byte(v>>(8*i))) << (8 * (o - 8))
			}
		}
		p.up &^= ej
		p.down &^= ej
		for s := range 32 {
			if ej&(1<<s) != 0 {
				calls = append(calls, fmt.Sprintf("eject %d", s))
			}
		}
	case kindDebug:
		for i := range uint64(size) {
			p.debug[off+i] = byte(v >> (8 * i))
		}
	}
	return calls
}

func pmSeeds() [][]byte {
	port := func(kind int, off uint16) uint16 { return uint16(kind)<<8 | off }
	return [][]byte{
		pcitest.Encode( // hvmloader: PMBA, PM I/O enable; the DSDT's GPE0 enable, a hotplug and its _E01
			pcitest.Step{Op: 0, Off: RegPMBA, Size: 4, Val: 0xb001},
			pcitest.Step{Op: 0, Off: RegPMRegMisc, Size: 1, Val: 1},
			pcitest.Step{Op: 2, Off: port(kindGPE0, 2), Size: 2, Val: GPEPCIHotplug | GPECPUHotplug},
			pcitest.Step{Op: 4, Off: 5},
			pcitest.Step{Op: 3, Off: port(kindHotplug, 0), Size: 4},
			pcitest.Step{Op: 2, Off: port(kindGPE0, 0), Size: 1, Val: GPEPCIHotplug},
			pcitest.Step{Op: 4, Off: 0x106},
			pcitest.Step{Op: 2, Off: port(kindHotplug, 8), Size: 4, Val: 1 << 6},
		),
		pcitest.Encode( // S3 then S5 through PM1a_CNT, an undefined sleep type, a reset
			pcitest.Step{Op: 2, Off: port(kindPM1Cnt, 0), Size: 2, Val: 1<<13 | 1<<10 | 1},
			pcitest.Step{Op: 3, Off: port(kindPM1Cnt, 0), Size: 2},
			pcitest.Step{Op: 2, Off: port(kindPM1Cnt, 1), Size: 1, Val: 0x20},
			pcitest.Step{Op: 2, Off: port(kindPM1Cnt, 0), Size: 2, Val: 1<<13 | 5<<10},
			pcitest.Step{Op: 5},
			pcitest.Step{Op: 3, Off: port(kindPM1Cnt, 0), Size: 4},
		),
		pcitest.Encode( // CPU hotplug: PRST reads, a CPU added and removed, wide reads, the debug port
			pcitest.Step{Op: 2, Off: port(kindGPE0, 2), Size: 1, Val: GPECPUHotplug},
			pcitest.Step{Op: 4, Off: 0x20c, Val: 1},
			pcitest.Step{Op: 3, Off: port(kindCPU, 0), Size: 8},
			pcitest.Step{Op: 4, Off: 0x203, Val: 0},
			pcitest.Step{Op: 2, Off: port(kindDebug, 1), Size: 2, Val: 0xbeef},
			pcitest.Step{Op: 3, Off: port(kindDebug, 0), Size: 4},
			pcitest.Step{Op: 2, Off: port(kindGPE0, 0), Size: 4, Val: 0xffff},
		),
		pcitest.Encode( // configuration: SMBus, unaligned and straddling writes, restored error bits
			pcitest.Step{Op: 0, Off: RegSMBHSTCFG, Size: 2, Val: 0},
			pcitest.Step{Op: 0, Off: 0x3b, Size: 4, Val: 0xffffffff},
			pcitest.Step{Op: 6, Val: 0xffffffff},
			pcitest.Step{Op: 0, Off: 0x06, Size: 4, Val: 0xffffffff},
			pcitest.Step{Op: 1, Off: 0x800c, Size: 8},
			pcitest.Step{Op: 1, Off: 0x800d, Size: 2},
		),
	}
}

// FuzzScript interleaves configuration accesses (checked against the
// learned masks), accesses of any size and alignment to the five port
// ranges (also straddling their ends), host events (PCI plug and unplug
// requests, processors added and removed) and resets. Every port read, and
// after every step every register byte, is compared with a model of the
// ACPI registers; every call the device makes
// (power off, S3, eject, SCI) is compared with the model's; SCI must be
// (GPE0_STS & GPE0_EN) != 0 after every step, changing only then; a reset
// restores the reset image.
func FuzzScript(f *testing.F) {
	for _, s := range pmSeeds() {
		f.Add(s)
	}
	masks := pcitest.LearnMasks(f, func() (*pci.Device, func()) {
		d, err := New(Config{})
		if err != nil {
			f.Fatal(err)
		}
		return d.Function(), nil
	})
	ports := portRanges()
	f.Fuzz(func(t *testing.T, script []byte) {
		m := newMachine(t)
		c := pcitest.NewConfigChecker(t, m.spaces.PCI, m.sbdf, m.dev.Function(), masks, pcitest.StatusINTx)
		model := &pmModel{rmv: 0xfffffff8, vcpus: 10}
		model.reset()
		sci := false
		for st := range pcitest.Steps(script) {
			var want []string
			switch st.Op % 7 {
			case 0:
				c.Write(t, st.ConfigOffset(), st.Size, st.Val)
			case 1:
				c.Read(t, st.ConfigOffset(), st.Size)
			case 2, 3:
				kind := int(st.Off>>8) % numKinds
				p := ports[kind]
				off := uint64(st.Off&0xff) % (p.size + 2)
				inside := st.Size != 3 && off+uint64(st.Size) <= p.size // 3 is no access size: a miss
				if _, _, h := m.dev.Handler(kind); inside {
					if v := h.Read(devices.Access{Addr: p.base + off, Offset: off, Size: st.Size}); v&^devices.SizeMask(st.Size) != 0 {
						t.Fatalf("port %#x/%d: handler returned %#x, wider than the access", p.base+off, st.Size, v)
					}
				}
				if st.Op%7 == 2 {
					m.spaces.PIO.Write(p.base+off, st.Size, 0, st.Val)
					if inside {
						want = model.write(kind, off, st.Size, st.Val)
					}
					break
				}
				got := m.spaces.PIO.Read(p.base+off, st.Size, 0)
				wantV := devices.SizeMask(st.Size)
				if inside {
					wantV = 0
					for i := range uint64(st.Size) {
						wantV |= uint64(model.byteAt(kind, off+i)) << (8 * i)
					}
				}
				if got != wantV {
					t.Fatalf("read %#x/%d = %#x, want %#x", p.base+off, st.Size, got, wantV)
				}
			case 4:
				slot := uint8(st.Off) & 31 // a valid slot, unless bit 15 is set
				if st.Off&0x8000 != 0 {
					slot = uint8(st.Off)
				}
				switch st.Off >> 8 & 0x7f % 3 {
				case 0:
					m.dev.PCIPlugged(slot)
					if slot < 32 {
						model.up |= 1 << slot
						model.down &^= 1 << slot
						model.sts |= GPEPCIHotplug
					}
				case 1:
					m.dev.PCIUnplugRequest(slot)
					if slot < 32 {
						model.down |= 1 << slot
						model.up &^= 1 << slot
						model.sts |= GPEPCIHotplug
					}
				case 2:
					cpu := int(int8(slot))
					m.dev.SetCPUPresent(cpu, st.Val&1 != 0)
					if cpu >= 0 && cpu < CPUPresentLen*8 {
						old := model.cpus[cpu/8]
						model.cpus[cpu/8] = old&^(1<<(cpu%8)) | byte(st.Val&1)<<(cpu%8)
						if model.cpus[cpu/8] != old {
							model.sts |= GPECPUHotplug
						}
					}
				}
			case 5:
				c.Reset(t, m.dev.Reset)
				model.reset()
			case 6:
				c.SetW1C(t, st.Val)
			}
			c.Check(t)
			// Every register byte, not only the ones the script read.
			for kind, p := range ports {
				_, _, h := m.dev.Handler(kind)
				for off := range p.size {
					if got, want := byte(h.Read(devices.Access{Addr: p.base + off, Offset: off, Size: 1})), model.byteAt(kind, off); got != want {
						t.Fatalf("step %+v: port %#x = %#02x, want %#02x", st, p.base+off, got, want)
					}
				}
			}
			level := model.sts&model.en != 0
			if level != sci {
				want = append(want, fmt.Sprintf("sci %v", level))
				sci = level
			}
			if got := m.rec.take(); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("step %+v: calls %q, want %q", st, got, want)
			}
		}
		if got := m.spaces.PCI.Read(m.sbdf, 0, 4, 0); got != DeviceID<<16|VendorID {
			t.Fatalf("identity = %#x", got)
		}
	})
}

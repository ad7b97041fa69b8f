package xenplatform

import (
	"fmt"
	"testing"
	"time"

	"godm/devices"
	"godm/pci"
	"godm/pci/pcitest"
)

// platformModel is the guest-visible state of the fixed ports and the I/O
// BAR (docs/misc/hvm-emulated-unplug.pandoc; QEMU's
// platform_fixed_ioport_* and xen_platform_ioport_*, hw/i386/xen/xen_platform.c).
type platformModel struct {
	flags     uint8
	unplugged UnplugMask
	product   uint16
	build     uint32
	line      []byte
	flushed   []string // lines flushed and not yet seen delivered or dropped
	flushes   uint64   // lines flushed in all
	calls     []string
}

func (p *platformModel) setFlags(v uint8) {
	p.calls = append(p.calls, fmt.Sprintf("rom locked=%v", v&FlagROMLock != 0))
	p.flags = v & FlagROMLock
}

func (p *platformModel) unplug(m UnplugMask) {
	p.calls = append(p.calls, fmt.Sprintf("unplug %#x", uint16(m)))
	p.unplugged |= m
}

func (p *platformModel) logByte(b byte) {
	if b != '\n' && len(p.line) < logBufferSize-1 {
		if (b < 0x20 && b != '\t') || b >= 0x7f {
			b = '.'
		}
		p.line = append(p.line, b)
		return
	}
	p.flushed = append(p.flushed, string(p.line))
	p.flushes++
	p.line = p.line[:0]
}

func (p *platformModel) fixedRead(off uint64, size uint8) uint64 {
	switch {
	case size == 1 && off == 0:
		return uint64(p.flags)
	case size == 1 && off == 2:
		return ProtocolVersion
	case size == 2 && off == 0:
		return Magic
	}
	return devices.SizeMask(size)
}

func (p *platformModel) fixedWrite(off uint64, size uint8, v uint64) {
	switch {
	case size == 1 && off == 0:
		p.setFlags(uint8(v))
	case size == 1 && off == 2:
		p.logByte(byte(v))
	case size == 2 && off == 0:
		p.unplug(UnplugMask(v))
	case size == 2 && off == 2:
		p.product = uint16(v)
	case size == 4 && off == 0:
		p.build = uint32(v)
	}
}

func (p *platformModel) barWrite(off uint64, size uint8, v uint64) {
	for i := range uint64(size) {
		b := byte(v >> (8 * i))
		switch off + i {
		case 0:
			p.setFlags(b)
		case 4:
			if b == 1 {
				p.unplug(UnplugDisks | UnplugNICs)
			}
		case 8:
			switch b {
			case 1:
				p.unplug(UnplugDisks)
			case 2:
				p.unplug(UnplugNICs)
			default:
				p.logByte(b)
			}
		}
	}
}

func (p *platformModel) barRead(off uint64, size uint8) uint64 {
	var v uint64
	for i := range uint64(size) {
		b := uint64(0xff)
		if off+i == 0 {
			b = uint64(p.flags)
		}
		v |= b << (8 * i)
	}
	return v
}

const (
	seedIOBase   = 0xc100
	seedMMIOBase = 0xf2000000
)

func platformSeeds() [][]byte {
	return [][]byte{
		pcitest.Encode( // PV drivers: magic, version, product, build, unplug, a log line
			pcitest.Step{Op: 3, Off: 0, Size: 2},
			pcitest.Step{Op: 3, Off: 2, Size: 1},
			pcitest.Step{Op: 2, Off: 2, Size: 2, Val: 3},
			pcitest.Step{Op: 2, Off: 0, Size: 4, Val: 0x12345},
			pcitest.Step{Op: 2, Off: 0, Size: 2, Val: uint64(UnplugDisks | UnplugNICs)},
			pcitest.Step{Op: 2, Off: 2, Size: 1, Val: 'o'},
			pcitest.Step{Op: 2, Off: 2, Size: 1, Val: 'k'},
			pcitest.Step{Op: 2, Off: 2, Size: 1, Val: '\n'},
		),
		pcitest.Encode( // hvmloader places the BARs; old drivers unplug through BAR0; the ROM lock
			pcitest.Step{Op: 6},
			pcitest.Step{Op: 5, Off: 0, Size: 1},
			pcitest.Step{Op: 4, Off: 4, Size: 1, Val: 1},
			pcitest.Step{Op: 4, Off: 8, Size: 1, Val: 2},
			pcitest.Step{Op: 4, Off: 8, Size: 1, Val: 'x'},
			pcitest.Step{Op: 4, Off: 0, Size: 4, Val: 0x0101},
			pcitest.Step{Op: 5, Off: 0x8000, Size: 8},
			pcitest.Step{Op: 4, Off: 0x8010, Size: 4, Val: 1},
			pcitest.Step{Op: 7},
		),
		pcitest.Encode( // BAR sizing, moving and disabling, a burst of log lines over time
			pcitest.Step{Op: 0, Off: 0x10, Size: 4, Val: 0xffffffff},
			pcitest.Step{Op: 1, Off: 0x10, Size: 8},
			pcitest.Step{Op: 0, Off: 0x10, Size: 4, Val: 0xd001},
			pcitest.Step{Op: 0, Off: 0x04, Size: 2, Val: 1},
			pcitest.Step{Op: 4, Off: 2, Size: 1, Val: 0},
			pcitest.Step{Op: 2, Off: 2, Size: 1, Val: '\n'},
			pcitest.Step{Op: 2, Off: 2, Size: 1, Val: '\n'},
			pcitest.Step{Op: 2, Off: 2, Size: 1, Val: '\n'},
			pcitest.Step{Op: 8, Val: 1500},
			pcitest.Step{Op: 2, Off: 2, Size: 1, Val: '\n'},
			pcitest.Step{Op: 0, Off: 0x04, Size: 2, Val: 0},
		),
	}
}

// FuzzScript interleaves configuration accesses (checked against the
// learned masks), fixed-port accesses, I/O and MMIO BAR accesses wherever
// the BARs decode (hvmloader-like placement is one step; random BAR writes
// move them), resets and the passing of time. Every read is compared with
// a model of the unplug protocol; the unplug, ROM-lock and log calls must
// be the model's; delivered log lines must be the model's lines (a line
// may only be dropped by the rate limiter, and is counted); the ranges
// registered in the port and MMIO spaces must be exactly the fixed ports
// and the decoding BARs; a reset restores the reset image.
func FuzzScript(f *testing.F) {
	for _, s := range platformSeeds() {
		f.Add(s)
	}
	masks := pcitest.LearnMasks(f, func() (*pci.Device, func()) {
		d, err := New(Config{})
		if err != nil {
			f.Fatal(err)
		}
		return d.Function(), nil
	})
	f.Fuzz(func(t *testing.T, script []byte) {
		m := newMachine(t)
		fn := m.dev.Function()
		c := pcitest.NewConfigChecker(t, m.spaces.PCI, m.sbdf, fn, masks, pcitest.StatusINTx)
		model := &platformModel{}
		mmio := uint64(0)
		for st := range pcitest.Steps(script) {
			switch st.Op % 9 {
			case 0:
				c.Write(t, st.ConfigOffset(), st.Size, st.Val)
			case 1:
				c.Read(t, st.ConfigOffset(), st.Size)
			case 2, 3:
				off := uint64(st.Off) % (FixedLen + 2)
				inside := st.Size != 3 && off+uint64(st.Size) <= FixedLen
				if st.Op%9 == 2 {
					m.spaces.PIO.Write(FixedPort+off, st.Size, 0, st.Val)
					if inside {
						model.fixedWrite(off, st.Size, st.Val&devices.SizeMask(st.Size))
					}
					break
				}
				want := devices.SizeMask(st.Size)
				if inside {
					want = model.fixedRead(off, st.Size)
				}
				if got := m.spaces.PIO.Read(FixedPort+off, st.Size, 0); got != want {
					t.Fatalf("fixed port read %#x/%d = %#x, want %#x", FixedPort+off, st.Size, got, want)
				}
			case 4, 5:
				// Bit 15 of Off picks the MMIO BAR, else the I/O BAR.
				bar, size := 0, uint64(IOBARSize)
				if st.Off&0x8000 != 0 {
					bar, size = 1, MMIOBARSize
				}
				base, ok := fn.BARAddress(bar)
				if !ok {
					base = seedIOBase
					if bar == 1 {
						base = seedMMIOBase
					}
				}
				off := uint64(st.Off&0x7fff) % (IOBARSize + 2)
				if bar == 1 {
					off = size - 0x40 + off%0x48 // the end of the 16 MiB BAR
				}
				if st.Off&0x4000 != 0 {
					off = uint64(st.Off&0xff) % 0x10 // the registers at the start
				}
				space := m.spaces.PIO
				if bar == 1 {
					space = m.spaces.MMIO
				}
				inside := ok && st.Size != 3 && off+uint64(st.Size) <= size
				if inside && bar == 1 {
					mmio++
				}
				if st.Op%9 == 4 {
					space.Write(base+off, st.Size, 0, st.Val)
					if inside && bar == 0 {
						model.barWrite(off, st.Size, st.Val&devices.SizeMask(st.Size))
					}
					break
				}
				want := devices.SizeMask(st.Size)
				if inside {
					want = 0
					if bar == 0 {
						want = model.barRead(off, st.Size)
					}
				}
				if got := space.Read(base+off, st.Size, 0); got != want {
					t.Fatalf("BAR%d read %#x/%d = %#x, want %#x (decoding %v)", bar, base+off, st.Size, got, want, ok)
				}
			case 6: // hvmloader's placement
				c.Write(t, pci.RegBAR0, 4, seedIOBase)
				c.Write(t, pci.RegBAR0+4, 4, seedMMIOBase)
				c.Write(t, pci.RegCommand, 2, uint64(pci.CommandIO|pci.CommandMemory))
			case 7:
				m.dev.Reset()
				model.setFlags(0)
				model.line = model.line[:0]
				c.CheckReset(t)
			case 8:
				m.clock.Advance(time.Duration(st.Val%4000) * time.Millisecond)
			}
			c.Check(t)
			checkPlatform(t, m, model, mmio)
		}
		if got := m.spaces.PCI.Read(m.sbdf, 0, 4, 0); got != DeviceID<<16|VendorID {
			t.Fatalf("identity = %#x", got)
		}
	})
}

// checkPlatform compares the device with the model after a step.
func checkPlatform(t *testing.T, m *machine, model *platformModel, mmio uint64) {
	t.Helper()
	calls, lines := m.rec.take()
	if fmt.Sprint(calls) != fmt.Sprint(model.calls) {
		t.Fatalf("calls %q, want %q", calls, model.calls)
	}
	model.calls = model.calls[:0]
	st := m.dev.Stats()
	if got := st.LogLines + st.LogDropped; got != model.flushes {
		t.Fatalf("%d lines delivered and %d dropped, model flushed %d", st.LogLines, st.LogDropped, model.flushes)
	}
	for _, l := range lines {
		for len(model.flushed) > 0 && model.flushed[0] != l {
			model.flushed = model.flushed[1:] // dropped by the rate limiter
		}
		if len(model.flushed) == 0 {
			t.Fatalf("log line %q is not one the guest wrote", l)
		}
		model.flushed = model.flushed[1:]
	}
	model.flushed = model.flushed[:0] // the rest were dropped
	if st.MMIOAccesses != mmio {
		t.Fatalf("MMIO accesses = %d, want %d", st.MMIOAccesses, mmio)
	}
	if got := m.dev.Flags(); got != model.flags {
		t.Fatalf("flags = %#x, want %#x", got, model.flags)
	}
	if got := m.dev.Unplugged(); got != model.unplugged {
		t.Fatalf("unplugged = %#x, want %#x", got, model.unplugged)
	}
	if p, b := m.dev.DriverInfo(); p != model.product || b != model.build {
		t.Fatalf("driver info = %#x/%#x, want %#x/%#x", p, b, model.product, model.build)
	}
	fn := m.dev.Function()
	want := []string{fmt.Sprintf("%#x+%#x", FixedPort, FixedLen)}
	if base, ok := fn.BARAddress(0); ok {
		want = append(want, fmt.Sprintf("%#x+%#x", base, IOBARSize))
	}
	checkRanges(t, "port", m.spaces.PIO, want)
	want = nil
	if base, ok := fn.BARAddress(1); ok {
		want = append(want, fmt.Sprintf("%#x+%#x", base, MMIOBARSize))
	}
	checkRanges(t, "MMIO", m.spaces.MMIO, want)
}

func checkRanges(t *testing.T, what string, s *devices.Space, want []string) {
	t.Helper()
	var got []string
	for _, r := range s.Ranges() {
		got = append(got, fmt.Sprintf("%#x+%#x", r.Base, r.Size))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s ranges %v, want %v", what, got, want)
	}
}

package testdev

import (
	"runtime"
	"testing"
	"time"

	"godm/devices"
	"godm/internal/testfake"
	"godm/memory"
	"godm/pci"
	"godm/pci/pcitest"
)

// Guest addresses of the fuzz machine: firmware's placement of the BARs and
// the RAM the DMA may write.
const (
	fuzzBAR0    = 0xfe000000
	fuzzBAR1    = 0xc000
	fuzzBAR2    = 0xfe001000
	fuzzRAM     = 0x100000
	fuzzRAMSize = 0x10000
)

// regModel is the BAR0 and BAR1 register file of the package documentation.
type regModel struct {
	scratch, dmaLen, seed, vector, ioScr uint32
	dmaAddr                              uint64
	done, status                         uint32
	intx                                 bool
}

func (m *regModel) read(off uint64) uint64 {
	switch off {
	case RegMagic:
		return Magic
	case RegScratch:
		return uint64(m.scratch)
	case RegDMALo:
		return m.dmaAddr & 0xffffffff
	case RegDMAHi:
		return m.dmaAddr >> 32
	case RegDMALen:
		return uint64(m.dmaLen)
	case RegSeed:
		return uint64(m.seed)
	case RegVector:
		return uint64(m.vector)
	case RegDone:
		return uint64(m.done)
	case RegStatus:
		return uint64(m.status)
	case RegINTx:
		if m.intx {
			return 1
		}
	}
	return 0
}

func (m *regModel) write(off uint64, v uint32) {
	switch off {
	case RegScratch:
		m.scratch = v
	case RegDMALo:
		m.dmaAddr = m.dmaAddr&^0xffffffff | uint64(v)
	case RegDMAHi:
		m.dmaAddr = m.dmaAddr&0xffffffff | uint64(v)<<32
	case RegDMALen:
		m.dmaLen = v
	case RegSeed:
		m.seed = v
	case RegVector:
		m.vector = v
	case RegINTx:
		m.intx = v&1 != 0
	}
}

// complete is the model of one command; msix tells whether MSI-X is
// enabled.
func (m *regModel) complete(msix bool) {
	switch n := uint64(m.dmaLen); {
	case n == 0 || n > MaxDMA:
		m.status = StatusBadLen
	case m.dmaAddr < fuzzRAM || m.dmaAddr-fuzzRAM > fuzzRAMSize || fuzzRAMSize-(m.dmaAddr-fuzzRAM) < n:
		m.status = StatusDMAErr
	default:
		m.status = StatusOK
	}
	m.done++
	if !msix {
		m.intx = true
	}
}

func testdevSeeds() [][]byte {
	return [][]byte{
		pcitest.Encode( // the guest driver: placement, a DMA with INTx, DONE acknowledges
			pcitest.Step{Op: 2},
			pcitest.Step{Op: 7, Off: 0x10, Val: 300},
			pcitest.Step{Op: 4, Off: RegINTx, Size: 4},
			pcitest.Step{Op: 4, Off: RegDone, Size: 4},
			pcitest.Step{Op: 4, Off: RegStatus, Size: 4},
		),
		pcitest.Encode( // MSI-X: vector 1 programmed and unmasked, enable, a DMA, masking and pending
			pcitest.Step{Op: 2},
			pcitest.Step{Op: 6, Off: 0x10, Size: 4, Val: 0xfee00000},
			pcitest.Step{Op: 6, Off: 0x18, Size: 4, Val: 0x41},
			pcitest.Step{Op: 6, Off: 0x1c, Size: 4, Val: 0},
			pcitest.Step{Op: 10, Val: 0x8000},
			pcitest.Step{Op: 3, Off: RegVector, Size: 4, Val: 1},
			pcitest.Step{Op: 7, Off: 0x110, Val: 64},
			pcitest.Step{Op: 10, Val: 0xc000},
			pcitest.Step{Op: 7, Off: 0x110, Val: 64},
			pcitest.Step{Op: 6, Off: 0x800, Size: 8},
			pcitest.Step{Op: 10, Val: 0x8000},
		),
		pcitest.Encode( // bad DMA: outside RAM, zero and oversized lengths; INTX register; odd sizes
			pcitest.Step{Op: 2},
			pcitest.Step{Op: 7, Off: 0x8000, Val: 16},
			pcitest.Step{Op: 7, Off: 0, Val: 0},
			pcitest.Step{Op: 3, Off: RegINTx, Size: 4, Val: 1},
			pcitest.Step{Op: 3, Off: RegINTx, Size: 2, Val: 0},
			pcitest.Step{Op: 4, Off: RegINTx + 1, Size: 4},
			pcitest.Step{Op: 5, Off: 3, Size: 4, Val: 0x12345678},
			pcitest.Step{Op: 5, Off: 0x105, Size: 8},
			pcitest.Step{Op: 8},
			pcitest.Step{Op: 4, Off: RegINTx, Size: 4},
		),
	}
}

// msixCapOf walks the capability list for MSI-X.
func msixCapOf(tb testing.TB, fn *pci.Device) uint32 {
	tb.Helper()
	for p := fn.ConfigRead(pci.RegCapabilities, 1); p != 0; p = fn.ConfigRead(p+1, 1) {
		if fn.ConfigRead(p, 1) == 0x11 {
			return p
		}
	}
	tb.Fatal("no MSI-X capability")
	return 0
}

// FuzzScript interleaves configuration accesses (checked against the
// learned masks), register accesses of any size and alignment to the three
// BARs wherever they decode, DMA commands (inside and outside guest RAM,
// zero and oversized lengths), MSI-X programming and resets of the device
// and its function. It
// waits for each command with a bounded deadline and then checks: every
// BAR0/BAR1 read against a model of the register file, the DMA status and
// the bytes written, that an MSI is sent only while MSI-X is enabled and
// not masked and carries an unmasked table entry, that the INTx level
// equals the Interrupt Status bit unless Interrupt Disable or MSI-X turns
// the pin off and is never sent twice, that Interrupt Status follows the
// INTX register, that a reset brings every register to its power-on
// value, and that Close stops the DMA worker within a bound.
func FuzzScript(f *testing.F) {
	for _, s := range testdevSeeds() {
		f.Add(s)
	}
	masks := pcitest.LearnMasks(f, func() (*pci.Device, func()) {
		d, err := New(memory.NewFlat(0, 0))
		if err != nil {
			f.Fatal(err)
		}
		return d.Function(), func() { d.Close() }
	})
	f.Fuzz(func(t *testing.T, script []byte) {
		// w records the INTx level and every MSI the function sends (the
		// worker goroutine sends them).
		spaces, w := devices.NewBus(), &testfake.Recorder{}
		bus, err := pci.NewBus(pci.BusConfig{Spaces: spaces, INTx: testfake.AllPins{Line: w}, MSI: w})
		if err != nil {
			t.Fatal(err)
		}
		mem := memory.NewFlat(fuzzRAM, fuzzRAMSize)
		d, err := New(mem)
		if err != nil {
			t.Fatal(err)
		}
		// On a failure the worker may be the thing that is stuck (a
		// command never done): closing is then not waited for, so the
		// failure is reported instead of hanging the fuzz worker.
		closed := false
		defer func() {
			if !closed {
				go d.Close()
			}
		}()
		fn := d.Function()
		sbdf, err := bus.Add(fn, 6, 0)
		if err != nil {
			t.Fatal(err)
		}
		c := pcitest.NewConfigChecker(t, spaces.PCI, sbdf, fn, masks, pcitest.StatusINTx)
		capMSIX := msixCapOf(t, fn)
		model := &regModel{}
		msixOn := func() bool { return fn.ConfigRead(capMSIX+2, 2)&0x8000 != 0 }
		// wait waits for the worker to finish command n: DONE counts it
		// first, then a register access (under the lock the worker
		// completes under) waits out the interrupt.
		wait := func(n uint32) {
			deadline := time.Now().Add(5 * time.Second)
			for d.Done() < n {
				if time.Now().After(deadline) {
					t.Fatalf("command %d not done after 5 s (DONE %d)", n, d.Done())
				}
				runtime.Gosched()
			}
			regs{d}.Read(devices.Access{Offset: RegScratch, Size: 4})
		}
		doorbell := func() {
			model.complete(msixOn())
			wait(model.done)
		}
		for st := range pcitest.Steps(script) {
			base := func(i int, fallback uint64) (uint64, bool) {
				if b, ok := fn.BARAddress(i); ok {
					return b, true
				}
				return fallback, false
			}
			switch st.Op % 11 {
			case 0:
				c.Write(t, st.ConfigOffset(), st.Size, st.Val)
			case 1:
				c.Read(t, st.ConfigOffset(), st.Size)
			case 2: // firmware's placement, decoding and bus mastering
				c.Write(t, pci.RegBAR0, 4, fuzzBAR0)
				c.Write(t, pci.RegBAR0+4, 4, fuzzBAR1)
				c.Write(t, pci.RegBAR0+8, 4, fuzzBAR2)
				c.Write(t, pci.RegCommand, 2, uint64(pci.CommandIO|pci.CommandMemory|pci.CommandMaster))
			case 3, 4:
				b, ok := base(0, fuzzBAR0)
				// Mostly the registers as drivers use them (aligned
				// dwords); bit 7 of Op keeps the script's size, bit 14
				// of Off any offset, bit 15 the BAR's end.
				off := uint64(st.Off&0xff) % 0x34 &^ 3
				if st.Op&0x80 == 0 {
					st.Size = 4
				}
				if st.Off&0x4000 != 0 {
					off = uint64(st.Off) % 0x34
				}
				if st.Off&0x8000 != 0 {
					off = 0x1000 - 8 + uint64(st.Off)%16 // straddling the end
				}
				inside := ok && st.Size != 3 && off+uint64(st.Size) <= 0x1000
				if st.Op%11 == 3 {
					spaces.MMIO.Write(b+off, st.Size, 0, st.Val)
					if inside && st.Size == 4 {
						model.write(off, uint32(st.Val))
						if off == RegDoorbell && uint32(st.Val) == 1 {
							doorbell()
						}
					}
					break
				}
				got := spaces.MMIO.Read(b+off, st.Size, 0)
				want := devices.SizeMask(st.Size)
				if inside && st.Size == 4 {
					want = model.read(off)
					if off == RegDone && model.intx {
						model.intx = false
					}
				}
				// Past the end is BAR2 (placed right after BAR0); with
				// BAR0 off, another BAR may decode at the fallback.
				if got != want && off < 0x1000 && ok {
					t.Fatalf("BAR0 read %#x/%d = %#x, want %#x", off, st.Size, got, want)
				}
			case 5:
				b, ok := base(1, fuzzBAR1)
				off := uint64(st.Off&0xff) % 18
				inside := ok && st.Size != 3 && off+uint64(st.Size) <= 16
				if st.Off&0x100 == 0 {
					spaces.PIO.Write(b+off, st.Size, 0, st.Val)
					if inside {
						for i := range uint64(st.Size) {
							if o := off + i; o < 4 {
								model.ioScr = model.ioScr&^(0xff<<(8*o)) | uint32(byte(st.Val>>(8*i)))<<(8*o)
							}
						}
					}
					break
				}
				got := spaces.PIO.Read(b+off, st.Size, 0)
				want := devices.SizeMask(st.Size)
				if inside {
					want = 0
					if off < 8 {
						want = (uint64(model.ioScr) | uint64(^model.ioScr)<<32) >> (8 * off) & devices.SizeMask(st.Size)
					}
				}
				if got != want {
					t.Fatalf("BAR1 read %#x/%d = %#x, want %#x", off, st.Size, got, want)
				}
			case 6: // MSI-X table and PBA through BAR2
				b, _ := base(2, fuzzBAR2)
				off := uint64(st.Off) % 0x44
				if st.Off&0x800 != 0 {
					off = 0x800 + uint64(st.Off)%0x10
				}
				if st.Off&0x8000 != 0 {
					_ = spaces.MMIO.Read(b+off, st.Size, 0)
				} else {
					spaces.MMIO.Write(b+off, st.Size, 0, st.Val)
				}
			case 7: // a DMA command
				b, ok := base(0, fuzzBAR0)
				addr := fuzzRAM + uint64(st.Off&0x7fff)*2
				if st.Off&0x8000 != 0 {
					addr = uint64(st.Off&0x7fff) << 20
				}
				n := uint32(st.Val % 700)
				if st.Val&0x80000000 != 0 {
					n = MaxDMA + 1
				}
				seed, vec := uint32(st.Val>>8), uint32(st.Val>>24)&7 // vectors 4..7 do not exist
				for _, r := range []struct {
					off uint64
					v   uint32
				}{{RegDMALo, uint32(addr)}, {RegDMAHi, uint32(addr >> 32)}, {RegDMALen, n}, {RegSeed, seed}, {RegVector, vec}, {RegDoorbell, 1}} {
					spaces.MMIO.Write(b+r.off, 4, 0, uint64(r.v))
					if ok {
						model.write(r.off, r.v)
					}
				}
				if !ok {
					break
				}
				doorbell()
				if model.status == StatusOK {
					buf := make([]byte, n)
					if err := mem.Read(memory.GPA(addr), buf); err != nil {
						t.Fatal(err)
					}
					for i, x := range buf {
						if x != byte(model.seed+uint32(i)) {
							t.Fatalf("DMA byte %d at %#x = %#x, want %#x", i, addr, x, byte(model.seed+uint32(i)))
						}
					}
				}
			case 8: // a machine reset resets the device and its function, in either order
				if st.Val&1 == 0 {
					d.Reset()
					fn.Reset()
				} else {
					fn.Reset()
					d.Reset()
				}
				c.CheckReset(t)
				*model = regModel{}
			case 9:
				c.SetW1C(t, st.Val)
			case 10: // MSI-X control: enable and function mask
				c.Write(t, capMSIX+2, 2, st.Val)
			}
			c.Check(t)
			// Repeated stays set once a level is sent twice: the first
			// such step fails.
			level, repeated, msis := w.Level(), w.Repeated(), w.TakeMSIs()
			if repeated {
				t.Fatalf("step %+v: INTx level sent twice in a row", st)
			}
			status := fn.ConfigRead(pci.RegStatus, 1)&0x08 != 0
			cmd := fn.ConfigRead(pci.RegCommand, 2)
			if want := status && cmd&pci.CommandINTxDisable == 0 && !msixOn(); level != want {
				t.Fatalf("step %+v: INTx %v, Interrupt Status %v, command %#x, MSI-X on %v", st, level, status, cmd, msixOn())
			}
			if status != model.intx {
				t.Fatalf("step %+v: Interrupt Status %v, INTX register %v", st, status, model.intx)
			}
			if len(msis) > 0 {
				ctl := fn.ConfigRead(capMSIX+2, 2)
				if ctl&0xc000 != 0x8000 {
					t.Fatalf("step %+v: %d MSIs sent with MSI-X control %#x", st, len(msis), ctl)
				}
				table := fn.Save().MSIXTable
				for _, m := range msis {
					found := false
					for v := range Vectors {
						e := table[16*v:]
						a := uint64(e[0]) | uint64(e[1])<<8 | uint64(e[2])<<16 | uint64(e[3])<<24 |
							uint64(e[4])<<32 | uint64(e[5])<<40 | uint64(e[6])<<48 | uint64(e[7])<<56
						data := uint64(e[8]) | uint64(e[9])<<8 | uint64(e[10])<<16 | uint64(e[11])<<24
						found = found || (e[12]&1 == 0 && a == m.Addr && data == uint64(m.Data))
					}
					if !found {
						t.Fatalf("step %+v: MSI %+v matches no unmasked vector", st, m)
					}
				}
			}
		}
		if got := spaces.PCI.Read(sbdf, 0, 4, 0); got != DeviceID<<16|VendorID {
			t.Fatalf("identity = %#x", got)
		}
		stopped := make(chan struct{})
		closed = true // the bounded Close below is the only one
		go func() { d.Close(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not stop the DMA worker within 5 s")
		}
	})
}

// TestCompletionINTxRace reads DONE while commands complete. Completion
// used to set INTX and raise the level in two steps; a DONE read between
// them acknowledged before the level rose and left INTx asserted with INTX
// clear. The interleaving is rare (about one command in 20000 before the
// fix), so the test runs commands for a bounded time and checks that the
// level and INTX always settle together.
func TestCompletionINTxRace(t *testing.T) {
	r := newRig(t)
	end := time.Now().Add(2 * time.Second)
	for i := uint32(1); time.Now().Before(end); i++ {
		r.fire(fuzzRAM, 1, 0)
		for r.mmr(RegDone) < uint64(i) {
			if time.Now().After(end.Add(5 * time.Second)) {
				t.Fatalf("command %d not done", i)
			}
		}
		for range 3 {
			r.mmr(RegDone)
		}
		r.mmr(RegScratch) // the worker has left its completion step
		if st, reg := r.cfgr(pci.RegStatus, 1)&8 != 0, r.mmr(RegINTx) == 1; st != reg {
			t.Fatalf("command %d: Interrupt Status %v, INTX %v", i, st, reg)
		}
	}
}

package piix3

import (
	"fmt"
	"testing"

	"godm/pci"
	"godm/pci/pcitest"
)

func piix3Seeds() [][]byte {
	return [][]byte{
		pcitest.Encode( // hvmloader: route PIRQA..D to 5, 10, 11, 5, one byte each, then a dword
			pcitest.Step{Op: 0, Off: RegPIRQ, Size: 1, Val: 5},
			pcitest.Step{Op: 0, Off: RegPIRQ + 1, Size: 1, Val: 10},
			pcitest.Step{Op: 0, Off: RegPIRQ + 2, Size: 1, Val: 11},
			pcitest.Step{Op: 0, Off: RegPIRQ + 3, Size: 1, Val: 5},
			pcitest.Step{Op: 0, Off: RegPIRQ - 2, Size: 4, Val: 0x0b0affff},
			pcitest.Step{Op: 1, Off: RegPIRQ, Size: 4},
		),
		pcitest.Encode( // INTx assert/deassert on two functions of a slot, a reset, RCR
			pcitest.Step{Op: 3, Off: 0x0204, Val: 1},
			pcitest.Step{Op: 3, Off: 0x0304, Val: 1},
			pcitest.Step{Op: 3, Off: 0x0204, Val: 0},
			pcitest.Step{Op: 2, Size: 1, Val: rcrSysReset},
			pcitest.Step{Op: 4},
			pcitest.Step{Op: 2, Off: 1, Size: 1},
			pcitest.Step{Op: 2, Size: 1, Val: rcrSysReset | rcrCPUReset},
		),
		pcitest.Encode( // disabled routes, unaligned and straddling writes, restored error bits
			pcitest.Step{Op: 0, Off: RegPIRQ + 3, Size: 2, Val: 0x8080},
			pcitest.Step{Op: 0, Off: 0x05, Size: 2, Val: 0xffff},
			pcitest.Step{Op: 5, Val: 0xffffffff},
			pcitest.Step{Op: 0, Off: 0x06, Size: 2, Val: 0x0100},
			pcitest.Step{Op: 0, Off: 0x800e, Size: 4, Val: 0x1},
			pcitest.Step{Op: 1, Off: 0xff, Size: 2},
		),
	}
}

// route is the link route the bridge must send for a PIRQ route byte.
func route(b uint8) int {
	if b&pirqDisabled != 0 {
		return 0
	}
	return int(b & 0x0f)
}

// FuzzScript runs interleaved configuration accesses (checked against the
// learned masks), reset control register accesses, INTx levels from
// functions of slots 2..5 and resets. It checks that every PIRQ byte a
// write touches is forwarded once, in order, as the route its value
// selects and nothing else is; that the RCR keeps only SYS_RST and reboots
// exactly when RST_CPU is written; that each (slot, INTx) wire's level in
// Xen is the OR of its functions and is never sent twice; that the
// identity never changes and that a reset restores the reset image.
func FuzzScript(f *testing.F) {
	for _, s := range piix3Seeds() {
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
		c := pcitest.NewConfigChecker(t, m.spaces.PCI, m.sbdf, m.dev.Function(), masks, pcitest.StatusINTx)
		var rcr uint8
		reboots := uint64(0)
		type wire struct{ dev, intx uint8 }
		drivers := map[wire]uint8{} // functions driving each wire
		xen := map[wire]bool{}      // level Xen last saw
		for st := range pcitest.Steps(script) {
			switch st.Op % 6 {
			case 0:
				off := st.ConfigOffset()
				c.Write(t, off, st.Size, st.Val)
				var want []string
				if off < 0x100 && (st.Size == 1 || st.Size == 2 || st.Size == 4 || st.Size == 8) {
					for i := range uint32(st.Size) {
						if reg := off + i; reg >= RegPIRQ && reg < RegPIRQ+NumLinks {
							b := uint8(m.spaces.PCI.Read(m.sbdf, reg, 1, 0))
							want = append(want, fmt.Sprintf("route %d->%d", reg-RegPIRQ, route(b)))
						}
					}
				}
				got := m.sink.Take()
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("config write %#x/%d=%#x sent %q, want %q", off, st.Size, st.Val, got, want)
				}
			case 1:
				c.Read(t, st.ConfigOffset(), st.Size)
			case 2:
				port := uint64(ResetControlPort) - 1 + uint64(st.Off%3)
				if st.Off&0x100 != 0 {
					v := m.spaces.PIO.Read(port, st.Size, 0)
					want := uint64(1)<<(8*st.Size) - 1
					if port == ResetControlPort && st.Size == 1 {
						want = uint64(rcr)
					}
					if st.Size >= 8 {
						want = ^uint64(0)
					}
					if v != want {
						t.Fatalf("read %#x/%d = %#x, want %#x (rcr %#x)", port, st.Size, v, want, rcr)
					}
					break
				}
				m.spaces.PIO.Write(port, st.Size, 0, st.Val)
				var want []string
				if port == ResetControlPort && st.Size == 1 {
					if st.Val&rcrCPUReset != 0 {
						want = []string{fmt.Sprintf("shutdown %d", ShutdownReboot)}
						reboots++
					} else {
						rcr = uint8(st.Val) & rcrSysReset
					}
				}
				if got := m.sink.Take(); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("write %#x/%d=%#x sent %q, want %q", port, st.Size, st.Val, got, want)
				}
			case 3:
				w := wire{dev: 2 + uint8(st.Off>>8)%4, intx: uint8(st.Off) % 4}
				fn := uint8(st.Off>>4) % 8
				high := st.Val&1 != 0
				m.dev.INTx(w.dev, fn, w.intx+1).SetLevel(high)
				if high {
					drivers[w] |= 1 << fn
				} else {
					drivers[w] &^= 1 << fn
				}
				for _, e := range m.sink.Take() {
					var dev, intx uint8
					var level bool
					if _, err := fmt.Sscanf(e, "intx %d.%d=%t", &dev, &intx, &level); err != nil {
						t.Fatalf("INTx step sent %q", e)
					}
					k := wire{dev, intx}
					if xen[k] == level {
						t.Fatalf("%q sent while Xen's level is already %v", e, level)
					}
					xen[k] = level
				}
				for k, d := range drivers {
					if xen[k] != (d != 0) {
						t.Fatalf("wire %d.%d: Xen level %v, functions driving %#x", k.dev, k.intx, xen[k], d)
					}
				}
			case 4:
				c.Reset(t, m.dev.Reset)
				rcr = 0
				if got := m.sink.Take(); len(got) != 0 {
					t.Fatalf("reset sent %q", got)
				}
			case 5:
				c.SetW1C(t, st.Val)
			}
			c.Check(t)
		}
		if got := m.spaces.PCI.Read(m.sbdf, 0, 4, 0); got != DeviceID<<16|VendorID {
			t.Fatalf("identity = %#x", got)
		}
		if got := m.dev.Stats(); got.Reboots != reboots || got.RouteErrors+got.INTxErrors+got.ShutdownErrors != 0 {
			t.Fatalf("stats %+v, want %d reboots and no errors", got, reboots)
		}
	})
}

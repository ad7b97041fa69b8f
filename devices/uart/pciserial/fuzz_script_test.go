package pciserial

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"godm/devices"
	"godm/devices/chardev"
	"godm/devices/uart"
	"godm/internal/testfake"
	"godm/pci"
	"godm/pci/pcitest"
)

// memBackend is a chardev.Backend that keeps output and lets the script
// offer input.
type memBackend struct {
	mu   sync.Mutex
	out  []byte
	sink chardev.Sink
}

func (b *memBackend) Write(p []byte) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.out = append(b.out, p...)
	return len(p)
}

func (b *memBackend) Attach(s chardev.Sink) {
	b.mu.Lock()
	b.sink = s
	b.mu.Unlock()
}

func (b *memBackend) Ready()               {}
func (b *memBackend) Stats() chardev.Stats { return chardev.Stats{} }
func (b *memBackend) Close() error         { return nil }

func (b *memBackend) feed(p []byte) int {
	b.mu.Lock()
	s := b.sink
	b.mu.Unlock()
	if s == nil {
		return 0
	}
	return s.Receive(p)
}

// UART registers (PC16550D datasheet).
const (
	regIIR, regLCR, regMCR, regLSR = 2, 3, 4, 5
	lcrDLAB, mcrLoop               = 0x80, 0x10
	lsrTHRE, lsrTEMT               = 0x20, 0x40
	ioBase                         = 0xc000
)

func serialSeeds() [][]byte {
	return [][]byte{
		pcitest.Encode( // firmware places BAR0; Linux's 8250 probe: scratch, loopback, IER, THR
			pcitest.Step{Op: 2},
			pcitest.Step{Op: 3, Off: 7, Size: 1, Val: 0xa5},
			pcitest.Step{Op: 4, Off: 7, Size: 1},
			pcitest.Step{Op: 3, Off: regMCR, Size: 1, Val: 0x1f},
			pcitest.Step{Op: 4, Off: 6, Size: 1},
			pcitest.Step{Op: 3, Off: regMCR, Size: 1, Val: 0x08},
			pcitest.Step{Op: 3, Off: 1, Size: 1, Val: 0x0f},
			pcitest.Step{Op: 5},
			pcitest.Step{Op: 3, Off: 0, Size: 1, Val: 'h'},
			pcitest.Step{Op: 5},
		),
		pcitest.Encode( // FIFO on, trigger level 4, input, character timeout, reads
			pcitest.Step{Op: 2},
			pcitest.Step{Op: 3, Off: 2, Size: 1, Val: 0x47},
			pcitest.Step{Op: 3, Off: 1, Size: 1, Val: 0x01},
			pcitest.Step{Op: 6, Val: 'a'},
			pcitest.Step{Op: 5},
			pcitest.Step{Op: 7, Val: 50},
			pcitest.Step{Op: 5},
			pcitest.Step{Op: 4, Off: 0, Size: 4},
			pcitest.Step{Op: 8, Val: 1},
			pcitest.Step{Op: 5},
		),
		pcitest.Encode( // INTx disable while pending, divisor latch, wide writes, moving the BAR
			pcitest.Step{Op: 2},
			pcitest.Step{Op: 3, Off: 1, Size: 1, Val: 0x02},
			pcitest.Step{Op: 0, Off: 0x05, Size: 1, Val: 0x05},
			pcitest.Step{Op: 0, Off: 0x04, Size: 2, Val: 0x0001},
			pcitest.Step{Op: 3, Off: 0, Size: 8, Val: 0x83000c00},
			pcitest.Step{Op: 4, Off: 0, Size: 2},
			pcitest.Step{Op: 0, Off: 0x10, Size: 4, Val: 0xd001},
			pcitest.Step{Op: 9, Val: 0xffffffff},
			pcitest.Step{Op: 1, Off: 0x8000, Size: 8},
		),
	}
}

// FuzzScript interleaves configuration accesses (checked against the
// learned masks), UART register accesses of any size through BAR 0
// wherever it decodes, host input, time passing (character timeouts) and
// resets. After every step: the slot's INTx level equals the function's
// Interrupt Status bit unless Interrupt Disable is set, and changes only
// when it must; IIR reports an interrupt exactly when the status bit is
// set; LSR always shows the transmitter empty; THR bytes reach the backend
// in order unless DLAB or loopback hold them; a reset of the function and
// the UART (in either order) returns both to their reset state with the
// line low.
func FuzzScript(f *testing.F) {
	for _, s := range serialSeeds() {
		f.Add(s)
	}
	masks := pcitest.LearnMasks(f, func() (*pci.Device, func()) {
		d, err := New(uart.Config{Clock: &testfake.Clock{}, Backend: &memBackend{}})
		if err != nil {
			f.Fatal(err)
		}
		return d.PCI, func() { d.Close() }
	})
	f.Fuzz(func(t *testing.T, script []byte) {
		spaces := devices.NewBus()
		// The slot's INTx wire; the script fails when a level is sent
		// twice in a row (the PCI layer must forward changes only).
		line := &testfake.Recorder{}
		bus, err := pci.NewBus(pci.BusConfig{Spaces: spaces, INTx: testfake.AllPins{Line: line}})
		if err != nil {
			t.Fatal(err)
		}
		clock, be := &testfake.Clock{}, &memBackend{}
		d, err := New(uart.Config{Clock: clock, Backend: be})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		sbdf, err := bus.Add(d.PCI, 3, 0)
		if err != nil {
			t.Fatal(err)
		}
		c := pcitest.NewConfigChecker(t, spaces.PCI, sbdf, d.PCI, masks, pcitest.StatusINTx)
		var out []byte
		status := func() bool { return d.PCI.ConfigRead(pci.RegStatus, 1)&0x08 != 0 }
		for st := range pcitest.Steps(script) {
			base, decoding := d.PCI.BARAddress(0)
			if !decoding {
				base = ioBase
			}
			off := uint64(st.Off) % 10
			inside := decoding && st.Size != 3 && off+uint64(st.Size) <= uart.Size
			switch st.Op % 10 {
			case 0:
				c.Write(t, st.ConfigOffset(), st.Size, st.Val)
			case 1:
				c.Read(t, st.ConfigOffset(), st.Size)
			case 2: // firmware's placement
				c.Write(t, pci.RegBAR0, 4, ioBase)
				c.Write(t, pci.RegCommand, 2, uint64(pci.CommandIO))
			case 3:
				if inside {
					lcr := uint8(spaces.PIO.Read(base+regLCR, 1, 0))
					loop := uint8(spaces.PIO.Read(base+regMCR, 1, 0))&mcrLoop != 0
					for i := range uint64(st.Size) {
						b := byte(st.Val >> (8 * i))
						switch off + i {
						case 0:
							if lcr&lcrDLAB == 0 && !loop {
								out = append(out, b)
							}
						case regLCR:
							lcr = b
						case regMCR:
							loop = b&mcrLoop != 0
						}
					}
				}
				spaces.PIO.Write(base+off, st.Size, 0, st.Val)
			case 4:
				v := spaces.PIO.Read(base+off, st.Size, 0)
				if !inside && v != devices.SizeMask(st.Size) {
					t.Fatalf("read %#x/%d outside a decoding BAR = %#x", base+off, st.Size, v)
				}
			case 5: // IIR against the Interrupt Status bit (also below)
				checkIIR(t, d, status)
			case 6:
				be.feed([]byte{byte(st.Val), byte(st.Val >> 8), byte(st.Val >> 16)}[:st.Off%4])
			case 7:
				clock.Advance(time.Duration(st.Val%100) * time.Millisecond)
			case 8:
				if st.Val&1 == 0 {
					d.PCI.Reset()
					d.UART.Reset()
				} else {
					d.UART.Reset()
					d.PCI.Reset()
				}
				c.CheckReset(t)
				if line.Level() || status() {
					t.Fatalf("after reset: INTx %v, Interrupt Status %v", line.Level(), status())
				}
				for _, r := range []struct {
					off  uint64
					want uint8
				}{{1, 0}, {regIIR, 1}, {regLCR, 0}, {regMCR, 0x08}, {regLSR, lsrTHRE | lsrTEMT}, {7, 0}} {
					if got := uint8(d.UART.Read(devices.Access{Offset: r.off, Size: 1})); got != r.want {
						t.Fatalf("after reset: UART register %d = %#x, want %#x", r.off, got, r.want)
					}
				}
			case 9:
				c.SetW1C(t, st.Val)
			}
			c.Check(t)
			if st.Op&0x80 != 0 {
				// Reading IIR acknowledges a THRE interrupt, so only
				// half of the steps end with this check.
				checkIIR(t, d, status)
			}
			if line.Repeated() {
				t.Fatalf("step %+v: INTx level sent twice in a row", st)
			}
			cmd := d.PCI.ConfigRead(pci.RegCommand, 2)
			if want := status() && cmd&pci.CommandINTxDisable == 0; line.Level() != want {
				t.Fatalf("step %+v: INTx %v, Interrupt Status %v, command %#x", st, line.Level(), status(), cmd)
			}
			if lsr := uint8(d.UART.Read(devices.Access{Offset: regLSR, Size: 1})); lsr&(lsrTHRE|lsrTEMT) != lsrTHRE|lsrTEMT {
				t.Fatalf("step %+v: LSR = %#x, transmitter not empty", st, lsr)
			}
			be.mu.Lock()
			got := bytes.Clone(be.out)
			be.mu.Unlock()
			if !bytes.Equal(got, out) {
				t.Fatalf("step %+v: backend got %q, want %q", st, got, out)
			}
		}
		if got := spaces.PCI.Read(sbdf, 0, 4, 0); got != DeviceID<<16|VendorID {
			t.Fatalf("identity = %#x", got)
		}
	})
}

// checkIIR reads IIR (as the guest's interrupt handler does first) and
// checks it against the function's Interrupt Status bit: an interrupt is
// pending exactly when the bit is set, and once IIR says none is, the bit
// is clear.
func checkIIR(t *testing.T, d *Device, status func() bool) {
	t.Helper()
	before := status()
	iir := d.UART.Read(devices.Access{Offset: regIIR, Size: 1})
	if pending := iir&1 == 0; pending != before {
		t.Fatalf("IIR = %#x with Interrupt Status %v", iir, before)
	} else if !pending && status() {
		t.Fatalf("IIR = %#x (none pending) but Interrupt Status set after it", iir)
	}
}

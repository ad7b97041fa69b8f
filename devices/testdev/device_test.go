package testdev

import (
	"testing"
	"time"

	"godm/devices"
	"godm/internal/testfake"
	"godm/memory"
	"godm/pci"
)

type rig struct {
	t    *testing.T
	bus  *devices.Bus
	sbdf devices.SBDF
	dev  *Device
	mem  *memory.Flat
	irq  *testfake.Recorder // INTx (every pin) and MSIs
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{t: t, bus: devices.NewBus(), mem: memory.NewFlat(0x100000, 1<<20),
		irq: &testfake.Recorder{}}
	pb, err := pci.NewBus(pci.BusConfig{
		Spaces: r.bus,
		INTx:   testfake.AllPins{Line: r.irq},
		MSI:    r.irq,
	})
	if err != nil {
		t.Fatal(err)
	}
	r.dev, err = New(r.mem)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.dev.Close() })
	if r.sbdf, err = pb.Add(r.dev.Function(), 6, 0); err != nil {
		t.Fatal(err)
	}
	// Program BARs and enable decoding and bus mastering, as firmware does.
	r.cfgw(0x10, 4, 0xfe000000)
	r.cfgw(0x14, 4, 0xc000)
	r.cfgw(0x18, 4, 0xfe001000)
	r.cfgw(0x04, 2, 0x7)
	return r
}

func (r *rig) cfgr(reg uint32, size uint8) uint64 { return r.bus.PCI.Read(r.sbdf, reg, size, 0) }
func (r *rig) cfgw(reg uint32, size uint8, v uint64) {
	r.bus.PCI.Write(r.sbdf, reg, size, 0, v)
}
func (r *rig) mmr(off uint64) uint64    { return r.bus.MMIO.Read(0xfe000000+off, 4, 0) }
func (r *rig) mmw(off uint64, v uint64) { r.bus.MMIO.Write(0xfe000000+off, 4, 0, v) }
func (r *rig) fire(addr uint64, n, seed uint32) {
	r.mmw(RegDMALo, addr&0xffffffff)
	r.mmw(RegDMAHi, addr>>32)
	r.mmw(RegDMALen, uint64(n))
	r.mmw(RegSeed, uint64(seed))
	r.mmw(RegDoorbell, 1)
}

func (r *rig) waitDone(n uint32) {
	r.t.Helper()
	deadline := time.After(5 * time.Second)
	for r.dev.Done() < n {
		select {
		case <-deadline:
			r.t.Fatalf("DONE = %d, want %d", r.dev.Done(), n)
		case <-time.After(time.Millisecond):
		}
	}
}

// msixCap finds the MSI-X capability offset by walking the list.
func (r *rig) msixCap() uint32 {
	for p := uint32(r.cfgr(0x34, 1)); p != 0; p = uint32(r.cfgr(p+1, 1)) {
		if r.cfgr(p, 1) == 0x11 {
			return p
		}
	}
	r.t.Fatal("no MSI-X capability")
	return 0
}

func TestRegistersAndIO(t *testing.T) {
	r := newRig(t)
	if got := r.cfgr(0, 4); got != DeviceID<<16|VendorID {
		t.Errorf("IDs = %#x", got)
	}
	if got := r.mmr(RegMagic); got != Magic {
		t.Errorf("MAGIC = %#x, want %#x", got, Magic)
	}
	r.mmw(RegScratch, 0xdeadbeef)
	if got := r.mmr(RegScratch); got != 0xdeadbeef {
		t.Errorf("SCRATCH = %#x", got)
	}
	r.bus.PIO.Write(0xc000, 4, 0, 0x12345678)
	if got := r.bus.PIO.Read(0xc004, 4, 0); got != ^uint64(0x12345678)&0xffffffff {
		t.Errorf("I/O inverted scratch = %#x", got)
	}
	if got := r.bus.MMIO.Read(0xfe000000, 2, 0); got != 0xffff {
		t.Errorf("16-bit register read = %#x, want all-ones", got)
	}
}

func TestDMAWithMSIX(t *testing.T) {
	r := newRig(t)
	c := r.msixCap()
	// Vector 0: address/data, unmasked; then enable MSI-X.
	r.bus.MMIO.Write(0xfe001000, 4, 0, 0xfee00000)
	r.bus.MMIO.Write(0xfe001004, 4, 0, 0)
	r.bus.MMIO.Write(0xfe001008, 4, 0, 0x41)
	r.bus.MMIO.Write(0xfe00100c, 4, 0, 0)
	r.cfgw(c+2, 2, 1<<15)

	r.fire(0x100100, 300, 7)
	r.waitDone(1)
	testfake.WaitFor(t, 5*time.Second, "the MSI-X message", func() bool { return len(r.irq.MSIs()) > 0 })
	if m := r.irq.TakeMSIs()[0]; m.Addr != 0xfee00000 || m.Data != 0x41 {
		t.Errorf("MSI = %+v", m)
	}
	buf := make([]byte, 302)
	r.mem.Read(0x1000ff, buf)
	if buf[0] != 0 || buf[301] != 0 {
		t.Errorf("DMA wrote outside the buffer: %d %d", buf[0], buf[301])
	}
	for i := 0; i < 300; i++ {
		if buf[1+i] != byte(7+i) {
			t.Fatalf("byte %d = %d, want %d", i, buf[1+i], byte(7+i))
		}
	}
	if got := r.mmr(RegStatus); got != StatusOK {
		t.Errorf("STATUS = %d", got)
	}
}

func TestDMAFailuresAndINTx(t *testing.T) {
	r := newRig(t)
	r.fire(0x50000000, 16, 1) // outside guest memory
	r.waitDone(1)
	if got := r.mmr(RegStatus); got != StatusDMAErr {
		t.Errorf("STATUS = %d, want DMA error", got)
	}
	// Without MSI-X the completion is an INTx level held until DONE is read.
	testfake.WaitFor(t, 5*time.Second, "INTx", func() bool { return r.irq.Calls() >= 1 })
	if !r.irq.TakeLevels()[0] {
		t.Errorf("INTx went low first")
	}
	if got := r.mmr(RegDone); got != 1 {
		t.Errorf("DONE = %d", got)
	}
	testfake.WaitFor(t, 5*time.Second, "INTx deasserted", func() bool { return r.irq.Calls() >= 2 })
	if r.irq.TakeLevels()[0] {
		t.Errorf("INTx not deasserted by reading DONE")
	}
	r.fire(0x100000, MaxDMA+1, 0)
	r.waitDone(2)
	if got := r.mmr(RegStatus); got != StatusBadLen {
		t.Errorf("STATUS = %d, want bad length", got)
	}
}

func TestIOScratchBytewise(t *testing.T) {
	r := newRig(t)
	for i, b := range []uint64{0x78, 0x56, 0x34, 0x12} {
		r.bus.PIO.Write(0xc000+uint64(i), 1, 0, b)
	}
	if got := r.bus.PIO.Read(0xc000, 4, 0); got != 0x12345678 {
		t.Errorf("scratch = %#x, want 0x12345678", got)
	}
	if got := r.bus.PIO.Read(0xc005, 2, 0); got != 0xcba9 {
		t.Errorf("inverted bytes 1-2 = %#x, want 0xcba9", got)
	}
	r.bus.PIO.Write(0xc004, 4, 0, 0) // read-only half
	if got := r.bus.PIO.Read(0xc004, 4, 0); got != 0xedcba987 {
		t.Errorf("inverse after write = %#x", got)
	}
}

func TestReset(t *testing.T) {
	r := newRig(t)
	d := r.dev
	w := func(off, v uint64) { regs{d}.Write(devices.Access{Offset: off, Size: 4}, v) }
	rd := func(off uint64) uint64 { return regs{d}.Read(devices.Access{Offset: off, Size: 4}) }
	w(RegScratch, 0x1234)
	w(RegDMALo, 0x100)
	w(RegDMAHi, 1)
	w(RegDMALen, 16)
	w(RegSeed, 7)
	w(RegVector, 2)
	w(RegINTx, 1)
	if r.cfgr(0x06, 2)&0x08 == 0 {
		t.Fatal("INTx status not set before reset")
	}
	ioRegs{d}.Write(devices.Access{Offset: 0, Size: 4}, 0xa5a5a5a5)
	d.Reset()
	for _, off := range []uint64{RegScratch, RegDMALo, RegDMAHi, RegDMALen, RegSeed, RegVector, RegDone, RegStatus, RegINTx} {
		if got := rd(off); got != 0 {
			t.Errorf("register %#x after reset = %#x, want 0", off, got)
		}
	}
	if got := rd(RegMagic); got != Magic {
		t.Errorf("magic after reset = %#x", got)
	}
	if got := (ioRegs{d}).Read(devices.Access{Offset: 0, Size: 4}); got != 0 {
		t.Errorf("I/O scratch after reset = %#x, want 0", got)
	}
	if r.cfgr(0x06, 2)&0x08 != 0 {
		t.Error("INTx status still set after reset")
	}
}

// TestDMAMarksDirty: the device's DMA writes reach the guest-memory dirty
// log (the input to live migration's log-dirty), exactly the pages written.
func TestDMAMarksDirty(t *testing.T) {
	r := newRig(t)
	log, err := memory.NewDirtyLog(0x200000)
	if err != nil {
		t.Fatal(err)
	}
	r.mem.Dirty = log        // before the first doorbell, which orders it for the device
	r.fire(0x100ffe, 300, 1) // crosses from gfn 0x100 into 0x101
	r.waitDone(1)
	var got [][2]uint64
	log.Collect(func(g, n uint64) { got = append(got, [2]uint64{g, n}) })
	if len(got) != 1 || got[0] != [2]uint64{0x100, 2} {
		t.Errorf("dirty runs %x, want gfns 0x100-0x101", got)
	}
}

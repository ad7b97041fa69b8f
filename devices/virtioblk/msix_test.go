package virtioblk

import (
	"testing"
	"time"

	"godm/devices"
	"godm/internal/testfake"
	"godm/pci"
)

// TestModernMSIX brings the device up through the modern registers with
// MSI-X on: the queue's completions arrive as the queue vector's message,
// a vector beyond the table reads back as NO_VECTOR, INTx stays low, and
// the legacy device configuration moves to offset 24.
func TestModernMSIX(t *testing.T) {
	r := newRig(t, false)
	r.t = t
	spaces := devices.NewBus()
	rec := &testfake.Recorder{}
	bus, err := pci.NewBus(pci.BusConfig{Spaces: spaces, INTx: rec, MSI: rec})
	if err != nil {
		t.Fatal(err)
	}
	fn := r.d.Function()
	sbdf, err := bus.Add(fn, 6, 0)
	if err != nil {
		t.Fatal(err)
	}
	cfg := func(off uint32, size uint8, v uint64) { spaces.PCI.Write(sbdf, off, size, 0, v) }
	const msixAt = 0xfe000000
	cfg(0x14, 4, msixAt)
	cfg(0x20, 4, 0xfe004000)
	cfg(0x24, 4, 0)
	cfg(pci.RegCommand, 2, pci.CommandMemory|pci.CommandMaster)
	// Vector 1: address and data, unmasked; MSI-X on.
	spaces.MMIO.Write(msixAt+16, 4, 0, 0xfee00000)
	spaces.MMIO.Write(msixAt+16+8, 4, 0, 0x4051)
	spaces.MMIO.Write(msixAt+16+12, 4, 0, 0)
	cfg(0x98+2, 2, 0x8000)

	w := func(off uint64, size uint8, v uint64) { spaces.MMIO.Write(0xfe004000+off, size, 0, v) }
	rd := func(off uint64, size uint8) uint64 { return spaces.MMIO.Read(0xfe004000+off, size, 0) }
	w(0x14, 1, 3)
	w(0x08, 4, 1)
	w(0x0c, 4, 1)
	w(0x14, 1, 0xb)
	w(0x10, 2, 5) // config vector beyond the table
	if v := rd(0x10, 2); v != 0xffff {
		t.Errorf("config vector 5 reads %#x, want NO_VECTOR", v)
	}
	w(0x10, 2, 0)
	w(0x16, 2, 0)
	w(0x1a, 2, 1)
	if v := rd(0x1a, 2); v != 1 {
		t.Errorf("queue vector %#x", v)
	}
	w(0x20, 4, ringBase)
	w(0x28, 4, availAt)
	w(0x30, 4, usedAt)
	w(0x1c, 2, 1)
	w(0x14, 1, 0xf)
	if v := r.in(24, 4); v != diskSize/512 {
		t.Errorf("legacy capacity at 24 with MSI-X on: %#x", v)
	}
	r.put(bufBase, hdr(tIn, 2))
	r.chain(seg{bufBase, 16, false}, seg{bufBase + 0x1000, 512, true}, seg{bufBase + 0x800, 1, true})
	w(0x3000, 2, 0) // notify queue 0
	r.waitUsed(1)
	testfake.WaitFor(t, 5*time.Second, "the queue's MSI", func() bool { return len(rec.MSIs()) > 0 })
	if m := rec.TakeMSIs(); len(m) != 1 || m[0].Addr != 0xfee00000 || m[0].Data != 0x4051 {
		t.Errorf("MSIs %+v", m)
	}
	if rec.Pin(6, 0, 1).Level() {
		t.Error("INTx raised with MSI-X on")
	}
	if st := r.get(bufBase+0x800, 1)[0]; st != sOK {
		t.Errorf("status %d", st)
	}
}

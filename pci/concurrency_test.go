package pci

import (
	"sync"
	"testing"
)

// TestConcurrentAccess moves BARs, toggles decoding and MSI-X, touches the
// table and raises interrupts from several goroutines at once; under -race
// it checks the locking, and it must not deadlock.
func TestConcurrentAccess(t *testing.T) {
	r := newRig(t)
	h := &memHandler{mem: make([]byte, 0x4000)}
	d, sbdf := newMSIXDevice(t, r, h)
	c := uint32(d.msix.cap)
	var wg sync.WaitGroup
	const n = 300
	wg.Add(5)
	go func() {
		defer wg.Done()
		for i := range n {
			r.cfgWrite(sbdf, RegBAR0, 4, uint64(0xfe000000+0x10000*(i%4)))
		}
	}()
	go func() {
		defer wg.Done()
		for i := range n {
			r.cfgWrite(sbdf, RegCommand, 2, uint64(CommandMemory*(i%2)))
			r.cfgWrite(sbdf, c+2, 2, uint64(msixEnable*(i%3/2)))
		}
	}()
	go func() {
		defer wg.Done()
		for i := range n {
			base := uint64(0xfe000000 + 0x10000*(i%4))
			r.spaces.MMIO.Write(base+0x2000+16*uint64(i%70)+12, 4, 0, uint64(i%2))
			_ = r.spaces.MMIO.Read(base+0x3000, 8, 0)
			r.spaces.MMIO.Write(base+0x10, 4, 0, uint64(i))
		}
	}()
	go func() {
		defer wg.Done()
		for i := range n {
			d.Interrupt(i % 70)
			d.SetINTx(i%2 == 0)
		}
	}()
	go func() {
		defer wg.Done()
		for range n {
			_ = r.cfgRead(sbdf, 0, 4)
			_, _ = d.BARAddress(0)
			_ = d.Stats()
		}
	}()
	wg.Wait()
	// Whatever happened, the registration matches the registers.
	base, ok := d.BARAddress(0)
	ranges := r.spaces.MMIO.Ranges()
	if ok != (len(ranges) == 1) || (ok && ranges[0].Base != base) {
		t.Errorf("BAR at %#x (decoding %v) but MMIO ranges %+v", base, ok, ranges)
	}
}

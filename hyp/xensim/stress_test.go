package xensim

import (
	"sync"
	"testing"

	"godm/hyp/kernel"
	"godm/hyp/xenabi"
)

// TestConcurrentVCPUsAndDMOps runs every vCPU against one device model
// while another goroutine issues DM ops and maps memory, for the race
// detector.
func TestConcurrentVCPUsAndDMOps(t *testing.T) {
	s, d := newSim(t, Config{}, DomainConfig{VCPUs: 4, RAM: []Region{{0, 1 << 20}}})
	dm := newFakeDM(t, s, d, xenabi.HVM_IOREQSRV_BUFIOREQ_ATOMIC, func(r reqView) uint64 { return r.addr + uint64(r.vcpu) })
	dom := uint16(d.ID())
	if err := rangeOp(dm.pc, dom, xenabi.XEN_DMOP_map_io_range_to_ioreq_server, dm.id, xenabi.XEN_DMOP_IO_RANGE_PORT, 0x100, 0x1ff); err != nil {
		t.Fatal(err)
	}
	if err := rangeOp(dm.pc, dom, xenabi.XEN_DMOP_map_io_range_to_ioreq_server, dm.id, xenabi.XEN_DMOP_IO_RANGE_MEMORY, 0xa0000, 0xbffff); err != nil {
		t.Fatal(err)
	}
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < d.NumVCPUs(); i++ {
		v := d.VCPU(i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < n; j++ {
				port := uint16(0x100 + j%0x100)
				got, err := v.In(port, 1)
				if err != nil {
					errs <- err
					return
				}
				if want := (uint64(port) + uint64(v.ID())) & 0xff; got != want {
					t.Errorf("vcpu%d In(%#x) = %#x, want %#x", v.ID(), port, got, want)
				}
				if _, err := v.BufferedWrite(xenabi.IOREQ_TYPE_COPY, 0xa0000+uint64(j), 1, 1); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		pc := mustOpen(t, s.Kernel(0), kernel.Privcmd, 0)
		defer pc.Close()
		for j := 0; j < n; j++ {
			if _, err := dmop(pc, dom, xenabi.XEN_DMOP_set_pci_intx_level, union(uint16(0), uint8(0), uint8(2), uint8(0), uint8(j&1))); err != nil {
				errs <- err
				return
			}
			if err := d.WriteRAM(uint64(j)*64, []byte{byte(j)}); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Every In is synchronous; buffered writes add more only when the
	// ring was full.
	if got := len(dm.requests()); got < d.NumVCPUs()*n {
		t.Errorf("DM saw %d requests, want at least %d", got, d.NumVCPUs()*n)
	}
	if vs := s.Violations(); len(vs) != 0 {
		t.Errorf("violations %v", vs)
	}
}

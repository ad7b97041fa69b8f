package passthrough

import (
	"context"
	"testing"

	"godm/devices"
	"godm/internal/machine"
)

// TestBesideFullDeviceModel runs the standalone server next to a full
// godm machine serving the same guest: each claims its own functions,
// and stopping the standalone server leaves the machine's intact.
func TestBesideFullDeviceModel(t *testing.T) {
	r := newSimRig(t)
	m, err := machine.New(r.sim.Kernel(0), machine.Spec{Dom: r.dom.ID(), VCPUs: 1, MemBytes: 256 << 20, NoPS2: true})
	must(t, err)
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- m.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("machine Serve: %v", err)
		}
	}()

	_, stop, done := r.standalone(t, "0000:03:00.0", 6)
	v := r.dom.VCPU(0)
	read := func(dev uint8) uint64 {
		t.Helper()
		x, err := v.PCIConfigRead(uint32(devices.NewSBDF(0, 0, dev, 0)), 0, 4)
		must(t, err)
		return x
	}
	if got := read(0); got != 0x12378086 {
		t.Errorf("host bridge (machine) = %#x", got)
	}
	if got := read(6); got != 0x10d38086 {
		t.Errorf("passed-through function (standalone) = %#x", got)
	}
	sbdf := uint32(devices.NewSBDF(0, 0, 6, 0))
	must(t, v.PCIConfigWrite(sbdf, 0x1c, 4, 0xe0100000))
	must(t, v.PCIConfigWrite(sbdf, 0x04, 2, 0x0006))
	must(t, v.MMIOWrite(0xe0100008, 4, 0x51))
	if x, err := v.MMIORead(0xe0100008, 4); err != nil || x != 0x51 {
		t.Errorf("MSI-X table through the standalone server = %#x, %v", x, err)
	}
	stop()
	must(t, wait(t, done))
	if got := read(6); got != 0xffffffff {
		t.Errorf("after stopping: slot 6 reads %#x", got)
	}
	if got := read(0); got != 0x12378086 {
		t.Errorf("after stopping: host bridge = %#x", got)
	}
	st := replay(r.sim.Events())
	st.servers = 0 // the machine's server is still up
	if err := st.clean(); err != nil {
		t.Error(err)
	}
}

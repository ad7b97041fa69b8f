package xensim

import (
	"path/filepath"
	"strings"
	"testing"

	"godm/hyp/internal/golden"
	"godm/hyp/kernel"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

// TestGoldenDMOps replays the DM ops that libxendevicemodel (Xen 4.17)
// issued in the golden fixtures — byte for byte, pads and sizes as the C
// library sets them — against the simulated Xen, checking that it takes
// them (and answers set_irq_level, an Arm op, like x86 Xen).
func TestGoldenDMOps(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(golden.Dir(), "dm_*.json"))
	if err != nil || len(paths) == 0 {
		t.Skipf("no golden DM fixtures under %s: %v", golden.Dir(), err)
	}
	want := map[string]unix.Errno{
		"dm_set_irq_level": unix.EOPNOTSUPP, // Arm only
		// The fixture asks for 0001:02:03 INTC; Xen only has segment 0,
		// bus 0 (xen/arch/x86/hvm/dm.c:set_pci_intx_level).
		"dm_set_pci_intx_level": unix.EINVAL,
	}
	// Fixtures that need an earlier call's state.
	before := map[string]string{
		"dm_unmap_io_range_port": "dm_map_io_range_port",
		"dm_unmap_io_range_mmio": "dm_map_io_range_mmio",
		"dm_unmap_pcidev":        "dm_map_pcidev",
	}
	replayed := 0
	for _, path := range paths {
		name := strings.TrimSuffix(filepath.Base(path), ".json")
		f, err := golden.LoadFile(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		evs := f.Ioctls(xenabi.IOCTL_PRIVCMD_DM_OP)
		if len(evs) == 0 {
			continue
		}
		t.Run(name, func(t *testing.T) {
			_, d := newSim(t, Config{}, DomainConfig{ID: 7, VCPUs: 2, LogDirty: true,
				RAM: []Region{{0, 0xa0000}, {0x100000, 0x10000000}}})
			pc := mustOpen(t, d.s.Kernel(0), kernel.Privcmd, 0)
			for i := 0; i < 2; i++ {
				createServer(t, pc, 7, xenabi.HVM_IOREQSRV_BUFIOREQ_ATOMIC)
			}
			if pre, ok := before[name]; ok {
				pf := golden.Load(t, pre)
				for _, e := range pf.Ioctls(xenabi.IOCTL_PRIVCMD_DM_OP) {
					if err := replayDMOp(t, pc, e); err != nil {
						t.Fatalf("setup %s: %v", pre, err)
					}
				}
			}
			for _, e := range evs {
				err := replayDMOp(t, pc, e)
				if w := want[name]; !isErrno(err, w) {
					t.Errorf("%s: %v, want %v", f.Call, err, w)
				}
			}
		})
		replayed++
	}
	if replayed == 0 {
		t.Fatal("no DM op replayed")
	}
}

// replayDMOp issues the DM op of a fixture event with its buffers.
func replayDMOp(t *testing.T, pc kernel.File, e *golden.Event) error {
	t.Helper()
	var bufs [][]byte
	for _, b := range e.DMOpBuffers(t) {
		bufs = append(bufs, append([]byte(nil), b.Bytes()...))
	}
	dom := uint16(e.Arg.Bytes()[0]) | uint16(e.Arg.Bytes()[1])<<8
	return rawDMOp(pc, dom, bufs...)
}

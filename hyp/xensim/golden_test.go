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

// replayIoctl rebuilds the argument of a fixture ioctl and every buffer
// it reaches, patching the pointer fields with the new addresses, and
// issues it. It returns the ioctl result and the rebuilt buffers.
func replayIoctl(t *testing.T, f kernel.File, e *golden.Event) (uintptr, []byte, [][]byte, error) {
	return replayIoctlAt(t, f, e, nil)
}

// replayIoctlAt is replayIoctl with pointers into a device mapping
// ("mmap" region) aimed at mapping.
func replayIoctlAt(t *testing.T, f kernel.File, e *golden.Event, mapping []byte) (uintptr, []byte, [][]byte, error) {
	t.Helper()
	bufs := make([][]byte, len(e.Buffers))
	for i, b := range e.Buffers {
		bufs[i] = make([]byte, b.Len+8)[:b.Len] // non-empty backing even for len 0
		copy(bufs[i], b.Bytes())
	}
	arg := append([]byte(nil), e.Arg.Bytes()...)
	patch := func(dst []byte, b *golden.Buffer) {
		for _, p := range b.Ptrs {
			switch {
			case p.Region == golden.RegionMmap && mapping != nil:
				le.PutUint64(dst[p.Off:], addr(mapping))
			case p.Buf >= 0 && p.Buf < len(bufs):
				le.PutUint64(dst[p.Off:], addr(bufs[p.Buf][:cap(bufs[p.Buf])]))
			}
		}
	}
	patch(arg, e.Arg)
	for i := range e.Buffers {
		patch(bufs[i], &e.Buffers[i])
	}
	r, err := rawIoctl2(f, uint(e.Req), arg)
	return r, arg, bufs, err
}

// TestGoldenHypercalls replays the hypercalls libxenctrl issued in the
// golden fixtures (domctls, physdev ops, memory ops through multicall,
// hvm_op, xen_version) against the simulated Xen.
func TestGoldenHypercalls(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(golden.Dir(), "xc_*.json"))
	if err != nil || len(paths) == 0 {
		t.Skipf("no golden hypercall fixtures under %s: %v", golden.Dir(), err)
	}
	for _, path := range paths {
		name := strings.TrimSuffix(filepath.Base(path), ".json")
		f, err := golden.LoadFile(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		evs := f.Ioctls(xenabi.IOCTL_PRIVCMD_HYPERCALL)
		if len(evs) == 0 {
			continue
		}
		t.Run(name, func(t *testing.T) {
			s, d := newSim(t, Config{}, DomainConfig{ID: 7, VCPUs: 2,
				RAM: []Region{{0, 0xa0000}, {0x100000, 0x10000000}}})
			// PIRQs the passthrough fixtures use, as if mapped earlier.
			s.mu.Lock()
			for _, p := range []int32{9, 55} {
				d.pt().pirqs[p] = pirqMap{typ: xenabi.MAP_PIRQ_TYPE_GSI, index: p}
			}
			// ...and the I/O memory the memory_mapping fixtures map,
			// granted to the guest as libxl does before (Xen checks the
			// target's iomem permission too).
			err := d.pt().iomemPerm.add(0xfe000, 0xfe0ff)
			s.mu.Unlock()
			if err != nil {
				t.Fatal(err) // after the Unlock: the cleanup's Close takes the lock
			}
			pc := mustOpen(t, s.Kernel(0), kernel.Privcmd, 0)
			for _, e := range evs {
				r, _, bufs, err := replayIoctl(t, pc, e)
				if err != nil {
					t.Errorf("%s: %v", f.Call, err)
					continue
				}
				// A multicall carries its result in the entry.
				if op := le.Uint64(e.Arg.Bytes()); op == xenabi.HYPERVISOR_multicall && len(e.Buffers) > 0 && e.Buffers[0].Out != "" {
					got, want := int64(le.Uint64(bufs[0][8:])), int64(le.Uint64(e.Buffers[0].OutBytes()[8:]))
					if got != want {
						t.Errorf("%s: multicall result %d, want %d", f.Call, got, want)
					}
				}
				_ = r
			}
		})
	}
}

// TestGoldenEvtchn replays libxenevtchn's ioctls from the golden
// fixtures against the simulated evtchn device: the guest (domain 7)
// offers port 3 to dom0, and the device model's local port is 17, as in
// the fixtures.
func TestGoldenEvtchn(t *testing.T) {
	order := []string{"evtchn_bind_interdomain", "evtchn_notify", "evtchn_unbind", "evtchn_bind_unbound_port", "evtchn_restrict"}
	s, d := newSim(t, Config{}, DomainConfig{ID: 7, VCPUs: 1})
	ev := mustOpen(t, s.Kernel(0), kernel.Evtchn, unix.O_NONBLOCK)
	// dom0 ports 1..16 are taken, so the bind gets 17.
	for i := 0; i < 16; i++ {
		if _, err := evBindUnbound(ev, 7); err != nil {
			t.Fatal(err)
		}
	}
	for p := uint32(0); p < 3; {
		if p, _ = d.AllocUnboundPort(0); p > 3 {
			t.Fatalf("guest port %d", p)
		}
	}
	for _, name := range order {
		f := golden.Load(t, name)
		for _, e := range f.Find("ioctl") {
			r, _, _, err := replayIoctl(t, ev, e)
			if err != nil {
				t.Errorf("%s: %v", f.Call, err)
				continue
			}
			if name == "evtchn_bind_interdomain" && (r != 17 || f.Result != "rc=17") {
				t.Errorf("%s = %d, want port 17 (fixture %s)", f.Call, r, f.Result)
			}
		}
	}
	// The pending-on-bind event reads as the fixture's data, and the
	// unmask write is accepted.
	pend := golden.Load(t, "evtchn_pending").Find("read")[0]
	b := make([]byte, pend.Length)
	if n, err := ev.Read(b); err != nil || n != len(b) || !bytesEqual(b, pend.DataBytes()) {
		t.Errorf("pending read %x, %v; fixture %x", b[:n], err, pend.DataBytes())
	}
	un := golden.Load(t, "evtchn_unmask").Find("write")[0]
	if n, err := ev.Write(un.DataBytes()); err != nil || n != 4 {
		t.Errorf("unmask write: %d, %v", n, err)
	}
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

// TestGoldenForeignMemory replays libxenforeignmemory's mappings: the
// mmap of privcmd, then MMAPBATCH_V2 or MMAP_RESOURCE into it.
func TestGoldenForeignMemory(t *testing.T) {
	cases := []struct {
		name string
		want unix.Errno
		errs []int32 // per-page errors of a batch
	}{
		// gfn 0xdead is a hole: -EINVAL for that page, as the fixture.
		{"fmem_map", 0, []int32{0, -int32(unix.EINVAL), 0}},
		// 0xfeff0 is a hole too (no ioreq page mapped the legacy way).
		{"fmem_map_ro", 0, []int32{-int32(unix.EINVAL)}},
		// Frames ioreq(0) and ioreq(1): with <= 128 vCPUs Xen has only
		// frames 0 and 1, so the range is refused.
		{"fmem_map_resource", unix.EINVAL, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, _ := newSim(t, Config{}, DomainConfig{ID: 7, VCPUs: 1, RAM: []Region{{0, 0x200000}}})
			pc := mustOpen(t, s.Kernel(0), kernel.Privcmd, 0)
			for i := 0; i < 2; i++ {
				createServer(t, pc, 7, xenabi.HVM_IOREQSRV_BUFIOREQ_ATOMIC)
			}
			f := golden.Load(t, c.name)
			mm := f.Find("mmap")[0]
			mapping, err := pc.Mmap(mm.Offset, int(mm.Length), int(mm.Prot))
			if err != nil {
				t.Fatal(err)
			}
			e := f.Find("ioctl")[0]
			_, _, bufs, err := replayIoctlAt(t, pc, e, mapping)
			if !isErrno(err, c.want) {
				t.Fatalf("%s: %v, want %v", f.Call, err, c.want)
			}
			if c.errs != nil {
				errs := bufs[1]
				for i, w := range c.errs {
					if got := int32(le.Uint32(errs[4*i:])); got != w {
						t.Errorf("%s: page %d error %d, want %d (fixture result %q)", f.Call, i, got, w, f.Result)
					}
				}
			}
		})
	}
}

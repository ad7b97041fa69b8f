package xensim

import (
	"encoding/binary"
	"sync/atomic"
	"testing"

	"godm/hyp/kernel"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

// leanDM answers every request at once and allocates nothing per
// request: the responder for allocation tests and benchmarks.
type leanDM struct {
	*fakeDM
	notify []*xenabi.IoctlEvtchnNotify
}

func newLeanDM(tb testing.TB, s *Sim, d *Domain) *leanDM {
	tb.Helper()
	dm := newFakeDM(tb, s, d, xenabi.HVM_IOREQSRV_BUFIOREQ_OFF, nil)
	l := &leanDM{fakeDM: dm}
	for _, p := range dm.ports {
		l.notify = append(l.notify, &xenabi.IoctlEvtchnNotify{Port: p})
	}
	if err := rangeOp(dm.pc, uint16(d.ID()), xenabi.XEN_DMOP_map_io_range_to_ioreq_server, dm.id, xenabi.XEN_DMOP_IO_RANGE_PORT, 0x80, 0x8f); err != nil {
		tb.Fatal(err)
	}
	dm.setHook(l.answer)
	return l
}

func (l *leanDM) answer(v int) {
	slot := l.ioreq[v*32 : v*32+32]
	w := u32at(slot, 28)
	x := atomic.LoadUint32(w)
	if (x>>16)&0xf != xenabi.STATE_IOREQ_READY {
		return
	}
	atomic.StoreUint64(u64at(slot, 8), 0x42)
	atomic.StoreUint32(w, x&^(0xf<<16)|xenabi.STATE_IORESP_READY<<16)
	evNotify(l.ev, l.notify[v])
}

func TestRoundTripAllocs(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	newLeanDM(t, s, d)
	v := d.VCPU(0)
	for i := 0; i < 10; i++ { // warm up timers and rings
		v.In(0x80, 1)
	}
	allocs := testing.AllocsPerRun(200, func() {
		if got, err := v.In(0x80, 1); err != nil || got != 0x42 {
			t.Fatalf("In = %#x, %v", got, err)
		}
	})
	if allocs != 0 {
		t.Errorf("vCPU round trip allocates %v times", allocs)
	}
}

func TestDMOpAndNotifyAllocs(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	pc := mustOpen(t, s.Kernel(0), kernel.Privcmd, 0)
	ev := mustOpen(t, s.Kernel(0), kernel.Evtchn, unix.O_NONBLOCK)
	p, err := evBindUnbound(ev, uint32(d.ID()))
	if err != nil {
		t.Fatal(err)
	}
	arg := &xenabi.IoctlEvtchnNotify{Port: p}
	if a := testing.AllocsPerRun(100, func() { evNotify(ev, arg) }); a != 0 {
		t.Errorf("evtchn notify allocates %v times", a)
	}
	buf := make([]byte, 32)
	binary.LittleEndian.PutUint32(buf, xenabi.XEN_DMOP_set_pci_intx_level)
	buf[8+3], buf[8+5] = 3, 1
	ub := []xenabi.PrivcmdDMOpBuf{{Uptr: addr(buf), Size: 32}}
	op := &xenabi.PrivcmdDMOp{Dom: uint16(d.ID()), Num: 1, Ubufs: addr(bytesOf(ub))}
	if a := testing.AllocsPerRun(100, func() {
		if err := ioctlDMOpRaw(pc, op); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("set_pci_intx_level DM op allocates %v times", a)
	}
}

// BenchmarkRoundTrip measures the simulator's own cost of one vCPU port
// read answered by a device model that replies at once: Xen side (route,
// fill slot, notify), evtchn delivery (ring + eventfd), the DM's read,
// unmask and notify, and the vCPU's wake-up.
func BenchmarkRoundTrip(b *testing.B) {
	for _, bc := range []struct {
		name string
		spin int
	}{{"block", 0}, {"spin1000", 1000}} {
		b.Run(bc.name, func(b *testing.B) {
			s, d := newSim(b, Config{Spin: bc.spin}, stdDomain())
			newLeanDM(b, s, d)
			v := d.VCPU(0)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := v.In(0x80, 1); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkUnclaimed is the cost of an access no server claims (routing
// and the null handler only).
func BenchmarkUnclaimed(b *testing.B) {
	_, d := newSim(b, Config{}, stdDomain())
	v := d.VCPU(0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		v.In(0x80, 1)
	}
}

// BenchmarkDMOpIntx is the simulator's cost of one
// XEN_DMOP_set_pci_intx_level through the privcmd ioctl.
func BenchmarkDMOpIntx(b *testing.B) {
	s, d := newSim(b, Config{}, stdDomain())
	pc := mustOpen(b, s.Kernel(0), kernel.Privcmd, 0)
	buf := make([]byte, 32)
	binary.LittleEndian.PutUint32(buf, xenabi.XEN_DMOP_set_pci_intx_level)
	buf[8+3] = 3
	ub := []xenabi.PrivcmdDMOpBuf{{Uptr: addr(buf), Size: 32}}
	op := &xenabi.PrivcmdDMOp{Dom: uint16(d.ID()), Num: 1, Ubufs: addr(bytesOf(ub))}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		buf[8+5] = byte(i & 1)
		if err := ioctlDMOpRaw(pc, op); err != nil {
			b.Fatal(err)
		}
	}
}

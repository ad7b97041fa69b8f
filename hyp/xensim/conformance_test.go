package xensim_test

import (
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"godm/hyp/dm"
	"godm/hyp/evtchn"
	"godm/hyp/foreign"
	"godm/hyp/privcmd"
	"godm/hyp/xenabi"
	"godm/hyp/xensim"

	"golang.org/x/sys/unix"
)

// device is a fake device model built on godm's real hyp packages: it
// creates an ioreq server, maps its frames, binds one port per vCPU and
// answers requests from an epoll loop.
type device struct {
	t      testing.TB
	pc     *privcmd.Handle
	dmc    *dm.Client
	ev     *evtchn.Handle
	id     dm.ServerID
	frames *foreign.Mapping
	ports  []evtchn.Port
	regs   [256]uint32 // a register file at ports 0x100-0x1ff, dword-indexed
	stop   chan struct{}
	wg     sync.WaitGroup
}

func newDevice(t testing.TB, s *xensim.Sim, d *xensim.Domain) *device {
	t.Helper()
	k := s.Kernel(0)
	pc, err := privcmd.Open(k)
	if err != nil {
		t.Fatal(err)
	}
	dev := &device{t: t, pc: pc, dmc: dm.New(pc, d.ID()), stop: make(chan struct{})}
	if dev.id, err = dev.dmc.CreateIOReqServer(xenabi.HVM_IOREQSRV_BUFIOREQ_ATOMIC); err != nil {
		t.Fatal(err)
	}
	if dev.frames, err = foreign.MapResource(pc, d.ID(), xenabi.XENMEM_resource_ioreq_server, uint32(dev.id), 0, 2); err != nil {
		t.Fatal(err)
	}
	if err := dev.dmc.MapIORange(dev.id, dm.RangeKind(xenabi.XEN_DMOP_IO_RANGE_PORT), 0x100, 0x1ff); err != nil {
		t.Fatal(err)
	}
	if err := dev.dmc.SetIOReqServerState(dev.id, true); err != nil {
		t.Fatal(err)
	}
	if dev.ev, err = evtchn.Open(k); err != nil {
		t.Fatal(err)
	}
	page := dev.frames.Bytes()[4096:]
	for i := 0; i < d.NumVCPUs(); i++ {
		remote := atomic.LoadUint32(slotPort(page, i))
		p, err := dev.ev.BindInterdomain(d.ID(), evtchn.Port(remote))
		if err != nil {
			t.Fatal(err)
		}
		dev.ports = append(dev.ports, p)
	}
	dev.wg.Add(1)
	go dev.loop(page)
	t.Cleanup(dev.close)
	return dev
}

func (dev *device) close() {
	close(dev.stop)
	dev.wg.Wait()
	dev.ev.Close()
	dev.frames.Close()
	dev.pc.Close()
}

func (dev *device) loop(page []byte) {
	defer dev.wg.Done()
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		dev.t.Error(err)
		return
	}
	defer unix.Close(ep)
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, dev.ev.Fd(), &unix.EpollEvent{Events: unix.EPOLLIN}); err != nil {
		dev.t.Error(err)
		return
	}
	evs := make([]unix.EpollEvent, 1)
	pending := make([]evtchn.Port, 16)
	for {
		select {
		case <-dev.stop:
			return
		default:
		}
		if _, err := unix.EpollWait(ep, evs, 20); err != nil && !errors.Is(err, unix.EINTR) {
			dev.t.Error(err)
			return
		}
		n, err := dev.ev.Pending(pending)
		if err != nil {
			dev.t.Error(err)
			return
		}
		for _, p := range pending[:n] {
			dev.ev.Unmask(p)
			for v, vp := range dev.ports {
				if vp == p {
					dev.serve(page, v)
				}
			}
		}
	}
}

func (dev *device) serve(page []byte, v int) {
	w := slotWord(page, v)
	x := atomic.LoadUint32(w)
	if (x>>16)&0xf != xenabi.STATE_IOREQ_READY {
		return
	}
	atomic.StoreUint32(w, x&^(0xf<<16)|xenabi.STATE_IOREQ_INPROCESS<<16)
	addr := binary.LittleEndian.Uint64(page[v*32:])
	reg := (addr - 0x100) / 4
	if (x>>16)&xenabi.IoreqDirBit != 0 {
		atomic.StoreUint64(slotData(page, v), uint64(dev.regs[reg]))
	} else {
		dev.regs[reg] = uint32(atomic.LoadUint64(slotData(page, v)))
	}
	atomic.StoreUint32(w, x&^(0xf<<16)|xenabi.STATE_IORESP_READY<<16)
	dev.ev.Notify(dev.ports[v])
}

func TestConformanceWithHypPackages(t *testing.T) {
	s := xensim.New(xensim.Config{})
	t.Cleanup(func() { s.Close() }) // after the device's cleanup
	d, err := s.CreateDomain(xensim.DomainConfig{VCPUs: 2, RAM: []xensim.Region{{GPA: 0, Size: 1 << 20}}})
	if err != nil {
		t.Fatal(err)
	}
	dev := newDevice(t, s, d)
	for v := 0; v < 2; v++ {
		cpu := d.VCPU(v)
		port := uint16(0x100 + 4*v)
		if err := cpu.Out(port, 4, 0xc0de0000|uint64(v)); err != nil {
			t.Fatal(err)
		}
		got, err := cpu.In(port, 4)
		if err != nil || got != 0xc0de0000|uint64(v) {
			t.Errorf("vcpu%d In = %#x, %v", v, got, err)
		}
	}
	mark := s.LastSeq()
	if err := dev.dmc.SetPCIIntxLevel(0, 0, 3, 0, true); err != nil {
		t.Fatal(err)
	}
	if err := dev.dmc.InjectMSI(0xfee00000, 0x31); err != nil {
		t.Fatal(err)
	}
	evs := s.EventsSince(mark)
	if len(evs) != 2 || evs[0].Kind != xensim.EventPCIIntx || evs[0].Dev != 3 || !evs[0].Level ||
		evs[1].Kind != xensim.EventMSI || evs[1].Data != 0x31 {
		t.Errorf("events %v", evs)
	}
	if n, err := dev.dmc.NrVCPUs(); err != nil || n != 2 {
		t.Errorf("NrVCPUs = %d, %v", n, err)
	}
	// Foreign mapping of guest RAM through hyp/foreign.
	d.WriteRAM(0x2000, []byte("hello"))
	m, err := foreign.Map(dev.pc, d.ID(), true, []uint64{2, 0x200})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if string(m.Bytes()[:5]) != "hello" || m.PageErr(0) != nil || !errors.Is(m.PageErr(1), unix.EINVAL) {
		t.Errorf("foreign map: %q, page errors %v %v", m.Bytes()[:5], m.PageErr(0), m.PageErr(1))
	}
	if v := s.Violations(); len(v) != 0 {
		t.Errorf("violations %v", v)
	}
}

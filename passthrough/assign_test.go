package passthrough

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"godm/devices"
	"godm/hyp"
	"godm/hyp/domctl"
	"godm/hyp/hcall"
	"godm/hyp/privcmd"
	"godm/hyp/xenabi"
	"godm/hyp/xensim"

	"golang.org/x/sys/unix"
)

// simDomctl returns the hypercall and domctl interfaces of dom0 on the
// simulated Xen.
func simDomctl(t *testing.T, r *simRig) (*hcall.Caller, *domctl.Domctl) {
	t.Helper()
	p, err := privcmd.Open(r.sim.Kernel(0))
	must(t, err)
	t.Cleanup(func() { p.Close() })
	c := hcall.New(p)
	dc, err := domctl.Open(c)
	must(t, err)
	return c, dc
}

// TestAssignQuery: XEN_DOMCTL_test_assign_device as Xen answers it
// (xen/drivers/passthrough/pci.c): free while the hardware domain owns the
// function, "assigned" (EINVAL) once a guest has it, free again once
// deassigned; and how each answer is classified.
func TestAssignQuery(t *testing.T) {
	r := newSimRig(t) // assigns 0000:03:00.0 and 0000:00:03.0 to the guest
	_, dc := simDomctl(t, r)
	q := dc
	dom := r.dom.ID()
	a := devices.NewSBDF(0, 3, 0, 0)
	b := devices.NewSBDF(0, 7, 0, 0) // never assigned
	step := func(name string, host devices.SBDF, want Assignment, wantRefused bool) {
		t.Helper()
		got, err := QueryAssignment(q, dom, host)
		if got != want || err != nil {
			t.Errorf("%s: QueryAssignment = %v, %v; want %v", name, got, err, want)
		}
		if err := CheckAssigned(q, dom, host); errors.Is(err, ErrNotGranted) != wantRefused {
			t.Errorf("%s: CheckAssigned = %v, want refused %v", name, err, wantRefused)
		}
	}
	step("assigned by the toolstack", a, AssignGuest, false)
	step("never assigned", b, AssignFree, true)
	must(t, dc.DeassignDevice(dom, uint32(a)))
	step("deassigned", a, AssignFree, true)
	if _, ok := r.sim.AssignedTo(uint32(a)); ok {
		t.Error("xensim still has the function assigned")
	}
	must(t, dc.AssignDevice(dom, uint32(a), 0))
	step("assigned again", a, AssignGuest, false)
	// A function another guest has is busy for this one too.
	other, err := r.sim.CreateDomain(xensim.DomainConfig{VCPUs: 1, RAM: []xensim.Region{{GPA: 0, Size: 16 << 20}}})
	must(t, err)
	if err := dc.AssignDevice(other.ID(), uint32(a), 0); !errors.Is(err, unix.EBUSY) {
		t.Errorf("assigning a function another guest has: %v, want EBUSY", err)
	}
	step("another guest's query", a, AssignGuest, false)
}

// fakeAssign answers TestAssignDevice with err and counts the calls.
type fakeAssign struct {
	err   error
	calls int
}

func (f *fakeAssign) TestAssignDevice(hyp.DomID, uint32) error {
	f.calls++
	return f.err
}

func TestQueryAssignmentErrors(t *testing.T) {
	tests := []struct {
		err     error
		want    Assignment
		refused bool // CheckAssigned wraps ErrNotGranted
	}{
		{nil, AssignFree, true},
		{fmt.Errorf("domctl: %w", unix.EINVAL), AssignGuest, false},
		{fmt.Errorf("domctl: %w", unix.EOPNOTSUPP), AssignNoIOMMU, true},
		{fmt.Errorf("domctl: %w", unix.EPERM), AssignUnknown, false},
		{fmt.Errorf("domctl: %w", unix.ENOSYS), AssignUnknown, false},
	}
	for _, tt := range tests {
		q := &fakeAssign{err: tt.err}
		got, err := QueryAssignment(q, 5, devices.NewSBDF(0, 3, 0, 0))
		if got != tt.want || (got == AssignUnknown) != (err != nil) {
			t.Errorf("%v: QueryAssignment = %v, %v; want %v", tt.err, got, err, tt.want)
		}
		cerr := CheckAssigned(q, 5, devices.NewSBDF(0, 3, 0, 0))
		if errors.Is(cerr, ErrNotGranted) != tt.refused || (tt.want == AssignUnknown) != (cerr != nil && !tt.refused) {
			t.Errorf("%v: CheckAssigned = %v, want refused %v", tt.err, cerr, tt.refused)
		}
		if tt.want == AssignUnknown && !errors.Is(cerr, tt.err) {
			t.Errorf("%v: CheckAssigned = %v, want the query's error wrapped", tt.err, cerr)
		}
	}
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu  chanMutex
	buf bytes.Buffer
}

type chanMutex chan struct{}

func (m chanMutex) lock()   { m <- struct{}{} }
func (m chanMutex) unlock() { <-m }

func newSyncBuffer() *syncBuffer { return &syncBuffer{mu: make(chanMutex, 1)} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.lock()
	defer b.mu.unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.lock()
	defer b.mu.unlock()
	return b.buf.String()
}

// simDevice builds the synthetic function on the simulated Xen, with
// Config.Assign asking Xen, and plugs it on a fresh bus at slot 4.
func simDevice(t *testing.T, r *simRig) (*Device, *devices.Bus, *syncBuffer) {
	t.Helper()
	c, dc := simDomctl(t, r)
	host, err := OpenHost(HostOptions{SysfsRoot: r.root}, devices.NewSBDF(0, 3, 0, 0))
	must(t, err)
	t.Cleanup(func() { host.Close() })
	logs := newSyncBuffer()
	dev, err := New(Config{Dom: r.dom.ID(), Host: host, Xen: NewXen(c, dc), Slot: 4,
		Assign: dc, Log: slog.New(slog.NewTextHandler(logs, nil))})
	must(t, err)
	bus := devices.NewBus()
	must(t, dev.Plug(bus))
	t.Cleanup(func() { _ = dev.Unplug() })
	return dev, bus, logs
}

// TestUnassignedFunctionGated: until Xen has the function in a guest's
// IOMMU context, the guest's enables map and bind nothing and bus
// mastering stays off on the host; once the toolstack assigns it, the
// guest's next enable goes through. Checked on the recorded hypercalls.
func TestUnassignedFunctionGated(t *testing.T) {
	r := newSimRig(t)
	_, dc := simDomctl(t, r)
	host := devices.NewSBDF(0, 3, 0, 0)
	must(t, dc.DeassignDevice(r.dom.ID(), uint32(host)))
	dev, _, logs := simDevice(t, r)
	c := cfgIO{dev}
	h := dev.cfg.Host
	must(t, writeHostCfg(h, 0x04, []byte{0x02, 0x00})) // pciback left bus mastering off
	mark := r.sim.LastSeq()
	c.w(0x10, 4, 0xe0000000)
	c.w(0x1c, 4, 0xe0100000)
	c.w(0xd4, 4, 0xfee00000)
	c.w(0xdc, 2, 0x41)
	c.w(0x04, 2, 0x0006) // memory + bus master
	c.w(0xd2, 2, 0x0001) // MSI enable
	if ev := kinds(r.sim.EventsSince(mark), xensim.EventMemoryMapping, xensim.EventMapPIRQ, xensim.EventBindPtIRQ); len(ev) != 0 {
		t.Errorf("unassigned function reached Xen: %v", ev)
	}
	if got := hostCfg(t, h, 0x04, 2); got&cmdBusMaster != 0 {
		t.Errorf("host command = %#x: bus mastering enabled for an unassigned function", got)
	}
	if got := hostCfg(t, h, 0xd2, 1); got&1 != 0 {
		t.Errorf("host MSI control = %#x: enabled without a routed vector", got)
	}
	if st := dev.Stats(); st.Unassigned == 0 {
		t.Errorf("Stats = %+v, want Unassigned counted", st)
	}
	if !strings.Contains(logs.String(), "has not assigned") {
		t.Errorf("log lacks the refusal: %s", logs)
	}
	// Decoding is the guest's own view; bus mastering is the host's bit,
	// which stayed off.
	if got := c.r(0x04, 2); got != 0x0002 {
		t.Errorf("guest's command register = %#x, want 0x2", got)
	}

	// The toolstack assigns it; the guest enables again.
	must(t, dc.AssignDevice(r.dom.ID(), uint32(host), 0))
	c.w(0x04, 2, 0x0006)
	c.w(0xd2, 2, 0x0000)
	c.w(0xd2, 2, 0x0001)
	ev := kinds(r.sim.EventsSince(mark), xensim.EventMemoryMapping, xensim.EventMapPIRQ, xensim.EventBindPtIRQ)
	var maps, msi int
	for _, e := range ev {
		switch {
		case e.Kind == xensim.EventMemoryMapping && e.Level:
			maps++
		case e.Kind == xensim.EventBindPtIRQ && e.Type == xenabi.PT_IRQ_TYPE_MSI && e.Level && e.First == 0x41:
			msi++
		}
	}
	if maps != 3 || msi != 1 {
		t.Errorf("after assignment: %d mappings (want 3), %d MSI bindings (want 1): %v", maps, msi, ev)
	}
	if got := hostCfg(t, h, 0x04, 2); got&cmdBusMaster == 0 {
		t.Errorf("host command = %#x: bus mastering not passed once assigned", got)
	}
	if got := hostCfg(t, h, 0xd2, 1); got&1 == 0 {
		t.Errorf("host MSI control = %#x: not enabled once routed", got)
	}
	must(t, dev.Unplug())
	st := replay(r.sim.Events())
	if err := st.clean(); err != nil {
		t.Error(err)
	}
}

func writeHostCfg(h *HostDevice, off int64, b []byte) error {
	_, err := h.Config.WriteAt(b, off)
	return err
}

// TestRefusedBAR: Xen refuses (EPERM) a piece of a BAR whose memory the
// domain was not granted: the BAR's pieces already mapped are unmapped
// again, its MSI-X pages are not trapped, the refusal is logged and
// counted, and unrelated writes do not retry it; a new placement does,
// and once granted the BAR maps. Checked on the recorded hypercalls.
func TestRefusedBAR(t *testing.T) {
	r := newSimRig(t)
	_, dc := simDomctl(t, r)
	// BAR3 (machine 0xf7c20000, 4 pages: table, data, PBA, data): the
	// domain loses its last page.
	must(t, dc.IomemPermission(r.dom.ID(), 0xf7c23, 1, false))
	dev, bus, logs := simDevice(t, r)
	c := cfgIO{dev}
	mark := r.sim.LastSeq()
	c.w(0x10, 4, 0xe0000000)
	c.w(0x1c, 4, 0xe0100000)
	c.w(0x04, 2, 0x0002)
	st := replay(r.sim.EventsSince(mark))
	if len(st.frames) != 32 {
		t.Errorf("%d frames mapped, want BAR0's 32 only", len(st.frames))
	}
	for g := range st.frames {
		if g >= 0xe0100 && g < 0xe0104 {
			t.Errorf("BAR3 frame %#x left mapped", g)
		}
	}
	adds := 0
	for _, e := range kinds(r.sim.EventsSince(mark), xensim.EventMemoryMapping) {
		if e.Level && e.First == 0xe0101 {
			adds++
		}
	}
	if adds != 1 {
		t.Errorf("BAR3's first piece mapped %d times, want once (then rolled back)", adds)
	}
	if got := bus.MMIO.Read(0xe0100000, 4, 0); got != 0xffffffff {
		t.Errorf("MSI-X table of the refused BAR reads %#x, want all-ones (not trapped)", got)
	}
	if s := dev.Stats(); s.RefusedBARs != 1 || s.MapErrors != 1 {
		t.Errorf("Stats = %+v, want one refused BAR", s)
	}
	if l := logs.String(); !strings.Contains(l, "BAR3 left unmapped") || !strings.Contains(l, "not granted") {
		t.Errorf("log lacks a clear refusal: %s", l)
	}
	// Unrelated writes do not retry.
	mark = r.sim.LastSeq()
	c.w(0x04, 2, 0x0006)
	c.w(0x0c, 1, 0x10)
	if ev := kinds(r.sim.EventsSince(mark), xensim.EventMemoryMapping); len(ev) != 0 {
		t.Errorf("refused BAR retried on unrelated writes: %v", ev)
	}
	// A new placement retries (and is refused again).
	c.w(0x1c, 4, 0xe0200000)
	if s := dev.Stats(); s.RefusedBARs != 2 {
		t.Errorf("after the move: RefusedBARs = %d, want 2", s.RefusedBARs)
	}
	// Granted: the guest re-enables decoding and the BAR maps.
	must(t, dc.IomemPermission(r.dom.ID(), 0xf7c23, 1, true))
	c.w(0x04, 2, 0x0004)
	c.w(0x04, 2, 0x0006)
	if got := dev.Mappings(); len(got) != 3 {
		t.Errorf("after the grant: mappings %+v, want BAR0 and BAR3's two pieces", got)
	}
	bus.MMIO.Write(0xe0200008, 4, 0, 0x51)
	if got := bus.MMIO.Read(0xe0200008, 4, 0); got != 0x51 {
		t.Errorf("MSI-X table once mapped reads %#x", got)
	}
	must(t, dev.Unplug())
	if err := replay(r.sim.Events()).clean(); err != nil {
		t.Error(err)
	}
}

package machine

import (
	"bufio"
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"godm/devices/chardev"
	"godm/hyp/dm"
	"godm/hyp/xenabi"
	"godm/hyp/xensim"
	"godm/internal/testfake"
)

type rig struct {
	t   *testing.T
	sim *xensim.Sim
	dom *xensim.Domain
	m   *Machine
	v   *xensim.VCPU
	out *bufio.Reader
}

func newRig(t *testing.T) *rig {
	t.Helper()
	xen := testfake.NewXen(t, xensim.Config{}, testfake.RAM(2, 64<<20))
	sim, dom := xen.Sim, xen.Dom
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { outR.Close() })
	com1 := chardev.NewStream(nil, outW, chardev.Options{})
	m, err := New(sim.Kernel(0), Spec{Dom: dom.ID(), VCPUs: 2, MemBytes: 64 << 20,
		Serial: []chardev.Backend{com1}, TestDevice: true, TestSlot: 5})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); com1.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &rig{t: t, sim: sim, dom: dom, m: m, v: dom.VCPU(0), out: bufio.NewReader(outR)}
}

func (r *rig) in(port uint16, size int) uint64 {
	r.t.Helper()
	v, err := r.v.In(port, size)
	if err != nil {
		r.t.Fatalf("in %#x: %v", port, err)
	}
	return v
}

func (r *rig) outp(port uint16, size int, v uint64) {
	r.t.Helper()
	if err := r.v.Out(port, size, v); err != nil {
		r.t.Fatalf("out %#x: %v", port, err)
	}
}

func (r *rig) cfg(dev, fn uint8, reg uint32) uint64 {
	r.t.Helper()
	v, err := r.v.PCIConfigRead(uint32(dev)<<3|uint32(fn), reg, 4)
	if err != nil {
		r.t.Fatal(err)
	}
	return v
}

func (r *rig) waitEvent(after uint64, kind xensim.EventKind) xensim.Event {
	r.t.Helper()
	ev, err := r.sim.WaitEvent(after, 5*time.Second, func(e xensim.Event) bool { return e.Kind == kind })
	if err != nil {
		r.t.Fatalf("waiting for %v: %v", kind, err)
	}
	return ev
}

func TestPlatformIDs(t *testing.T) {
	r := newRig(t)
	for _, tc := range []struct {
		dev, fn uint8
		want    uint64
	}{
		{0, 0, 0x12378086}, // i440FX
		{1, 0, 0x70008086}, // PIIX3
		{1, 3, 0x71138086}, // PIIX4 PM
		{2, 0, 0x00015853}, // Xen platform device
		{5, 0, 0x646d676f}, // godm test device
		{3, 0, 0xffffffff}, // empty slot
	} {
		if got := r.cfg(tc.dev, tc.fn, 0); got != tc.want {
			t.Errorf("00:%02x.%d IDs = %#x, want %#x", tc.dev, tc.fn, got, tc.want)
		}
	}
	if got := r.cfg(PlatformSlot, 0, 8) >> 8; got != 0xff8000 {
		t.Errorf("platform device class = %#x, want 0xff8000", got)
	}
}

func TestLegacyDevices(t *testing.T) {
	r := newRig(t)
	// COM1: LSR after reset has THRE and TEMT; a byte written to THR
	// reaches the backend.
	if got := r.in(0x3fd, 1); got != 0x60 {
		t.Errorf("COM1 LSR = %#x, want 0x60", got)
	}
	for _, c := range []byte("hi\n") {
		r.outp(0x3f8, 1, uint64(c))
	}
	line, err := r.out.ReadString('\n')
	if err != nil || line != "hi\n" {
		t.Errorf("COM1 backend got %q, %v", line, err)
	}
	// i8042 controller self-test.
	r.outp(0x64, 1, 0xaa)
	if got := r.in(0x60, 1); got != 0x55 {
		t.Errorf("i8042 self-test = %#x, want 0x55", got)
	}
	// Xen platform device magic on the fixed I/O port 0x10.
	if got := r.in(0x10, 2); got != 0x49d2 {
		t.Errorf("platform magic = %#x, want 0x49d2", got)
	}
}

func TestInterruptRoutingAndShutdown(t *testing.T) {
	r := newRig(t)
	// PIIX3 PIRQ route register 0x60 (PIRQA) = IRQ 11.
	seq := r.sim.LastSeq()
	if err := r.v.PCIConfigWrite(1<<3, 0x60, 1, 11); err != nil {
		t.Fatal(err)
	}
	if ev := r.waitEvent(seq, xensim.EventPCILinkRoute); ev.Link != 0 || ev.IRQ != 11 {
		t.Errorf("link route event %v, want link 0 irq 11", ev)
	}
	// 0xcf9: a hard reset request reboots the domain.
	seq = r.sim.LastSeq()
	r.outp(0xcf9, 1, 0x06)
	if ev := r.waitEvent(seq, xensim.EventShutdown); ev.Data != xenabi.SHUTDOWN_reboot {
		t.Errorf("0xcf9 shutdown reason %d, want reboot", ev.Data)
	}
	// ACPI S5: SLP_TYP for S5 with SLP_EN in PM1a control powers off.
	seq = r.sim.LastSeq()
	r.outp(0xb004, 2, 1<<13|0<<10)
	if ev := r.waitEvent(seq, xensim.EventShutdown); ev.Data != xenabi.SHUTDOWN_poweroff {
		t.Errorf("PM1a S5 shutdown reason %d, want poweroff", ev.Data)
	}
}

func TestTeardownLeavesNoServer(t *testing.T) {
	r := newRig(t)
	if err := r.m.Close(); err != nil {
		t.Fatal(err)
	}
	dom := r.m.Spec.Dom
	created := r.sim.Count(dom, xensim.EventIOReqServer, "create")
	destroyed := r.sim.Count(dom, xensim.EventIOReqServer, "destroy")
	if created != 1 || destroyed != 1 {
		t.Errorf("servers created %d destroyed %d, want 1 and 1", created, destroyed)
	}
	// With the server gone the guest's accesses are unclaimed.
	if got := r.in(0x3fd, 1); got != 0xff {
		t.Errorf("COM1 LSR after teardown = %#x, want 0xff (unclaimed)", got)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestACPIEjectRemovesSlot(t *testing.T) {
	r := newRig(t)
	if err := (ejector{r.m}).EjectPCISlot(5); err != nil {
		t.Fatal(err)
	}
	if got := r.cfg(5, 0, 0); got != 0xffffffff {
		t.Errorf("test device still answers after eject: %#x", got)
	}
	for _, slot := range []uint8{0, 1, PlatformSlot} {
		if err := (ejector{r.m}).EjectPCISlot(slot); err == nil {
			t.Errorf("eject of platform slot %d succeeded", slot)
		}
	}
	if got := r.cfg(0, 0, 0); got != 0x12378086 {
		t.Errorf("host bridge gone after refused eject: %#x", got)
	}
}

func TestRestrict(t *testing.T) {
	xen := testfake.NewXen(t, xensim.Config{}, testfake.RAM(1, 16<<20))
	sim, dom := xen.Sim, xen.Dom
	other, err := sim.CreateDomain(xensim.DomainConfig{VCPUs: 1, RAM: []xensim.Region{{GPA: 0, Size: 16 << 20}}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(sim.Kernel(0), Spec{Dom: dom.ID(), VCPUs: 1, Restrict: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	// The guest is still served...
	if v, err := dom.VCPU(0).In(0x10, 2); err != nil || v != 0x49d2 {
		t.Errorf("platform magic after restrict = %#x, %v", v, err)
	}
	// ...and the restricted handle can no longer touch another domain.
	if err := dm.New(m.priv, other.ID()).InjectMSI(0xfee00000, 0x30); !errors.Is(err, unix.EPERM) {
		t.Errorf("DM op on another domain after restrict = %v, want EPERM", err)
	}
}

// When the domain is destroyed under a serving machine, Serve ends with
// ErrDomainGone, and Close still releases what the process holds.
func TestServeEndsWhenDomainDies(t *testing.T) {
	xen := testfake.NewXen(t, xensim.Config{}, testfake.RAM(1, 16<<20))
	sim, dom := xen.Sim, xen.Dom
	m, err := New(sim.Kernel(0), Spec{Dom: dom.ID(), VCPUs: 1, DeathPoll: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Serve(context.Background()) }()
	// The machine answers while the domain lives.
	if got, err := dom.VCPU(0).In(0x3fd, 1); err != nil || got&0x60 != 0x60 {
		t.Fatalf("COM1 LSR = %#x, %v; want THR and TSR empty", got, err)
	}
	if err := dom.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrDomainGone) {
			t.Fatalf("Serve after the domain died = %v, want ErrDomainGone", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still running 10 s after the domain was destroyed")
	}
	if err := m.Close(); err != nil {
		t.Errorf("Close after the domain died: %v", err)
	}
}

// xl destroy while godm serves: Xen marks the domain dying but keeps it,
// and keeps answering DM ops, while godm's foreign mappings reference it
// (found on real Xen 4.17 in internal/xenbox). Serve must end on the
// dying flag, and Close must release everything though Xen already
// destroyed the ioreq server. Restricted (the sandbox: no getdomaininfo,
// no xenstore), the vanished ioreq server is what shows it.
func TestServeEndsWhenDomainIsDying(t *testing.T) {
	for _, restrict := range []bool{false, true} {
		t.Run(map[bool]string{false: "domctl", true: "restricted"}[restrict], func(t *testing.T) {
			testServeEndsWhenDomainIsDying(t, restrict)
		})
	}
}

func testServeEndsWhenDomainIsDying(t *testing.T, restrict bool) {
	xen := testfake.NewXen(t, xensim.Config{}, testfake.RAM(1, 16<<20))
	sim, dom := xen.Sim, xen.Dom
	m, err := New(sim.Kernel(0), Spec{Dom: dom.ID(), VCPUs: 1, DeathPoll: 5 * time.Millisecond, Restrict: restrict})
	if err != nil {
		t.Fatal(err)
	}
	if restrict != (m.domctl == nil) {
		t.Fatalf("restrict %v but domctl handle %v", restrict, m.domctl)
	}
	done := make(chan error, 1)
	go func() { done <- m.Serve(context.Background()) }()
	if got, err := dom.VCPU(0).In(0x3fd, 1); err != nil || got&0x60 != 0x60 {
		t.Fatalf("COM1 LSR = %#x, %v; want THR and TSR empty", got, err)
	}
	if err := dom.Kill(); err != nil {
		t.Fatal(err)
	}
	// The zombie still answers DM ops: an ESRCH watch alone never ends.
	if _, err := m.DM.NrVCPUs(); err != nil {
		t.Fatalf("NrVCPUs on the dying domain = %v; the simulator should still answer", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrDomainGone) {
			t.Fatalf("Serve after the domain was killed = %v, want ErrDomainGone", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still running 10 s after the domain was killed")
	}
	if err := m.Close(); err != nil {
		t.Errorf("Close on the dying domain: %v", err)
	}
	if err := dom.Close(); err != nil {
		t.Errorf("final destruction: %v", err)
	}
}

// With a poll that would not fire for an hour, a DeathHint receive (what
// serve feeds from xenstore's @releaseDomain) makes Serve check the
// domain at once.
func TestServeChecksOnDeathHint(t *testing.T) {
	xen := testfake.NewXen(t, xensim.Config{}, testfake.RAM(1, 16<<20))
	sim, dom := xen.Sim, xen.Dom
	hint := make(chan struct{}) // unbuffered: a send returns once the watch took it
	m, err := New(sim.Kernel(0), Spec{Dom: dom.ID(), VCPUs: 1, DeathPoll: time.Hour, DeathHint: hint})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); dom.Close() })
	done := make(chan error, 1)
	go func() { done <- m.Serve(context.Background()) }()
	if err := dom.Kill(); err != nil {
		t.Fatal(err)
	}
	hint <- struct{}{}
	select {
	case err := <-done:
		if !errors.Is(err, ErrDomainGone) {
			t.Fatalf("Serve = %v, want ErrDomainGone", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still running 10 s after the hint")
	}
}

// Without a vCPU count (godm serve's default) the PM function's CPU
// presence bitmap (PRST, 0xaf00) comes from Xen's count, as the ioreq
// server's does: an empty one tells the guest's ACPI it has no CPU
// (found against QEMU-xen in internal/xenbox).
func TestPresentCPUsFromXen(t *testing.T) {
	xen := testfake.NewXen(t, xensim.Config{}, testfake.RAM(3, 16<<20))
	sim, dom := xen.Sim, xen.Dom
	m, err := New(sim.Kernel(0), Spec{Dom: dom.ID(), DeathPoll: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); dom.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	if got, err := dom.VCPU(0).In(0xaf00, 1); err != nil || got != 0x07 {
		t.Errorf("PRST = %#x, %v; want 0x7 (three vCPUs)", got, err)
	}
}

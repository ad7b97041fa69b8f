package machine

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"godm/devices/chardev"
	"godm/devices/testdev"
	"godm/hyp/xensim"
	"godm/internal/board"
	"godm/ioreq"
	"godm/pci"
)

// boardRig is a machine serving its own simulated domain.
type boardRig struct {
	sim *xensim.Sim
	dom *xensim.Domain
	m   *Machine
	v   *xensim.VCPU
	// stop ends Serve and returns its error.
	stop func() error
}

const simRAM = 16 << 20

func newBoardRig(t *testing.T, spec Spec) *boardRig {
	t.Helper()
	sim := xensim.New(xensim.Config{})
	t.Cleanup(func() { sim.Close() })
	dom, err := sim.CreateDomain(xensim.DomainConfig{VCPUs: 1, RAM: []xensim.Region{{GPA: 0, Size: simRAM}}})
	if err != nil {
		t.Fatal(err)
	}
	spec.Dom, spec.VCPUs, spec.MemBytes = dom.ID(), 1, simRAM
	m, err := New(sim.Kernel(0), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx) }()
	stopped := false
	var serveErr error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			serveErr = <-done
		}
		return serveErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &boardRig{sim: sim, dom: dom, m: m, v: dom.VCPU(0), stop: stop}
}

// layout is what the guest and Xen see of a machine's platform: every
// PCI function's configuration space, the port and MMIO ranges with the
// type of their handlers, and the ranges the ioreq server claims in Xen.
type layout struct {
	Config map[string][]byte
	PIO    []string
	MMIO   []string
	Xen    [3][]xensim.IORange
}

func layoutOf(t *testing.T, s *boardRig) layout {
	t.Helper()
	l := layout{Config: map[string][]byte{}}
	for dev := uint8(0); dev < pci.NumSlots; dev++ {
		for fn := uint8(0); fn < pci.NumFunctions; fn++ {
			f := s.m.PCI.Lookup(dev, fn)
			if f == nil {
				continue
			}
			var b []byte
			for off := uint32(0); off < uint32(f.ConfigSize()); off += 4 {
				v := f.ConfigRead(off, 4)
				b = append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
			}
			l.Config[fmt.Sprintf("%02x.%d", dev, fn)] = b
		}
	}
	for _, r := range s.m.Spaces.PIO.Ranges() {
		l.PIO = append(l.PIO, fmt.Sprintf("%#x+%d %T", r.Base, r.Size, r.Handler))
	}
	for _, r := range s.m.Spaces.MMIO.Ranges() {
		l.MMIO = append(l.MMIO, fmt.Sprintf("%#x+%d %T", r.Base, r.Size, r.Handler))
	}
	var ok bool
	if l.Xen, ok = s.dom.IOReqRanges(uint16(s.m.Server.ID())); !ok {
		t.Fatal("the machine's ioreq server is not in xensim")
	}
	return l
}

func nullSerial() chardev.Backend { return chardev.NewNull() }

// The default machine (a Spec) and the same platform as a -device list,
// in another order and with ids, build the same configuration space,
// port map and Xen claims.
func TestDeviceListBuildsSamePlatform(t *testing.T) {
	a := newBoardRig(t, Spec{Serial: []chardev.Backend{nullSerial(), nil, nullSerial()}, TestDevice: true, TestSlot: 5})
	var list []board.Entry
	for _, s := range []string{
		"i440FX",
		"PIIX3,addr=01.0",
		"i8042,id=ps2",
		"piix4-pm,id=pm",
		"xen-platform,addr=03",
		"godm-testdev,addr=05.0,id=td",
		"isa-serial,chardev=c2,index=2",
		"isa-serial,chardev=c0,id=com1",
	} {
		e, err := board.ParseEntry(s)
		if err != nil {
			t.Fatal(err)
		}
		list = append(list, e)
	}
	b := newBoardRig(t, Spec{Devices: list, Chardevs: map[string]chardev.Backend{"c0": nullSerial(), "c2": nullSerial()}})
	la, lb := layoutOf(t, a), layoutOf(t, b)
	if len(la.Config) != 5 || len(la.PIO) < 10 {
		t.Fatalf("default machine has %d PCI functions and %d port ranges; want 5 and more than 10", len(la.Config), len(la.PIO))
	}
	if !reflect.DeepEqual(la, lb) {
		for k, v := range la.Config {
			if !bytes.Equal(v, lb.Config[k]) {
				t.Errorf("config space of %s differs:\n%x\n%x", k, v, lb.Config[k])
			}
		}
		t.Errorf("ports:\n%v\n%v\nXen:\n%v\n%v", la.PIO, lb.PIO, la.Xen, lb.Xen)
	}
	// The device list names its devices.
	if p := b.m.Board.Device("td"); p == nil || p.Driver != board.TestDevice {
		t.Errorf("Device(td) = %+v", p)
	}
	if b.m.PS2 == nil || len(b.m.UARTs) != 2 || b.m.Test == nil || b.m.PM == nil {
		t.Errorf("machine fields not set from the board: %+v", b.m)
	}
}

// A bad -device list is refused with one error naming the device.
func TestDeviceListErrors(t *testing.T) {
	sim := xensim.New(xensim.Config{})
	defer sim.Close()
	dom, err := sim.CreateDomain(xensim.DomainConfig{VCPUs: 1, RAM: []xensim.Region{{GPA: 0, Size: simRAM}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ list, want string }{
		{"e1000", "'e1000' is not a valid device model name"},
		{"i8042,iobase=0x60", "property 'iobase' not found"},
		{"isa-serial,chardev=nope", "can't find value 'nope'"},
		{"isa-serial,index=4", "Max. supported number of ISA serial ports is 4."},
		{"i8042;i8042", "overlaps"},
		{"godm-testdev,id=x;godm-testdev,id=x", "Duplicate device ID 'x'"},
		{"godm-testdev,addr=20", "not a PCI address"},
		{"PIIX3,addr=02.0", "lives at 01.0"},
		{"xen-pci-passthrough,hostaddr=0000:00:01.0", "cannot pass PCI functions through"},
	} {
		var list []board.Entry
		for _, s := range strings.Split(tc.list, ";") {
			e, err := board.ParseEntry(s)
			if err != nil {
				t.Fatal(err)
			}
			list = append(list, e)
		}
		m, err := New(sim.Kernel(0), Spec{Dom: dom.ID(), VCPUs: 1, Devices: list})
		if err == nil {
			m.Close()
			t.Errorf("%s: built", tc.list)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %q, want one line with %q", tc.list, err, tc.want)
		}
	}
	// Nothing is left behind by the failed builds: a full machine builds.
	m, err := New(sim.Kernel(0), Spec{Dom: dom.ID(), VCPUs: 1, TestDevice: true, TestSlot: 4})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
}

func TestDeviceHelp(t *testing.T) {
	var all bytes.Buffer
	if err := board.Help(&all); err != nil {
		t.Fatal(err)
	}
	for _, d := range board.Drivers() {
		if !strings.Contains(all.String(), fmt.Sprintf("name %q, bus %s", d.Name, d.Bus)) {
			t.Errorf("-device help lacks %s:\n%s", d.Name, all.String())
		}
	}
	var one bytes.Buffer
	if err := board.DriverHelp(&one, "isa-serial"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"isa-serial options:", "chardev=<str>", "index=<uint32>", "iobase=<uint32>", "irq=<uint32>"} {
		if !strings.Contains(one.String(), p) {
			t.Errorf("-device isa-serial,help lacks %q:\n%s", p, one.String())
		}
	}
	if err := board.DriverHelp(io.Discard, "nope"); err == nil {
		t.Error("help of an unknown driver succeeded")
	}
}

// testdevBase is where the tests place the test device's BAR0.
const testdevBase = 0xe0000000

// enableTestdev places the test device's BAR0 and turns on memory
// decoding and bus mastering, as a guest driver would.
func enableTestdev(t *testing.T, s *boardRig, slot uint8) {
	t.Helper()
	sbdf := uint32(slot) << 3
	if err := s.v.PCIConfigWrite(sbdf, pci.RegBAR0, 4, testdevBase); err != nil {
		t.Fatal(err)
	}
	if err := s.v.PCIConfigWrite(sbdf, pci.RegCommand, 2, 0x6); err != nil {
		t.Fatal(err)
	}
}

func mmioW(t *testing.T, s *boardRig, off uint64, v uint64) {
	t.Helper()
	if err := s.v.MMIOWrite(testdevBase+off, 4, v); err != nil {
		t.Fatal(err)
	}
}

func mmioR(t *testing.T, s *boardRig, off uint64) uint64 {
	t.Helper()
	v, err := s.v.MMIORead(testdevBase+off, 4)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Unplugging a device at run time leaves nothing: its ranges and PCI
// function are gone from Xen's records of the ioreq server (as before it
// was plugged), the guest finds the slot empty, its DMA goroutine ends.
func TestUnplugLeavesNothing(t *testing.T) {
	s := newBoardRig(t, Spec{})
	before := layoutOf(t, s)
	p, err := s.m.Board.Plug(board.TestDevice, "td", board.NewProps(map[string]string{"addr": "06.0"}))
	if err != nil {
		t.Fatal(err)
	}
	td := p.Dev.(*testdev.Device)
	if got, err := s.v.PCIConfigRead(6<<3, 0, 4); err != nil || got != testdev.DeviceID<<16|testdev.VendorID {
		t.Fatalf("hot-plugged test device IDs = %#x, %v", got, err)
	}
	enableTestdev(t, s, 6)
	mmioW(t, s, testdev.RegDMALo, 0x10000)
	mmioW(t, s, testdev.RegDMALen, 4096)
	mmioW(t, s, testdev.RegDoorbell, 1)
	for mmioR(t, s, testdev.RegDone) == 0 {
	}
	plugged := layoutOf(t, s)
	if len(plugged.Xen[1]) == len(before.Xen[1]) || len(plugged.Xen[2]) == len(before.Xen[2]) {
		t.Fatalf("plugging claimed no MMIO or PCI range in Xen: %v -> %v", before.Xen, plugged.Xen)
	}
	if err := s.m.Board.Unplug("td"); err != nil {
		t.Fatal(err)
	}
	if after := layoutOf(t, s); !reflect.DeepEqual(after, before) {
		t.Errorf("after unplug:\n%+v\nbefore plug:\n%+v", after.Xen, before.Xen)
	}
	if got, _ := s.v.PCIConfigRead(6<<3, 0, 4); got != 0xffffffff {
		t.Errorf("slot 6 after unplug answers %#x", got)
	}
	if got, _ := s.v.MMIORead(testdevBase, 4); got != 0xffffffff {
		t.Errorf("BAR0 after unplug answers %#x", got)
	}
	// The DMA goroutine has ended: Close (idempotent) returns at once.
	done := make(chan struct{})
	go func() { td.Close(); close(done) }()
	<-done
	if s.m.Board.Device("td") != nil {
		t.Error("board still lists the device")
	}
	// The platform's own devices are not hot-pluggable, as in QEMU.
	if err := s.m.Board.Unplug(s.m.Board.First("PIIX3").ID); err == nil || !strings.Contains(err.Error(), "does not support hotplugging") {
		t.Errorf("unplug of PIIX3: %v", err)
	}
	// Plugging it again works (nothing of the old one is in the way).
	if _, err := s.m.Board.Plug(board.TestDevice, "td", board.NewProps(map[string]string{"addr": "06.0"})); err != nil {
		t.Fatal(err)
	}
}

// testdevLoop keeps the test device busy from the guest: a DMA fill of a
// new pattern, its completion interrupt (INTx) acknowledged by reading
// DONE, over and over, until stop is closed. It reports the first
// failed access.
func testdevLoop(s *boardRig, stop <-chan struct{}) <-chan error {
	errc := make(chan error, 1)
	go func() {
		defer close(errc)
		for i := uint64(0); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			for _, w := range [][2]uint64{{testdev.RegDMALo, dmaBuf}, {testdev.RegDMALen, testdev.MaxDMA}, {testdev.RegSeed, i}, {testdev.RegDoorbell, 1}} {
				if err := s.v.MMIOWrite(testdevBase+w[0], 4, w[1]); err != nil {
					errc <- err
					return
				}
			}
			if _, err := s.v.MMIORead(testdevBase+testdev.RegDone, 4); err != nil {
				errc <- err
				return
			}
		}
	}()
	return errc
}

// dmaBuf is the guest buffer of testdevLoop's fills (MaxDMA bytes, so
// that a fill takes long enough for a pause to land in one).
const dmaBuf = 0x100000

func isInterrupt(e xensim.Event) bool {
	return e.Kind == xensim.EventPCIIntx || e.Kind == xensim.EventMSI || e.Kind == xensim.EventISAIRQ
}

// With the board paused a guest keeping DMA and interrupts busy gets
// nothing done: no request is served, no guest memory changes, no
// interrupt reaches Xen; on resume it continues.
func TestPauseHoldsBusyWorkload(t *testing.T) {
	s := newBoardRig(t, Spec{TestDevice: true, TestSlot: 5})
	enableTestdev(t, s, 5)
	stop := make(chan struct{})
	errc := testdevLoop(s, stop)
	defer func() {
		close(stop)
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}()
	waitDone := func(n uint32) {
		t.Helper()
		ev := s.sim.LastSeq()
		for s.m.Test.Done() < n {
			// Progress shows as interrupts in Xen's records.
			if _, err := s.sim.WaitEvent(ev, 30*time.Second, isInterrupt); err != nil {
				t.Fatalf("workload stalled at %d completions (want %d): %v", s.m.Test.Done(), n, err)
			}
			ev = s.sim.LastSeq()
		}
	}
	waitDone(20)
	for round := 0; round < 5; round++ {
		s.m.Board.Pause()
		mark := s.sim.LastSeq()
		done := s.m.Test.Done()
		var before, after ioreqCounters
		before.read(s.m)
		ram := make([]byte, testdev.MaxDMA)
		if err := s.dom.ReadRAM(dmaBuf, ram); err != nil {
			t.Fatal(err)
		}
		// Hold the pause while the guest keeps trying (its vCPU is
		// blocked in an access nobody takes).
		if _, err := s.sim.WaitEvent(mark, 100*time.Millisecond, isInterrupt); err == nil {
			t.Fatalf("round %d: an interrupt reached Xen while paused", round)
		}
		after.read(s.m)
		if got := s.m.Test.Done(); got != done {
			t.Errorf("round %d: %d completions while paused", round, got-done)
		}
		if after != before {
			t.Errorf("round %d: requests served while paused: %v -> %v", round, before, after)
		}
		now := make([]byte, testdev.MaxDMA)
		if err := s.dom.ReadRAM(dmaBuf, now); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(now, ram) {
			t.Errorf("round %d: guest memory written while paused", round)
		}
		for _, e := range s.sim.EventsSince(mark) {
			if isInterrupt(e) || e.Kind == xensim.EventModifiedMemory {
				t.Errorf("round %d: %v while paused", round, e)
			}
		}
		s.m.Board.Resume()
		waitDone(done + 10)
	}
}

type ioreqCounters struct{ sync, buffered uint64 }

func (c *ioreqCounters) read(m *Machine) {
	var st ioreqStats
	m.Server.Stats(&st)
	*c = ioreqCounters{}
	for i := range st.Sync {
		c.sync += st.Sync[i]
		c.buffered += st.Buffered[i]
	}
}

type ioreqStats = ioreq.Counters

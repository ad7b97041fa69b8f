package machine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"godm/devices/chardev"
	"godm/devices/testdev"
	"godm/hyp/xensim"
	"godm/internal/board"
	"godm/internal/testfake"
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

func newBoardRig(t testing.TB, spec Spec) *boardRig {
	t.Helper()
	xen := testfake.NewXen(t, xensim.Config{}, testfake.RAM(1, simRAM))
	sim, dom := xen.Sim, xen.Dom
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

// platformLayout is what the guest and Xen see of a machine's platform: every
// PCI function's configuration space, the port and MMIO ranges with the
// type of their handlers, and the ranges the ioreq server claims in Xen.
type platformLayout struct {
	Config map[string][]byte
	PIO    []string
	MMIO   []string
	Xen    [3][]xensim.IORange
}

func layoutOf(t *testing.T, s *boardRig) platformLayout {
	t.Helper()
	l := platformLayout{Config: map[string][]byte{}}
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
		"piix3-ide,addr=01.1",
		"xen-platform,addr=02",
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
	if len(la.Config) != 6 || len(la.PIO) < 14 {
		t.Fatalf("default machine has %d PCI functions and %d port ranges; want 6 and more than 14", len(la.Config), len(la.PIO))
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
	xen := testfake.NewXen(t, xensim.Config{}, testfake.RAM(1, simRAM))
	sim, dom := xen.Sim, xen.Dom
	for _, tc := range []struct{ list, want string }{
		{"e1000e", "'e1000e' is not a valid device model name"},
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

// dmaWorkers counts the running test-device DMA goroutines.
func dmaWorkers() int {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	return strings.Count(string(buf[:n]), "testdev.(*Device).worker")
}

// waitDMAWorkers waits (a bounded while) until ok(dmaWorkers()) holds.
func waitDMAWorkers(t *testing.T, ok func(int) bool, what string) {
	t.Helper()
	for i := 0; !ok(dmaWorkers()); i++ {
		if i == 5000 {
			t.Fatalf("the test device's DMA goroutine has not %s (%d running)", what, dmaWorkers())
		}
		time.Sleep(time.Millisecond)
	}
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
	if _, ok := p.Dev.(*testdev.Device); !ok {
		t.Fatalf("plugged %T", p.Dev)
	}
	waitDMAWorkers(t, func(n int) bool { return n > 0 }, "started")
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
	// The DMA goroutine has ended (it may still be returning from its
	// last frame when Unplug returns).
	waitDMAWorkers(t, func(n int) bool { return n == 0 }, "ended after unplug")
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

// guestOp is one step of a guest workload; reads report their value.
type guestOp struct {
	name string
	do   func(s *boardRig) (v uint64, read bool, err error)
}

func outOp(port uint16, size int, v uint64) guestOp {
	return guestOp{fmt.Sprintf("out %#x", port), func(s *boardRig) (uint64, bool, error) { return 0, false, s.v.Out(port, size, v) }}
}

func inOp(port uint16, size int) guestOp {
	return guestOp{fmt.Sprintf("in %#x", port), func(s *boardRig) (uint64, bool, error) {
		v, err := s.v.In(port, size)
		return v, true, err
	}}
}

func cfgwOp(dev, fn uint8, reg uint32, size int, v uint64) guestOp {
	return guestOp{fmt.Sprintf("cfg write %02x.%d %#x", dev, fn, reg), func(s *boardRig) (uint64, bool, error) {
		return 0, false, s.v.PCIConfigWrite(uint32(dev)<<3|uint32(fn), reg, size, v)
	}}
}

func cfgrOp(dev, fn uint8, reg uint32, size int) guestOp {
	return guestOp{fmt.Sprintf("cfg read %02x.%d %#x", dev, fn, reg), func(s *boardRig) (uint64, bool, error) {
		v, err := s.v.PCIConfigRead(uint32(dev)<<3|uint32(fn), reg, size)
		return v, true, err
	}}
}

func mmiowOp(gpa, v uint64) guestOp {
	return guestOp{fmt.Sprintf("mmio write %#x", gpa), func(s *boardRig) (uint64, bool, error) { return 0, false, s.v.MMIOWrite(gpa, 4, v) }}
}

func mmiorOp(gpa uint64) guestOp {
	return guestOp{fmt.Sprintf("mmio read %#x", gpa), func(s *boardRig) (uint64, bool, error) {
		v, err := s.v.MMIORead(gpa, 4)
		return v, true, err
	}}
}

// waitDoneOp polls the test device's DONE until it reaches n (the number
// of polls is not part of the result).
func waitDoneOp(n uint64) guestOp {
	return guestOp{fmt.Sprintf("wait DONE %d", n), func(s *boardRig) (uint64, bool, error) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			v, err := s.v.MMIORead(testdevBase+testdev.RegDone, 4)
			if err != nil || v >= n {
				return 0, false, err
			}
			if time.Now().After(deadline) {
				return 0, false, fmt.Errorf("DONE stuck at %d, want %d", v, n)
			}
		}
	}}
}

const msixBase = testdevBase + 0x1000

// snapshotWorkload touches every device's state, with reads after
// writes, so that a state lost or garbled across a snapshot shows in the
// values read (or in guest memory).
func snapshotWorkload() []guestOp {
	ops := []guestOp{
		cfgwOp(5, 0, pci.RegBAR0, 4, testdevBase),
		cfgwOp(5, 0, pci.RegBAR0+8, 4, msixBase),
		cfgwOp(5, 0, pci.RegCommand, 2, 0x6),
		cfgwOp(1, 0, 0x60, 1, 11),   // PIIX3 PIRQA -> IRQ 11
		cfgwOp(0, 0, 0x59, 1, 0x30), // i440FX PAM0
		outOp(0xcf8, 4, 0x80000858), // CONFIG_ADDRESS
		outOp(0x3fb, 1, 0x80),       // COM1: DLAB, divisor 3, 8N1
		outOp(0x3f8, 1, 3),
		outOp(0x3f9, 1, 0),
		outOp(0x3fb, 1, 0x03),
		outOp(0x3fa, 1, 0xc7),         // FIFOs on, trigger 14
		outOp(0x3fc, 1, 0x1b),         // loopback: THR goes to the receive FIFO
		outOp(0x3f9, 1, 0x02),         // IER: THRI (not RDI: its character timeout depends on time)
		outOp(0x3ff, 1, 0x5a),         // scratch
		outOp(0x64, 1, 0xaa),          // i8042 self-test: 0x55 waits in the output buffer
		outOp(0xafe2, 1, 0x02),        // GPE0 enable
		mmiowOp(msixBase, 0xfee00000), // MSI-X entry 0 address
		mmiowOp(msixBase+8, 0x4041),   // data
		mmiowOp(testdevBase+testdev.RegScratch, 0xdeadbeef),
	}
	for i, c := range []byte("godm") {
		ops = append(ops, outOp(0x3f8, 1, uint64(c)))
		seed := uint64(i*37 + 1)
		ops = append(ops,
			mmiowOp(testdevBase+testdev.RegDMALo, uint64(dmaBuf+i*0x10000)),
			mmiowOp(testdevBase+testdev.RegDMALen, 0x8000),
			mmiowOp(testdevBase+testdev.RegSeed, seed),
			mmiowOp(testdevBase+testdev.RegDoorbell, 1),
			inOp(0x3fd, 1),
			waitDoneOp(uint64(i+1)),
			mmiorOp(testdevBase+testdev.RegStatus),
			inOp(0x3fa, 1),
		)
	}
	// Read everything back.
	return append(ops,
		inOp(0x3fd, 1), inOp(0x3fa, 1),
		inOp(0x3f8, 1), inOp(0x3f8, 1), inOp(0x3f8, 1), inOp(0x3f8, 1), inOp(0x3f8, 1),
		inOp(0x3fd, 1), inOp(0x3fa, 1), inOp(0x3ff, 1), inOp(0x3fb, 1), inOp(0x3fc, 1),
		inOp(0x64, 1), inOp(0x60, 1), inOp(0x64, 1),
		inOp(0xcf8, 4),
		inOp(0xafe2, 1),
		cfgrOp(1, 0, 0x60, 4), cfgrOp(0, 0, 0x58, 4), cfgrOp(5, 0, pci.RegCommand, 4),
		cfgrOp(5, 0, pci.RegBAR0, 4), cfgrOp(5, 0, pci.RegBAR0+8, 4),
		mmiorOp(msixBase), mmiorOp(msixBase+8), mmiorOp(msixBase+12),
		mmiorOp(testdevBase+testdev.RegScratch), mmiorOp(testdevBase+testdev.RegDone),
		mmiorOp(testdevBase+testdev.RegINTx),
	)
}

// guestResult is what a guest sees of a workload: the values read, its
// DMA buffers and the interrupt lines at the end.
type guestResult struct {
	Reads []string
	RAM   []byte
	INTx  bool
	IRQ4  bool
}

func runOps(t *testing.T, s *boardRig, ops []guestOp, res *guestResult) {
	t.Helper()
	for _, op := range ops {
		v, read, err := op.do(s)
		if err != nil {
			t.Fatalf("%s: %v", op.name, err)
		}
		if read {
			res.Reads = append(res.Reads, fmt.Sprintf("%s = %#x", op.name, v))
		}
	}
}

func finish(t *testing.T, s *boardRig, res *guestResult) {
	t.Helper()
	res.RAM = make([]byte, 4*0x10000)
	if err := s.dom.ReadRAM(dmaBuf, res.RAM); err != nil {
		t.Fatal(err)
	}
	res.INTx = s.dom.INTxLevel(5, 0)
	res.IRQ4 = s.dom.ISAIRQLevel(4)
}

// copyRAM copies the guest's RAM, as a toolstack's save and restore do.
func copyRAM(t *testing.T, from, to *xensim.Domain) {
	t.Helper()
	buf := make([]byte, simRAM)
	if err := from.ReadRAM(0, buf); err != nil {
		t.Fatal(err)
	}
	if err := to.WriteRAM(0, buf); err != nil {
		t.Fatal(err)
	}
}

var snapshotSpec = Spec{Serial: []chardev.Backend{nil}, TestDevice: true, TestSlot: 5}

func snapSpec() Spec {
	s := snapshotSpec
	s.Serial = []chardev.Backend{chardev.NewNull()}
	return s
}

// A machine snapshotted at points of a workload (DMA fills pending or
// running among them) and restored into a fresh machine on a fresh
// domain continues with the same guest-visible results as a run without
// interruption.
func TestSnapshotRestoreContinues(t *testing.T) {
	ops := snapshotWorkload()
	var want guestResult
	{
		s := newBoardRig(t, snapSpec())
		runOps(t, s, ops, &want)
		finish(t, s, &want)
	}
	if !strings.Contains(strings.Join(want.Reads, "\n"), "in 0x60 = 0x55") {
		t.Fatalf("workload does not see the i8042 self-test:\n%s", strings.Join(want.Reads, "\n"))
	}
	// Every split point right after a doorbell (a fill pending or under
	// way), and some others.
	// After a doorbell the snapshot is taken twice: once as it comes
	// (the fill most likely under way or done), once with the test
	// device paused before the doorbell (its fill queued in the
	// snapshot).
	type split struct {
		k     int
		queue bool
	}
	var splits []split
	for i, op := range ops {
		if strings.Contains(op.name, fmt.Sprintf("%#x", testdevBase+testdev.RegDoorbell)) {
			splits = append(splits, split{i + 1, false}, split{i + 1, true})
		} else if i%7 == 3 {
			splits = append(splits, split{i + 1, false})
		}
	}
	// And random points (the seed is logged to replay a failure).
	seed := uint64(time.Now().UnixNano())
	t.Logf("random split points: seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 0x5a7e))
	for range 4 {
		splits = append(splits, split{1 + rnd.IntN(len(ops)-1), false})
	}
	for _, sp := range splits {
		k := sp.k
		t.Run(fmt.Sprintf("split%d/queued=%v", k, sp.queue), func(t *testing.T) {
			var got guestResult
			a := newBoardRig(t, snapSpec())
			if sp.queue {
				runOps(t, a, ops[:k-1], &got)
				a.m.Test.Pause()
				runOps(t, a, ops[k-1:k], &got)
			} else {
				runOps(t, a, ops[:k], &got)
			}
			a.m.Board.Pause()
			snap, err := a.m.Board.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			b := newBoardRig(t, snapSpec())
			copyRAM(t, a.dom, b.dom)
			a.stop()
			a.m.Close()
			if err := b.m.Board.Restore(snap); err != nil {
				t.Fatal(err)
			}
			runOps(t, b, ops[k:], &got)
			finish(t, b, &got)
			if !reflect.DeepEqual(got.Reads, want.Reads) {
				for i := range min(len(got.Reads), len(want.Reads)) {
					if got.Reads[i] != want.Reads[i] {
						t.Errorf("read %d: %s, uninterrupted %s", i, got.Reads[i], want.Reads[i])
					}
				}
			}
			if !bytes.Equal(got.RAM, want.RAM) {
				t.Error("DMA buffers differ from the uninterrupted run")
			}
			if got.INTx != want.INTx || got.IRQ4 != want.IRQ4 {
				t.Errorf("lines INTx %v IRQ4 %v, uninterrupted %v %v", got.INTx, got.IRQ4, want.INTx, want.IRQ4)
			}
		})
	}
}

// deviceRecords returns each device's snapshot record by id.
func deviceRecords(t *testing.T, s *boardRig) map[string][]byte {
	t.Helper()
	s.m.Board.Pause()
	defer s.m.Board.Resume()
	out := map[string][]byte{}
	for _, p := range s.m.Board.Devices() {
		rec, err := p.Dev.(interface{ Snapshot() ([]byte, error) }).Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		out[p.ID] = rec
	}
	return out
}

// A board reset mid-workload puts every device's state (all its snapshot
// holds: registers, FIFOs, queues, PCI configuration and MSI-X) back to
// what a freshly built machine has, but for the registers QEMU's system
// reset keeps too.
func TestResetMatchesPowerOn(t *testing.T) {
	ops := snapshotWorkload()
	fresh := deviceRecords(t, newBoardRig(t, snapSpec()))
	for _, k := range []int{len(ops) / 3, 2 * len(ops) / 3, len(ops)} {
		s := newBoardRig(t, snapSpec())
		var res guestResult
		runOps(t, s, ops[:k], &res)
		if got := deviceRecords(t, s); reflect.DeepEqual(got, fresh) {
			t.Fatalf("after %d steps the workload changed no device", k)
		}
		s.m.Board.Reset()
		got := deviceRecords(t, s)
		for id, rec := range fresh {
			if strings.HasPrefix(id, "i440FX") {
				// The workload writes PAM0, which a system reset keeps,
				// as QEMU's does (TestQEMUDiffXen_SystemReset compares
				// the kept registers with QEMU).
				continue
			}
			if !bytes.Equal(got[id], rec) {
				t.Errorf("after %d steps and a reset, %s differs from power-on:\n%x\n%x", k, id, got[id], rec)
			}
		}
		// The guest sees the reset: the test device's BAR is unmapped
		// and its config space has decoding off; COM1's scratch is 0.
		if v, _ := s.v.PCIConfigRead(5<<3, pci.RegCommand, 2); v != 0 {
			t.Errorf("test device command after reset = %#x", v)
		}
		if v, _ := s.v.In(0x3ff, 1); v != 0 {
			t.Errorf("COM1 scratch after reset = %#x", v)
		}
	}
}

// The cross-process test hands the helper process its work through
// these environment variables.
const (
	snapDirEnv   = "GODM_TEST_SNAPSHOT_DIR"
	snapSplitEnv = "GODM_TEST_SNAPSHOT_SPLIT"
)

// A snapshot taken mid-workload is restored into a fresh machine in a
// new process, which continues the workload with the uninterrupted run's
// results: at a doorbell with its fill queued in the test device, and at
// random points (the seed is logged to replay a failure).
func TestSnapshotRestoreCrossProcess(t *testing.T) {
	ops := snapshotWorkload()
	var want guestResult
	{
		s := newBoardRig(t, snapSpec())
		runOps(t, s, ops, &want)
		finish(t, s, &want)
	}
	type split struct {
		k     int
		queue bool
	}
	var splits []split
	for i, op := range ops {
		if strings.Contains(op.name, fmt.Sprintf("%#x", testdevBase+testdev.RegDoorbell)) {
			splits = []split{{i + 1, true}} // the second doorbell
			if i > len(ops)/3 {
				break
			}
		}
	}
	if len(splits) == 0 {
		t.Fatal("the workload rings no doorbell")
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("random split points: seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 0xc055))
	for range 2 {
		splits = append(splits, split{1 + rnd.IntN(len(ops)-1), false})
	}
	for _, sp := range splits {
		t.Run(fmt.Sprintf("split%d/queued=%v", sp.k, sp.queue), func(t *testing.T) {
			crossProcess(t, ops, sp.k, sp.queue, want)
		})
	}
}

// crossProcess runs ops[:k] (with queue, the test device paused before
// op k, so that its doorbell's fill stays queued in the snapshot),
// snapshots the board and hands snapshot and RAM to a new process that
// runs the rest; its result must be want.
func crossProcess(t *testing.T, ops []guestOp, k int, queue bool, want guestResult) {
	a := newBoardRig(t, snapSpec())
	var got guestResult
	if queue {
		runOps(t, a, ops[:k-1], &got)
		a.m.Test.Pause()
		runOps(t, a, ops[k-1:k], &got)
	} else {
		runOps(t, a, ops[:k], &got)
	}
	a.m.Board.Pause()
	snap, err := a.m.Board.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	ram := make([]byte, simRAM)
	if err := a.dom.ReadRAM(0, ram); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "snapshot"), snap, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ram"), ram, 0o600); err != nil {
		t.Fatal(err)
	}
	prefix, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "prefix.json"), prefix, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSnapshotHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), snapDirEnv+"="+dir, snapSplitEnv+"="+fmt.Sprint(k))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helper process: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "result.json"))
	if err != nil {
		t.Fatal(err)
	}
	got = guestResult{}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Reads, want.Reads) {
		t.Errorf("reads differ from the uninterrupted run:\n%s\nwant\n%s", strings.Join(got.Reads, "\n"), strings.Join(want.Reads, "\n"))
	}
	if !bytes.Equal(got.RAM, want.RAM) || got.INTx != want.INTx || got.IRQ4 != want.IRQ4 {
		t.Error("DMA buffers or lines differ from the uninterrupted run")
	}
}

// TestSnapshotHelperProcess is the new process of
// TestSnapshotRestoreCrossProcess: it builds a fresh machine, loads the
// guest's RAM and the snapshot, and runs the rest of the workload.
func TestSnapshotHelperProcess(t *testing.T) {
	dir := os.Getenv(snapDirEnv)
	if dir == "" {
		t.Skip("runs only as TestSnapshotRestoreCrossProcess's helper process (" + snapDirEnv + " unset)")
	}
	k, err := strconv.Atoi(os.Getenv(snapSplitEnv))
	if err != nil {
		t.Fatal(err)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var res guestResult
	if err := json.Unmarshal(read("prefix.json"), &res); err != nil {
		t.Fatal(err)
	}
	s := newBoardRig(t, snapSpec())
	if err := s.dom.WriteRAM(0, read("ram")); err != nil {
		t.Fatal(err)
	}
	if err := s.m.Board.Restore(read("snapshot")); err != nil {
		t.Fatal(err)
	}
	runOps(t, s, snapshotWorkload()[k:], &res)
	finish(t, s, &res)
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "result.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

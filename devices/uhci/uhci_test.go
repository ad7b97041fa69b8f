package uhci

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"godm/devices"
	"godm/devices/savestate"
	"godm/devices/usb"
	"godm/devices/usb/hid"
	"godm/internal/testfake"
	"godm/memory"
	"godm/pci"
)

const (
	memSize  = 1 << 20
	flBase   = 0x10000 // frame list
	qhAddr   = 0x20000
	tdBase   = 0x21000
	bufBase  = 0x30000
	badAddr  = 0x7ff00000 // outside the rig's memory
	portBase = 0xc000
)

type rig struct {
	t   testing.TB
	d   *Controller
	mem *memory.Flat
	irq *testfake.Recorder
	clk *testfake.Clock
	tab *hid.Tablet
}

func newRig(t testing.TB, withTablet bool) *rig {
	t.Helper()
	r := &rig{t: t, mem: memory.NewFlat(0, memSize), irq: &testfake.Recorder{}, clk: &testfake.Clock{}}
	d, err := New(Config{Memory: r.mem, Clock: r.clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	bus, err := pci.NewBus(pci.BusConfig{Spaces: devices.NewBus(), INTx: testfake.AllPins{Line: r.irq}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Add(d.Function(), Slot, Function); err != nil {
		t.Fatal(err)
	}
	r.d = d
	if withTablet {
		r.tab = hid.New(r.clk)
		if err := d.Attach(0, r.tab); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func (r *rig) rd(off uint64, size uint8) uint64 {
	return regs{r.d}.Read(devices.Access{Offset: off, Size: size})
}

func (r *rig) wr(off uint64, size uint8, v uint64) {
	regs{r.d}.Write(devices.Access{Offset: off, Size: size}, v)
}

func (r *rig) poke32(gpa uint32, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	if err := r.mem.Write(memory.GPA(gpa), b[:]); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) peek32(gpa uint32) uint32 {
	var b [4]byte
	if err := r.mem.Read(memory.GPA(gpa), b[:]); err != nil {
		r.t.Fatal(err)
	}
	return binary.LittleEndian.Uint32(b[:])
}

func TestPCIIdentity(t *testing.T) {
	r := newRig(t, false)
	fn := r.d.Function()
	if got := fn.ConfigRead(0, 4); got != DeviceID<<16|VendorID {
		t.Errorf("ids %#x", got)
	}
	if got := fn.ConfigRead(8, 4); got != ClassCode<<8|Revision {
		t.Errorf("class/rev %#x", got)
	}
	if got := fn.ConfigRead(0x3d, 1); got != 4 {
		t.Errorf("interrupt pin %d, want 4 (INTD#)", got)
	}
	if got := fn.ConfigRead(regSBRN, 1); got != 0x10 {
		t.Errorf("SBRN %#x", got)
	}
	if got := fn.ConfigRead(regUSBClock, 1); got != 1 {
		t.Errorf("USB clock byte %#x", got)
	}
	// BAR4 is a 32-byte I/O BAR; the others are absent.
	fn.Write(devices.Access{Offset: 0x20, Size: 4}, 0xffffffff)
	if got := fn.ConfigRead(0x20, 4); got != 0xffffffe1 {
		t.Errorf("BAR4 sizing %#x, want 0xffffffe1", got)
	}
	fn.Write(devices.Access{Offset: 0x10, Size: 4}, 0xffffffff)
	if got := fn.ConfigRead(0x10, 4); got != 0 {
		t.Errorf("BAR0 %#x, want absent", got)
	}
}

func TestRegisters(t *testing.T) {
	r := newRig(t, true)
	for _, c := range []struct {
		off  uint64
		size uint8
		want uint64
	}{
		{RegCmd, 2, 0}, {RegStatus, 2, StsHalted}, {RegIntr, 2, 0}, {RegFrnum, 2, 0},
		{RegFLBase, 4, 0}, {RegSOF, 1, 64}, {RegSOF, 2, 64},
		{RegPortSC1, 2, portIdle | PortCCS | PortCSC}, {RegPortSC2, 2, portIdle},
		{0x14, 2, 0xff7f}, {0x1e, 2, 0xff7f}, {0x0e, 2, 0xff7f}, {0x01, 1, 0x7f},
		{RegPortSC1, 4, 0x0080<<16 | portIdle | PortCCS | PortCSC},
	} {
		if got := r.rd(c.off, c.size); got != c.want {
			t.Errorf("read %#x/%d = %#x, want %#x", c.off, c.size, got, c.want)
		}
	}
	// FLBASEADD keeps bits 31:12; a dword write is two word writes.
	r.wr(RegFLBase, 4, 0x12345fff)
	if got := r.rd(RegFLBase, 4); got != 0x12345000 {
		t.Errorf("flbase %#x", got)
	}
	r.wr(RegFLBase+2, 2, 0xabcd)
	if got := r.rd(RegFLBase, 4); got != 0xabcd5000 {
		t.Errorf("flbase high word %#x", got)
	}
	// FRNUM takes writes only while halted, 11 bits.
	r.wr(RegFrnum, 2, 0xffff)
	if got := r.rd(RegFrnum, 2); got != 0x7ff {
		t.Errorf("frnum %#x", got)
	}
	r.wr(RegCmd, 2, CmdRS)
	if got := r.rd(RegStatus, 2); got&StsHalted != 0 {
		t.Errorf("running but halted: %#x", got)
	}
	r.wr(RegFrnum, 2, 5)
	if got := r.rd(RegFrnum, 2); got != 0x7ff {
		t.Errorf("frnum written while running: %#x", got)
	}
	r.wr(RegCmd, 2, 0)
	if got := r.rd(RegStatus, 2); got&StsHalted == 0 {
		t.Errorf("stopped but not halted: %#x", got)
	}
	// PORTSC: CSC is write-1-to-clear, EN only with a device connected.
	r.wr(RegPortSC1, 2, PortCSC|PortEN)
	if got := r.rd(RegPortSC1, 2); got != portIdle|PortCCS|PortEN {
		t.Errorf("port 1 %#x", got)
	}
	r.wr(RegPortSC2, 2, PortEN)
	if got := r.rd(RegPortSC2, 2); got != portIdle {
		t.Errorf("empty port 2 enabled: %#x", got)
	}
	// Detach: connect and enable change.
	r.d.Detach(0)
	if got := r.rd(RegPortSC1, 2); got != portIdle|PortCSC|PortENC {
		t.Errorf("detached port %#x", got)
	}
	r.wr(RegPortSC1, 2, PortCSC|PortENC)
	if got := r.rd(RegPortSC1, 2); got != portIdle {
		t.Errorf("after clearing %#x", got)
	}
	// USBSTS is write-1-to-clear.
	r.wr(RegStatus, 2, 0xffff)
	if got := r.rd(RegStatus, 2); got != 0 {
		t.Errorf("status %#x after clearing all", got)
	}
	// HCRESET returns everything to reset values.
	r.wr(RegIntr, 2, 0xf)
	r.wr(RegSOF, 1, 0x33)
	r.wr(RegCmd, 2, CmdHCReset)
	for off, want := range map[uint64]uint64{RegCmd: 0, RegStatus: StsHalted, RegIntr: 0, RegSOF: 64, RegFLBase: 0} {
		if got := r.rd(off, 2); got != want {
			t.Errorf("after HCRESET %#x = %#x, want %#x", off, got, want)
		}
	}
}

// --- a tiny host driver: one QH in every frame list entry, TDs behind it.

type td struct {
	pid    uint8
	addr   uint8
	ep     uint8
	maxLen int // -1: a null packet
	ioc    bool
	data   []byte // OUT/SETUP payload
}

func token(t td) uint32 {
	ml := uint32(0x7ff)
	if t.maxLen > 0 {
		ml = uint32(t.maxLen - 1)
	}
	return ml<<21 | uint32(t.ep)<<15 | uint32(t.addr)<<8 | uint32(t.pid)
}

// schedule writes tds as one depth-first queue behind the QH and points
// every frame at it. It returns the TDs' addresses.
func (r *rig) schedule(tds []td) []uint32 {
	for i := range 1024 {
		r.poke32(flBase+uint32(i)*4, qhAddr|linkQH)
	}
	r.poke32(qhAddr, linkTerm)
	var addrs []uint32
	for i, x := range tds {
		a := tdBase + uint32(i)*32
		addrs = append(addrs, a)
		link := uint32(linkTerm)
		if i+1 < len(tds) {
			link = (a + 32) | linkDepth
		}
		ctrl := uint32(tdActive | 3<<27)
		if x.ioc {
			ctrl |= tdIOC
		}
		if x.pid == usb.PIDIn {
			ctrl |= tdSPD
		}
		buf := bufBase + uint32(i)*0x100
		if x.data != nil {
			if err := r.mem.Write(memory.GPA(buf), x.data); err != nil {
				r.t.Fatal(err)
			}
		}
		r.poke32(a, link)
		r.poke32(a+4, ctrl)
		r.poke32(a+8, token(x))
		r.poke32(a+12, buf)
	}
	r.poke32(qhAddr+4, tdBase)
	return addrs
}

func (r *rig) start() {
	r.d.Function().Write(devices.Access{Offset: 4, Size: 2}, 5) // I/O, bus master
	r.wr(RegFLBase, 4, flBase)
	r.wr(RegPortSC1, 2, PortEN)
	r.wr(RegCmd, 2, CmdRS)
}

// control runs a control transfer to addr and returns the IN data.
func (r *rig) control(addr uint8, s usb.Setup, inLen int) ([]byte, error) {
	r.t.Helper()
	var setup [8]byte
	setup[0], setup[1] = s.RequestType, s.Request
	binary.LittleEndian.PutUint16(setup[2:], s.Value)
	binary.LittleEndian.PutUint16(setup[4:], s.Index)
	binary.LittleEndian.PutUint16(setup[6:], s.Length)
	tds := []td{{pid: usb.PIDSetup, addr: addr, maxLen: 8, data: setup[:]}}
	for n := 0; n < inLen; n += 8 {
		tds = append(tds, td{pid: usb.PIDIn, addr: addr, maxLen: 8})
	}
	status := td{pid: usb.PIDIn, addr: addr, maxLen: -1, ioc: true}
	if inLen > 0 {
		status.pid = usb.PIDOut
	}
	tds = append(tds, status)
	addrs := r.schedule(tds)
	for range 10 {
		r.d.RunFrame()
		if r.peek32(qhAddr+4)&linkTerm != 0 {
			break
		}
	}
	var out []byte
	for i, a := range addrs {
		ctrl := r.peek32(a + 4)
		if ctrl&tdActive != 0 {
			// A short IN: the rest of the data stage is skipped by the
			// driver; the status TD is run by itself.
			if i+1 == len(addrs) {
				return out, errors.New("status stage did not complete")
			}
			continue
		}
		if ctrl&(tdStall|tdCRC) != 0 {
			return out, errors.New("stalled or timed out")
		}
		if tds[i].pid == usb.PIDIn && i > 0 && i+1 < len(addrs) {
			n := int(ctrl+1) & tdActLen
			b := make([]byte, n)
			if err := r.mem.Read(memory.GPA(bufBase+uint32(i)*0x100), b); err != nil {
				r.t.Fatal(err)
			}
			out = append(out, b...)
			if n < 8 {
				// Short: run the status stage on its own.
				last := tds[len(tds)-1]
				r.schedule([]td{last})
				r.d.RunFrame()
				if c := r.peek32(tdBase + 4); c&tdActive != 0 || c&tdStall != 0 {
					return out, errors.New("status after short data failed")
				}
				return out, nil
			}
		}
	}
	return out, nil
}

func TestEnumerateTablet(t *testing.T) {
	r := newRig(t, true)
	r.start()
	dev, err := r.control(0, usb.Setup{RequestType: 0x80, Request: usb.ReqGetDescriptor, Value: usb.DescDevice << 8, Length: 18}, 18)
	if err != nil {
		t.Fatal(err)
	}
	if len(dev) != 18 || dev[1] != usb.DescDevice || binary.LittleEndian.Uint16(dev[8:]) != hid.VendorID {
		t.Fatalf("device descriptor % x", dev)
	}
	if _, err := r.control(0, usb.Setup{RequestType: 0, Request: usb.ReqSetAddress, Value: 5}, 0); err != nil {
		t.Fatal(err)
	}
	if r.tab.Address() != 5 {
		t.Fatalf("address %d", r.tab.Address())
	}
	// The old address no longer answers: a time-out.
	if _, err := r.control(0, usb.Setup{RequestType: 0x80, Request: usb.ReqGetDescriptor, Value: usb.DescDevice << 8, Length: 18}, 18); err == nil {
		t.Fatal("address 0 still answers")
	}
	r.wr(RegStatus, 2, 0xffff)
	cfg, err := r.control(5, usb.Setup{RequestType: 0x80, Request: usb.ReqGetDescriptor, Value: usb.DescConfig << 8, Length: 255}, 255)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg) != int(binary.LittleEndian.Uint16(cfg[2:])) || cfg[9+5] != 3 {
		t.Fatalf("config descriptor (%d bytes) % x", len(cfg), cfg)
	}
	if _, err := r.control(5, usb.Setup{RequestType: 0, Request: usb.ReqSetConfiguration, Value: 1}, 0); err != nil {
		t.Fatal(err)
	}
	rep, err := r.control(5, usb.Setup{RequestType: 0x81, Request: usb.ReqGetDescriptor, Value: 0x22 << 8, Length: uint16(len(hid.ReportDescriptor))}, len(hid.ReportDescriptor))
	if err != nil || !bytes.Equal(rep, hid.ReportDescriptor) {
		t.Fatalf("report descriptor %v % x", err, rep)
	}

	// Interrupt IN: NAK while nothing moved, the report once it did, with
	// an IOC interrupt on INTx when enabled.
	r.wr(RegIntr, 2, intrIOC|intrSP)
	r.wr(RegStatus, 2, 0xffff)
	addrs := r.schedule([]td{{pid: usb.PIDIn, addr: 5, ep: 1, maxLen: 8, ioc: true}})
	r.d.RunFrame()
	if c := r.peek32(addrs[0] + 4); c&tdActive == 0 || c&tdNAK == 0 {
		t.Fatalf("no NAK: ctrl %#x", c)
	}
	if r.irq.Level() {
		t.Fatal("interrupt without a completion")
	}
	r.tab.PointerEvent(320, 240, 640, 480, 1)
	r.d.RunFrame()
	c := r.peek32(addrs[0] + 4)
	if c&tdActive != 0 || int(c+1)&tdActLen != hid.ReportLen {
		t.Fatalf("after an event: ctrl %#x", c)
	}
	var b [hid.ReportLen]byte
	if err := r.mem.Read(bufBase, b[:]); err != nil {
		t.Fatal(err)
	}
	x, y := hid.Scale(320, 640), hid.Scale(240, 480)
	if want := []byte{1, byte(x), byte(x >> 8), byte(y), byte(y >> 8), 0}; !bytes.Equal(b[:], want) {
		t.Fatalf("report % x, want % x", b, want)
	}
	if !r.irq.Level() {
		t.Fatal("no interrupt for IOC (and short packet)")
	}
	if got := r.rd(RegStatus, 2); got&StsUSBInt == 0 {
		t.Fatalf("status %#x", got)
	}
	r.wr(RegStatus, 2, StsUSBInt)
	if r.irq.Level() {
		t.Fatal("interrupt stays after USBINT cleared")
	}
}

func TestHostileSchedules(t *testing.T) {
	cases := []struct {
		name  string
		build func(r *rig)
	}{
		{"td loops on itself", func(r *rig) {
			r.schedule(nil)
			r.poke32(flBase, tdBase) // a TD straight in the frame list
			r.poke32(flBase+4, tdBase)
			r.poke32(tdBase, tdBase)
			r.poke32(tdBase+4, 0) // inactive: the walk follows its link
		}},
		{"qh loops on itself", func(r *rig) {
			r.schedule(nil)
			r.poke32(qhAddr, qhAddr|linkQH)
			r.poke32(qhAddr+4, linkTerm)
		}},
		{"ring of 200 queue heads", func(r *rig) {
			r.schedule(nil)
			for i := range uint32(200) {
				a := qhAddr + i*16
				r.poke32(a, (qhAddr+((i+1)%200)*16)|linkQH)
				r.poke32(a+4, linkTerm)
			}
		}},
		{"inactive td chain without end", func(r *rig) {
			r.schedule(nil)
			r.poke32(flBase, tdBase)
			r.poke32(flBase+4, tdBase)
			for i := range uint32(1000) {
				a := tdBase + i*16
				r.poke32(a, a+16)
				r.poke32(a+4, tdIOC)
			}
		}},
		{"completing tds through a looping queue", func(r *rig) {
			// A QH whose element is a TD (a SETUP, which the tablet
			// always takes) linking back to the QH: progress on the
			// first lap, then the QH's element is the QH itself.
			r.schedule(nil)
			r.poke32(qhAddr, qhAddr|linkQH)
			r.poke32(qhAddr+4, tdBase)
			r.poke32(tdBase, qhAddr|linkQH)
			r.poke32(tdBase+4, tdActive)
			r.poke32(tdBase+8, token(td{pid: usb.PIDSetup, maxLen: 8}))
			r.poke32(tdBase+12, bufBase)
			r.mem.Write(bufBase, []byte{0, usb.ReqSetConfiguration, 0, 0, 0, 0, 0, 0})
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, true)
			c.build(r)
			r.start()
			r.d.RunFrame()
			r.d.RunFrame()
			if r.d.Stats().StepLimit.Load() != 2 {
				t.Errorf("step limit hit %d times in 2 frames", r.d.Stats().StepLimit.Load())
			}
			if got := r.rd(RegStatus, 2); got&(StsHalted|StsHSErr|StsHCPErr) != 0 {
				t.Errorf("status %#x: a loop is not an error", got)
			}
		})
	}
}

func TestBadAddresses(t *testing.T) {
	cases := []struct {
		name  string
		build func(r *rig)
	}{
		{"frame list", func(r *rig) { r.wr(RegFLBase, 4, badAddr) }},
		{"queue head", func(r *rig) { r.poke32(flBase, badAddr|linkQH) }},
		{"td", func(r *rig) { r.poke32(qhAddr+4, badAddr) }},
		{"in buffer", func(r *rig) { r.poke32(tdBase+12, badAddr) }},
		{"buffer at the end of memory", func(r *rig) { r.poke32(tdBase+12, memSize-4) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, true)
			r.schedule([]td{{pid: usb.PIDSetup, addr: 0, maxLen: 8, data: make([]byte, 8)}})
			r.start()
			if c.name == "in buffer" || c.name == "buffer at the end of memory" {
				r.poke32(tdBase+8, token(td{pid: usb.PIDSetup, maxLen: 8}))
			}
			c.build(r)
			r.d.RunFrame()
			st := r.rd(RegStatus, 2)
			if st&StsHSErr == 0 || st&StsHalted == 0 || r.rd(RegCmd, 2)&CmdRS != 0 {
				t.Fatalf("status %#x cmd %#x: want a host system error and a halt", st, r.rd(RegCmd, 2))
			}
			if !r.irq.Level() {
				t.Fatal("HSERR raised no interrupt")
			}
			if r.d.Stats().DMAErrors.Load() == 0 {
				t.Fatal("no DMA error counted")
			}
		})
	}
}

func TestProcessErrors(t *testing.T) {
	for name, tok := range map[string]uint32{
		"bad pid":      0x12,
		"maxlen 0x501": 0x500<<21 | usb.PIDIn,
	} {
		t.Run(name, func(t *testing.T) {
			r := newRig(t, true)
			r.schedule([]td{{pid: usb.PIDIn, maxLen: 8}})
			r.poke32(tdBase+8, tok)
			r.start()
			r.d.RunFrame()
			if st := r.rd(RegStatus, 2); st&(StsHCPErr|StsHalted) != StsHCPErr|StsHalted {
				t.Fatalf("status %#x", st)
			}
			if !r.irq.Level() {
				t.Fatal("no interrupt")
			}
		})
	}
}

func TestNoBusMaster(t *testing.T) {
	r := newRig(t, true)
	addrs := r.schedule([]td{{pid: usb.PIDSetup, maxLen: 8, data: make([]byte, 8), ioc: true}})
	r.start()
	r.d.Function().Write(devices.Access{Offset: 4, Size: 2}, 1) // I/O only
	r.d.RunFrame()
	if c := r.peek32(addrs[0] + 4); c&tdActive == 0 || r.d.Stats().TDs.Load() != 0 {
		t.Fatalf("TD ran without bus mastering: ctrl %#x", c)
	}
	if got := r.rd(RegFrnum, 2); got != 1 {
		t.Fatalf("frnum %d", got)
	}
}

func TestNoDeviceTimesOut(t *testing.T) {
	r := newRig(t, false)
	r.wr(RegIntr, 2, intrTO)
	addrs := r.schedule([]td{{pid: usb.PIDIn, addr: 3, ep: 1, maxLen: 8}})
	r.start()
	r.d.RunFrame()
	c := r.peek32(addrs[0] + 4)
	if c&tdActive != 0 || c&tdCRC == 0 || c&tdErrCnt != 0 {
		t.Fatalf("ctrl %#x", c)
	}
	if st := r.rd(RegStatus, 2); st&StsUSBErr == 0 {
		t.Fatalf("status %#x", st)
	}
	if !r.irq.Level() {
		t.Fatal("no interrupt for USBERR")
	}
}

func TestFrameTimer(t *testing.T) {
	r := newRig(t, false)
	r.schedule(nil)
	r.start()
	for range 5 {
		r.clk.Advance(time.Millisecond)
	}
	if got := r.rd(RegFrnum, 2); got != 5 {
		t.Fatalf("frnum %d after 5 ms", got)
	}
	// A late tick catches up.
	r.clk.Advance(10 * time.Millisecond)
	if got := r.rd(RegFrnum, 2); got != 15 {
		t.Fatalf("frnum %d after 15 ms", got)
	}
	r.d.Pause()
	r.clk.Advance(10 * time.Millisecond)
	if got := r.rd(RegFrnum, 2); got != 15 {
		t.Fatalf("frames ran while paused: frnum %d", got)
	}
	r.d.Resume()
	r.clk.Advance(time.Millisecond)
	if got := r.rd(RegFrnum, 2); got != 16 {
		t.Fatalf("frnum %d after resume", got)
	}
	r.wr(RegCmd, 2, 0)
	r.clk.Advance(5 * time.Millisecond)
	if got := r.rd(RegFrnum, 2); got != 16 {
		t.Fatalf("frames ran after stop: frnum %d", got)
	}
	if r.d.Stats().Frames.Load() != 16 {
		t.Fatalf("%d frames", r.d.Stats().Frames.Load())
	}
}

func TestSnapshotRestore(t *testing.T) {
	r := newRig(t, true)
	r.start()
	r.wr(RegIntr, 2, 0xf)
	r.wr(RegSOF, 1, 0x41)
	r.d.RunFrame()
	snap, err := r.d.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r2 := newRig(t, true)
	if err := r2.d.Restore(snap); err != nil {
		t.Fatal(err)
	}
	for off := uint64(0); off < RegSize; off += 2 {
		if a, b := r.rd(off, 2), r2.rd(off, 2); a != b {
			t.Errorf("reg %#x: %#x vs %#x", off, a, b)
		}
	}
	// Truncated and corrupted records are refused and change nothing.
	before := r2.rd(RegSOF, 1)
	for i := 0; i < len(snap); i += 7 {
		_ = r2.d.Restore(snap[:i])
	}
	bad := bytes.Clone(snap)
	bad[len(bad)-10] = 0xff // frnum or later fields out of range
	_ = r2.d.Restore(bad)
	if got := r2.rd(RegSOF, 1); got != before {
		t.Errorf("SOF %#x after bad restores", got)
	}
	if err := r2.d.Restore(savestate.Record("other", 1, nil)); err == nil {
		t.Error("another device's record taken")
	}
}

// TestNoAllocs: register accesses (the ioreq path) and a frame whose
// interrupt TD NAKs (what a guest's idle tablet costs every millisecond)
// allocate nothing.
func TestNoAllocs(t *testing.T) {
	r := newRig(t, true)
	r.start()
	if _, err := r.control(0, usb.Setup{RequestType: 0, Request: usb.ReqSetAddress, Value: 2}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := r.control(2, usb.Setup{RequestType: 0, Request: usb.ReqSetConfiguration, Value: 1}, 0); err != nil {
		t.Fatal(err)
	}
	r.schedule([]td{{pid: usb.PIDIn, addr: 2, ep: 1, maxLen: 8, ioc: true}})
	rg := regs{r.d}
	if n := testing.AllocsPerRun(100, func() {
		rg.Read(devices.Access{Offset: RegPortSC1, Size: 2})
		rg.Read(devices.Access{Offset: 0x01, Size: 4})
		rg.Write(devices.Access{Offset: RegIntr, Size: 2}, 0xf)
		rg.Write(devices.Access{Offset: RegStatus, Size: 2}, 0)
	}); n != 0 {
		t.Errorf("register accesses: %v allocations", n)
	}
	if n := testing.AllocsPerRun(100, r.d.RunFrame); n != 0 {
		t.Errorf("a NAKing frame: %v allocations", n)
	}
	if c := r.peek32(tdBase + 4); c&tdNAK == 0 {
		t.Fatalf("the interrupt TD did not NAK: %#x", c)
	}
}

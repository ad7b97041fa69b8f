package uhci

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"godm/devices"
	"godm/devices/usb"
	"godm/internal/qtest"
	"godm/memory"
)

// The schedule differential: the same frame list, queue head and TDs in
// QEMU's guest RAM and in godm's; QEMU runs (its frame timer on the
// virtual clock: qtest's clock_step needs the qtest accelerator, and the
// harness's QEMU runs TCG) and is given 60 ms per step, godm runs five
// frames; then the TDs' control/status words, the queue's element
// pointer, USBSTS and USBCMD are compared: a step's outcome, not its
// timing. The requests are ones both tablets answer alike (their
// descriptors have the same lengths; the bytes are each side's own).

type schedSide interface {
	rawOut(port uint16, size uint8, v uint64)
	out(off uint16, size uint8, v uint64)
	in(off uint16, size uint8) uint64
	w32(addr, v uint32)
	r32(addr uint32) uint32
	settle()
}

type qemuSide struct {
	t *testing.T
	c *qtest.Client
}

func (q qemuSide) rawOut(port uint16, size uint8, v uint64) {
	if _, err := q.c.Out(port, size, v); err != nil {
		q.t.Fatal(err)
	}
}

func (q qemuSide) out(off uint16, size uint8, v uint64) { q.rawOut(diffIO+off, size, v) }

func (q qemuSide) in(off uint16, size uint8) uint64 {
	v, _, err := q.c.In(diffIO+off, size)
	if err != nil {
		q.t.Fatal(err)
	}
	return v
}

func (q qemuSide) w32(addr, v uint32) {
	if _, err := q.c.WriteMem(uint64(addr), 4, uint64(v)); err != nil {
		q.t.Fatal(err)
	}
}

func (q qemuSide) r32(addr uint32) uint32 {
	v, _, err := q.c.ReadMem(uint64(addr), 4)
	if err != nil {
		q.t.Fatal(err)
	}
	return uint32(v)
}

// settle lets QEMU's real-time frame timer run at least 8 frames (a
// step needs at most 3), or until the controller is halted; a loaded
// host may leave QEMU unscheduled for longer than any fixed sleep.
func (q qemuSide) settle() {
	start := q.in(RegFrnum, 2)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
		if q.in(RegStatus, 2)&StsHalted != 0 || (q.in(RegFrnum, 2)-start)&0x7ff >= 8 {
			return
		}
	}
	q.t.Fatal("QEMU's UHCI ran fewer than 8 frames in 10 s")
}

type godmSide struct {
	t   *testing.T
	pio *devices.Space
	mem *memory.Flat
	d   *Controller
}

func (g godmSide) rawOut(port uint16, size uint8, v uint64) { g.pio.Write(uint64(port), size, 0, v) }
func (g godmSide) out(off uint16, size uint8, v uint64)     { g.rawOut(diffIO+off, size, v) }
func (g godmSide) in(off uint16, size uint8) uint64         { return g.pio.Read(uint64(diffIO+off), size, 0) }
func (g godmSide) w32(addr, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	if err := g.mem.Write(memory.GPA(addr), b[:]); err != nil {
		g.t.Fatal(err)
	}
}
func (g godmSide) r32(addr uint32) uint32 {
	var b [4]byte
	if err := g.mem.Read(memory.GPA(addr), b[:]); err != nil {
		g.t.Fatal(err)
	}
	return binary.LittleEndian.Uint32(b[:])
}
func (g godmSide) settle() {
	for range 5 {
		g.d.RunFrame()
	}
}

const (
	sdFL  = 0x100000
	sdQH  = 0x101000
	sdTD  = 0x101100
	sdBuf = 0x102000
)

type sdTDSpec struct {
	pid, addr, ep uint8
	maxLen        int // 0: null packet
	setup         []byte
	ioc           bool
}

func sdSetup(rt, req uint8, val, idx, n uint16) []byte {
	b := []byte{rt, req, 0, 0, 0, 0, 0, 0}
	binary.LittleEndian.PutUint16(b[2:], val)
	binary.LittleEndian.PutUint16(b[4:], idx)
	binary.LittleEndian.PutUint16(b[6:], n)
	return b
}

// load writes tds as one depth-first queue behind the QH.
func load(s schedSide, tds []sdTDSpec) {
	s.w32(sdQH+4, linkTerm)
	for i, x := range tds {
		a := uint32(sdTD + i*32)
		link := uint32(linkTerm)
		if i+1 < len(tds) {
			link = (a + 32) | linkDepth
		}
		ml := uint32(0x7ff)
		if x.maxLen > 0 {
			ml = uint32(x.maxLen - 1)
		}
		buf := uint32(sdBuf + i*0x40)
		for j := 0; j+4 <= len(x.setup); j += 4 {
			s.w32(buf+uint32(j), binary.LittleEndian.Uint32(x.setup[j:]))
		}
		ctrl := uint32(tdActive | 3<<27)
		if x.ioc {
			ctrl |= tdIOC
		}
		s.w32(a, link)
		s.w32(a+4, ctrl)
		s.w32(a+8, ml<<21|uint32(x.ep)<<15|uint32(x.addr)<<8|uint32(x.pid))
		s.w32(a+12, buf)
	}
	s.w32(sdQH+4, sdTD)
}

// observe is what the comparison looks at after a step.
func observe(s schedSide, n int) []uint32 {
	var o []uint32
	for i := range n {
		o = append(o, s.r32(uint32(sdTD+i*32+4)))
	}
	o = append(o, s.r32(sdQH+4), uint32(s.in(RegStatus, 2)), uint32(s.in(RegCmd, 2)))
	return o
}

func TestQEMUDiffSchedule(t *testing.T) {
	r := newDiffRig(t, true)
	sides := []schedSide{qemuSide{t: t, c: r.c}, godmSide{t: t, pio: r.sp.PIO, mem: r.mem, d: r.d}}
	for _, s := range sides {
		// BAR4, I/O and bus mastering, then the schedule's frame list.
		cfg := func(reg, size uint32, v uint64) {
			s.rawOut(0xcf8, 4, uint64(0x80000000|diffDevfn<<8|reg))
			s.rawOut(0xcfc, uint8(size), v)
		}
		cfg(0x20, 4, diffIO)
		cfg(0x04, 2, 5)
		for i := range uint32(1024) {
			s.w32(sdFL+4*i, sdQH|linkQH)
		}
		s.w32(sdQH, linkTerm)
		s.w32(sdQH+4, linkTerm)
		s.out(RegPortSC1, 2, PortCSC|PortEN)
		s.out(RegFLBase, 4, sdFL)
		s.out(RegIntr, 2, 0xf)
		s.out(RegCmd, 2, CmdRS)
	}
	steps := []struct {
		name   string
		tds    []sdTDSpec
		frames int
		reset  bool // clear USBSTS first
	}{
		{"GET_DESCRIPTOR device", []sdTDSpec{
			{pid: usb.PIDSetup, maxLen: 8, setup: sdSetup(0x80, usb.ReqGetDescriptor, usb.DescDevice<<8, 0, 18)},
			{pid: usb.PIDIn, maxLen: 8}, {pid: usb.PIDIn, maxLen: 8}, {pid: usb.PIDIn, maxLen: 8},
			{pid: usb.PIDOut, ioc: true}}, 2, false},
		{"SET_ADDRESS 3", []sdTDSpec{
			{pid: usb.PIDSetup, maxLen: 8, setup: sdSetup(0, usb.ReqSetAddress, 3, 0, 0)},
			{pid: usb.PIDIn, ioc: true}}, 2, true},
		{"address 0 is gone", []sdTDSpec{
			{pid: usb.PIDSetup, maxLen: 8, setup: sdSetup(0x80, usb.ReqGetDescriptor, usb.DescDevice<<8, 0, 8)}}, 1, true},
		{"GET_DESCRIPTOR config, 9 then all", []sdTDSpec{
			{pid: usb.PIDSetup, addr: 3, maxLen: 8, setup: sdSetup(0x80, usb.ReqGetDescriptor, usb.DescConfig<<8, 0, 40)},
			{pid: usb.PIDIn, addr: 3, maxLen: 8}, {pid: usb.PIDIn, addr: 3, maxLen: 8}, {pid: usb.PIDIn, addr: 3, maxLen: 8},
			{pid: usb.PIDIn, addr: 3, maxLen: 8}, {pid: usb.PIDIn, addr: 3, maxLen: 8},
			{pid: usb.PIDOut, addr: 3, ioc: true}}, 3, true},
		{"SET_CONFIGURATION 1", []sdTDSpec{
			{pid: usb.PIDSetup, addr: 3, maxLen: 8, setup: sdSetup(0, usb.ReqSetConfiguration, 1, 0, 0)},
			{pid: usb.PIDIn, addr: 3, ioc: true}}, 2, true},
		{"interrupt IN: NAK", []sdTDSpec{{pid: usb.PIDIn, addr: 3, ep: 1, maxLen: 8, ioc: true}}, 3, true},
		{"null OUT to endpoint 1", []sdTDSpec{{pid: usb.PIDOut, addr: 3, ep: 1, ioc: true}}, 1, true},
		{"nobody at address 9", []sdTDSpec{{pid: usb.PIDIn, addr: 9, ep: 1, maxLen: 8, ioc: true}}, 1, true},
		{"bad PID halts", []sdTDSpec{{pid: 0x55, addr: 3, maxLen: 8}}, 2, true},
	}
	for _, st := range steps {
		var obs [2][]uint32
		for i, s := range sides {
			// Stop the controller before touching the schedule: QEMU's
			// frame timer runs in real time, and a frame between the
			// status clear and the new TDs could still retry the last
			// step's TD (a time-out keeps it active while its error
			// count lasts) and raise USBINT after the clear. Stopped,
			// nothing runs until RS is set again.
			s.out(RegCmd, 2, s.in(RegCmd, 2)&^CmdRS)
			s.settle()
			if st.reset {
				s.out(RegStatus, 2, 0xffff)
			}
			load(s, st.tds)
			s.out(RegCmd, 2, s.in(RegCmd, 2)|CmdRS)
			s.settle()
			obs[i] = observe(s, len(st.tds))
		}
		if fmt.Sprintf("%#x", obs[0]) != fmt.Sprintf("%#x", obs[1]) {
			t.Errorf("%s: TD ctrl..., QH element, USBSTS, USBCMD:\n godm %#x\n QEMU %#x", st.name, obs[1], obs[0])
		}
	}
}

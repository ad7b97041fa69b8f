package uhci

import (
	"errors"
	"math/rand/v2"
	"os/exec"
	"testing"

	"godm/devices"
	"godm/devices/usb/hid"
	"godm/internal/qtest"
	"godm/internal/qtest/scripts"
	"godm/internal/testfake"
	"godm/memory"
	"godm/pci"
)

// The differential test: QEMU 7.2's piix3-usb-uhci with a usb-tablet on
// its first port (qtest, "pc" machine, stopped: no frame runs on either
// side) and godm's controller with a tablet, both at 00:05.0, driven by
// the same port script: the configuration space at reset and after
// all-ones writes, then the I/O registers through BAR4.

const (
	diffDevfn = 5 << 3
	diffIO    = 0xc000
)

// diffRig is both sides of the differential: QEMU's qtest client and
// godm's controller with its port space and memory.
type diffRig struct {
	c   *qtest.Client
	sp  *devices.Bus
	d   *Controller
	mem *memory.Flat
}

// running starts QEMU's machine running (its frame timer runs).
func newDiffRig(t *testing.T, running bool) *diffRig {
	t.Helper()
	if _, err := qtest.Find(qtest.Options{}); errors.Is(err, exec.ErrNotFound) {
		t.Skipf("qemu-system-x86_64 not installed (scripts/test.sh installs qemu-system-x86): %v", err)
	}
	c, err := qtest.Start(qtest.Options{Running: running, Args: []string{
		"-device", "piix3-usb-uhci,id=u,addr=05.0",
		"-device", "usb-tablet,bus=u.0,port=1",
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })

	r := &diffRig{c: c, sp: devices.NewBus(), mem: memory.NewFlat(0, 4<<20)}
	d, err := New(Config{Memory: r.mem, Clock: &testfake.Clock{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	r.d = d
	bus, err := pci.NewBus(pci.BusConfig{Spaces: r.sp, INTx: testfake.AllPins{Line: &testfake.Recorder{}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Add(d.Function(), diffDevfn>>3, 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Attach(0, hid.New(nil)); err != nil {
		t.Fatal(err)
	}
	if err := r.sp.PIO.Register(0xcf8, 8, &qtest.ConfigPorts{Config: r.sp.PCI}); err != nil {
		t.Fatal(err)
	}
	return r
}

func uhciDiffTargets(t *testing.T) (want, got qtest.Target) {
	t.Helper()
	r := newDiffRig(t, false)
	return &qtest.QEMUTarget{C: r.c}, qtest.NewSpaceTarget(r.sp.PIO)
}

// enableBAR4 places the I/O BAR and turns on I/O decoding.
func enableBAR4() []qtest.Step {
	return scripts.Cat(
		scripts.ConfigWrite(diffDevfn, 0x20, diffIO),
		scripts.ConfigWriteN(diffDevfn, 0x04, 2, 1),
	)
}

// crossing documents the one deviation: an access that runs past the
// BAR's end reaches no device in godm's port space (devices.Space looks
// up whole accesses: all-ones, writes dropped), where QEMU's memory core
// serves the pieces inside the BAR.
const crossing = "an access crossing the BAR's end: godm's port space gives it to no device"

func rd(off uint16, size uint8) qtest.Step {
	s := qtest.Step{Port: diffIO + off, Size: size}
	if off+uint16(size) > RegSize {
		s.Ignore, s.Why = 1<<(8*uint(size))-1, crossing
	}
	return s
}

func wr(off uint16, size uint8, v uint64) qtest.Step {
	return qtest.Step{Write: true, Port: diffIO + off, Size: size, Value: v}
}

// readAll reads every register at every width and alignment.
func readAll() []qtest.Step {
	var s []qtest.Step
	for off := uint16(0); off < RegSize; off++ {
		s = append(s, rd(off, 1), rd(off, 2), rd(off, 4))
	}
	return s
}

func TestQEMUDiffConfig(t *testing.T) {
	want, got := uhciDiffTargets(t)
	qtest.Diff(t, scripts.PCIConfig(diffDevfn), want, got)
}

func TestQEMUDiffRegisters(t *testing.T) {
	want, got := uhciDiffTargets(t)
	s := scripts.Cat(enableBAR4(), readAll())
	for _, w := range []qtest.Step{
		wr(RegIntr, 2, 0xffff), wr(RegIntr, 2, 0x000f), wr(RegSOF, 1, 0x55), wr(RegSOF, 2, 0x1234),
		wr(RegFLBase, 4, 0xfffff123), wr(RegFLBase, 2, 0xa5a5), wr(RegFLBase+2, 2, 0x0012),
		wr(RegFrnum, 2, 0xffff), wr(RegFrnum, 1, 0x3c),
		wr(RegPortSC1, 2, 0xffff), wr(RegPortSC1, 2, PortEN), wr(RegPortSC1, 2, PortCSC|PortENC),
		wr(RegPortSC1, 2, PortReset|PortEN), wr(RegPortSC1, 2, PortEN), wr(RegPortSC1, 2, PortSuspend|PortEN),
		wr(RegPortSC2, 2, 0xffff), wr(RegPortSC2, 2, 0), wr(0x11, 1, 0xff), wr(0x13, 1, 0x04),
		wr(RegStatus, 2, 0xffff),
		wr(RegCmd, 2, CmdEGSM), wr(RegPortSC1, 2, PortRD|PortEN), wr(RegCmd, 2, CmdEGSM),
		wr(RegStatus, 2, StsRD),
		wr(RegCmd, 2, 0x00c0), wr(RegCmd, 2, CmdRS), wr(RegFrnum, 2, 0x123), wr(RegCmd, 2, 0),
		wr(RegCmd, 1, CmdHCReset),
		wr(RegPortSC1, 2, PortEN|PortCSC), wr(RegIntr, 4, 0x000e000f), wr(RegCmd, 4, 0xffff0000),
		wr(RegCmd, 2, CmdGReset),
		wr(0x01, 1, 0xff), wr(0x03, 2, 0xffff), wr(0x05, 4, 0xffffffff), wr(0x1f, 1, 0xff),
	} {
		s = append(s, w)
		for off := uint16(0); off < RegSize; off += 2 {
			s = append(s, rd(off, 2))
		}
	}
	qtest.Diff(t, scripts.Cat(s, readAll()), want, got)
}

// TestQEMUDiffRegistersRandom: random accesses of every width and
// offset (RS left alone: the clocks of the two sides are not the same).
func TestQEMUDiffRegistersRandom(t *testing.T) {
	want, got := uhciDiffTargets(t)
	r := rand.New(rand.NewPCG(7, 0x7020))
	s := enableBAR4()
	for range 3000 {
		off := uint16(r.IntN(RegSize))
		size := []uint8{1, 2, 4}[r.IntN(3)]
		if off+uint16(size) > RegSize {
			off = RegSize - uint16(size) // see crossing
		}
		if r.IntN(2) == 0 {
			s = append(s, rd(off, size))
			continue
		}
		v := r.Uint64() & (1<<(8*uint(size)) - 1)
		if off&^1 == RegCmd || size == 4 && off&^3 == RegCmd {
			v &^= CmdRS | CmdRS<<16 | CmdRS<<8
		}
		s = append(s, wr(off, size, v))
	}
	qtest.Diff(t, scripts.Cat(s, readAll()), want, got)
}

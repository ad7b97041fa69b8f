package uhci

import (
	"encoding/binary"
	"testing"

	"godm/devices"
	"godm/devices/usb"
	"godm/devices/usb/hid"
	"godm/internal/testfake"
	"godm/memory"
	"godm/pci"
)

// fuzzMem is the guest memory a fuzz input fills (the frame list at 0).
const fuzzMem = 64 << 10

// fuzzSeed is a well-formed schedule: every frame's QH holds a control
// transfer (GET_DESCRIPTOR device) to address 0 and an interrupt IN TD.
func fuzzSeed() []byte {
	m := make([]byte, fuzzMem)
	put := func(a int, v uint32) { binary.LittleEndian.PutUint32(m[a:], v) }
	for i := range 1024 {
		put(i*4, 0x1000|linkQH)
	}
	put(0x1000, 0x1010|linkQH)
	put(0x1004, 0x1100)
	put(0x1010, linkTerm)
	put(0x1014, 0x1200)
	tds := []struct {
		addr, link, tok, buf uint32
	}{
		{0x1100, 0x1120 | linkDepth, 7<<21 | usb.PIDSetup, 0x2000},
		{0x1120, 0x1140 | linkDepth, 7<<21 | usb.PIDIn, 0x2100},
		{0x1140, 0x1160 | linkDepth, 7<<21 | usb.PIDIn, 0x2200},
		{0x1160, linkTerm, 0x7ff<<21 | usb.PIDOut, 0x2300},
		{0x1200, linkTerm, 7<<21 | 1<<15 | usb.PIDIn, 0x2400},
	}
	for _, td := range tds {
		put(int(td.addr), td.link)
		put(int(td.addr)+4, tdActive|tdIOC|tdSPD|3<<27)
		put(int(td.addr)+8, td.tok)
		put(int(td.addr)+12, td.buf)
	}
	copy(m[0x2000:], []byte{0x80, usb.ReqGetDescriptor, 0, usb.DescDevice, 0, 0, 18, 0})
	return m[:0x2500]
}

// FuzzSchedule runs frames over a guest memory the input fills (the
// head of the input also writes a few registers): whatever the schedule,
// every frame ends within its step bound, errors halt the controller,
// and nothing panics.
func FuzzSchedule(f *testing.F) {
	f.Add(fuzzSeed())
	f.Add([]byte{})
	loop := make([]byte, 8)
	binary.LittleEndian.PutUint32(loop, 0|linkQH) // QH at 0 linking to itself
	f.Add(loop)
	f.Fuzz(func(t *testing.T, in []byte) {
		mem := memory.NewFlat(0, fuzzMem)
		copy(mem.Mem, in)
		d, err := New(Config{Memory: mem, Clock: &testfake.Clock{}})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		bus, err := pci.NewBus(pci.BusConfig{Spaces: devices.NewBus(), INTx: testfake.AllPins{Line: &testfake.Recorder{}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bus.Add(d.Function(), Slot, Function); err != nil {
			t.Fatal(err)
		}
		tab := hid.New(&testfake.Clock{})
		if err := d.Attach(0, tab); err != nil {
			t.Fatal(err)
		}
		d.Function().Write(devices.Access{Offset: 4, Size: 2}, 5)
		r := regs{d}
		r.Write(devices.Access{Offset: RegPortSC1, Size: 2}, PortEN)
		r.Write(devices.Access{Offset: RegIntr, Size: 2}, 0xf)
		r.Write(devices.Access{Offset: RegCmd, Size: 2}, CmdRS)
		// Input bytes past the frame list (the first 4 KiB) also drive
		// register writes between frames.
		ops := in
		if len(ops) > 4096 {
			ops = ops[4096:]
		} else {
			ops = nil
		}
		for frame := range 8 {
			before := d.Stats().TDs.Load()
			d.RunFrame()
			if n := d.Stats().TDs.Load() - before; n > MaxFrameSteps {
				t.Fatalf("frame %d ran %d TDs", frame, n)
			}
			st := r.Read(devices.Access{Offset: RegStatus, Size: 2})
			cmd := r.Read(devices.Access{Offset: RegCmd, Size: 2})
			if st&(StsHSErr|StsHCPErr) != 0 && cmd&CmdRS != 0 {
				t.Fatalf("error status %#x but still running (cmd %#x)", st, cmd)
			}
			if len(ops) >= 4 && ops[0]&0x80 != 0 {
				off := uint64(ops[1] & (RegSize - 1))
				if off != RegFLBase && off != RegFLBase+2 { // keep the schedule in the fuzzed memory
					r.Write(devices.Access{Offset: off, Size: 2}, uint64(binary.LittleEndian.Uint16(ops[2:])))
				}
				ops = ops[4:]
			}
			tab.PointerEvent(frame, frame, 8, 8, uint8(frame))
		}
		if _, err := d.Snapshot(); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzRestore loads arbitrary records into a controller and a tablet:
// refused or taken, never a panic; what a taken record saves restores
// and saves again to the same bytes.
func FuzzRestore(f *testing.F) {
	mem := memory.NewFlat(0, fuzzMem)
	d, err := New(Config{Memory: mem, Clock: &testfake.Clock{}})
	if err != nil {
		f.Fatal(err)
	}
	tab := hid.New(&testfake.Clock{})
	if err := d.Attach(0, tab); err != nil {
		f.Fatal(err)
	}
	tab.PointerEvent(1, 2, 3, 4, 1)
	for _, s := range []interface{ Snapshot() ([]byte, error) }{d, tab} {
		rec, err := s.Snapshot()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(rec)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		type rec interface {
			Snapshot() ([]byte, error)
			Restore([]byte) error
		}
		for _, s := range []rec{d, tab} {
			if s.Restore(in) != nil {
				continue
			}
			a, err := s.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Restore(a); err != nil {
				t.Fatalf("own record refused: %v", err)
			}
			if b, _ := s.Snapshot(); string(a) != string(b) {
				t.Fatalf("record not stable:\n% x\n% x", a, b)
			}
		}
		d.RunFrame()
	})
}

package pci

import (
	"errors"
	"slices"
	"testing"

	"godm/devices"
)

var testHeader = Header{
	VendorID: 0x1b36, DeviceID: 0x0002, Revision: 1, Class: 0x070002,
	SubsystemVendorID: 0x1af4, SubsystemID: 0x1100, InterruptPin: 1,
}

func TestHeader_ReadOnly(t *testing.T) {
	r := newRig(t)
	d := mustNew(t, testHeader)
	sbdf, err := r.bus.Add(d, 3, 0)
	must(t, err)
	for _, tc := range []struct {
		name string
		reg  uint32
		size uint8
		want uint64
	}{
		{"vendor", RegVendorID, 2, 0x1b36},
		{"device", RegDeviceID, 2, 0x0002},
		{"id dword", RegVendorID, 4, 0x00021b36},
		{"revision+class", RegRevision, 4, 0x07000201},
		{"header type", RegHeaderType, 1, 0},
		{"subsystem", RegSubsystemVID, 4, 0x11001af4},
		{"pin", RegInterruptPin, 1, 1},
		{"no caps", RegStatus, 2, 0},
		{"unimplemented bar", RegBAR0 + 4, 4, 0},
		{"device-specific undeclared", 0x40, 4, 0},
		{"beyond 256", 0x100, 4, 0xffffffff},
		{"straddles end", 0xfe, 4, 0xffff0000},
		{"8-byte", 0x28, 8, 0x11001af4_00000000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := r.cfgRead(sbdf, tc.reg, tc.size)
			r.cfgWrite(sbdf, tc.reg, tc.size, ^uint64(0))
			if got := r.cfgRead(sbdf, tc.reg, tc.size); got != tc.want || before != tc.want {
				t.Errorf("read %#x/%d = %#x before write, %#x after, want %#x", tc.reg, tc.size, before, got, tc.want)
			}
		})
	}
}

func TestHeader_WritableAndW1C(t *testing.T) {
	r := newRig(t)
	d := mustNew(t, testHeader)
	sbdf, err := r.bus.Add(d, 3, 0)
	must(t, err)
	r.cfgWrite(sbdf, RegCommand, 2, 0xffff)
	if got, want := r.cfgRead(sbdf, RegCommand, 2), uint64(commandWritable); got != want {
		t.Errorf("command after all-ones = %#x, want %#x", got, want)
	}
	r.cfgWrite(sbdf, RegInterruptLine, 1, 0x0b)
	if got := r.cfgRead(sbdf, RegInterruptLine, 1); got != 0x0b {
		t.Errorf("interrupt line = %#x, want 0xb", got)
	}
	// Status error bits are RW1C: the device sets them, the guest clears.
	d.SetConfig(RegStatus, 2, 0xf900)
	r.cfgWrite(sbdf, RegStatus, 2, 0x2000) // clear "received master abort"
	if got, want := r.cfgRead(sbdf, RegStatus, 2), uint64(0xd900); got != want {
		t.Errorf("status after W1C = %#x, want %#x", got, want)
	}
	r.cfgWrite(sbdf, RegStatus, 2, 0)
	if got, want := r.cfgRead(sbdf, RegStatus, 2), uint64(0xd900); got != want {
		t.Errorf("status after writing 0 = %#x, want %#x", got, want)
	}
}

func TestExtendedSpace(t *testing.T) {
	r := newRig(t)
	h := testHeader
	h.Extended = true
	d := mustNew(t, h)
	sbdf, err := r.bus.Add(d, 4, 0)
	must(t, err)
	if got := r.cfgRead(sbdf, 0x100, 4); got != 0 {
		t.Errorf("extended header = %#x, want 0 (no extended capabilities)", got)
	}
	if got := r.cfgRead(sbdf, 0xffc, 4); got != 0 {
		t.Errorf("last dword = %#x, want 0", got)
	}
	if got, want := d.ConfigSize(), ExtendedConfigSize; got != want {
		t.Errorf("ConfigSize = %d, want %d", got, want)
	}
}

func TestNew_Invalid(t *testing.T) {
	for _, h := range []Header{{InterruptPin: 5}, {Class: 0x1000000}} {
		if _, err := New(h); !errors.Is(err, ErrInvalid) {
			t.Errorf("New(%+v) error = %v, want ErrInvalid", h, err)
		}
	}
}

func TestDefineRegister(t *testing.T) {
	r := newRig(t)
	d := mustNew(t, testHeader)
	must(t, d.DefineRegister(0x40, 4, 0x11223344, 0x0000ff00, 0x00ff0000))
	for _, tc := range []struct {
		off  uint32
		size uint8
	}{{0x3c, 4}, {0x42, 2}, {0xff, 2}, {0x50, 3}} {
		if err := d.DefineRegister(tc.off, tc.size, 0, 0, 0); err == nil {
			t.Errorf("DefineRegister(%#x, %d) succeeded, want error", tc.off, tc.size)
		}
	}
	sbdf, err := r.bus.Add(d, 5, 0)
	must(t, err)
	r.cfgWrite(sbdf, 0x40, 4, 0xffffffff)
	if got, want := r.cfgRead(sbdf, 0x40, 4), uint64(0x1100ff44); got != want {
		t.Errorf("register after all-ones = %#x, want %#x", got, want)
	}
	if err := d.DefineRegister(0x50, 1, 0, 0, 0); !errors.Is(err, ErrBusy) {
		t.Errorf("DefineRegister on bus: %v, want ErrBusy", err)
	}
}

func TestCapabilityList(t *testing.T) {
	d := mustNew(t, testHeader)
	must(t, d.DefineRegister(0x40, 4, 0, 0, 0))
	off1, err := d.AddCapability(CapVendor, []byte{4, 0xaa}, []byte{0, 0xff}, nil)
	must(t, err)
	off2, err := d.AddMSI(MSIConfig{Vectors: 1})
	must(t, err)
	off3, err := d.AddCapability(CapPowerManagement, make([]byte, 6), nil, nil)
	must(t, err)
	if off1 != 0x44 || off2 != 0x48 || off3 != 0x54 {
		t.Errorf("offsets = %#x %#x %#x, want 0x44 0x48 0x54", off1, off2, off3)
	}
	ids, offs := d.Capabilities()
	if want := []uint8{CapVendor, CapMSI, CapPowerManagement}; !slices.Equal(ids, want) {
		t.Errorf("ids = %v, want %v", ids, want)
	}
	if want := []uint8{off1, off2, off3}; !slices.Equal(offs, want) {
		t.Errorf("offsets = %v, want %v", offs, want)
	}
	if got := d.ConfigRead(RegStatus, 2); got&statusCapList == 0 {
		t.Errorf("status = %#x, want capability list bit", got)
	}
	if _, err := d.AddCapability(CapVendor, make([]byte, 250), nil, nil); !errors.Is(err, ErrNoSpace) {
		t.Errorf("oversized capability: %v, want ErrNoSpace", err)
	}
	if _, err := d.AddCapability(CapVendor, []byte{1}, []byte{1, 2}, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("mismatched mask: %v, want ErrInvalid", err)
	}
	// The header of a capability is read-only; the body honours wmask.
	d.Write(devices.Access{Offset: uint64(off1), Size: 4}, 0xffffffff)
	if got, want := d.ConfigRead(uint32(off1), 4), uint32(0xff040000|uint32(off2)<<8|CapVendor); got != want {
		t.Errorf("vendor capability after all-ones = %#x, want %#x", got, want)
	}
}

func TestReverseCapabilities(t *testing.T) {
	d := mustNew(t, testHeader)
	off1, err := d.AddCapability(CapVendor, []byte{4, 0xaa}, nil, nil)
	must(t, err)
	off2, err := d.AddMSI(MSIConfig{Vectors: 1})
	must(t, err)
	off3, err := d.AddCapability(CapPowerManagement, make([]byte, 6), nil, nil)
	must(t, err)
	must(t, d.ReverseCapabilities())
	ids, offs := d.Capabilities()
	if want := []uint8{CapPowerManagement, CapMSI, CapVendor}; !slices.Equal(ids, want) {
		t.Errorf("ids = %v, want %v", ids, want)
	}
	if want := []uint8{off3, off2, off1}; !slices.Equal(offs, want) {
		t.Errorf("offsets = %v, want %v", offs, want)
	}
	// A capability added afterwards goes to the end of the new order.
	off4, err := d.AddCapability(CapVendor, []byte{4, 0}, nil, nil)
	must(t, err)
	if _, offs := d.Capabilities(); !slices.Equal(offs, []uint8{off3, off2, off1, off4}) {
		t.Errorf("offsets after another capability = %v", offs)
	}
}

func TestINTx_LevelTracking(t *testing.T) {
	r := newRig(t)
	d := mustNew(t, testHeader)
	sbdf, err := r.bus.Add(d, 6, 0)
	must(t, err)
	line := d.INTx()
	line.SetLevel(true)
	line.SetLevel(true) // no change: not forwarded
	if got := r.cfgRead(sbdf, RegStatus, 2); got&statusINTx == 0 {
		t.Errorf("status = %#x, want interrupt status", got)
	}
	r.cfgWrite(sbdf, RegCommand, 2, CommandINTxDisable) // masks the pin
	line.SetLevel(false)
	line.SetLevel(true)
	r.cfgWrite(sbdf, RegCommand, 2, 0) // unmask: asserted again
	line.SetLevel(false)
	key := [3]uint8{6, 0, 1}
	if got, want := r.levels(key[0], key[1], key[2]), []bool{true, false, true, false}; !slices.Equal(got, want) {
		t.Errorf("levels = %v, want %v", got, want)
	}
	line.SetLevel(true)
	must(t, r.bus.Remove(d)) // removal deasserts
	if got, want := r.levels(key[0], key[1], key[2]), []bool{true, false, true, false, true, false}; !slices.Equal(got, want) {
		t.Errorf("levels after remove = %v, want %v", got, want)
	}
}

func TestBus_Placement(t *testing.T) {
	r := newRig(t)
	a, b, c := mustNew(t, testHeader), mustNew(t, testHeader), mustNew(t, testHeader)
	if _, err := r.bus.Add(a, 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := r.bus.Add(b, 0, 0); !errors.Is(err, ErrSlotInUse) {
		t.Errorf("second add at 00.0: %v, want ErrSlotInUse", err)
	}
	if _, err := r.bus.Add(a, 1, 0); !errors.Is(err, ErrBusy) {
		t.Errorf("re-add: %v, want ErrBusy", err)
	}
	if _, err := r.bus.Add(b, 32, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("slot 32: %v, want ErrInvalid", err)
	}
	sb, err := r.bus.AddAuto(b)
	must(t, err)
	if got, want := sb, devices.NewSBDF(0, 0, 1, 0); got != want {
		t.Errorf("AddAuto = %v, want %v", got, want)
	}
	// A second function makes function 0 multi-function.
	if _, err := r.bus.Add(c, 1, 3); err != nil {
		t.Fatal(err)
	}
	if got := b.ConfigRead(RegHeaderType, 1); got != headerMultiFunction {
		t.Errorf("fn0 header type = %#x, want multi-function", got)
	}
	if got := r.spaces.PCI.Functions(); len(got) != 3 {
		t.Errorf("registered functions = %v, want 3", got)
	}
	if r.bus.Lookup(1, 3) != c || r.bus.Lookup(2, 0) != nil || r.bus.Lookup(40, 0) != nil {
		t.Errorf("Lookup mismatch")
	}
	must(t, r.bus.Remove(c))
	if err := r.bus.Remove(c); !errors.Is(err, ErrNotOnBus) {
		t.Errorf("second remove: %v, want ErrNotOnBus", err)
	}
	if got := r.cfgRead(devices.NewSBDF(0, 0, 1, 3), 0, 4); got != 0xffffffff {
		t.Errorf("removed function reads %#x, want all-ones", got)
	}
	// Automatic function numbers.
	f1, f2 := mustNew(t, testHeader), mustNew(t, testHeader)
	if got, err := r.bus.AddFunction(f1, 1); err != nil || got != devices.NewSBDF(0, 0, 1, 1) {
		t.Errorf("AddFunction = %v, %v; want 00:01.1", got, err)
	}
	if got, err := r.bus.AddFunction(f2, 9); err != nil || got != devices.NewSBDF(0, 0, 9, 0) {
		t.Errorf("AddFunction in an empty slot = %v, %v; want 00:09.0", got, err)
	}
	for fn := 2; fn < NumFunctions; fn++ {
		must(t, func() error { _, err := r.bus.AddFunction(mustNew(t, testHeader), 1); return err }())
	}
	if _, err := r.bus.AddFunction(mustNew(t, testHeader), 1); !errors.Is(err, ErrSlotInUse) {
		t.Errorf("AddFunction in a full slot: %v, want ErrSlotInUse", err)
	}
	if _, err := r.bus.AddFunction(mustNew(t, testHeader), 40); !errors.Is(err, ErrInvalid) {
		t.Errorf("AddFunction slot 40: %v, want ErrInvalid", err)
	}
	must(t, r.bus.Remove(f2))
	// Full bus.
	for range 30 {
		if _, err := r.bus.AddAuto(mustNew(t, testHeader)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.bus.AddAuto(mustNew(t, testHeader)); !errors.Is(err, ErrBusFull) {
		t.Errorf("AddAuto on a full bus: %v, want ErrBusFull", err)
	}
}

func TestReset(t *testing.T) {
	r := newRig(t)
	d := mustNew(t, testHeader)
	must(t, d.SetBAR(0, BAR{Kind: BARIO, Size: 8}))
	sbdf, err := r.bus.Add(d, 3, 0)
	must(t, err)
	r.cfgWrite(sbdf, RegBAR0, 4, 0xc000)
	r.cfgWrite(sbdf, RegCommand, 2, CommandIO)
	r.cfgWrite(sbdf, RegInterruptLine, 1, 5)
	if got := len(r.spaces.PIO.Ranges()); got != 1 {
		t.Fatalf("PIO ranges = %d, want 1", got)
	}
	d.Reset()
	for _, tc := range []struct {
		reg  uint32
		want uint64
	}{{RegBAR0, barIOSpace}, {RegCommand, 0}, {RegInterruptLine, 0}} {
		if got := r.cfgRead(sbdf, tc.reg, 1); got != tc.want {
			t.Errorf("register %#x after reset = %#x, want %#x", tc.reg, got, tc.want)
		}
	}
	if got := len(r.spaces.PIO.Ranges()); got != 0 {
		t.Errorf("PIO ranges after reset = %d, want 0", got)
	}
}

func TestExtendedCapabilities(t *testing.T) {
	h := testHeader
	h.Extended = true
	d := mustNew(t, h)
	off1, err := d.AddExtendedCapability(0x0b, 1, []byte{1, 2, 3, 4}, []byte{0xff, 0, 0, 0}, nil)
	must(t, err)
	off2, err := d.AddExtendedCapability(0x01, 2, make([]byte, 8), nil, []byte{0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	must(t, err)
	if off1 != 0x100 || off2 != 0x108 {
		t.Errorf("offsets = %#x, %#x; want 0x100, 0x108", off1, off2)
	}
	if got, want := d.ConfigRead(0x100, 4), uint32(0x108<<20|1<<16|0x0b); got != want {
		t.Errorf("first header = %#x, want %#x", got, want)
	}
	if got, want := d.ConfigRead(0x108, 4), uint32(2<<16|0x01); got != want {
		t.Errorf("second header = %#x, want %#x", got, want)
	}
	d.Write(devices.Access{Offset: 0x100, Size: 8}, ^uint64(0))
	if got, want := d.ConfigRead(0x104, 4), uint32(0x040302ff); got != want {
		t.Errorf("body after all-ones = %#x, want %#x", got, want)
	}
	if _, err := d.AddExtendedCapability(1, 1, nil, nil, nil); !errors.Is(err, ErrBusy) {
		t.Errorf("after first write: %v, want ErrBusy", err)
	}
	conv := mustNew(t, testHeader)
	if _, err := conv.AddExtendedCapability(1, 1, nil, nil, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("conventional function: %v, want ErrInvalid", err)
	}
	e := mustNew(t, h)
	must(t, e.DefineRegister(0x100, 4, 0, 0, 0))
	if _, err := e.AddExtendedCapability(1, 1, nil, nil, nil); !errors.Is(err, ErrNoSpace) {
		t.Errorf("0x100 taken: %v, want ErrNoSpace", err)
	}
	if _, err := e.AddExtendedCapability(1, 16, nil, nil, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("version 16: %v, want ErrInvalid", err)
	}
}

func TestBus_RemoveResets(t *testing.T) {
	r := newRig(t)
	d := mustNew(t, testHeader)
	must(t, d.SetBAR(0, BAR{Kind: BARIO, Size: 0x10}))
	sbdf, err := r.bus.Add(d, 3, 0)
	must(t, err)
	r.cfgWrite(sbdf, RegBAR0, 4, 0xc000)
	r.cfgWrite(sbdf, RegCommand, 2, CommandIO)
	must(t, r.bus.Remove(d))
	if got := len(r.spaces.PIO.Ranges()); got != 0 {
		t.Errorf("ranges after remove = %d", got)
	}
	if got := d.ConfigRead(RegBAR0, 4); got != barIOSpace {
		t.Errorf("BAR0 after remove = %#x, want reset value", got)
	}
	sbdf, err = r.bus.Add(d, 4, 0)
	must(t, err)
	if got := len(r.spaces.PIO.Ranges()); got != 0 {
		t.Errorf("ranges after re-add = %d, want 0 (decoding off)", got)
	}
	if got := r.cfgRead(sbdf, 0, 4); got != 0x00021b36 {
		t.Errorf("re-added id = %#x", got)
	}
}

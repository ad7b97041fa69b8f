package pci

import (
	"errors"
	"slices"
	"testing"

	"godm/devices"
	"godm/internal/testfake"
)

func TestMSI_Layouts(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cfg      MSIConfig
		ctl      uint64
		dataOff  uint32
		maskOff  uint32
		capBytes int
	}{
		{"32-bit", MSIConfig{Vectors: 1}, 0x0000, 8, 0, 10},
		{"64-bit", MSIConfig{Vectors: 4, Addr64: true}, 0x0084, 12, 0, 14},
		{"32-bit masked", MSIConfig{Vectors: 8, PerVectorMask: true}, 0x0106, 8, 12, 20},
		{"64-bit masked", MSIConfig{Vectors: 32, Addr64: true, PerVectorMask: true}, 0x018a, 12, 16, 24},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := mustNew(t, testHeader)
			off, err := d.AddMSI(tc.cfg)
			must(t, err)
			if got := uint64(d.ConfigRead(uint32(off)+2, 2)); got != tc.ctl {
				t.Errorf("control = %#x, want %#x", got, tc.ctl)
			}
			if got := int(d.msi.size); got != tc.capBytes {
				t.Errorf("size = %d, want %d", got, tc.capBytes)
			}
			if got := uint32(d.msi.data); got != tc.dataOff {
				t.Errorf("data offset = %d, want %d", got, tc.dataOff)
			}
			if got := uint32(d.msi.mask); got != tc.maskOff {
				t.Errorf("mask offset = %d, want %d", got, tc.maskOff)
			}
		})
	}
	for _, n := range []int{0, 3, 64} {
		d := mustNew(t, testHeader)
		if _, err := d.AddMSI(MSIConfig{Vectors: n}); !errors.Is(err, ErrInvalid) {
			t.Errorf("AddMSI(%d vectors) = %v, want ErrInvalid", n, err)
		}
	}
}

func TestMSI_Delivery(t *testing.T) {
	r := newRig(t)
	d := mustNew(t, testHeader)
	off, err := d.AddMSI(MSIConfig{Vectors: 4, Addr64: true, PerVectorMask: true})
	must(t, err)
	sbdf, err := r.bus.Add(d, 3, 0)
	must(t, err)
	c := uint32(off)
	if d.Interrupt(0) {
		t.Errorf("Interrupt with MSI disabled reported delivery")
	}
	r.cfgWrite(sbdf, c+4, 4, 0xfee01003) // low address bits are read-only
	r.cfgWrite(sbdf, c+8, 4, 0x1)
	r.cfgWrite(sbdf, c+12, 2, 0x4140)
	r.cfgWrite(sbdf, c+2, 2, 0x21|0xe) // enable, 4 vectors (MME=2), try to write MMC
	if got, want := r.cfgRead(sbdf, c+2, 2), uint64(0x1a5); got != want {
		t.Errorf("control = %#x, want %#x", got, want)
	}
	d.Interrupt(3)
	d.Interrupt(4)                      // not allocated: dropped
	r.cfgWrite(sbdf, c+16, 4, 0x2|0xf0) // mask vector 1 (bits above 4 are read-only)
	if got := r.cfgRead(sbdf, c+16, 4); got != 0x2 {
		t.Errorf("mask = %#x, want 0x2", got)
	}
	d.Interrupt(1)
	if got := r.cfgRead(sbdf, c+20, 4); got != 0x2 {
		t.Errorf("pending = %#x, want 0x2", got)
	}
	r.cfgWrite(sbdf, c+20, 4, 0) // pending is read-only
	r.cfgWrite(sbdf, c+16, 4, 0) // unmask: pending vector is sent
	if got := r.cfgRead(sbdf, c+20, 4); got != 0 {
		t.Errorf("pending after unmask = %#x, want 0", got)
	}
	want := []testfake.MSI{{Addr: 0x1_fee01000, Data: 0x4143}, {Addr: 0x1_fee01000, Data: 0x4141}}
	if got := r.takeMSIs(); !slices.Equal(got, want) {
		t.Errorf("messages = %#v, want %#v", got, want)
	}
	if got := d.Stats().MSIDropped; got != 1 {
		t.Errorf("MSIDropped = %d, want 1", got)
	}
}

func newMSIXDevice(t testing.TB, r *rig, h devices.Handler) (*Device, devices.SBDF) {
	t.Helper()
	d := mustNew(t, testHeader)
	must(t, d.SetBAR(0, BAR{Kind: BARMem32, Size: 0x4000, Handler: h}))
	_, err := d.AddMSIX(MSIXConfig{Vectors: 70, TableBAR: 0, TableOffset: 0x2000, PBABAR: 0, PBAOffset: 0x3000})
	must(t, err)
	sbdf, err := r.bus.Add(d, 4, 0)
	must(t, err)
	r.cfgWrite(sbdf, RegBAR0, 4, 0xfe000000)
	r.cfgWrite(sbdf, RegCommand, 2, CommandMemory|CommandMaster)
	return d, sbdf
}

func TestMSIX_Capability(t *testing.T) {
	r := newRig(t)
	d, sbdf := newMSIXDevice(t, r, nil)
	c := uint32(d.msix.cap)
	for _, tc := range []struct {
		name string
		reg  uint32
		want uint64
	}{
		{"id", c, CapMSIX},
		{"control", c + 2, 69},
		{"table", c + 4, 0x2000},
		{"pba", c + 8, 0x3000},
	} {
		r.cfgWrite(sbdf, tc.reg, 2, 0) // control bits writable, others read-only
		if tc.reg == c {
			continue
		}
		if got := r.cfgRead(sbdf, tc.reg, 2); got != tc.want {
			t.Errorf("%s = %#x, want %#x", tc.name, got, tc.want)
		}
	}
	if got := r.cfgRead(sbdf, c, 1); got != CapMSIX {
		t.Errorf("capability id = %#x", got)
	}
	// Every vector starts masked.
	for v := range uint64(70) {
		if got := r.spaces.MMIO.Read(0xfe002000+16*v+12, 4, 0); got != 1 {
			t.Fatalf("vector %d control = %#x, want masked", v, got)
		}
	}
}

func TestMSIX_Delivery(t *testing.T) {
	r := newRig(t)
	other := &memHandler{mem: make([]byte, 0x4000)}
	d, sbdf := newMSIXDevice(t, r, other)
	c := uint32(d.msix.cap)
	mm := r.spaces.MMIO
	entry := func(v uint64) uint64 { return 0xfe002000 + 16*v }
	// Program vector 65 with a 64-bit write, vector 0 with dwords.
	mm.Write(entry(65), 8, 0, 0x0000_0000_fee00000)
	mm.Write(entry(65)+8, 4, 0, 0x65)
	mm.Write(entry(0), 4, 0, 0xfee01000)
	mm.Write(entry(0)+8, 4, 0, 0x30)
	if got := mm.Read(entry(65), 8, 0); got != 0xfee00000 {
		t.Errorf("entry 65 address = %#x", got)
	}
	// Disabled: no delivery path.
	if d.Interrupt(65) {
		t.Errorf("Interrupt with MSI-X disabled reported delivery")
	}
	r.cfgWrite(sbdf, c+2, 2, msixEnable|msixFunctionMask)
	if !d.Interrupt(65) || !d.Interrupt(0) {
		t.Errorf("Interrupt with MSI-X enabled reported no delivery")
	}
	if got := mm.Read(0xfe003008, 8, 0); got != 0x2 {
		t.Errorf("PBA word 1 = %#x, want bit 1 (vector 65)", got)
	}
	if got := mm.Read(0xfe003000, 1, 0); got != 0x1 {
		t.Errorf("PBA byte 0 = %#x, want 1 (vector 0)", got)
	}
	mm.Write(0xfe003000, 8, 0, 0) // PBA is read-only
	if !d.MSIXPending(0) || !d.MSIXPending(65) || d.MSIXPending(1) || d.MSIXPending(100) {
		t.Errorf("MSIXPending mismatch")
	}
	// Function mask off: vectors are still individually masked.
	r.cfgWrite(sbdf, c+2, 2, msixEnable)
	if got := r.takeMSIs(); len(got) != 0 {
		t.Errorf("messages while vectors masked: %v", got)
	}
	mm.Write(entry(65)+12, 4, 0, 0xfffffffe) // unmask; reserved bits stay 0
	if got := mm.Read(entry(65)+12, 4, 0); got != 0 {
		t.Errorf("vector control = %#x, want 0", got)
	}
	if got, want := r.takeMSIs(), []testfake.MSI{{Addr: 0xfee00000, Data: 0x65}}; !slices.Equal(got, want) {
		t.Errorf("messages after unmask = %v, want %v", got, want)
	}
	d.Interrupt(65)
	if got, want := r.takeMSIs(), []testfake.MSI{{Addr: 0xfee00000, Data: 0x65}}; !slices.Equal(got, want) {
		t.Errorf("direct messages = %v, want %v", got, want)
	}
	d.Interrupt(70)
	if got := d.Stats().MSIDropped; got != 1 {
		t.Errorf("MSIDropped = %d, want 1", got)
	}
	// Function mask set, unmask vector 0, then clear the function mask.
	r.cfgWrite(sbdf, c+2, 2, msixEnable|msixFunctionMask)
	mm.Write(entry(0)+12, 4, 0, 0)
	if got := r.takeMSIs(); len(got) != 0 {
		t.Errorf("messages under function mask: %v", got)
	}
	r.cfgWrite(sbdf, c+2, 2, msixEnable)
	if got, want := r.takeMSIs(), []testfake.MSI{{Addr: 0xfee01000, Data: 0x30}}; !slices.Equal(got, want) {
		t.Errorf("messages after function unmask = %v, want %v", got, want)
	}
	// The rest of the BAR goes to the device's handler.
	mm.Write(0xfe000010, 4, 0, 0xabcd)
	if got := other.Read(devices.Access{Offset: 0x10, Size: 4}); got != 0xabcd {
		t.Errorf("BAR handler saw %#x, want 0xabcd", got)
	}
	if got := other.Read(devices.Access{Offset: 0x2000, Size: 4}); got != 0 {
		t.Errorf("BAR handler saw a table write: %#x", got)
	}
	// Reset masks everything again.
	d.Reset()
	if d.MSIXPending(0) {
		t.Errorf("vector 0 pending after reset")
	}
	if got := mm.Read(entry(0)+12, 4, 0); got != 0xffffffff {
		t.Errorf("table read after reset = %#x, want a miss (BAR unmapped)", got)
	}
	if got := d.msix.table[12]; got != 1 {
		t.Errorf("vector 0 control after reset = %#x, want masked", got)
	}
}

func TestAddMSIX_Invalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  MSIXConfig
	}{
		{"no vectors", MSIXConfig{Vectors: 0}},
		{"too many", MSIXConfig{Vectors: 2049}},
		{"table outside bar", MSIXConfig{Vectors: 2, TableOffset: 0xff8, PBAOffset: 0x800}},
		{"io bar", MSIXConfig{Vectors: 2, TableBAR: 1, PBAOffset: 0x800}},
		{"unaligned", MSIXConfig{Vectors: 2, TableOffset: 4, PBAOffset: 0x800}},
		{"overlap", MSIXConfig{Vectors: 2, TableOffset: 0, PBAOffset: 0x10}},
		{"bar index", MSIXConfig{Vectors: 2, TableBAR: 7, PBAOffset: 0x800}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := mustNew(t, testHeader)
			must(t, d.SetBAR(0, BAR{Kind: BARMem32, Size: 0x1000}))
			must(t, d.SetBAR(1, BAR{Kind: BARIO, Size: 0x100}))
			if _, err := d.AddMSIX(tc.cfg); !errors.Is(err, ErrInvalid) {
				t.Errorf("AddMSIX(%+v) = %v, want ErrInvalid", tc.cfg, err)
			}
		})
	}
}

func TestINTxSilencedByMSI(t *testing.T) {
	r := newRig(t)
	d := mustNew(t, testHeader)
	off, err := d.AddMSI(MSIConfig{Vectors: 1})
	must(t, err)
	sbdf, err := r.bus.Add(d, 7, 0)
	must(t, err)
	d.SetINTx(true)
	r.cfgWrite(sbdf, uint32(off)+2, 2, msiEnable) // MSI on: INTx drops
	r.cfgWrite(sbdf, uint32(off)+2, 2, 0)         // MSI off: the condition shows again
	key := [3]uint8{7, 0, 1}
	if got, want := r.levels(key[0], key[1], key[2]), []bool{true, false, true}; !slices.Equal(got, want) {
		t.Errorf("levels = %v, want %v", got, want)
	}
}

func TestINTxSilencedByMSIX(t *testing.T) {
	r := newRig(t)
	d, sbdf := newMSIXDevice(t, r, nil)
	c := uint32(d.msix.cap)
	d.SetINTx(true)
	r.cfgWrite(sbdf, c+2, 2, msixEnable|msixFunctionMask)
	r.cfgWrite(sbdf, c+2, 2, 0)
	key := [3]uint8{4, 0, 1}
	if got, want := r.levels(key[0], key[1], key[2]), []bool{true, false, true}; !slices.Equal(got, want) {
		t.Errorf("levels = %v, want %v", got, want)
	}
}

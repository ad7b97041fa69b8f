package ioreq

import (
	"encoding/binary"
	"slices"
	"testing"

	"godm/devices"
	"godm/memory"
)

func TestDispatchDirect(t *testing.T) {
	tests := []struct {
		name      string
		req       Request
		wantData  uint64
		wantWrite bool // slot data written
		wantOps   []op // on the PIO or MMIO recorder
		mmio      bool
		bad       func(c *Counters) uint64
	}{
		{"pio in b", Request{Type: TypePIO, Addr: 0x60, Size: 1, Count: 1, Read: true, VCPU: 2},
			0x10, true, []op{{Addr: 0x60, Size: 1, VCPU: 2, Val: 0x10}}, false, nil},
		{"pio in w", Request{Type: TypePIO, Addr: 0x1f0, Size: 2, Count: 1, Read: true},
			0x10, true, []op{{Addr: 0x1f0, Size: 2, Val: 0x10}}, false, nil},
		{"pio in l", Request{Type: TypePIO, Addr: 0xcfc, Size: 4, Count: 1, Read: true},
			0x10, true, []op{{Addr: 0xcfc, Size: 4, Val: 0x10}}, false, nil},
		{"pio out masked", Request{Type: TypePIO, Addr: 0x3f8, Size: 1, Count: 1, Data: 0xffffff41},
			0, false, []op{{Write: true, Addr: 0x3f8, Size: 1, Val: 0x41}}, false, nil},
		{"pio out w masked", Request{Type: TypePIO, Addr: 0x70, Size: 2, Count: 1, Data: 0x12345678},
			0, false, []op{{Write: true, Addr: 0x70, Size: 2, Val: 0x5678}}, false, nil},
		{"pio size 8 bad", Request{Type: TypePIO, Addr: 0x70, Size: 8, Count: 1, Read: true},
			^uint64(0), true, nil, false, func(c *Counters) uint64 { return c.BadSize }},
		{"pio size 3 bad", Request{Type: TypePIO, Addr: 0x70, Size: 3, Count: 1, Data: 1},
			^uint64(0), false, nil, false, func(c *Counters) uint64 { return c.BadSize }},
		{"pio size 0 bad", Request{Type: TypePIO, Size: 0, Count: 1, Read: true},
			^uint64(0), true, nil, false, func(c *Counters) uint64 { return c.BadSize }},
		{"count 0 bad", Request{Type: TypePIO, Size: 2, Count: 0, Read: true},
			0xffff, true, nil, false, func(c *Counters) uint64 { return c.BadCount }},
		{"count too big", Request{Type: TypeCopy, Size: 1, Count: MaxCount + 1, Read: true},
			0xff, true, nil, true, func(c *Counters) uint64 { return c.BadCount }},
		{"mmio read q", Request{Type: TypeCopy, Addr: 0xfebf0000, Size: 8, Count: 1, Read: true},
			0x10, true, []op{{Addr: 0xfebf0000, Size: 8, Val: 0x10}}, true, nil},
		{"mmio write l masked", Request{Type: TypeCopy, Addr: 0xfebf0004, Size: 4, Count: 1, Data: 0xaabbccdd11223344},
			0, false, []op{{Write: true, Addr: 0xfebf0004, Size: 4, Val: 0x11223344}}, true, nil},
		{"mmio size 16 bad", Request{Type: TypeCopy, Size: 16, Count: 1, Read: true},
			^uint64(0), true, nil, true, func(c *Counters) uint64 { return c.BadSize }},
		{"mmio rep stos up", Request{Type: TypeCopy, Addr: 0x1000, Size: 2, Count: 3, Data: 0x5a5a},
			0, false, []op{
				{Write: true, Addr: 0x1000, Size: 2, Val: 0x5a5a},
				{Write: true, Addr: 0x1002, Size: 2, Val: 0x5a5a},
				{Write: true, Addr: 0x1004, Size: 2, Val: 0x5a5a}}, true, nil},
		{"mmio rep stos down wraps", Request{Type: TypeCopy, Addr: 0x2, Size: 2, Count: 3, Data: 7, DF: true},
			0, false, []op{
				{Write: true, Addr: 0x2, Size: 2, Val: 7},
				{Write: true, Addr: 0x0, Size: 2, Val: 7},
				{Write: true, Addr: 0xfffffffffffffffe, Size: 2, Val: 7}}, true, nil},
		{"mmio repeated read answers last", Request{Type: TypeCopy, Addr: 0x1000, Size: 4, Count: 2, Read: true},
			0x11, true, []op{{Addr: 0x1000, Size: 4, Val: 0x10}, {Addr: 0x1004, Size: 4, Val: 0x11}}, true, nil},
		{"unknown type", Request{Type: 5, Size: 4, Count: 1, Read: true},
			^uint64(0), true, nil, false, func(c *Counters) uint64 { return c.BadType }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pio, mmio := &recSpace{base: 0x10}, &recSpace{base: 0x10}
			d := NewDispatcher(Targets{PIO: pio, MMIO: mmio})
			var st Stats
			r := tt.req
			data, write := d.Handle(&r, make([]byte, 64), &st)
			if write != tt.wantWrite || (write && data != tt.wantData) {
				t.Errorf("Handle = %#x, %v; want %#x, %v", data, write, tt.wantData, tt.wantWrite)
			}
			got, other := pio.log(), mmio.log()
			if tt.mmio {
				got, other = other, got
			}
			if !slices.Equal(got, tt.wantOps) || len(other) != 0 {
				t.Errorf("ops = %+v (other space %+v), want %+v", got, other, tt.wantOps)
			}
			var c Counters
			st.Snapshot(&c)
			if tt.bad != nil && tt.bad(&c) != 1 {
				t.Errorf("bad-request counter not incremented: %+v", c)
			}
		})
	}
}

func TestDispatchPCIConfig(t *testing.T) {
	bus := devices.NewBus()
	dev := &regHandler{regs: map[uint64]uint64{0: 0x12348086, 0x100: 0xabcd, 0xffc: 0x55aa55aa}}
	sbdf := devices.NewSBDF(0, 0, 3, 0)
	if err := bus.PCI.Register(sbdf, dev); err != nil {
		t.Fatal(err)
	}
	d := NewDispatcher(Targets{PCI: bus.PCI})
	addr := func(s devices.SBDF, reg uint32) uint64 { return uint64(s)<<32 | uint64(reg) }
	tests := []struct {
		name   string
		req    Request
		want   uint64
		badReg bool
	}{
		{"vendor/device", Request{Addr: addr(sbdf, 0), Size: 4, Read: true}, 0x12348086, false},
		{"vendor byte", Request{Addr: addr(sbdf, 0), Size: 1, Read: true}, 0x86, false},
		{"extended 0x100", Request{Addr: addr(sbdf, 0x100), Size: 2, Read: true}, 0xabcd, false},
		{"last dword of 4K", Request{Addr: addr(sbdf, 0xffc), Size: 4, Read: true}, 0x55aa55aa, false},
		{"unclaimed function", Request{Addr: addr(devices.NewSBDF(0, 0, 4, 0), 0), Size: 4, Read: true}, 0xffffffff, false},
		{"other segment", Request{Addr: addr(devices.NewSBDF(1, 0, 3, 0), 0), Size: 2, Read: true}, 0xffff, false},
		{"beyond 4K", Request{Addr: addr(sbdf, 0x1000), Size: 4, Read: true}, 0xffffffff, true},
		{"straddles 4K", Request{Addr: addr(sbdf, 0xffe), Size: 4, Read: true}, 0xffffffff, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st Stats
			r := tt.req
			r.Type, r.Count = TypePCIConfig, 1
			got, write := d.Handle(&r, make([]byte, 8), &st)
			if !write || got != tt.want {
				t.Errorf("Handle = %#x, %v; want %#x, true", got, write, tt.want)
			}
			var c Counters
			st.Snapshot(&c)
			if (c.BadPCIReg == 1) != tt.badReg {
				t.Errorf("BadPCIReg = %d, want bad=%v", c.BadPCIReg, tt.badReg)
			}
		})
	}
	// A write reaches the function at the decoded register, masked.
	var st Stats
	w := Request{Type: TypePCIConfig, Addr: addr(sbdf, 0x10), Size: 2, Count: 1, Data: 0xffff1234}
	d.Handle(&w, make([]byte, 8), &st)
	if got := dev.regs[0x10]; got != 0x1234 {
		t.Fatalf("config write: reg 0x10 = %#x, want 0x1234", got)
	}
}

func TestDispatchTimeOffsetAndInvalidate(t *testing.T) {
	inval := 0
	d := NewDispatcher(Targets{Invalidate: func() { inval++ }})
	var st Stats
	for _, delta := range []int64{3600, -60, 5} {
		r := Request{Type: TypeTimeOffset, Size: 8, Count: 1, Data: uint64(delta)}
		if _, w := d.Handle(&r, make([]byte, 8), &st); w {
			t.Fatal("TIMEOFFSET asked for a data write")
		}
	}
	if got := d.TimeOffset(); got != 3545 {
		t.Fatalf("TimeOffset = %d, want 3545", got)
	}
	r := Request{Type: TypeInvalidate, Size: 4, Data: ^uint64(0)}
	d.Handle(&r, make([]byte, 8), &st)
	if inval != 1 {
		t.Fatalf("invalidate hook called %d times, want 1", inval)
	}
	// Without a hook INVALIDATE is a no-op.
	NewDispatcher(Targets{}).Handle(&r, make([]byte, 8), &st)
}

// le encodes values of the given size little-endian.
func le(size int, vals ...uint64) []byte {
	b := make([]byte, size*len(vals))
	for i, v := range vals {
		putLE(b[i*size:], uint64(size), v)
	}
	return b
}

func TestDispatchRepPIO(t *testing.T) {
	tests := []struct {
		name    string
		req     Request
		mem     []byte // initial RAM at 0x1000 (rep outs source)
		wantMem []byte // RAM at 0x1000 after
		wantOps []op
	}{
		{"ins w up", Request{Type: TypePIO, Addr: 0x1f0, Size: 2, Count: 3, Read: true, DataIsPtr: true, Data: 0x1000},
			nil, le(2, 0x10, 0x11, 0x12),
			[]op{{Addr: 0x1f0, Size: 2, Val: 0x10}, {Addr: 0x1f0, Size: 2, Val: 0x11}, {Addr: 0x1f0, Size: 2, Val: 0x12}}},
		{"ins b down", Request{Type: TypePIO, Addr: 0x60, Size: 1, Count: 3, Read: true, DataIsPtr: true, DF: true, Data: 0x1002},
			nil, []byte{0x12, 0x11, 0x10},
			[]op{{Addr: 0x60, Size: 1, Val: 0x10}, {Addr: 0x60, Size: 1, Val: 0x11}, {Addr: 0x60, Size: 1, Val: 0x12}}},
		{"outs l up", Request{Type: TypePIO, Addr: 0xcfc, Size: 4, Count: 2, DataIsPtr: true, Data: 0x1000},
			le(4, 0xa1, 0xb2), le(4, 0xa1, 0xb2),
			[]op{{Write: true, Addr: 0xcfc, Size: 4, Val: 0xa1}, {Write: true, Addr: 0xcfc, Size: 4, Val: 0xb2}}},
		{"outs w down", Request{Type: TypePIO, Addr: 0x3f8, Size: 2, Count: 2, DataIsPtr: true, DF: true, Data: 0x1002},
			le(2, 0xa1, 0xb2), le(2, 0xa1, 0xb2),
			[]op{{Write: true, Addr: 0x3f8, Size: 2, Val: 0xb2}, {Write: true, Addr: 0x3f8, Size: 2, Val: 0xa1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ram := memory.NewFlat(0x1000, 0x1000)
			copy(ram.Mem, tt.mem)
			pio := &recSpace{base: 0x10}
			d := NewDispatcher(Targets{PIO: pio, Memory: ram})
			var st Stats
			r := tt.req
			if _, w := d.Handle(&r, make([]byte, 4096), &st); w {
				t.Error("data_is_ptr request asked for a data write")
			}
			if got := ram.Mem[:len(tt.wantMem)]; !slices.Equal(got, tt.wantMem) {
				t.Errorf("RAM = % x, want % x", got, tt.wantMem)
			}
			if got := pio.log(); !slices.Equal(got, tt.wantOps) {
				t.Errorf("ops = %+v, want %+v", got, tt.wantOps)
			}
		})
	}
}

func TestDispatchRepMMIOToAndFromRAM(t *testing.T) {
	for _, df := range []bool{false, true} {
		for _, scratch := range []int{8, 64, 4096} {
			// MMIO -> RAM (rep movs reading the device), 300 quads: several
			// chunks for small scratch buffers, crossing a page of RAM.
			ram := memory.NewFlat(0, 0x4000)
			mmio := &recSpace{base: 1}
			d := NewDispatcher(Targets{MMIO: mmio, Memory: ram})
			var st Stats
			const n = 300
			r := Request{Type: TypeCopy, Addr: 0xe0000000, Size: 8, Count: n, Read: true, DataIsPtr: true, DF: df, Data: 0xf00}
			if df {
				r.Addr = 0xe0000000 + 8*(n-1)
				r.Data = 0xf00 + 8*(n-1)
			}
			d.Handle(&r, make([]byte, scratch), &st)
			ops := mmio.log()
			if len(ops) != n {
				t.Fatalf("df=%v scratch=%d: %d device reads, want %d", df, scratch, len(ops), n)
			}
			for i := range n {
				// Element i is the i-th device read, at device address and
				// buffer address both stepping by ±8.
				step := uint64(8 * i)
				devAddr, bufAddr := r.Addr+step, r.Data+step
				if df {
					devAddr, bufAddr = r.Addr-step, r.Data-step
				}
				if ops[i].Addr != devAddr || ops[i].Val != uint64(1+i) {
					t.Fatalf("df=%v: op %d = %+v, want addr %#x val %d", df, i, ops[i], devAddr, 1+i)
				}
				if got := binary.LittleEndian.Uint64(ram.Mem[bufAddr:]); got != uint64(1+i) {
					t.Fatalf("df=%v scratch=%d: RAM[%#x] = %d, want %d", df, scratch, bufAddr, got, 1+i)
				}
			}

			// RAM -> MMIO (rep movs writing the device).
			mmio2 := &recSpace{}
			d2 := NewDispatcher(Targets{MMIO: mmio2, Memory: ram})
			w := r
			w.Read = false
			d2.Handle(&w, make([]byte, scratch), &st)
			ops = mmio2.log()
			for i := range n {
				if !ops[i].Write || ops[i].Val != uint64(1+i) {
					t.Fatalf("df=%v: write op %d = %+v, want value %d", df, i, ops[i], 1+i)
				}
			}
		}
	}
}

func TestDispatchRepUnmappedAndWrapping(t *testing.T) {
	// RAM is [0, 0x2000); the rest of the address space is unmapped and
	// served by the MMIO space (all-ones reads, dropped writes).
	ram := memory.NewFlat(0, 0x2000)
	for i := range ram.Mem {
		ram.Mem[i] = byte(i)
	}
	mmio := &recSpace{base: 0xee}
	pio := &recSpace{base: 0x40}
	d := NewDispatcher(Targets{PIO: pio, MMIO: mmio, Memory: ram})
	var st Stats

	// rep outsw from a buffer that starts 2 bytes below 0 (wraps): the
	// first element is unmapped, the next two are RAM at 0 and 2.
	r := Request{Type: TypePIO, Addr: 0x80, Size: 2, Count: 3, DataIsPtr: true, Data: ^uint64(0) - 1}
	d.Handle(&r, make([]byte, 4096), &st)
	got := pio.log()
	want := []op{
		{Write: true, Addr: 0x80, Size: 2, Val: 0xee}, // from mmio fallback read
		{Write: true, Addr: 0x80, Size: 2, Val: 0x0100},
		{Write: true, Addr: 0x80, Size: 2, Val: 0x0302},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("outs across wrap: %+v, want %+v", got, want)
	}
	var c Counters
	st.Snapshot(&c)
	if c.MemFaults != 1 {
		t.Fatalf("MemFaults = %d, want 1", c.MemFaults)
	}

	// rep insb into a buffer crossing the end of RAM: the bytes inside
	// land, the ones beyond go to the MMIO space (dropped there).
	pio2 := &recSpace{base: 0x40}
	mmio2 := &recSpace{}
	d2 := NewDispatcher(Targets{PIO: pio2, MMIO: mmio2, Memory: ram})
	var st2 Stats
	r2 := Request{Type: TypePIO, Addr: 0x60, Size: 1, Count: 4, Read: true, DataIsPtr: true, Data: 0x1ffe}
	d2.Handle(&r2, make([]byte, 4096), &st2)
	if ram.Mem[0x1ffe] != 0x40 || ram.Mem[0x1fff] != 0x41 {
		t.Fatalf("RAM tail = % x, want 40 41", ram.Mem[0x1ffe:])
	}
	wantMMIO := []op{{Write: true, Addr: 0x2000, Size: 1, Val: 0x42}, {Write: true, Addr: 0x2001, Size: 1, Val: 0x43}}
	if got := mmio2.log(); !slices.Equal(got, wantMMIO) {
		t.Fatalf("spill = %+v, want %+v", got, wantMMIO)
	}
	st2.Snapshot(&c)
	if c.MemFaults != 2 || c.Reps != 4 {
		t.Fatalf("MemFaults, Reps = %d, %d; want 2, 4", c.MemFaults, c.Reps)
	}

	// No memory at all: every element faults, nothing panics.
	d3 := NewDispatcher(Targets{})
	var st3 Stats
	r3 := Request{Type: TypeCopy, Addr: 0, Size: 8, Count: MaxCount, Read: true, DataIsPtr: true, DF: true, Data: 8}
	d3.Handle(&r3, make([]byte, 4096), &st3)
	st3.Snapshot(&c)
	if c.MemFaults != MaxCount {
		t.Fatalf("MemFaults = %d, want %d", c.MemFaults, MaxCount)
	}
}

func TestDispatchWithBus(t *testing.T) {
	bus := devices.NewBus()
	uart := &regHandler{regs: map[uint64]uint64{5: 0x60}}
	if err := bus.PIO.Register(0x3f8, 8, uart); err != nil {
		t.Fatal(err)
	}
	d := NewDispatcher(Targets{PIO: bus.PIO, MMIO: bus.MMIO, PCI: bus.PCI})
	var st Stats
	r := Request{Type: TypePIO, Addr: 0x3fd, Size: 1, Count: 1, Read: true, VCPU: 1}
	if got, _ := d.Handle(&r, make([]byte, 8), &st); got != 0x60 {
		t.Fatalf("LSR read = %#x, want 0x60", got)
	}
	if a := uart.log[0]; a.Offset != 5 || a.Addr != 0x3fd || a.VCPU != 1 || a.Size != 1 {
		t.Fatalf("access = %+v", a)
	}
	r = Request{Type: TypePIO, Addr: 0x2f8, Size: 1, Count: 1, Read: true}
	if got, _ := d.Handle(&r, make([]byte, 8), &st); got != 0xff {
		t.Fatalf("unclaimed port read = %#x, want 0xff", got)
	}
}

func TestDispatchTinyScratch(t *testing.T) {
	ram := memory.NewFlat(0, 0x1000)
	mmio := &recSpace{base: 1}
	d := NewDispatcher(Targets{MMIO: mmio, Memory: ram})
	var st Stats
	r := Request{Type: TypeCopy, Addr: 0x1000, Size: 8, Count: 3, Read: true, DataIsPtr: true, Data: 0x100}
	d.Handle(&r, nil, &st)
	for i := range 3 {
		if got := binary.LittleEndian.Uint64(ram.Mem[0x100+8*i:]); got != uint64(1+i) {
			t.Fatalf("element %d = %d, want %d", i, got, 1+i)
		}
	}
}

// TestDispatchRepMarksDirty: a rep INS (and a MOVS from MMIO) that
// writes guest RAM for the guest's string instruction is a device-model
// write to guest memory: it reaches the dirty log; a rep OUTS does not.
func TestDispatchRepMarksDirty(t *testing.T) {
	log, err := memory.NewDirtyLog(0x10000)
	if err != nil {
		t.Fatal(err)
	}
	ram := memory.NewFlat(0x1000, 0x4000)
	ram.Dirty = log
	d := NewDispatcher(Targets{PIO: &recSpace{base: 0x10}, MMIO: &recSpace{base: 0x20}, Memory: ram})
	var st Stats
	collect := func() (runs [][2]uint64) {
		log.Collect(func(g, n uint64) { runs = append(runs, [2]uint64{g, n}) })
		return runs
	}
	for _, tc := range []struct {
		name string
		req  Request
		want [][2]uint64
	}{
		{"rep outsw", Request{Type: TypePIO, Addr: 0x1f0, Size: 2, Count: 8, DataIsPtr: true, Data: 0x1ff8}, nil},
		{"rep insw across a page", Request{Type: TypePIO, Addr: 0x1f0, Size: 2, Count: 8, Read: true, DataIsPtr: true, Data: 0x1ff8}, [][2]uint64{{1, 2}}},
		{"movsd MMIO to RAM df", Request{Type: TypeCopy, Addr: 0xfe000000, Size: 4, Count: 4, Read: true, DataIsPtr: true, DF: true, Data: 0x3000}, [][2]uint64{{2, 2}}},
	} {
		r := tc.req
		d.Handle(&r, make([]byte, 4096), &st)
		if got := collect(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: dirty runs %v, want %v", tc.name, got, tc.want)
		}
	}
}

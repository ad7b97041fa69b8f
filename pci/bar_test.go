package pci

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"godm/devices"
)

// rangeLog records a Space's listener calls.
type rangeLog struct {
	mu     sync.Mutex
	events []string
}

func (l *rangeLog) RangeAdded(s *devices.Space, base, size uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, fmt.Sprintf("+%v %#x/%#x", s, base, size))
	return nil
}

func (l *rangeLog) RangeRemoved(s *devices.Space, base, size uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, fmt.Sprintf("-%v %#x/%#x", s, base, size))
}

func (l *rangeLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.events
	l.events = nil
	return e
}

func TestBAR_Sizing(t *testing.T) {
	d := mustNew(t, testHeader)
	must(t, d.SetBAR(0, BAR{Kind: BARIO, Size: 0x20}))
	must(t, d.SetBAR(1, BAR{Kind: BARMem32, Size: 0x1000}))
	must(t, d.SetBAR(2, BAR{Kind: BARMem64, Size: 1 << 33, Prefetchable: true}))
	must(t, d.SetBAR(4, BAR{Kind: BARMem32, Size: 1 << 24, Prefetchable: true}))
	must(t, d.SetROM(0x10000, nil))
	r := newRig(t)
	sbdf, err := r.bus.Add(d, 2, 0)
	must(t, err)
	// hvmloader's probe (tools/firmware/hvmloader/pci.c): write all-ones,
	// read the size mask back, restore.
	for _, tc := range []struct {
		name string
		reg  uint32
		orig uint64
		want uint64
	}{
		{"io", RegBAR0, 0x1, 0xffffffe1},
		{"mem32", RegBAR0 + 4, 0, 0xfffff000},
		{"mem64 low", RegBAR0 + 8, 0xc, 0x0000000c},
		{"mem64 high", RegBAR0 + 12, 0, 0xfffffffe},
		{"mem32 prefetch", RegBAR0 + 16, 0x8, 0xff000008},
		{"unimplemented", RegBAR0 + 20, 0, 0},
		{"rom", RegROM, 0, 0xffff0000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := r.cfgRead(sbdf, tc.reg, 4); got != tc.orig {
				t.Errorf("initial = %#x, want %#x", got, tc.orig)
			}
			if tc.reg == RegROM {
				r.cfgWrite(sbdf, tc.reg, 4, 0xfffff800) // enable bit clear
			} else {
				r.cfgWrite(sbdf, tc.reg, 4, 0xffffffff)
			}
			if got := r.cfgRead(sbdf, tc.reg, 4); got != tc.want {
				t.Errorf("after all-ones = %#x, want %#x", got, tc.want)
			}
			r.cfgWrite(sbdf, tc.reg, 4, tc.orig)
			if got := r.cfgRead(sbdf, tc.reg, 4); got != tc.orig {
				t.Errorf("restored = %#x, want %#x", got, tc.orig)
			}
		})
	}
}

func TestSetBAR_Invalid(t *testing.T) {
	for _, tc := range []struct {
		name  string
		index int
		bar   BAR
	}{
		{"index", 6, BAR{Kind: BARIO, Size: 4}},
		{"negative index", -1, BAR{Kind: BARIO, Size: 4}},
		{"not pow2", 0, BAR{Kind: BARMem32, Size: 0x3000}},
		{"io too small", 0, BAR{Kind: BARIO, Size: 2}},
		{"mem too small", 0, BAR{Kind: BARMem32, Size: 8}},
		{"mem64 in last", 5, BAR{Kind: BARMem64, Size: 16}},
		{"unknown kind", 0, BAR{Kind: barUpper, Size: 16}},
		{"none", 0, BAR{Kind: BARNone, Size: 16}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := mustNew(t, testHeader)
			if err := d.SetBAR(tc.index, tc.bar); !errors.Is(err, ErrInvalid) {
				t.Errorf("SetBAR(%d, %+v) = %v, want ErrInvalid", tc.index, tc.bar, err)
			}
		})
	}
	d := mustNew(t, testHeader)
	must(t, d.SetBAR(0, BAR{Kind: BARMem64, Size: 16}))
	if err := d.SetBAR(1, BAR{Kind: BARIO, Size: 4}); !errors.Is(err, ErrInvalid) {
		t.Errorf("SetBAR over a mem64 upper half = %v, want ErrInvalid", err)
	}
	if err := d.SetROM(1024, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("SetROM(1024) = %v, want ErrInvalid", err)
	}
}

func TestBAR_DecodeFollowsCommand(t *testing.T) {
	r := newRig(t)
	var pioLog, mmioLog rangeLog
	r.spaces.PIO.SetListener(&pioLog)
	r.spaces.MMIO.SetListener(&mmioLog)
	io := &memHandler{mem: make([]byte, 0x20)}
	mem := &memHandler{mem: make([]byte, 0x1000)}
	rom := &memHandler{mem: []byte{0x55, 0xaa}}
	d := mustNew(t, testHeader)
	must(t, d.SetBAR(0, BAR{Kind: BARIO, Size: 0x20, Handler: io}))
	must(t, d.SetBAR(1, BAR{Kind: BARMem64, Size: 0x1000, Handler: mem}))
	must(t, d.SetROM(0x800, rom))
	sbdf, err := r.bus.Add(d, 2, 0)
	must(t, err)

	r.cfgWrite(sbdf, RegBAR0, 4, 0xc000)
	r.cfgWrite(sbdf, RegBAR0+4, 4, 0xe0000000)
	r.cfgWrite(sbdf, RegBAR0+8, 4, 0x1)
	r.cfgWrite(sbdf, RegROM, 4, 0xe1000001)
	if got := append(pioLog.take(), mmioLog.take()...); len(got) != 0 {
		t.Errorf("ranges with decoding off: %v, want none", got)
	}
	r.cfgWrite(sbdf, RegCommand, 2, CommandIO|CommandMemory)
	if got, want := pioLog.take(), []string{"+pio 0xc000/0x20"}; !slices.Equal(got, want) {
		t.Errorf("pio events = %v, want %v", got, want)
	}
	if got, want := mmioLog.take(), []string{"+mmio 0x1e0000000/0x1000", "+mmio 0xe1000000/0x800"}; !slices.Equal(got, want) {
		t.Errorf("mmio events = %v, want %v", got, want)
	}

	// Accesses reach the handlers at BAR-relative offsets.
	r.spaces.PIO.Write(0xc004, 1, 0, 0x5a)
	r.spaces.MMIO.Write(0x1e0000010, 4, 0, 0xdeadbeef)
	if io.mem[4] != 0x5a || mem.Read(devices.Access{Offset: 0x10, Size: 4}) != 0xdeadbeef {
		t.Errorf("handlers did not see the writes: io[4]=%#x", io.mem[4])
	}
	if got := r.spaces.MMIO.Read(0xe1000000, 2, 0); got != 0xaa55 {
		t.Errorf("rom read = %#x, want 0xaa55", got)
	}
	r.spaces.MMIO.Write(0xe1000000, 1, 0, 0) // ROM writes are dropped
	if rom.mem[0] != 0x55 {
		t.Errorf("rom write reached the handler")
	}

	// Moving the BAR moves the range in one step.
	r.cfgWrite(sbdf, RegBAR0, 4, 0xd000)
	if got, want := pioLog.take(), []string{"+pio 0xd000/0x20", "-pio 0xc000/0x20"}; !slices.Equal(got, want) {
		t.Errorf("move events = %v, want %v", got, want)
	}
	// Sizing with decoding on (what a careless guest does) unmaps, restore maps again.
	r.cfgWrite(sbdf, RegBAR0+4, 4, 0xffffffff)
	r.cfgWrite(sbdf, RegBAR0+8, 4, 0xffffffff)
	if got, want := mmioLog.take(), []string{"+mmio 0x1fffff000/0x1000", "-mmio 0x1e0000000/0x1000", "-mmio 0x1fffff000/0x1000"}; !slices.Equal(got, want) {
		t.Errorf("sizing events = %v, want %v", got, want)
	}
	r.cfgWrite(sbdf, RegBAR0+4, 4, 0xe0000000)
	r.cfgWrite(sbdf, RegBAR0+8, 4, 0)
	if got, want := mmioLog.take(), []string{"+mmio 0xffffffffe0000000/0x1000", "+mmio 0xe0000000/0x1000", "-mmio 0xffffffffe0000000/0x1000"}; !slices.Equal(got, want) {
		t.Errorf("restore events = %v, want %v", got, want)
	}
	// ROM enable bit.
	r.cfgWrite(sbdf, RegROM, 4, 0xe1000000)
	if got, want := mmioLog.take(), []string{"-mmio 0xe1000000/0x800"}; !slices.Equal(got, want) {
		t.Errorf("rom disable events = %v, want %v", got, want)
	}
	// Decode off removes everything.
	r.cfgWrite(sbdf, RegCommand, 2, 0)
	if got, want := append(pioLog.take(), mmioLog.take()...), []string{"-pio 0xd000/0x20", "-mmio 0xe0000000/0x1000"}; !slices.Equal(got, want) {
		t.Errorf("decode-off events = %v, want %v", got, want)
	}
	if got, ok := d.BARAddress(0); ok {
		t.Errorf("BARAddress(0) = %#x, true with decoding off", got)
	}
}

func TestBAR_AddressRules(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind BARKind
		size uint64
		lo   uint32
		hi   uint32
		want uint64
		ok   bool
	}{
		{"io zero base", BARIO, 0x10, 0, 0, 0, false},
		{"io ok", BARIO, 0x10, 0xfff0, 0, 0xfff0, true},
		{"io past 64k", BARIO, 0x10, 0x1fff0, 0, 0, false},
		{"mem32 ok", BARMem32, 0x1000, 0xfebff000, 0, 0xfebff000, true},
		{"mem32 probe", BARMem32, 0x1000, 0xfffff000, 0, 0, false},
		{"mem64 above 4G", BARMem64, 0x1000, 0x1000, 0x10, 0x10_00001000, true},
		{"mem64 probe", BARMem64, 0x1000, 0xfffff000, 0xffffffff, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := mustNew(t, testHeader)
			must(t, d.SetBAR(0, BAR{Kind: tc.kind, Size: tc.size}))
			r := newRig(t)
			sbdf, err := r.bus.Add(d, 1, 0)
			must(t, err)
			r.cfgWrite(sbdf, RegBAR0, 4, uint64(tc.lo))
			r.cfgWrite(sbdf, RegBAR0+4, 4, uint64(tc.hi))
			r.cfgWrite(sbdf, RegCommand, 2, CommandIO|CommandMemory)
			got, ok := d.BARAddress(0)
			if got != tc.want || ok != tc.ok {
				t.Errorf("BARAddress = %#x, %v; want %#x, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestBAR_OverlapIsCounted(t *testing.T) {
	r := newRig(t)
	a, b := mustNew(t, testHeader), mustNew(t, testHeader)
	must(t, a.SetBAR(0, BAR{Kind: BARIO, Size: 0x10}))
	must(t, b.SetBAR(0, BAR{Kind: BARIO, Size: 0x10}))
	sa, err := r.bus.Add(a, 1, 0)
	must(t, err)
	sb, err := r.bus.Add(b, 2, 0)
	must(t, err)
	for _, s := range []devices.SBDF{sa, sb} {
		r.cfgWrite(s, RegBAR0, 4, 0xc000)
		r.cfgWrite(s, RegCommand, 2, CommandIO)
	}
	if got := b.Stats().MapErrors; got != 1 {
		t.Errorf("MapErrors = %d, want 1", got)
	}
	// Moving b elsewhere maps it.
	r.cfgWrite(sb, RegBAR0, 4, 0xc100)
	if got := len(r.spaces.PIO.Ranges()); got != 2 {
		t.Errorf("ranges = %d, want 2", got)
	}
	// Moving a onto b fails: a stops decoding altogether.
	r.cfgWrite(sa, RegBAR0, 4, 0xc100)
	if got := len(r.spaces.PIO.Ranges()); got != 1 || a.Stats().MapErrors != 1 {
		t.Errorf("ranges = %d, a.MapErrors = %d; want 1, 1", got, a.Stats().MapErrors)
	}
}

func TestNewFunction(t *testing.T) {
	d, err := NewFunction(testHeader,
		BAR{Kind: BARMem64, Size: 0x1000},
		BAR{Kind: BARIO, Size: 0x10},
		BAR{Kind: BARMem32, Size: 0x100})
	must(t, err)
	for _, tc := range []struct {
		reg  uint32
		want uint32
	}{{RegBAR0, 0x4}, {RegBAR0 + 4, 0}, {RegBAR0 + 8, 1}, {RegBAR0 + 12, 0}} {
		if got := d.ConfigRead(tc.reg, 4); got != tc.want {
			t.Errorf("register %#x = %#x, want %#x", tc.reg, got, tc.want)
		}
	}
	if got := d.bars[3].kind; got != BARMem32 {
		t.Errorf("bar 3 kind = %v, want mem32", got)
	}
	if _, err := NewFunction(testHeader, BAR{Kind: BARIO, Size: 3}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad BAR: %v, want ErrInvalid", err)
	}
	if _, err := NewFunction(Header{InterruptPin: 9}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad header: %v, want ErrInvalid", err)
	}
}

// refusing is a Space listener that refuses ranges while refuse is set.
type refusing struct{ refuse bool }

func (r *refusing) RangeAdded(s *devices.Space, base, size uint64) error {
	if r.refuse {
		return errors.New("xen said no")
	}
	return nil
}

func (r *refusing) RangeRemoved(s *devices.Space, base, size uint64) {}

func TestBAR_ListenerRefusal(t *testing.T) {
	r := newRig(t)
	l := &refusing{refuse: true}
	r.spaces.MMIO.SetListener(l)
	d := mustNew(t, testHeader)
	must(t, d.SetBAR(0, BAR{Kind: BARMem32, Size: 0x1000}))
	sbdf, err := r.bus.Add(d, 2, 0)
	must(t, err)
	r.cfgWrite(sbdf, RegBAR0, 4, 0xe0000000)
	r.cfgWrite(sbdf, RegCommand, 2, CommandMemory)
	if got := len(r.spaces.MMIO.Ranges()); got != 0 || d.Stats().MapErrors != 1 {
		t.Errorf("ranges = %d, MapErrors = %d; want 0, 1", got, d.Stats().MapErrors)
	}
	// The next write that touches the BARs or the command retries.
	l.refuse = false
	r.cfgWrite(sbdf, RegCommand, 2, CommandMemory)
	if got := r.spaces.MMIO.Ranges(); len(got) != 1 || got[0].Base != 0xe0000000 {
		t.Errorf("ranges after retry = %+v", got)
	}
}

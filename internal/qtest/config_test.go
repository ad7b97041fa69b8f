package qtest

import (
	"fmt"
	"testing"

	"godm/devices"
)

// regEcho answers a configuration read with its SBDF and register, so a
// test sees where a data cycle landed.
type regEcho struct {
	sbdf   devices.SBDF
	writes *[]string
}

func (r regEcho) Read(a devices.Access) uint64 {
	return (uint64(r.sbdf.Dev())<<12 | a.Addr) & (1<<(8*uint(a.Size)) - 1)
}

func (r regEcho) Write(a devices.Access, v uint64) {
	*r.writes = append(*r.writes, fmt.Sprintf("%v[%#x]/%d=%#x", r.sbdf, a.Addr, a.Size, v))
}

func TestConfigTarget(t *testing.T) {
	cfg := devices.NewConfigSpace()
	var writes []string
	for _, s := range []devices.SBDF{devices.NewSBDF(0, 0, 0, 0), devices.NewSBDF(0, 0, 1, 3)} {
		if err := cfg.Register(s, regEcho{s, &writes}); err != nil {
			t.Fatal(err)
		}
	}
	tgt, err := NewConfigTarget(cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr := func(v uint64) Step { return Step{Write: true, Port: 0xcf8, Size: 4, Value: v} }
	rd := func(port uint16, size uint8) Step { return Step{Port: port, Size: size} }
	for i, tc := range []struct {
		step Step
		want uint64
	}{
		{addr(0x8000083c), 0},
		{rd(0xcf8, 4), 0x8000083c}, // the address reads back
		{rd(0xcf8, 1), 0x3c},       // reads of any width return it
		{rd(0xcfc, 4), 0xffffffff}, // 00:01.0 has no function: the config space's miss
		{addr(0x80000b3c), 0},
		{rd(0xcfc, 4), 0x103c},
		{rd(0xcfd, 1), 0x3d},
		{rd(0xcfe, 2), 0x103e},
		{Step{Write: true, Port: 0xcf8, Size: 2, Value: 0x1234}, 0},
		{rd(0xcf8, 4), 0x80000b3c}, // a word write does not change it
		{addr(0x00000b3c), 0},
		{rd(0xcfc, 4), 0xffffffff}, // enable bit clear
		{addr(0x80010000), 0},
		{rd(0xcfc, 4), 0xffffffff}, // bus 1
		{addr(0x80000000), 0},
		{rd(0xcfc, 2), 0x0000},
		{Step{Write: true, Port: 0xcfe, Size: 2, Value: 0xbeef}, 0},
	} {
		r, err := tgt.Run(tc.step)
		if err != nil {
			t.Fatal(err)
		}
		if r.Value != tc.want {
			t.Errorf("step %d %s = %#x, want %#x", i, tc.step, r.Value, tc.want)
		}
	}
	if want := []string{"0000:00:00.0[0x2]/2=0xbeef"}; fmt.Sprint(writes) != fmt.Sprint(want) {
		t.Errorf("writes %v, want %v", writes, want)
	}
}

// fakeTarget answers every step with the value of its table.
type fakeTarget map[uint16]Result

func (f fakeTarget) Run(s Step) (Result, error) { return f[s.Port], nil }

// countTB counts Errorf calls.
type countTB struct{ errors int }

func (c *countTB) Helper()               {}
func (c *countTB) Errorf(string, ...any) { c.errors++ }
func (c *countTB) Fatalf(string, ...any) { c.errors++ }

func TestDiffIgnore(t *testing.T) {
	want := fakeTarget{1: {Value: 0x1200}, 2: {Value: 0x34, IRQs: []IRQEvent{{4, true}}}}
	for _, tc := range []struct {
		name string
		step Step
		got  Result
		bad  int
	}{
		{"equal", Step{Port: 1}, Result{Value: 0x1200}, 0},
		{"ignored bits differ", Step{Port: 1, Ignore: 0xff00}, Result{Value: 0x3400}, 0},
		{"other bits differ", Step{Port: 1, Ignore: 0xff00}, Result{Value: 0x1201}, 1},
		{"no ignore", Step{Port: 1}, Result{Value: 0x1300}, 1},
		{"edges still compared", Step{Port: 2, Ignore: ^uint64(0)}, Result{Value: 0x34}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := &countTB{}
			if n := Diff(tb, []Step{tc.step}, want, fakeTarget{tc.step.Port: tc.got}); n != tc.bad || tb.errors != tc.bad {
				t.Errorf("Diff = %d mismatches, %d errors; want %d", n, tb.errors, tc.bad)
			}
		})
	}
}

package devices

import (
	"errors"
	"fmt"
	"testing"
)

type pciRec struct {
	events []string
	fail   error
	c      *ConfigSpace
}

func (p *pciRec) PCIAdded(s SBDF) error {
	p.events = append(p.events, fmt.Sprintf("add %v visible=%v", s, p.c.Read(s, 0, 4, 0) != 0xffffffff))
	return p.fail
}

func (p *pciRec) PCIRemoved(s SBDF) {
	p.events = append(p.events, fmt.Sprintf("remove %v visible=%v", s, p.c.Read(s, 0, 4, 0) != 0xffffffff))
}

func TestConfigSpace(t *testing.T) {
	c := NewConfigSpace()
	l := &pciRec{c: c}
	c.SetListener(l)
	d1, d2 := &regDev{id: 1}, &regDev{id: 2}
	s1, s2 := NewSBDF(0, 0, 1, 0), NewSBDF(0, 0, 3, 0)
	for _, s := range []SBDF{s2, s1} {
		if err := c.Register(s, map[SBDF]Handler{s1: d1, s2: d2}[s]); err != nil {
			t.Fatalf("Register(%v) = %v", s, err)
		}
	}
	if err := c.Register(s1, d2); !errors.Is(err, ErrOverlap) {
		t.Errorf("duplicate Register = %v, want ErrOverlap", err)
	}
	if err := c.Register(NewSBDF(0, 0, 9, 0), nil); !errors.Is(err, ErrNilHandler) {
		t.Errorf("nil Register = %v, want ErrNilHandler", err)
	}
	for _, tc := range []struct {
		sbdf SBDF
		reg  uint32
		size uint8
		want uint64
	}{
		{s1, 0, 4, 0x04},
		{s1, 0x10, 4, 0x1004},
		{s1, 0x3e, 2, 0x3e02},
		{s2, 0xffc, 4, 0xffc04},
		{s2, 0xfff, 1, 0xff01 & 0xff},
		{s2, 0xffd, 4, 0xffffffff},      // crosses 4096: miss
		{s2, 0x1000, 1, 0xff},           // beyond: miss
		{s2, 0xffffffff, 4, 0xffffffff}, // far beyond: miss
		{s2, 0, 3, 0xffffff},            // bad size
		{NewSBDF(0, 0, 2, 0), 0, 4, 0xffffffff},
		{NewSBDF(1, 0, 1, 0), 0, 2, 0xffff},
	} {
		if got := c.Read(tc.sbdf, tc.reg, tc.size, 0); got != tc.want {
			t.Errorf("Read(%v, %#x, %d) = %#x, want %#x", tc.sbdf, tc.reg, tc.size, got, tc.want)
		}
	}
	// 6 misses above plus the 2 listener probes of functions not yet visible.
	if got, want := c.Stats().ReadMisses, uint64(8); got != want {
		t.Errorf("ReadMisses = %d, want %d", got, want)
	}
	c.Write(s2, 0x44, 2, 0, 0xabcdef)
	if got, want := d2.last.Load(), uint64(0xcdef); got != want {
		t.Errorf("written = %#x, want %#x", got, want)
	}
	c.Write(NewSBDF(0, 0, 2, 0), 0, 4, 0, 1)
	if got, want := c.Stats().WriteMisses, uint64(1); got != want {
		t.Errorf("WriteMisses = %d, want %d", got, want)
	}
	if got, want := fmt.Sprint(c.Functions()), "[0000:00:01.0 0000:00:03.0]"; got != want {
		t.Errorf("Functions() = %s, want %s", got, want)
	}
	if err := c.Unregister(NewSBDF(0, 0, 2, 0)); !errors.Is(err, ErrNotFound) {
		t.Errorf("Unregister(absent) = %v, want ErrNotFound", err)
	}
	if err := c.Unregister(s1); err != nil {
		t.Errorf("Unregister = %v", err)
	}
	l.fail = errors.New("refused")
	if err := c.Register(s1, d1); !errors.Is(err, ErrListener) || !errors.Is(err, l.fail) {
		t.Errorf("refused Register = %v", err)
	}
	want := []string{
		"add 0000:00:03.0 visible=false",
		"add 0000:00:01.0 visible=false",
		"remove 0000:00:01.0 visible=false",
		"add 0000:00:01.0 visible=false",
	}
	if fmt.Sprint(l.events) != fmt.Sprint(want) {
		t.Errorf("events:\n got %q\nwant %q", l.events, want)
	}
	if got, want := fmt.Sprint(c.Functions()), "[0000:00:03.0]"; got != want {
		t.Errorf("Functions() = %s, want %s", got, want)
	}
}

// TestConfigSpace_Concurrent looks up a stable function while others are
// registered and unregistered.
func TestConfigSpace_Concurrent(t *testing.T) {
	c := NewConfigSpace()
	stable := NewSBDF(0, 0, 5, 0)
	if err := c.Register(stable, &regDev{id: 9}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	bad := make(chan uint64, 1)
	go func() {
		defer close(done)
		for i := 0; i < 20000; i++ {
			if v := c.Read(stable, 8, 4, 0); v != 0x804 {
				bad <- v
				return
			}
		}
	}()
	churn := &regDev{}
	for i := 0; ; i++ {
		select {
		case <-done:
			select {
			case v := <-bad:
				t.Fatalf("stable function read %#x during churn, want 0x804", v)
			default:
			}
			return
		default:
		}
		f := NewSBDF(0, 0, uint8(i%4), uint8(i%8))
		if err := c.Register(f, churn); err != nil {
			t.Fatal(err)
		}
		if err := c.Unregister(f); err != nil {
			t.Fatal(err)
		}
	}
}

package devices

import (
	"errors"
	"fmt"
	"testing"
)

// failAt is a listener that refuses the n-th RangeAdded/PCIAdded (0: none).
type failAt struct {
	n      int
	calls  int
	events []string
}

var errRefused = errors.New("refused")

func (f *failAt) add(what string) error {
	f.calls++
	if f.calls == f.n {
		return errRefused
	}
	f.events = append(f.events, "add "+what)
	return nil
}

func (f *failAt) RangeAdded(_ *Space, base, size uint64) error {
	return f.add(fmt.Sprintf("%#x+%#x", base, size))
}

func (f *failAt) RangeRemoved(_ *Space, base, size uint64) {
	f.events = append(f.events, fmt.Sprintf("remove %#x+%#x", base, size))
}

func (f *failAt) PCIAdded(s SBDF) error { return f.add(s.String()) }

func (f *failAt) PCIRemoved(s SBDF) { f.events = append(f.events, "remove "+s.String()) }

func TestAttach(t *testing.T) {
	for _, tc := range []struct {
		name       string
		failAt     int
		wantSpace  string
		wantConfig string
		attached   bool
	}{
		{"all accepted", 0,
			"[add 0x10+0x1 add 0x20+0x2 add 0x30+0x3]",
			"[add 0000:00:01.0 add 0000:00:02.0]", true},
		{"second refused", 2,
			"[add 0x10+0x1 remove 0x10+0x1]",
			"[add 0000:00:01.0 remove 0000:00:01.0]", false},
		{"first refused", 1, "[]", "[]", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSpace("pio")
			c := NewConfigSpace()
			d := &regDev{}
			for _, b := range []uint64{0x30, 0x10, 0x20} {
				mustRegister(t, s, b, b>>4, d)
			}
			for _, f := range []SBDF{NewSBDF(0, 0, 2, 0), NewSBDF(0, 0, 1, 0)} {
				if err := c.Register(f, d); err != nil {
					t.Fatal(err)
				}
			}
			ls, lc := &failAt{n: tc.failAt}, &failAt{n: tc.failAt}
			errS, errC := s.Attach(ls), c.Attach(lc)
			if tc.attached != (errS == nil) || tc.attached != (errC == nil) {
				t.Fatalf("Attach = %v, %v; want success %v", errS, errC, tc.attached)
			}
			if !tc.attached && (!errors.Is(errS, ErrListener) || !errors.Is(errC, errRefused)) {
				t.Errorf("Attach errors %v, %v do not wrap ErrListener and the refusal", errS, errC)
			}
			if got := fmt.Sprint(ls.events); got != tc.wantSpace {
				t.Errorf("space events = %s, want %s", got, tc.wantSpace)
			}
			if got := fmt.Sprint(lc.events); got != tc.wantConfig {
				t.Errorf("config events = %s, want %s", got, tc.wantConfig)
			}
			// Later registrations reach the listener only if attached.
			ls.events, lc.events, ls.n, lc.n = nil, nil, 0, 0
			mustRegister(t, s, 0x40, 1, d)
			if err := c.Register(NewSBDF(0, 0, 3, 0), d); err != nil {
				t.Fatal(err)
			}
			if got, want := len(ls.events)+len(lc.events), map[bool]int{true: 2, false: 0}[tc.attached]; got != want {
				t.Errorf("listener saw %d later registrations, want %d", got, want)
			}
		})
	}
}

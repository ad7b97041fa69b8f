package xensim

import (
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestRangeSet(t *testing.T) {
	var rs rangeSet
	steps := []struct {
		add  bool
		s, e uint64
		want []ioRange
	}{
		{true, 10, 19, []ioRange{{10, 19}}},
		{true, 20, 29, []ioRange{{10, 29}}}, // adjacent: merged
		{true, 40, 49, []ioRange{{10, 29}, {40, 49}}},
		{true, 30, 39, []ioRange{{10, 49}}}, // fills the gap
		{false, 15, 16, []ioRange{{10, 14}, {17, 49}}},
		{false, 10, 14, []ioRange{{17, 49}}},
		{true, 0, 0, []ioRange{{0, 0}, {17, 49}}},
		{true, ^uint64(0) - 1, ^uint64(0), []ioRange{{0, 0}, {17, 49}, {^uint64(0) - 1, ^uint64(0)}}},
	}
	for i, st := range steps {
		var err error
		if st.add {
			err = rs.add(st.s, st.e)
		} else {
			err = rs.remove(st.s, st.e)
		}
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if len(rs.r) != len(st.want) {
			t.Fatalf("step %d: %v, want %v", i, rs.r, st.want)
		}
		for j := range st.want {
			if rs.r[j] != st.want[j] {
				t.Fatalf("step %d: %v, want %v", i, rs.r, st.want)
			}
		}
	}
	checks := []struct {
		s, e               uint64
		contains, overlaps bool
	}{
		{17, 49, true, true},
		{16, 17, false, true},
		{50, 60, false, false},
		{0, 0, true, true},
		{1, 16, false, false},
	}
	for _, c := range checks {
		if got := rs.contains(c.s, c.e); got != c.contains {
			t.Errorf("contains(%d,%d) = %v", c.s, c.e, got)
		}
		if got := rs.overlaps(c.s, c.e); got != c.overlaps {
			t.Errorf("overlaps(%d,%d) = %v", c.s, c.e, got)
		}
	}
	var full rangeSet
	for i := uint64(0); i < maxIORanges; i++ {
		if err := full.add(i*10, i*10+1); err != nil {
			t.Fatalf("range %d: %v", i, err)
		}
	}
	if err := full.add(1<<40, 1<<40); !errors.Is(err, unix.ENOSPC) {
		t.Errorf("range %d: %v, want ENOSPC", maxIORanges+1, err)
	}
	if err := full.add(2, 9); err != nil { // merges two ranges: allowed
		t.Errorf("merging add at the limit: %v", err)
	}
}

func TestCreateDomainValidation(t *testing.T) {
	s := New(Config{})
	defer s.Close()
	bad := []DomainConfig{
		{VCPUs: 0},
		{VCPUs: 129},
		{VCPUs: 1, RAM: []Region{{GPA: 0x800, Size: 0x1000}}},
		{VCPUs: 1, RAM: []Region{{GPA: 0, Size: 0}}},
		{VCPUs: 1, RAM: []Region{{GPA: 0, Size: 0x2000}, {GPA: 0x1000, Size: 0x1000}}},
	}
	for _, c := range bad {
		if _, err := s.CreateDomain(c); !errors.Is(err, unix.EINVAL) {
			t.Errorf("CreateDomain(%+v) = %v, want EINVAL", c, err)
		}
	}
	d1, _ := s.CreateDomain(DomainConfig{VCPUs: 1})
	d2, _ := s.CreateDomain(DomainConfig{VCPUs: 128})
	if d1.ID() == 0 || d1.ID() == d2.ID() || s.Domain(d2.ID()) != d2 {
		t.Errorf("ids %v %v", d1.ID(), d2.ID())
	}
	if d2.VCPU(128) != nil || d2.VCPU(-1) != nil || d2.VCPU(127) == nil {
		t.Error("VCPU bounds")
	}
	d1.Close()
	if s.Domain(d1.ID()) != nil {
		t.Error("closed domain still listed")
	}
}

func TestEventLogRing(t *testing.T) {
	s := New(Config{EventCapacity: 4})
	defer s.Close()
	for i := 0; i < 6; i++ {
		s.record(Event{Kind: EventMSI, Data: uint64(i)})
	}
	evs := s.Events()
	if len(evs) != 4 || evs[0].Data != 2 || evs[0].Seq != 3 || evs[3].Seq != 6 {
		t.Errorf("events %v", evs)
	}
	if evs := s.EventsSince(5); len(evs) != 1 || evs[0].Seq != 6 {
		t.Errorf("since 5: %v", evs)
	}
	done := make(chan Event, 1)
	mark := s.LastSeq()
	go func() {
		e, _ := s.WaitEvent(mark, 5*time.Second, func(e Event) bool { return e.Data == 99 })
		done <- e
	}()
	// The waiter may start before or after these; either way it must
	// find the match exactly once.
	s.record(Event{Kind: EventMSI, Data: 7})
	s.record(Event{Kind: EventMSI, Data: 99})
	select {
	case e := <-done:
		if e.Data != 99 {
			t.Errorf("waited event %v", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitEvent did not return")
	}
	if got := EventKind(200).String(); got != "event(200)" {
		t.Errorf("String = %q", got)
	}
}

func TestVCPUBusyAndSizes(t *testing.T) {
	_, d := newSim(t, Config{}, stdDomain())
	v := d.VCPU(0)
	v.busy.Store(true)
	if _, err := v.In(0x60, 1); !errors.Is(err, ErrBusy) {
		t.Errorf("concurrent access: %v, want ErrBusy", err)
	}
	v.busy.Store(false)
	for _, c := range []struct {
		name string
		err  error
	}{
		{"In size 3", func() error { _, err := v.In(0x60, 3); return err }()},
		{"Out size 8", v.Out(0x60, 8, 0)},
		{"MMIO size 16", v.MMIOWrite(0xfe000000, 16, 0)},
		{"config seg 1", v.PCIConfigWrite(1<<16, 0, 4, 0)},
		{"config reg 256", v.PCIConfigWrite(0, 256, 4, 0)},
		{"config straddle", v.PCIConfigWrite(0, 3, 2, 0)},
		{"buffered type", func() error { _, err := v.BufferedWrite(2, 0, 4, 0); return err }()},
	} {
		if !errors.Is(c.err, unix.EINVAL) {
			t.Errorf("%s: %v, want EINVAL", c.name, c.err)
		}
	}
	if err := v.RepOuts(0x60, 1, 0, 0, false); err != nil {
		t.Errorf("zero-count rep: %v", err)
	}
}

func TestRAMFile(t *testing.T) {
	_, d := newSim(t, Config{}, stdDomain())
	d.WriteRAM(0x100010, []byte("shared"))
	f, regs, err := d.RAMFile()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if len(regs) != 2 || regs[1].GPA != 0x100000 || regs[1].Offset != 0xa0000 {
		t.Fatalf("regions %+v", regs)
	}
	b := make([]byte, 6)
	if _, err := f.ReadAt(b, regs[1].Offset+0x10); err != nil || string(b) != "shared" {
		t.Errorf("RAM file reads %q, %v", b, err)
	}
	d.Close()
	if _, _, err := d.RAMFile(); err == nil {
		t.Error("RAMFile of a closed domain succeeded")
	}
}

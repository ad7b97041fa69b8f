package testfake

import (
	"errors"
	"slices"
	"testing"
	"time"

	"godm/hyp/xensim"
)

func TestClock(t *testing.T) {
	var c Clock
	var fired []string
	a := c.AfterFunc(10*time.Millisecond, func() { fired = append(fired, "a") })
	c.AfterFunc(20*time.Millisecond, func() { fired = append(fired, "b") })
	c.Advance(9 * time.Millisecond)
	if len(fired) != 0 || c.Now() != 9*time.Millisecond {
		t.Fatalf("at 9ms: fired %v, now %v", fired, c.Now())
	}
	c.Advance(time.Millisecond)
	if !slices.Equal(fired, []string{"a"}) {
		t.Fatalf("at 10ms: fired %v", fired)
	}
	if a.Stop() {
		t.Error("Stop of a fired timer reports it pending")
	}
	if a.Reset(5 * time.Millisecond) {
		t.Error("Reset of a fired timer reports it pending")
	}
	if !a.Stop() {
		t.Error("Stop of a re-armed timer reports it not pending")
	}
	c.Advance(time.Hour)
	if !slices.Equal(fired, []string{"a", "b"}) {
		t.Fatalf("after an hour: fired %v (a stopped, b once)", fired)
	}
	w := c.Wall(time.Unix(1000, 0))
	if got := w.Now(); !got.Equal(time.Unix(1000, 0).Add(time.Hour + 10*time.Millisecond)) {
		t.Errorf("wall = %v", got)
	}
}

func TestRecorder(t *testing.T) {
	var r Recorder
	for _, l := range []bool{true, true, false, true, false} {
		r.SetLevel(l)
	}
	if r.Calls() != 5 || r.Rises() != 2 || !r.Repeated() || r.Level() {
		t.Errorf("calls %d rises %d repeated %v level %v", r.Calls(), r.Rises(), r.Repeated(), r.Level())
	}
	if got := r.Levels(); !slices.Equal(got, []bool{true, true, false, true, false}) {
		t.Errorf("Levels %v", got)
	}
	if got := r.TakeLevels(); !slices.Equal(got, []bool{true, true, false, true, false}) {
		t.Errorf("levels %v", got)
	}
	if got := r.TakeEdges(); !slices.Equal(got, []bool{true, false, true, false}) {
		t.Errorf("edges %v", got)
	}
	if r.TakeEdges() != nil || r.TakeLevels() != nil {
		t.Error("Take did not clear")
	}
	r.Grow(16, 8) // AllocsPerRun(4) calls f five times
	if n := testing.AllocsPerRun(4, func() { r.SetLevel(true); r.SetLevel(false); r.SendMSI(1, 2) }); n != 0 {
		t.Errorf("recording after Grow: %v allocs", n)
	}
	r.TakeLevels()
	r.TakeEdges()
	r.TakeMSIs()
	go r.SendMSI(0xfee00000, 0x41)
	WaitFor(t, 10*time.Second, "the MSI", func() bool { return len(r.MSIs()) == 1 })
	if got := r.TakeMSIs(); !slices.Equal(got, []MSI{{0xfee00000, 0x41}}) {
		t.Errorf("MSIs %v", got)
	}
	r.INTx(3, 0, 1).SetLevel(true)
	if !r.Pin(3, 0, 1).Level() || r.Pin(3, 0, 2).Level() || r.Level() {
		t.Error("INTx pins are not separate lines")
	}
	if Until(time.Millisecond, func() bool { return false }) {
		t.Error("Until of a false condition succeeded")
	}
}

func TestXen(t *testing.T) {
	x := NewXen(t, xensimConfig(), RAM(2, 1<<20))
	if x.VCPU(1) == nil || x.Dom.ID() == 0 {
		t.Fatalf("domain %d, vCPU 1 %v", x.Dom.ID(), x.VCPU(1))
	}
	var closed bool
	t.Run("cleanup", func(t *testing.T) {
		s := NewSim(t, xensimConfig())
		t.Cleanup(func() {
			// Registered after NewSim's: runs first, the sim still open.
			_, err := s.CreateDomain(RAM(1, 1<<20))
			closed = err != nil
		})
	})
	if closed {
		t.Error("the sim was closed before the test's later cleanups")
	}
}

func xensimConfig() xensim.Config { return xensim.Config{} }

func TestDMOps(t *testing.T) {
	var d DMOps
	if err := d.SetISAIRQLevel(4, true); err != nil {
		t.Fatal(err)
	}
	d.SetPCIIntxLevel(0, 0, 5, 1, true)
	d.SetPCIIntxLevel(1, 2, 5, 3, false)
	d.InjectMSI(0xfee00000, 0x4031)
	d.SetPCILinkRoute(2, 11)
	boom := errors.New("boom")
	d.Fail(boom)
	if err := d.RemoteShutdown(1); err != boom {
		t.Errorf("RemoteShutdown after Fail = %v", err)
	}
	want := []string{"isa 4=true", "intx 5.1=true", "intx 0001:02:5.3=false", "msi 0xfee00000 0x4031", "route 2->11", "shutdown 1"}
	if got := d.Events(); !slices.Equal(got, want) {
		t.Errorf("Events = %q, want %q", got, want)
	}
	if got := d.Take(); !slices.Equal(got, want) {
		t.Errorf("Take = %q, want %q", got, want)
	}
	if got := d.Take(); len(got) != 0 {
		t.Errorf("second Take = %q", got)
	}
}

package ioreq_test

import (
	"testing"
	"time"

	"godm/hyp/xenabi"
	"godm/hyp/xensim"
)

// Pause holds every worker between requests, buffered ring included: a
// vCPU's access and buffered writes wait while paused and are served, in
// order, on Resume; pausing before Serve parks the workers as they start;
// Close ends a paused server.
func TestXenPauseResume(t *testing.T) {
	for _, early := range []bool{false, true} {
		r := newRig(t, rigOpts{vcpus: 2, noServe: early})
		c := &counter{}
		must(t, r.bus.PIO.Register(0x500, 4, c))
		v := r.dom.VCPU(0)
		if !early {
			must(t, v.Out(0x500, 1, 0)) // served: the workers run
		}
		r.srv.Pause()
		r.srv.Pause() // a second Pause changes nothing
		if early {
			r.startServe(t)
		}
		before := r.counters()
		for range 3 {
			res, err := v.BufferedWrite(xenabi.IOREQ_TYPE_PIO, 0x500, 1, 0)
			must(t, err)
			if res != xensim.Buffered {
				t.Fatalf("buffered write delivered %v", res)
			}
		}
		done := make(chan uint64, 1)
		go func() {
			got, err := r.dom.VCPU(1).In(0x500, 4)
			if err != nil {
				t.Error(err)
			}
			done <- got
		}()
		select {
		case got := <-done:
			t.Fatalf("early=%v: a request was served while paused (%d)", early, got)
		case <-time.After(100 * time.Millisecond):
		}
		if after := r.counters(); after != before || c.n.Load() != map[bool]uint64{false: 1, true: 0}[early] {
			t.Fatalf("early=%v: served while paused: %+v -> %+v, %d writes", early, before, after, c.n.Load())
		}
		r.srv.Resume()
		want := uint64(4)
		if early {
			want = 3
		}
		if got := <-done; got != want {
			t.Errorf("early=%v: read after resume = %d, want %d (buffered writes first)", early, got, want)
		}
	}
	// Close while paused ends Serve.
	r := newRig(t, rigOpts{})
	must(t, r.bus.PIO.Register(0x500, 4, &counter{}))
	must(t, r.dom.VCPU(0).Out(0x500, 1, 0)) // Serve runs
	r.srv.Pause()
	must(t, r.srv.Close())
	select {
	case err := <-r.serve:
		if err != nil {
			t.Errorf("Serve after Close while paused: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve still running 30 s after Close of a paused server")
	}
}

package uart

import (
	"errors"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"godm/devices/chardev"
	"godm/internal/testfake"
)

// hostEnd is the host side of a chardev.Stream over two pipes: it writes
// the UART's input and reads its output on a goroutine that the script
// can stall.
type hostEnd struct {
	in  *os.File // host → UART
	out *os.File // UART → host

	mu       sync.Mutex
	cond     *sync.Cond
	stalled  bool
	received []byte
	done     chan struct{}
}

func newHostEnd(t *testing.T) (*hostEnd, *chardev.Stream) {
	t.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		t.Fatal(err)
	}
	h := &hostEnd{in: inW, out: outR, done: make(chan struct{})}
	h.cond = sync.NewCond(&h.mu)
	go h.readLoop()
	// A small ring so that a stalled host makes the backend drop.
	return h, chardev.NewStream(inR, outW, chardev.Options{OutputBuffer: 16, FlushTimeout: 50 * time.Millisecond})
}

func (h *hostEnd) readLoop() {
	defer close(h.done)
	buf := make([]byte, 64)
	for {
		h.mu.Lock()
		for h.stalled {
			h.cond.Wait()
		}
		h.mu.Unlock()
		n, err := h.out.Read(buf)
		h.mu.Lock()
		h.received = append(h.received, buf[:n]...)
		h.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (h *hostEnd) stall(on bool) {
	h.mu.Lock()
	h.stalled = on
	h.mu.Unlock()
	h.cond.Broadcast()
}

// isSubsequence reports whether sub is s with some bytes left out.
func isSubsequence(sub, s []byte) bool {
	for _, b := range sub {
		for len(s) > 0 && s[0] != b {
			s = s[1:]
		}
		if len(s) == 0 {
			return false
		}
		s = s[1:]
	}
	return true
}

// within runs f on another goroutine and fails the test if it does not
// return within d; f must not call t.Fatal.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
	}
}

// FuzzBackend runs a script of guest accesses, host input, time passing,
// resets and a host that stops and resumes reading against a UART on a
// real chardev.Stream (its reader and writer goroutines) over pipes. It
// checks the UART's invariants after every step while the backend's reader
// delivers input concurrently; that the script and Close finish within a
// bound however the host behaves (guest accesses never wait for the host);
// that what the host read is the bytes the guest transmitted, in order,
// with only dropped bytes missing, and every transmitted byte was either
// queued or counted as dropped; that the bytes the guest read from RBR
// are the host's input in order (without loopback); and that no goroutine
// outlives Close.
func FuzzBackend(f *testing.F) {
	f.Add([]byte{0x02, 0xc7, 0x01, 0x05, 0xc0, 'a', 0x85, 0x00, 0x80, 0x00, 0x00, 'x', 0x00, 'y'})
	f.Add([]byte{0xe0, 0x01, 0x00, 'a', 0x00, 'b', 0x00, 'c', 0x00, 'd', 0x00, 'e', 0x00, 'f', 0xe0, 0x00, 0x00, 'g'})
	f.Add([]byte{0x04, 0x10, 0x00, 'l', 0x85, 0x00, 0x80, 0x00, 0x04, 0x08, 0xc0, 'q', 0xd0, 0x20, 0xf0, 0x00})
	f.Add([]byte{0x03, 0x80, 0x00, 0x01, 0x01, 0x00, 0x03, 0x03, 0x00, 'z', 0xc0, '1', 0x85, 0x00, 0x80, 0x00})
	f.Fuzz(func(t *testing.T, script []byte) {
		if len(script) > 2048 {
			script = script[:2048]
		}
		base := runtime.NumGoroutine()
		host, be := newHostEnd(t)
		r := &rig{t: t, line: &testfake.Recorder{}, clock: &testfake.Clock{}}
		r.u = New(Config{IRQ: r.line, Backend: be, Clock: r.clock})
		var sent, input, got []byte
		dlab, loop, loopSeen := false, false, false
		// A guest access that waits for the host hangs the script: the
		// watchdog turns that into a crash with every goroutine's stack.
		watchdog := time.AfterFunc(10*time.Second, func() {
			panic("uart: a guest access or host event blocked for 10 s")
		})
		// A check that fails mid-script ends this function at once: the
		// watchdog must not fire later (it would crash the worker with
		// a wrong message while the input is minimized), and the UART,
		// backend and pipes are let go without waiting for them.
		closed := false
		defer func() {
			watchdog.Stop()
			if !closed {
				go func() {
					r.u.Close()
					be.Close()
					host.in.Close()
					host.out.Close()
				}()
			}
		}()
		func() {
			for i := 0; i+1 < len(script); i += 2 {
				op, v := script[i], script[i+1]
				off := uint64(op & 7)
				switch op >> 4 {
				case 0x0, 0x1, 0x2, 0x3:
					switch {
					case off == regRBR && !dlab && !loop:
						sent = append(sent, v)
					case off == regLCR:
						dlab = v&lcrDLAB != 0
					case off == regMCR:
						loop = v&mcrLoop != 0
						loopSeen = loopSeen || loop
					}
					r.out(off, v)
				case 0x8, 0x9, 0xa, 0xb:
					if off == regRBR && !dlab {
						if r.in(regLSR)&lsrDR != 0 {
							got = append(got, r.in(regRBR))
						}
						break
					}
					r.in(off)
				case 0xc:
					p := []byte{v, v + 1, v + 2}
					input = append(input, p...)
					if _, err := host.in.Write(p); err != nil {
						t.Fatalf("host write: %v", err)
					}
				case 0xd:
					r.clock.Advance(time.Duration(v) * time.Millisecond)
				case 0xe:
					host.stall(v&1 != 0)
				case 0xf:
					r.u.Reset()
					dlab, loop = false, false
				}
				checkInvariants(t, r, i/2)
			}
		}()
		watchdog.Stop()
		host.stall(false)
		closed = true // from here on the closing is the test's
		within(t, 5*time.Second, "closing the UART and its backend", func() {
			r.u.Close()
			if err := be.Close(); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("backend Close: %v", err)
			}
		})
		host.in.Close()
		within(t, 5*time.Second, "the host reader", func() { <-host.done })
		host.out.Close()
		st := r.u.Stats()
		if st.Transmitted+st.TxDropped != uint64(len(sent)) {
			t.Fatalf("transmitted %d + dropped %d, guest wrote %d bytes to THR", st.Transmitted, st.TxDropped, len(sent))
		}
		if !isSubsequence(host.received, sent) {
			t.Fatalf("host read %q, not a subsequence of the transmitted %q", host.received, sent)
		}
		if !loopSeen && !isSubsequence(got, input) {
			t.Fatalf("guest read %q, not a subsequence of the host's input %q", got, input)
		}
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > base {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
			}
			runtime.Gosched()
		}
	})
}

package netback

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// portBE is a Port as a whole back-end (its far side driven by the test).
type portBE struct{ *Port }

func (p portBE) Close() error { p.Shutdown(); return nil }

// frameOf fills a frame of p's pool with b.
func frameOf(t *testing.T, p *Port, b []byte) *Frame {
	t.Helper()
	f := p.Pool().Get()
	if f == nil {
		t.Fatal("pool empty")
	}
	copy(f.Buf(), b)
	f.SetLen(len(b))
	return f
}

func ethFrame(i byte) []byte {
	b := make([]byte, 60)
	copy(b, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0, 0, 1, 0x08, 0x06})
	b[20] = i
	return b
}

// waitPop waits for a frame on q.
func waitPop(t *testing.T, q *Queue) *Frame {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if f := q.Pop(); f != nil {
			return f
		}
		select {
		case <-q.Ready:
		case <-time.After(5 * time.Millisecond):
		case <-deadline:
			t.Fatal("no frame")
		}
	}
}

// Spliced ports pass frames both ways, in order; a destination with no
// room holds frames in the source's bounded queue, and they flow once
// room comes.
func TestSplice(t *testing.T) {
	a := NewPort(PortConfig{Depth: 4})
	b := NewPort(PortConfig{Depth: 4})
	defer a.Shutdown()
	defer b.Shutdown()
	stop := Splice(portBE{a}, portBE{b})
	defer stop()
	// a's far side delivers toward "its guest": b transmits it.
	for i := byte(0); i < 3; i++ {
		if !a.Deliver(frameOf(t, a, ethFrame(i))) {
			t.Fatal("deliver refused")
		}
	}
	for i := byte(0); i < 3; i++ {
		f := waitPop(t, b.TxQueue())
		if !bytes.Equal(f.Bytes(), ethFrame(i)) {
			t.Errorf("frame %d arrived as % x", i, f.Bytes()[:24])
		}
		f.Release()
	}
	// The other way.
	b.Deliver(frameOf(t, b, ethFrame(9)))
	if f := waitPop(t, a.TxQueue()); !bytes.Equal(f.Bytes(), ethFrame(9)) {
		t.Errorf("b→a frame % x", f.Bytes()[:24])
	} else {
		f.Release()
	}
	// Back-pressure: nobody drains b's tx queue (depth 4); a's queue
	// (depth 4) then fills and refuses, nothing grows.
	sent := 0
	for i := 0; i < 20; i++ {
		f := a.Pool().Get()
		if f == nil {
			break
		}
		copy(f.Buf(), ethFrame(byte(i)))
		f.SetLen(60)
		if a.Deliver(f) {
			sent++
		}
		time.Sleep(time.Millisecond)
	}
	if sent > 8+1 || b.TxQueue().Len() > b.TxQueue().Cap() {
		t.Errorf("%d frames taken with both queues of 4: something buffers without bound", sent)
	}
	got := 0
	for got < sent {
		f := waitPop(t, b.TxQueue())
		f.Release()
		got++
	}
}

// A packet socket back-end: one message per frame both ways, and the
// peer's close is noticed.
func TestPacketFD(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	be, err := OpenPacketFD(fds[0], "test", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	if _, err := unix.Write(fds[1], ethFrame(1)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var f *Frame
	for f = be.RxPeek(); f == nil && time.Now().Before(deadline); f = be.RxPeek() {
		time.Sleep(time.Millisecond)
	}
	if f == nil || !bytes.Equal(f.Bytes(), ethFrame(1)) {
		t.Fatalf("received %v", f)
	}
	be.RxPop().Release()
	out := be.TxFrame()
	copy(out.Buf(), ethFrame(2))
	out.SetLen(60)
	be.Transmit(out)
	buf := make([]byte, 2048)
	n, err := unix.Read(fds[1], buf)
	if err != nil || !bytes.Equal(buf[:n], ethFrame(2)) {
		t.Fatalf("peer read %d bytes, %v", n, err)
	}
	unix.Close(fds[1])
	select {
	case <-be.PeerClosed():
	case <-time.After(10 * time.Second):
		t.Fatal("the peer's close went unnoticed")
	}
	if err := be.Close(); err != nil && !errors.Is(err, unix.EBADF) {
		t.Errorf("Close: %v", err)
	}
}

package chardev

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const waitLimit = 10 * time.Second

// collector is a Sink that records what it takes, taking at most limit
// bytes per call (0 = unlimited), and signals every call.
type collector struct {
	mu    sync.Mutex
	got   []byte
	limit int
	calls chan struct{}
}

func newCollector(limit int) *collector {
	return &collector{limit: limit, calls: make(chan struct{}, 1024)}
}

func (c *collector) Receive(p []byte) int {
	c.mu.Lock()
	n := len(p)
	if c.limit > 0 && n > c.limit {
		n = c.limit
	}
	c.got = append(c.got, p[:n]...)
	c.mu.Unlock()
	select {
	case c.calls <- struct{}{}:
	default:
	}
	return n
}

func (c *collector) bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.got...)
}

// waitFor polls cond each time the collector is called, failing after
// waitLimit.
func (c *collector) waitFor(t *testing.T, want []byte, kick func()) {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		if got := c.bytes(); bytes.Equal(got, want) {
			return
		}
		if kick != nil {
			kick()
		}
		select {
		case <-c.calls:
		case <-deadline.C:
			t.Fatalf("sink got %q, want %q", c.bytes(), want)
		}
	}
}

// hooked returns Options whose hook feeds a channel, and a function that
// waits (bounded) for cond to hold, re-checking after each event.
func hooked(opt Options) (Options, func(t *testing.T, what string, cond func() bool)) {
	ch := make(chan event, 4096)
	opt.hook = func(e event) {
		select {
		case ch <- e:
		default:
		}
	}
	return opt, func(t *testing.T, what string, cond func() bool) {
		t.Helper()
		deadline := time.NewTimer(waitLimit)
		defer deadline.Stop()
		for !cond() {
			select {
			case <-ch:
			case <-deadline.C:
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
}

func readFull(t *testing.T, r io.Reader, n int) []byte {
	t.Helper()
	buf := make([]byte, n)
	done := make(chan error, 1)
	go func() { _, err := io.ReadFull(r, buf); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("read: %v", err)
		}
	case <-time.After(waitLimit):
		t.Fatalf("read of %d bytes timed out", n)
	}
	return buf
}

func TestRing(t *testing.T) {
	r := newRing(8)
	for _, tc := range []struct {
		name      string
		put       string
		wantN     int
		consume   int
		wantAfter int
	}{
		{"fits", "abcde", 5, 3, 2},
		{"wraps", "fghijk", 6, 4, 4},
		{"full", "0123456789", 4, 8, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, want := r.put([]byte(tc.put)), tc.wantN; got != want {
				t.Fatalf("put(%q) = %d, want %d", tc.put, got, want)
			}
			n := 0
			for n < tc.consume {
				p := r.peek()
				k := len(p)
				if k > tc.consume-n {
					k = tc.consume - n
				}
				r.consume(k)
				n += k
			}
			if got, want := r.len(), tc.wantAfter; got != want {
				t.Errorf("len = %d, want %d", got, want)
			}
		})
	}
}

func TestNull(t *testing.T) {
	n := NewNull()
	if got, want := n.Write([]byte("hello")), 5; got != want {
		t.Errorf("Write = %d, want %d", got, want)
	}
	if got, want := n.Stats(), (Stats{Written: 5}); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
	if err := n.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
}

// TestCore_DropWhenSlow blocks the host writer and checks that Write
// neither blocks nor loses count of what it dropped.
func TestCore_DropWhenSlow(t *testing.T) {
	c := newCore(Options{OutputBuffer: 16})
	entered := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	var mu sync.Mutex
	var host []byte
	c.startWriter(func(p []byte) (int, error) {
		once.Do(func() { close(entered); <-release })
		mu.Lock()
		host = append(host, p...)
		mu.Unlock()
		return len(p), nil
	}, nil)
	if got := c.Write([]byte{'x'}); got != 1 {
		t.Fatalf("first Write = %d, want 1", got)
	}
	<-entered // the writer holds 'x' in the ring, blocked in the host
	big := bytes.Repeat([]byte{'y'}, 20)
	if got, want := c.Write(big), 15; got != want {
		t.Errorf("Write(20 bytes) into 15 free = %d, want %d", got, want)
	}
	if got, want := c.Stats().Dropped, uint64(5); got != want {
		t.Errorf("Dropped = %d, want %d", got, want)
	}
	close(release)
	c.shutdown(nil)
	c.drain(func(p []byte) (int, error) { mu.Lock(); host = append(host, p...); mu.Unlock(); return len(p), nil })
	mu.Lock()
	defer mu.Unlock()
	if got, want := string(host), "x"+string(big[:15]); got != want {
		t.Errorf("host got %q, want %q", got, want)
	}
}

func TestCore_WriteErrorDrops(t *testing.T) {
	c := newCore(Options{})
	done := make(chan struct{})
	c.startWriter(func(p []byte) (int, error) {
		defer close(done)
		return 2, errors.New("boom")
	}, nil)
	c.Write([]byte("abcdef"))
	<-done
	c.shutdown(nil)
	if got, want := c.Stats(), (Stats{Written: 2, Dropped: 4}); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

func TestStream_PipeRoundTrip(t *testing.T) {
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer inW.Close()
	defer outR.Close()
	s := NewStream(inR, outW, Options{})
	sink := newCollector(1) // one byte per offer: exercises Ready
	s.Attach(sink)

	if got, want := s.Write([]byte("to host")), 7; got != want {
		t.Fatalf("Write = %d, want %d", got, want)
	}
	if got, want := string(readFull(t, outR, 7)), "to host"; got != want {
		t.Errorf("host read %q, want %q", got, want)
	}
	if _, err := inW.Write([]byte("from host")); err != nil {
		t.Fatal(err)
	}
	sink.waitFor(t, []byte("from host"), s.Ready)
	if err := s.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if got, want := s.Stats().Received, uint64(9); got != want {
		t.Errorf("Received = %d, want %d", got, want)
	}
	if got := s.Write([]byte("late")); got != 0 {
		t.Errorf("Write after Close = %d, want 0", got)
	}
}

func TestStream_NoSinkDiscards(t *testing.T) {
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	opt, wait := hooked(Options{})
	s := NewStream(inR, nil, opt)
	defer s.Close()
	inW.Write([]byte("abc"))
	inW.Close() // EOF ends the reader after the bytes
	wait(t, "3 discarded bytes", func() bool { return s.Stats().Discarded == 3 })
}

func TestOpenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.txt")
	s, err := OpenFile(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("line 1\n"))
	s.Write([]byte("line 2\n"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := "line 1\nline 2\n"; string(got) != want {
		t.Errorf("file = %q, want %q", got, want)
	}
}

func TestOpenFile_BadPath(t *testing.T) {
	_, err := OpenFile(filepath.Join(t.TempDir(), "missing", "x"), Options{})
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("OpenFile error = %v, want ErrNotExist", err)
	}
}

func TestStdio(t *testing.T) {
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer inR.Close()
	defer inW.Close()
	defer outR.Close()
	defer outW.Close()
	s, err := Stdio(inR, outW, Options{})
	if err != nil {
		t.Fatal(err)
	}
	sink := newCollector(0)
	s.Attach(sink)
	s.Write([]byte("hi"))
	if got := string(readFull(t, outR, 2)); got != "hi" {
		t.Errorf("host read %q, want %q", got, "hi")
	}
	inW.Write([]byte("yo"))
	sink.waitFor(t, []byte("yo"), nil)
	if err := s.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	// The caller's files stay open.
	if _, err := outW.Write([]byte{0}); err != nil {
		t.Errorf("caller's out closed by Close: %v", err)
	}
}

// Stdio must not switch the caller's open file descriptions (the shell's
// terminal) to non-blocking mode, for pipes, terminals and sockets alike,
// neither while it runs nor after Close.
func TestStdioLeavesCallerBlocking(t *testing.T) {
	flags := func(f *os.File) int {
		t.Helper()
		rc, err := f.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var fl int
		rc.Control(func(fd uintptr) { fl, err = unix.FcntlInt(fd, unix.F_GETFL, 0) })
		if err != nil {
			t.Fatal(err)
		}
		return fl
	}
	blocking := func(fd int) *os.File {
		f := os.NewFile(uintptr(fd), "test")
		t.Cleanup(func() { f.Close() })
		return f
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	// os.Pipe gives non-blocking fds; the caller's stdio is blocking.
	if err := unix.SetNonblock(int(pr.Fd()), false); err != nil {
		t.Fatal(err)
	}
	if err := unix.SetNonblock(int(pw.Fd()), false); err != nil {
		t.Fatal(err)
	}
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	sa, sb := blocking(sp[0]), blocking(sp[1])
	cases := []struct {
		name    string
		in, out *os.File
	}{
		{"pipe", pr, pw},
		{"socket", sa, sb},
	}
	if pty, err := OpenPTY("/dev/ptmx", Options{}); err == nil {
		defer pty.Close()
		tty, err := os.OpenFile(pty.Path(), os.O_RDWR|unix.O_NOCTTY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer tty.Close()
		if err := unix.SetNonblock(int(tty.Fd()), false); err != nil {
			t.Fatal(err)
		}
		cases = append(cases, struct {
			name    string
			in, out *os.File
		}{"terminal", tty, tty})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Stdio(tc.in, tc.out, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if tc.name != "socket" { // a socket shares its description while open
				for _, f := range []*os.File{tc.in, tc.out} {
					if flags(f)&unix.O_NONBLOCK != 0 {
						t.Errorf("caller's %s is non-blocking while the backend runs", f.Name())
					}
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			for _, f := range []*os.File{tc.in, tc.out} {
				if flags(f)&unix.O_NONBLOCK != 0 {
					t.Errorf("caller's %s is non-blocking after Close", f.Name())
				}
			}
		})
	}
}

func TestPTY(t *testing.T) {
	const ptmx = "/dev/ptmx"
	if _, err := os.Stat(ptmx); err != nil {
		t.Skipf("no %s on this host: %v", ptmx, err)
	}
	p, err := OpenPTY(ptmx, Options{RetryInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if filepath.Dir(p.Path()) != "/dev/pts" {
		t.Errorf("Path = %q, want /dev/pts/N", p.Path())
	}
	sink := newCollector(0)
	p.Attach(sink)
	slave, err := os.OpenFile(p.Path(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer slave.Close()
	// Raw mode: "\n" is not turned into "\r\n", nothing is echoed.
	p.Write([]byte("a\nb"))
	if got, want := string(readFull(t, slave, 3)), "a\nb"; got != want {
		t.Errorf("slave read %q, want %q", got, want)
	}
	slave.Write([]byte("x\ry"))
	sink.waitFor(t, []byte("x\ry"), nil)
	// The slave goes away (the master reads EIO) and comes back.
	slave.Close()
	slave2, err := os.OpenFile(p.Path(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer slave2.Close()
	slave2.Write([]byte("again"))
	sink.waitFor(t, []byte("x\ryagain"), nil)
	if err := p.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
}

func TestSocket_Reconnect(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	opt, wait := hooked(Options{})
	s, err := Listen(path, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sink := newCollector(0)
	s.Attach(sink)

	want := []byte{}
	for i, msg := range []string{"first", "second"} {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(msg))
		want = append(want, msg...)
		sink.waitFor(t, want, nil)
		if got, want := s.Clients(), uint64(i+1); got != want {
			t.Errorf("Clients = %d, want %d", got, want)
		}
		s.Write([]byte("ack"))
		if got := string(readFull(t, c, 3)); got != "ack" {
			t.Errorf("client %d read %q, want ack", i, got)
		}
		c.Close()
		wait(t, "the server to drop the closed client", func() bool { return s.conn.Load() == nil })
	}
	before := s.Stats().Dropped
	s.Write([]byte("nobody"))
	wait(t, "6 dropped bytes", func() bool { return s.Stats().Dropped == before+6 })
	if err := s.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file still present after Close: %v", err)
	}
}

func TestSocket_CloseWithClient(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	opt, wait := hooked(Options{})
	s, err := Listen(path, opt)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("x")) // no sink: discarded once the server reads it
	wait(t, "the server to read from the client", func() bool { return s.Stats().Discarded == 1 })
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close = %v", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("Close hung with a connected client")
	}
}

func TestWrite_ZeroAlloc(t *testing.T) {
	c := newCore(Options{OutputBuffer: 1 << 20})
	p := []byte("x")
	if n := testing.AllocsPerRun(1000, func() { c.Write(p); c.Ready() }); n != 0 {
		t.Errorf("Write+Ready allocs = %v, want 0", n)
	}
}

// TestStream_CloseWithStalledReader: the host never reads, the writer
// goroutine blocks in write(2); Close must still return, dropping the rest.
func TestStream_CloseWithStalledReader(t *testing.T) {
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	opt, wait := hooked(Options{FlushTimeout: 10 * time.Millisecond})
	s := NewStream(nil, outW, opt)
	// Fill the pipe exactly, then queue one more chunk: the writer blocks
	// in write(2) with it.
	// (Through SyscallConn: File.Fd would switch the pipe to blocking
	// mode.)
	var pipeSize int
	rc, err := outW.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if cerr := rc.Control(func(fd uintptr) { pipeSize, err = unix.FcntlInt(fd, unix.F_GETPIPE_SZ, 0) }); cerr != nil || err != nil {
		t.Fatal(cerr, err)
	}
	fill := make([]byte, pipeSize)
	total := uint64(0)
	for off := 0; off < len(fill); off += 4096 {
		end := min(off+4096, len(fill))
		total += uint64(s.Write(fill[off:end]))
	}
	wait(t, "the pipe to fill", func() bool { return s.Stats().Written == uint64(pipeSize) })
	total += uint64(s.Write(bytes.Repeat([]byte{'z'}, 4096)))
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case <-done:
	case <-time.After(waitLimit):
		t.Fatal("Close hung on a blocked writer")
	}
	st := s.Stats()
	if got := st.Written + st.Dropped; got != total {
		t.Errorf("Written+Dropped = %d, want %d (every byte accounted for)", got, total)
	}
	if st.Dropped == 0 {
		t.Error("nothing dropped although the host never read")
	}
}

package evtchn

import (
	"encoding/hex"
	"errors"
	"io/fs"
	"sync"
	"testing"

	"godm/hyp"
	"godm/hyp/internal/kerneltest"
	"godm/hyp/kernel"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

func open(t *testing.T) (*Handle, *kerneltest.Kernel) {
	t.Helper()
	k := kerneltest.New()
	h, err := Open(k)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return h, k
}

func TestOpenNonBlocking(t *testing.T) {
	_, k := open(t)
	evs := k.Events()
	if len(evs) != 1 || evs[0].Kind != "open" || evs[0].Dev != kernel.Evtchn {
		t.Fatalf("events = %+v, want one open of evtchn", evs)
	}
	if evs[0].Flags&unix.O_NONBLOCK == 0 {
		t.Errorf("open flags %#x lack O_NONBLOCK", evs[0].Flags)
	}
}

func TestIoctlEncoding(t *testing.T) {
	tests := []struct {
		name     string
		call     func(h *Handle) (Port, error)
		req      uint
		wantArg  string
		wantPort Port
	}{
		{"bind_interdomain", func(h *Handle) (Port, error) { return h.BindInterdomain(7, 3) },
			xenabi.IOCTL_EVTCHN_BIND_INTERDOMAIN, "0700000003000000", 17},
		{"bind_unbound_port", func(h *Handle) (Port, error) { return h.BindUnboundPort(7) },
			xenabi.IOCTL_EVTCHN_BIND_UNBOUND_PORT, "07000000", 18},
		{"notify", func(h *Handle) (Port, error) { return 0, h.Notify(17) },
			xenabi.IOCTL_EVTCHN_NOTIFY, "11000000", 0},
		{"unbind", func(h *Handle) (Port, error) { return 0, h.Unbind(17) },
			xenabi.IOCTL_EVTCHN_UNBIND, "11000000", 0},
		{"restrict", func(h *Handle) (Port, error) { return 0, h.RestrictDomain(7) },
			xenabi.IOCTL_EVTCHN_RESTRICT_DOMID, "0700", 0},
		{"reset", func(h *Handle) (Port, error) { return 0, h.Reset() },
			xenabi.IOCTL_EVTCHN_RESET, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, k := open(t)
			p, err := tt.call(h)
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			if p != tt.wantPort {
				t.Errorf("port = %d, want %d", p, tt.wantPort)
			}
			evs := k.Ioctls(tt.req)
			if len(evs) != 1 {
				t.Fatalf("%d ioctls %#x, want 1", len(evs), tt.req)
			}
			var got string
			if evs[0].Arg != nil {
				got = hex.EncodeToString(evs[0].Arg.In)
			}
			if got != tt.wantArg {
				t.Errorf("arg = %q, want %q", got, tt.wantArg)
			}
		})
	}
}

func TestErrorsWrapped(t *testing.T) {
	h, k := open(t)
	k.Script = func(*kerneltest.Call) (uintptr, error) { return 0, unix.EPERM }
	calls := map[string]error{
		"BindInterdomain": func() error { _, err := h.BindInterdomain(7, 3); return err }(),
		"BindUnboundPort": func() error { _, err := h.BindUnboundPort(7); return err }(),
		"Unbind":          h.Unbind(3),
		"Notify":          h.Notify(3),
		"Reset":           h.Reset(),
		"RestrictDomain":  h.RestrictDomain(7),
	}
	for name, err := range calls {
		if !errors.Is(err, unix.EPERM) {
			t.Errorf("%s = %v, want EPERM", name, err)
		}
	}
	_, err := h.BindInterdomain(7, 3)
	if got, want := err.Error(), "evtchn: bind_interdomain dom7 port 3: operation not permitted"; got != want {
		t.Errorf("error = %q, want %q", got, want)
	}
}

func TestPending(t *testing.T) {
	tests := []struct {
		name    string
		data    []byte
		err     error
		bufLen  int
		want    []Port
		wantErr error
	}{
		{"none", nil, unix.EAGAIN, 4, nil, nil},
		{"one", []byte{17, 0, 0, 0}, nil, 4, []Port{17}, nil},
		{"three", []byte{1, 0, 0, 0, 2, 0, 0, 0, 0, 1, 0, 0}, nil, 4, []Port{1, 2, 256}, nil},
		{"short read", []byte{1, 0, 0}, nil, 4, nil, ErrShortRead},
		{"device error", nil, unix.EIO, 4, nil, unix.EIO},
		{"empty buffer", nil, nil, 0, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, k := open(t)
			k.Read = func(dev kernel.Device, p []byte) (int, error) {
				if tt.err != nil {
					return 0, tt.err
				}
				return copy(p, tt.data), nil
			}
			buf := make([]Port, tt.bufLen)
			n, err := h.Pending(buf)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("Pending error = %v, want %v", err, tt.wantErr)
			}
			if n != len(tt.want) {
				t.Fatalf("Pending = %d ports, want %d", n, len(tt.want))
			}
			for i, p := range tt.want {
				if buf[i] != p {
					t.Errorf("port %d = %d, want %d", i, buf[i], p)
				}
			}
		})
	}
}

func TestPendingBadReadCount(t *testing.T) {
	h, k := open(t)
	k.Read = func(dev kernel.Device, p []byte) (int, error) { return len(p) + 4, nil }
	if _, err := h.Pending(make([]Port, 1)); err == nil {
		t.Error("Pending with an impossible read count: got nil error")
	}
}

func TestUnmask(t *testing.T) {
	h, k := open(t)
	if err := h.Unmask(0x01020304); err != nil {
		t.Fatalf("Unmask: %v", err)
	}
	var writes []kerneltest.Event
	for _, e := range k.Events() {
		if e.Kind == "write" {
			writes = append(writes, e)
		}
	}
	if len(writes) != 1 || hex.EncodeToString(writes[0].Data) != "04030201" {
		t.Fatalf("writes = %+v, want one of 04030201", writes)
	}
	k.Write = func(dev kernel.Device, p []byte) (int, error) { return 2, nil }
	if err := h.Unmask(1); err == nil {
		t.Error("Unmask with a short write: got nil error")
	}
	k.Write = func(dev kernel.Device, p []byte) (int, error) { return 0, unix.EFAULT }
	if err := h.Unmask(1); !errors.Is(err, unix.EFAULT) {
		t.Errorf("Unmask = %v, want EFAULT", err)
	}
}

func TestClosed(t *testing.T) {
	h, k := open(t)
	if err := h.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := h.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	calls := map[string]error{
		"BindInterdomain": func() error { _, err := h.BindInterdomain(7, 3); return err }(),
		"BindUnboundPort": func() error { _, err := h.BindUnboundPort(7); return err }(),
		"Unbind":          h.Unbind(3),
		"Notify":          h.Notify(3),
		"Unmask":          h.Unmask(3),
		"Pending":         func() error { _, err := h.Pending(make([]Port, 1)); return err }(),
		"Reset":           h.Reset(),
		"RestrictDomain":  h.RestrictDomain(7),
	}
	for name, err := range calls {
		if !errors.Is(err, hyp.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	closes := 0
	for _, e := range k.Events() {
		if e.Kind == "close" {
			closes++
		}
	}
	if closes != 1 {
		t.Errorf("%d closes of the device, want 1", closes)
	}
}

func TestOpenMissing(t *testing.T) {
	k := kerneltest.New()
	k.Missing(kernel.Evtchn)
	if _, err := Open(k); err == nil {
		t.Error("Open without the device: got nil error")
	}
}

func TestFastPathZeroAlloc(t *testing.T) {
	h, k := open(t)
	k.SetQuiet(true)
	buf := make([]Port, 8)
	one := false
	k.Read = func(dev kernel.Device, p []byte) (int, error) {
		if !one {
			return 0, unix.EAGAIN
		}
		p[0] = 17
		return 4, nil
	}
	tests := map[string]func() error{
		"Notify":       func() error { return h.Notify(17) },
		"Unmask":       func() error { return h.Unmask(17) },
		"Pending none": func() error { _, err := h.Pending(buf); return err },
		"Pending one": func() error {
			one = true
			n, err := h.Pending(buf)
			if n != 1 || buf[0] != 17 {
				return errors.New("Pending did not return port 17")
			}
			return err
		},
	}
	for name, call := range tests {
		allocs := testing.AllocsPerRun(1000, func() {
			if err := call(); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s allocates %v times per call, want 0", name, allocs)
		}
	}
}

func TestConcurrentNotifyUnmask(t *testing.T) {
	h, k := open(t)
	const goroutines, calls = 8, 200
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < calls; i++ {
				if err := h.Notify(Port(g)); err != nil {
					errs <- err
					return
				}
				if err := h.Unmask(Port(g)); err != nil {
					errs <- err
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := k.Count(xenabi.IOCTL_EVTCHN_NOTIFY); got != goroutines*calls {
		t.Errorf("%d notifies, want %d", got, goroutines*calls)
	}
	// Every write and notify carries one of the ports sent, intact.
	for _, e := range k.Events() {
		var b []byte
		switch {
		case e.Kind == "write":
			b = e.Data
		case e.Kind == "ioctl":
			b = e.Arg.In
		default:
			continue
		}
		if len(b) != 4 || b[0] >= goroutines || b[1]|b[2]|b[3] != 0 {
			t.Fatalf("%s carried %x, want a port below %d", e.Kind, b, goroutines)
		}
	}
}

func TestOpenHostWithoutXen(t *testing.T) {
	if _, err := Open(kernel.Host{DevDir: t.TempDir()}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open on a host without Xen = %v, want fs.ErrNotExist", err)
	}
}

func TestCloseWhileBusy(t *testing.T) {
	h, _ := open(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	start := make(chan struct{})
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			buf := make([]Port, 4)
			for i := 0; i < 500; i++ {
				for _, err := range []error{h.Notify(Port(i)), h.Unmask(Port(i)), func() error { _, err := h.Pending(buf); return err }()} {
					if err != nil && !errors.Is(err, hyp.ErrClosed) && !errors.Is(err, unix.EBADF) {
						errs <- err
						return
					}
				}
			}
		}()
	}
	close(start)
	if err := h.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("call during Close: %v", err)
	}
}

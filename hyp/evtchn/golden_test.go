package evtchn

import (
	"testing"

	"godm/hyp/internal/golden"
	"godm/hyp/internal/kerneltest"
	"godm/hyp/kernel"

	"golang.org/x/sys/unix"
)

// TestGolden checks each operation against what libxenevtchn hands the
// kernel for the same call (tools/xencapture/driver.c): ioctl arguments
// byte for byte and results, the read of a pending port, the write of an
// unmask, the close.
func TestGolden(t *testing.T) {
	tests := []struct {
		fixture string
		call    func(t *testing.T, h *Handle)
	}{
		{"evtchn_bind_interdomain", func(t *testing.T, h *Handle) {
			if p, err := h.BindInterdomain(7, 3); err != nil || p != 17 {
				t.Errorf("BindInterdomain = %d, %v; want 17 (rc=17)", p, err)
			}
		}},
		{"evtchn_bind_unbound_port", func(t *testing.T, h *Handle) {
			if p, err := h.BindUnboundPort(7); err != nil || p != 18 {
				t.Errorf("BindUnboundPort = %d, %v; want 18 (rc=18)", p, err)
			}
		}},
		{"evtchn_notify", func(t *testing.T, h *Handle) {
			if err := h.Notify(17); err != nil {
				t.Errorf("Notify: %v", err)
			}
		}},
		{"evtchn_pending", func(t *testing.T, h *Handle) {
			// libxenevtchn reads one port at a time: a one-port buffer
			// gives the same read.
			buf := make([]Port, 1)
			if n, err := h.Pending(buf); err != nil || n != 1 || buf[0] != 17 {
				t.Errorf("Pending = %d %v, %v; want 1 [17] (rc=17)", n, buf, err)
			}
		}},
		{"evtchn_unmask", func(t *testing.T, h *Handle) {
			if err := h.Unmask(17); err != nil {
				t.Errorf("Unmask: %v", err)
			}
		}},
		{"evtchn_unbind", func(t *testing.T, h *Handle) {
			if err := h.Unbind(17); err != nil {
				t.Errorf("Unbind: %v", err)
			}
		}},
		{"evtchn_restrict", func(t *testing.T, h *Handle) {
			if err := h.RestrictDomain(7); err != nil {
				t.Errorf("RestrictDomain: %v", err)
			}
		}},
		{"evtchn_close", func(t *testing.T, h *Handle) {
			if err := h.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			f := golden.Load(t, tt.fixture)
			h, k := open(t)
			// The capture's fake kernel answers a read with port 17.
			k.Read = func(dev kernel.Device, p []byte) (int, error) {
				return copy(p, []byte{17, 0, 0, 0}), nil
			}
			k.Reset()
			tt.call(t, h)
			got := k.Events()
			if len(got) != len(f.Events) {
				t.Fatalf("%d events, want %d", len(got), len(f.Events))
			}
			for i := range got {
				kerneltest.CheckEvent(t, got[i], &f.Events[i])
			}
		})
	}
}

// TestGoldenOpen: godm opens the device like libxenevtchn does, plus
// O_NONBLOCK (libxenevtchn opens it blocking and relies on poll; godm
// never blocks in Pending).
func TestGoldenOpen(t *testing.T) {
	f := golden.Load(t, "evtchn_open")
	_, k := open(t)
	got := k.Events()
	if len(got) != 1 || len(f.Events) != 1 {
		t.Fatalf("%d events, fixture %d; want one open each", len(got), len(f.Events))
	}
	want := f.Events[0]
	want.Flags |= unix.O_NONBLOCK
	kerneltest.CheckEvent(t, got[0], &want)
}

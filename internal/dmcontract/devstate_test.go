package dmcontract

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// saverHost is a fakeHost that saves and loads a state string and can
// release its images.
type saverHost struct {
	fakeHost
	state   string
	loaded  string
	loadErr error

	activateErr error
}

func (h *saverHost) SaveState(w io.Writer) error {
	h.rec("save")
	_, err := io.WriteString(w, h.state)
	return err
}

func (h *saverHost) LoadState(r io.Reader) error {
	h.rec("load")
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.loadErr != nil {
		return h.loadErr
	}
	h.loaded = string(b)
	return nil
}

func (h *saverHost) reset() { h.mu.Lock(); h.calls = nil; h.mu.Unlock() }

func (h *saverHost) lastLoaded() string { h.mu.Lock(); defer h.mu.Unlock(); return h.loaded }

func (h *saverHost) ReleaseImages() error { h.rec("release"); return nil }

func (h *saverHost) ActivateImages() error {
	h.rec("activate")
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.activateErr
}

// A failed migration's source: libxl sends cont after the live save
// handed the images over; cont takes them back first, and while another
// process holds one it answers an error and the VM stays stopped (QEMU
// qmp_cont).
func TestContActivatesImages(t *testing.T) {
	dir := t.TempDir()
	h := &saverHost{state: "s"}
	st := NewState(StateConfig{Host: h, OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
		return os.OpenFile(filepath.Join(dir, filepath.Base(name)), flag, perm)
	}})
	c := dial(t, serve(t, st))
	if _, e := c.do("stop", nil); e != "" {
		t.Fatal(e)
	}
	if _, e := c.do("xen-save-devices-state", map[string]any{"filename": "state"}); e != "" {
		t.Fatal(e)
	}
	h.mu.Lock()
	h.activateErr = errors.New(`block: /d.img: Failed to get "write" lock: image is locked by another user`)
	h.mu.Unlock()
	h.reset()
	if _, e := c.do("cont", nil); !strings.Contains(e, `Failed to get "write" lock`) {
		t.Fatalf("cont while the destination holds the image: %q", e)
	}
	if got := h.Calls(); !slices.Equal(got, []string{"activate"}) || st.Status() != StatusPaused {
		t.Errorf("a refused cont did %v, status %s", got, st.Status())
	}
	h.mu.Lock()
	h.activateErr = nil
	h.mu.Unlock()
	h.reset()
	if _, e := c.do("cont", nil); e != "" {
		t.Fatal(e)
	}
	if got := h.Calls(); !slices.Equal(got, []string{"activate", "resume"}) || st.Status() != StatusRunning {
		t.Errorf("cont did %v, status %s", got, st.Status())
	}
	// cont of a running VM activates nothing.
	h.reset()
	if _, e := c.do("cont", nil); e != "" {
		t.Fatal(e)
	}
	if got := h.Calls(); len(got) != 0 {
		t.Errorf("cont of a running VM did %v", got)
	}
}

// xl save's sequence (libxl_qmp.c): stop, then xen-save-devices-state
// with live; a save of a running VM stops and restarts it; loading needs
// a stopped VM; every failure is one QMP error.
func TestSaveLoadDevicesState(t *testing.T) {
	dir := t.TempDir()
	h := &saverHost{state: "the devices' state"}
	var opened []string
	st := NewState(StateConfig{Host: h, OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
		opened = append(opened, name)
		if name == "/dev/fdset/3" {
			name = filepath.Join(dir, "fdset3")
		}
		return os.OpenFile(name, flag, perm)
	}})
	c := dial(t, serve(t, st))

	// A running VM: stopped for the save, started again (QEMU's STOP
	// and RESUME), no image handed over.
	f1 := filepath.Join(dir, "running")
	if _, e := c.do("xen-save-devices-state", map[string]any{"filename": f1}); e != "" {
		t.Fatal(e)
	}
	if got := h.Calls(); !slices.Equal(got, []string{"pause", "save", "resume"}) {
		t.Errorf("save of a running VM did %v", got)
	}
	if b, _ := os.ReadFile(f1); string(b) != h.state {
		t.Errorf("file holds %q", b)
	}
	if st.Status() != StatusRunning {
		t.Errorf("status after the save: %s", st.Status())
	}

	// libxl's way: stop, then a live save to the fd it added.
	h.reset()
	if _, e := c.do("stop", nil); e != "" {
		t.Fatal(e)
	}
	if _, e := c.do("xen-save-devices-state", map[string]any{"filename": "/dev/fdset/3", "live": true}); e != "" {
		t.Fatal(e)
	}
	if got := h.Calls(); !slices.Equal(got, []string{"pause", "save", "release"}) {
		t.Errorf("stop + live save did %v", got)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "fdset3")); string(b) != h.state {
		t.Errorf("fdset file holds %q", b)
	}
	if st.Status() != StatusPaused {
		t.Errorf("status after a save of a stopped VM: %s", st.Status())
	}
	// Not live (xl save to a file): the images stay.
	h.reset()
	if _, e := c.do("xen-save-devices-state", map[string]any{"filename": f1, "live": false}); e != "" {
		t.Fatal(e)
	}
	if got := h.Calls(); !slices.Equal(got, []string{"save"}) {
		t.Errorf("non-live save did %v", got)
	}

	// Loading: into the stopped VM.
	h.reset()
	if _, e := c.do("xen-load-devices-state", map[string]any{"filename": f1}); e != "" {
		t.Fatal(e)
	}
	if got := h.lastLoaded(); got != h.state {
		t.Errorf("loaded %q", got)
	}
	h.mu.Lock()
	h.loadErr = errors.New("the stream is for 64 MiB of RAM, this machine has 32 MiB")
	h.mu.Unlock()
	if _, e := c.do("xen-load-devices-state", map[string]any{"filename": f1}); !strings.Contains(e, "An IO error has occurred: the stream is for 64 MiB") {
		t.Errorf("a refused stream: %q", e)
	}
	if _, e := c.do("cont", nil); e != "" {
		t.Fatal(e)
	}
	if _, e := c.do("xen-load-devices-state", map[string]any{"filename": f1}); !strings.Contains(e, "Cannot update device state while vm is running") {
		t.Errorf("load into a running VM: %q", e)
	}

	for _, bad := range []struct {
		cmd  string
		args map[string]any
		want string
	}{
		{"xen-save-devices-state", nil, "Parameter 'filename' is missing"},
		{"xen-save-devices-state", map[string]any{"filename": f1, "x": 1}, "Parameter 'x' is unexpected"},
		{"xen-save-devices-state", map[string]any{"filename": f1, "live": "yes"}, "Invalid parameter type for 'live', expected: boolean"},
		{"xen-save-devices-state", map[string]any{"filename": filepath.Join(dir, "no", "such")}, "Could not open VM state file"},
		{"xen-load-devices-state", map[string]any{"filename": 3}, "Invalid parameter type for 'filename', expected: string"},
	} {
		if _, e := c.do(bad.cmd, bad.args); !strings.Contains(e, bad.want) {
			t.Errorf("%s %v: %q, want %q", bad.cmd, bad.args, e, bad.want)
		}
	}
	if !slices.Contains(opened, "/dev/fdset/3") {
		t.Errorf("the OpenFile hook was not used: %v", opened)
	}
}

// A machine that cannot save says so; the probe has no machine.
func TestSaveWithoutSaver(t *testing.T) {
	c := dial(t, serve(t, NewState(StateConfig{Host: &fakeHost{}})))
	if _, e := c.do("xen-save-devices-state", map[string]any{"filename": "/tmp/x"}); !strings.Contains(e, "this machine cannot save its devices") {
		t.Errorf("save without a saver: %q", e)
	}
	c = dial(t, serve(t, NewState(StateConfig{})))
	if _, e := c.do("xen-save-devices-state", map[string]any{"filename": "/tmp/x"}); !strings.Contains(e, "the machine is 'none'") {
		t.Errorf("save on the probe: %q", e)
	}
}

// After -incoming with -S (libxl's restore under dm_restrict) the run
// state is "paused", not "prelaunch", and the guest starts on cont.
func TestRestoredPrelaunchIsPaused(t *testing.T) {
	h := &saverHost{}
	st := NewState(StateConfig{Prelaunch: true, Restored: true, Host: h})
	c := dial(t, serve(t, st))
	ret, e := c.do("query-status", nil)
	if m, _ := ret.(map[string]any); e != "" || m["status"] != "paused" || m["running"] != false {
		t.Fatalf("query-status after a restore = %v %s", ret, e)
	}
	select {
	case <-st.Started():
		t.Fatal("started before cont")
	default:
	}
	if _, e := c.do("cont", nil); e != "" {
		t.Fatal(e)
	}
	<-st.Started()
	// cont activates the images first (a no-op on active ones).
	if st.Status() != StatusRunning || !slices.Equal(h.Calls(), []string{"activate", "resume"}) {
		t.Errorf("after cont: %s, host calls %v", st.Status(), h.Calls())
	}
}

package e2e

import (
	"errors"
	"io"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"godm/hyp/xenabi"
	"godm/hyp/xensim"
	"godm/internal/guest"
	"godm/internal/machine"
)

// newMachine starts a Machine for t; when t fails, the guest's console and
// godm's log are printed.
func newMachine(t *testing.T, cfg Config) *Machine {
	t.Helper()
	m, err := NewMachine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Close()
		if t.Failed() {
			t.Logf("guest console:\n%s\ngodm log:\n%s", m.Console(), m.LogText())
		}
	})
	return m
}

// goroutines returns the stacks of every goroutine but the caller's, by id.
func goroutines() map[string]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	all := strings.Split(string(buf), "\n\n")
	out := make(map[string]string, len(all))
	for _, g := range all[1:] { // the first is the caller
		id, _, _ := strings.Cut(strings.TrimPrefix(g, "goroutine "), " ")
		out[id] = g
	}
	return out
}

// leftovers returns the goroutines running godm's code (any godm package,
// the harness included, the tests' own bodies excluded) that are not in
// before.
func leftovers(before map[string]string) []string {
	var left []string
	for id, g := range goroutines() {
		if _, ok := before[id]; ok {
			continue
		}
		for _, line := range strings.Split(g, "\n") {
			if strings.HasPrefix(line, "godm/") && !strings.HasPrefix(line, "godm/internal/e2e.Test") {
				left = append(left, g)
				break
			}
		}
	}
	sort.Strings(left)
	return left
}

// waitLeftovers polls leftovers until none is left or limit passes, and
// returns what is left.
func waitLeftovers(before map[string]string, limit time.Duration) []string {
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	left := leftovers(before)
	for len(left) > 0 && time.Now().Before(deadline) {
		<-tick.C
		left = leftovers(before)
	}
	return left
}

// checkTeardown checks what must hold once the guest stopped with reason
// (xenabi.SHUTDOWN_poweroff or SHUTDOWN_reboot) and Run returned: godm
// asked Xen to shut the domain down with reason last, the toolstack
// destroyed the domain, godm's Serve ended by itself with ErrDomainGone,
// every ioreq server godm created is destroyed, QEMU was reaped, the
// machine closes cleanly and, after owned (the test's own backends and
// devices) are closed too, no goroutine of godm's started since before is
// left (bounded wait).
func checkTeardown(t *testing.T, m *Machine, res *guest.Result, reason uint64, before map[string]string, owned ...io.Closer) {
	t.Helper()
	select {
	case <-m.Served():
		if err := m.ServeErr(); !errors.Is(err, machine.ErrDomainGone) {
			t.Errorf("godm's Serve returned %v, want ErrDomainGone", err)
		}
	default:
		t.Errorf("godm's Serve still running after the toolstack destroyed the domain")
	}
	// Cumulative counts, not a walk of the event ring: a long run wraps
	// the ring and drops the create event.
	dom := m.Dom.ID()
	created := m.Sim.Count(dom, xensim.EventIOReqServer, "create")
	destroyed := m.Sim.Count(dom, xensim.EventIOReqServer, "destroy")
	if created != 1 || destroyed != 1 {
		t.Errorf("ioreq servers created %d destroyed %d, want 1 and 1", created, destroyed)
	}
	if last, ok := m.Sim.LastEvent(dom, xensim.EventShutdown); !ok || last.Data != reason {
		t.Errorf("%d remote shutdowns, the last %v; want the last to be %d", m.Sim.Count(dom, xensim.EventShutdown, ""), last, reason)
	}
	if _, err := m.Dom.VCPU(0).In(0x80, 1); err == nil {
		t.Errorf("a vCPU of the destroyed domain still gets answers")
	}
	if res.Process == nil || !res.Process.Exited() {
		t.Errorf("QEMU process state %v, want exited", res.Process)
	} else if err := unix.Kill(res.PID, 0); !errors.Is(err, unix.ESRCH) {
		t.Errorf("QEMU pid %d after Run: kill 0 = %v, want ESRCH (reaped)", res.PID, err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("Close after the domain was destroyed: %v", err)
	}
	for _, c := range owned {
		if err := c.Close(); err != nil {
			t.Errorf("closing %T: %v", c, err)
		}
	}
	left := waitLeftovers(before, 5*time.Second)
	if len(left) > 0 {
		t.Errorf("%d goroutines of godm's left 5 s after teardown:\n%s", len(left), strings.Join(left, "\n\n"))
	}
}

// TestGuestResetWithoutReboot: under -no-reboot (the default) a guest
// reset ends QEMU; the harness relays it to godm's PIIX3 reset control
// register, godm asks Xen for SHUTDOWN_reboot, and the toolstack destroys
// the domain (libxl would then build a new one; the harness stops there).
func TestGuestResetWithoutReboot(t *testing.T) {
	a, _ := guestAssets(t)
	before := goroutines()
	m := newMachine(t, Config{})
	res, err := m.Run(t.Context(), guest.Config{
		Assets:  a,
		Script:  "echo RESETTING; reboot -f; sleep 30",
		Timeout: 60 * time.Second,
		WorkDir: t.TempDir(),
	})
	if err != nil {
		t.Fatalf("guest: %v", err)
	}
	if res.Shutdown != "guest-reset" || res.Boots != 1 {
		t.Errorf("QEMU stopped for %q after %d boots, want guest-reset after 1", res.Shutdown, res.Boots)
	}
	if !strings.Contains(res.Console, "RESETTING") {
		t.Errorf("console lacks RESETTING")
	}
	if got := m.M.ISABridge.Stats().Reboots; got != 1 {
		t.Errorf("godm's PIIX3 saw %d reboot requests, want 1", got)
	}
	checkTeardown(t, m, res, xenabi.SHUTDOWN_reboot, before)
}

// TestLeftoversSeesServe: the leak check sees a serving machine's
// goroutines, and none once it is closed (it needs no guest).
func TestLeftoversSeesServe(t *testing.T) {
	before := goroutines()
	m, err := NewMachine(Config{MemMB: 16, VCPUs: 2})
	if err != nil {
		t.Fatal(err)
	}
	if left := leftovers(before); len(left) == 0 {
		t.Errorf("no godm goroutine seen while the machine serves")
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.ServeErr(); err != nil {
		t.Errorf("Serve after Close = %v, want nil", err)
	}
	left := waitLeftovers(before, 5*time.Second)
	if len(left) > 0 {
		t.Errorf("%d goroutines left after Close:\n%s", len(left), strings.Join(left, "\n\n"))
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"godm/block"

	"golang.org/x/sys/unix"
)

// doFD runs a command with fd passed alongside it (SCM_RIGHTS), as
// libxl's payload_fd.
func (q *qmpClient) doFD(cmd string, fd int) (any, string) {
	q.t.Helper()
	q.id++
	b, _ := json.Marshal(map[string]any{"execute": cmd, "id": q.id})
	uc := q.c.(*net.UnixConn)
	if _, _, err := uc.WriteMsgUnix(append(b, '\r', '\n'), unix.UnixRights(fd), nil); err != nil {
		q.t.Fatal(err)
	}
	for {
		r := q.read()
		if ev, ok := r["event"].(string); ok {
			q.events = append(q.events, ev)
			continue
		}
		if e, ok := r["error"].(map[string]any); ok {
			return nil, fmt.Sprint(e["class"], ": ", e["desc"])
		}
		return r["return"], ""
	}
}

// openForGodm opens path read-only as a raw descriptor, as libxl opens
// /var/lib/xen/qemu-resume.<domid> for "-incoming fd:N" (no *os.File:
// godm owns and closes the number).
func openForGodm(t *testing.T, path string) int {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

// saveDevices saves godm's devices as libxl_qmp.c does: open the save
// file in dir, add-fd it (SCM_RIGHTS, no arguments), save to the fdset it
// names. It returns the file's path.
func saveDevices(t *testing.T, q *qmpClient, dir string, live bool) string {
	t.Helper()
	saved := filepath.Join(dir, "qemu-save")
	sf, err := os.OpenFile(saved, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	ret, e := q.doFD("add-fd", int(sf.Fd()))
	sf.Close()
	if e != "" {
		t.Fatal(e)
	}
	set, ok := ret.(map[string]any)["fdset-id"].(float64)
	if !ok {
		t.Fatalf("add-fd returned %v", ret)
	}
	if _, e := q.do("xen-save-devices-state", map[string]any{"filename": fmt.Sprintf("/dev/fdset/%d", int(set)), "live": live}); e != "" {
		t.Fatal(e)
	}
	return saved
}

// xl save then xl restore, as libxl drives the device model: stop and
// xen-save-devices-state on the first godm, then a second godm started
// with -incoming fd:N on the saved state, whose devices read back what
// the guest had set. A damaged or foreign state file ends the second
// godm with one line naming -incoming.
func TestLibxlSaveRestore(t *testing.T) {
	needPTY(t)
	a := newDMRig(t)
	a.start(t, libxlArgv(int(a.dom.ID()), a.dir), nil)
	a.waitReady(t)
	v := a.dom.VCPU(0)
	// The guest sets PIIX3's PIRQ routes and the host bridge's PAM
	// registers (as SeaBIOS does).
	const pirq, pam = 0x0b0a0509, 0x00331100
	if err := v.PCIConfigWrite(1<<3, 0x60, 4, pirq); err != nil {
		t.Fatal(err)
	}
	if err := v.PCIConfigWrite(0, 0x58, 4, pam); err != nil {
		t.Fatal(err)
	}
	q := qmpDial(t, filepath.Join(a.dir, fmt.Sprintf("qmp-libxl-%d", int(a.dom.ID()))))
	if _, e := q.do("stop", nil); e != "" {
		t.Fatal(e)
	}
	saved := saveDevices(t, q, a.dir, false)
	a.stop()
	if err := a.wait(); err != nil {
		t.Fatalf("first godm: %v", err)
	}

	b := newDMRig(t)
	fd := openForGodm(t, saved)
	b.start(t, libxlArgv(int(b.dom.ID()), b.dir)+fmt.Sprintf(" -incoming fd:%d", fd), nil)
	b.waitReady(t)
	vb := b.dom.VCPU(0)
	for _, c := range []struct {
		sbdf, reg uint32
		want      uint64
	}{{1 << 3, 0x60, pirq}, {0, 0x58, pam}} {
		if got, err := vb.PCIConfigRead(c.sbdf, c.reg, 4); err != nil || got != c.want {
			t.Errorf("restored machine: config %#x reg %#x = %#x, %v; saved %#x", c.sbdf, c.reg, got, err, c.want)
		}
	}
	if !strings.Contains(a.log.String(), "godm: device state saved (") {
		t.Errorf("first godm's log: %s", a.log.String())
	}
	if !strings.Contains(b.log.String(), "device state restored") {
		t.Errorf("log: %s", b.log.String())
	}

	// A damaged state file: godm refuses it with one line.
	st, err := os.ReadFile(saved)
	if err != nil {
		t.Fatal(err)
	}
	st[len(st)-1] ^= 0xff
	bad := filepath.Join(b.dir, "bad")
	if err := os.WriteFile(bad, st, 0o600); err != nil {
		t.Fatal(err)
	}
	c := newDMRig(t)
	fd = openForGodm(t, bad)
	c.start(t, libxlArgv(int(c.dom.ID()), c.dir)+fmt.Sprintf(" -incoming fd:%d", fd), nil)
	err = c.wait()
	if err == nil || !strings.HasPrefix(err.Error(), fmt.Sprintf("-incoming fd:%d: ", fd)) || !strings.Contains(err.Error(), "checksum") ||
		strings.Contains(err.Error(), "\n") {
		t.Errorf("godm on a damaged state file: %v", err)
	}
}

// pioSector moves one 512-byte sector at lba through the primary IDE
// channel's data port (WRITE SECTORS 0x30 / READ SECTORS 0x20), as a
// guest does on Xen's legacy-port path.
func pioSector(t *testing.T, r *dmRig, lba uint32, write []byte) []byte {
	t.Helper()
	v := r.dom.VCPU(0)
	out := func(port uint16, size int, val uint64) {
		if err := v.Out(port, size, val); err != nil {
			t.Fatal(err)
		}
	}
	in := func(port uint16, size int) uint64 {
		x, err := v.In(port, size)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	out(0x1f6, 1, 0xe0|uint64(lba>>24&0xf))
	out(0x1f2, 1, 1)
	out(0x1f3, 1, uint64(lba&0xff))
	out(0x1f4, 1, uint64(lba>>8&0xff))
	out(0x1f5, 1, uint64(lba>>16&0xff))
	cmd := uint64(0x20)
	if write != nil {
		cmd = 0x30
	}
	out(0x1f7, 1, cmd)
	if st := in(0x1f7, 1); st&0x09 != 0x08 {
		t.Fatalf("status %#x after command %#x", st, cmd)
	}
	got := make([]byte, 512)
	for i := 0; i < 512; i += 2 {
		if write != nil {
			out(0x1f0, 2, uint64(write[i])|uint64(write[i+1])<<8)
		} else {
			w := in(0x1f0, 2)
			got[i], got[i+1] = byte(w), byte(w>>8)
		}
	}
	if st := in(0x1f7, 1); st&0x89 != 0 {
		t.Fatalf("status %#x after the data of command %#x", st, cmd)
	}
	return got
}

// xl migrate of a domain with a disk on storage both sides share: the
// source's live save hands the image over (its lock released), the
// destination godm started with -incoming takes it and reads what the
// guest wrote before the save, and the source's cont — libxl's answer to
// a migration that failed — is refused while the destination holds the
// image and succeeds once it is gone.
func TestLibxlLiveMigrateDisk(t *testing.T) {
	needPTY(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(img, make([]byte, 8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	disk := " -drive file=" + img + ",if=ide,index=0,media=disk,format=raw,cache=writeback"
	a := newDMRig(t)
	a.start(t, libxlArgv(int(a.dom.ID()), a.dir)+disk, nil)
	a.waitReady(t)
	pattern := make([]byte, 512)
	for i := range pattern {
		pattern[i] = byte(i*7 + 3)
	}
	pioSector(t, a, 5, pattern)
	q := qmpDial(t, filepath.Join(a.dir, fmt.Sprintf("qmp-libxl-%d", int(a.dom.ID()))))
	if _, e := q.do("stop", nil); e != "" {
		t.Fatal(e)
	}
	saved := saveDevices(t, q, a.dir, true)
	if d, err := block.Open(img, block.Options{Format: "raw"}); err != nil {
		t.Fatalf("the source still holds the image after the live save: %v", err)
	} else {
		d.Close()
	}

	b := newDMRig(t)
	fd := openForGodm(t, saved)
	b.start(t, libxlArgv(int(b.dom.ID()), b.dir)+disk+fmt.Sprintf(" -incoming fd:%d", fd), nil)
	b.waitReady(t)
	if got := pioSector(t, b, 5, nil); !bytes.Equal(got, pattern) {
		t.Errorf("the destination reads %x..., want the source's write %x...", got[:8], pattern[:8])
	}
	if _, err := block.Open(img, block.Options{Format: "raw"}); err == nil || !strings.Contains(err.Error(), "lock") {
		t.Errorf("the destination does not hold the image: %v", err)
	}
	if _, e := q.do("cont", nil); !strings.Contains(e, "lock") {
		t.Errorf("the source's cont while the destination runs: %q", e)
	}
	if s := q.status(); s != "paused" {
		t.Errorf("the source's status after a refused cont: %s", s)
	}
	b.stop()
	if err := b.wait(); err != nil {
		t.Fatalf("destination godm: %v", err)
	}
	if _, e := q.do("cont", nil); e != "" {
		t.Fatalf("the source's cont after the destination ended: %s", e)
	}
	if got := pioSector(t, a, 5, nil); !bytes.Equal(got, pattern) {
		t.Errorf("the source, running again, reads %x...", got[:8])
	}
}

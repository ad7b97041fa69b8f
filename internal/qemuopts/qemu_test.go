package qemuopts

import (
	"bufio"
	"encoding/json"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// qemuRAM runs QEMU 7.2 with "-m arg" and returns the RAM size it settled
// on (QMP query-memory-size-summary), or ok=false if QEMU refused the
// option.
func qemuRAM(t *testing.T, bin, arg string) (uint64, bool) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qmp")
	cmd := exec.Command(bin, "-machine", "none", "-nodefaults", "-display", "none", "-S", "-m", arg,
		"-chardev", "socket,id=m,path="+path+",server=on,wait=off", "-mon", "chardev=m,mode=control")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()
	// The socket appears, then accepts; or QEMU exits on a bad option
	// (possibly after creating the socket).
	var c net.Conn
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		select {
		case <-exited:
			return 0, false
		default:
		}
		if conn, err := net.Dial("unix", path); err == nil {
			c = conn
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("-m %s: QEMU neither started nor exited", arg)
		}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	r := bufio.NewReader(c)
	r.ReadString('\n')
	c.Write([]byte(`{"execute":"qmp_capabilities"}` + "\n" + `{"execute":"query-memory-size-summary"}` + "\n"))
	r.ReadString('\n')
	line, err := r.ReadString('\n')
	if err != nil {
		// QEMU may accept the connection and then exit on the option.
		select {
		case <-exited:
			return 0, false
		case <-time.After(30 * time.Second):
			t.Fatalf("-m %s: %v, and QEMU is still running", arg, err)
		}
	}
	var reply struct {
		Return struct {
			Base uint64 `json:"base-memory"`
		} `json:"return"`
	}
	if err := json.Unmarshal([]byte(line), &reply); err != nil {
		t.Fatalf("-m %s: %q: %v", arg, line, err)
	}
	return reply.Return.Base, true
}

// TestSizeMiBAgainstQEMU gives QEMU 7.2 and SizeMiB the same -m values:
// both accept or both refuse, and accepted ones give the same size (QEMU
// then rounds RAM up to 8 KiB).
func TestSizeMiBAgainstQEMU(t *testing.T) {
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skipf("qemu-system-x86_64 not installed (scripts/test.sh installs qemu-system-x86): %v", err)
	}
	// Not compared: a suffix after hex ("0x10k") that QEMU 7.2 still takes
	// with a deprecation warning and later QEMU refuses, as godm does.
	for _, arg := range []string{"56", "1024", "0x10", "0x1A", "2G", "2g", "1.5G", "512k", "64K", "1.k", "100M",
		"1.5", "-1", "16E", "17592186044416", "1.5e3M", "1x", "", "M"} {
		want, ok := qemuRAM(t, bin, arg)
		o, err := Parse("-m", arg, "size")
		if err != nil {
			t.Fatal(err)
		}
		got, err := o.SizeMiB("size", 0)
		if ok != (err == nil) {
			t.Errorf("-m %q: QEMU accepts=%v, SizeMiB error %v", arg, ok, err)
			continue
		}
		if ok && (got+8191)&^8191 != want {
			t.Errorf("-m %q: QEMU %d bytes, SizeMiB %d", arg, want, got)
		}
		if !ok && !strings.HasPrefix(err.Error(), "-m") {
			t.Errorf("-m %q: error %v does not name the option", arg, err)
		}
	}
}

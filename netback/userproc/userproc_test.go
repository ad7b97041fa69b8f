package userproc

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var childPath string

// TestMain builds cmd/godm-usernet once for the package's tests.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "godm-usernet-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	childPath = filepath.Join(dir, Binary)
	out, err := exec.Command("go", "build", "-o", childPath, "godm/cmd/godm-usernet").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building %s: %v: %s\n", Binary, err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func child(*testing.T) string { return childPath }

// arpRequest asks who has 10.0.2.2 (the gateway) from the guest's MAC.
func arpRequest() []byte {
	b := make([]byte, 42)
	copy(b[0:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(b[6:], []byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56})
	copy(b[12:], []byte{0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1})
	copy(b[22:], []byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 10, 0, 2, 15})
	copy(b[38:], []byte{10, 0, 2, 2})
	return b
}

// The child's user-mode network answers the guest: an ARP request for the
// gateway gets QEMU's gateway MAC back through the packet socket; closing
// the back-end ends the child.
func TestChildAnswersARP(t *testing.T) {
	var out bytes.Buffer
	be, err := Start(child(t), "user,id=u0", "u0", &out)
	if err != nil {
		t.Fatal(err)
	}
	f := be.TxFrame()
	copy(f.Buf(), arpRequest())
	f.SetLen(42)
	be.Transmit(f)
	deadline := time.Now().Add(20 * time.Second)
	var reply []byte
	for time.Now().Before(deadline) && reply == nil {
		if r := be.RxPeek(); r != nil {
			b := r.Bytes()
			if len(b) >= 42 && b[12] == 0x08 && b[13] == 0x06 && b[21] == 2 {
				reply = append([]byte(nil), b...)
			}
			be.RxPop().Release()
			continue
		}
		time.Sleep(5 * time.Millisecond)
	}
	if reply == nil {
		t.Fatalf("no ARP reply from the child (its output: %s)", out.String())
	}
	if want := []byte{0x52, 0x55, 0x0a, 0x00, 0x02, 0x02}; !bytes.Equal(reply[22:28], want) || !bytes.Equal(reply[28:32], []byte{10, 0, 2, 2}) {
		t.Errorf("ARP reply sender % x / % x, want the gateway 52:55:0a:00:02:02 10.0.2.2", reply[22:28], reply[28:32])
	}
	done := make(chan error, 1)
	go func() { done <- be.Close() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("Close did not end the child")
	}
	if be.cmd.ProcessState == nil || !be.cmd.ProcessState.Exited() && !strings.Contains(be.cmd.ProcessState.String(), "killed") {
		t.Errorf("child state after Close: %v", be.cmd.ProcessState)
	}
}

// A bad option ends the start with the child's one line; a missing child
// is named.
func TestChildRefusals(t *testing.T) {
	_, err := Start(child(t), "user,id=u0,bogus=1", "u0", nil)
	if err == nil || !strings.Contains(err.Error(), "bogus") || strings.Contains(err.Error(), "\n") {
		t.Errorf("bad option: %v", err)
	}
	// A host port another socket holds: the child's bind fails.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = Start(child(t), "user,id=u0,hostfwd=tcp:"+ln.Addr().String()+"-:22", "u0", nil)
	if err == nil || strings.Contains(err.Error(), "\n") {
		t.Errorf("hostfwd on a taken port: %v", err)
	}
	if _, err := Find(func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), Binary) {
		t.Errorf("Find without the child: %v", err)
	}
	if p, err := Find(func(k string) string { return map[string]string{EnvBinary: "/x/y"}[k] }); err != nil || p != "/x/y" {
		t.Errorf("Find with %s: %q %v", EnvBinary, p, err)
	}
}

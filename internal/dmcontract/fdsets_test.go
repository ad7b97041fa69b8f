package dmcontract

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"godm/internal/qmp"
)

// fdClient is a QMP client that can pass a descriptor with a command, as
// libxl's add-fd does (SCM_RIGHTS with the command's bytes).
type fdClient struct {
	t *testing.T
	c *net.UnixConn
	r *bufio.Reader
}

func dialFD(t *testing.T, path string) *fdClient {
	t.Helper()
	var c net.Conn
	var err error
	for range 100 { // QEMU creates its socket a moment after starting
		if c, err = net.Dial("unix", path); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fc := &fdClient{t: t, c: c.(*net.UnixConn), r: bufio.NewReader(c)}
	fc.read()
	if _, e := fc.do(`{"execute":"qmp_capabilities"}`, nil); e != "" {
		t.Fatal(e)
	}
	return fc
}

func (c *fdClient) read() map[string]any {
	for {
		line, err := c.r.ReadBytes('\n')
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			c.t.Fatal(err)
		}
		if _, ev := m["event"]; !ev {
			return m
		}
	}
}

// do sends msg, with f's descriptor if f is not nil.
func (c *fdClient) do(msg string, f *os.File) (any, string) {
	c.t.Helper()
	var oob []byte
	if f != nil {
		oob = unix.UnixRights(int(f.Fd()))
	}
	if _, _, err := c.c.WriteMsgUnix([]byte(msg+"\n"), oob, nil); err != nil {
		c.t.Fatal(err)
	}
	m := c.read()
	if e, ok := m["error"].(map[string]any); ok {
		return nil, e["class"].(string) + ": " + e["desc"].(string)
	}
	return m["return"], ""
}

// fdScript is libxl's save sequence (add-fd of a file, fdset named
// /dev/fdset/N) and the rest of the fdset and getfd commands, with
// mistakes. "$K" is the descriptor number the K-th add-fd returned on
// the side running the script; a step with pass set sends a descriptor.
var fdScript = []struct {
	msg  string
	pass bool
}{
	{`{"execute":"query-fdsets"}`, false},
	{`{"execute":"add-fd"}`, true},
	{`{"execute":"add-fd","arguments":{"fdset-id":5,"opaque":"qemu-save.7"}}`, true},
	{`{"execute":"add-fd","arguments":{"fdset-id":5}}`, true},
	{`{"execute":"add-fd"}`, true},
	{`{"execute":"add-fd","arguments":{"fdset-id":3}}`, false},
	{`{"execute":"add-fd","arguments":{"fdset-id":-2}}`, true},
	{`{"execute":"add-fd","arguments":{"fdset-id":"5"}}`, true},
	{`{"execute":"add-fd","arguments":{"opaque":7}}`, true},
	{`{"execute":"add-fd","arguments":{"bogus":1}}`, true},
	{`{"execute":"query-fdsets"}`, false},
	{`{"execute":"remove-fd","arguments":{"fdset-id":5,"fd":$2}}`, false},
	{`{"execute":"remove-fd","arguments":{"fdset-id":5,"fd":$2}}`, false},
	{`{"execute":"remove-fd","arguments":{"fdset-id":9}}`, false},
	{`{"execute":"remove-fd","arguments":{"fdset-id":9,"fd":4}}`, false},
	{`{"execute":"remove-fd","arguments":{"fd":4}}`, false},
	{`{"execute":"query-fdsets"}`, false},
	{`{"execute":"remove-fd","arguments":{"fdset-id":5}}`, false},
	{`{"execute":"query-fdsets"}`, false},
	{`{"execute":"getfd","arguments":{"fdname":"mig"}}`, true},
	{`{"execute":"getfd","arguments":{"fdname":"mig"}}`, true},
	{`{"execute":"getfd","arguments":{"fdname":"9lives"}}`, true},
	{`{"execute":"getfd","arguments":{"fdname":"nofd"}}`, false},
	{`{"execute":"getfd"}`, true},
	{`{"execute":"closefd","arguments":{"fdname":"mig"}}`, false},
	{`{"execute":"closefd","arguments":{"fdname":"mig"}}`, false},
	{`{"execute":"query-fdsets"}`, false},
}

var fdRef = regexp.MustCompile(`\$([0-9]+)`)

// runFDScript runs fdScript on a server and returns each answer with the
// descriptor numbers replaced by "$K".
func runFDScript(t *testing.T, c *fdClient, f *os.File) []string {
	var fds []string // the K-th add-fd's descriptor, as text
	var out []string
	for _, step := range fdScript {
		msg := fdRef.ReplaceAllStringFunc(step.msg, func(m string) string {
			var k int
			fmt.Sscan(m[1:], &k)
			if k >= len(fds) {
				t.Fatalf("%s: no add-fd #%d yet", step.msg, k)
			}
			return fds[k]
		})
		var pass *os.File
		if step.pass {
			pass = f
		}
		ret, e := c.do(msg, pass)
		if m, ok := ret.(map[string]any); ok && strings.Contains(msg, "add-fd") {
			fds = append(fds, fmt.Sprint(m["fd"]))
		}
		b, _ := json.Marshal(ret)
		ans := string(b) + e
		for k, fd := range fds {
			ans = strings.ReplaceAll(ans, `"fd":`+fd+`}`, fmt.Sprintf(`"fd":"$%d"}`, k))
			ans = strings.ReplaceAll(ans, `"fd":`+fd+`,`, fmt.Sprintf(`"fd":"$%d",`, k))
			ans = strings.ReplaceAll(ans, `fd:`+fd+`'`, fmt.Sprintf(`fd:$%d'`, k))
		}
		out = append(out, ans)
	}
	return out
}

// TestFDSetsLikeQEMU runs fdScript, passing a real descriptor over the
// socket, on QEMU 7.2 (a QMP socket) and on godm, and compares the
// answers; then checks what godm holds, and that the descriptors close.
func TestFDSetsLikeQEMU(t *testing.T) {
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 is not installed (scripts/test-packages.txt): no QEMU to compare with")
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "qemu-save.7"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	qpath := filepath.Join(t.TempDir(), "q")
	// Running (no -S): QEMU 7.2 defers closing removed descriptors while
	// the VM does not run (monitor_fdset_cleanup's runstate check).
	cmd := exec.Command(bin, "-machine", "none", "-nodefaults", "-display", "none", "-qmp", "unix:"+qpath+",server=on,wait=off")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	want := runFDScript(t, dialFD(t, qpath), f)

	st := NewState(StateConfig{Host: &fakeHost{}})
	got := runFDScript(t, dialFD(t, serve(t, st)), f)
	for i := range fdScript {
		if got[i] != want[i] {
			t.Errorf("%s:\n godm %s\n QEMU %s", fdScript[i].msg, got[i], want[i])
		}
	}
	// What is left: fdset 0 with the first descriptor, and fdset 1.
	if q := st.FDSets().Query(); len(q) != 2 || q[0]["fdset-id"] != int64(1) || q[1]["fdset-id"] != int64(0) {
		t.Errorf("fdsets left %v", q)
	}
	// /dev/fdset/0 opens as a duplicate with the file's access mode.
	d, err := st.FDSets().Open("/dev/fdset/0", unix.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteString("device state"); err != nil {
		t.Error(err)
	}
	d.Close()
	if b, _ := os.ReadFile(f.Name()); string(b) != "device state" {
		t.Errorf("written through /dev/fdset/0: %q", b)
	}
	for _, name := range []string{"/dev/fdset/7", "/dev/fdset/x", "fd:3"} {
		if _, err := st.FDSets().Open(name, unix.O_RDWR); err == nil {
			t.Errorf("Open(%q) succeeded", name)
		}
	}
	if _, err := st.FDSets().Open("/dev/fdset/0", unix.O_RDONLY); err == nil {
		t.Error("a read-only open matched a read-write descriptor")
	}
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// TestFDSetsBounded: a client passing descriptors without end keeps at
// most MaxFdsetFDs (and MaxNamedFDs per monitor); when the last client
// goes, the fdsets' descriptors are closed, as QEMU does.
func TestFDSetsBounded(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	before := openFDs(t)
	st := NewState(StateConfig{Host: &fakeHost{}})
	srv, err := qmp.NewServer(qmp.Config{Commands: st.Commands(), OnDisconnect: st.ClientGone})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "qmp")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	srv.Serve("libxl-cmd", ln)
	c := dialFD(t, path)
	for i := range MaxFdsetFDs + 5 {
		_, e := c.do(`{"execute":"add-fd","arguments":{"fdset-id":1}}`, f)
		if i < MaxFdsetFDs && e != "" {
			t.Fatalf("add-fd #%d: %s", i, e)
		}
		if i >= MaxFdsetFDs && !strings.Contains(e, "Too many file descriptors") {
			t.Fatalf("add-fd #%d beyond the bound: %q", i, e)
		}
	}
	for i := range MaxNamedFDs + 3 {
		_, e := c.do(fmt.Sprintf(`{"execute":"getfd","arguments":{"fdname":"n%d"}}`, i), f)
		if (i < MaxNamedFDs) != (e == "") {
			t.Fatalf("getfd #%d: %q", i, e)
		}
	}
	held := openFDs(t) - before
	// The fdsets, the named descriptors, the server's sockets.
	if held < MaxFdsetFDs+MaxNamedFDs || held > MaxFdsetFDs+MaxNamedFDs+8 {
		t.Errorf("%d descriptors held", held)
	}
	c.c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for len(st.FDSets().Query()) != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if q := st.FDSets().Query(); len(q) != 0 {
		t.Errorf("fdsets after the last client left: %v", q)
	}
	st.FDSets().Close()
	srv.Close()
	if n := openFDs(t); n > before {
		t.Errorf("%d descriptors leaked", n-before)
	}
}

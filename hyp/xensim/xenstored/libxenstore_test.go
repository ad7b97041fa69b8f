package xenstored_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"godm/hyp/xensim/xenstored"
	"godm/hyp/xenstore"
)

// driverSource is the C driver that captured the golden fixtures.
const driverSource = "../../../tools/xencapture/xenstore/driver.c"

// TestLibxenstoreDriver runs Debian's libxenstore, through the capture
// driver, against the simulated xenstored: the driver checks every answer
// (values, errno values, watch events, transaction ids, EAGAIN on a
// conflicting commit) and exits non-zero on a wrong one.
func TestLibxenstoreDriver(t *testing.T) {
	cc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not installed: cannot build the libxenstore driver")
	}
	if _, err := os.Stat("/usr/include/xenstore.h"); err != nil {
		t.Skip("libxenstore headers (/usr/include/xenstore.h, Debian libxen-dev) not installed")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "xsdriver")
	if out, err := exec.Command(cc, "-O1", "-Wall", "-o", bin, driverSource, "-lxenstore").CombinedOutput(); err != nil {
		t.Skipf("cannot build the driver against libxenstore (%v): %s", err, out)
	}
	s := newServer(t)
	sock := filepath.Join(dir, "socket")
	if err := s.Listen(sock); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = []string{"XENSTORED_PATH=" + sock, "XSDRIVER_NOSYNC=1"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("libxenstore driver: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-waited
		t.Fatal("libxenstore driver hung")
	}
}

type fixture struct {
	Seq      int    `json:"seq"`
	Name     string `json:"name"`
	Call     string `json:"call"`
	Messages []struct {
		Dir string `json:"dir"`
		Hex string `json:"hex"`
	} `json:"messages"`
}

// TestReplayGolden sends the requests libxenstore made (the golden
// fixtures, in the driver's order) to a fresh simulated xenstored over
// one connection and checks every reply and watch event byte for byte.
// It needs no C toolchain.
func TestReplayGolden(t *testing.T) {
	files, err := filepath.Glob("../../xenstore/testdata/golden/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden fixtures: %v", err)
	}
	var fixtures []fixture
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var fx fixture
		if err := json.Unmarshal(b, &fx); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		fixtures = append(fixtures, fx)
	}
	slices.SortFunc(fixtures, func(a, b fixture) int { return a.Seq - b.Seq })

	s := xenstored.New(xenstored.Config{})
	defer s.Close()
	conn, err := s.Pipe(0)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	for _, fx := range fixtures {
		for _, m := range fx.Messages {
			raw, err := hex.DecodeString(m.Hex)
			if err != nil {
				t.Fatal(err)
			}
			switch m.Dir {
			case "request":
				if _, err := conn.Write(raw); err != nil {
					t.Fatal(err)
				}
			case "reply":
				h, p, err := xenstore.ReadMsg(conn)
				if err != nil {
					t.Fatalf("%s: %v", fx.Name, err)
				}
				if got := append(h.Append(nil), p...); !bytes.Equal(got, raw) {
					t.Errorf("%s (%s):\n got  %x\n want %x", fx.Name, fx.Call, got, raw)
				}
			}
		}
	}
}

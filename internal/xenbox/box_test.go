package xenbox

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A box whose console stays silent after the debug keys is wedged; one
// that answers them is not.
func TestWatchStall(t *testing.T) {
	for _, answers := range []bool{false, true} {
		r, w := io.Pipe()
		var last atomic.Int64
		start := time.Now().Add(-time.Second)
		last.Store(int64(time.Millisecond)) // the toolstack came up, then silence
		keys := make(chan string, 4)
		go func() {
			b := make([]byte, 64)
			for {
				n, err := r.Read(b)
				if err != nil {
					return
				}
				keys <- string(b[:n])
				if answers {
					last.Store(int64(time.Since(start))) // Xen's dump
				}
			}
		}()
		done := make(chan struct{})
		got := make(chan bool, 1)
		go func() { got <- watchStall(w, &last, start, 40*time.Millisecond, 80*time.Millisecond, done) }()
		select {
		case k := <-keys:
			if k != stallKeys {
				t.Fatalf("answers=%v: keys %q, want %q", answers, k, stallKeys)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("answers=%v: no debug keys after a silent console", answers)
		}
		if !answers {
			select {
			case v := <-got:
				if !v {
					t.Fatal("a box silent after its keys: watchStall returned false")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("a box silent after its keys was not declared wedged")
			}
			continue
		}
		// Answered: it may press the keys once more, but never says
		// wedged while the console answers.
		deadline := time.After(400 * time.Millisecond)
	loop:
		for {
			select {
			case v := <-got:
				t.Fatalf("a box that answers its keys: watchStall returned %v before done", v)
			case <-keys:
			case <-deadline:
				break loop
			}
		}
		close(done)
		if v := <-got; v {
			t.Fatal("watchStall returned true at done")
		}
	}
}

// monitorDump speaks the human monitor's prompt protocol.
func TestMonitorDump(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hmp.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var cmds []string
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "QEMU 7.2.22 monitor - type 'help' for more information\r\n(qemu) ")
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			cmd := sc.Text()
			cmds = append(cmds, cmd)
			// QEMU echoes the line, then answers.
			io.WriteString(c, cmd+"\r\nanswer to "+cmd+"\r\n(qemu) ")
		}
	}()
	out := monitorDump(path, 2)
	l.Close()
	<-served
	want := []string{"info cpus", "info registers -a", "cpu 0", "x/8i $pc", "cpu 1", "x/8i $pc"}
	if strings.Join(cmds, "|") != strings.Join(want, "|") {
		t.Errorf("commands %q, want %q", cmds, want)
	}
	for _, c := range want {
		if !strings.Contains(out, "(qemu) "+c+"\nanswer to "+c+"\n") {
			t.Errorf("dump lacks %q's answer:\n%s", c, out)
		}
	}
	if strings.Contains(out, "\r") {
		t.Errorf("dump keeps carriage returns: %q", out)
	}
	if got := monitorDump(filepath.Join(t.TempDir(), "none"), 1); !strings.HasPrefix(got, "monitor: ") {
		t.Errorf("no monitor: %q", got)
	}
}

func TestMonitorArg(t *testing.T) {
	c := Config{}
	if !strings.Contains(strings.Join(c.Args(), " "), "-monitor none") {
		t.Errorf("no monitor path: %v", c.Args())
	}
	c.Monitor = "/x/hmp.sock"
	if !strings.Contains(strings.Join(c.Args(), " "), "-monitor unix:/x/hmp.sock,server=on,wait=off") {
		t.Errorf("monitor path: %v", c.Args())
	}
}

// threadStates names this process's threads with their states.
func TestThreadStates(t *testing.T) {
	s := threadStates(os.Getpid(), false)
	if !strings.Contains(s, "thread ") || !strings.Contains(s, " state ") {
		t.Errorf("no thread lines:\n%s", s)
	}
}

// Boot ends a wedged box early with the monitor's report, instead of
// running to ctx's end.
func TestBootWedged(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"release", "xen.elf", "vmlinux", "modules/x", "root/usr/lib/xen-4.17/bin/xl", "root/bin/busybox"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte("4.17\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A "QEMU" whose dom0 comes up and then says nothing, even to
	// Xen's debug keys.
	fake := filepath.Join(dir, "qemu")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho "+markUp+"\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var log strings.Builder
	t0 := time.Now()
	o, err := Boot(ctx, Config{Assets: Assets{Dir: dir}, Initramfs: filepath.Join(dir, "dom0.cpio"), QEMU: fake,
		Stall: 100 * time.Millisecond, Wedge: 200 * time.Millisecond, Log: &log})
	if err == nil || !strings.Contains(err.Error(), "wedged") {
		t.Fatalf("Boot: %v, want a wedged box", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("Boot ran to ctx's end (%v)", time.Since(t0))
	}
	if o == nil || !o.Wedged || o.Up == 0 {
		t.Fatalf("outcome %+v", o)
	}
	// The fake has no monitor: the report says so, and names the
	// process's threads.
	if !strings.Contains(o.Diag, "monitor: ") || !strings.Contains(o.Diag, "thread ") {
		t.Errorf("diag:\n%s", o.Diag)
	}
	if !strings.Contains(log.String(), "[hmp] monitor: ") {
		t.Errorf("the log lacks the report:\n%s", log.String())
	}
}

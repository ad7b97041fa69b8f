package unixsock

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestListenFresh(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	ln.Close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket file left after Close: %v", err)
	}
}

// staleSocket leaves a socket file at path with no listener, as a killed
// process does.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	if _, err := net.Dial("unix", path); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("stale socket is not refusing: %v", err)
	}
}

func TestListenReplacesStale(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	staleSocket(t, path)
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial after replacing the stale socket: %v", err)
	}
	c.Close()
}

func TestListenRefusesLiveAndNonSocket(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "live")
	ln, err := Listen(live)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := Listen(live); err == nil || !strings.Contains(err.Error(), "a running process is serving on this socket") {
		t.Errorf("Listen on a live socket: %v", err)
	}
	// The live listener still works.
	c, err := net.Dial("unix", live)
	if err != nil {
		t.Fatalf("live socket broken: %v", err)
	}
	c.Close()

	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(file); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Errorf("Listen on a regular file: %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "keep" {
		t.Error("regular file was touched")
	}
}

func TestFromFD(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pre")
	// What libxl does: socket, bind, listen, then pass the fd.
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 1); err != nil {
		t.Fatal(err)
	}
	ln, err := FromFD(fd)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		c, err := net.Dial("unix", path)
		if err == nil {
			c.Write([]byte("x"))
			c.Close()
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if n, _ := c.Read(b[:]); n != 1 || b[0] != 'x' {
		t.Errorf("read %q", b[:n])
	}
	c.Close()
	ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("the toolstack's socket file was removed: %v", err)
	}
	// fd itself was closed by FromFD (the listener owns a duplicate).
	if _, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != syscall.EBADF {
		t.Errorf("fd still open after FromFD: %v", err)
	}
}

func TestFromFDErrors(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "f")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := FromFD(int(f.Fd())); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("regular file: %v", err)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := FromFD(fd); err == nil || !strings.Contains(err.Error(), "not listening") {
		t.Errorf("unlistened socket: %v", err)
	}
	dg, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dg)
	if _, err := FromFD(dg); err == nil || !strings.Contains(err.Error(), "not a Unix stream socket") {
		t.Errorf("datagram socket: %v", err)
	}
	if _, err := FromFD(-1); err == nil {
		t.Error("fd -1 accepted")
	}
}

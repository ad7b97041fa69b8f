package chardev

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
)

// TestFile_NotTruncatedUntilStarted: an existing log keeps its contents
// when the backend is opened and closed without a start (a failed start);
// Commit, or the first output, replaces them.
func TestFile_NotTruncatedUntilStarted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "com1.log")
	const old = "the last run's log\n"
	if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := OpenFile(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != old {
		t.Fatalf("after open and close without a start the log holds %q, want %q", got, old)
	}

	// Committed, then nothing written: empty.
	b, err = OpenFile(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil { // idempotent
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(path); err != nil || len(got) != 0 {
		t.Fatalf("after Commit the log holds %q (%v), want it empty and present", got, err)
	}

	// Written without a Commit: the first output truncates.
	if err := os.WriteFile(path, []byte(old+old+old), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err = OpenFile(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b.Write([]byte("new\n"))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "new\n" {
		t.Fatalf("log = %q, want only this run's output", got)
	}
}

// TestFile_CreatedUnusedRemoved: a file the backend created and never
// used is removed on Close; a committed one stays.
func TestFile_CreatedUnusedRemoved(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new.log")
	b, err := OpenFile(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("not created at open: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unused file left behind: %v", err)
	}
	b, err = OpenFile(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b.Commit()
	b.Close()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("committed file removed: %v", err)
	}
}

// TestListen_StaleSocket: a socket file whose listener died is replaced;
// a live listener's is refused with ErrSocketInUse and left working; a
// path that is not a socket is refused and left alone.
func TestListen_StaleSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	// A live listener.
	if _, err := Listen(path, Options{}); !errors.Is(err, ErrSocketInUse) {
		t.Fatalf("Listen on a live socket = %v, want ErrSocketInUse", err)
	}
	done := make(chan struct{})
	go func() { // (the first connection is Listen's probe)
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("still mine"))
			c.Close()
		}
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("the live listener's socket was disturbed: %v", err)
	}
	if got := string(readFull(t, c, 10)); got != "still mine" {
		t.Errorf("read %q", got)
	}
	c.Close()
	// It dies without removing its socket file (as a killed process does).
	ln.SetUnlinkOnClose(false)
	ln.Close()
	<-done
	if _, err := os.Lstat(path); err != nil {
		t.Fatal(err)
	}
	s, err := Listen(path, Options{})
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	c, err = net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial the new listener: %v", err)
	}
	c.Close()
	s.Close()

	// Not a socket.
	reg := filepath.Join(dir, "regular")
	if err := os.WriteFile(reg, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(reg, Options{}); err == nil {
		t.Fatal("Listen over a regular file succeeded")
	}
	if got, err := os.ReadFile(reg); err != nil || string(got) != "keep" {
		t.Errorf("regular file disturbed: %q %v", got, err)
	}
}

// TestFile_Device: a device node (file:/dev/null) is written, never
// truncated, and not removed.
func TestFile_Device(t *testing.T) {
	b, err := OpenFile(os.DevNull, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		t.Errorf("Commit on %s: %v", os.DevNull, err)
	}
	b.Write([]byte("x"))
	if err := b.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := os.Stat(os.DevNull); err != nil {
		t.Fatalf("%s gone: %v", os.DevNull, err)
	}
	if s := b.Stats(); s.Written != 1 || s.Dropped != 0 {
		t.Errorf("stats %+v, want 1 byte written", s)
	}
}

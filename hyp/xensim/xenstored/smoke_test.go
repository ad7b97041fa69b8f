package xenstored_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"godm/hyp/xensim/xenstored"
	"godm/hyp/xenstore"
	"golang.org/x/sys/unix"
)

func TestSmoke(t *testing.T) {
	s := xenstored.New(xenstored.Config{})
	defer s.Close()
	sock := filepath.Join(t.TempDir(), "socket")
	if err := s.Listen(sock); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := xenstore.Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w, err := c.Watch(ctx, "/local/domain/0/device-model", "tok")
	if err != nil {
		t.Fatal(err)
	}
	if ev := <-w.Events(); ev.Path != "/local/domain/0/device-model" {
		t.Fatalf("initial event %+v", ev)
	}
	if err := c.Write(ctx, "/local/domain/0/device-model/5/state", []byte("running")); err != nil {
		t.Fatal(err)
	}
	if ev := <-w.Events(); ev.Path != "/local/domain/0/device-model/5/state" {
		t.Fatalf("event %+v", ev)
	}
	v, err := c.Read(ctx, "/local/domain/0/device-model/5/state")
	if string(v) != "running" || err != nil {
		t.Fatalf("read %q %v", v, err)
	}
	_, err = c.Read(ctx, "/nope")
	if !errors.Is(err, unix.ENOENT) {
		t.Fatalf("read missing: %v", err)
	}
	t.Log(err)
}

package xenstored

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"godm/hyp/xenstore"
	"golang.org/x/sys/unix"
)

// WaitValue blocks until the node at path (absolute) holds want, or ctx
// is done, the way a toolstack waits for "device-model/<domid>/state" to
// become "running": it watches path as dom0 and re-reads on every event.
// A missing node counts as not yet there.
func (s *Server) WaitValue(ctx context.Context, path string, want []byte) error {
	conn, err := s.Pipe(0)
	if err != nil {
		return err
	}
	c := xenstore.New(conn)
	defer c.Close()
	w, err := c.Watch(ctx, path, "wait")
	if err != nil {
		return fmt.Errorf("xenstored: wait for %s: %w", path, err)
	}
	var last []byte
	for {
		v, err := c.Read(ctx, path)
		switch {
		case err == nil:
			if bytes.Equal(v, want) {
				return nil
			}
			last = v
		case !errors.Is(err, unix.ENOENT):
			return fmt.Errorf("xenstored: wait for %s: %w", path, err)
		}
		select {
		case _, ok := <-w.Events():
			if !ok {
				return fmt.Errorf("xenstored: wait for %s: %w", path, errors.Join(ctx.Err(), errors.New("connection closed")))
			}
		case <-ctx.Done():
			return fmt.Errorf("xenstored: wait for %s = %q (last %q): %w", path, want, last, ctx.Err())
		}
	}
}

package xenstore_test

import (
	"context"
	"path/filepath"
	"testing"

	"godm/hyp/xensim/xenstored"
	"godm/hyp/xenstore"
)

// BenchmarkRead measures one XS_READ round trip to the simulated
// xenstored over a Unix socket.
func BenchmarkRead(b *testing.B) {
	s := xenstored.New(xenstored.Config{})
	defer s.Close()
	sock := filepath.Join(b.TempDir(), "socket")
	if err := s.Listen(sock); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	c, err := xenstore.Dial(ctx, sock)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if err := c.Write(ctx, "/local/domain/0/device-model/1/state", []byte("running")); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Read(ctx, "/local/domain/0/device-model/1/state"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadParallel measures multiplexed concurrent reads on one
// connection.
func BenchmarkReadParallel(b *testing.B) {
	s := xenstored.New(xenstored.Config{})
	defer s.Close()
	conn, err := s.Pipe(0)
	if err != nil {
		b.Fatal(err)
	}
	c := xenstore.New(conn)
	defer c.Close()
	ctx := context.Background()
	if err := c.Write(ctx, "/x", []byte("v")); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Read(ctx, "/x"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

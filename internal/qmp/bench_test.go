package qmp

import (
	"bufio"
	"net"
	"path/filepath"
	"testing"

	"godm/internal/unixsock"
)

// BenchmarkRoundTrip measures one command over a real Unix socket, as
// libxl issues them: request written, reply read up to "\r\n".
func BenchmarkRoundTrip(b *testing.B) {
	s, err := NewServer(Config{Commands: map[string]Handler{
		"query-status": func(r *Request) (any, error) {
			return map[string]any{"running": true, "singlestep": false, "status": "running"}, nil
		},
	}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	path := filepath.Join(b.TempDir(), "qmp")
	ln, err := unixsock.Listen(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Serve("m", ln); err != nil {
		b.Fatal(err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	r.ReadString('\n')
	c.Write([]byte(`{"execute":"qmp_capabilities"}` + "\r\n"))
	r.ReadString('\n')
	req := []byte(`{"execute":"query-status","id":2020372737}` + "\r\n")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := r.ReadSlice('\n'); err != nil {
			b.Fatal(err)
		}
	}
}

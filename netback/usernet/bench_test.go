package usernet

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"
)

// streamServer serves an endless byte stream to each connection on
// loopback.
func streamServer(b *testing.B) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 64<<10)
				for {
					if _, err := c.Write(buf); err != nil {
						c.Close()
						return
					}
				}
			}()
		}
	}()
	return ln
}

const benchChunk = 256 << 10

func readChunks(b *testing.B, c net.Conn) {
	buf := make([]byte, 64<<10)
	b.SetBytes(benchChunk)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for n := 0; n < benchChunk; {
			k, err := c.Read(buf[:min(len(buf), benchChunk-n)])
			if err != nil {
				b.Fatal(err)
			}
			n += k
		}
	}
}

// BenchmarkLoopbackTCP is the floor: two host sockets on loopback.
func BenchmarkLoopbackTCP(b *testing.B) {
	ln := streamServer(b)
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	readChunks(b, c)
}

// BenchmarkUserNATTCP: a guest (a gVisor stack on the frame interface)
// downloads from the host's loopback through the user-mode network's
// NAT; frames/s counts frames delivered toward the guest.
func BenchmarkUserNATTCP(b *testing.B) {
	ln := streamServer(b)
	defer ln.Close()
	u := newUser(b, "user,id=bench", nil)
	g := startGuest(b, u, u.cfg.DHCPStart, u.cfg.Host, u.cfg.Net.Bits())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	c, err := g.dial(ctx, fmt.Sprintf("%s:%d", u.cfg.Host, ln.Addr().(*net.TCPAddr).Port))
	cancel()
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	f0 := u.Stats().RxFrames.Load()
	start := time.Now()
	readChunks(b, c)
	el := time.Since(start).Seconds()
	b.ReportMetric(float64(u.Stats().RxFrames.Load()-f0)/el, "frames/s")
}

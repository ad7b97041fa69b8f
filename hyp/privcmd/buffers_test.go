package privcmd

import (
	"errors"
	"testing"

	"godm/hyp/internal/kerneltest"
	"godm/hyp/kernel"

	"golang.org/x/sys/unix"
)

func TestBufferPool(t *testing.T) {
	tests := []struct {
		name         string
		missing      bool
		wantFallback bool
	}{
		{"hypercall device", false, false},
		{"locked anonymous fallback", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := kerneltest.New()
			if tt.missing {
				k.Missing(kernel.Hypercall)
			}
			h := open(t, k)
			p := h.Buffers()
			b, err := p.Alloc(100)
			if err != nil {
				t.Fatalf("Alloc: %v", err)
			}
			if got := p.Fallback(); got != tt.wantFallback {
				t.Errorf("Fallback = %v, want %v", got, tt.wantFallback)
			}
			if got := len(b.Bytes()); got != 100 {
				t.Errorf("len(Bytes) = %d, want 100", got)
			}
			if b.Addr()%PageSize != 0 {
				t.Errorf("Addr %#x not page aligned", b.Addr())
			}
			b.Bytes()[0] = 0x5a
			big, err := p.Alloc(3*PageSize + 1)
			if err != nil {
				t.Fatalf("Alloc 4 pages: %v", err)
			}
			if got := cap(big.Bytes()); got != 3*PageSize+1 {
				t.Errorf("cap = %d, want the requested size", got)
			}
			if err := b.Free(); err != nil {
				t.Fatalf("Free: %v", err)
			}
			if err := b.Free(); err != nil {
				t.Fatalf("second Free: %v", err)
			}
			if b.Bytes() != nil || b.Addr() != 0 {
				t.Errorf("freed buffer still has memory")
			}
			// A reused page comes back zeroed.
			c, err := p.Alloc(1)
			if err != nil {
				t.Fatalf("Alloc after Free: %v", err)
			}
			if c.Bytes()[0] != 0 {
				t.Errorf("reused buffer not zeroed")
			}
			if err := big.Free(); err != nil {
				t.Fatalf("Free big: %v", err)
			}
			if err := h.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := c.Free(); err != nil {
				t.Fatalf("Free after Close: %v", err)
			}
			if !tt.missing {
				if n := k.Mapped(); n != 0 {
					t.Errorf("%d hypercall mappings left after Close and Free", n)
				}
			}
		})
	}
}

func TestBufferPoolBadSize(t *testing.T) {
	h := open(t, kerneltest.New())
	for _, n := range []int{0, -1, MaxBatch*PageSize + 1} {
		if _, err := h.Buffers().Alloc(n); !errors.Is(err, unix.EINVAL) {
			t.Errorf("Alloc(%d) = %v, want EINVAL", n, err)
		}
	}
}

func TestBufferPoolConcurrent(t *testing.T) {
	k := kerneltest.New()
	h := open(t, k)
	done := make(chan error)
	for g := 0; g < 4; g++ {
		go func() {
			for i := 0; i < 50; i++ {
				b, err := h.Buffers().Alloc(1 + i%3*PageSize)
				if err != nil {
					done <- err
					return
				}
				b.Bytes()[0]++
				if err := b.Free(); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for g := 0; g < 4; g++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

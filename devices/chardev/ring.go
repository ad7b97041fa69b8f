package chardev

import "sync/atomic"

// ring is a single-producer single-consumer byte ring. The producer is
// whoever calls Backend.Write (serialised by the device's lock); the
// consumer is the backend's writer goroutine. head and tail are free-running
// counters; the atomic loads and stores order the byte copies.
type ring struct {
	buf  []byte
	mask uint64
	head atomic.Uint64 // next byte to write (producer)
	tail atomic.Uint64 // next byte to read (consumer)
}

func newRing(size int) *ring {
	n := 1
	for n < size {
		n <<= 1
	}
	return &ring{buf: make([]byte, n), mask: uint64(n - 1)}
}

// put copies as much of p as fits and returns the number copied.
func (r *ring) put(p []byte) int {
	head := r.head.Load()
	free := uint64(len(r.buf)) - (head - r.tail.Load())
	n := uint64(len(p))
	if n > free {
		n = free
	}
	for i := uint64(0); i < n; {
		off := (head + i) & r.mask
		c := copy(r.buf[off:], p[i:n])
		i += uint64(c)
	}
	r.head.Store(head + n)
	return int(n)
}

// peek returns the longest contiguous readable chunk (possibly empty).
func (r *ring) peek() []byte {
	tail := r.tail.Load()
	avail := r.head.Load() - tail
	off := tail & r.mask
	end := off + avail
	if end > uint64(len(r.buf)) {
		end = uint64(len(r.buf))
	}
	return r.buf[off:end]
}

// consume releases n bytes returned by peek.
func (r *ring) consume(n int) { r.tail.Add(uint64(n)) }

// len returns the number of buffered bytes.
func (r *ring) len() int { return int(r.head.Load() - r.tail.Load()) }

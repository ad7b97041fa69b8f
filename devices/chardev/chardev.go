package chardev

import (
	"sync"
	"sync/atomic"
	"time"
)

// Sink receives input bytes from a backend. It is implemented by the device
// side (for example the UART's receive FIFO).
type Sink interface {
	// Receive offers p and returns how many leading bytes were taken
	// (0..len(p)). It must not block. When it takes fewer than len(p), the
	// backend waits for Ready before offering the rest.
	Receive(p []byte) int
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(p []byte) int

// Receive implements Sink.
func (f SinkFunc) Receive(p []byte) int { return f(p) }

// Stats are a backend's counters.
type Stats struct {
	// Written is the number of output bytes handed to the host.
	Written uint64
	// Dropped is the number of output bytes dropped because the buffer was
	// full, the host write failed, or no client was connected.
	Dropped uint64
	// Received is the number of input bytes taken by the Sink.
	Received uint64
	// Discarded is the number of input bytes read while no Sink was
	// attached.
	Discarded uint64
}

// Backend is a host character device as seen by an emulated device.
type Backend interface {
	// Write queues p for output and returns the number of bytes queued;
	// the rest is dropped and counted. It never blocks and must not be
	// called concurrently with itself.
	Write(p []byte) int
	// Attach sets the Sink that receives input; nil detaches.
	Attach(s Sink)
	// Ready tells the backend that the Sink has room again. It never
	// blocks.
	Ready()
	// Stats returns a snapshot of the counters.
	Stats() Stats
	// Close stops the backend's goroutines and releases its host
	// resources. It is idempotent.
	Close() error
}

// Options configure a backend. The zero value is usable.
type Options struct {
	// OutputBuffer is the output ring size in bytes, rounded up to a power
	// of two. Zero means 64 KiB.
	OutputBuffer int
	// FlushTimeout bounds how long Close waits to flush buffered output.
	// Zero means 100 ms.
	FlushTimeout time.Duration
	// RetryInterval is how often a pty with no reader on its other side is
	// polled again. Zero means 100 ms.
	RetryInterval time.Duration

	// hook, set only by this package's tests, observes internal events.
	hook func(event)
}

// event is an internal milestone reported to Options.hook.
type event int

const (
	evInput      event = iota // a chunk of input was delivered or discarded
	evOutput                  // the writer drained the ring
	evDisconnect              // a socket client went away
)

func (o Options) outputBuffer() int {
	if o.OutputBuffer <= 0 {
		return 64 << 10
	}
	return o.OutputBuffer
}

func (o Options) flushTimeout() time.Duration {
	if o.FlushTimeout <= 0 {
		return 100 * time.Millisecond
	}
	return o.FlushTimeout
}

func (o Options) retryInterval() time.Duration {
	if o.RetryInterval <= 0 {
		return 100 * time.Millisecond
	}
	return o.RetryInterval
}

type sinkHolder struct{ s Sink }

// core is the part shared by every backend: the output ring with its
// writer goroutine, the input delivery with back-pressure, and counters.
type core struct {
	ring  *ring
	wake  chan struct{} // cap 1: output is pending
	ready chan struct{} // cap 1: the sink has room
	done  chan struct{} // closed by Close

	sink atomic.Pointer[sinkHolder]

	written   atomic.Uint64
	dropped   atomic.Uint64
	received  atomic.Uint64
	discarded atomic.Uint64

	closeOnce sync.Once
	wg        sync.WaitGroup

	hook func(event)
}

func (c *core) note(e event) {
	if c.hook != nil {
		c.hook(e)
	}
}

func newCore(opt Options) *core {
	c := &core{
		hook:  opt.hook,
		wake:  make(chan struct{}, 1),
		ready: make(chan struct{}, 1),
		done:  make(chan struct{}),
	}
	if opt.OutputBuffer >= 0 {
		c.ring = newRing(opt.outputBuffer())
	}
	return c
}

// Write implements Backend.
func (c *core) Write(p []byte) int {
	if len(p) == 0 {
		return 0
	}
	select {
	case <-c.done:
		c.dropped.Add(uint64(len(p)))
		return 0
	default:
	}
	n := c.ring.put(p)
	if n < len(p) {
		c.dropped.Add(uint64(len(p) - n))
	}
	if n > 0 {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	return n
}

// Attach implements Backend.
func (c *core) Attach(s Sink) {
	if s == nil {
		c.sink.Store(nil)
	} else {
		c.sink.Store(&sinkHolder{s: s})
	}
	c.Ready()
}

// Ready implements Backend.
func (c *core) Ready() {
	select {
	case c.ready <- struct{}{}:
	default:
	}
}

// Stats implements Backend.
func (c *core) Stats() Stats {
	return Stats{
		Written:   c.written.Load(),
		Dropped:   c.dropped.Load(),
		Received:  c.received.Load(),
		Discarded: c.discarded.Load(),
	}
}

func (c *core) closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// startWriter runs the writer goroutine. out writes one chunk to the host
// and returns how many bytes it wrote; bytes it did not write are dropped.
// flush is called once on Close before the final drain (to set a deadline).
func (c *core) startWriter(out func(p []byte) (int, error), flush func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			select {
			case <-c.wake:
				c.drain(out)
				c.note(evOutput)
			case <-c.done:
				if c.ring.len() > 0 {
					if flush != nil {
						flush()
					}
					c.drain(out)
				}
				return
			}
		}
	}()
}

func (c *core) drain(out func(p []byte) (int, error)) {
	for {
		p := c.ring.peek()
		if len(p) == 0 {
			return
		}
		n, err := out(p)
		if n < 0 {
			n = 0
		}
		c.written.Add(uint64(n))
		if err != nil {
			// The host refused the rest of this chunk: drop it rather
			// than spin on a broken or stalled descriptor.
			c.dropped.Add(uint64(len(p) - n))
			n = len(p)
		}
		c.ring.consume(n)
	}
}

// deliver offers p to the sink, waiting for Ready while the sink is full.
// It returns false when the backend is closing.
func (c *core) deliver(p []byte) bool {
	for len(p) > 0 {
		h := c.sink.Load()
		if h == nil {
			c.discarded.Add(uint64(len(p)))
			return true
		}
		n := h.s.Receive(p)
		if n < 0 {
			n = 0
		}
		if n > len(p) {
			n = len(p)
		}
		c.received.Add(uint64(n))
		p = p[n:]
		if len(p) == 0 {
			return true
		}
		select {
		case <-c.ready:
		case <-c.done:
			return false
		}
	}
	return true
}

// shutdown closes done once, runs unblock to wake blocked host I/O, and
// waits for the goroutines.
func (c *core) shutdown(unblock func()) {
	c.closeOnce.Do(func() {
		close(c.done)
		if unblock != nil {
			unblock()
		}
		c.wg.Wait()
	})
}

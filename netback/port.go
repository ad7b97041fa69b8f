package netback

import (
	"sync"
	"sync/atomic"
)

// Port is the device-facing half shared by the back-ends: a pool, the
// receive queue toward the guest, the transmit queue from it, counters
// and the wake-ups. A back-end embeds it and runs the far side: it takes
// frames the guest sent with TxQueue().Pop and gives the guest frames
// with Deliver.
type Port struct {
	pool     *Pool
	rx, tx   *Queue
	offloads bool
	maxLen   int
	stats    Stats

	notifyMu sync.Mutex
	rxNotify atomic.Pointer[func()]
	txNotify atomic.Pointer[func()]
	stop     chan struct{}
	once     sync.Once
	wg       sync.WaitGroup
}

// PortConfig sizes a Port.
type PortConfig struct {
	// Depth is each queue's depth (DefaultDepth when 0).
	Depth int
	// Offloads: frames carry virtio-net headers and may be GSO-sized.
	Offloads bool
}

// NewPort makes a port; its pool holds enough frames for both queues
// full plus one in the hands of each side.
func NewPort(c PortConfig) *Port {
	d := c.Depth
	if d <= 0 {
		d = DefaultDepth
	}
	max := MaxFrame
	if c.Offloads {
		max = MaxGSOFrame
	}
	p := &Port{
		// A tap reads and writes the virtio-net header in front of the
		// frame in the same buffer: VnetHdrLen spare bytes.
		pool:     NewPool(2*d+4, max+VnetHdrLen),
		rx:       NewQueue(d),
		tx:       NewQueue(d),
		offloads: c.Offloads,
		maxLen:   max,
		stop:     make(chan struct{}),
	}
	p.wg.Add(1)
	go p.notifier()
	return p
}

// notifier turns queue wake-ups into the NIC's callbacks, off the
// producer's goroutine.
func (p *Port) notifier() {
	defer p.wg.Done()
	for {
		select {
		case <-p.stop:
			return
		case <-p.rx.Ready:
			if fn := p.rxNotify.Load(); fn != nil {
				(*fn)()
			}
		case <-p.tx.Room:
			if fn := p.txNotify.Load(); fn != nil {
				(*fn)()
			}
		}
	}
}

func (p *Port) Offloads() bool { return p.offloads }
func (p *Port) MaxLen() int    { return p.maxLen }
func (p *Port) Stats() *Stats  { return &p.stats }
func (p *Port) Pool() *Pool    { return p.pool }

// RxQueue and TxQueue are the two queues, for the back-end's side.
func (p *Port) RxQueue() *Queue { return p.rx }
func (p *Port) TxQueue() *Queue { return p.tx }

func (p *Port) RxPeek() *Frame { return p.rx.Peek() }

func (p *Port) RxPop() *Frame {
	f := p.rx.Pop()
	if f != nil {
		p.stats.RxFrames.Add(1)
		p.stats.RxBytes.Add(uint64(f.n))
	}
	return f
}

func (p *Port) TxFrame() *Frame {
	if p.tx.Len() == p.tx.Cap() {
		p.stats.TxRefused.Add(1)
		return nil
	}
	f := p.pool.Get()
	if f == nil {
		p.stats.TxRefused.Add(1)
	}
	return f
}

func (p *Port) Transmit(f *Frame) {
	if !CheckFrame(f.n, p.maxLen) || (p.offloads && !f.Hdr.Valid(f.n)) {
		p.stats.Bad.Add(1)
		f.Release()
		return
	}
	if !p.offloads {
		f.Hdr = VnetHdr{}
	}
	n := f.n // f is the back-end's once pushed
	if !p.tx.Push(f) {
		p.stats.TxDropped.Add(1)
		f.Release()
		return
	}
	p.stats.TxFrames.Add(1)
	p.stats.TxBytes.Add(uint64(n))
}

func (p *Port) SetNotify(rx, tx func()) {
	p.notifyMu.Lock()
	defer p.notifyMu.Unlock()
	if rx != nil {
		p.rxNotify.Store(&rx)
	} else {
		p.rxNotify.Store(nil)
	}
	if tx != nil {
		p.txNotify.Store(&tx)
	} else {
		p.txNotify.Store(nil)
	}
	// Frames may already wait.
	if p.rx.Len() > 0 {
		poke(p.rx.Ready)
	}
}

// Deliver queues f toward the guest, or drops it (counted, released) when
// the guest's queue is full or f is malformed: the policy of a back-end
// that cannot stop its peer. A back-end that can stop reading waits on
// RxQueue().Room and pushes itself instead.
func (p *Port) Deliver(f *Frame) bool {
	if !CheckFrame(f.n, p.maxLen) {
		p.stats.Bad.Add(1)
		f.Release()
		return false
	}
	if !p.rx.Push(f) {
		p.stats.RxDropped.Add(1)
		f.Release()
		return false
	}
	return true
}

// Stopping is closed when the port closes.
func (p *Port) Stopping() <-chan struct{} { return p.stop }

// Go runs fn on a goroutine Close waits for.
func (p *Port) Go(fn func()) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		fn()
	}()
}

// Shutdown stops the port's goroutines and frees queued frames. A
// back-end calls it from its Close after making its own goroutines
// return (they watch Stopping).
func (p *Port) Shutdown() {
	p.once.Do(func() {
		close(p.stop)
		p.wg.Wait()
		p.rx.Close()
		p.tx.Close()
	})
}

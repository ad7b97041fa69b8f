package netback

import "sync"

// Splice joins two back-ends back to back, like a patch cable: what a
// receives (its Rx side, toward a guest) is transmitted on b, and what b
// receives on a. It is how a back-end that runs in another process is
// reached: the process splices its real back-end (user-mode networking)
// to the packet socket its parent holds. Each direction runs on one
// goroutine woken by the back-ends' notify callbacks; a frame waits in
// its source's queue while the destination has no room (back-pressure,
// never an unbounded buffer). Both back-ends must pass the same frames:
// equal MaxLen, equal Offloads (the virtio-net header is copied along).
// The returned stop ends the goroutines; it does not close the
// back-ends.
func Splice(a, b Backend) (stop func()) {
	ab := newPump(a, b)
	ba := newPump(b, a)
	a.SetNotify(ab.poke, ba.poke)
	b.SetNotify(ba.poke, ab.poke)
	ab.poke()
	ba.poke()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(ab.done)
			close(ba.done)
			ab.wg.Wait()
			ba.wg.Wait()
		})
	}
}

// pump moves frames from src's receive queue to dst's transmit side.
type pump struct {
	src, dst Backend
	wake     chan struct{}
	done     chan struct{}
	wg       sync.WaitGroup
}

func newPump(src, dst Backend) *pump {
	p := &pump{src: src, dst: dst, wake: make(chan struct{}, 1), done: make(chan struct{})}
	p.wg.Add(1)
	go p.run()
	return p
}

// poke wakes the pump; it never blocks (notify callbacks must not).
func (p *pump) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *pump) run() {
	defer p.wg.Done()
	for {
		select {
		case <-p.done:
			return
		case <-p.wake:
		}
		p.drain()
	}
}

// drain moves frames until the source is empty or the destination full
// (then the destination's tx notify pokes again).
func (p *pump) drain() {
	for {
		f := p.src.RxPeek()
		if f == nil {
			return
		}
		out := p.dst.TxFrame()
		if out == nil {
			return
		}
		n := copy(out.Buf(), f.Bytes())
		if n != len(f.Bytes()) || !out.SetLen(n) {
			// Larger than the destination passes: dropped, counted.
			out.Release()
			p.dst.Stats().TxDropped.Add(1)
		} else {
			out.Hdr = f.Hdr
			p.dst.Transmit(out)
		}
		if g := p.src.RxPop(); g != nil {
			g.Release()
		}
	}
}

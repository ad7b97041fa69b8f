package block

import (
	"sync"
	"sync/atomic"
)

// Op is a request's operation.
type Op uint8

const (
	OpRead Op = iota
	OpWrite
	OpFlush
	OpDiscard
	OpWriteZeroes
)

// Request is one controller request. The controller owns it (typically
// one per slot of its own queue, reused: no allocation per request), fills
// it, submits it and gets it back through Done.
type Request struct {
	Op    Op
	Off   int64    // byte offset
	Len   int64    // bytes, for OpDiscard and OpWriteZeroes
	Bufs  [][]byte // scatter-gather list for OpRead/OpWrite (e.g. pinned guest memory segments)
	FUA   bool     // OpWrite: durable before completion
	Unmap bool     // OpWriteZeroes: the range may be deallocated
	Tag   uint64   // the controller's cookie (command id, descriptor head)
	Err   error    // set before Done
	// Done is called once per submitted request, on a worker goroutine,
	// with no lock of this package held. It must not block for long: it
	// holds one of the queue's workers.
	Done func(*Request)
}

// Queue runs a drive's requests on a fixed pool of workers, with at most
// Depth requests in flight.
type Queue struct {
	d       *Drive
	depth   int64
	ch      chan *Request
	slots   atomic.Int64 // requests submitted and not yet completed (the depth bound)
	pending atomic.Int64 // requests submitted whose Done has not returned (Drain)
	closed  atomic.Bool
	idle    chan struct{}
	stop    chan struct{}
	wg      sync.WaitGroup
	close1  sync.Once
}

// NewQueue starts workers goroutines serving up to depth requests in
// flight on d.
func NewQueue(d *Drive, depth, workers int) *Queue {
	depth = max(depth, 1)
	workers = max(min(workers, depth), 1)
	q := &Queue{d: d, depth: int64(depth), ch: make(chan *Request, depth), idle: make(chan struct{}, 1), stop: make(chan struct{})}
	q.wg.Add(workers)
	for range workers {
		go q.worker()
	}
	return q
}

// Depth is the bound on requests in flight.
func (q *Queue) Depth() int { return int(q.depth) }

// Submit queues r without blocking. It fails with ErrQueueFull when Depth
// requests are in flight, ErrClosed after Close and ErrBadRequest without
// a Done; r.Done is then not called.
func (q *Queue) Submit(r *Request) error {
	if r == nil || r.Done == nil {
		return ErrBadRequest
	}
	if q.slots.Add(1) > q.depth {
		q.slots.Add(-1)
		return ErrQueueFull
	}
	q.pending.Add(1)
	if q.closed.Load() {
		q.slots.Add(-1)
		q.done1()
		return ErrClosed
	}
	q.ch <- r // capacity depth: never blocks
	return nil
}

func (q *Queue) done1() {
	if q.pending.Add(-1) == 0 {
		select {
		case q.idle <- struct{}{}:
		default:
		}
	}
}

func (q *Queue) worker() {
	defer q.wg.Done()
	for {
		select {
		case r := <-q.ch:
			r.Err = q.run(r)
			// The slot is free before Done runs: a controller may submit
			// its next request from the completion.
			q.slots.Add(-1)
			r.Done(r)
			q.done1()
		case <-q.stop:
			return
		}
	}
}

func (q *Queue) run(r *Request) error {
	switch r.Op {
	case OpRead:
		return q.d.ReadV(r.Bufs, r.Off)
	case OpWrite:
		return q.d.WriteV(r.Bufs, r.Off, r.FUA)
	case OpFlush:
		return q.d.Flush()
	case OpDiscard:
		return q.d.Discard(r.Off, r.Len)
	case OpWriteZeroes:
		return q.d.WriteZeroes(r.Off, r.Len, r.Unmap)
	}
	return ErrBadRequest
}

// Drain waits until no request is in flight (for pause and snapshot: the
// controller stops submitting first).
func (q *Queue) Drain() {
	for q.pending.Load() != 0 {
		<-q.idle
	}
}

// Close refuses new requests, waits for those in flight to complete and
// stops the workers. It does not close the drive.
func (q *Queue) Close() {
	q.close1.Do(func() {
		q.closed.Store(true)
		q.Drain()
		close(q.stop)
		q.wg.Wait()
	})
}

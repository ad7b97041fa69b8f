package virtio

import (
	"encoding/binary"
	"errors"
	"sync"

	"godm/memory"
)

// Split virtqueue layout (virtio 1.2 §2.7).
const (
	descSize = 16 // struct virtq_desc: addr u64, len u32, flags u16, next u16

	descFNext     = 1
	descFWrite    = 2
	descFIndirect = 4

	availFNoInterrupt = 1 // VRING_AVAIL_F_NO_INTERRUPT

	// legacyAlign is the legacy interface's used ring alignment
	// (VIRTIO_PCI_VRING_ALIGN, §4.1.4.8).
	legacyAlign = 4096
)

// MaxQueueSize is the largest queue this transport offers (VIRTQUEUE_MAX_SIZE
// of QEMU is 1024; the split ring's indices are 16 bits).
const MaxQueueSize = 1024

// Errors of a descriptor chain walk; any of them makes the device
// broken until reset (QEMU virtio_error: DEVICE_NEEDS_RESET under
// VERSION_1).
var (
	ErrRing      = errors.New("virtio: ring outside guest memory")
	ErrHead      = errors.New("virtio: avail ring names a descriptor beyond the queue")
	ErrLoop      = errors.New("virtio: descriptor chain longer than the queue (loop)")
	ErrIndirect  = errors.New("virtio: bad indirect descriptor table")
	ErrOrder     = errors.New("virtio: device-readable descriptor after a device-writable one")
	ErrTooMany   = errors.New("virtio: descriptor chain longer than the device accepts")
	ErrDescRange = errors.New("virtio: descriptor buffer wraps the address space")
	ErrAvailIdx  = errors.New("virtio: avail index moved more than the queue size")
)

// Desc is one buffer of a chain: guest-physical address and length,
// and whether the device writes it.
type Desc struct {
	Addr  uint64
	Len   uint32
	Write bool
}

// Chain is one request popped from the avail ring. Segs lies in storage
// the caller gives Pop, so popping does not allocate.
type Chain struct {
	Head uint16
	Segs []Desc
	// Out and In are the readable and writable bytes.
	Out, In uint64
}

// Queue is one split virtqueue. Its configuration (size, addresses,
// vector, enable) is the transport's, changed under the queue's lock;
// the device pops and pushes under the same lock.
type Queue struct {
	t   *Transport
	idx int
	max uint16

	mu sync.Mutex
	// Configuration (guarded by mu; written by the transport).
	size              uint16
	enabled           bool
	desc, avail, used uint64
	vector            uint16
	eventIdx          bool
	// Run state (guarded by mu).
	dr, ar, ur  *memory.Region
	lastAvail   uint16
	usedIdx     uint16
	signalled   uint16
	signalledOK bool
	pinErr      bool
	indirectBuf [descSize]byte
	scratch     [descSize]byte
}

// Index is the queue's number.
func (q *Queue) Index() int { return q.idx }

// Lock and Unlock hold the queue for a device's Pop/Push sequence.
func (q *Queue) Lock()   { q.mu.Lock() }
func (q *Queue) Unlock() { q.mu.Unlock() }

// Size is the queue size the driver set (0: not configured).
func (q *Queue) Size() uint16 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.size
}

// resetLocked returns the queue to its power-on state and drops its pins.
func (q *Queue) resetLocked() {
	q.unpinLocked()
	q.size = q.max
	q.enabled = false
	q.desc, q.avail, q.used = 0, 0, 0
	q.vector = NoVector
	q.lastAvail, q.usedIdx, q.signalled = 0, 0, 0
	q.signalledOK = false
	q.pinErr = false
}

func (q *Queue) unpinLocked() {
	for _, r := range []**memory.Region{&q.dr, &q.ar, &q.ur} {
		if *r != nil {
			(*r).Release()
			*r = nil
		}
	}
}

// setLegacyPFN places the rings as the legacy interface does: descriptors
// at pfn<<12, the avail ring after them, the used ring at the next 4 KiB
// boundary (§4.1.4.8, §2.7.2 legacy layout).
func (q *Queue) setLegacyPFNLocked(pfn uint32) {
	q.unpinLocked()
	q.desc = uint64(pfn) << 12
	q.avail = q.desc + uint64(q.size)*descSize
	q.used = (q.avail + 6 + 2*uint64(q.size) + legacyAlign - 1) &^ (legacyAlign - 1)
	q.enabled = pfn != 0
	q.lastAvail, q.usedIdx, q.signalled, q.signalledOK, q.pinErr = 0, 0, 0, false, false
}

// ready reports whether the queue may be used: enabled, with a size.
func (q *Queue) readyLocked() bool { return q.enabled && q.size != 0 }

// pinLocked maps the three rings (once per configuration).
func (q *Queue) pinLocked() error {
	if q.dr != nil {
		return nil
	}
	if q.pinErr {
		return ErrRing
	}
	n := uint64(q.size)
	mem := q.t.mem
	var err error
	pin := func(a, l uint64) *memory.Region {
		if err != nil {
			return nil
		}
		if a+l < a {
			err = ErrRing
			return nil
		}
		var r *memory.Region
		r, err = mem.Pin(memory.GPA(a), int(l))
		return r
	}
	dr := pin(q.desc, n*descSize)
	ar := pin(q.avail, 6+2*n)
	ur := pin(q.used, 6+8*n)
	if err != nil {
		for _, r := range []*memory.Region{dr, ar, ur} {
			if r != nil {
				r.Release()
			}
		}
		q.pinErr = true
		return ErrRing
	}
	q.dr, q.ar, q.ur = dr, ar, ur
	return nil
}

// Pop takes the next available chain into c, its descriptors into store
// (at most len(store); a longer chain is an error). It returns false with
// no error when the avail ring is empty or the queue is not ready. The
// caller holds the queue's lock. Every walk is bounded: at most the
// queue size descriptors in the ring table, at most the indirect table's
// entries, at most len(store) in all; nested indirect tables, a readable
// buffer after a writable one and buffers that wrap the address space are
// errors.
func (q *Queue) Pop(c *Chain, store []Desc) (bool, error) {
	if !q.readyLocked() {
		return false, nil
	}
	if err := q.pinLocked(); err != nil {
		return false, err
	}
	avail, err := q.ar.Load16(2)
	if err != nil {
		return false, ErrRing
	}
	if avail == q.lastAvail {
		return false, nil
	}
	if avail-q.lastAvail > q.size {
		return false, ErrAvailIdx
	}
	head, err := q.ar.Load16(4 + 2*int(q.lastAvail%q.size))
	if err != nil {
		return false, ErrRing
	}
	q.lastAvail++
	if q.eventIdx {
		// avail_event: kick us when the driver goes past what we took
		// (§2.7.10).
		if q.ur.Store16(4+8*int(q.size), q.lastAvail) != nil {
			return false, ErrRing
		}
	}
	return true, q.walkLocked(c, head, store)
}

func (q *Queue) walkLocked(c *Chain, head uint16, store []Desc) error {
	*c = Chain{Head: head, Segs: store[:0]}
	if head >= q.size {
		return ErrHead
	}
	i := head
	seenWrite := false
	for n := 0; ; n++ {
		if n >= int(q.size) {
			return ErrLoop
		}
		if _, err := q.dr.ReadAt(q.scratch[:], int64(i)*descSize); err != nil {
			return ErrRing
		}
		addr, l, flags, next := decodeDesc(q.scratch[:])
		if flags&descFIndirect != 0 {
			// Only the head may point to a table, and not with NEXT
			// (§2.7.5.3.1).
			if flags&descFNext != 0 || n != 0 {
				return ErrIndirect
			}
			if err := q.walkIndirectLocked(c, addr, l, store, &seenWrite); err != nil {
				return err
			}
			return nil
		}
		if err := add(c, store, addr, l, flags, &seenWrite); err != nil {
			return err
		}
		if flags&descFNext == 0 {
			return nil
		}
		if next >= q.size {
			return ErrHead
		}
		i = next
	}
}

// walkIndirectLocked walks an indirect table of l bytes at addr
// (§2.7.5.3): entries chained by next inside the table, no nested
// indirect flag.
func (q *Queue) walkIndirectLocked(c *Chain, addr uint64, l uint32, store []Desc, seenWrite *bool) error {
	if l == 0 || l%descSize != 0 || addr+uint64(l) < addr {
		return ErrIndirect
	}
	entries := l / descSize
	if entries > MaxQueueSize*4 {
		return ErrIndirect
	}
	i := uint32(0)
	for n := uint32(0); ; n++ {
		if n >= entries {
			return ErrLoop
		}
		if err := q.t.mem.Read(memory.GPA(addr+uint64(i)*descSize), q.indirectBuf[:]); err != nil {
			return ErrIndirect
		}
		a, dl, flags, next := decodeDesc(q.indirectBuf[:])
		if flags&descFIndirect != 0 {
			return ErrIndirect
		}
		if err := add(c, store, a, dl, flags, seenWrite); err != nil {
			return err
		}
		if flags&descFNext == 0 {
			return nil
		}
		if uint32(next) >= entries {
			return ErrIndirect
		}
		i = uint32(next)
	}
}

func add(c *Chain, store []Desc, addr uint64, l uint32, flags uint16, seenWrite *bool) error {
	if addr+uint64(l) < addr {
		return ErrDescRange
	}
	w := flags&descFWrite != 0
	if !w && *seenWrite {
		return ErrOrder
	}
	if len(c.Segs) >= len(store) {
		return ErrTooMany
	}
	*seenWrite = *seenWrite || w
	c.Segs = append(c.Segs, Desc{Addr: addr, Len: l, Write: w})
	if w {
		c.In += uint64(l)
	} else {
		c.Out += uint64(l)
	}
	return nil
}

func decodeDesc(b []byte) (addr uint64, l uint32, flags, next uint16) {
	return binary.LittleEndian.Uint64(b[0:]), binary.LittleEndian.Uint32(b[8:]),
		binary.LittleEndian.Uint16(b[12:]), binary.LittleEndian.Uint16(b[14:])
}

// Push returns chain head to the driver with n bytes written, and reports
// whether the driver wants an interrupt for it (avail flags, or used_event
// under VIRTIO_F_EVENT_IDX, §2.7.7, §2.7.10). The caller holds the lock.
func (q *Queue) Push(head uint16, n uint32) (notify bool, err error) {
	if err := q.Fill(0, head, n); err != nil {
		return false, err
	}
	return q.Flush(1)
}

// Fill writes the used element i places after the next one (chain head,
// n bytes written) without publishing it: Flush does, for several at
// once (QEMU virtqueue_fill; a mergeable receive returns all its buffers
// under one used index update, §5.1.6.4). The caller holds the lock.
func (q *Queue) Fill(i, head uint16, n uint32) error {
	if !q.readyLocked() || q.ur == nil || i >= q.size {
		return ErrRing
	}
	var e [8]byte
	binary.LittleEndian.PutUint32(e[0:], uint32(head))
	binary.LittleEndian.PutUint32(e[4:], n)
	if _, err := q.ur.WriteAt(e[:], int64(4+8*int((q.usedIdx+i)%q.size))); err != nil {
		return ErrRing
	}
	return nil
}

// Flush publishes count filled used elements and reports whether the
// driver wants an interrupt for them (QEMU virtqueue_flush then
// virtio_should_notify). The caller holds the lock.
func (q *Queue) Flush(count uint16) (notify bool, err error) {
	if !q.readyLocked() || q.ur == nil || count > q.size {
		return false, ErrRing
	}
	old := q.usedIdx
	q.usedIdx += count
	// The release store orders the elements before the index (§2.7.8).
	if err := q.ur.Store16(2, q.usedIdx); err != nil {
		return false, ErrRing
	}
	if !q.eventIdx {
		flags, err := q.ar.Load16(0)
		return err == nil && flags&availFNoInterrupt == 0, nil
	}
	ue, err := q.ar.Load16(4 + 2*int(q.size))
	if err != nil {
		return false, ErrRing
	}
	if q.signalledOK {
		old = q.signalled
	}
	q.signalled, q.signalledOK = q.usedIdx, true
	// vring_need_event (§2.7.10): notify if used_event lies in [old, new).
	return q.usedIdx-ue-1 < q.usedIdx-old, nil
}

// Unpop gives the last n popped chains back to the avail ring, to be
// popped again (QEMU virtqueue_unpop: a receive that found too few
// buffers for a frame leaves them to the next try). The caller holds the
// lock and has not pushed them.
func (q *Queue) Unpop(n uint16) {
	q.lastAvail -= n
}

// Interrupt sends the queue's interrupt (its MSI-X vector, or ISR bit 0
// and INTx). The caller need not hold the queue's lock.
func (q *Queue) Interrupt() {
	q.mu.Lock()
	v := q.vector
	q.mu.Unlock()
	q.t.interrupt(v, isrQueue)
}

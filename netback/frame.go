// Package netback holds godm's network back-ends: the frame interface a NIC
// model (rtl8139, e1000, virtio-net) talks to, and the back-ends behind it
// (a tap device here, user-mode networking in netback/usernet). It knows
// no device: a NIC model sees only Backend.
//
// Memory is bounded in both directions. Every frame lives in a buffer of
// a fixed-size Pool; the two Queues between device and back-end hold at
// most their capacity. A guest that transmits faster than the back-end
// drains is refused (TxFrame returns nil: the NIC leaves the descriptor in
// its ring and retries on the tx wake-up); a peer that sends faster than
// the guest takes frames is either not read any more (tap: the reader
// stops reading the fd, the kernel's queue drops) or dropped with a
// counter (user-mode networking: TCP retransmits). No path allocates per
// frame.
package netback

import (
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
)

// Frame sizes. An Ethernet frame without FCS is at most 1514 bytes, 1518
// with one 802.1Q tag (IEEE 802.3 / 802.1Q); MinFrame is the 60-byte
// minimum without FCS. With offloads (a virtio-net header, TSO/UFO), a
// frame may carry up to 64 KiB of IP packet plus its Ethernet header.
const (
	MinFrame     = 60
	MaxFrame     = 1518
	MaxGSOFrame  = 65535 + 14 + 4
	VnetHdrLen   = 12 // struct virtio_net_hdr with num_buffers (virtio 1.x, 5.1.6)
	DefaultDepth = 256
)

// Virtio-net header fields (virtio 1.2 spec, 5.1.6 "Device Operation";
// Linux include/uapi/linux/virtio_net.h). The same header is what a tap
// opened with IFF_VNET_HDR reads and writes before each frame.
const (
	VnetFlagNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM
	VnetFlagDataValid = 2 // VIRTIO_NET_HDR_F_DATA_VALID

	VnetGSONone  = 0    // VIRTIO_NET_HDR_GSO_NONE
	VnetGSOTCPv4 = 1    // VIRTIO_NET_HDR_GSO_TCPV4
	VnetGSOUDP   = 3    // VIRTIO_NET_HDR_GSO_UDP
	VnetGSOTCPv6 = 4    // VIRTIO_NET_HDR_GSO_TCPV6
	VnetGSOECN   = 0x80 // VIRTIO_NET_HDR_GSO_ECN
)

// VnetHdr is the virtio-net header: checksum and segmentation offloads
// that travel with a frame when the back-end supports them. All fields
// little-endian on the wire (virtio 1.x; a tap uses the same order when
// TUNSETVNETLE or a little-endian host).
type VnetHdr struct {
	Flags      uint8
	GSOType    uint8
	HdrLen     uint16
	GSOSize    uint16
	CsumStart  uint16
	CsumOffset uint16
	NumBuffers uint16
}

// Decode reads h from the first 10 (legacy) or 12 bytes of b; it reports
// false if b is shorter than 10.
func (h *VnetHdr) Decode(b []byte) bool {
	if len(b) < 10 {
		return false
	}
	h.Flags, h.GSOType = b[0], b[1]
	h.HdrLen = binary.LittleEndian.Uint16(b[2:])
	h.GSOSize = binary.LittleEndian.Uint16(b[4:])
	h.CsumStart = binary.LittleEndian.Uint16(b[6:])
	h.CsumOffset = binary.LittleEndian.Uint16(b[8:])
	h.NumBuffers = 0
	if len(b) >= 12 {
		h.NumBuffers = binary.LittleEndian.Uint16(b[10:])
	}
	return true
}

// Encode writes h into b (10 or 12 bytes, as len(b) allows) and returns
// the count written, 0 if b is shorter than 10.
func (h *VnetHdr) Encode(b []byte) int {
	if len(b) < 10 {
		return 0
	}
	b[0], b[1] = h.Flags, h.GSOType
	binary.LittleEndian.PutUint16(b[2:], h.HdrLen)
	binary.LittleEndian.PutUint16(b[4:], h.GSOSize)
	binary.LittleEndian.PutUint16(b[6:], h.CsumStart)
	binary.LittleEndian.PutUint16(b[8:], h.CsumOffset)
	if len(b) >= 12 {
		binary.LittleEndian.PutUint16(b[10:], h.NumBuffers)
		return 12
	}
	return 10
}

// Valid reports whether h describes offloads a back-end may act on for a
// frame of n bytes: a known GSO type, checksum start and offset inside
// the frame, a header length not past it. A NIC model passes a guest's
// header through only when Valid; a back-end drops frames whose header
// is not (the guest is hostile).
func (h *VnetHdr) Valid(n int) bool {
	switch h.GSOType &^ VnetGSOECN {
	case VnetGSONone:
		if h.GSOType&VnetGSOECN != 0 {
			return false
		}
	case VnetGSOTCPv4, VnetGSOUDP, VnetGSOTCPv6:
		if h.GSOSize == 0 || int(h.HdrLen) > n {
			return false
		}
	default:
		return false
	}
	if h.Flags&VnetFlagNeedsCsum != 0 {
		if int(h.CsumStart)+int(h.CsumOffset)+2 > n {
			return false
		}
	}
	return h.Flags&^(VnetFlagNeedsCsum|VnetFlagDataValid) == 0
}

// Frame is one Ethernet frame (destination MAC first, no FCS) in a
// buffer of a Pool, with its virtio-net header when the back-end has
// offloads. A Frame belongs to whoever holds it last and goes back with
// Release.
type Frame struct {
	Hdr  VnetHdr
	buf  []byte
	n    int
	pool *Pool
}

// Bytes is the frame's content.
func (f *Frame) Bytes() []byte { return f.buf[:f.n] }

// Buf is the frame's whole buffer, to fill before SetLen.
func (f *Frame) Buf() []byte { return f.buf }

// SetLen sets the content length; it reports false (and leaves the frame
// unchanged) if n is negative or past the buffer.
func (f *Frame) SetLen(n int) bool {
	if n < 0 || n > len(f.buf) {
		return false
	}
	f.n = n
	return true
}

// Release returns f to its pool. f must not be used after.
func (f *Frame) Release() {
	if f.pool != nil {
		f.pool.put(f)
	}
}

// Pool is a fixed set of frame buffers, all made up front: the most
// memory frames can take is Size×BufSize, however fast they come.
type Pool struct {
	mu      sync.Mutex
	free    []*Frame
	bufSize int
	size    int
}

// NewPool makes n frames of bufSize bytes each.
func NewPool(n, bufSize int) *Pool {
	p := &Pool{free: make([]*Frame, 0, n), bufSize: bufSize, size: n}
	mem := make([]byte, n*bufSize)
	frames := make([]Frame, n)
	for i := range frames {
		frames[i] = Frame{buf: mem[i*bufSize : (i+1)*bufSize : (i+1)*bufSize], pool: p}
		p.free = append(p.free, &frames[i])
	}
	return p
}

// Get takes a free frame (length 0, zero header), nil when all are out.
func (p *Pool) Get() *Frame {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := len(p.free)
	if k == 0 {
		return nil
	}
	f := p.free[k-1]
	p.free = p.free[:k-1]
	f.n = 0
	f.Hdr = VnetHdr{}
	return f
}

func (p *Pool) put(f *Frame) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) == cap(p.free) {
		panic("netback: frame released twice")
	}
	p.free = append(p.free, f)
}

// Free is the count of frames not out.
func (p *Pool) Free() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.free)
}

// Size is the count of frames the pool made.
func (p *Pool) Size() int { return p.size }

// BufSize is each frame's buffer size.
func (p *Pool) BufSize() int { return p.bufSize }

// Queue is a bounded FIFO of frames with a wake-up channel for its
// consumer (one value pending at most) and one for its producer.
type Queue struct {
	mu     sync.Mutex
	ring   []*Frame
	head   int
	n      int
	closed bool
	// Ready has a value when frames were queued since the consumer last
	// drained it; Room when a frame was taken from a full queue.
	Ready chan struct{}
	Room  chan struct{}
}

// NewQueue makes a queue of depth frames.
func NewQueue(depth int) *Queue {
	return &Queue{ring: make([]*Frame, depth), Ready: make(chan struct{}, 1), Room: make(chan struct{}, 1)}
}

func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Push appends f; false when the queue is full or closed (f stays the
// caller's).
func (q *Queue) Push(f *Frame) bool {
	q.mu.Lock()
	if q.closed || q.n == len(q.ring) {
		q.mu.Unlock()
		return false
	}
	q.ring[(q.head+q.n)%len(q.ring)] = f
	q.n++
	q.mu.Unlock()
	poke(q.Ready)
	return true
}

// Peek is the first frame without taking it, nil when empty.
func (q *Queue) Peek() *Frame {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == 0 {
		return nil
	}
	return q.ring[q.head]
}

// Pop takes the first frame, nil when empty.
func (q *Queue) Pop() *Frame {
	q.mu.Lock()
	if q.n == 0 {
		q.mu.Unlock()
		return nil
	}
	f := q.ring[q.head]
	q.ring[q.head] = nil
	q.head = (q.head + 1) % len(q.ring)
	wasFull := q.n == len(q.ring)
	q.n--
	q.mu.Unlock()
	if wasFull {
		poke(q.Room)
	}
	return f
}

// Len is the count of frames queued.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// Cap is the queue's depth.
func (q *Queue) Cap() int { return len(q.ring) }

// Close refuses further pushes and releases the frames queued.
func (q *Queue) Close() {
	q.mu.Lock()
	q.closed = true
	var fs []*Frame
	for q.n > 0 {
		fs = append(fs, q.ring[q.head])
		q.ring[q.head] = nil
		q.head = (q.head + 1) % len(q.ring)
		q.n--
	}
	q.mu.Unlock()
	for _, f := range fs {
		f.Release()
	}
	poke(q.Ready)
	poke(q.Room)
}

// Stats are a back-end's counters, from the guest's side: Rx toward the
// guest, Tx from it.
type Stats struct {
	RxFrames, RxBytes, RxDropped atomic.Uint64
	TxFrames, TxBytes, TxDropped atomic.Uint64
	// TxRefused counts TxFrame calls that found no room (back-pressure
	// on the guest, not a loss: the NIC retries).
	TxRefused atomic.Uint64
	// Bad counts frames dropped as malformed (runt, giant, bad header).
	Bad atomic.Uint64
}

// ErrClosed is returned by a back-end used after Close.
var ErrClosed = errors.New("netback: back-end closed")

// Backend is what a NIC model holds. All methods are safe for concurrent
// use; the notify callbacks run on back-end goroutines and must not block.
//
// Receive path (toward the guest): when frames are waiting, RxNotify is
// called; the NIC peeks with RxPeek (to check it has guest buffers for
// that length), copies Bytes() (and Hdr when Offloads) into the guest,
// then RxPop and Release. A NIC without buffers simply stops taking:
// the back-end's bounded queue fills and the back-end applies its own
// policy (stop reading, or drop and count).
//
// Transmit path (from the guest): TxFrame gives an empty frame, nil when
// the back-end's queue or pool is full (then TxNotify is called once
// there is room); the NIC fills Buf(), SetLen, sets Hdr when Offloads,
// and calls Transmit, which takes ownership (a malformed frame is dropped
// and counted there).
type Backend interface {
	// Offloads reports whether frames carry a virtio-net header both ways
	// (checksum/GSO offloads); false means Hdr is ignored on transmit and
	// zero on receive, and frames are at most MaxFrame bytes.
	Offloads() bool
	// MaxLen is the largest frame the back-end passes (MaxFrame, or
	// MaxGSOFrame with offloads).
	MaxLen() int
	RxPeek() *Frame
	RxPop() *Frame
	TxFrame() *Frame
	Transmit(f *Frame)
	// SetNotify installs the wake-ups (either may be nil).
	SetNotify(rx, tx func())
	Stats() *Stats
	Close() error
}

// CheckFrame reports whether an Ethernet frame of n bytes from the guest
// (or a peer) is one a back-end passes: at least the 14-byte Ethernet
// header, at most max. Runts shorter than MinFrame but with a header are
// passed (many NICs strip padding; the back-end pads none).
func CheckFrame(n, max int) bool { return n >= 14 && n <= max }

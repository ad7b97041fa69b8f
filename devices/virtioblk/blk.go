// Package virtioblk is the virtio block device (virtio 1.2 §5.2) on the
// virtio PCI transport, as QEMU 7.2's virtio-blk-pci presents it: one
// request queue of 256 entries, IN/OUT/FLUSH/GET_ID/DISCARD/WRITE_ZEROES,
// the write cache switch, up to Depth requests in flight through the
// block layer's queue, bounce buffers per slot (no allocation per
// request once a slot has been used).
package virtioblk

import (
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"

	"godm/block"
	"godm/devices/ide"
	"godm/devices/virtio"
	"godm/memory"
	"godm/pci"
)

// Identity (QEMU hw/virtio/virtio-blk-pci.c, include/hw/pci/pci.h:
// PCI_DEVICE_ID_VIRTIO_BLOCK 0x1001, PCI_CLASS_STORAGE_SCSI).
const (
	DeviceID    = 2
	PCIDeviceID = 0x1001
	Class       = 0x010000
	QueueSize   = 256
	// Vectors is QEMU's default for one queue: configuration + queue.
	Vectors = 2
)

// Feature bits (§5.2.3).
const (
	fSizeMax     = 1 << 1
	fSegMax      = 1 << 2
	fGeometry    = 1 << 4
	fRO          = 1 << 5
	fBlkSize     = 1 << 6
	fFlush       = 1 << 9
	fTopology    = 1 << 10
	fConfigWCE   = 1 << 11
	fDiscard     = 1 << 13
	fWriteZeroes = 1 << 14
)

// Request types and status values (§5.2.6).
const (
	tIn          = 0
	tOut         = 1
	tSCSI        = 2
	tFlush       = 4
	tGetID       = 8
	tDiscard     = 11
	tWriteZeroes = 13
	tBarrier     = 0x80000000

	sOK     = 0
	sIOErr  = 1
	sUnsupp = 2

	wzUnmap = 1 // VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP

	hdrLen = 16 // struct virtio_blk_outhdr
	idLen  = 20 // VIRTIO_BLK_ID_BYTES
	sector = 512
)

// Limits as QEMU 7.2 reports them (checked through qtest): seg_max is the
// queue size less the header and status, discard and write-zeroes take
// one segment of at most BDRV_REQUEST_MAX_SECTORS.
const (
	segMax         = QueueSize - 2
	maxDWZSectors  = 0x3fffff
	configLen      = 57 // through write_zeroes_may_unmap (QEMU virtio_blk_cfg_size_params)
	maxChain       = 1024
	chunk          = 128 << 10
	DefaultDepth   = 32
	defaultWorkers = 4
)

// Config wires a device.
type Config struct {
	Memory virtio.Memory
	Drive  *block.Drive
	// Serial is the GET_ID string (at most 20 bytes are returned).
	Serial string
	// Depth bounds the requests in flight (0: DefaultDepth); Workers
	// is the block queue's goroutines (0: 4).
	Depth, Workers int
	// ModernBAR32: see virtio.Config.
	ModernBAR32 bool
	// Discard passes discards and write-zeroes' unmap to the image
	// (-drive discard=unmap); otherwise a discard succeeds doing nothing
	// and write-zeroes writes zeros (QEMU's discard=ignore).
	Discard bool
}

// Device is one virtio-blk-pci function.
type Device struct {
	t      *virtio.Transport
	mem    virtio.Memory
	drv    *block.Drive
	bq     *block.Queue
	info   block.Info
	serial string
	unmap  bool
	geo    [3]uint32
	wce    atomic.Bool

	mu      sync.Mutex
	slots   []*slot
	free    []*slot // guarded by mu
	gen     uint64  // guarded by mu: bumped by Reset
	paused  bool    // guarded by mu
	pending bool    // guarded by mu: a kick waits for a slot or Resume
}

// New builds the device on an opened drive (not owned: Close leaves it
// open).
func New(c Config) (*Device, error) {
	if c.Drive == nil {
		return nil, errors.New("virtio-blk: drive property not set")
	}
	if c.Memory == nil {
		return nil, errors.New("virtio-blk: no guest memory")
	}
	depth := c.Depth
	if depth <= 0 {
		depth = DefaultDepth
	}
	depth = min(depth, QueueSize)
	workers := c.Workers
	if workers <= 0 {
		workers = defaultWorkers
	}
	d := &Device{mem: c.Memory, drv: c.Drive, info: c.Drive.Info(), serial: c.Serial, unmap: c.Discard}
	if len(d.serial) > idLen {
		d.serial = d.serial[:idLen]
	}
	nb := uint64(d.info.Size) / sector
	d.geo[0], d.geo[1], d.geo[2] = ide.GuessGeometry(c.Drive, nb)
	d.wce.Store(d.info.WriteCache)
	t, err := virtio.New(virtio.Config{DeviceID: DeviceID, PCIDeviceID: PCIDeviceID, Class: Class,
		Queues: 1, QueueSize: QueueSize, Vectors: Vectors, ModernBAR32: c.ModernBAR32,
		Memory: c.Memory, Device: d})
	if err != nil {
		return nil, err
	}
	d.t = t
	d.bq = block.NewQueue(c.Drive, depth, workers)
	for i := range depth {
		s := &slot{d: d, idx: i}
		s.doneFn = s.ioDone
		d.slots = append(d.slots, s)
		d.free = append(d.free, s)
	}
	return d, nil
}

// Function is the PCI function.
func (d *Device) Function() *pci.Device { return d.t.Function() }

// Transport is the virtio transport.
func (d *Device) Transport() *virtio.Transport { return d.t }

// Drive is the medium.
func (d *Device) Drive() *block.Drive { return d.drv }

// Features implements virtio.Device (QEMU 7.2's defaults:
// virtio_blk_get_features with discard and write-zeroes on).
func (d *Device) Features() uint64 {
	f := uint64(fSegMax | fGeometry | fBlkSize | fFlush | fTopology | fConfigWCE |
		fDiscard | fWriteZeroes | virtio.FIndirectDesc | virtio.FEventIdx)
	if d.info.ReadOnly {
		f |= fRO
	}
	return f
}

// ConfigLen implements virtio.Device.
func (d *Device) ConfigLen() int { return configLen }

// config builds struct virtio_blk_config (§5.2.4).
func (d *Device) config() [60]byte {
	var c [60]byte
	le := binary.LittleEndian
	le.PutUint64(c[0:], uint64(d.info.Size)/sector)
	le.PutUint32(c[12:], segMax)
	le.PutUint16(c[16:], uint16(d.geo[0]))
	c[18] = byte(d.geo[1])
	c[19] = byte(d.geo[2])
	le.PutUint32(c[20:], sector)
	if d.wce.Load() {
		c[32] = 1
	}
	le.PutUint16(c[34:], 1)
	le.PutUint32(c[36:], maxDWZSectors)
	le.PutUint32(c[40:], 1)
	le.PutUint32(c[44:], 1)
	le.PutUint32(c[48:], maxDWZSectors)
	le.PutUint32(c[52:], 1)
	c[56] = 1
	return c
}

// ReadConfig implements virtio.Device.
func (d *Device) ReadConfig(off int, p []byte) {
	c := d.config()
	copy(p, c[off:])
}

// WriteConfig implements virtio.Device: only the write cache byte is
// writable (QEMU virtio_blk_set_config).
func (d *Device) WriteConfig(off int, p []byte) {
	if off <= 32 && off+len(p) > 32 {
		d.wce.Store(p[32-off] != 0)
	}
}

// Notify implements virtio.Device.
func (d *Device) Notify(q *virtio.Queue) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.kickLocked(q)
}

// kickLocked starts every available request that finds a free slot.
func (d *Device) kickLocked(q *virtio.Queue) {
	if d.paused {
		d.pending = true
		return
	}
	for !d.t.Broken() {
		if len(d.free) == 0 {
			d.pending = true
			return
		}
		s := d.free[len(d.free)-1]
		q.Lock()
		ok, err := q.Pop(&s.chain, s.store[:])
		q.Unlock()
		if err != nil {
			d.t.Fail()
			return
		}
		if !ok {
			return
		}
		d.free = d.free[:len(d.free)-1]
		s.q, s.gen = q, d.gen
		s.start()
	}
}

// Reset implements virtio.Device: requests in flight are waited for and
// dropped (their completions see a new generation).
func (d *Device) Reset() {
	d.mu.Lock()
	d.gen++
	d.pending = false
	d.mu.Unlock()
	d.bq.Drain()
	d.mu.Lock()
	d.free = d.free[:0]
	for _, s := range d.slots {
		s.busy = false
		d.free = append(d.free, s)
	}
	d.mu.Unlock()
}

// ResetQueue implements virtio.Device: the one queue's reset is the
// device's.
func (d *Device) ResetQueue(*virtio.Queue) { d.Reset() }

// Pause implements devices.Pauser: no request starts, those in flight
// complete.
func (d *Device) Pause() {
	d.mu.Lock()
	d.paused = true
	d.mu.Unlock()
	d.bq.Drain()
}

// Resume implements devices.Pauser.
func (d *Device) Resume() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.paused = false
	if d.pending {
		d.pending = false
		d.kickLocked(d.t.Queue(0))
	}
}

// Busy reports whether a request is in flight.
func (d *Device) Busy() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.free) != len(d.slots)
}

// Close stops the device (the transport drops its pins) and the block
// queue; the drive stays open.
func (d *Device) Close() error {
	d.t.Close()
	d.bq.Close()
	return nil
}

var errShortChain = errors.New("virtio-blk: chain shorter than the request")

// slot is one request in flight: its chain, block request and bounce
// buffer, reused.
type slot struct {
	d      *Device
	idx    int
	q      *virtio.Queue
	gen    uint64
	busy   bool
	chain  virtio.Chain
	store  [maxChain]virtio.Desc
	req    block.Request
	bufs   [1][]byte
	buf    []byte
	doneFn func(*block.Request)

	write    bool
	off      int64  // the disk offset of the data
	dataLen  uint64 // bytes of data (after the header, or before the status)
	done     uint64 // bytes moved
	n        int    // the current chunk
	statusAt uint64 // guest address of the status byte
	hdr      [hdrLen]byte
	// Buffers handed to guest memory copies live here, not on the
	// stack: through the interface they would escape per request.
	st  [1]byte
	id  [idLen + 1]byte
	dwz [16]byte
}

// start decodes the request (QEMU virtio_blk_handle_request) and either
// completes it at once or submits its first block request. d.mu is held.
func (s *slot) start() {
	s.busy = true
	c := &s.chain
	nOut, nIn := 0, 0
	for _, g := range c.Segs {
		if g.Write {
			nIn++
		} else {
			nOut++
		}
	}
	// A chain without a header or a status buffer is a guest error
	// (QEMU: virtio_error "missing headers", "request header too short",
	// "request inhdr too short").
	if nOut < 1 || nIn < 1 || c.Out < hdrLen || c.Segs[len(c.Segs)-1].Len < 1 {
		s.fail()
		return
	}
	last := c.Segs[len(c.Segs)-1]
	s.statusAt = last.Addr + uint64(last.Len) - 1
	if s.copyChain(false, 0, s.hdr[:], false) != nil {
		s.finish(sIOErr)
		return
	}
	typ := binary.LittleEndian.Uint32(s.hdr[0:])
	sec := binary.LittleEndian.Uint64(s.hdr[8:])
	outData, inData := c.Out-hdrLen, c.In-1
	switch typ &^ (tOut | tBarrier) {
	case tIn:
		s.write = typ&tOut != 0
		s.dataLen = inData
		if s.write {
			s.dataLen = outData
		}
		if !s.d.rangeOK(sec, s.dataLen) {
			s.finish(sIOErr)
			return
		}
		s.off, s.done = int64(sec*sector), 0
		if s.dataLen == 0 {
			s.finish(sOK)
			return
		}
		if s.submitChunk() != nil {
			s.finish(sIOErr)
		}
	case tFlush:
		s.req = block.Request{Op: block.OpFlush, Tag: s.gen, Done: s.doneFn}
		s.dataLen, s.write = 0, false
		if s.d.bq.Submit(&s.req) != nil {
			s.finish(sIOErr)
		}
	case tGetID:
		// QEMU: MIN(strlen(serial)+1, in data, 20) bytes of the serial,
		// NUL-terminated only when shorter.
		id := &s.id
		*id = [idLen + 1]byte{}
		copy(id[:], s.d.serial)
		n := min(uint64(len(s.d.serial)+1), inData, idLen)
		if s.copyChain(true, 0, id[:n], true) != nil {
			s.finish(sIOErr)
			return
		}
		s.finish(sOK)
	case tSCSI:
		// QEMU virtio_blk_handle_scsi_req: without the SCSI feature, a
		// chain with the SCSI headers gets UNSUPP and errors = 255 in
		// the virtio_scsi_inhdr (the second-to-last writable buffer);
		// a shorter chain IOERR.
		if nOut < 2 || nIn < 3 {
			s.finish(sIOErr)
			return
		}
		var ins int
		for _, g := range c.Segs {
			if g.Write {
				ins++
				if ins == nIn-1 {
					binary.LittleEndian.PutUint32(s.dwz[:], 255)
					_ = s.d.mem.Write(memory.GPA(g.Addr), s.dwz[:min(4, g.Len)])
				}
			}
		}
		s.finish(sUnsupp)
	case tDiscard &^ tOut, tWriteZeroes &^ tOut:
		s.discardWZ(typ, outData)
	default:
		s.finish(sUnsupp)
	}
}

// discardWZ is QEMU's virtio_blk_handle_discard_write_zeroes: one
// segment, its flags checked, its range within the disk and the limit.
func (s *slot) discardWZ(typ uint32, outData uint64) {
	wz := typ&^tBarrier == tWriteZeroes
	if typ&tOut == 0 || outData > 16 {
		s.finish(sUnsupp)
		return
	}
	if outData < 16 {
		s.fail()
		return
	}
	seg := &s.dwz
	if s.copyChain(false, hdrLen, seg[:], false) != nil {
		s.finish(sIOErr)
		return
	}
	sec := binary.LittleEndian.Uint64(seg[0:])
	num := binary.LittleEndian.Uint32(seg[8:])
	flags := binary.LittleEndian.Uint32(seg[12:])
	if num > maxDWZSectors || !s.d.rangeOK(sec, uint64(num)*sector) {
		s.finish(sIOErr)
		return
	}
	s.req = block.Request{Op: block.OpDiscard, Off: int64(sec * sector), Len: int64(num) * sector, Tag: s.gen, Done: s.doneFn}
	if wz {
		if flags&^wzUnmap != 0 {
			s.finish(sUnsupp)
			return
		}
		s.req.Op, s.req.Unmap = block.OpWriteZeroes, flags&wzUnmap != 0 && s.d.unmap
	} else if flags != 0 {
		s.finish(sUnsupp)
		return
	} else if !s.d.unmap {
		s.finish(sOK)
		return
	}
	s.dataLen, s.write = 0, false
	if s.d.bq.Submit(&s.req) != nil {
		s.finish(sIOErr)
	}
}

// rangeOK is virtio_blk_sect_range_ok: whole sectors within the disk.
func (d *Device) rangeOK(sec, n uint64) bool {
	total := uint64(d.info.Size) / sector
	return n%sector == 0 && sec <= total && n/sector <= total-sec
}

// submitChunk queues the next piece of a read or write (at most chunk
// bytes through the slot's bounce buffer).
func (s *slot) submitChunk() error {
	if s.buf == nil {
		s.buf = make([]byte, chunk) // once per slot
	}
	n := int(min(s.dataLen-s.done, chunk))
	s.n = n
	s.bufs[0] = s.buf[:n]
	s.req = block.Request{Op: block.OpRead, Off: s.off + int64(s.done), Bufs: s.bufs[:], Tag: s.gen, Done: s.doneFn}
	if s.write {
		if err := s.copyChain(false, hdrLen+s.done, s.buf[:n], false); err != nil {
			return err
		}
		s.req.Op, s.req.FUA = block.OpWrite, !s.d.wce.Load()
	}
	return s.d.bq.Submit(&s.req)
}

// ioDone is a block request's completion, on a queue worker.
func (s *slot) ioDone(r *block.Request) {
	d := s.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if r.Tag != d.gen || !s.busy {
		return // a reset dropped it; Reset frees the slot
	}
	if r.Err != nil {
		s.finish(sIOErr)
		d.rekickLocked()
		return
	}
	if s.dataLen > 0 {
		if !s.write {
			if s.copyChain(true, s.done, s.buf[:s.n], true) != nil {
				s.finish(sIOErr)
				d.rekickLocked()
				return
			}
		}
		s.done += uint64(s.n)
		if s.done < s.dataLen {
			if s.submitChunk() != nil {
				s.finish(sIOErr)
				d.rekickLocked()
			}
			return
		}
	}
	s.finish(sOK)
	d.rekickLocked()
}

func (d *Device) rekickLocked() {
	if d.pending && !d.paused {
		d.pending = false
		d.kickLocked(d.t.Queue(0))
	}
}

// finish writes the status byte, returns the chain with every writable
// byte counted (QEMU pushes in_len) and frees the slot. d.mu is held.
func (s *slot) finish(status byte) {
	d := s.d
	s.st[0] = status
	_ = d.mem.Write(memory.GPA(s.statusAt), s.st[:])
	q := s.q
	q.Lock()
	notify, err := q.Push(s.chain.Head, uint32(min(s.chain.In, 0xffffffff)))
	q.Unlock()
	s.release()
	if err != nil {
		d.t.Fail()
		return
	}
	if notify {
		q.Interrupt()
	}
}

// fail is a guest error on the chain: the device is broken until reset
// and the chain is not returned (QEMU virtio_error).
func (s *slot) fail() {
	s.release()
	s.d.t.Fail()
}

func (s *slot) release() {
	s.busy = false
	s.d.free = append(s.d.free, s)
}

// copyChain copies between p and the chain's writable (in) or readable
// (!in) buffers from byte skip of that stream on; toGuest writes them.
func (s *slot) copyChain(in bool, skip uint64, p []byte, toGuest bool) error {
	for _, g := range s.chain.Segs {
		if len(p) == 0 {
			return nil
		}
		if g.Write != in {
			continue
		}
		l := uint64(g.Len)
		if skip >= l {
			skip -= l
			continue
		}
		n := min(l-skip, uint64(len(p)))
		a := memory.GPA(g.Addr + skip)
		var err error
		if toGuest {
			err = s.d.mem.Write(a, p[:n])
		} else {
			err = s.d.mem.Read(a, p[:n])
		}
		if err != nil {
			return err
		}
		p = p[n:]
		skip = 0
	}
	if len(p) != 0 {
		return errShortChain
	}
	return nil
}

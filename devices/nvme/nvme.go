// Package nvme is an NVM Express controller (NVMe base specification 1.4)
// with one namespace over a block.Drive, presented as QEMU 7.2's
// `-device nvme` (hw/nvme/ctrl.c) presents it on the PCI bus: 1b36:0010,
// class 01/08/02, the registers and doorbells (CAP.DSTRD = 0) in the
// 64-bit memory BAR0 with the MSI-X table and PBA behind them, INTx when
// MSI-X is off.
//
// The admin queue serves Identify (controller, namespace, active
// namespace list, namespace identification descriptors), Create/Delete I/O
// SQ/CQ, Get/Set Features, Get Log Page (error, SMART, firmware slot),
// Abort (never aborts) and Asynchronous Event Request (held, never
// completed: no event is generated). I/O queues serve Read, Write, Flush,
// Write Zeroes and Dataset Management (deallocate → block discard), data
// through PRP1/PRP2 and PRP lists; SGLs are not supported (Identify's SGLS
// is 0 and a command with PSDT ≠ 0 gets Invalid Field).
//
// Everything the guest writes is untrusted: doorbell values outside a
// queue are ignored, queue sizes, vectors, PRP entries and LBA ranges are
// checked and answered with the spec's status codes, PRP list walks are
// bounded by the transfer (at most MDTS) and by a hop count, a command
// fetch or completion post that misses guest RAM sets CSTS.CFS. Work per
// doorbell is bounded by the queue's size and the controller's slots.
//
// Concurrency: one lock (Controller.mu) guards the registers, queues and
// slots; doorbell writes run on the ioreq thread, block completions on the
// block queue's workers, both under it. Reads and writes run on a
// block.Queue of bounded depth through per-slot bounce buffers allocated
// once: no allocation per command.
package nvme

import (
	"errors"
	"sync"

	"godm/block"
	"godm/devices"
	"godm/memory"
	"godm/pci"
)

// Identity (QEMU 7.2 hw/nvme/ctrl.c nvme_init_pci: PCI_VENDOR_ID_REDHAT,
// PCI_DEVICE_ID_REDHAT_NVME, revision 2, PCI_CLASS_STORAGE_EXPRESS with
// programming interface 2; the PCI core's default subsystem IDs
// 1af4:1100).
const (
	VendorID  = 0x1b36
	DeviceID  = 0x0010
	Revision  = 0x02
	Class     = 0x010802
	SubVendor = 0x1af4
	SubID     = 0x1100

	// MaxIOQueues is QEMU's default max_ioqpairs (64); Vectors its
	// msix_qsize default (65).
	MaxIOQueues = 64
	Vectors     = MaxIOQueues + 1

	// BAR0 layout (QEMU 7.2 nvme_init_pci: the registers and doorbells,
	// then the MSI-X table at the next 4 KiB boundary, the PBA at the one
	// after, the BAR a power of two).
	BAR0Size     = 0x4000
	msixTableOff = 0x2000
	msixPBAOff   = 0x3000
	regDoorbell  = 0x1000
	doorbellEnd  = regDoorbell + 2*Vectors*4

	// NVMe 1.4 §3.1 controller registers.
	regCAP   = 0x00
	regVS    = 0x08
	regINTMS = 0x0c
	regINTMC = 0x10
	regCC    = 0x14
	regCSTS  = 0x1c
	regNSSR  = 0x20
	regAQA   = 0x24
	regASQ   = 0x28
	regACQ   = 0x30
	regsLen  = 0x40

	version = 0x00010400 // NVMe 1.4

	mqes     = 0x7ff // CAP.MQES: 2048 entries (QEMU 7.2)
	capCQR   = 1 << 16
	capTO    = 0xf << 24 // 7.5 s (QEMU 7.2 NVME_CAP_SET_TO 0xf)
	capCSS   = 1 << 37   // NVM command set
	capMPMAX = 4 << 52   // MPSMAX 4: 64 KiB pages (QEMU 7.2)

	ccEN   = 1 << 0
	ccSHN  = 3 << 14
	cstsRD = 1 << 0
	cstsFS = 1 << 1
	cstsSH = 2 << 2 // SHST 10b: shutdown complete

	sqes = 6 // 64-byte SQ entries
	cqes = 4 // 16-byte CQ entries

	minPage = 4096
	// mdts is Identify's MDTS: 2^5 minimum pages, 128 KiB per command.
	mdts    = 5
	maxXfer = minPage << mdts
	lbaSize = 512

	// ioSlots bounds the I/O commands in flight (the block queue's depth);
	// adminSlots the admin commands waiting for room in the admin CQ.
	ioSlots    = 64
	adminSlots = 4
	workers    = 4
	aerl       = 3 // Identify AERL: 4 outstanding AERs
)

// Config wires a controller.
type Config struct {
	Memory memory.Accessor
	Drive  *block.Drive
	// Serial is Identify's SN (at most 20 bytes).
	Serial string
	// Discard passes deallocation (DSM, Write Zeroes' DEAC) to the image
	// (-drive discard=unmap); otherwise DSM deallocate succeeds doing
	// nothing and Write Zeroes writes zeros.
	Discard bool
	// BAR32 makes BAR0 a 32-bit BAR (test harnesses that forward 32-bit
	// BARs only).
	BAR32 bool
}

// Controller is one NVMe PCI function.
type Controller struct {
	fn      *pci.Device
	msixCap uint32
	mem     memory.Accessor
	drv     *block.Drive
	bq      *block.Queue
	info    block.Info
	nsze    uint64
	serial  string
	unmap   bool

	mu       sync.Mutex
	cc, csts uint32 // guarded by mu
	aqa      uint32
	asq, acq uint64
	intms    uint32
	pageBits uint // from CC.MPS at enable

	sqs [Vectors]subQueue
	cqs [Vectors]compQueue

	irqStatus [2]uint64 // INTx: vectors with entries the host has not consumed
	intxLevel bool

	// Features.
	wce       bool
	qsCreated bool
	coalesce  uint32
	asyncCfg  uint32
	arb       uint32
	power     uint32
	tempThr   uint32
	errRecov  uint32
	aers      [aerl + 1]uint16
	naer      int

	// Counters for SMART.
	readBytes, writeBytes, readCmds, writeCmds uint64

	gen       uint64 // bumped by controller resets: stale completions are dropped
	slots     []*slot
	ioFree    []*slot
	adminFree []*slot
	kick      bool // a slot was freed: starved queues may go on
	paused    bool

	// BadDoorbells counts doorbell writes ignored as invalid.
	badDoorbells uint64

	scratch [4096]byte // Identify / log page data
	cqe     [16]byte   // the entry being posted
}

// subQueue is a submission queue.
type subQueue struct {
	valid      bool
	base       uint64
	size       uint32
	head, tail uint32
	cqid       uint16
	gen        uint32
	starved    bool
}

// compQueue is a completion queue.
type compQueue struct {
	valid      bool
	base       uint64
	size       uint32
	head, tail uint32
	phase      bool
	ien        bool
	iv         uint16
	sqRefs     int
	wait, last *slot // completions waiting for room, in order
}

// New builds a controller on an opened drive (not owned: Close leaves it
// open).
func New(c Config) (*Controller, error) {
	if c.Drive == nil {
		return nil, errors.New("nvme: drive property not set")
	}
	if c.Memory == nil {
		return nil, errors.New("nvme: no guest memory")
	}
	ctl := &Controller{mem: c.Memory, drv: c.Drive, info: c.Drive.Info(), serial: c.Serial, unmap: c.Discard}
	if len(ctl.serial) > 20 {
		ctl.serial = ctl.serial[:20]
	}
	ctl.nsze = uint64(ctl.info.Size) / lbaSize
	fn, err := pci.New(pci.Header{VendorID: VendorID, DeviceID: DeviceID, Revision: Revision, Class: Class,
		SubsystemVendorID: SubVendor, SubsystemID: SubID, InterruptPin: 1, Extended: true})
	if err != nil {
		return nil, err
	}
	kind := pci.BARMem64
	if c.BAR32 {
		kind = pci.BARMem32
	}
	if err := fn.SetBAR(0, pci.BAR{Kind: kind, Size: BAR0Size, Handler: bar0{ctl}}); err != nil {
		return nil, err
	}
	// QEMU 7.2 nvme_init_pci: the power management capability at 0x60,
	// PCI Express endpoint at 0x80, MSI-X; godm has the MSI-X capability
	// only (Linux and SeaBIOS need neither of the others).
	capOff, err := fn.AddMSIX(pci.MSIXConfig{Vectors: Vectors, TableBAR: 0, TableOffset: msixTableOff, PBABAR: 0, PBAOffset: msixPBAOff})
	if err != nil {
		return nil, err
	}
	ctl.msixCap = uint32(capOff)
	ctl.fn = fn
	ctl.bq = block.NewQueue(c.Drive, ioSlots, workers)
	for i := range ioSlots + adminSlots {
		s := &slot{c: ctl, idx: i, admin: i >= ioSlots}
		s.doneFn = s.ioDone
		ctl.slots = append(ctl.slots, s)
		if s.admin {
			s.buf = make([]byte, 4096)
			ctl.adminFree = append(ctl.adminFree, s)
		} else {
			ctl.ioFree = append(ctl.ioFree, s)
		}
	}
	ctl.resetLocked()
	return ctl, nil
}

// Function is the PCI function.
func (c *Controller) Function() *pci.Device { return c.fn }

// Drive is the medium.
func (c *Controller) Drive() *block.Drive { return c.drv }

// capValue is CAP (NVMe 1.4 §3.1.1) as QEMU 7.2 sets it, less CSS bits 6
// and 7 (I/O command sets of NVMe 2.0).
func capValue() uint64 {
	return mqes | capCQR | capTO | capCSS | capMPMAX
}

// resetLocked is a controller reset (CC.EN 1 → 0, or the PCI reset): the
// queues go, held AERs and the interrupt state are dropped, features
// return to their defaults. Commands in flight complete into nothing (a
// new generation).
func (c *Controller) resetLocked() {
	c.gen++
	for i := range c.sqs {
		g := c.sqs[i].gen
		c.sqs[i] = subQueue{gen: g + 1}
	}
	for i := range c.cqs {
		for s := c.cqs[i].wait; s != nil; {
			n := s.next
			s.next = nil
			c.freeSlot(s)
			s = n
		}
		c.cqs[i] = compQueue{}
	}
	c.naer = 0
	c.irqStatus = [2]uint64{}
	c.intms = 0
	c.updateINTxLocked()
	c.wce = c.info.WriteCache
	c.qsCreated = false
	c.coalesce, c.asyncCfg, c.arb, c.power, c.errRecov = 0, 0, 0, 0, 0
	c.tempThr = tempOver
}

// Reset is the PCI function's reset: the registers to their power-on
// values and a controller reset. Block requests in flight are waited for.
func (c *Controller) Reset() {
	c.mu.Lock()
	c.resetLocked()
	c.cc, c.csts, c.aqa, c.asq, c.acq = 0, 0, 0, 0, 0
	c.mu.Unlock()
	c.bq.Drain()
	c.fn.Reset()
}

// Pause implements devices.Pauser: no command starts; those in flight
// complete (their completions are posted or wait for room).
func (c *Controller) Pause() {
	c.mu.Lock()
	c.paused = true
	c.mu.Unlock()
	c.bq.Drain()
}

// Resume implements devices.Pauser.
func (c *Controller) Resume() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.paused = false
	for i := range c.sqs {
		c.sqs[i].starved = true
	}
	c.kick = true
	c.runKicksLocked()
}

// Busy reports whether a block request is in flight.
func (c *Controller) Busy() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.slots {
		if s.busy && !s.waiting {
			return true
		}
	}
	return false
}

// Close stops the block queue; the drive stays open.
func (c *Controller) Close() error {
	c.bq.Close()
	return nil
}

// Commands counts the Read and Write commands started (SMART's host
// read and write commands).
func (c *Controller) Commands() (reads, writes uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readCmds, c.writeCmds
}

// BadDoorbells counts the doorbell writes ignored as invalid.
func (c *Controller) BadDoorbells() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.badDoorbells
}

// bar0 is BAR0's handler: registers and doorbells.
type bar0 struct{ c *Controller }

// Read implements devices.Handler. QEMU 7.2 nvme_mmio_read reads any
// width at any offset of the register file (misaligned and narrow reads
// only logged); the doorbells and everything past the registers read 0.
func (h bar0) Read(a devices.Access) uint64 {
	c := h.c
	off, n := a.Offset, uint64(a.Size)
	if off >= regsLen || off+n > regsLen {
		return 0
	}
	c.mu.Lock()
	var img [regsLen]byte
	c.regImageLocked(&img)
	c.mu.Unlock()
	var v uint64
	for i := n; i > 0; i-- {
		v = v<<8 | uint64(img[off+i-1])
	}
	return v
}

func (c *Controller) regImageLocked(img *[regsLen]byte) {
	put := func(off int, v uint64, n int) {
		for i := range n {
			img[off+i] = byte(v >> (8 * i))
		}
	}
	put(regCAP, capValue(), 8)
	put(regVS, version, 4)
	put(regINTMS, uint64(c.intms), 4)
	put(regINTMC, uint64(c.intms), 4)
	put(regCC, uint64(c.cc), 4)
	put(regCSTS, uint64(c.csts), 4)
	put(regAQA, uint64(c.aqa), 4)
	put(regASQ, c.asq, 8)
	put(regACQ, c.acq, 8)
}

// Write implements devices.Handler (QEMU 7.2 nvme_write_bar and
// nvme_process_db).
func (h bar0) Write(a devices.Access, v uint64) {
	c := h.c
	off := a.Offset
	if off >= regDoorbell {
		if off >= doorbellEnd || off&3 != 0 {
			return
		}
		c.mu.Lock()
		c.doorbellLocked(int((off-regDoorbell)>>2), uint32(v))
		c.mu.Unlock()
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	lo := uint32(v)
	switch off {
	case regINTMS:
		// Not used with MSI-X (§3.1.3).
		if !c.msixEnabled() {
			c.intms |= lo
			c.updateINTxLocked()
		}
	case regINTMC:
		if !c.msixEnabled() {
			c.intms &^= lo
			c.updateINTxLocked()
		}
	case regCC:
		c.writeCCLocked(lo)
	case regCSTS:
		// NSSRO is the only writable bit; CAP.NSSRS is 0, so it is never set.
	case regNSSR:
		// NVM subsystem reset not supported (CAP.NSSRS 0).
	case regAQA:
		c.aqa = lo & 0x0fff0fff
	case regASQ:
		c.asq = setLow(c.asq, v, a.Size) &^ 0xfff
	case regASQ + 4:
		c.asq = c.asq&0xffffffff | uint64(lo)<<32
	case regACQ:
		c.acq = setLow(c.acq, v, a.Size) &^ 0xfff
	case regACQ + 4:
		c.acq = c.acq&0xffffffff | uint64(lo)<<32
	}
}

func setLow(old, v uint64, size uint8) uint64 {
	if size == 8 {
		return v
	}
	return old&^0xffffffff | v&0xffffffff
}

// msixEnabled reads the MSI-X capability's enable bit.
func (c *Controller) msixEnabled() bool {
	return c.fn.ConfigRead(c.msixCap+2, 2)&0x8000 != 0
}

// writeCCLocked is a CC write (NVMe 1.4 §3.1.5, §7.6; QEMU 7.2
// nvme_write_bar's NVME_REG_CC).
func (c *Controller) writeCCLocked(v uint32) {
	const writable = 0x00fffff1 // EN, CSS, MPS, AMS, SHN, IOSQES, IOCQES
	v &= writable
	old := c.cc
	switch {
	case v&ccEN != 0 && old&ccEN == 0:
		c.cc = v
		if c.startLocked() {
			c.csts = c.csts&^cstsFS | cstsRD
		} else {
			// QEMU 7.2: a failed start sets CSTS to Controller Fatal Status.
			c.csts = cstsFS
		}
	case v&ccEN == 0 && old&ccEN != 0:
		c.resetLocked()
		c.cc = v
		c.csts &^= cstsRD | cstsFS
	case v&ccEN == 0:
		c.cc = v
	default:
		c.cc = c.cc&^ccSHN | v&ccSHN
	}
	switch {
	case v&ccSHN != 0 && old&ccSHN == 0:
		// Shutdown: the volatile cache goes to the medium; the queues stay
		// (QEMU 7.2 nvme_ctrl_shutdown).
		_ = c.drv.Flush()
		c.csts |= cstsSH
	case v&ccSHN == 0:
		c.csts &^= cstsSH
	}
}

// startLocked checks CC, AQA, ASQ and ACQ and creates the admin queues
// (QEMU 7.2 nvme_start_ctrl's checks; guest address 0 is valid RAM).
func (c *Controller) startLocked() bool {
	cc := c.cc
	mps := uint(cc>>7) & 0xf
	css := (cc >> 4) & 7
	ams := (cc >> 11) & 7
	iosqes, iocqes := (cc>>16)&0xf, (cc>>20)&0xf
	asqs, acqs := c.aqa&0xfff, (c.aqa>>16)&0xfff
	if mps > 4 || (css != 0 && css != 7) || ams != 0 || asqs == 0 || acqs == 0 {
		return false
	}
	if iosqes != sqes || iocqes != cqes {
		return false
	}
	c.pageBits = 12 + mps
	if c.asq&(1<<c.pageBits-1) != 0 || c.acq&(1<<c.pageBits-1) != 0 {
		return false
	}
	c.cqs[0] = compQueue{valid: true, base: c.acq, size: acqs + 1, phase: true, ien: true}
	g := c.sqs[0].gen + 1
	c.sqs[0] = subQueue{valid: true, base: c.asq, size: asqs + 1, gen: g}
	c.cqs[0].sqRefs = 1
	return true
}

func (c *Controller) readyLocked() bool {
	return c.cc&ccEN != 0 && c.csts&cstsRD != 0 && c.csts&cstsFS == 0
}

// fatalLocked sets Controller Fatal Status: the host must reset.
func (c *Controller) fatalLocked() { c.csts |= cstsFS }

// doorbellLocked is a write to doorbell register i: SQ i/2's tail when i
// is even, CQ i/2's head when odd. An invalid value or queue is ignored
// (the asynchronous event it would raise is not generated).
func (c *Controller) doorbellLocked(i int, v uint32) {
	if !c.readyLocked() {
		c.badDoorbells++
		return
	}
	qid := i >> 1
	if i&1 == 0 {
		q := &c.sqs[qid]
		if !q.valid || v >= q.size {
			c.badDoorbells++
			return
		}
		q.tail = v
		c.processSQLocked(qid)
	} else {
		q := &c.cqs[qid]
		if !q.valid || v >= q.size {
			c.badDoorbells++
			return
		}
		q.head = v
		c.flushCQLocked(qid)
		c.updateIRQAfterHeadLocked(qid)
	}
	c.runKicksLocked()
}

// runKicksLocked lets starved submission queues go on after slots were
// freed, iteratively (no recursion through completions).
func (c *Controller) runKicksLocked() {
	for c.kick && !c.paused {
		c.kick = false
		for i := range c.sqs {
			if c.sqs[i].starved {
				c.sqs[i].starved = false
				c.processSQLocked(i)
			}
		}
	}
}

// processSQLocked fetches and starts the commands between the queue's
// head and tail, while slots are free: at most the queue's size per call.
func (c *Controller) processSQLocked(qid int) {
	q := &c.sqs[qid]
	free := &c.ioFree
	if qid == 0 {
		free = &c.adminFree
	}
	for budget := q.size; budget > 0 && q.valid && q.head != q.tail && c.readyLocked(); budget-- {
		if c.paused || len(*free) == 0 {
			q.starved = true
			return
		}
		s := (*free)[len(*free)-1]
		if err := c.mem.Read(memory.GPA(q.base+uint64(q.head)<<sqes), s.cmd[:]); err != nil {
			c.fatalLocked()
			return
		}
		*free = (*free)[:len(*free)-1]
		q.head++
		if q.head == q.size {
			q.head = 0
		}
		s.busy, s.waiting = true, false
		s.sqid, s.sqgen, s.gen = uint16(qid), q.gen, c.gen
		s.dw0, s.status = 0, 0
		if qid == 0 {
			c.adminLocked(s)
		} else {
			c.ioLocked(s)
		}
	}
}

// freeSlot returns a slot to its free list.
func (c *Controller) freeSlot(s *slot) {
	s.busy, s.waiting = false, false
	if s.admin {
		c.adminFree = append(c.adminFree, s)
	} else {
		c.ioFree = append(c.ioFree, s)
	}
	c.kick = true
}

// completeLocked queues the slot's completion on its CQ and posts what
// fits. A completion of an older controller or SQ generation is dropped.
func (c *Controller) completeLocked(s *slot) {
	sq := &c.sqs[s.sqid]
	if s.gen != c.gen || !sq.valid || sq.gen != s.sqgen {
		c.freeSlot(s)
		return
	}
	q := &c.cqs[sq.cqid]
	s.waiting, s.next = true, nil
	if q.last == nil {
		q.wait = s
	} else {
		q.last.next = s
	}
	q.last = s
	c.flushCQLocked(int(sq.cqid))
}

// flushCQLocked posts waiting completions while the CQ has room (NVMe 1.4
// §4.6: DW3 holds CID, the phase tag and the status; DW2 the SQ head and
// ID), then interrupts.
func (c *Controller) flushCQLocked(cqid int) {
	q := &c.cqs[cqid]
	posted := false
	for q.wait != nil && q.valid {
		next := q.tail + 1
		if next == q.size {
			next = 0
		}
		if next == q.head {
			break // full: the host's head doorbell makes room
		}
		s := q.wait
		q.wait = s.next
		if q.wait == nil {
			q.last = nil
		}
		s.next = nil
		e := c.cqe[:]
		clear(e)
		le32(e[0:], s.dw0)
		le32(e[8:], uint32(c.sqs[s.sqid].head)|uint32(s.sqid)<<16)
		dw3 := uint32(s.cid) | uint32(s.status)<<17
		if q.phase {
			dw3 |= 1 << 16
		}
		le32(e[12:], dw3)
		a := q.base + uint64(q.tail)<<cqes
		// DW0-2 first, then DW3 with the phase tag: the host polls the
		// phase and must see the rest written.
		if c.mem.Write(memory.GPA(a), e[:12]) != nil || c.mem.Write(memory.GPA(a+12), e[12:]) != nil {
			c.freeSlot(s)
			c.fatalLocked()
			continue
		}
		q.tail = next
		if next == 0 {
			q.phase = !q.phase
		}
		c.freeSlot(s)
		posted = true
	}
	if posted && q.ien {
		c.interruptLocked(q.iv)
	}
}

// interruptLocked signals vector v: an MSI-X message when MSI-X is on,
// else the INTx level (QEMU 7.2 nvme_irq_assert).
func (c *Controller) interruptLocked(v uint16) {
	if c.fn.Interrupt(int(v)) {
		return
	}
	c.irqStatus[v>>6] |= 1 << (v & 63)
	c.updateINTxLocked()
}

// updateIRQAfterHeadLocked drops the INTx condition of the CQ's vector
// once no CQ on it holds unconsumed entries (QEMU nvme_irq_deassert).
func (c *Controller) updateIRQAfterHeadLocked(cqid int) {
	q := &c.cqs[cqid]
	if !q.ien {
		return
	}
	for i := range c.cqs {
		o := &c.cqs[i]
		if o.valid && o.ien && o.iv == q.iv && o.head != o.tail {
			return
		}
	}
	c.irqStatus[q.iv>>6] &^= 1 << (q.iv & 63)
	c.updateINTxLocked()
}

func (c *Controller) updateINTxLocked() {
	level := c.irqStatus[0]&^uint64(c.intms) != 0 || c.irqStatus[1] != 0
	if level != c.intxLevel {
		c.intxLevel = level
		c.fn.SetINTx(level)
	}
}

func le32(b []byte, v uint32) { b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24) }
func le16(b []byte, v uint16) { b[0], b[1] = byte(v), byte(v>>8) }
func le64(b []byte, v uint64) {
	le32(b, uint32(v))
	le32(b[4:], uint32(v>>32))
}
func rd32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}
func rd64(b []byte) uint64 { return uint64(rd32(b)) | uint64(rd32(b[4:]))<<32 }

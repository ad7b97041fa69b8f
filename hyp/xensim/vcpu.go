package xensim

import (
	"errors"
	"fmt"
	"runtime/metrics"
	"strconv"
	"sync/atomic"
	"time"

	"godm/hyp"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

// request is the ioreq_t a vCPU builds for one access.
type request struct {
	addr      uint64
	data      uint64
	count     uint32
	size      uint32
	typ       uint8
	dir       uint8 // xenabi.IOREQ_READ / IOREQ_WRITE
	df        bool
	dataIsPtr bool
}

// mmioFirst and mmioLast are hvm_mmio_first_byte/hvm_mmio_last_byte.
func (p *request) mmioFirst() uint64 {
	if p.df {
		return p.addr - uint64(p.count-1)*uint64(p.size)
	}
	return p.addr
}

func (p *request) mmioLast() uint64 {
	if p.df {
		return p.addr + uint64(p.size) - 1
	}
	return p.addr + uint64(p.count)*uint64(p.size) - 1
}

func (p *request) flags(state uint8) uint8 {
	f := state & xenabi.IoreqStateMask
	if p.dataIsPtr {
		f |= xenabi.IoreqDataIsPtrBit
	}
	if p.dir == xenabi.IOREQ_READ {
		f |= xenabi.IoreqDirBit
	}
	if p.df {
		f |= xenabi.IoreqDFBit
	}
	return f
}

// describe names the request in errors and violation reports. It takes a
// copy so that error paths do not make hot-path requests escape.
func (p request) describe() string {
	dir := "write"
	if p.dir == xenabi.IOREQ_READ {
		dir = "read"
	}
	kind := "type " + strconv.Itoa(int(p.typ))
	switch p.typ {
	case xenabi.IOREQ_TYPE_PIO:
		kind = "PIO"
	case xenabi.IOREQ_TYPE_COPY:
		kind = "MMIO"
	case xenabi.IOREQ_TYPE_PCI_CONFIG:
		kind = "PCI config"
	case xenabi.IOREQ_TYPE_TIMEOFFSET:
		kind = "timeoffset"
	case xenabi.IOREQ_TYPE_INVALIDATE:
		kind = "invalidate"
	}
	return fmt.Sprintf("%s %s addr %#x size %d count %d", kind, dir, p.addr, p.size, p.count)
}

// VCPU is a simulated vCPU. Its access methods behave like a Xen vCPU
// trapping on the access: Xen routes the request, fills the vCPU's slot
// in the chosen ioreq server's page, notifies the server's event channel
// and blocks the vCPU until the device model answers. A VCPU must be
// driven by one goroutine at a time.
//
// While it waits, the vCPU re-reads its slot's state word without the
// hypervisor's lock and blocks on a futex of its own (not in the Go
// scheduler), so it can run on a goroutine locked to its OS thread, as a
// benchmark's vCPUs do, at the cost of a real vCPU: a polled round trip
// is a few cache-line transfers, a blocking one a futex wake-up.
type VCPU struct {
	d    *Domain
	id   uint32
	spin atomic.Int64
	// holdP: sleep without telling the Go scheduler (see SetHoldP).
	holdP atomic.Bool
	wake  waker // kicked by the DM's notify on this vCPU's port
	busy  atomic.Bool
	// gen counts posts and completions, so dmNotified can tell a
	// consistent snapshot of server.waiting and the slot state from a
	// racy one.
	gen atomic.Uint64
	// runnable is the scheduler metric a spinning vCPU reads (see pause).
	runnable [1]metrics.Sample
}

func newVCPU(d *Domain, id uint32) *VCPU {
	v := &VCPU{d: d, id: id}
	v.runnable[0].Name = runnableMetric
	v.spin.Store(int64(d.s.cfg.Spin))
	return v
}

// ID returns the vCPU index.
func (v *VCPU) ID() uint32 { return v.id }

// SetSpin sets how many times the vCPU re-reads its slot before blocking
// on its event channel (0 blocks at once, as Xen does). The re-reads are
// back to back, a few nanoseconds each.
func (v *VCPU) SetSpin(n int) { v.spin.Store(int64(n)) }

// SetHoldP makes the vCPU sleep in a raw futex wait that the Go scheduler
// does not see, so that its goroutine keeps its P while it waits: a real
// vCPU is not one of the device model's threads, and must neither lend
// the device model a P while it waits nor need one back to resume. Use it
// only on a goroutine that has a P to itself (a benchmark's vCPU thread
// with GOMAXPROCS raised for it): any other goroutine could wait for that
// P for as long as the vCPU sleeps (each sleep lasts at most
// heldSleepMax, and a garbage collection's stop interrupts it).
func (v *VCPU) SetHoldP(on bool) { v.holdP.Store(on) }

// heldSleepMax bounds one held sleep (SetHoldP).
const heldSleepMax = 10 * time.Millisecond

func (v *VCPU) kick() { v.wake.kick() }

// ErrBusy is returned when a VCPU is used by two goroutines at once.
var ErrBusy = errors.New("xensim: vCPU already in an access")

func checkSize(size int) error {
	switch size {
	case 1, 2, 4, 8:
		return nil
	}
	return fmt.Errorf("xensim: access size %d: %w", size, unix.EINVAL)
}

func sizeMask(size uint32) uint64 {
	if size >= 8 {
		return ^uint64(0)
	}
	return 1<<(8*size) - 1
}

// Out performs an OUT of size bytes (1, 2 or 4) of val to port.
func (v *VCPU) Out(port uint16, size int, val uint64) error {
	if err := checkSize(size); err != nil || size == 8 {
		return fmt.Errorf("xensim: out port %#x size %d: %w", port, size, unix.EINVAL)
	}
	// Xen latches dword writes to 0xcf8 and still forwards them
	// (xen/arch/x86/hvm/ioreq.c:hvm_access_cf8).
	if port == 0xcf8 && size == 4 {
		atomic.StoreUint32(&v.d.cf8, uint32(val))
	}
	p := request{addr: uint64(port), data: val & sizeMask(uint32(size)), count: 1, size: uint32(size),
		typ: xenabi.IOREQ_TYPE_PIO, dir: xenabi.IOREQ_WRITE}
	_, err := v.access(&p)
	return err
}

// In performs an IN of size bytes (1, 2 or 4) from port.
func (v *VCPU) In(port uint16, size int) (uint64, error) {
	if err := checkSize(size); err != nil || size == 8 {
		return 0, fmt.Errorf("xensim: in port %#x size %d: %w", port, size, unix.EINVAL)
	}
	p := request{addr: uint64(port), count: 1, size: uint32(size), typ: xenabi.IOREQ_TYPE_PIO, dir: xenabi.IOREQ_READ}
	return v.access(&p)
}

// MMIORead reads size bytes at gpa. RAM is read directly (the access
// would not trap); anything else is routed to an ioreq server.
func (v *VCPU) MMIORead(gpa uint64, size int) (uint64, error) {
	if err := checkSize(size); err != nil {
		return 0, err
	}
	if val, ok := v.ramAccess(gpa, size, false, 0); ok {
		return val, nil
	}
	p := request{addr: gpa, count: 1, size: uint32(size), typ: xenabi.IOREQ_TYPE_COPY, dir: xenabi.IOREQ_READ}
	return v.access(&p)
}

// MMIOWrite writes size bytes of val at gpa (RAM directly, otherwise
// through the ioreq server claiming gpa).
func (v *VCPU) MMIOWrite(gpa uint64, size int, val uint64) error {
	if err := checkSize(size); err != nil {
		return err
	}
	if _, ok := v.ramAccess(gpa, size, true, val); ok {
		return nil
	}
	p := request{addr: gpa, data: val & sizeMask(uint32(size)), count: 1, size: uint32(size),
		typ: xenabi.IOREQ_TYPE_COPY, dir: xenabi.IOREQ_WRITE}
	_, err := v.access(&p)
	return err
}

// ramAccess performs an access that hits guest RAM without trapping
// (p2m_ram_rw, reads of p2m_ram_ro and p2m_ioreq_server pages). Writes
// to p2m_ram_ro are discarded. ok=false means the access traps and goes
// to an ioreq server.
func (v *VCPU) ramAccess(gpa uint64, size int, write bool, val uint64) (uint64, bool) {
	d := v.d
	s := d.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	gfn := gpa >> pageShift
	if d.dead || (gpa+uint64(size)-1)>>pageShift != gfn || !d.isRAM(gfn) {
		return 0, false
	}
	switch d.memTypeOf(gfn) {
	case xenabi.HVMMEM_ram_rw:
	case xenabi.HVMMEM_ram_ro:
		if write {
			return 0, true
		}
	case xenabi.HVMMEM_ioreq_server:
		if write && d.memTypeSrv != nil && d.memTypeFlags&xenabi.XEN_DMOP_IOREQ_MEM_ACCESS_WRITE != 0 {
			return 0, false
		}
	default:
		return 0, false
	}
	b := d.ramBytes(gpa)
	if write {
		for i := 0; i < size; i++ {
			b[i] = byte(val >> (8 * i))
		}
		d.markDirty(gfn)
		return 0, true
	}
	var x uint64
	for i := 0; i < size; i++ {
		x |= uint64(b[i]) << (8 * i)
	}
	return x, true
}

// RepOuts performs REP OUTS: count elements of size bytes from guest RAM
// at bufGPA to port (data_is_ptr). Like Xen, the request is split where
// the buffer crosses a page boundary.
func (v *VCPU) RepOuts(port uint16, size int, count uint32, bufGPA uint64, df bool) error {
	return v.rep(xenabi.IOREQ_TYPE_PIO, uint64(port), size, count, bufGPA, df, xenabi.IOREQ_WRITE)
}

// RepIns performs REP INS: count elements of size bytes from port into
// guest RAM at bufGPA.
func (v *VCPU) RepIns(port uint16, size int, count uint32, bufGPA uint64, df bool) error {
	return v.rep(xenabi.IOREQ_TYPE_PIO, uint64(port), size, count, bufGPA, df, xenabi.IOREQ_READ)
}

// RepMovs performs REP MOVS between emulated MMIO at mmioGPA and guest
// RAM at ramGPA: toDevice copies RAM to the device (an MMIO write with
// data_is_ptr), otherwise the device's data lands in RAM.
func (v *VCPU) RepMovs(mmioGPA uint64, size int, count uint32, ramGPA uint64, df bool, toDevice bool) error {
	dir := uint8(xenabi.IOREQ_READ)
	if toDevice {
		dir = xenabi.IOREQ_WRITE
	}
	return v.rep(xenabi.IOREQ_TYPE_COPY, mmioGPA, size, count, ramGPA, df, dir)
}

func (v *VCPU) rep(typ uint8, addr uint64, size int, count uint32, buf uint64, df bool, dir uint8) error {
	if err := checkSize(size); err != nil {
		return err
	}
	if count == 0 {
		return nil
	}
	step := uint64(size)
	for count > 0 {
		// Elements left in the buffer's page in the direction of travel.
		var room uint64
		if df {
			room = (buf&(pageSize-1))/step + 1
		} else {
			room = (pageSize - buf&(pageSize-1)) / step
		}
		n := uint64(count)
		if room == 0 {
			room = 1
		}
		if n > room {
			n = room
		}
		p := request{addr: addr, data: buf, count: uint32(n), size: uint32(size), typ: typ, dir: dir, df: df, dataIsPtr: true}
		if _, err := v.access(&p); err != nil {
			return err
		}
		count -= uint32(n)
		if df {
			buf -= n * step
			if typ == xenabi.IOREQ_TYPE_COPY {
				addr -= n * step
			}
		} else {
			buf += n * step
			if typ == xenabi.IOREQ_TYPE_COPY {
				addr += n * step
			}
		}
	}
	return nil
}

// PCIConfigRead reads a PCI configuration register the way a guest does:
// a dword write of the address to 0xcf8, then a read of 0xcfc+(reg&3).
// sbdf packs seg<<16|bus<<8|dev<<3|fn; seg must be 0 and reg < 256.
func (v *VCPU) PCIConfigRead(sbdf uint32, reg uint32, size int) (uint64, error) {
	port, err := v.selectConfig(sbdf, reg, size)
	if err != nil {
		return 0, err
	}
	return v.In(port, size)
}

// PCIConfigWrite writes a PCI configuration register through 0xcf8/0xcfc.
func (v *VCPU) PCIConfigWrite(sbdf uint32, reg uint32, size int, val uint64) error {
	port, err := v.selectConfig(sbdf, reg, size)
	if err != nil {
		return err
	}
	return v.Out(port, size, val)
}

func (v *VCPU) selectConfig(sbdf, reg uint32, size int) (uint16, error) {
	if sbdf>>16 != 0 || reg > 0xff || (size != 1 && size != 2 && size != 4) || int(reg&3)+size > 4 {
		return 0, fmt.Errorf("xensim: PCI config %#x reg %#x size %d via 0xcf8: %w", sbdf, reg, size, unix.EINVAL)
	}
	cf8 := uint64(0x80000000 | (sbdf&0xffff)<<8 | reg&0xfc)
	if err := v.Out(0xcf8, 4, cf8); err != nil {
		return 0, err
	}
	return uint16(0xcfc + reg&3), nil
}

// access routes one request as Xen does and completes it.
func (v *VCPU) access(p *request) (uint64, error) {
	if !v.busy.CompareAndSwap(false, true) {
		return 0, ErrBusy
	}
	defer v.busy.Store(false)
	d := v.d
	s := d.s
	s.mu.RLock()
	if d.dead {
		s.mu.RUnlock()
		return 0, fmt.Errorf("xensim: %v vcpu%d: %v: %w", d.id, v.id, p.describe(), hyp.ErrClosed)
	}
	if p.typ == xenabi.IOREQ_TYPE_PIO && d.hardwarePort(p.addr, uint64(p.size)) ||
		p.typ == xenabi.IOREQ_TYPE_COPY && d.hardwareMMIO(p.addr>>pageShift) {
		// Passed-through I/O goes to the physical device, which the
		// simulator does not have: it behaves like nothing answering.
		val := v.nullHandler(p)
		s.mu.RUnlock()
		return val, nil
	}
	var srv *server
	if p.typ == xenabi.IOREQ_TYPE_COPY && p.dir == xenabi.IOREQ_WRITE && d.isRAM(p.addr>>pageShift) &&
		d.memTypeOf(p.addr>>pageShift) == xenabi.HVMMEM_ioreq_server && d.memTypeSrv != nil {
		// Writes to p2m_ioreq_server pages go to the server that claimed
		// the type (xen/arch/x86/hvm/emulate.c:hvmemul_do_io).
		srv = d.memTypeSrv
	} else {
		srv = d.selectServer(p)
	}
	if srv == nil {
		val := v.nullHandler(p)
		s.mu.RUnlock()
		return val, nil
	}
	slot, err := v.post(srv, p)
	if err == nil {
		srv.use.acquire() // the page stays mapped until await releases it
	}
	s.mu.RUnlock()
	if err != nil {
		return 0, err
	}
	return v.await(srv, slot, p)
}

// nullHandler is Xen's null_handler: reads return all-ones (into RAM for
// data_is_ptr), writes are dropped. Called with s.mu held.
func (v *VCPU) nullHandler(p *request) uint64 {
	if p.dir != xenabi.IOREQ_READ {
		return 0
	}
	if p.dataIsPtr {
		n := uint64(p.count) * uint64(p.size)
		start := p.data
		if p.df {
			start = p.data - n + uint64(p.size)
		}
		for i := uint64(0); i < n; i++ {
			if b := v.d.ramBytes(start + i); b != nil {
				b[0] = 0xff
			}
		}
		return 0
	}
	return sizeMask(p.size)
}

// post fills the vCPU's slot and notifies the server (ioreq_send). Called
// with s.mu held (shared).
func (v *VCPU) post(srv *server, p *request) ([]byte, error) {
	d := v.d
	s := d.s
	if srv.pages == nil {
		s.violation(d.id, v.id, "ioreq server %d enabled without an ioreq page; %v unhandled", srv.id, p.describe())
		return nil, fmt.Errorf("xensim: %v vcpu%d: %v: server %d has no ioreq page: %w", d.id, v.id, p.describe(), srv.id, unix.EIO)
	}
	slot := srv.slot(v.id)
	w := atomic.LoadUint32(u32at(slot, xenabi.IoreqStateWordOffs))
	if st := (w >> 16) & xenabi.IoreqStateMask; st != xenabi.STATE_IOREQ_NONE {
		s.violation(d.id, v.id, "device model set bad IO state %d in server %d", st, srv.id)
		return nil, fmt.Errorf("xensim: %v vcpu%d: %v: slot state %d, not NONE: %w", d.id, v.id, p.describe(), st, unix.EIO)
	}
	port := srv.vcpuPort[v.id]
	if ep := atomic.LoadUint32(u32at(slot, 24)); ep != port {
		s.violation(d.id, v.id, "device model set bad event channel %d (want %d) in server %d", ep, port, srv.id)
		return nil, fmt.Errorf("xensim: %v vcpu%d: %v: vp_eport %d, want %d: %w", d.id, v.id, p.describe(), ep, port, unix.EIO)
	}
	if lc := &srv.last[v.id]; lc.valid {
		for i := 0; i < 4; i++ {
			if atomic.LoadUint64(u64at(slot, 8*i)) != lc.w[i] {
				s.violation(d.id, v.id, "device model wrote the ioreq slot of idle vCPU %d in server %d", v.id, srv.id)
				break
			}
		}
	}
	atomic.StoreUint64(u64at(slot, 0), p.addr)
	atomic.StoreUint64(u64at(slot, 8), p.data)
	atomic.StoreUint32(u32at(slot, 16), p.count)
	atomic.StoreUint32(u32at(slot, 20), p.size)
	// Waiting before READY is published: a fast device model may answer
	// and notify before the next statement (dmNotified checks waiting).
	srv.waiting[v.id].Store(true)
	v.gen.Add(1) // after waiting changes, here and on completion
	// The state word last, with release semantics (Go atomics are
	// sequentially consistent).
	atomic.StoreUint32(u32at(slot, xenabi.IoreqStateWordOffs),
		uint32(p.flags(xenabi.STATE_IOREQ_READY))<<16|uint32(p.typ)<<24)
	s.xenNotify(d, port)
	return slot, nil
}

// await waits for the device model's answer (hvm_wait_for_io). Every
// decision is made by check, under the lock. In between, the vCPU waits
// without the lock for what can change check's answer: the state word
// moving or the server going away (see wake.go). One move needs no
// decision: READY to INPROCESS (the device model claimed the request),
// for which check would only remember the new state, so the vCPU
// remembers it itself.
func (v *VCPU) await(srv *server, slot []byte, p *request) (uint64, error) {
	d := v.d
	s := d.s
	defer func() {
		srv.waiting[v.id].Store(false)
		v.gen.Add(1)
		srv.use.release()
	}()
	word := u32at(slot, xenabi.IoreqStateWordOffs)
	// post published READY and the server was alive: what check would
	// find, had nothing happened since.
	st := uint32(xenabi.STATE_IOREQ_READY)
	spin := v.spin.Load()
	var deadline time.Time
	polls := int64(0)
	for {
		// Wait for a change, spinning first if asked to.
		changed := false
		for ; spin > 0; polls++ {
			spin--
			if now := stateOf(word); now != st {
				if st == xenabi.STATE_IOREQ_READY && now == xenabi.STATE_IOREQ_INPROCESS {
					st = now
					continue
				}
				changed = true
				break
			}
			if polls%64 == 63 && srv.use.retired() {
				changed = true
				break
			}
			v.pause(polls)
		}
		if !changed {
			if deadline.IsZero() {
				deadline = time.Now().Add(s.cfg.IOReqTimeout)
			}
			v.wake.sleeping.Store(true)
			seq := v.wake.seq.Load()
			if stateOf(word) == st && !srv.use.retired() {
				left := time.Until(deadline)
				if left <= 0 {
					v.wake.sleeping.Store(false)
					return 0, fmt.Errorf("xensim: %v vcpu%d: no response to %v within %v (slot state %d): %w",
						d.id, v.id, p.describe(), s.cfg.IOReqTimeout, st, ErrTimeout)
				}
				if v.holdP.Load() {
					futexWaitHeld(&v.wake.seq, seq, min(left, heldSleepMax))
				} else {
					futexWait(&v.wake.seq, seq, left)
				}
			}
			v.wake.sleeping.Store(false)
			select {
			case <-d.dying:
				return 0, fmt.Errorf("xensim: %v vcpu%d: %v: %w", d.id, v.id, p.describe(), hyp.ErrClosed)
			default:
			}
		}
		val, now, done, err := v.check(srv, slot, p, st)
		if done {
			return val, err
		}
		st = now
	}
}

// stateOf reads the state of a slot's state word.
func stateOf(word *uint32) uint32 { return (atomic.LoadUint32(word) >> 16) & xenabi.IoreqStateMask }

// check looks at the slot once, under the lock that keeps the page
// mapped, and completes the request if the device model answered.
func (v *VCPU) check(srv *server, slot []byte, p *request, prev uint32) (val uint64, st uint32, done bool, err error) {
	d := v.d
	s := d.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	if d.dead || d.servers[srv.id] != srv || srv.pages == nil {
		return 0, 0, true, fmt.Errorf("xensim: %v vcpu%d: %v: ioreq server %d destroyed: %w", d.id, v.id, p.describe(), srv.id, hyp.ErrClosed)
	}
	word := u32at(slot, xenabi.IoreqStateWordOffs)
	st = (atomic.LoadUint32(word) >> 16) & xenabi.IoreqStateMask
	switch {
	case st == xenabi.STATE_IORESP_READY:
		data := atomic.LoadUint64(u64at(slot, 8))
		w := atomic.LoadUint32(word)
		atomic.StoreUint32(word, w&^(xenabi.IoreqStateMask<<16))
		v.remember(srv, slot)
		if p.dir == xenabi.IOREQ_READ && !p.dataIsPtr {
			return data & sizeMask(p.size), st, true, nil
		}
		return 0, st, true, nil
	case st == xenabi.STATE_IOREQ_NONE:
		// "an emulator dying races with I/O being requested": the access
		// completes with all-ones.
		s.violation(d.id, v.id, "device model reset the ioreq slot to NONE during %v (server %d)", p.describe(), srv.id)
		v.remember(srv, slot)
		return sizeMask(p.size), st, true, nil
	case st < prev:
		s.violation(d.id, v.id, "weird ioreq state transition %d -> %d during %v (server %d)", prev, st, p.describe(), srv.id)
		return 0, st, true, fmt.Errorf("xensim: %v vcpu%d: %v: ioreq state went %d -> %d (Xen crashes the domain): %w",
			d.id, v.id, p.describe(), prev, st, unix.EIO)
	case st > xenabi.STATE_IORESP_READY:
		s.violation(d.id, v.id, "weird ioreq state %d during %v (server %d)", st, p.describe(), srv.id)
		return 0, st, true, fmt.Errorf("xensim: %v vcpu%d: %v: ioreq state %d (Xen crashes the domain): %w",
			d.id, v.id, p.describe(), st, unix.EIO)
	}
	return 0, st, false, nil
}

func (v *VCPU) remember(srv *server, slot []byte) {
	lc := &srv.last[v.id]
	for i := 0; i < 4; i++ {
		lc.w[i] = atomic.LoadUint64(u64at(slot, 8*i))
	}
	lc.valid = true
}

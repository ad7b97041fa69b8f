package ioreq

import (
	"sync"
	"sync/atomic"
	"testing"

	"godm/devices"
)

// newPage returns a zeroed, 8-byte aligned 4 KiB page.
func newPage(t testing.TB) []byte {
	t.Helper()
	p := make([]byte, 4096) // a 4 KiB allocation is page aligned
	if !aligned8(p) {
		t.Fatal("test page not 8-byte aligned")
	}
	return p
}

// post writes r into s the way Xen does (fields first, then state READY in
// the flags byte), with atomic stores so racing readers are well defined.
func post(s *Slot, r Request) {
	atomic.StoreUint64(s.addr, r.Addr)
	atomic.StoreUint64(s.data, r.Data)
	atomic.StoreUint32(s.count, r.Count)
	atomic.StoreUint32(s.size, r.Size)
	w := atomic.LoadUint32(s.word) & 0xffff // keep _pad0
	w |= uint32(r.Flags()|uint8(StateReady))<<flagsShift | uint32(r.Type)<<typeShift
	atomic.StoreUint32(s.word, w)
}

// data returns the slot's data field.
func slotData(s *Slot) uint64 { return atomic.LoadUint64(s.data) }

// complete plays Xen's part after a response: IORESP_READY -> NONE.
func complete(s *Slot) {
	w := atomic.LoadUint32(s.word)
	atomic.StoreUint32(s.word, withState(w, StateNone))
}

// op is one recorded device access.
type op struct {
	Write bool
	Addr  uint64
	Size  uint8
	VCPU  uint32
	Val   uint64
}

// recSpace records accesses; reads return base + number of reads so far
// (masked), so repeated reads are distinguishable.
type recSpace struct {
	mu    sync.Mutex
	ops   []op
	reads uint64
	base  uint64
}

func (s *recSpace) Read(addr uint64, size uint8, vcpu uint32) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := (s.base + s.reads) & devices.SizeMask(size)
	s.reads++
	s.ops = append(s.ops, op{Addr: addr, Size: size, VCPU: vcpu, Val: v})
	return v
}

func (s *recSpace) Write(addr uint64, size uint8, vcpu uint32, v uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ops = append(s.ops, op{Write: true, Addr: addr, Size: size, VCPU: vcpu, Val: v})
}

func (s *recSpace) log() []op {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]op(nil), s.ops...)
}

// countSpace is an allocation-free fake: it counts and returns a constant.
type countSpace struct {
	reads, writes atomic.Uint64
	last          atomic.Uint64
}

func (s *countSpace) Read(addr uint64, size uint8, _ uint32) uint64 {
	s.reads.Add(1)
	return 0x1122334455667788 & devices.SizeMask(size)
}

func (s *countSpace) Write(addr uint64, size uint8, _ uint32, v uint64) {
	s.writes.Add(1)
	s.last.Store(v)
}

// regHandler is a devices.Handler with a bank of registers.
type regHandler struct {
	mu   sync.Mutex
	regs map[uint64]uint64
	log  []devices.Access
}

func (h *regHandler) Read(a devices.Access) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.log = append(h.log, a)
	return h.regs[a.Offset] & devices.SizeMask(a.Size)
}

func (h *regHandler) Write(a devices.Access, v uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.log = append(h.log, a)
	if h.regs == nil {
		h.regs = map[uint64]uint64{}
	}
	h.regs[a.Offset] = v
}

// nopEvents is an Events that never fires and counts notifications.
type nopEvents struct{ notified atomic.Uint64 }

func (*nopEvents) Pending([]uint32) (int, error) { return 0, nil }
func (*nopEvents) Unmask(uint32) error           { return nil }
func (e *nopEvents) Notify(uint32) error {
	e.notified.Add(1)
	return nil
}
func (*nopEvents) Fd() int { return -1 }

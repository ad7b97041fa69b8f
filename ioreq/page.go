package ioreq

import (
	"errors"
	"fmt"
	"sync/atomic"

	"godm/hyp/xenabi"
)

// MaxVCPUs is the number of struct ioreq slots in the single shared ioreq
// frame Xen serves (XENMEM_resource_ioreq_server_frame_ioreq(0) only;
// xen/common/ioreq.c ioreq_server_get_frame): 4096 / 32.
const MaxVCPUs = xenabi.XEN_PAGE_SIZE / xenabi.IoreqSize

// MaxCount is the largest repeat count Xen puts in a request: the emulator
// clips repetitions to 4096 (xen/arch/x86/hvm/emulate.c,
// hvmemul_virtual_to_linear and hvmemul_linear_to_phys). Larger counts are
// answered as bad requests.
const MaxCount = 4096

// Layout of struct ioreq (xen/include/public/hvm/ioreq.h): the 32-bit word
// at offset 28 holds _pad0 (bits 0-15), the bitfield byte state:4
// data_is_ptr:1 dir:1 df:1 (bits 16-23) and type (bits 24-31) on
// little-endian x86.
const (
	offAddr  = 0
	offData  = 8
	offCount = 16
	offSize  = 20
	offEport = 24
	offWord  = xenabi.IoreqStateWordOffs

	flagsShift = 16
	typeShift  = 24
	stateMask  = uint32(xenabi.IoreqStateMask) << flagsShift
)

// ErrBadPage is returned (wrapped) for a page that cannot hold the slots or
// ring asked for, or is not 8-byte aligned.
var ErrBadPage = errors.New("ioreq: unusable page")

// State is the 4-bit state field of a slot.
type State uint8

// Slot states; xen/include/public/hvm/ioreq.h.
const (
	StateNone      State = xenabi.STATE_IOREQ_NONE
	StateReady     State = xenabi.STATE_IOREQ_READY
	StateInProcess State = xenabi.STATE_IOREQ_INPROCESS
	StateRespReady State = xenabi.STATE_IORESP_READY
)

func wordState(w uint32) State { return State(w >> flagsShift & xenabi.IoreqStateMask) }

func withState(w uint32, s State) uint32 { return w&^stateMask | uint32(s)<<flagsShift }

// SharedPage is a view of Xen's synchronous ioreq page (struct
// shared_iopage): one Slot per vCPU.
type SharedPage struct {
	slots []Slot
}

// NewSharedPage wraps page (at least vcpus*32 bytes, 8-byte aligned) as the
// shared page of a server with vcpus vCPUs. The page must stay mapped while
// the SharedPage is used.
func NewSharedPage(page []byte, vcpus int) (*SharedPage, error) {
	if vcpus <= 0 || vcpus > MaxVCPUs {
		return nil, fmt.Errorf("shared page for %d vCPUs (max %d): %w", vcpus, MaxVCPUs, ErrBadPage)
	}
	if len(page) < vcpus*xenabi.IoreqSize || !aligned8(page) {
		return nil, fmt.Errorf("shared page of %d bytes for %d vCPUs: %w", len(page), vcpus, ErrBadPage)
	}
	sp := &SharedPage{slots: make([]Slot, vcpus)}
	for i := range sp.slots {
		b := page[i*xenabi.IoreqSize : (i+1)*xenabi.IoreqSize]
		sp.slots[i] = Slot{
			vcpu:  uint32(i),
			addr:  ptr64(b, offAddr),
			data:  ptr64(b, offData),
			count: ptr32(b, offCount),
			size:  ptr32(b, offSize),
			eport: ptr32(b, offEport),
			word:  ptr32(b, offWord),
		}
	}
	return sp, nil
}

// Len returns the number of slots.
func (p *SharedPage) Len() int { return len(p.slots) }

// Slot returns the slot of vCPU i (0 <= i < Len).
func (p *SharedPage) Slot(i int) *Slot { return &p.slots[i] }

// Slot is one vCPU's struct ioreq in the shared page. Xen writes a request
// and then sets the state to READY; the device model claims it (INPROCESS),
// handles it, writes the data and sets IORESP_READY; Xen then reads the
// data and sets NONE (xen/common/ioreq.c, ioreq_send and hvm_wait_for_io).
//
// A Slot is owned by one worker at a time; its methods never allocate.
type Slot struct {
	vcpu  uint32
	addr  *uint64
	data  *uint64
	count *uint32
	size  *uint32
	eport *uint32
	word  *uint32
}

// VCPU returns the index of the slot's vCPU.
func (s *Slot) VCPU() uint32 { return s.vcpu }

// State returns the slot's current state (an atomic load).
func (s *Slot) State() State { return wordState(atomic.LoadUint32(s.word)) }

// Ready reports whether the slot holds a request nobody has claimed yet.
// It is the cheap check pollers spin on.
func (s *Slot) Ready() bool { return s.State() == StateReady }

// VPEport returns vp_eport: Xen's end of the vCPU's event channel. Xen
// writes it when the server is enabled and checks it on every request, so
// the device model only reads it.
func (s *Slot) VPEport() uint32 { return atomic.LoadUint32(s.eport) }

// Claim takes a READY request: it moves the slot to INPROCESS and decodes
// the request into r. It returns the claimed state word (pass it to
// Respond) and false if the slot was not READY; such a slot is left alone.
//
// Barriers: the atomic load of the state word is the acquire that pairs
// with Xen's write barrier between filling the request and setting READY
// (prepare_wait_on_xen_event_channel is an implicit barrier in
// ioreq_send, xen/common/ioreq.c; QEMU issues rmb after seeing READY), so
// the fields read after it are the ones Xen wrote.
func (s *Slot) Claim(r *Request) (word uint32, ok bool) {
	w := atomic.LoadUint32(s.word)
	if wordState(w) != StateReady {
		return 0, false
	}
	nw := withState(w, StateInProcess)
	if !atomic.CompareAndSwapUint32(s.word, w, nw) {
		return 0, false
	}
	r.Addr = atomic.LoadUint64(s.addr)
	r.Data = atomic.LoadUint64(s.data)
	r.Count = atomic.LoadUint32(s.count)
	r.Size = atomic.LoadUint32(s.size)
	r.setFlags(uint8(nw>>flagsShift), uint8(nw>>typeShift))
	r.VCPU = s.vcpu
	return nw, true
}

// Respond completes a request claimed with Claim: it writes data (if
// writeData) and moves the slot from INPROCESS to IORESP_READY. It returns
// false, writing nothing, if the slot is no longer in the claimed state
// (Xen or a hostile writer changed it; QEMU calls this "Badness in I/O
// request").
//
// Barriers: the data store comes before the compare-and-swap that
// publishes IORESP_READY; sync/atomic operations are sequentially
// consistent, so this is the release Xen's hvm_wait_for_io expects (it
// reads the state, issues smp_rmb, then reads data; QEMU issues wmb before
// setting IORESP_READY).
func (s *Slot) Respond(word uint32, data uint64, writeData bool) bool {
	if atomic.LoadUint32(s.word) != word {
		return false
	}
	if writeData {
		atomic.StoreUint64(s.data, data)
	}
	return atomic.CompareAndSwapUint32(s.word, word, withState(word, StateRespReady))
}

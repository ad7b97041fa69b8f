package evtchn_test

import (
	"sync/atomic"
	"unsafe"

	"godm/hyp/xenabi"
)

// loadState atomically loads the 32-bit word of an ioreq slot holding
// its state and flags (the other side updates it concurrently).
func loadState(slot []byte) uint32 {
	return atomic.LoadUint32((*uint32)(unsafe.Pointer(&slot[xenabi.IoreqStateWordOffs])))
}

// storeState atomically stores the state word of an ioreq slot.
func storeState(slot []byte, w uint32) {
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&slot[xenabi.IoreqStateWordOffs])), w)
}

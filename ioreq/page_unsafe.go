package ioreq

import "unsafe"

// The helpers below turn offsets into shared pages into pointers for
// sync/atomic. Callers check bounds and 8-byte alignment once, when a page
// is wrapped (NewSharedPage, NewRing); the pointers are then valid for the
// life of the mapping.

// ptr32 returns a pointer to the uint32 at b[off:off+4].
func ptr32(b []byte, off int) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }

// ptr64 returns a pointer to the uint64 at b[off:off+8].
func ptr64(b []byte, off int) *uint64 { return (*uint64)(unsafe.Pointer(&b[off])) }

// aligned8 reports whether b starts on an 8-byte boundary.
func aligned8(b []byte) bool {
	return uintptr(unsafe.Pointer(unsafe.SliceData(b)))%8 == 0
}

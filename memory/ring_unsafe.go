package memory

import (
	"math/bits"
	"sync/atomic"
	"unsafe"
)

// Atomic accesses to guest memory. sync/atomic works on Go pointers; a
// mapped guest page is memory like any other to the CPU, so the pointer is
// made from the slice's data. The callers (ring.go) check bounds; these
// check the host address's alignment, which sync/atomic requires and
// without which an x86 locked access could split a cache line.

// hostLE reports whether the host stores integers little-endian, as guest
// rings do (virtio 1.x le16/le32/le64, AHCI and NVMe structures).
var hostLE = func() bool { x := uint16(1); return *(*byte)(unsafe.Pointer(&x)) == 1 }()

func aligned(b []byte, size uintptr) bool {
	return len(b) >= int(size) && uintptr(unsafe.Pointer(unsafe.SliceData(b)))%size == 0
}

func p32(b []byte) *uint32 { return (*uint32)(unsafe.Pointer(unsafe.SliceData(b))) }
func p64(b []byte) *uint64 { return (*uint64)(unsafe.Pointer(unsafe.SliceData(b))) }

func le32(v uint32) uint32 {
	if hostLE {
		return v
	}
	return bits.ReverseBytes32(v)
}

func le64(v uint64) uint64 {
	if hostLE {
		return v
	}
	return bits.ReverseBytes64(v)
}

// atomicLoad32 loads the little-endian 32-bit value at b[0:4].
func atomicLoad32(b []byte) uint32 { return le32(atomic.LoadUint32(p32(b))) }

// atomicStore32 stores v little-endian at b[0:4].
func atomicStore32(b []byte, v uint32) { atomic.StoreUint32(p32(b), le32(v)) }

// atomicCAS32 replaces the little-endian 32-bit value at b[0:4] by new if
// it is old.
func atomicCAS32(b []byte, old, new uint32) bool {
	return atomic.CompareAndSwapUint32(p32(b), le32(old), le32(new))
}

// atomicLoad64 loads the little-endian 64-bit value at b[0:8].
func atomicLoad64(b []byte) uint64 { return le64(atomic.LoadUint64(p64(b))) }

// atomicStore64 stores v little-endian at b[0:8].
func atomicStore64(b []byte, v uint64) { atomic.StoreUint64(p64(b), le64(v)) }

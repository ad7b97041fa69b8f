package passthrough

import (
	"sync/atomic"
	"unsafe"
)

// loadMMIO reads size (1, 2, 4 or 8) bytes at mem[i] with one load of
// that width: a device register must not be read byte by byte, nor
// twice. i is aligned to size; mem[i:i+size] must be in range.
func loadMMIO(mem []byte, i int, size uint8) uint64 {
	_ = mem[i+int(size)-1] // bounds
	p := unsafe.Pointer(&mem[i])
	switch size {
	case 1:
		return uint64(*(*uint8)(p))
	case 2:
		return uint64(*(*uint16)(p))
	case 4:
		return uint64(atomic.LoadUint32((*uint32)(p)))
	case 8:
		return atomic.LoadUint64((*uint64)(p))
	}
	return 0
}

package kerneltest

import (
	"unsafe"
)

// Ioctl implements kernel.File: it views the argument struct (its size
// known per request number) and follows its pointers.
func (f *File) Ioctl(req uint, arg unsafe.Pointer) (uintptr, error) {
	var b []byte
	if arg != nil {
		if n := ArgLen(req); n > 0 {
			b = unsafe.Slice((*byte)(arg), n)
		}
	}
	return f.ioctl(req, b)
}

// view returns n bytes of the caller's memory at user address v. The
// address comes from a pointer field the code under test wrote; it points
// to live Go memory (kept alive by the caller for the call) or to a
// mapping of this fake.
func view(v uint64, n int) []byte {
	if v == 0 || n <= 0 {
		return nil
	}
	p := *(*unsafe.Pointer)(unsafe.Pointer(&v))
	return unsafe.Slice((*byte)(p), n)
}

func addrOf(b []byte) uintptr {
	if len(b) == 0 {
		return 0
	}
	return uintptr(unsafe.Pointer(&b[0]))
}

// alignPage returns length bytes of raw starting at a page boundary; raw
// has a page to spare.
func alignPage(raw []byte, length int) []byte {
	const page = 4096
	off := int((page - addrOf(raw)%page) % page)
	return raw[off : off+length : off+length]
}

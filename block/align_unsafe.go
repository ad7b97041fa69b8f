package block

import "unsafe"

// bufAddr is the address of b's first byte (O_DIRECT needs it aligned).
func bufAddr(b []byte) uintptr {
	if cap(b) == 0 {
		return 0
	}
	return uintptr(unsafe.Pointer(unsafe.SliceData(b)))
}

// alignedBuf returns n bytes whose address is a multiple of align (a power
// of two).
func alignedBuf(n, align int) []byte {
	b := make([]byte, n+align)
	a := int(bufAddr(b)) & (align - 1)
	off := 0
	if a != 0 {
		off = align - a
	}
	return b[off : off+n : off+n]
}

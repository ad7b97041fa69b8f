// Package nic holds what the emulated NIC models (devices/rtl8139,
// devices/e1000) share: guest-memory DMA with a defined outcome for an
// unmapped address, and the Internet checksum over frames (RFC 1071).
// It knows no device's registers and allocates nothing.
package nic

import (
	"encoding/binary"
	"sync/atomic"

	"godm/memory"
)

// DMA is a NIC's access to guest memory: a failed access (an address the
// guest does not have) is counted in Errors and has a defined outcome: a
// read gives zeros, a write is dropped. Never a crash.
type DMA struct {
	Mem    memory.Accessor
	Errors *atomic.Uint64
}

// Read fills p from guest memory at gpa; false (p zeroed) when it fails.
func (d DMA) Read(gpa uint64, p []byte) bool {
	if len(p) == 0 {
		return true
	}
	if err := d.Mem.Read(memory.GPA(gpa), p); err != nil {
		clear(p)
		d.Errors.Add(1)
		return false
	}
	return true
}

// Write copies p to guest memory at gpa; false when it fails.
func (d DMA) Write(gpa uint64, p []byte) bool {
	if len(p) == 0 {
		return true
	}
	if err := d.Mem.Write(memory.GPA(gpa), p); err != nil {
		d.Errors.Add(1)
		return false
	}
	return true
}

// Sum adds b's big-endian 16-bit words to acc (RFC 1071); an odd last
// byte is the high half of a word. It adds 32-bit words where it can
// (2^16 ≡ 1 modulo 0xffff: the folded sum is the same, the raw one is
// not), so only Fold's result is meaningful; sums chain over pieces of
// even length.
func Sum(acc uint64, b []byte) uint64 {
	for len(b) >= 8 {
		acc += uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:]))
		b = b[8:]
	}
	for len(b) >= 2 {
		acc += uint64(b[0])<<8 | uint64(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint64(b[0]) << 8
	}
	return acc
}

// Fold folds a sum into 16 bits (one's-complement carries).
func Fold(acc uint64) uint16 {
	for acc>>16 != 0 {
		acc = acc&0xffff + acc>>16
	}
	return uint16(acc)
}

// FinishCsum completes a partial checksum a back-end with offloads left
// for the NIC (virtio 1.2 5.1.6.2: the field at start+off holds the
// pseudo-header sum; the one's-complement sum from start to the end goes
// there). Out-of-range fields are left alone.
func FinishCsum(b []byte, start, off int) {
	if start < 0 || off < 0 || start+off+2 > len(b) {
		return
	}
	v := ^Fold(Sum(0, b[start:]))
	b[start+off], b[start+off+1] = byte(v>>8), byte(v)
}

// Piece is the size of the next piece of an n-byte access at off as
// QEMU's memory core cuts it before a device that takes no unaligned
// accesses sees it (system/physmem.c memory_access_size: at most 4
// bytes, and no larger than the address's alignment): a 4-byte access
// at 0x11 is a byte at 0x11, a word at 0x12 and a byte at 0x14.
func Piece(off uint64, n uint8) uint8 {
	l := min(n, 4)
	if a := off & -off; a != 0 && a < uint64(l) {
		l = uint8(a)
	}
	for l&(l-1) != 0 { // pow2floor
		l &= l - 1
	}
	return l
}

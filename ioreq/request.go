package ioreq

import "godm/hyp/xenabi"

// Type is the type of a request (struct ioreq's type field).
type Type uint8

// Request types; xen/include/public/hvm/ioreq.h.
const (
	TypePIO        Type = xenabi.IOREQ_TYPE_PIO
	TypeCopy       Type = xenabi.IOREQ_TYPE_COPY // MMIO
	TypePCIConfig  Type = xenabi.IOREQ_TYPE_PCI_CONFIG
	TypeTimeOffset Type = xenabi.IOREQ_TYPE_TIMEOFFSET
	TypeInvalidate Type = xenabi.IOREQ_TYPE_INVALIDATE
)

// Request is one decoded ioreq: a private copy of a slot's fields (or of a
// buffered entry), so that handling never rereads shared memory.
type Request struct {
	// Addr is the port, the guest-physical MMIO address, or for PCI_CONFIG
	// SBDF<<32 | register.
	Addr uint64
	// Data is the value written or read, or with DataIsPtr the
	// guest-physical address of the data buffer.
	Data uint64
	// Count is the repeat count (rep prefixes).
	Count uint32
	// Size is the access width in bytes.
	Size uint32
	// VCPU is the index of the issuing vCPU (0 for buffered requests).
	VCPU uint32
	// Type is the request type.
	Type Type
	// Read is true for reads (dir = IOREQ_READ).
	Read bool
	// DataIsPtr says Data is a guest-physical buffer address.
	DataIsPtr bool
	// DF is the direction flag: rep addresses go down.
	DF bool
}

// setFlags decodes the bitfield byte at offset 30 and the type byte.
func (r *Request) setFlags(flags, typ uint8) {
	r.DataIsPtr = flags&xenabi.IoreqDataIsPtrBit != 0
	r.Read = flags&xenabi.IoreqDirBit != 0
	r.DF = flags&xenabi.IoreqDFBit != 0
	r.Type = Type(typ)
}

// Flags encodes the request's direction bits as Xen lays them out in the
// bitfield byte (without the state); used by fakes and tests to build
// pages.
func (r *Request) Flags() uint8 {
	var f uint8
	if r.DataIsPtr {
		f |= xenabi.IoreqDataIsPtrBit
	}
	if r.Read {
		f |= xenabi.IoreqDirBit
	}
	if r.DF {
		f |= xenabi.IoreqDFBit
	}
	return f
}

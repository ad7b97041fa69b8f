package ioreq

import (
	"encoding/binary"
	"sync/atomic"

	"godm/devices"
	"godm/memory"
)

// AddressSpace is a port I/O or MMIO address space requests are routed to.
// *devices.Space implements it. Misses read all-ones and drop writes.
type AddressSpace interface {
	Read(addr uint64, size uint8, vcpu uint32) uint64
	Write(addr uint64, size uint8, vcpu uint32, v uint64)
}

// PCISpace is the PCI configuration space requests of type PCI_CONFIG are
// routed to. *devices.ConfigSpace implements it.
type PCISpace interface {
	Read(sbdf devices.SBDF, reg uint32, size uint8, vcpu uint32) uint64
	Write(sbdf devices.SBDF, reg uint32, size uint8, vcpu uint32, v uint64)
}

// Targets are what a Dispatcher routes requests to. Nil fields behave as
// empty spaces (reads all-ones, writes dropped) and, for Memory, as guest
// memory that is never mapped.
type Targets struct {
	// PIO receives IOREQ_TYPE_PIO requests.
	PIO AddressSpace
	// MMIO receives IOREQ_TYPE_COPY requests, and rep/data_is_ptr buffer
	// elements that are not guest RAM.
	MMIO AddressSpace
	// PCI receives IOREQ_TYPE_PCI_CONFIG requests.
	PCI PCISpace
	// Memory is guest RAM for rep/data_is_ptr copies.
	Memory memory.Accessor
	// Invalidate is called for IOREQ_TYPE_INVALIDATE (Xen changed the p2m:
	// drop every unlocked map-cache entry) before the request completes.
	Invalidate func()
}

// PCIConfigSize is the size of a PCI Express function's configuration
// space; requests for registers at or above it are bad requests. (Xen's
// CF8/CFC path only produces registers below 256; extended registers reach
// a device model only through CF8's extended-register bits.)
const PCIConfigSize = 4096

// Dispatcher decodes requests and routes them to the bus. It is safe for
// concurrent use by several workers and never allocates.
type Dispatcher struct {
	pio        AddressSpace
	mmio       AddressSpace
	pci        PCISpace
	mem        memory.Accessor
	invalidate func()
	timeOffset atomic.Int64
}

// NewDispatcher returns a dispatcher over t.
func NewDispatcher(t Targets) *Dispatcher {
	d := &Dispatcher{pio: t.PIO, mmio: t.MMIO, pci: t.PCI, mem: t.Memory, invalidate: t.Invalidate}
	if d.pio == nil {
		d.pio = nullSpace{}
	}
	if d.mmio == nil {
		d.mmio = nullSpace{}
	}
	if d.pci == nil {
		d.pci = nullPCI{}
	}
	if d.mem == nil {
		d.mem = nullMemory{}
	}
	return d
}

// TimeOffset returns the sum of the IOREQ_TYPE_TIMEOFFSET deltas received:
// the seconds by which the guest has moved its RTC away from the host clock
// (xen/arch/x86/hvm/rtc.c sends after-before on every RTC update). An RTC
// model or the toolstack reads it to keep the offset across reboots.
func (d *Dispatcher) TimeOffset() int64 { return d.timeOffset.Load() }

// Handle performs r. It returns the value to answer with and whether the
// slot's data field must be written (reads without data_is_ptr). scratch is
// the caller's preallocated buffer for rep copies: at least 8 bytes, a
// multiple of 8; larger buffers move more elements per guest-memory call.
// Bad requests get a defined answer (all-ones for reads, writes dropped)
// and are counted in st.
func (d *Dispatcher) Handle(r *Request, scratch []byte, st *Stats) (data uint64, writeData bool) {
	switch r.Type {
	case TypePIO, TypePCIConfig:
		return d.access(r, scratch, st, 4)
	case TypeCopy:
		return d.access(r, scratch, st, 8)
	case TypeTimeOffset:
		d.timeOffset.Add(int64(r.Data))
		return 0, false
	case TypeInvalidate:
		if d.invalidate != nil {
			d.invalidate()
		}
		return 0, false
	}
	st.badType.Add(1)
	return ^uint64(0), r.Read && !r.DataIsPtr
}

// access handles PIO, MMIO and PCI configuration requests of any count,
// direct or through a guest buffer.
func (d *Dispatcher) access(r *Request, scratch []byte, st *Stats, maxSize uint32) (uint64, bool) {
	answer := r.Read && !r.DataIsPtr
	size := r.Size
	if size == 0 || size > maxSize || size&(size-1) != 0 {
		st.badSize.Add(1)
		return ^uint64(0), answer
	}
	mask := devices.SizeMask(uint8(size))
	if r.Count == 0 || r.Count > MaxCount {
		st.badCount.Add(1)
		return mask, answer
	}
	if r.Type == TypePCIConfig {
		if reg := uint32(r.Addr); reg >= PCIConfigSize || reg+size > PCIConfigSize {
			st.badPCIReg.Add(1)
			return mask, answer
		}
	}
	if r.Count > 1 {
		st.reps.Add(uint64(r.Count))
	}
	if r.DataIsPtr {
		d.copyRep(r, scratch, st)
		return 0, false
	}
	// Direct data, possibly repeated (rep stos to MMIO): the device side
	// steps, the value stays; a repeated read answers the last value.
	step := d.devStep(r)
	addr := r.Addr
	var v uint64
	for range r.Count {
		if r.Read {
			v = d.devRead(r, addr)
		} else {
			d.devWrite(r, addr, r.Data&mask)
		}
		addr += step
	}
	return v & mask, answer
}

// devStep is how far the device-side address moves per repetition: MMIO
// addresses step by the size (down with DF); a port or a configuration
// register stays put.
func (d *Dispatcher) devStep(r *Request) uint64 {
	if r.Type != TypeCopy {
		return 0
	}
	if r.DF {
		return -uint64(r.Size)
	}
	return uint64(r.Size)
}

func (d *Dispatcher) devRead(r *Request, addr uint64) uint64 {
	size := uint8(r.Size)
	switch r.Type {
	case TypePIO:
		return d.pio.Read(addr, size, r.VCPU) & devices.SizeMask(size)
	case TypePCIConfig:
		return d.pci.Read(devices.SBDF(addr>>32), uint32(addr), size, r.VCPU) & devices.SizeMask(size)
	}
	return d.mmio.Read(addr, size, r.VCPU) & devices.SizeMask(size)
}

func (d *Dispatcher) devWrite(r *Request, addr, v uint64) {
	size := uint8(r.Size)
	v &= devices.SizeMask(size)
	switch r.Type {
	case TypePIO:
		d.pio.Write(addr, size, r.VCPU, v)
	case TypePCIConfig:
		d.pci.Write(devices.SBDF(addr>>32), uint32(addr), size, r.VCPU, v)
	default:
		d.mmio.Write(addr, size, r.VCPU, v)
	}
}

// copyRep moves r.Count elements between the device and the guest buffer
// at r.Data (rep ins/outs, rep movs between MMIO and RAM). Element n of the
// buffer is at Data + n*Size, or Data - n*Size with DF; all address
// arithmetic wraps like the guest's (unsigned, modulo 2^64). Elements go
// through scratch in chunks of contiguous guest memory; a chunk whose
// guest access fails is retried element by element, and an element that is
// not RAM is served by the MMIO space (all-ones, dropped writes, or an MMIO
// to MMIO copy) and counted.
func (d *Dispatcher) copyRep(r *Request, scratch []byte, st *Stats) {
	size := uint64(r.Size)
	count := uint64(r.Count)
	if uint64(len(scratch)) < size {
		// A caller bug (Handle asks for 8 bytes); stay correct, if slower.
		scratch = make([]byte, 8)
	}
	per := uint64(len(scratch)) / size
	devAddr := r.Addr
	devStep := d.devStep(r)
	for i := uint64(0); i < count; {
		k := min(count-i, per)
		buf := scratch[:k*size]
		lo := r.Data + i*size // lowest buffer address of the chunk
		if r.DF {
			lo = r.Data - (i+k-1)*size
		}
		whole := lo+k*size-1 >= lo // the chunk does not wrap around 2^64
		if r.Read {
			for j := range k {
				putLE(buf[chunkOff(j, k, size, r.DF):], size, d.devRead(r, devAddr))
				devAddr += devStep
			}
			if !whole || d.mem.Write(memory.GPA(lo), buf) != nil {
				for j := range k {
					d.writeElem(r, elemAddr(r, i+j), buf[chunkOff(j, k, size, r.DF):][:size], st)
				}
			}
		} else {
			if !whole || d.mem.Read(memory.GPA(lo), buf) != nil {
				for j := range k {
					d.readElem(r, elemAddr(r, i+j), buf[chunkOff(j, k, size, r.DF):][:size], st)
				}
			}
			for j := range k {
				d.devWrite(r, devAddr, getLE(buf[chunkOff(j, k, size, r.DF):], size))
				devAddr += devStep
			}
		}
		i += k
	}
}

// elemAddr returns the guest address of buffer element n.
func elemAddr(r *Request, n uint64) uint64 {
	if r.DF {
		return r.Data - n*uint64(r.Size)
	}
	return r.Data + n*uint64(r.Size)
}

// chunkOff returns the offset in a chunk of k elements of its element j:
// with DF the chunk's lowest address holds its last element.
func chunkOff(j, k, size uint64, df bool) uint64 {
	if df {
		return (k - 1 - j) * size
	}
	return j * size
}

func (d *Dispatcher) writeElem(r *Request, gpa uint64, b []byte, st *Stats) {
	if d.mem.Write(memory.GPA(gpa), b) == nil {
		return
	}
	st.memFaults.Add(1)
	size := uint8(len(b))
	d.mmio.Write(gpa, size, r.VCPU, getLE(b, uint64(size)))
}

func (d *Dispatcher) readElem(r *Request, gpa uint64, b []byte, st *Stats) {
	if d.mem.Read(memory.GPA(gpa), b) == nil {
		return
	}
	st.memFaults.Add(1)
	size := uint8(len(b))
	putLE(b, uint64(size), d.mmio.Read(gpa, size, r.VCPU))
}

func putLE(b []byte, size, v uint64) {
	switch size {
	case 1:
		b[0] = byte(v)
	case 2:
		binary.LittleEndian.PutUint16(b, uint16(v))
	case 4:
		binary.LittleEndian.PutUint32(b, uint32(v))
	default:
		binary.LittleEndian.PutUint64(b, v)
	}
}

func getLE(b []byte, size uint64) uint64 {
	switch size {
	case 1:
		return uint64(b[0])
	case 2:
		return uint64(binary.LittleEndian.Uint16(b))
	case 4:
		return uint64(binary.LittleEndian.Uint32(b))
	}
	return binary.LittleEndian.Uint64(b)
}

// nullSpace is an empty address space.
type nullSpace struct{}

func (nullSpace) Read(_ uint64, size uint8, _ uint32) uint64 { return devices.SizeMask(size) }
func (nullSpace) Write(uint64, uint8, uint32, uint64)        {}

// nullPCI is an empty configuration space.
type nullPCI struct{}

func (nullPCI) Read(_ devices.SBDF, _ uint32, size uint8, _ uint32) uint64 {
	return devices.SizeMask(size)
}
func (nullPCI) Write(devices.SBDF, uint32, uint8, uint32, uint64) {}

// nullMemory is guest memory with nothing mapped.
type nullMemory struct{}

func (nullMemory) Read(memory.GPA, []byte) error  { return memory.ErrUnmapped }
func (nullMemory) Write(memory.GPA, []byte) error { return memory.ErrUnmapped }

package devices

import "fmt"

// SBDF is a PCI segment/bus/device/function address packed as
// seg<<16 | bus<<8 | dev<<3 | fn. This is the packing of an
// IOREQ_TYPE_PCI_CONFIG request's addr>>32 and of XEN_DMOP_PCI_SBDF
// (xen/include/public/hvm/dm_op.h).
type SBDF uint32

// NewSBDF packs a PCI address. dev is truncated to 5 bits and fn to 3 bits.
func NewSBDF(seg uint16, bus, dev, fn uint8) SBDF {
	return SBDF(seg)<<16 | SBDF(bus)<<8 | SBDF(dev&0x1f)<<3 | SBDF(fn&0x7)
}

// Seg returns the PCI segment (domain).
func (s SBDF) Seg() uint16 { return uint16(s >> 16) }

// Bus returns the bus number.
func (s SBDF) Bus() uint8 { return uint8(s >> 8) }

// Dev returns the device number (0..31).
func (s SBDF) Dev() uint8 { return uint8(s>>3) & 0x1f }

// Fn returns the function number (0..7).
func (s SBDF) Fn() uint8 { return uint8(s) & 0x7 }

// String formats s the way Linux does: "0000:00:01.0".
func (s SBDF) String() string {
	return fmt.Sprintf("%04x:%02x:%02x.%x", s.Seg(), s.Bus(), s.Dev(), s.Fn())
}

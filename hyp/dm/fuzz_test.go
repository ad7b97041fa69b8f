package dm

import (
	"encoding/binary"
	"errors"
	"testing"

	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

// FuzzIORange encodes arbitrary ranges and PCI functions and decodes what
// reached the kernel: the fields round-trip, invalid input is refused
// before the kernel, and nothing panics.
func FuzzIORange(f *testing.F) {
	f.Add(uint16(1), uint32(0), uint64(0x3f8), uint64(0x3ff), uint16(0), uint8(0), uint8(3), uint8(0))
	f.Add(uint16(0xffff), uint32(7), uint64(0), ^uint64(0), uint16(0xffff), uint8(0xff), uint8(0x1f), uint8(7))
	f.Add(uint16(2), uint32(1), uint64(0x10), uint64(0xf), uint16(1), uint8(2), uint8(32), uint8(8))
	f.Fuzz(func(t *testing.T, id uint16, kind uint32, start, end uint64, seg uint16, bus, dev, fn uint8) {
		c, k, _ := newClient(t)
		err := c.MapIORange(ServerID(id), RangeKind(kind), start, end)
		if end < start {
			if !errors.Is(err, unix.EINVAL) {
				t.Fatalf("inverted range: %v, want EINVAL", err)
			}
		} else {
			if err != nil {
				t.Fatalf("MapIORange: %v", err)
			}
			op := lastDMOp(t, k)[0].In
			u := op[8:]
			if binary.LittleEndian.Uint32(op) != xenabi.XEN_DMOP_map_io_range_to_ioreq_server ||
				binary.LittleEndian.Uint16(u) != id || binary.LittleEndian.Uint32(u[4:]) != kind ||
				binary.LittleEndian.Uint64(u[8:]) != start || binary.LittleEndian.Uint64(u[16:]) != end ||
				binary.LittleEndian.Uint16(u[2:]) != 0 || binary.LittleEndian.Uint32(op[4:]) != 0 {
				t.Fatalf("encoding %x does not round-trip", op)
			}
		}
		k.Reset()
		err = c.MapPCIDev(ServerID(id), seg, bus, dev, fn)
		if dev > 0x1f || fn > 7 {
			if !errors.Is(err, unix.EINVAL) {
				t.Fatalf("bad PCI function: %v, want EINVAL", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("MapPCIDev: %v", err)
		}
		u := lastDMOp(t, k)[0].In[8:]
		sbdf := binary.LittleEndian.Uint64(u[8:])
		if sbdf != binary.LittleEndian.Uint64(u[16:]) || sbdf>>32 != 0 ||
			uint16(sbdf>>16) != seg || uint8(sbdf>>8) != bus || uint8(sbdf>>3)&0x1f != dev || uint8(sbdf)&7 != fn {
			t.Fatalf("SBDF %#x does not round-trip %04x:%02x:%02x.%x", sbdf, seg, bus, dev, fn)
		}
	})
}

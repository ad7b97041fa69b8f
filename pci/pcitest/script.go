package pcitest

import (
	"encoding/binary"
	"iter"
)

// StepLen is the encoded length of a Step in a fuzz script.
const StepLen = 8

// Step is one access of a fuzz script: Op selects what the target does
// (the target reduces it modulo its number of operations), Off the
// register or port offset, Size the access width and Val the value.
type Step struct {
	Op   uint8
	Off  uint16
	Size uint8
	Val  uint64
}

// scriptSizes maps the encoded size to an access width: mostly 1, 2 and 4,
// sometimes 8 and sometimes 3 (which every bus must refuse).
func scriptSizes() [8]uint8 { return [8]uint8{1, 2, 4, 1, 2, 4, 8, 3} }

// Steps decodes a fuzz script: StepLen bytes per step (op, offset as two
// little-endian bytes, size selector, value as four little-endian bytes,
// repeated into the high half); a trailing partial step is ignored.
func Steps(script []byte) iter.Seq[Step] {
	return func(yield func(Step) bool) {
		for len(script) >= StepLen {
			v := uint64(binary.LittleEndian.Uint32(script[4:]))
			s := Step{
				Op:   script[0],
				Off:  binary.LittleEndian.Uint16(script[1:]),
				Size: scriptSizes()[script[3]%8],
				Val:  v | (v^0xa5a5a5a5)<<32,
			}
			script = script[StepLen:]
			if !yield(s) {
				return
			}
		}
	}
}

// Encode is the inverse of Steps, for seed scripts. Size is encoded as the
// first selector giving that width (1, 2, 4, 8 or 3; anything else as 1)
// and Val by its low 32 bits.
func Encode(steps ...Step) []byte {
	b := make([]byte, 0, len(steps)*StepLen)
	for _, s := range steps {
		sel := byte(0)
		for i, w := range scriptSizes() {
			if w == s.Size {
				sel = byte(i)
				break
			}
		}
		b = append(b, s.Op, byte(s.Off), byte(s.Off>>8), sel)
		b = binary.LittleEndian.AppendUint32(b, uint32(s.Val))
	}
	return b
}

// ConfigOffset maps Off to a configuration register: with bit 15 clear,
// anywhere in the 256-byte space and a little beyond it (offset % 0x108);
// with bit 15 set, the last 16 bytes of the 4 KiB space, where accesses
// straddle its end.
func (s Step) ConfigOffset() uint32 {
	if s.Off&0x8000 != 0 {
		return 0xff8 + uint32(s.Off)%16
	}
	return uint32(s.Off) % 0x108
}

// Package srrec is the linux-sr scenario's workload data: the records a
// Linux guest writes to its disk, prints on its serial port and sends over
// its network while it is saved, restored and migrated, and the checks
// that what each channel carried equals what an uninterrupted run
// produces. Every record is a function of its sequence number alone, so
// the uninterrupted run's results are computed, not recorded.
package srrec

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
)

// Size is a record's size on disk: one sector.
const Size = 512

// Record returns record seq (seq >= 1): "SRREC <seq>\n", a byte stream
// of an LCG seeded with seq, and the CRC-32 (IEEE) of the first 508
// bytes in the last four, little-endian.
func Record(seq uint32) []byte {
	b := make([]byte, Size)
	x := seq*2654435761 + 0x9e3779b9
	for i := range b {
		x = x*1103515245 + 12345
		b[i] = byte(x >> 16)
	}
	copy(b, fmt.Sprintf("SRREC %08d\n", seq))
	binary.LittleEndian.PutUint32(b[Size-4:], crc32.ChecksumIEEE(b[:Size-4]))
	return b
}

// Valid reports whether b is record seq.
func Valid(b []byte, seq uint32) bool {
	if len(b) != Size || string(b[:15]) != fmt.Sprintf("SRREC %08d\n", seq) {
		return false
	}
	return binary.LittleEndian.Uint32(b[Size-4:]) == crc32.ChecksumIEEE(b[:Size-4]) && string(b) == string(Record(seq))
}

// Digest is the short digest of record seq that the serial and network
// lines carry: its CRC-32 (the one it holds) and the first 16 bytes of
// its SHA-256, in hex.
func Digest(seq uint32) string {
	r := Record(seq)
	s := sha256.Sum256(r)
	return fmt.Sprintf("%08x %s", binary.LittleEndian.Uint32(r[Size-4:]), hex.EncodeToString(s[:16]))
}

// Line prefixes.
const (
	SerialTag = "SR-SER" // "SR-SER <seq> <digest>" on the guest's ttyS0
	NetTag    = "NET"    // "NET <seq> <digest>" sent to dom0's sink
	AckTag    = "ACK"    // "ACK <seq>" or "ACK <seq> STOP" from the sink
	EndTag    = "SR-END" // the guest's summary
	BadTag    = "SR-BAD" // a difference the guest saw
)

// SerialLine and NetLine are record seq's lines (without the newline).
func SerialLine(seq uint32) string { return fmt.Sprintf("%s %d %s", SerialTag, seq, Digest(seq)) }
func NetLine(seq uint32) string    { return fmt.Sprintf("%s %d %s", NetTag, seq, Digest(seq)) }

// ParseTagged reads "<tag> <seq> <crc> <sha>" and reports whether its
// digest is record seq's.
func ParseTagged(line, tag string) (seq uint32, ok bool, err error) {
	f := strings.Fields(line)
	if len(f) != 4 || f[0] != tag {
		return 0, false, fmt.Errorf("srrec: not a %s line: %q", tag, line)
	}
	n, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil || n == 0 {
		return 0, false, fmt.Errorf("srrec: bad sequence number in %q", line)
	}
	return uint32(n), f[2]+" "+f[3] == Digest(uint32(n)), nil
}

// AreaSum is the SHA-256 (hex) of records 1..n laid end to end: what
// the disk's record area holds after an uninterrupted run of n records.
func AreaSum(n uint32) string {
	h := sha256.New()
	for s := uint32(1); s <= n; s++ {
		h.Write(Record(s))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Stream is what one channel carried: the sequence numbers in the order
// they came, and the lines whose digest was wrong.
type Stream struct {
	Seqs []uint32
	Bad  []string
}

// Add takes one line of the channel; lines of other tags are ignored.
// A line that starts with the tag but does not parse is bad.
func (s *Stream) Add(line, tag string) {
	line = strings.TrimSpace(line)
	if !strings.HasPrefix(line, tag+" ") {
		return
	}
	seq, ok, err := ParseTagged(line, tag)
	switch {
	case err != nil:
		s.Bad = append(s.Bad, line)
	case !ok:
		s.Bad = append(s.Bad, line)
	default:
		s.Seqs = append(s.Seqs, seq)
	}
}

// CheckExact reports how s differs from an uninterrupted run of n
// records: every record once, in order (the serial port: a lost, doubled
// or reordered line is an error).
func (s Stream) CheckExact(n uint32) error {
	if len(s.Bad) > 0 {
		return fmt.Errorf("%d corrupt lines, the first %q", len(s.Bad), s.Bad[0])
	}
	if uint32(len(s.Seqs)) != n {
		return fmt.Errorf("%d records, want %d (%s)", len(s.Seqs), n, s.firstGap())
	}
	for i, q := range s.Seqs {
		if q != uint32(i)+1 {
			return fmt.Errorf("record %d is %d (%s)", i+1, q, s.firstGap())
		}
	}
	return nil
}

// CheckResent reports how s differs from records 1..n sent with
// retransmission: in order, each at least once, a record sent again only
// when it was the last one's successor not yet acknowledged, i.e. the
// sequence never skips ahead and never goes back more than one. It
// returns the number of resent records.
func (s Stream) CheckResent(n uint32) (int, error) {
	if len(s.Bad) > 0 {
		return 0, fmt.Errorf("%d corrupt lines, the first %q", len(s.Bad), s.Bad[0])
	}
	var last uint32
	dups := 0
	for i, q := range s.Seqs {
		switch {
		case q == last+1:
			last = q
		case q == last && q != 0:
			dups++
		default:
			return dups, fmt.Errorf("record %d after %d (line %d)", q, last, i+1)
		}
	}
	if last != n {
		return dups, fmt.Errorf("the records end at %d, want %d", last, n)
	}
	return dups, nil
}

func (s Stream) firstGap() string {
	var last uint32
	for _, q := range s.Seqs {
		if q != last+1 {
			return fmt.Sprintf("%d follows %d", q, last)
		}
		last = q
	}
	return fmt.Sprintf("ends at %d", last)
}

// Package savestate is the byte format of device snapshots: a versioned
// record per device (header: magic, driver name, version, payload
// length) and the little-endian field encoding inside it. Records come
// from files or other processes, so the reader is bounded and defined on
// any input: a short, long or malformed record is an error, never a
// panic or an allocation beyond the record's own length.
package savestate

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrFormat is wrapped by every error about a record that cannot be read.
var ErrFormat = errors.New("savestate: malformed record")

// ErrVersion is wrapped when a record has a version the reader does not
// know.
var ErrVersion = errors.New("savestate: unknown record version")

// ErrDriver is wrapped when a record belongs to another driver.
var ErrDriver = errors.New("savestate: record of another device")

// magic starts every device record.
var magic = [4]byte{'G', 'D', 'M', 'R'}

// maxName bounds a driver name in a header.
const maxName = 64

// Record wraps payload in a record header for driver at version.
func Record(driver string, version uint32, payload []byte) []byte {
	w := Writer{b: make([]byte, 0, 4+2+len(driver)+8+len(payload))}
	w.b = append(w.b, magic[:]...)
	w.String(driver)
	w.U32(version)
	w.Bytes(payload)
	return w.b
}

// Open checks that rec is one record of driver with a version in
// 1..maxVersion and returns its version and payload.
func Open(rec []byte, driver string, maxVersion uint32) (uint32, *Reader, error) {
	r := NewReader(rec)
	var m [4]byte
	copy(m[:], r.take(4))
	name := r.String(maxName)
	ver := r.U32()
	payload := r.Bytes(len(rec))
	if err := r.Done(); err != nil || m != magic {
		return 0, nil, fmt.Errorf("savestate: %s: %w", driver, ErrFormat)
	}
	if name != driver {
		return 0, nil, fmt.Errorf("savestate: %s: record is for %q: %w", driver, name, ErrDriver)
	}
	if ver == 0 || ver > maxVersion {
		return 0, nil, fmt.Errorf("savestate: %s: version %d (this godm reads 1..%d): %w", driver, ver, maxVersion, ErrVersion)
	}
	return ver, NewReader(payload), nil
}

// Writer appends fields.
type Writer struct{ b []byte }

// Out returns the bytes written.
func (w *Writer) Out() []byte { return w.b }

func (w *Writer) U8(v uint8)   { w.b = append(w.b, v) }
func (w *Writer) U16(v uint16) { w.b = binary.LittleEndian.AppendUint16(w.b, v) }
func (w *Writer) U32(v uint32) { w.b = binary.LittleEndian.AppendUint32(w.b, v) }
func (w *Writer) U64(v uint64) { w.b = binary.LittleEndian.AppendUint64(w.b, v) }

// Bool writes 0 or 1.
func (w *Writer) Bool(v bool) {
	if v {
		w.U8(1)
	} else {
		w.U8(0)
	}
}

// Bytes writes a length (u32) and p.
func (w *Writer) Bytes(p []byte) {
	w.U32(uint32(len(p)))
	w.b = append(w.b, p...)
}

// String writes s as Bytes.
func (w *Writer) String(s string) { w.Bytes([]byte(s)) }

// Reader reads fields; the first error sticks, later reads return zero
// values, and Done reports it (or trailing bytes).
type Reader struct {
	b   []byte
	err error
}

// NewReader reads b.
func NewReader(b []byte) *Reader { return &Reader{b: b} }

func (r *Reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = ErrFormat
		r.b = nil
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

// Fail makes the reader fail with err (a field out of its range).
func (r *Reader) Fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *Reader) U8() uint8 {
	if p := r.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (r *Reader) U16() uint16 {
	if p := r.take(2); p != nil {
		return binary.LittleEndian.Uint16(p)
	}
	return 0
}

func (r *Reader) U32() uint32 {
	if p := r.take(4); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}

func (r *Reader) U64() uint64 {
	if p := r.take(8); p != nil {
		return binary.LittleEndian.Uint64(p)
	}
	return 0
}

// Bool reads a byte that must be 0 or 1.
func (r *Reader) Bool() bool {
	switch r.U8() {
	case 0:
		return false
	case 1:
		return true
	}
	r.Fail(ErrFormat)
	return false
}

// Bytes reads a length-prefixed byte string of at most max bytes (a
// sub-slice of the input, not a copy).
func (r *Reader) Bytes(max int) []byte {
	n := r.U32()
	if uint64(n) > uint64(max) {
		r.Fail(ErrFormat)
		return nil
	}
	return r.take(int(n))
}

// Fixed reads a length-prefixed byte string that must have exactly len(dst)
// bytes into dst.
func (r *Reader) Fixed(dst []byte) {
	p := r.Bytes(len(dst))
	if r.err == nil && len(p) != len(dst) {
		r.Fail(ErrFormat)
	}
	copy(dst, p)
}

// String reads a string of at most max bytes.
func (r *Reader) String(max int) string { return string(r.Bytes(max)) }

// Err returns the first error.
func (r *Reader) Err() error { return r.err }

// Done returns the first error, or one wrapping ErrFormat if bytes are
// left.
func (r *Reader) Done() error {
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d bytes left over: %w", len(r.b), ErrFormat)
	}
	return r.err
}

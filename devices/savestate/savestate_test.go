package savestate

import (
	"bytes"
	"errors"
	"testing"
)

func TestRecordRoundTrip(t *testing.T) {
	var w Writer
	w.U8(1)
	w.U16(0x0203)
	w.U32(0x04050607)
	w.U64(0x08090a0b0c0d0e0f)
	w.Bool(true)
	w.Bytes([]byte("abc"))
	rec := Record("dev", 2, w.Out())
	ver, r, err := Open(rec, "dev", 3)
	if err != nil || ver != 2 {
		t.Fatalf("Open = %d, %v", ver, err)
	}
	if r.U8() != 1 || r.U16() != 0x0203 || r.U32() != 0x04050607 || r.U64() != 0x08090a0b0c0d0e0f || !r.Bool() {
		t.Error("fields differ")
	}
	if got := r.Bytes(3); !bytes.Equal(got, []byte("abc")) {
		t.Errorf("Bytes = %q", got)
	}
	if err := r.Done(); err != nil {
		t.Error(err)
	}
}

func TestOpenRefuses(t *testing.T) {
	rec := Record("dev", 1, []byte{1, 2, 3})
	if _, _, err := Open(rec, "other", 1); !errors.Is(err, ErrDriver) {
		t.Errorf("other driver: %v", err)
	}
	for _, v := range []uint32{0, 2} {
		if _, _, err := Open(Record("dev", v, nil), "dev", 1); !errors.Is(err, ErrVersion) {
			t.Errorf("version %d: %v", v, err)
		}
	}
	for n := range len(rec) {
		if _, _, err := Open(rec[:n], "dev", 1); !errors.Is(err, ErrFormat) {
			t.Errorf("%d of %d bytes: %v", n, len(rec), err)
		}
	}
	if _, _, err := Open(append(bytes.Clone(rec), 0), "dev", 1); !errors.Is(err, ErrFormat) {
		t.Errorf("trailing byte: %v", err)
	}
}

// A length beyond the bound or the data is an error, not an allocation.
func TestReaderBounds(t *testing.T) {
	var w Writer
	w.U32(1 << 31)
	r := NewReader(w.Out())
	if b := r.Bytes(1 << 32); b != nil || !errors.Is(r.Err(), ErrFormat) {
		t.Errorf("huge length: %v, %v", b, r.Err())
	}
	r = NewReader([]byte{5, 0, 0, 0, 1})
	if b := r.Bytes(4); b != nil || r.Err() == nil {
		t.Errorf("length above max accepted: %v", b)
	}
	r = NewReader([]byte{2})
	if r.Bool(); r.Err() == nil {
		t.Error("Bool 2 accepted")
	}
	// After the first error every read is zero.
	if r.U64() != 0 || r.Done() == nil {
		t.Error("reads after an error")
	}
}

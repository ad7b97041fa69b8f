package vga

import (
	"encoding/binary"
	"errors"
	"testing"

	"godm/devices/savestate"
)

// fakeP2M is p2m VRAM made for an incoming domain: Bytes is a
// placeholder until Adopt, which "finds" frames (another slice) or fails.
type fakeP2M struct {
	placeholder, frames []byte
	adopted             bool
	adoptAt             []uint64
	adoptErr            error
	where               uint64
	closed              bool
}

func newFakeP2M(size int) *fakeP2M {
	return &fakeP2M{placeholder: make([]byte, size), frames: make([]byte, size)}
}

func (f *fakeP2M) Bytes() []byte {
	if f.adopted {
		return f.frames
	}
	return f.placeholder
}
func (f *fakeP2M) Map(base uint64) error { f.where = base / pageSize; return nil }
func (f *fakeP2M) Unmap()                { f.where = 0x1000 }
func (f *fakeP2M) Dirty(b []byte) error  { return nil }
func (f *fakeP2M) Wrote(off, n uint64)   {}
func (f *fakeP2M) Close() error          { f.closed = true; return nil }
func (f *fakeP2M) Where() uint64         { return f.where }
func (f *fakeP2M) Adopt(gfn uint64) error {
	f.adoptAt = append(f.adoptAt, gfn)
	if f.adoptErr != nil {
		return f.adoptErr
	}
	f.adopted = true
	return nil
}

// A version 2 record starts with the frames' gfn; its restore hands it
// to Adopt before the BAR, and the device then works on the adopted
// frames. A version 1 record adopts 0 (nothing recorded). A failed
// Adopt leaves the device trapped with a heap VRAM holding the record's.
func TestVGARecordFramePlace(t *testing.T) {
	const size = 1 << 20
	src, err := New(Config{VRAMSize: size, P2M: &fakeP2M{frames: make([]byte, size), adopted: true, where: 0xe0000}})
	if err != nil {
		t.Fatal(err)
	}
	src.VRAM()[100] = 0x5a
	rec, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	ver, rd, err := savestate.Open(rec, RecordName, StateVersion)
	if err != nil || ver != 2 || rd.U64() != 0xe0000 {
		t.Fatalf("record version %d, %v: want 2 starting with the frames' gfn", ver, err)
	}
	off := 4 + 4 + len(RecordName) + 4 + 4
	v1 := savestate.Record(RecordName, 1, rec[off+8:])
	for _, tc := range []struct {
		name string
		rec  []byte
		fail error
		want uint64
	}{{"v2", rec, nil, 0xe0000}, {"v1", v1, nil, 0}, {"adopt-fails", rec, errors.New("no frames"), 0xe0000}} {
		t.Run(tc.name, func(t *testing.T) {
			p := newFakeP2M(size)
			p.adoptErr = tc.fail
			d, err := New(Config{VRAMSize: size, P2M: p})
			if err != nil {
				t.Fatal(err)
			}
			if err := d.Restore(tc.rec); err != nil {
				t.Fatal(err)
			}
			if len(p.adoptAt) != 1 || p.adoptAt[0] != tc.want {
				t.Fatalf("Adopt calls %v, want [%#x]", p.adoptAt, tc.want)
			}
			if d.VRAM()[100] != 0x5a {
				t.Error("VRAM not restored from the record")
			}
			if tc.fail != nil {
				if !p.closed || &d.VRAM()[0] == &p.frames[0] || &d.VRAM()[0] == &p.placeholder[0] {
					t.Error("a failed Adopt left the device on the P2M")
				}
				return
			}
			if &d.VRAM()[0] != &p.frames[0] || p.frames[100] != 0x5a {
				t.Error("the device does not use the adopted frames")
			}
			// A second restore (xen-load-devices-state) adopts again;
			// the P2M decides it is a no-op.
			if err := d.Restore(tc.rec); err != nil || len(p.adoptAt) != 2 {
				t.Errorf("second restore: %v, Adopt calls %v", err, p.adoptAt)
			}
		})
	}
	// A record cut inside the gfn is refused.
	d, _ := New(Config{VRAMSize: size})
	if err := d.Restore(savestate.Record(RecordName, 2, []byte{1, 2, 3})); !errors.Is(err, savestate.ErrFormat) {
		t.Errorf("short record: %v", err)
	}
	// A trapped device hands a recorded place to Drop; its refusal fails
	// the restore.
	var dropped []uint64
	d, _ = New(Config{VRAMSize: size, Drop: func(gfn uint64) error {
		dropped = append(dropped, gfn)
		if gfn == 0x10 {
			return errors.New("guest RAM")
		}
		return nil
	}})
	if err := d.Restore(rec); err != nil || len(dropped) != 1 || dropped[0] != 0xe0000 {
		t.Errorf("trapped restore: %v, dropped %v", err, dropped)
	}
	bad := append(binary.LittleEndian.AppendUint64(nil, 0x10), rec[off+8:]...)
	if err := d.Restore(savestate.Record(RecordName, 2, bad)); err == nil {
		t.Error("a refused Drop did not fail the restore")
	}
	if err := d.Restore(v1); err != nil || len(dropped) != 2 {
		t.Errorf("v1 record on a trapped device: %v, dropped %v (want nothing more)", err, dropped)
	}
}

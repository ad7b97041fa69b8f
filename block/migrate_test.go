package block

import (
	"bytes"
	"errors"
	"testing"
)

// TestHandOver is a live migration's disk on shared storage: the
// destination opens the image inactive beside the running source, cannot
// activate while the source holds it, and after the source's Inactivate
// sees every write the source made after the destination opened it —
// including clusters the source allocated, which only a metadata re-read
// finds. A failed hand-back (the source activating while the destination
// runs) is refused.
func TestHandOver(t *testing.T) {
	for _, format := range []string{"raw", "qcow2"} {
		t.Run(format, func(t *testing.T) {
			p := newRaw(t, 1<<20)
			if format == "qcow2" {
				p = newTiny(t, 1<<20, 16, 3)
			}
			src, err := Open(p, Options{Format: format})
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			dst, err := Open(p, Options{Format: format, Inactive: true})
			if err != nil {
				t.Fatalf("inactive open beside the writer: %v", err)
			}
			defer dst.Close()
			buf := make([]byte, 4096)
			if err := dst.ReadAt(buf, 0); !errors.Is(err, ErrInactive) {
				t.Fatalf("read from an inactive drive: %v", err)
			}
			if err := dst.WriteAt(buf, 0); !errors.Is(err, ErrInactive) {
				t.Fatalf("write to an inactive drive: %v", err)
			}
			if err := dst.Activate(); !errors.Is(err, ErrLocked) || dst.Active() {
				t.Fatalf("activate while the source holds the image: %v", err)
			}
			// The source writes after the destination opened (a new
			// cluster in qcow2: L1, L2 and refcounts change).
			want := bytes.Repeat([]byte{0x5a}, 4096)
			if err := src.WriteAt(want, 600<<10); err != nil {
				t.Fatal(err)
			}
			if err := src.Inactivate(); err != nil {
				t.Fatal(err)
			}
			if err := src.WriteAt(want, 0); !errors.Is(err, ErrInactive) {
				t.Fatalf("write after the hand-over: %v", err)
			}
			if err := dst.Activate(); err != nil {
				t.Fatalf("activate after the source let go: %v", err)
			}
			if err := dst.ReadAt(buf, 600<<10); err != nil || !bytes.Equal(buf, want) {
				t.Fatalf("the destination reads %x... (%v), not the source's last write", buf[:4], err)
			}
			if err := dst.WriteAt(want, 64<<10); err != nil {
				t.Fatal(err)
			}
			if err := src.Activate(); !errors.Is(err, ErrLocked) {
				t.Fatalf("the source took the image back from a running destination: %v", err)
			}
			if err := dst.Flush(); err != nil {
				t.Fatal(err)
			}
			if format == "qcow2" {
				if _, err := Open(p, Options{Format: format}); !errors.Is(err, ErrLocked) {
					t.Fatalf("the active destination's lock: %v", err)
				}
				dst.Close()
				got := godmRead(t, p, Options{Format: format, ReadOnly: true})
				if !bytes.Equal(got[600<<10:604<<10], want) || !bytes.Equal(got[64<<10:68<<10], want) {
					t.Error("the image lacks a write of one side")
				}
				needQemuImg(t)
				qemuCheck(t, p, false)
			}
		})
	}
}

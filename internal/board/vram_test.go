package board

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"strings"
	"testing"

	"godm/devices"
	"godm/devices/savestate"
	"godm/devices/vga"
)

// heapP2M is a vga.P2M over host memory.
type heapP2M struct{ b []byte }

func (h *heapP2M) Bytes() []byte          { return h.b }
func (h *heapP2M) Map(uint64) error       { return nil }
func (h *heapP2M) Unmap()                 {}
func (h *heapP2M) Dirty([]byte) error     { return nil }
func (h *heapP2M) Wrote(uint64, uint64)   {}
func (h *heapP2M) Close() error           { return nil }
func (h *heapP2M) Where() uint64          { return 0 }
func (h *heapP2M) Adopt(gfn uint64) error { return nil }

// fakeVRAM records what the board asks of the machine.
type fakeVRAM struct {
	allocs  []uint32
	dropped []uint64
}

func (f *fakeVRAM) AllocVRAM(size uint32) (vga.P2M, error) {
	f.allocs = append(f.allocs, size)
	return &heapP2M{b: make([]byte, size)}, nil
}

func (f *fakeVRAM) DropVRAM(gfn uint64, size uint32) error {
	f.dropped = append(f.dropped, gfn)
	return nil
}

// VRAM is in the p2m unless x-godm-vram-p2m=off, for the VGA and the
// Cirrus; a machine that cannot place it says so in a warning only when
// on was asked for; a trapped display's restore hands the frames its
// record names to DropVRAM.
func TestVRAMP2MProperty(t *testing.T) {
	plug := func(env Env, drv string, props map[string]string) *Plugged {
		t.Helper()
		env.Spaces = devices.NewBus()
		b, err := New(env)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		props["romfile"], props["vgamem_mb"] = "", "8"
		p, err := b.Plug(drv, "vga", NewProps(props))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, drv := range []string{"VGA", "cirrus-vga"} {
		var logBuf bytes.Buffer
		env := testEnv()
		env.Log = slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelWarn}))
		plug(env, drv, map[string]string{})
		if logBuf.Len() != 0 {
			t.Errorf("%s: the default warned without a VRAM allocator: %s", drv, logBuf.String())
		}
		plug(env, drv, map[string]string{"x-godm-vram-p2m": "on"})
		if n := strings.Count(logBuf.String(), "VRAM stays trapped"); n != 1 {
			t.Errorf("%s: explicit on without an allocator: %d warnings", drv, n)
		}

		f := &fakeVRAM{}
		env = testEnv()
		env.VRAM = f
		plug(env, drv, map[string]string{})
		off := plug(env, drv, map[string]string{"x-godm-vram-p2m": "off"})
		if len(f.allocs) != 1 || f.allocs[0] != 8<<20 {
			t.Errorf("%s: allocations %v, want one of 8 MiB (the default on, not off)", drv, f.allocs)
		}
		// A record (of the off device) saying the frames were at gfn 0xe0000.
		snap := off.Dev.(interface{ Snapshot() ([]byte, error) })
		rec, err := snap.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		name := vga.RecordName
		if drv == "cirrus-vga" {
			name = vga.CirrusRecordName
		}
		hdr := 4 + 4 + len(name) + 4 + 4
		payload := append(binary.LittleEndian.AppendUint64(nil, 0xe0000), rec[hdr+8:]...)
		_, rd, err := savestate.Open(rec, name, 2)
		if err != nil || rd.U64() != 0 {
			t.Fatalf("%s: a trapped device's record: %v", drv, err)
		}
		ver := uint32(vga.StateVersion)
		if drv == "cirrus-vga" {
			ver = vga.CirrusStateVersion
		}
		if err := off.Dev.(interface{ Restore([]byte) error }).Restore(savestate.Record(name, ver, payload)); err != nil {
			t.Fatal(err)
		}
		if len(f.dropped) != 1 || f.dropped[0] != 0xe0000 {
			t.Errorf("%s: dropped %v, want [0xe0000]", drv, f.dropped)
		}
	}
}

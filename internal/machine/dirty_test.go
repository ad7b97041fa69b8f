package machine

import (
	"slices"
	"testing"

	"godm/devices/testdev"
	"godm/memory"
	"godm/memory/layout"
)

type dirtyRun struct{ gfn, n uint64 }

func collectDirty(l *memory.DirtyLog) ([]dirtyRun, uint64) {
	var out []dirtyRun
	beyond := l.Collect(func(g, n uint64) { out = append(out, dirtyRun{g, n}) })
	return out, beyond
}

// The log covers guest-physical space up to the end of the highest RAM
// range: the top of RAM below 4 GiB, or 4 GiB plus the RAM above it.
func TestDirtyLogCoversRAM(t *testing.T) {
	for _, tc := range []struct {
		total, hole uint64
		pages       uint64
	}{
		{64 << 20, 0, 64 << 20 / memory.PageSize},
		{4 << 30, 0, (4<<30 + (4<<30 - layout.DefaultHoleStart)) / memory.PageSize},
		{3 << 30, 2 << 30, (4<<30 + 1<<30) / memory.PageSize},
	} {
		lay, err := layout.New(tc.total, tc.hole)
		if err != nil {
			t.Fatal(err)
		}
		l, err := newDirtyLog(lay)
		if err != nil {
			t.Fatal(err)
		}
		if l.Pages() != tc.pages {
			t.Errorf("RAM %#x hole %#x: log covers %d pages, want %d", tc.total, tc.hole, l.Pages(), tc.pages)
		}
		if l.Enabled() {
			t.Errorf("RAM %#x: a new machine's log is on (log-dirty starts off)", tc.total)
		}
	}
	if l, err := newDirtyLog(layout.Layout{}); l != nil || err != nil {
		t.Errorf("unknown RAM: log %v, %v; want none", l, err)
	}
}

// In a running machine, a test-device DMA write and a REP INS through the
// ioreq dispatcher are both in the machine's dirty log, as the page runs
// they wrote, once log-dirty is on; with it off nothing is logged.
func TestDirtyLogRecordsDeviceWrites(t *testing.T) {
	s := newBoardRig(t, Spec{TestDevice: true, TestSlot: 5})
	l := s.m.Dirty()
	if l == nil {
		t.Fatal("machine with a RAM size has no dirty log")
	}
	if want := uint64(simRAM / memory.PageSize); l.Pages() != want {
		t.Fatalf("log covers %d pages, want %d", l.Pages(), want)
	}
	enableTestdev(t, s, 5)
	dma := func(addr, n uint64) {
		t.Helper()
		before := mmioR(t, s, testdev.RegDone)
		mmioW(t, s, testdev.RegDMALo, addr)
		mmioW(t, s, testdev.RegDMALen, n)
		mmioW(t, s, testdev.RegDoorbell, 1)
		for mmioR(t, s, testdev.RegDone) == before {
		}
		if st := mmioR(t, s, testdev.RegStatus); st != testdev.StatusOK {
			t.Fatalf("DMA status %d", st)
		}
	}

	// Off (as a machine starts): the write lands, nothing is logged.
	dma(0x20000, 3*memory.PageSize)
	if got, beyond := collectDirty(l); len(got) != 0 || beyond != 0 {
		t.Fatalf("log-dirty off: Collect = %v, beyond %d; want nothing", got, beyond)
	}

	l.SetEnabled(true)
	// Two pages and a byte, starting mid-page: gfns 0x30..0x32.
	dma(0x30800, 2*memory.PageSize+1)
	if got, beyond := collectDirty(l); !slices.Equal(got, []dirtyRun{{0x30, 3}}) || beyond != 0 {
		t.Errorf("DMA: Collect = %v, beyond %d; want [{0x30 3}]", got, beyond)
	}

	// REP INSB from the i8042 status port, 32 bytes straddling the
	// boundary of gfns 0x40 and 0x41: the dispatcher writes guest RAM
	// through the machine's map cache.
	if err := s.v.RepIns(0x64, 1, 32, 0x41000-16, false); err != nil {
		t.Fatal(err)
	}
	if got, beyond := collectDirty(l); !slices.Equal(got, []dirtyRun{{0x40, 2}}) || beyond != 0 {
		t.Errorf("REP INS: Collect = %v, beyond %d; want [{0x40 2}]", got, beyond)
	}

	l.SetEnabled(false)
	dma(0x50000, 8)
	if err := s.v.RepIns(0x64, 1, 4, 0x60000, false); err != nil {
		t.Fatal(err)
	}
	if got, _ := collectDirty(l); len(got) != 0 {
		t.Errorf("log-dirty switched off: Collect = %v, want nothing", got)
	}
}

package machine

import (
	"testing"
	"time"

	"godm/display"
)

// lfbFill has the guest fill 64 KiB of the LFB with 4-byte stores.
func lfbFill(b testing.TB, s *boardRig, base uint64, v uint64) {
	for off := uint64(0); off < 64<<10; off += 4 {
		if err := s.v.MMIOWrite(base+off, 4, v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLFBFill: a guest filling 64 KiB of the standard VGA's LFB
// with 4-byte stores on xensim, VRAM trapped (every store an ioreq) and
// in the p2m (stores to RAM), in the same run; trapped/p2m is the ratio.
func BenchmarkLFBFill(b *testing.B) {
	trapped, _ := vgaRig(b, "off", nil)
	p2m, d := vgaRig(b, "on", nil)
	for _, s := range []*boardRig{trapped, p2m} {
		guestCfg(b, s, 0x10, 4, lfbBase)
		guestCfg(b, s, 4, 2, 2)
	}
	if !d.InP2M() {
		b.Fatal("LFB not in the p2m")
	}
	var tTrap, tP2M time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		lfbFill(b, trapped, lfbBase, uint64(i))
		t1 := time.Now()
		lfbFill(b, p2m, lfbBase, uint64(i))
		tP2M += time.Since(t1)
		tTrap += t1.Sub(t0)
	}
	b.ReportMetric(float64(tTrap.Nanoseconds())/float64(b.N), "ns/fill-trapped")
	b.ReportMetric(float64(tP2M.Nanoseconds())/float64(b.N), "ns/fill-p2m")
	b.ReportMetric(float64(tTrap)/float64(tP2M), "trapped/p2m")
}

// BenchmarkVRAMRefresh: one display refresh of a 1024×768×32 VBE mode
// with VRAM in the p2m after the guest wrote one page (track_dirty_vram,
// the bitmap turned into tiles), next to the trapped mode's tile hashing
// after one trapped store.
func BenchmarkVRAMRefresh(b *testing.B) {
	for _, mode := range []string{"off", "on"} {
		b.Run("p2m="+mode, func(b *testing.B) {
			s, d := vgaRig(b, mode, nil)
			guestCfg(b, s, 0x10, 4, lfbBase)
			guestCfg(b, s, 4, 2, 2)
			guestVBE(b, s, 1024, 768)
			src := d.Source()
			m := src.Mode()
			t := display.NewTiles(m.Width, m.Height)
			src.CollectDirty(t)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := s.v.MMIOWrite(lfbBase+uint64(i%768)*4096, 4, uint64(i)); err != nil {
					b.Fatal(err)
				}
				t.Reset(m.Width, m.Height)
				src.CollectDirty(t)
			}
		})
	}
}

// A refresh with VRAM in the p2m allocates nothing.
func TestVRAMRefreshNoAlloc(t *testing.T) {
	s, d := vgaRig(t, "on", nil)
	guestCfg(t, s, 0x10, 4, lfbBase)
	guestCfg(t, s, 4, 2, 2)
	guestVBE(t, s, 640, 480)
	src := d.Source()
	m := src.Mode()
	tl := display.NewTiles(m.Width, m.Height)
	src.CollectDirty(tl)
	i := uint64(0)
	if n := testing.AllocsPerRun(50, func() {
		i++
		if err := s.v.MMIOWrite(lfbBase+i%300*4096, 4, i); err != nil {
			t.Fatal(err)
		}
		tl.Reset(m.Width, m.Height)
		src.CollectDirty(tl)
	}); n != 0 {
		t.Errorf("%v allocations per refresh", n)
	}
}

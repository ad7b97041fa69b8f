package machine

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"strings"
	"testing"

	"godm/devices/savestate"
	"godm/devices/vga"
	"godm/display"
	"godm/hyp/xensim"
	"godm/internal/board"
	"godm/internal/testfake"
)

// vgaRig is a machine with a standard VGA at 00:03.0 on xensim.
func vgaRig(t testing.TB, p2m string, log *slog.Logger) (*boardRig, *vga.Device) {
	t.Helper()
	props := map[string]string{"id": "vga", "addr": "03.0", "vgamem_mb": "8", "romfile": ""}
	if p2m != "" {
		props["x-godm-vram-p2m"] = p2m
	}
	list := append(Spec{}.Entries(), board.Entry{Driver: "VGA", Props: props})
	s := newBoardRig(t, Spec{Devices: list, Log: log})
	return s, s.m.Board.Device("vga").Dev.(*vga.Device)
}

const (
	vgaDev   = 3 << 3
	lfbBase  = 0xe0000000
	lfbBase2 = 0xe1000000
	vramSize = 8 << 20
)

// guestVBE sets a w×h 32-bpp VBE mode through the DISPI ports.
func guestVBE(t testing.TB, s *boardRig, w, h int) {
	t.Helper()
	for _, r := range [][2]uint64{{vga.IndexEnable, 0}, {vga.IndexXRes, uint64(w)}, {vga.IndexYRes, uint64(h)},
		{vga.IndexBPP, 32}, {vga.IndexEnable, uint64(vga.Enabled | vga.LFBEnabled)}} {
		if err := s.v.Out(vga.PortIndex, 2, r[0]); err != nil {
			t.Fatal(err)
		}
		if err := s.v.Out(vga.PortData, 2, r[1]); err != nil {
			t.Fatal(err)
		}
	}
}

func guestCfg(t testing.TB, s *boardRig, reg uint32, size int, v uint64) {
	t.Helper()
	if err := s.v.PCIConfigWrite(vgaDev, reg, size, v); err != nil {
		t.Fatal(err)
	}
}

func syncReqs(s *boardRig) uint64 { return s.m.ioreqs() }

func (m *Machine) ioreqs() uint64 {
	var c ioreqCounters
	c.read(m)
	return c.sync
}

func collect(src display.Source) (*display.Tiles, display.Mode) {
	m := src.Mode()
	t := display.NewTiles(m.Width, m.Height)
	src.CollectDirty(t)
	return t, m
}

func dirtyTiles(t *display.Tiles) []int {
	var out []int
	cols, rows := t.Size()
	for y := range rows {
		for x := range cols {
			if t.Get(x, y) {
				out = append(out, y*cols+x)
			}
		}
	}
	return out
}

// The LFB of a VGA with x-godm-vram-p2m=on is guest RAM: the guest's
// writes reach VRAM without an ioreq, the display learns of them from
// track_dirty_vram, the frames follow the BAR and leave with decode off,
// and closing the machine leaves no mapping.
func TestVRAMInP2M(t *testing.T) {
	s, d := vgaRig(t, "on", nil)
	mapsBefore := s.sim.Mappings() // the machine's own, VRAM included
	if got := s.sim.Count(s.dom.ID(), xensim.EventPopulatePhysmap, ""); got != vramSize/4096 {
		t.Errorf("%d pages populated, want %d", got, vramSize/4096)
	}
	// Home: right above the guest's RAM, as QEMU-xen's ram_addr.
	if !s.dom.IsRAMPage(simRAM/4096) || s.dom.IsRAMPage(lfbBase/4096) {
		t.Fatal("VRAM frames not at their reserved place above RAM")
	}
	guestCfg(t, s, 0x10, 4, lfbBase)
	guestCfg(t, s, 4, 2, 2) // memory decode on
	if !d.InP2M() {
		t.Fatal("LFB not in the p2m after BAR programming")
	}
	if s.dom.IsRAMPage(simRAM/4096) || !s.dom.IsRAMPage(lfbBase/4096) || !s.dom.IsRAMPage((lfbBase+vramSize)/4096-1) {
		t.Fatal("the frames did not move to the BAR")
	}
	ranges, _ := s.dom.IOReqRanges(uint16(s.m.Server.ID()))
	for _, r := range ranges[1] {
		if r.Start <= lfbBase+vramSize-1 && lfbBase <= r.End {
			t.Errorf("the ioreq server still claims %#x-%#x over the LFB", r.Start, r.End)
		}
	}

	const w, h = 256, 128 // 1 KiB a line: a page is 4 lines
	guestVBE(t, s, w, h)
	src := d.Source()
	collect(src) // the new mode: everything
	if tl, _ := collect(src); len(dirtyTiles(tl)) != 0 {
		t.Fatalf("dirty tiles with nothing written: %v", dirtyTiles(tl))
	}
	before := syncReqs(s)
	// The guest draws a pixel at (130, 70) and one at (3, 2).
	if err := s.v.MMIOWrite(lfbBase+70*w*4+130*4, 4, 0x00ff8040); err != nil {
		t.Fatal(err)
	}
	if err := s.v.MMIOWrite(lfbBase+2*w*4+3*4, 4, 0x00112233); err != nil {
		t.Fatal(err)
	}
	if got := syncReqs(s) - before; got != 0 {
		t.Errorf("LFB writes made %d ioreqs, want 0", got)
	}
	if got := binary.LittleEndian.Uint32(d.VRAM()[70*w*4+130*4:]); got != 0x00ff8040 {
		t.Errorf("device sees %#x at the guest's pixel", got)
	}
	tracks := s.sim.Count(s.dom.ID(), xensim.EventTrackDirtyVRAM, "")
	tl, m := collect(src)
	if s.sim.Count(s.dom.ID(), xensim.EventTrackDirtyVRAM, "") == tracks {
		t.Error("the refresh did not ask track_dirty_vram")
	}
	// Page 17 (rows 68-71) → tile row 1; page 0 (rows 0-3) → tile row 0.
	cols, _ := tl.Size()
	want := []int{0, 1, 2, 3, cols, cols + 1, cols + 2, cols + 3}
	if got := dirtyTiles(tl); !equalInts(got, want) {
		t.Errorf("dirty tiles %v, want %v (the written pages' rows)", got, want)
	}
	px := make([]byte, 4)
	if !src.Read(px, m, display.Rect{X: 130, Y: 70, W: 1, H: 1}) || binary.LittleEndian.Uint32(px) != 0x00ff8040 {
		t.Errorf("screen pixel % x", px)
	}
	// A device-side write (the window's path) still shows.
	if tl, _ := collect(src); len(dirtyTiles(tl)) != 0 {
		t.Fatalf("dirty tiles after a collection: %v", dirtyTiles(tl))
	}
	d.Scanout().WriteVRAM(100*w*4+200*4, []byte{1, 2, 3, 4})
	if tl, _ := collect(src); !tl.Get(200/display.TileSize, 100/display.TileSize) {
		t.Errorf("a device write is not dirty: %v", dirtyTiles(tl))
	}
	// A BAR over guest RAM or over the frames' home stays trapped (Xen
	// would drop the RAM pages there); moved away, it is RAM again.
	for _, bad := range []uint64{0x100000, simRAM} {
		guestCfg(t, s, 0x10, 4, bad)
		if d.InP2M() || !s.dom.IsRAMPage(bad/4096) {
			t.Errorf("BAR at %#x: in the p2m %v", bad, d.InP2M())
		}
		if v, err := s.v.MMIORead(bad+70*w*4+130*4, 4); bad == simRAM && (err != nil || v != 0x00ff8040) {
			t.Errorf("trapped BAR at %#x reads %#x, %v", bad, v, err)
		}
	}
	guestCfg(t, s, 0x10, 4, lfbBase)
	if !d.InP2M() {
		t.Fatal("BAR back at its place: not in the p2m")
	}
	// The BAR moves: the frames follow, the old place is a hole.
	guestCfg(t, s, 0x10, 4, lfbBase2)
	if !d.InP2M() || s.dom.IsRAMPage(lfbBase/4096) || !s.dom.IsRAMPage(lfbBase2/4096) {
		t.Fatal("the frames did not follow the BAR")
	}
	if v, err := s.v.MMIORead(lfbBase2+70*w*4+130*4, 4); err != nil || v != 0x00ff8040 {
		t.Errorf("pixel at the moved BAR %#x, %v", v, err)
	}
	// Decode off: the frames go home, the range is neither RAM nor claimed.
	guestCfg(t, s, 4, 2, 0)
	if d.InP2M() || s.dom.IsRAMPage(lfbBase2/4096) || !s.dom.IsRAMPage(simRAM/4096) {
		t.Fatal("decode off left the frames at the BAR")
	}
	guestCfg(t, s, 4, 2, 2)
	if !d.InP2M() {
		t.Fatal("decode on again did not map the LFB")
	}
	if v, _ := s.v.MMIORead(lfbBase2+2*w*4+3*4, 4); v != 0x00112233 {
		t.Errorf("pixel after decode off/on %#x", v)
	}

	// Reset keeps VRAM; snapshot and restore carry it.
	snap, err := s.m.Board.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	s.m.Board.Reset()
	if got := binary.LittleEndian.Uint32(d.VRAM()[70*w*4+130*4:]); got != 0x00ff8040 {
		t.Errorf("VRAM after reset %#x", got)
	}
	clear(d.VRAM())
	if err := s.m.Board.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if got := binary.LittleEndian.Uint32(d.VRAM()[70*w*4+130*4:]); got != 0x00ff8040 {
		t.Errorf("VRAM after restore %#x", got)
	}
	if !d.InP2M() {
		t.Error("LFB not in the p2m after restore")
	}

	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	if mapsBefore == 0 {
		t.Fatal("no mappings counted")
	}
	if err := s.m.Close(); err != nil {
		t.Fatal(err)
	}
	if n := s.sim.Mappings(); n != 0 {
		t.Errorf("%d privcmd mappings left after Close (had %d)", n, mapsBefore)
	}
	if n := s.sim.Count(s.dom.ID(), xensim.EventDecreaseReservation, ""); n != vramSize/4096 {
		t.Errorf("%d VRAM pages released on Close, want %d", n, vramSize/4096)
	}
	if s.dom.IsRAMPage(simRAM/4096) || s.dom.IsRAMPage(lfbBase2/4096) {
		t.Error("VRAM frames left in the p2m after Close")
	}
	// The display still reads what was shown.
	if !src.Read(px, src.Mode(), display.Rect{X: 130, Y: 70, W: 1, H: 1}) || binary.LittleEndian.Uint32(px) != 0x00ff8040 {
		t.Errorf("screen pixel after Close % x", px)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// VRAM is in the p2m by default; x-godm-vram-p2m=off keeps it trapped:
// LFB writes are ioreqs, nothing is populated.
func TestVRAMP2MDefaultAndOptOut(t *testing.T) {
	for _, p2m := range []string{"", "off"} {
		s, d := vgaRig(t, p2m, nil)
		on := p2m == ""
		if n := s.sim.Count(s.dom.ID(), xensim.EventPopulatePhysmap, ""); (n != 0) != on {
			t.Errorf("p2m=%q: %d pages populated", p2m, n)
		}
		guestCfg(t, s, 0x10, 4, lfbBase)
		guestCfg(t, s, 4, 2, 2)
		if d.InP2M() != on {
			t.Errorf("p2m=%q: LFB in the p2m %v", p2m, d.InP2M())
		}
		before := syncReqs(s)
		if err := s.v.MMIOWrite(lfbBase+8, 4, 0x55); err != nil {
			t.Fatal(err)
		}
		want := uint64(2)
		if on {
			want = 0
		}
		if got, _ := s.v.MMIORead(lfbBase+8, 4); syncReqs(s)-before != want || got != 0x55 {
			t.Errorf("p2m=%q: LFB write then read: %#x with %d ioreqs, want %d", p2m, got, syncReqs(s)-before, want)
		}
	}
}

// When the frames cannot be placed (here: the guest's RAM size is not
// known, so there is no place above it), the VGA stays trapped, says so
// in one warning line, and its LFB works through ioreqs.
func TestVRAMP2MFallback(t *testing.T) {
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	xen := testfake.NewXen(t, xensim.Config{}, testfake.RAM(1, simRAM))
	list := append(Spec{}.Entries(), board.Entry{Driver: "VGA", Props: map[string]string{
		"id": "vga", "addr": "03.0", "romfile": "", "x-godm-vram-p2m": "on"}})
	m, err := New(xen.Sim.Kernel(0), Spec{Dom: xen.Dom.ID(), VCPUs: 1, Devices: list, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	d := m.Board.Device("vga").Dev.(*vga.Device)
	if n := strings.Count(logBuf.String(), "VRAM stays trapped"); n != 1 {
		t.Errorf("%d warning lines, want 1:\n%s", n, logBuf.String())
	}
	v := xen.Dom.VCPU(0)
	for _, c := range [][3]uint64{{0x10, 4, lfbBase}, {4, 2, 2}} {
		if err := v.PCIConfigWrite(vgaDev, uint32(c[0]), int(c[1]), c[2]); err != nil {
			t.Fatal(err)
		}
	}
	if d.InP2M() {
		t.Error("LFB in the p2m after the fallback")
	}
	before := m.ioreqs()
	if err := v.MMIOWrite(lfbBase+16, 4, 0x77); err != nil {
		t.Fatal(err)
	}
	if got, err := v.MMIORead(lfbBase+16, 4); err != nil || got != 0x77 || m.ioreqs()-before != 2 {
		t.Errorf("trapped LFB write then read: %#x, %v, %d ioreqs", got, err, m.ioreqs()-before)
	}
}

// With log-dirty on (live migration), the device's own writes into VRAM in
// the p2m are reported to Xen as modified memory where the frames are.
func TestVRAMP2MDeviceWritesReported(t *testing.T) {
	s, d := vgaRig(t, "on", nil)
	guestCfg(t, s, 0x10, 4, lfbBase)
	guestCfg(t, s, 4, 2, 2)
	if err := s.m.SetDirtyLog(true); err != nil {
		t.Fatal(err)
	}
	defer s.m.SetDirtyLog(false)
	mark := s.sim.LastSeq()
	d.Scanout().WriteVRAM(5*4096+100, make([]byte, 4096)) // pages 5 and 6
	if err := s.m.FlushDirty(); err != nil {
		t.Fatal(err)
	}
	var got []xensim.Event
	for _, e := range s.sim.EventsSince(mark) {
		if e.Kind == xensim.EventModifiedMemory && e.Dom == s.dom.ID() {
			got = append(got, e)
		}
	}
	if len(got) != 1 || got[0].First != lfbBase/4096+5 || got[0].Nr != 2 {
		t.Errorf("modified memory reported: %+v, want gfn %#x, 2 pages", got, lfbBase/4096+5)
	}
	// Off: nothing is recorded.
	if err := s.m.SetDirtyLog(false); err != nil {
		t.Fatal(err)
	}
	mark = s.sim.LastSeq()
	d.Scanout().WriteVRAM(0, []byte{1})
	if err := s.m.SetDirtyLog(true); err != nil {
		t.Fatal(err)
	}
	if err := s.m.FlushDirty(); err != nil {
		t.Fatal(err)
	}
	for _, e := range s.sim.EventsSince(mark) {
		if e.Kind == xensim.EventModifiedMemory && e.Dom == s.dom.ID() {
			t.Errorf("a write made while log-dirty was off was reported: %+v", e)
		}
	}
}

// The Cirrus VGA with x-godm-vram-p2m=on: its LFB's VRAM part is guest RAM
// while QEMU's cirrus maps VRAM straight in (no blit waiting for data, no
// extended write mode 4/5, no x8/x16 addressing, no MMIO at the LFB
// top), and trapped again as soon as the guest selects one of those; the
// rest of the BAR (the blit aperture) stays trapped throughout.
func TestCirrusVRAMInP2M(t *testing.T) {
	list := append(Spec{}.Entries(), board.Entry{Driver: "cirrus-vga", Props: map[string]string{
		"id": "vga", "addr": "03.0", "vgamem_mb": "8", "romfile": "", "x-godm-vram-p2m": "on"}})
	s := newBoardRig(t, Spec{Devices: list})
	d := s.m.Board.Device("vga").Dev.(*vga.Cirrus)
	const cirrusVRAM = 8 << 20
	guestCfg(t, s, 0x10, 4, lfbBase)
	guestCfg(t, s, 4, 2, 2)
	if !d.InP2M() || !s.dom.IsRAMPage(lfbBase/4096) || !s.dom.IsRAMPage((lfbBase+cirrusVRAM)/4096-1) {
		t.Fatal("Cirrus LFB not in the p2m after BAR programming")
	}
	if s.dom.IsRAMPage((lfbBase + cirrusVRAM) / 4096) {
		t.Error("RAM beyond the VRAM in the BAR")
	}
	before := syncReqs(s)
	if err := s.v.MMIOWrite(lfbBase+0x1234, 4, 0xcafe); err != nil {
		t.Fatal(err)
	}
	if got := syncReqs(s) - before; got != 0 {
		t.Errorf("Cirrus LFB write made %d ioreqs", got)
	}
	if got := binary.LittleEndian.Uint32(d.VRAM()[0x1234:]); got != 0xcafe {
		t.Errorf("device sees %#x", got)
	}
	// The aperture (16 MiB into the BAR) is still the device's.
	if err := s.v.MMIOWrite(lfbBase+16<<20, 1, 0); err != nil {
		t.Fatal(err)
	}
	if syncReqs(s)-before != 1 {
		t.Error("the blit aperture did not trap")
	}
	// GR0B bit 2 with write mode 4 (GR05): trapped, as in QEMU.
	for _, w := range []uint64{0x040b, 0x0405} {
		if err := s.v.Out(0x3ce, 2, w); err != nil {
			t.Fatal(err)
		}
	}
	if d.InP2M() || s.dom.IsRAMPage(lfbBase/4096) {
		t.Fatal("write mode 4 left the LFB in the p2m")
	}
	before = syncReqs(s)
	if v, err := s.v.MMIORead(lfbBase+0x1234, 4); err != nil || v != 0xcafe || syncReqs(s)-before != 1 {
		t.Errorf("trapped read %#x, %v", v, err)
	}
	for _, w := range []uint64{0x000b, 0x0005} {
		if err := s.v.Out(0x3ce, 2, w); err != nil {
			t.Fatal(err)
		}
	}
	if !d.InP2M() {
		t.Fatal("back to write mode 0: LFB not in the p2m again")
	}
	mapsBefore := s.sim.Mappings()
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.m.Close(); err != nil {
		t.Fatal(err)
	}
	if n := s.sim.Mappings(); n != 0 {
		t.Errorf("%d mappings left (had %d)", n, mapsBefore)
	}
}

// libxlMaxPages is libxl's limit for a restored domain: its RAM and video
// memory plus LIBXL_MAXMEM_CONSTANT (1 MiB): room for one copy of VRAM,
// not two (on the box a second populate stopped after 260 pages).
const libxlMaxPages = simRAM/4096 + vramSize/4096 + 256

// restoreRig is what xl restore makes of the domain of s, saved with
// state: a new domain on the same simulator (maxPages its memory limit,
// 0 none) given s's memory by the toolstack (xensim's RestoreMemoryFrom:
// VRAM frames included, where they were), then a new machine with the
// same devices started for an incoming domain, loading state (nil:
// none).
func restoreRig(t *testing.T, s *boardRig, devs []board.Entry, state []byte, log *slog.Logger, maxPages uint64) *boardRig {
	t.Helper()
	cfg := testfake.RAM(1, simRAM)
	cfg.MaxPages = maxPages
	dom, err := s.sim.CreateDomain(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := dom.RestoreMemoryFrom(s.dom); err != nil {
		t.Fatal(err)
	}
	m, err := New(s.sim.Kernel(0), Spec{Dom: dom.ID(), VCPUs: 1, MemBytes: simRAM, Devices: devs, Incoming: true, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if state != nil {
		if err := m.LoadState(bytes.NewReader(state)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-done
	}
	t.Cleanup(func() { _ = stop() })
	return &boardRig{sim: s.sim, dom: dom, m: m, v: dom.VCPU(0), stop: stop}
}

// xl save then xl restore of a domain whose VGA VRAM is in the p2m: the
// new godm populates nothing (Xen's stream brought the frames back where
// they were: populating again would leak or, with libxl's maxmem, fail),
// takes them over at the LFB the device state records, and the guest's
// picture, its LFB stores without ioreqs, the dirty tracking of them and
// the release on close all go on. Saved with the BAR decoding off the
// frames are at home and are taken over there; a record of trapped VRAM
// (nothing in the p2m) populates new frames and restores VRAM from the
// record.
func TestVRAMP2MSaveRestore(t *testing.T) {
	const w, h = 256, 128
	const px1, px2 = 70*w*4 + 130*4, 100*w*4 + 8*4
	for _, tc := range []struct {
		name, p2m, dst string
		decode         bool
	}{{"at-bar", "on", "", true}, {"at-home", "on", "", false}, {"from-trapped", "off", "", true},
		{"to-trapped", "on", "off", true}} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := vgaRig(t, tc.p2m, nil)
			// The restored godm runs with the default (on), whatever the
			// saved one had.
			var devs []board.Entry
			for _, e := range s.m.Spec.Devices {
				if e.Driver == "VGA" {
					props := map[string]string{}
					for k, v := range e.Props {
						if k != "x-godm-vram-p2m" {
							props[k] = v
						}
					}
					if tc.dst != "" {
						props["x-godm-vram-p2m"] = tc.dst
					}
					e.Props = props
				}
				devs = append(devs, e)
			}
			guestCfg(t, s, 0x10, 4, lfbBase)
			guestCfg(t, s, 4, 2, 2)
			guestVBE(t, s, w, h)
			if err := s.v.MMIOWrite(lfbBase+px1, 4, 0x00ff8040); err != nil {
				t.Fatal(err)
			}
			if !tc.decode {
				guestCfg(t, s, 4, 2, 0)
			}
			s.m.Board.Pause()
			var st bytes.Buffer
			if err := s.m.SaveState(&st); err != nil {
				t.Fatal(err)
			}
			// Only the new godm's populates count (xensim's restore adds
			// none of its own).
			mark := s.sim.LastSeq()
			r := restoreRig(t, s, devs, st.Bytes(), nil, libxlMaxPages)
			if err := s.stop(); err != nil {
				t.Fatal(err)
			}
			if err := s.m.Close(); err != nil {
				t.Fatal(err)
			}
			rd := r.m.Board.Device("vga").Dev.(*vga.Device)
			populated := uint64(0)
			for _, e := range s.sim.EventsSince(mark) {
				if e.Kind == xensim.EventPopulatePhysmap && e.Dom == r.dom.ID() {
					populated += e.Nr
				}
			}
			wantPop := uint64(0)
			if tc.p2m == "off" {
				wantPop = vramSize / 4096
			}
			if populated != wantPop {
				t.Errorf("the restored godm populated %d pages, want %d", populated, wantPop)
			}
			if got := binary.LittleEndian.Uint32(rd.VRAM()[px1:]); got != 0x00ff8040 {
				t.Errorf("VRAM after restore %#x", got)
			}
			if tc.dst == "off" {
				// The frames Xen brought back are released: the BAR
				// traps again and shows the record's VRAM.
				if rd.InP2M() || r.dom.IsRAMPage(lfbBase/4096) || r.dom.IsRAMPage(simRAM/4096) {
					t.Fatal("trapped after restore: frames left in the p2m")
				}
				before := syncReqs(r)
				if got, err := r.v.MMIORead(lfbBase+px1, 4); err != nil || got != 0x00ff8040 || syncReqs(r)-before != 1 {
					t.Errorf("trapped LFB read after restore %#x, %v", got, err)
				}
				return
			}
			if !tc.decode {
				if rd.InP2M() || !r.dom.IsRAMPage(simRAM/4096) || r.dom.IsRAMPage(lfbBase/4096) {
					t.Fatal("decode off: the frames are not at home")
				}
				guestCfg(t, r, 4, 2, 2)
			}
			if !rd.InP2M() || !r.dom.IsRAMPage(lfbBase/4096) || r.dom.IsRAMPage(simRAM/4096) {
				t.Fatalf("after restore: in the p2m %v, RAM at the LFB %v, at home %v (a second copy)",
					rd.InP2M(), r.dom.IsRAMPage(lfbBase/4096), r.dom.IsRAMPage(simRAM/4096))
			}
			src := rd.Source()
			collect(src)
			before := syncReqs(r)
			if err := r.v.MMIOWrite(lfbBase+px2, 4, 0x00abcdef); err != nil {
				t.Fatal(err)
			}
			if got := syncReqs(r) - before; got != 0 {
				t.Errorf("LFB store after restore made %d ioreqs", got)
			}
			if got := binary.LittleEndian.Uint32(rd.VRAM()[px2:]); got != 0x00abcdef {
				t.Errorf("the device does not see the guest's store after restore: %#x", got)
			}
			tl, _ := collect(src)
			cols, _ := tl.Size()
			var want []int
			for x := range cols { // the page's rows (100-103) are in one band of tiles
				want = append(want, 100/display.TileSize*cols+x)
			}
			if !equalInts(dirtyTiles(tl), want) {
				t.Errorf("dirty tiles after the store %v, want %v (row 100's page)", dirtyTiles(tl), want)
			}
			// Saved again from the restored godm: the record says where.
			snap, err := rd.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			if _, rec, err := savestateOpen(snap); err != nil || rec != lfbBase/4096 {
				t.Errorf("the restored device records its frames at gfn %#x (%v), want %#x", rec, err, lfbBase/4096)
			}
			if err := r.stop(); err != nil {
				t.Fatal(err)
			}
			if err := r.m.Close(); err != nil {
				t.Fatal(err)
			}
			if r.dom.IsRAMPage(lfbBase/4096) || r.dom.IsRAMPage(simRAM/4096) {
				t.Error("VRAM frames left in the restored p2m after Close")
			}
		})
	}
}

// savestateOpen reads a VGA record's version and frame gfn.
func savestateOpen(rec []byte) (uint32, uint64, error) {
	ver, rd, err := savestate.Open(rec, vga.RecordName, vga.StateVersion)
	if err != nil {
		return 0, 0, err
	}
	return ver, rd.U64(), rd.Err()
}

// A restore record is hostile: one naming guest RAM as VRAM's place is
// not taken over (the pages would become VRAM and follow the BAR); new
// frames are populated at home, with one warning, and the guest's RAM
// stays. A version 1 record (no place) populates new frames too.
func TestVRAMP2MRestoreRecordLocation(t *testing.T) {
	s, d := vgaRig(t, "on", nil)
	guestCfg(t, s, 0x10, 4, lfbBase)
	guestCfg(t, s, 4, 2, 2)
	if err := s.v.MMIOWrite(lfbBase+64, 4, 0x1234); err != nil {
		t.Fatal(err)
	}
	rec, err := d.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	payload := recordPayload(t, rec, vga.RecordName)
	if binary.LittleEndian.Uint64(payload) != lfbBase/4096 {
		t.Fatal("the record does not start with the frames' gfn")
	}
	at := func(gfn uint64) []byte {
		return savestate.Record(vga.RecordName, vga.StateVersion, append(binary.LittleEndian.AppendUint64(nil, gfn), payload[8:]...))
	}
	v1 := savestate.Record(vga.RecordName, 1, payload[8:])
	for _, tc := range []struct {
		name string
		rec  []byte
		warn int
	}{{"guest-ram", at(0x10), 1}, {"special-pages", at(0xfeff0), 1}, {"v1", v1, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			var logBuf bytes.Buffer
			r := restoreRig(t, s, s.m.Spec.Devices, nil, slog.New(slog.NewTextHandler(&logBuf, nil)), 0)
			rd := r.m.Board.Device("vga").Dev.(*vga.Device)
			mark := s.sim.LastSeq()
			if err := rd.Restore(tc.rec); err != nil {
				t.Fatal(err)
			}
			if n := s.sim.Count(r.dom.ID(), xensim.EventPopulatePhysmap, ""); n != vramSize/4096 {
				t.Errorf("%d pages populated, want new frames (%d)", n, vramSize/4096)
			}
			for _, e := range s.sim.EventsSince(mark) {
				if e.Dom == r.dom.ID() && e.Kind == xensim.EventRelocateMemory && e.First < simRAM/4096 {
					t.Errorf("guest RAM moved: %+v", e)
				}
			}
			if n := strings.Count(logBuf.String(), "not where its device state says"); n != tc.warn {
				t.Errorf("%d warnings, want %d:\n%s", n, tc.warn, logBuf.String())
			}
			if !r.dom.IsRAMPage(0x10) || !rd.InP2M() || !r.dom.IsRAMPage(lfbBase/4096) {
				t.Errorf("after restore: RAM at 0x10000 %v, LFB in the p2m %v", r.dom.IsRAMPage(0x10), rd.InP2M())
			}
			if got := binary.LittleEndian.Uint32(rd.VRAM()[64:]); got != 0x1234 {
				t.Errorf("VRAM from the record %#x", got)
			}
		})
	}
}

// The Cirrus VGA across xl save and restore: as the VGA, its frames are
// taken over at the LFB (nothing populated), and its mode-dependent
// mapping still follows the guest's registers afterwards.
func TestCirrusVRAMP2MSaveRestore(t *testing.T) {
	list := append(Spec{}.Entries(), board.Entry{Driver: "cirrus-vga", Props: map[string]string{
		"id": "vga", "addr": "03.0", "vgamem_mb": "8", "romfile": ""}})
	s := newBoardRig(t, Spec{Devices: list})
	guestCfg(t, s, 0x10, 4, lfbBase)
	guestCfg(t, s, 4, 2, 2)
	if !s.m.Board.Device("vga").Dev.(*vga.Cirrus).InP2M() {
		t.Fatal("the Cirrus LFB is not in the p2m by default")
	}
	if err := s.v.MMIOWrite(lfbBase+0x1234, 4, 0xcafe); err != nil {
		t.Fatal(err)
	}
	s.m.Board.Pause()
	var st bytes.Buffer
	if err := s.m.SaveState(&st); err != nil {
		t.Fatal(err)
	}
	mark := s.sim.LastSeq()
	r := restoreRig(t, s, list, st.Bytes(), nil, libxlMaxPages)
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.m.Close(); err != nil {
		t.Fatal(err)
	}
	for _, e := range s.sim.EventsSince(mark) {
		if e.Kind == xensim.EventPopulatePhysmap && e.Dom == r.dom.ID() {
			t.Fatalf("the restored godm populated VRAM: %+v", e)
		}
	}
	d := r.m.Board.Device("vga").Dev.(*vga.Cirrus)
	if !d.InP2M() || !r.dom.IsRAMPage(lfbBase/4096) || r.dom.IsRAMPage(simRAM/4096) {
		t.Fatal("after restore the Cirrus LFB is not the restored frames")
	}
	if got := binary.LittleEndian.Uint32(d.VRAM()[0x1234:]); got != 0xcafe {
		t.Errorf("VRAM after restore %#x", got)
	}
	before := syncReqs(r)
	if err := r.v.MMIOWrite(lfbBase+0x2000, 4, 0xbeef); err != nil {
		t.Fatal(err)
	}
	if got := binary.LittleEndian.Uint32(d.VRAM()[0x2000:]); got != 0xbeef || syncReqs(r) != before {
		t.Errorf("store after restore: device sees %#x, %d ioreqs", got, syncReqs(r)-before)
	}
	// Write mode 4 traps the LFB again: the frames go home.
	for _, w := range []uint64{0x040b, 0x0405} {
		if err := r.v.Out(0x3ce, 2, w); err != nil {
			t.Fatal(err)
		}
	}
	if d.InP2M() || r.dom.IsRAMPage(lfbBase/4096) || !r.dom.IsRAMPage(simRAM/4096) {
		t.Error("write mode 4 after restore left the frames at the LFB")
	}
}

// A trapped display's restore releases the frames its record names only
// inside the PCI window: a record naming guest RAM or Xen's special
// pages is refused, and the RAM stays.
func TestVRAMTrappedRestoreRefusesBadPlace(t *testing.T) {
	s, d := vgaRig(t, "off", nil)
	rec, err := d.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	payload := recordPayload(t, rec, vga.RecordName)
	if binary.LittleEndian.Uint64(payload) != 0 {
		t.Fatal("a trapped VGA records frames in the p2m")
	}
	for _, gfn := range []uint64{0x10, 0xfeff0, simRAM/4096 - 1} {
		bad := append([]byte(nil), payload...)
		binary.LittleEndian.PutUint64(bad, gfn)
		err := d.Restore(savestate.Record(vga.RecordName, vga.StateVersion, bad))
		if err == nil {
			t.Errorf("a record placing VRAM frames at gfn %#x was restored", gfn)
		}
		if !s.dom.IsRAMPage(0x10) || !s.dom.IsRAMPage(simRAM/4096-1) {
			t.Fatal("guest RAM released")
		}
	}
	if n := s.sim.Count(s.dom.ID(), xensim.EventDecreaseReservation, ""); n != 0 {
		t.Errorf("%d pages released", n)
	}
}

// recordPayload is the payload of a device record for driver (savestate:
// magic, name, version, then the payload as a length-prefixed string).
func recordPayload(t *testing.T, rec []byte, driver string) []byte {
	t.Helper()
	off := 4 + 4 + len(driver) + 4 + 4
	if len(rec) < off+8 || int(binary.LittleEndian.Uint32(rec[off-4:])) != len(rec)-off {
		t.Fatal("not a savestate record")
	}
	return rec[off:]
}

// A populate that Xen stops part way (the domain's memory limit) leaves
// no page behind: the VGA stays trapped and its LFB works through
// ioreqs.
func TestVRAMP2MPopulateFailsCleanly(t *testing.T) {
	cfg := testfake.RAM(1, simRAM)
	cfg.MaxPages = simRAM/4096 + 100
	xen := testfake.NewXen(t, xensim.Config{}, cfg)
	list := append(Spec{}.Entries(), board.Entry{Driver: "VGA", Props: map[string]string{
		"id": "vga", "addr": "03.0", "vgamem_mb": "8", "romfile": ""}})
	m, err := New(xen.Sim.Kernel(0), Spec{Dom: xen.Dom.ID(), VCPUs: 1, MemBytes: simRAM, Devices: list})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if n := xen.Sim.Count(xen.Dom.ID(), xensim.EventPopulatePhysmap, ""); n != 100 {
		t.Errorf("%d pages populated before the limit, want 100", n)
	}
	for gfn := uint64(simRAM / 4096); gfn < simRAM/4096+vramSize/4096; gfn++ {
		if xen.Dom.IsRAMPage(gfn) {
			t.Fatalf("gfn %#x left populated after the failed populate", gfn)
		}
	}
	if d := m.Board.Device("vga").Dev.(*vga.Device); d.InP2M() {
		t.Error("VRAM in the p2m after the failed populate")
	}
}

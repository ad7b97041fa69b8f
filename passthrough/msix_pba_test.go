package passthrough

import (
	"context"
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"godm/devices"
)

// pattern returns n bytes that differ from their neighbours, so that a
// read at the wrong offset or of the wrong width shows.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

// le returns size bytes of b at off, little-endian.
func le(b []byte, off, size int) uint64 {
	var v [8]byte
	copy(v[:], b[off:off+size])
	return binary.LittleEndian.Uint64(v[:])
}

// mapped reports whether this process has a mapping of path
// (/proc/self/maps names the file of every file mapping).
func mapped(t testing.TB, path string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatalf("reading /proc/self/maps: %v", err)
	}
	return strings.Contains(string(b), path)
}

// resourcePath is the fake sysfs resource file of BAR bar of h.
func resourcePath(h *HostDevice, bar int) string {
	return filepath.Join(h.Dir, "resource"+string(rune('0'+bar)))
}

// logCount is a slog handler counting the records whose message
// contains a word.
type logCount struct {
	mu    sync.Mutex
	word  string
	count int
}

func (l *logCount) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCount) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if strings.Contains(r.Message, l.word) {
		l.count++
	}
	return nil
}
func (l *logCount) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCount) WithGroup(string) slog.Handler      { return l }
func (l *logCount) n() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count
}

// plugWith builds and plugs d with a fakeXen and a logger, placing BAR3
// at 0xe0100000 (plus the BAR's offset in its page) and BAR0 at
// 0xe0000000 with memory decoding on.
func plugWith(t testing.TB, d sysfsDevice, log slog.Handler) (*Device, *devices.Bus, *HostDevice) {
	t.Helper()
	h := openHost(t, d)
	dev, err := New(Config{Dom: 5, Host: h, Xen: newFakeXen(), Slot: 4, Log: slog.New(log)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	bus := devices.NewBus()
	if err := dev.Plug(bus); err != nil {
		t.Fatalf("Plug: %v", err)
	}
	t.Cleanup(func() { _ = dev.Unplug() })
	c := cfgIO{dev}
	c.w(0x10, 4, 0xe0000000)
	c.w(0x1c, 4, 0xe0100000+h.Resources[3].Start%pageSize)
	c.w(0x04, 2, 0x0002)
	return dev, bus, h
}

// trapPages returns the guest ranges the device traps.
func trapPages(bus *devices.Bus) [][2]uint64 {
	var out [][2]uint64
	for _, r := range bus.MMIO.Ranges() {
		out = append(out, [2]uint64{r.Base, r.Size})
	}
	return out
}

// msixLayout is where a test device keeps its MSI-X structures, for the
// oracle below (written from the PCI spec, independently of msi.go).
type msixLayout struct {
	bar         int    // the BAR of the trapped page under test
	barStart    uint64 // guest address of the BAR
	barSize     uint64
	tableBAR    int
	tableOff    uint64
	entries     int
	file        []byte // the BAR's resource file; BAR offset o at file[pad+o]
	pad         uint64 // host address of the BAR modulo the page size
	unreachable bool   // the resource file cannot be mapped
}

// want is the guest's read of size bytes at guest address gpa on a
// trapped page, the table in its power-on state (address and data 0,
// masked).
func (l msixLayout) want(gpa uint64, size int) uint64 {
	all := devices.SizeMask(uint8(size))
	if gpa%uint64(size) != 0 || gpa < l.barStart || gpa+uint64(size) > l.barStart+l.barSize {
		return all
	}
	off := gpa - l.barStart
	if l.bar == l.tableBAR && off >= l.tableOff && off < l.tableOff+uint64(l.entries)*16 {
		if size < 4 {
			return all
		}
		switch {
		case size == 4 && off%16 == 12:
			return 1 // vector control: masked
		case size == 8 && off%16 == 8:
			return 1 << 32
		}
		return 0
	}
	if l.unreachable {
		return 0
	}
	return le(l.file, int(l.pad+off), size)
}

// checkEveryOffset reads every offset of every trapped page with every
// access size, aligned or not, and compares with l.
func checkEveryOffset(t *testing.T, bus *devices.Bus, page [2]uint64, l msixLayout) {
	t.Helper()
	bad := 0
	for gpa := page[0]; gpa < page[0]+page[1]; gpa++ {
		for _, size := range []int{1, 2, 4, 8} {
			got, want := bus.MMIO.Read(gpa, uint8(size), 0), l.want(gpa, size)
			if got != want && bad < 10 {
				bad++
				t.Errorf("read %d bytes at %#x (BAR%d+%#x) = %#x, want %#x",
					size, gpa, l.bar, int64(gpa)-int64(l.barStart), got, want)
			}
		}
	}
}

// withBARFiles gives d resource files for BAR0 and BAR3, each a pattern.
func withBARFiles(d sysfsDevice) sysfsDevice {
	d.bars = map[int][]byte{0: pattern(0x20000, 0x11), 3: pattern(0x4000, 0x40)}
	return d
}

// TestMSIXTrapEveryOffset: on the synthetic function (table at BAR3+0,
// PBA at BAR3+0x2000, on pages of their own), every offset of both
// trapped pages answers: the table emulated, the PBA and the registers
// beside them from the resource file, misaligned accesses all-ones;
// without a mappable resource file, the same but 0 from the device,
// counted, with one hint.
func TestMSIXTrapEveryOffset(t *testing.T) {
	tests := []struct {
		name        string
		files       func(sysfsDevice) sysfsDevice
		unreachable bool
		plugHint    bool
	}{
		{"resource file", withBARFiles, false, false},
		{"no resource file", func(d sysfsDevice) sysfsDevice { return d }, true, true},
		{"empty resource file", func(d sysfsDevice) sysfsDevice {
			d.bars = map[int][]byte{3: nil}
			return d
		}, true, true},
		{"resource file shorter than the PBA page", func(d sysfsDevice) sysfsDevice {
			d.bars = map[int][]byte{3: pattern(0x1000, 0x40)}
			return d
		}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.files(synthetic())
			logs := &logCount{word: "MSI-X"}
			dev, bus, _ := plugWith(t, s, logs)
			if got := logs.n(); (got == 1) != tt.plugHint {
				t.Errorf("%d MSI-X warnings at plug, want hint %v", got, tt.plugHint)
			}
			pages := trapPages(bus)
			if want := [][2]uint64{{0xe0100000, 0x1000}, {0xe0102000, 0x1000}}; len(pages) != 2 || pages[0] != want[0] || pages[1] != want[1] {
				t.Fatalf("trapped %x, want %x", pages, want)
			}
			file := s.bars[3]
			for _, p := range pages {
				l := msixLayout{bar: 3, barStart: 0xe0100000, barSize: 0x4000, tableBAR: 3, entries: 5,
					file: file, unreachable: tt.unreachable || len(file) < int(p[0]-0xe0100000+p[1])}
				checkEveryOffset(t, bus, p, l)
			}
			misses := dev.Stats().TrapMisses
			if reachable := !tt.unreachable && len(file) >= 0x4000; reachable && misses != 0 {
				t.Errorf("TrapMisses = %d with the resource file mapped", misses)
			} else if !reachable && misses == 0 {
				t.Errorf("TrapMisses = 0, want the reads of 0 counted")
			}
			wantHints := 0
			if tt.plugHint {
				wantHints = 2 // the plug-time warning and the one-time read hint
			}
			if got := logs.n(); got != wantHints {
				t.Errorf("%d MSI-X warnings, want %d", got, wantHints)
			}
		})
	}
}

// TestMSIXTrapWritesDropped: writes to the PBA and to the registers
// beside the table never reach the device (the resource file is
// unchanged, the PBA still reads its pending bits) and are counted;
// writes of a size the table does not take are dropped too; table
// writes still work.
func TestMSIXTrapWritesDropped(t *testing.T) {
	s := withBARFiles(synthetic())
	binary.LittleEndian.PutUint64(s.bars[3][0x2000:], 0x5) // vectors 0 and 2 pending
	dev, bus, h := plugWith(t, s, slog.DiscardHandler)
	before, err := os.ReadFile(resourcePath(h, 3))
	must(t, err)
	writes := []struct {
		name string
		gpa  uint64
		size uint8
	}{
		{"PBA dword", 0xe0102000, 4},
		{"PBA qword", 0xe0102000, 8},
		{"PBA byte", 0xe0102001, 1},
		{"past the PBA", 0xe0102008, 4},
		{"beside the table", 0xe0100100, 4},
		{"beside the table, word", 0xe0100ffe, 2},
		{"table, byte", 0xe010000c, 1},
		{"table, misaligned", 0xe0100002, 4},
	}
	for i, w := range writes {
		bus.MMIO.Write(w.gpa, w.size, 0, ^uint64(0))
		if got := dev.Stats().TrapWrites; got != uint64(i+1) {
			t.Errorf("%s: TrapWrites = %d, want %d", w.name, got, i+1)
		}
	}
	after, err := os.ReadFile(resourcePath(h, 3))
	must(t, err)
	if string(after) != string(before) {
		t.Errorf("the resource file changed")
	}
	if got := bus.MMIO.Read(0xe0102000, 8, 0); got != 0x5 {
		t.Errorf("PBA = %#x after the writes, want 0x5", got)
	}
	if got := bus.MMIO.Read(0xe010000c, 4, 0); got != 1 {
		t.Errorf("entry 0 vector control = %#x after the dropped writes, want 1", got)
	}
	bus.MMIO.Write(0xe0100008, 4, 0, 0x51)
	if got := bus.MMIO.Read(0xe0100008, 4, 0); got != 0x51 {
		t.Errorf("entry 0 data = %#x, want 0x51", got)
	}
	if got := dev.Stats().TrapWrites; got != uint64(len(writes)) {
		t.Errorf("a table write counted as dropped: TrapWrites = %d", got)
	}
	// The device sets a pending bit: the guest sees it at once.
	f, err := os.OpenFile(resourcePath(h, 3), os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	_, err = f.WriteAt([]byte{0x10}, 0x2000)
	must(t, err)
	if got := bus.MMIO.Read(0xe0102000, 4, 0); got != 0x10 {
		t.Errorf("PBA = %#x after the device changed it, want 0x10", got)
	}
}

// TestMSIXPBALayouts: a PBA sharing the table's page, a PBA in another
// BAR than the table, and a BAR smaller than a page (not page aligned on
// the host): every offset of every trapped page answers as the spec
// says.
func TestMSIXPBALayouts(t *testing.T) {
	le32 := func(c []byte, off int, v uint32) { binary.LittleEndian.PutUint32(c[off:], v) }
	tests := []struct {
		name    string
		edit    func(d *sysfsDevice)
		pages   [][2]uint64
		layouts []msixLayout // one per trapped page
		windows int
	}{
		{"PBA on the table's page", func(d *sysfsDevice) {
			le32(d.config, 0xa8, 0x100|3)
		}, [][2]uint64{{0xe0100000, 0x1000}}, []msixLayout{
			{bar: 3, barStart: 0xe0100000, barSize: 0x4000, tableBAR: 3, entries: 5},
		}, 1},
		{"PBA in BAR0", func(d *sysfsDevice) {
			le32(d.config, 0xa8, 0x1000|0)
		}, [][2]uint64{{0xe0001000, 0x1000}, {0xe0100000, 0x1000}}, []msixLayout{
			{bar: 0, barStart: 0xe0000000, barSize: 0x20000, tableBAR: 3, entries: 5},
			{bar: 3, barStart: 0xe0100000, barSize: 0x4000, tableBAR: 3, entries: 5},
		}, 2},
		{"BAR of 256 bytes at 0x800 in its page", func(d *sysfsDevice) {
			d.resources[3] = Resource{Start: 0xf7c24800, End: 0xf7c248ff, Flags: resourceMem}
			le32(d.config, 0x1c, 0xf7c24800)
			le32(d.config, 0xa8, 0x80|3)
			d.bars[3] = pattern(0x900, 0x40)
		}, [][2]uint64{{0xe0100000, 0x1000}}, []msixLayout{
			{bar: 3, barStart: 0xe0100800, barSize: 0x100, tableBAR: 3, entries: 5, pad: 0x800},
		}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := withBARFiles(synthetic())
			s.resources = append([]Resource(nil), s.resources...)
			s.config = append([]byte(nil), s.config...)
			tt.edit(&s)
			dev, bus, _ := plugWith(t, s, slog.DiscardHandler)
			if pages := trapPages(bus); len(pages) != len(tt.pages) || !equalPages(pages, tt.pages) {
				t.Fatalf("trapped %x, want %x", pages, tt.pages)
			}
			dev.mu.Lock()
			nw := len(dev.windows)
			dev.mu.Unlock()
			if nw != tt.windows {
				t.Errorf("%d host windows, want %d", nw, tt.windows)
			}
			for i, l := range tt.layouts {
				l.file = s.bars[l.bar]
				checkEveryOffset(t, bus, tt.pages[i], l)
			}
			if m := dev.Stats().TrapMisses; m != 0 {
				t.Errorf("TrapMisses = %d", m)
			}
		})
	}
}

func equalPages(a, b [][2]uint64) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestMSIXWindowsUnmapped: the resource file is mapped while the device
// is plugged and never after: Unplug, a second plug and unplug, and a
// Plug that fails all leave no mapping behind.
func TestMSIXWindowsUnmapped(t *testing.T) {
	s := withBARFiles(synthetic())
	h := openHost(t, s)
	path := resourcePath(h, 3)
	dev, err := New(Config{Dom: 5, Host: h, Xen: newFakeXen(), Slot: 4})
	must(t, err)
	if mapped(t, path) {
		t.Fatal("mapped before Plug")
	}
	for round := 0; round < 2; round++ {
		bus := devices.NewBus()
		must(t, dev.Plug(bus))
		if !mapped(t, path) {
			t.Errorf("round %d: resource file not mapped while plugged", round)
		}
		must(t, dev.Unplug())
		if mapped(t, path) {
			t.Errorf("round %d: resource file still mapped after Unplug", round)
		}
	}
	bus := devices.NewBus()
	must(t, bus.PCI.Register(dev.SBDF(), romHandler{})) // slot taken: Plug fails
	if err := dev.Plug(bus); err == nil {
		t.Fatal("Plug into a taken slot succeeded")
	}
	if mapped(t, path) {
		t.Error("resource file still mapped after a failed Plug")
	}
}

// TestMSIXTrapNoAlloc: trapped accesses outside the table (PBA and
// registers beside the table, mapped or not) and the dropped writes do
// not allocate.
func TestMSIXTrapNoAlloc(t *testing.T) {
	_, bus, _ := plugWith(t, withBARFiles(synthetic()), slog.DiscardHandler)
	_, bare, _ := plugWith(t, synthetic(), slog.DiscardHandler)
	tests := []struct {
		name string
		fn   func()
	}{
		{"PBA read", func() { _ = bus.MMIO.Read(0xe0102000, 4, 0) }},
		{"PBA qword read", func() { _ = bus.MMIO.Read(0xe0102000, 8, 0) }},
		{"register beside the table", func() { _ = bus.MMIO.Read(0xe0100100, 2, 0) }},
		{"table read", func() { _ = bus.MMIO.Read(0xe0100008, 4, 0) }},
		{"PBA write", func() { bus.MMIO.Write(0xe0102000, 4, 0, 1) }},
		{"write beside the table", func() { bus.MMIO.Write(0xe0100100, 4, 0, 1) }},
		{"PBA read, unmapped", func() { _ = bare.MMIO.Read(0xe0102000, 4, 0) }},
	}
	for _, tt := range tests {
		if n := testing.AllocsPerRun(100, tt.fn); n != 0 {
			t.Errorf("%s: %v allocations", tt.name, n)
		}
	}
}

// TestRealSamplePBA: this machine's virtio-net function (MSI-X table at
// BAR0+0x8000, PBA at BAR0+0x48000, a 512K 64-bit BAR0) behind the
// standalone server on xensim, with a resource0 file holding pending
// bits and a register beside the table: the guest reads the pending
// bits and the register, its writes to both are dropped, every dword of
// both trapped pages answers as the spec says, and the mapping is gone
// after the server stops.
func TestRealSamplePBA(t *testing.T) {
	r := newSimRig(t)
	s := loadSample(t, "0000_00_03.0")
	file := pattern(0x80000, 0x23)
	binary.LittleEndian.PutUint64(file[0x48000:], 0x5)       // vectors 0 and 2 pending
	binary.LittleEndian.PutUint32(file[0x8100:], 0xdeadbeef) // a register beside the table
	s.bars = map[int][]byte{0: file}
	r.root = tree(t, synthetic(), s)
	dev, stop, done := r.standalone(t, "0000:00:03.0", 3)
	path := resourcePath(dev.cfg.Host, 0)
	sbdf := uint32(devices.NewSBDF(0, 0, 3, 0))
	v := r.dom.VCPU(0)
	must(t, v.PCIConfigWrite(sbdf, 0x10, 4, 0))
	must(t, v.PCIConfigWrite(sbdf, 0x14, 4, 8))
	must(t, v.PCIConfigWrite(sbdf, 0x04, 2, 0x0006))
	const bar0 = 0x8_0000_0000
	mr := func(gpa uint64, size int) uint64 {
		t.Helper()
		x, err := v.MMIORead(gpa, size)
		must(t, err)
		return x
	}
	if !mapped(t, path) {
		t.Errorf("%s not mapped while serving", path)
	}
	l := msixLayout{bar: 0, barStart: bar0, barSize: 0x80000, tableBAR: 0, tableOff: 0x8000, entries: 3, file: file}
	for _, page := range []uint64{bar0 + 0x8000, bar0 + 0x48000} {
		for gpa := page; gpa < page+pageSize; gpa += 4 {
			if got, want := mr(gpa, 4), l.want(gpa, 4); got != want {
				t.Fatalf("read at BAR0+%#x = %#x, want %#x", gpa-bar0, got, want)
			}
		}
	}
	reads := []struct {
		name string
		gpa  uint64
		size int
		want uint64
	}{
		{"PBA dword", bar0 + 0x48000, 4, 0x5},
		{"PBA qword", bar0 + 0x48000, 8, 0x5},
		{"register beside the table", bar0 + 0x8100, 4, 0xdeadbeef},
		{"entry 2 vector control", bar0 + 0x802c, 4, 1},
		{"misaligned PBA", bar0 + 0x48002, 4, 0xffffffff},
	}
	for _, rd := range reads {
		if got := mr(rd.gpa, rd.size); got != rd.want {
			t.Errorf("%s: read %#x, want %#x", rd.name, got, rd.want)
		}
	}
	before := dev.Stats().TrapWrites
	must(t, v.MMIOWrite(bar0+0x48000, 4, 0))
	must(t, v.MMIOWrite(bar0+0x8100, 4, 0))
	if got := dev.Stats().TrapWrites - before; got != 2 {
		t.Errorf("TrapWrites went up by %d, want 2", got)
	}
	if got := mr(bar0+0x48000, 4); got != 0x5 {
		t.Errorf("PBA = %#x after the guest wrote 0, want 0x5", got)
	}
	if got, err := os.ReadFile(path); err != nil || string(got) != string(file) {
		t.Errorf("resource0 changed (%v)", err)
	}
	if m := dev.Stats().TrapMisses; m != 0 {
		t.Errorf("TrapMisses = %d", m)
	}
	stop()
	must(t, wait(t, done))
	if mapped(t, path) {
		t.Errorf("%s still mapped after the server stopped", path)
	}
	if err := replay(r.sim.Events()).clean(); err != nil {
		t.Error(err)
	}
}

// FuzzMSIXTrap drives the two trapped pages of the synthetic function
// (the table's, with registers beside it, and the PBA's) with random
// accesses: nothing panics, every read outside the table is the
// device's (the resource file's) bytes or all-ones when misaligned or of
// a bad size, and the device is never written.
func FuzzMSIXTrap(f *testing.F) {
	f.Add([]byte{0, 0, 0x00, 0x20, 1, 2, 3, 4, 5, 6, 7, 8})                         // PBA read
	f.Add([]byte{1, 0, 0x00, 0x20, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})             // PBA write
	f.Add([]byte{7, 1, 0x0c, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 6, 1, 0x0c, 0x00, 0, 0}) // table write and read
	f.Add([]byte{4, 0, 0x03, 0x01, 0, 0, 0, 0, 0, 0, 0, 0})                         // misaligned
	s := withBARFiles(synthetic())
	dev, bus, h := plugWith(f, s, slog.DiscardHandler)
	file := s.bars[3]
	const bar3 = 0xe0100000
	f.Fuzz(func(t *testing.T, script []byte) {
		for len(script) >= 4 {
			op, page, off := script[0], uint64(script[1]%2)*0x2000, uint64(script[2])|uint64(script[3])<<8
			script = script[4:]
			size := uint8(1) << (op >> 1 & 3)
			gpa := bar3 + page + off%pageSize
			if op&1 != 0 {
				var v [8]byte
				n := copy(v[:], script)
				script = script[n:]
				bus.MMIO.Write(gpa, size, 0, binary.LittleEndian.Uint64(v[:]))
				continue
			}
			got := bus.MMIO.Read(gpa, size, 0)
			boff := gpa - bar3
			switch {
			case boff%uint64(size) != 0:
				if got != devices.SizeMask(size) {
					t.Fatalf("misaligned read of %d at BAR3+%#x = %#x", size, boff, got)
				}
			case boff >= 5*16:
				if want := le(file, int(boff), int(size)); got != want {
					t.Fatalf("read of %d at BAR3+%#x = %#x, want the device's %#x", size, boff, got, want)
				}
			}
		}
		if b, err := os.ReadFile(resourcePath(h, 3)); err != nil || string(b) != string(file) {
			t.Fatalf("the device was written (%v)", err)
		}
		if m := dev.Stats().TrapMisses; m != 0 {
			t.Fatalf("TrapMisses = %d", m)
		}
	})
}

package layout

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	const MiB = 1 << 20
	for _, tc := range []struct {
		total, hole uint64
		want        Layout
		regions     []Range
	}{
		{0, 0, Layout{}, nil},
		{64 * MiB, 0, Layout{DefaultHoleStart, 64 * MiB, 0}, []Range{{0, 0xa0000}, {0xc0000, 64*MiB - 0xc0000}}},
		{1 * MiB, 0, Layout{DefaultHoleStart, MiB, 0}, []Range{{0, 0xa0000}, {0xc0000, 0x40000}}},
		// Exactly the RAM that fits below the hole: nothing above.
		{3840 * MiB, 0, Layout{DefaultHoleStart, 3840 * MiB, 0}, []Range{{0, 0xa0000}, {0xc0000, 0xf0000000 - 0xc0000}}},
		// 4 GiB: 256 MiB goes above 4 GiB (libxl: highmem_end = 4G + (mem - mmio_start)).
		{4096 * MiB, 0, Layout{DefaultHoleStart, 0xf0000000, 256 * MiB},
			[]Range{{0, 0xa0000}, {0xc0000, 0xf0000000 - 0xc0000}, {FourGiB, 256 * MiB}}},
		// mmio_hole=2048 → max-ram-below-4g=2 GiB.
		{4096 * MiB, 2048 * MiB, Layout{2048 * MiB, 2048 * MiB, 2048 * MiB},
			[]Range{{0, 0xa0000}, {0xc0000, 2048*MiB - 0xc0000}, {FourGiB, 2048 * MiB}}},
		{MaxRAM, MinHoleStart, Layout{MinHoleStart, MinHoleStart, MaxRAM - MinHoleStart},
			[]Range{{0, 0xa0000}, {0xc0000, MinHoleStart - 0xc0000}, {FourGiB, MaxRAM - MinHoleStart}}},
	} {
		l, err := New(tc.total, tc.hole)
		if err != nil {
			t.Errorf("New(%#x, %#x): %v", tc.total, tc.hole, err)
			continue
		}
		if l != tc.want {
			t.Errorf("New(%#x, %#x) = %+v, want %+v", tc.total, tc.hole, l, tc.want)
		}
		if got := l.Regions(); !reflect.DeepEqual(got, tc.regions) {
			t.Errorf("New(%#x, %#x).Regions() = %#x, want %#x", tc.total, tc.hole, got, tc.regions)
		}
		var sum uint64
		for _, r := range l.Regions() {
			sum += r.Size
		}
		if tc.total != 0 && sum != tc.total-(VGAHoleEnd-VGAHoleStart) {
			t.Errorf("New(%#x, %#x): regions hold %#x bytes, want the total less the VGA hole", tc.total, tc.hole, sum)
		}
		if l.Total() != tc.total {
			t.Errorf("Total() = %#x, want %#x", l.Total(), tc.total)
		}
	}
}

func TestNewRefuses(t *testing.T) {
	const MiB = 1 << 20
	for _, tc := range []struct {
		total, hole uint64
		want        string
	}{
		{MiB - 4096, 0, "guest RAM"},
		{MiB + 1, 0, "page multiple"},
		{MaxRAM + 4096, 0, "16 TiB"},
		{1 << 63, 0, "16 TiB"},
		{^uint64(0), 0, "16 TiB"},
		{64 * MiB, DefaultHoleStart + 4096, "RAM below 4 GiB"},
		{64 * MiB, FourGiB, "RAM below 4 GiB"},
		{64 * MiB, MinHoleStart - 4096, "RAM below 4 GiB"},
		{64 * MiB, 0x80000001, "page multiple"},
		{0, ^uint64(0), "RAM below 4 GiB"},
	} {
		_, err := New(tc.total, tc.hole)
		if !errors.Is(err, ErrRange) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%#x, %#x) = %v, want ErrRange mentioning %q", tc.total, tc.hole, err, tc.want)
		}
	}
}

func TestIsRAM(t *testing.T) {
	l, err := New(4096<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		gpa, n uint64
		want   bool
	}{
		{0, 1, true},
		{0x9ffff, 1, true},
		{0x9ffff, 2, false}, // runs into the VGA hole
		{0xa0000, 1, false},
		{0xc0000, 4096, true},
		{0xefffffff, 1, true},
		{0xf0000000, 1, false}, // the PCI hole
		{0xfffff000, 4096, false},
		{FourGiB, 1, true},
		{FourGiB + 256<<20 - 1, 1, true},
		{FourGiB + 256<<20, 1, false},
		{0, 0, false},
		{^uint64(0), 2, false}, // wraps
	} {
		if got := l.IsRAM(tc.gpa, tc.n); got != tc.want {
			t.Errorf("IsRAM(%#x, %#x) = %v, want %v", tc.gpa, tc.n, got, tc.want)
		}
	}
	if (Layout{}).IsRAM(0, 1) {
		t.Error("the unknown layout has RAM")
	}
	if s := l.String(); !strings.Contains(s, "4096 MiB RAM: 3840 MiB below the PCI hole at 0xf0000000, 256 MiB from 4 GiB") {
		t.Errorf("String() = %q", s)
	}
}

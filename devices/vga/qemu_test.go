package vga

import (
	"math/rand/v2"
	"testing"

	"godm/internal/qtest"
)

// The DISPI registers against QEMU 7.2's standard VGA through qtest: the
// same writes (mode sets, out-of-range sizes, depths, offsets, banks, IDs,
// GETCAPS, unknown indices) on both, then every register read back.
func TestQEMUDiffDISPI(t *testing.T) {
	if _, err := qtest.Find(qtest.Options{}); err != nil {
		t.Skip("qemu-system-x86_64 not installed (scripts/test-packages.txt: qemu-system-x86):", err)
	}
	const vram = 16 << 20
	q, err := qtest.Start(qtest.Options{Args: []string{"-device", "VGA,vgamem_mb=16"}})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	v := NewVBE(vram, nil)
	write := func(i, val uint16) {
		if _, err := q.Out(PortIndex, 2, uint64(i)); err != nil {
			t.Fatal(err)
		}
		if _, err := q.Out(PortData, 2, uint64(val)); err != nil {
			t.Fatal(err)
		}
		v.WriteIndex(i)
		v.WriteData(val)
	}
	check := func(step string) {
		for i := uint16(0); i <= 0xc; i++ {
			if _, err := q.Out(PortIndex, 2, uint64(i)); err != nil {
				t.Fatal(err)
			}
			want, _, err := q.In(PortData, 2)
			if err != nil {
				t.Fatal(err)
			}
			v.WriteIndex(i)
			if got := v.ReadData(); uint64(got) != want {
				t.Fatalf("after %s: register %#x = %#x, QEMU %#x", step, i, got, want)
			}
		}
		idx, _, _ := q.In(PortIndex, 2)
		if uint64(v.ReadIndex()) != idx {
			t.Fatalf("after %s: index %#x, QEMU %#x", step, v.ReadIndex(), idx)
		}
	}
	check("reset")
	type w struct{ i, v uint16 }
	scripts := [][]w{
		{{IndexXRes, 1024}, {IndexYRes, 768}, {IndexBPP, 32}, {IndexEnable, Enabled | LFBEnabled}},
		{{IndexXRes, 1023}, {IndexBPP, 15}, {IndexVirtWidth, 3000}, {IndexXOffset, 17}, {IndexYOffset, 5000}},
		{{IndexYRes, 60000}, {IndexXRes, 0}, {IndexBPP, 7}, {IndexBank, 0xffff}},
		{{IndexEnable, 0}, {IndexXRes, 7}, {IndexBPP, 5}, {IndexEnable, Enabled | NoClearMem}},
		{{IndexEnable, GetCaps}, {IndexID, 0xb0c2}, {IndexID, 0x1234}, {IndexVirtHeight, 9}, {0xa, 5}, {0xb, 5}},
		{{IndexEnable, Enabled | DAC8Bit}, {IndexXRes, 16000}, {IndexYRes, 12000}, {IndexBPP, 32}, {IndexXOffset, 16000}},
	}
	for n, s := range scripts {
		for _, st := range s {
			write(st.i, st.v)
		}
		check("script " + string(rune('0'+n)))
	}
	// Random writes.
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 400 {
		i := uint16(r.IntN(0xc))
		var val uint16
		switch r.IntN(4) {
		case 0:
			val = uint16(r.Uint32())
		case 1:
			val = uint16(r.IntN(2048))
		case 2:
			val = []uint16{0, 4, 8, 15, 16, 24, 32, 33}[r.IntN(8)]
		default:
			val = uint16(r.IntN(256))
		}
		write(i, val)
		if n%20 == 0 {
			check("random writes")
		}
	}
	check("random writes")
}

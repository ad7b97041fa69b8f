package board

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"godm/devices/nvme"
	"godm/memory"
	"godm/pci"
)

func TestNVMeDriver(t *testing.T) {
	hd, path := rawDrive(t, "nv0", "disk")
	env := testEnv()
	env.Drives = map[string]*Drive{"nv0": hd}
	b, err := New(env)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Build([]Entry{{Driver: "i440FX"}, {Driver: "PIIX3"},
		{Driver: "nvme", Props: map[string]string{"id": "nvme0", "drive": "nv0", "addr": "06", "serial": "S1"}}}); err != nil {
		t.Fatal(err)
	}
	p := b.Device("nvme0")
	if p == nil || p.PCI == nil {
		t.Fatal("no nvme0 on the bus")
	}
	if h := p.PCI.Header(); h.VendorID != nvme.VendorID || h.DeviceID != nvme.DeviceID || h.Class != nvme.Class || p.PCI.SBDF().Dev() != 6 {
		t.Errorf("nvme0 is %04x:%04x class %06x at %v", h.VendorID, h.DeviceID, h.Class, p.PCI.SBDF())
	}
	if !locked(path) {
		t.Error("the drive is not locked")
	}
	if _, ok := p.Dev.(*NVMe); !ok {
		t.Fatalf("device is %T", p.Dev)
	}
	// BAR0 at 0xfe000000; the admin queues in the 1 MiB of RAM.
	sbdf := p.PCI.SBDF()
	cfg := func(off uint32, size uint8, v uint64) { env.Spaces.PCI.Write(sbdf, off, size, 0, v) }
	cfg(0x10, 4, 0xfe000000)
	cfg(0x14, 4, 0)
	cfg(pci.RegCommand, 2, pci.CommandMemory|pci.CommandMaster)
	rd := func(off uint64) uint64 { return env.Spaces.MMIO.Read(0xfe000000+off, 4, 0) }
	wr := func(off uint64, v uint64) { env.Spaces.MMIO.Write(0xfe000000+off, 4, 0, v) }
	if rd(0x08) != 0x10400 {
		t.Fatalf("VS %#x through the board", rd(0x08))
	}
	wr(0x24, 3<<16|3)
	wr(0x28, 0x10000)
	wr(0x30, 0x20000)
	wr(0x14, 6<<16|4<<20|1)
	if rd(0x1c) != 1 {
		t.Fatalf("CSTS %#x after enable", rd(0x1c))
	}
	snap, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	wr(0x14, 0)
	wr(0x24, 0)
	if err := b.Restore(snap); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if rd(0x1c) != 1 || rd(0x24) != 3<<16|3 {
		t.Errorf("CSTS %#x AQA %#x after restore", rd(0x1c), rd(0x24))
	}
	b.Reset()
	if v := p.PCI.ConfigRead(pci.RegCommand, 2); v&pci.CommandMemory != 0 {
		t.Error("reset left memory decoding on")
	}
	cfg(0x10, 4, 0xfe000000)
	cfg(pci.RegCommand, 2, pci.CommandMemory)
	if rd(0x1c) != 0 || rd(0x14) != 0 || rd(0x24) != 0 {
		t.Errorf("CSTS %#x CC %#x AQA %#x after reset", rd(0x1c), rd(0x14), rd(0x24))
	}
	hd2, _ := rawDrive(t, "nv1", "disk")
	b.env.Drives["nv1"] = hd2
	for _, tc := range []struct{ props, want string }{
		{"drive=nv0,serial=x", "already in use"},
		{"drive=nope,serial=x", "can't find value 'nope'"},
		{"serial=x", "drive property not set"},
		{"drive=nv1", "serial property not set"},
		{"drive=nv1,serial=x,bogus=1", "bogus"},
	} {
		pp, _ := ParseProps(tc.props)
		if _, err := b.Plug("nvme", "", pp); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.props, err, tc.want)
		}
	}
	var help strings.Builder
	Help(&help)
	if !strings.Contains(help.String(), `"nvme"`) {
		t.Error("-device help lacks nvme")
	}
	help.Reset()
	if err := DriverHelp(&help, "nvme"); err != nil || !strings.Contains(help.String(), "serial") {
		t.Errorf("-device nvme,help: %v %q", err, help.String())
	}
	if err := b.Unplug("nvme0"); err != nil {
		t.Fatal(err)
	}
	if locked(path) || b.Device("nvme0") != nil {
		t.Error("unplug left the device or the drive's lock")
	}
}

// TestNVMePauseSnapshotInFlight pauses the board with reads in flight
// and completions waiting for room in a small CQ, snapshots it, and
// restores the record into a new board on the same guest memory and
// image: every command completes there, once.
func TestNVMePauseSnapshotInFlight(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "nv.img")
	img := make([]byte, 1<<20)
	for i := range img {
		img[i] = byte(i/512) + 1
	}
	if err := os.WriteFile(path, img, 0o600); err != nil {
		t.Fatal(err)
	}
	mem := memory.NewFlat(0, 4<<20)
	le := binary.LittleEndian
	const (
		asq, acq, sq1, cq1, buf = 0x10000, 0x11000, 0x12000, 0x13000, 0x100000
		bar                     = 0xfe000000
	)
	type side struct {
		b   *Board
		env Env
	}
	start := func() side {
		hd, err := OpenDrive(DriveOptions{ID: "nv0", File: path, Format: "raw", Media: "disk"})
		if err != nil {
			t.Fatal(err)
		}
		env := testEnv()
		env.Memory = mem
		env.Drives = map[string]*Drive{"nv0": hd}
		b, err := New(env)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Build([]Entry{{Driver: "i440FX"}, {Driver: "PIIX3"},
			{Driver: "nvme", Props: map[string]string{"id": "nvme0", "drive": "nv0", "addr": "06", "serial": "S1"}}}); err != nil {
			t.Fatal(err)
		}
		return side{b, env}
	}
	s := start()
	sbdf := s.b.Device("nvme0").PCI.SBDF()
	s.env.Spaces.PCI.Write(sbdf, 0x10, 4, 0, bar)
	s.env.Spaces.PCI.Write(sbdf, pci.RegCommand, 2, 0, pci.CommandMemory|pci.CommandMaster)
	wr := func(s side, off, v uint64) { s.env.Spaces.MMIO.Write(bar+off, 4, 0, v) }
	var tails [2]uint32
	cid := uint16(0)
	submit := func(s side, q int, e []byte) uint16 {
		cid++
		le.PutUint16(e[2:], cid)
		base := uint64(asq)
		if q == 1 {
			base = sq1
		}
		_ = mem.Write(memory.GPA(base+uint64(tails[q])*64), e)
		tails[q] = (tails[q] + 1) % 16
		wr(s, 0x1000+uint64(q)*8, uint64(tails[q]))
		return cid
	}
	entry := func(op byte, nsid uint32, prp uint64, dw ...uint32) []byte {
		e := make([]byte, 64)
		e[0] = op
		le.PutUint32(e[4:], nsid)
		le.PutUint64(e[24:], prp)
		for i, v := range dw {
			le.PutUint32(e[40+4*i:], v)
		}
		return e
	}
	wait := func(a uint64, phase byte) []byte {
		deadline := time.Now().Add(5 * time.Second)
		e := make([]byte, 16)
		for {
			_ = mem.Read(memory.GPA(a), e)
			if e[14]&1 == phase {
				return e
			}
			if time.Now().After(deadline) {
				t.Fatalf("no completion at %#x", a)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	wr(s, 0x24, 15<<16|15)
	wr(s, 0x28, asq)
	wr(s, 0x30, acq)
	wr(s, 0x14, 6<<16|4<<20|1)
	// CQ 1 of 4 entries (3 usable), SQ 1 of 16.
	submit(s, 0, entry(0x05, 0, cq1, 3<<16|1, 1))
	submit(s, 0, entry(0x01, 0, sq1, 15<<16|1, 1<<16|1))
	for i := range 2 {
		if e := wait(acq+uint64(i)*16, 1); le.Uint16(e[14:])>>1 != 0 {
			t.Fatalf("queue creation %d: status %#x", i, le.Uint16(e[14:])>>1)
		}
	}
	wr(s, 0x1004, 2)
	want := map[uint16]int{}
	for i := range 6 {
		want[submit(s, 1, entry(0x02, 1, buf+uint64(i)*0x1000, uint32(i), 0, 7))] = i
	}
	s.b.Pause()
	snap, err := s.b.Snapshot()
	if err != nil {
		t.Fatalf("snapshot of a paused board: %v", err)
	}
	s.b.Close()
	// The new board: BAR and command restored from the record.
	n := start()
	defer n.b.Close()
	if err := n.b.Restore(snap); err != nil {
		t.Fatal(err)
	}
	n.b.Resume()
	head, phase := uint64(0), byte(1)
	for range 6 {
		e := wait(cq1+head*16, phase)
		c := le.Uint16(e[12:])
		i, ok := want[c]
		if !ok || le.Uint16(e[14:])>>1 != 0 {
			t.Fatalf("completion % x: unknown CID or an error", e)
		}
		delete(want, c)
		head++
		if head == 4 {
			head, phase = 0, phase^1
		}
		wr(n, 0x1000+12, head)
		if i < 0 || i > 5 {
			t.Fatalf("CID %d", c)
		}
	}
	// Every read's data is in guest memory (the memory carries over, as
	// a save carries the guest's RAM; the data went before the entry).
	for i := range 6 {
		got := make([]byte, 4096)
		_ = mem.Read(memory.GPA(buf+uint64(i)*0x1000), got)
		if !bytes.Equal(got, img[i*512:i*512+4096]) {
			t.Errorf("read %d's data: % x...", i, got[:8])
		}
	}
}

package machine

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"godm/block"
	"godm/internal/board"
	"godm/netback"
	"godm/pci"
)

// The full board of the cross-process snapshot test: the xenfv machine
// of snapSpec (COM1, PS/2, platform device, test device at 05.0) and its
// IDE function with a disk on ide.0, VGA at 06.0, an AHCI controller at
// 07.0 with a disk on port 0, and an rtl8139 at 08.0 on a netdev.
const (
	fullVGASlot  = 6
	fullAHCISlot = 7
	fullNICSlot  = 8
	fullNICBase  = 0xe1000000
	fullABAR     = 0xe2000000
	// fullVGAMMIO and fullVGALFB are VGA's BAR2 (DISPI registers at
	// 0x500) and BAR0 (the linear frame buffer, VRAM).
	fullVGAMMIO = 0xe3000000
	fullVGALFB  = 0xe4000000
	// fullAHCICLB and fullAHCIFB are port 0's command list and
	// received-FIS area in guest RAM (the FIS area gets the device's
	// signature FIS once FRE is set).
	fullAHCICLB = 0x300000
	fullAHCIFB  = 0x301000
	// fullAHCITbl holds the command tables (0x100 per slot);
	// fullAHCIBuf is the source of the DMA write, fullAHCIBuf2 the
	// destination of the read back.
	fullAHCITbl  = 0x302000
	fullAHCIBuf  = 0x310000
	fullAHCIBuf2 = 0x320000
)

// closingPort is a netdev for tests: a netback.Port (nothing on its far
// side) with the Close the board's Netdevs want.
type closingPort struct{ *netback.Port }

func (p closingPort) Close() error { p.Shutdown(); return nil }

// fullSpec is the full board on the raw images in dir (hd.img, sata.img).
func fullSpec(t *testing.T, dir string) Spec {
	t.Helper()
	s := snapSpec()
	drives := map[string]*board.Drive{}
	for _, id := range []string{"hd", "sata"} {
		d, err := board.OpenDrive(board.DriveOptions{ID: id, File: filepath.Join(dir, id+".img"), Format: "raw", Cache: block.CacheWriteback, Media: "disk"})
		if err != nil {
			t.Fatal(err)
		}
		drives[id] = d
	}
	hd, err := board.IDEIndexEntry(0, "disk", "hd")
	if err != nil {
		t.Fatal(err)
	}
	s.Storage = []board.Entry{hd,
		{Driver: "ahci", Props: map[string]string{"id": "ahci0", "addr": fmt.Sprintf("%02x.0", fullAHCISlot)}},
		{Driver: "ide-hd", Props: map[string]string{"bus": "ahci0.0", "drive": "sata"}},
	}
	port := closingPort{netback.NewPort(netback.PortConfig{Depth: 8})}
	t.Cleanup(func() { port.Close() })
	s.Netdevs = map[string]netback.Backend{"n0": port}
	s.Drives = drives
	s.Devices = append(s.Entries(),
		board.Entry{Driver: "VGA", Props: map[string]string{"id": "vga", "addr": fmt.Sprintf("%02x.0", fullVGASlot), "romfile": ""}},
		board.Entry{Driver: board.NICDriver, Props: map[string]string{"id": "nic", "netdev": "n0", "mac": "00:16:3e:5a:00:02", "addr": fmt.Sprintf("%02x.0", fullNICSlot)}},
	)
	return s
}

// fullImages writes two fresh 1 MiB raw images into dir, the disk's
// sectors numbered.
func fullImages(t *testing.T, dir string) {
	t.Helper()
	img := make([]byte, 1<<20)
	for i := 0; i < len(img); i += 512 {
		copy(img[i:], fmt.Sprintf("sector %d", i/512))
	}
	for _, n := range []string{"hd.img", "sata.img"} {
		if err := os.WriteFile(filepath.Join(dir, n), img, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// waitPortOp polls port until (in & mask) == want.
func waitPortOp(port uint16, mask, want uint64) guestOp {
	return guestOp{fmt.Sprintf("wait %#x&%#x==%#x", port, mask, want), func(s *boardRig) (uint64, bool, error) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			v, err := s.v.In(port, 1)
			if err != nil || v&mask == want {
				return 0, false, err
			}
			if time.Now().After(deadline) {
				return 0, false, fmt.Errorf("port %#x stuck at %#x", port, v)
			}
		}
	}}
}

// pioWordsOp writes n words of a pattern seeded by seed to port.
func pioWordsOp(port uint16, n int, seed uint64) guestOp {
	return guestOp{fmt.Sprintf("outw %#x x%d", port, n), func(s *boardRig) (uint64, bool, error) {
		for i := range n {
			if err := s.v.Out(port, 2, uint64(i)*seed&0xffff); err != nil {
				return 0, false, err
			}
		}
		return 0, false, nil
	}}
}

// pioReadWordsOp reads n words from port and reports their CRC.
func pioReadWordsOp(port uint16, n int) guestOp {
	return guestOp{fmt.Sprintf("inw %#x x%d crc", port, n), func(s *boardRig) (uint64, bool, error) {
		b := make([]byte, 0, 2*n)
		for range n {
			v, err := s.v.In(port, 2)
			if err != nil {
				return 0, false, err
			}
			b = append(b, byte(v), byte(v>>8))
		}
		return uint64(crc32.ChecksumIEEE(b)), true, nil
	}}
}

func mmiow16Op(gpa, v uint64) guestOp {
	return guestOp{fmt.Sprintf("mmio write16 %#x", gpa), func(s *boardRig) (uint64, bool, error) { return 0, false, s.v.MMIOWrite(gpa, 2, v) }}
}

// ramWriteOp writes p into guest RAM (the guest's CPU filling memory).
func ramWriteOp(gpa uint64, p []byte) guestOp {
	return guestOp{fmt.Sprintf("ram write %#x+%d", gpa, len(p)), func(s *boardRig) (uint64, bool, error) {
		return 0, false, s.dom.WriteRAM(gpa, p)
	}}
}

// waitMMIOOp polls gpa until (read & mask) == want.
func waitMMIOOp(gpa, mask, want uint64) guestOp {
	return guestOp{fmt.Sprintf("wait mmio %#x&%#x==%#x", gpa, mask, want), func(s *boardRig) (uint64, bool, error) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			v, err := s.v.MMIORead(gpa, 4)
			if err != nil || v&mask == want {
				return 0, false, err
			}
			if time.Now().After(deadline) {
				return 0, false, fmt.Errorf("mmio %#x stuck at %#x", gpa, v)
			}
		}
	}}
}

// ahciCmdOps builds command slot's header and table (one PRD of n bytes
// at buf; AHCI 1.3 4.2.2, 4.2.3) for an LBA48 DMA command (ATA H2D
// register FIS, SATA 10.3.4), issues it and waits for PxCI to clear.
func ahciCmdOps(slot int, cmd uint8, write bool, lba, buf uint64, sectors int) []guestOp {
	tbl := uint64(fullAHCITbl + slot*0x100)
	h := make([]byte, 32)
	opts := uint16(5) // CFL: 5 dwords
	if write {
		opts |= 0x40
	}
	binary.LittleEndian.PutUint16(h[0:], opts)
	binary.LittleEndian.PutUint16(h[2:], 1) // PRDTL
	binary.LittleEndian.PutUint64(h[8:], tbl)
	t := make([]byte, 0x90)
	copy(t, []byte{0x27, 0x80, cmd, 0, byte(lba), byte(lba >> 8), byte(lba >> 16), 0x40,
		byte(lba >> 24), 0, 0, 0, byte(sectors), byte(sectors >> 8)})
	binary.LittleEndian.PutUint64(t[0x80:], buf)
	binary.LittleEndian.PutUint32(t[0x8c:], uint32(sectors*512-1))
	return []guestOp{
		ramWriteOp(fullAHCICLB+uint64(slot)*32, h), ramWriteOp(tbl, t),
		mmiowOp(fullABAR+0x138, 1<<slot), // PxCI
		waitMMIOOp(fullABAR+0x138, 1<<slot, 0),
		mmiorOp(fullABAR + 0x110), mmiorOp(fullABAR + 0x120), mmiorOp(fullABAR + 0x08),
		mmiowOp(fullABAR+0x110, 0xffffffff), mmiowOp(fullABAR+0x08, 1),
	}
}

func mmior16Op(gpa uint64) guestOp {
	return guestOp{fmt.Sprintf("mmio read16 %#x", gpa), func(s *boardRig) (uint64, bool, error) {
		v, err := s.v.MMIORead(gpa, 2)
		return v, true, err
	}}
}

func mmiow8Op(gpa, v uint64) guestOp {
	return guestOp{fmt.Sprintf("mmio write8 %#x", gpa), func(s *boardRig) (uint64, bool, error) { return 0, false, s.v.MMIOWrite(gpa, 1, v) }}
}

func mmior8Op(gpa uint64) guestOp {
	return guestOp{fmt.Sprintf("mmio read8 %#x", gpa), func(s *boardRig) (uint64, bool, error) {
		v, err := s.v.MMIORead(gpa, 1)
		return v, true, err
	}}
}

// ideSectorOps writes one sector at lba on the primary master (PIO),
// then reads it back and the sector after it.
func ideSectorOps(lba uint64, seed uint64) []guestOp {
	tf := func(n uint64) []guestOp {
		return []guestOp{outOp(0x1f6, 1, 0xe0), outOp(0x1f2, 1, n), outOp(0x1f3, 1, lba), outOp(0x1f4, 1, 0), outOp(0x1f5, 1, 0)}
	}
	ops := tf(1)
	ops = append(ops, outOp(0x1f7, 1, 0x30), // WRITE SECTORS
		waitPortOp(0x3f6, 0x88, 0x08), pioWordsOp(0x1f0, 256, seed),
		waitPortOp(0x3f6, 0x80, 0), inOp(0x1f7, 1))
	ops = append(ops, tf(2)...)
	return append(ops, outOp(0x1f7, 1, 0x20), // READ SECTORS
		waitPortOp(0x3f6, 0x88, 0x08), pioReadWordsOp(0x1f0, 256),
		waitPortOp(0x3f6, 0x88, 0x08), pioReadWordsOp(0x1f0, 256),
		waitPortOp(0x3f6, 0x80, 0), inOp(0x1f7, 1), inOp(0x1f2, 1), inOp(0x1f3, 1))
}

// fullWorkload is snapshotWorkload with the other board devices
// touched in between: VGA (sequencer and graphics registers, a VBE mode,
// VRAM writes through the legacy window), the rtl8139 (MAC, multicast
// filter, receive buffer and transmit addresses, interrupt mask, receive
// and transmit on), the IDE disk (sector writes and reads) and the AHCI
// controller (AE, port 0's command list and FIS areas, FRE).
func fullWorkload() []guestOp {
	ops, _ := fullWorkloadGroups()
	return ops
}

// fullWorkloadGroups is fullWorkload and, for each device step, the
// range [start, end) of its ops.
func fullWorkloadGroups() ([]guestOp, [][2]int) {
	base := snapshotWorkload()
	nic := func(off uint64) uint64 { return fullNICBase + off }
	abar := func(off uint64) uint64 { return fullABAR + off }
	dispi := func(i uint64) uint64 { return fullVGAMMIO + 0x500 + 2*i }
	extra := [][]guestOp{
		{ // PCI set-up: NIC BAR1, ABAR, IDE decode.
			cfgwOp(fullNICSlot, 0, pci.RegBAR0+4, 4, fullNICBase),
			cfgwOp(fullNICSlot, 0, pci.RegCommand, 2, 0x6),
			cfgwOp(fullAHCISlot, 0, pci.RegBAR0+20, 4, fullABAR),
			cfgwOp(fullAHCISlot, 0, pci.RegCommand, 2, 0x6),
			cfgwOp(1, 1, pci.RegCommand, 2, 0x5),
			cfgwOp(1, 1, 0x40, 2, 0x8000),
			cfgwOp(fullVGASlot, 0, pci.RegBAR0, 4, fullVGALFB),
			cfgwOp(fullVGASlot, 0, pci.RegBAR0+8, 4, fullVGAMMIO),
			cfgwOp(fullVGASlot, 0, pci.RegCommand, 2, 0x3),
		},
		{ // VGA registers and a VBE mode.
			outOp(0x3c4, 1, 0x02), outOp(0x3c5, 1, 0x0f), // map mask
			outOp(0x3ce, 1, 0x05), outOp(0x3cf, 1, 0x40), // mode: 256 colours
			// DISPI through BAR2 (QEMU vga-pci.c: index i at 0x500+2i).
			mmiow16Op(dispi(1), 320), mmiow16Op(dispi(2), 200), // xres, yres
			mmiow16Op(dispi(3), 8), mmiow16Op(dispi(4), 0x41), // bpp; enable, LFB
			outOp(0x1ce, 2, 5), // the index port: bank
		},
		{ // NIC: MAC, multicast, rings, mask, RX/TX on.
			mmiow8Op(nic(0x50), 0xc0), // 9346CR: config write enable
			mmiowOp(nic(0x00), 0x5a3e1600), mmiow16Op(nic(0x04), 0x0302),
			mmiowOp(nic(0x08), 0xffffffff), mmiowOp(nic(0x0c), 0x80000001),
			mmiowOp(nic(0x30), 0x200000), // RBSTART
			mmiowOp(nic(0x20), 0x210000), mmiowOp(nic(0x24), 0x211000),
			mmiow16Op(nic(0x3c), 0x0005), // IMR: ROK, TOK
			mmiowOp(nic(0x44), 0x0000f70e),
			mmiow8Op(nic(0x37), 0x0c), // RE, TE
			mmiow8Op(nic(0x50), 0x00),
		},
		ideSectorOps(5, 7),
		{ // VRAM through the legacy window, VGA register reads.
			mmiowOp(0xa0000, 0x11223344), mmiowOp(0xa0100, 0x55667788),
			mmiorOp(0xa0000), mmiorOp(0xa0100), mmior8Op(0xa0001),
			outOp(0x3c4, 1, 0x02), inOp(0x3c5, 1), outOp(0x3ce, 1, 0x05), inOp(0x3cf, 1),
			mmior16Op(dispi(1)), mmior16Op(dispi(4)), inOp(0x1ce, 2),
			mmiowOp(fullVGALFB+0x1000, 0x0badf00d), mmiorOp(fullVGALFB + 0x1000), mmiorOp(fullVGALFB),
		},
		{ // AHCI: AE and IE, port 0's areas, FRE.
			mmiowOp(abar(0x04), 0x80000002),
			mmiowOp(abar(0x100), fullAHCICLB), mmiowOp(abar(0x104), 0),
			mmiowOp(abar(0x108), fullAHCIFB), mmiowOp(abar(0x10c), 0),
			mmiowOp(abar(0x114), 0x7dc0007f),
			mmiowOp(abar(0x118), 0x10), // FRE
			mmiorOp(abar(0x04)), mmiorOp(abar(0x118)), mmiorOp(abar(0x110)), mmiorOp(abar(0x124)), mmiorOp(abar(0x128)),
		},
		append([]guestOp{ // AHCI: ST, WRITE DMA EXT of 8 sectors at LBA 20.
			ramWriteOp(fullAHCIBuf, ahciPattern()),
			mmiowOp(abar(0x118), 0x17),
		}, ahciCmdOps(0, 0x35, true, 20, fullAHCIBuf, 8)...),
		ideSectorOps(9, 13),
		// AHCI: READ DMA EXT of 9 sectors at LBA 19 (one the write did
		// not touch).
		ahciCmdOps(1, 0x25, false, 19, fullAHCIBuf2, 9),
		{ // NIC read-back.
			mmiorOp(nic(0x00)), mmiorOp(nic(0x08)), mmiorOp(nic(0x0c)), mmiorOp(nic(0x20)), mmiorOp(nic(0x24)),
			mmiorOp(nic(0x30)), mmior8Op(nic(0x37)), mmiorOp(nic(0x3c)), mmiorOp(nic(0x44)), mmiorOp(nic(0x10)),
		},
		{ // VRAM again, more of it.
			mmiowOp(0xa0200, 0xcafef00d), mmiorOp(0xa0200), mmiorOp(0xa0000),
			mmior16Op(dispi(2)), mmiorOp(fullVGALFB + 0x1000), mmiorOp(fullVGALFB + 0x200),
		},
	}
	// Spread the device steps through the base workload.
	var ops []guestOp
	var groups [][2]int
	step := len(base) / (len(extra) + 1)
	for i, e := range extra {
		ops = append(ops, base[i*step:(i+1)*step]...)
		groups = append(groups, [2]int{len(ops), len(ops) + len(e)})
		ops = append(ops, e...)
	}
	return append(ops, base[len(extra)*step:]...), groups
}

// ahciPattern is the AHCI write's data.
func ahciPattern() []byte {
	p := make([]byte, 8*512)
	for i := range p {
		p[i] = byte(i*13 + 5)
	}
	return p
}

// finishFull is finish with the AHCI areas: the command headers (their
// PRDBC), the received FISes and the read's buffer.
func finishFull(t *testing.T, s *boardRig, res *guestResult) {
	t.Helper()
	finish(t, s, res)
	for _, r := range [][2]uint64{{fullAHCICLB, 64}, {fullAHCIFB, 256}, {fullAHCIBuf2, 9 * 512}} {
		b := make([]byte, r[1])
		if err := s.dom.ReadRAM(r[0], b); err != nil {
			t.Fatal(err)
		}
		res.RAM = append(res.RAM, b...)
	}
}

// TestSnapshotRestoreCrossProcessFullBoard is TestSnapshotRestoreCrossProcess
// with every board device: the workload also drives VGA, the rtl8139, an
// IDE disk and an AHCI controller with a disk; the snapshot is taken at
// random points, one inside each device's steps (the board paused first, as Snapshot requires of devices
// with work in flight), the guest's RAM and the disk images are handed to
// a new process, which restores and continues; the values read, the DMA
// buffers, the FIS area and the images must match an uninterrupted run.
func TestSnapshotRestoreCrossProcessFullBoard(t *testing.T) {
	ops, groups := fullWorkloadGroups()
	var want guestResult
	wantDir := t.TempDir()
	fullImages(t, wantDir)
	{
		s := newBoardRig(t, fullSpec(t, wantDir))
		runOps(t, s, ops, &want)
		finishFull(t, s, &want)
		s.stop()
		s.m.Close()
	}
	images := func(dir string) [][]byte {
		var out [][]byte
		for _, n := range []string{"hd.img", "sata.img"} {
			b, err := os.ReadFile(filepath.Join(dir, n))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, b)
		}
		return out
	}
	wantImages := images(wantDir)
	if !bytes.Equal(wantImages[1][20*512:28*512], ahciPattern()) {
		t.Fatal("the uninterrupted run's AHCI write is not in the image")
	}
	if !bytes.Equal(want.RAM[len(want.RAM)-8*512:], ahciPattern()) {
		t.Fatal("the uninterrupted run's AHCI read did not bring the written sectors back")
	}
	all := strings.Join(want.Reads, "\n")
	for _, w := range []string{"mmio read 0xa0000 = 0x11223344", "mmio read 0xe1000020 = 0x210000", "mmio read 0xe2000004 = 0x80000002", "mmio read16 0xe3000502 = 0x140", "mmio read 0xe4001000 = 0xbadf00d"} {
		if !strings.Contains(all, w) {
			t.Fatalf("the uninterrupted workload does not see %q:\n%s", w, all)
		}
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("random split points: seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 0xf011))
	// A random point inside each device's steps (its state half set
	// up, a disk command between its sectors), and two anywhere.
	var splits []int
	for _, g := range groups {
		splits = append(splits, g[0]+1+rnd.IntN(g[1]-g[0]))
	}
	splits = append(splits, 1+rnd.IntN(len(ops)-1), 1+rnd.IntN(len(ops)-1))
	for _, k := range splits {
		t.Run(fmt.Sprintf("split%d", k), func(t *testing.T) {
			dir := t.TempDir()
			fullImages(t, dir)
			a := newBoardRig(t, fullSpec(t, dir))
			var got guestResult
			runOps(t, a, ops[:k], &got)
			a.m.Board.Pause()
			snap, err := a.m.Board.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			ram := make([]byte, simRAM)
			if err := a.dom.ReadRAM(0, ram); err != nil {
				t.Fatal(err)
			}
			// The images are shared storage: the old machine lets go of
			// them (flushed, locks released) before the new one opens them.
			a.stop()
			if err := a.m.Close(); err != nil {
				t.Fatal(err)
			}
			for name, b := range map[string][]byte{"snapshot": snap, "ram": ram} {
				if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			prefix, err := json.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "prefix.json"), prefix, 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestSnapshotHelperProcessFullBoard$", "-test.count=1")
			cmd.Env = append(os.Environ(), snapDirEnv+"="+dir, snapSplitEnv+"="+fmt.Sprint(k))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("helper process: %v\n%s", err, out)
			}
			b, err := os.ReadFile(filepath.Join(dir, "result.json"))
			if err != nil {
				t.Fatal(err)
			}
			got = guestResult{}
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Reads, want.Reads) {
				for i := range min(len(got.Reads), len(want.Reads)) {
					if got.Reads[i] != want.Reads[i] {
						t.Errorf("read %d: %s, uninterrupted %s", i, got.Reads[i], want.Reads[i])
					}
				}
				if len(got.Reads) != len(want.Reads) {
					t.Errorf("%d reads, uninterrupted %d", len(got.Reads), len(want.Reads))
				}
			}
			if !reflect.DeepEqual(got.RAM, want.RAM) || got.INTx != want.INTx || got.IRQ4 != want.IRQ4 {
				t.Error("DMA buffers, FIS area or lines differ from the uninterrupted run")
			}
			if got := images(dir); !bytes.Equal(got[0], wantImages[0]) || !bytes.Equal(got[1], wantImages[1]) {
				t.Error("a disk image differs from the uninterrupted run's")
			}
		})
	}
}

// TestSnapshotHelperProcessFullBoard is the new process of
// TestSnapshotRestoreCrossProcessFullBoard.
func TestSnapshotHelperProcessFullBoard(t *testing.T) {
	dir := os.Getenv(snapDirEnv)
	if dir == "" {
		t.Skip("runs only as TestSnapshotRestoreCrossProcessFullBoard's helper process (" + snapDirEnv + " unset)")
	}
	k, err := strconv.Atoi(os.Getenv(snapSplitEnv))
	if err != nil {
		t.Fatal(err)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var res guestResult
	if err := json.Unmarshal(read("prefix.json"), &res); err != nil {
		t.Fatal(err)
	}
	s := newBoardRig(t, fullSpec(t, dir))
	if err := s.dom.WriteRAM(0, read("ram")); err != nil {
		t.Fatal(err)
	}
	if err := s.m.Board.Restore(read("snapshot")); err != nil {
		t.Fatal(err)
	}
	runOps(t, s, fullWorkload()[k:], &res)
	finishFull(t, s, &res)
	s.stop()
	if err := s.m.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "result.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

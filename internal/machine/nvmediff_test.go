package machine

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"godm/block"
	"godm/internal/board"
	"godm/internal/qtest"
)

// The NVMe differential test drives QEMU 7.2's `-device nvme` (the pc
// machine, a raw disk, serial GODM-NV-1 at 00:05.0) and the godm
// machine's board entry (a copy of the image, the same slot) with the
// same accesses: configuration space identity, BAR0's size, the
// controller registers at reset and through an enable, shutdown and
// disable, Identify Controller and Namespace fields a driver relies on,
// Get Features (number of queues), queue creation errors, a write and a
// read through an I/O queue pair (completion entries and data), and the
// images afterwards.
//
// Deliberate differences, left out of the comparison: CAP.CSS (QEMU 7.2
// also sets bits 6 and 7, the I/O command set selection of NVMe 2.0),
// CAP.CMBS/PMRS; Identify fields of features godm does not offer (OACS,
// ONCS beyond DSM/Write Zeroes, SGLS, MDTS, FRMW/LPA/OAES/CTRATT, the
// firmware revision, namespace management, the extra LBA formats QEMU
// lists). QEMU completes commands from timers on the virtual clock, so
// its side steps the clock while waiting for a completion.

const (
	nvSlot = 5
	nvBAR  = 0xfe000000
	nvASQ  = 0x100000
	nvACQ  = 0x101000
	nvSQ1  = 0x102000
	nvCQ1  = 0x103000
	nvData = 0x200000
	nvID   = 0x300000
)

type nvDiff struct {
	*ideDiff
	mm   [2]vbMMIO
	step [2]func()
	ph   [2]bool // the phase expected of each CQ (admin, I/O 1)
	head [2]uint32
	tail [2]uint32
	cid  uint16
}

func nvTargets(t *testing.T) (*nvDiff, string, string) {
	t.Helper()
	skipWithoutQEMU(t)
	dir := t.TempDir()
	disk, _ := ideImages(t, dir)
	godmDisk := filepath.Join(dir, "g-disk.img")
	copyFile(t, disk, godmDisk)
	c, err := qtest.Start(qtest.Options{Args: []string{"-m", "128", "-serial", "null",
		"-device", fmt.Sprintf("nvme,drive=nv0,addr=%02x,serial=GODM-NV-1", nvSlot),
		"-drive", "file=" + disk + ",if=none,id=nv0,format=raw,cache=writeback"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	q := &ideSide{name: "QEMU", run: &qtest.QEMUTarget{C: c}}
	q.write = func(addr uint64, p []byte) error {
		_, err := c.Command(fmt.Sprintf("write %#x %#x 0x%s", addr, len(p), hex.EncodeToString(p)))
		return err
	}
	q.read = func(addr uint64, n int) ([]byte, error) {
		r, err := c.Command(fmt.Sprintf("read %#x %#x", addr, n))
		if err != nil || len(r.Words) == 0 {
			return nil, fmt.Errorf("read: %v %v", r.Words, err)
		}
		return hex.DecodeString(strings.TrimPrefix(r.Words[0], "0x"))
	}
	hd, err := board.OpenDrive(board.DriveOptions{ID: "nv0", File: godmDisk, Format: "raw", Cache: block.CacheWriteback, Media: "disk"})
	if err != nil {
		t.Fatal(err)
	}
	s := startSimMachineWith(t, Spec{Drives: map[string]*board.Drive{"nv0": hd},
		Storage: []board.Entry{{Driver: "nvme", Props: map[string]string{"drive": "nv0", "addr": fmt.Sprintf("%02x", nvSlot), "serial": "GODM-NV-1"}}}})
	g := &ideSide{name: "godm", run: s.target()}
	g.write = func(addr uint64, p []byte) error { return s.dom.WriteRAM(addr, p) }
	g.read = func(addr uint64, n int) ([]byte, error) {
		p := make([]byte, n)
		return p, s.dom.ReadRAM(addr, p)
	}
	d := &nvDiff{ideDiff: &ideDiff{t: t, sides: [2]*ideSide{q, g}}}
	sfx := map[int]string{1: "b", 2: "w", 4: "l", 8: "q"}
	d.mm[0] = func(write bool, addr uint64, size int, v uint64) (uint64, error) {
		if write {
			_, err := c.Command(fmt.Sprintf("write%s %#x %#x", sfx[size], addr, v))
			return 0, err
		}
		r, err := c.Command(fmt.Sprintf("read%s %#x", sfx[size], addr))
		if err != nil || len(r.Words) == 0 {
			return 0, fmt.Errorf("read%s: %v %v", sfx[size], r.Words, err)
		}
		return strconv.ParseUint(r.Words[0], 0, 64)
	}
	vcpu := s.dom.VCPU(1)
	d.mm[1] = func(write bool, addr uint64, size int, v uint64) (uint64, error) {
		if write {
			return 0, vcpu.MMIOWrite(addr, size, v)
		}
		return vcpu.MMIORead(addr, size)
	}
	d.step[0] = func() { _, _ = c.Command("clock_step 1000000") }
	d.step[1] = func() { time.Sleep(200 * time.Microsecond) }
	return d, disk, godmDisk
}

func (d *nvDiff) cfgw(off uint8, size uint8, v uint64) {
	d.out(0xcf8, 4, 0x80000000|nvSlot<<11|uint64(off)&^3)
	d.out(0xcfc+uint16(off&3), size, v)
}

func (d *nvDiff) cfgr(off uint8, size uint8, why string) uint64 {
	d.out(0xcf8, 4, 0x80000000|nvSlot<<11|uint64(off)&^3)
	return d.in(0xcfc+uint16(off&3), size, why)
}

func (d *nvDiff) w(off uint64, size int, v uint64) {
	d.t.Helper()
	for i, f := range d.mm {
		if _, err := f(true, nvBAR+off, size, v); err != nil {
			d.t.Fatalf("%s: write %#x: %v", d.sides[i].name, off, err)
		}
	}
}

// r reads a register on both sides and compares the bits in mask.
func (d *nvDiff) r(off uint64, size int, mask uint64, why string) [2]uint64 {
	d.t.Helper()
	var v [2]uint64
	for i, f := range d.mm {
		x, err := f(false, nvBAR+off, size, 0)
		if err != nil {
			d.t.Fatalf("%s: read %#x: %v", d.sides[i].name, off, err)
		}
		v[i] = x
	}
	if v[0]&mask != v[1]&mask {
		d.fail("%s: BAR0 %#x/%d: QEMU %#x, godm %#x (compared bits %#x)", why, off, size, v[0], v[1], mask)
	}
	return v
}

// cmd submits a 64-byte entry on SQ q and waits for its completion on
// each side; the completion entries must agree (the status, SQ head, SQ
// id, CID and phase; DW0 under dw0mask).
func (d *nvDiff) cmd(q int, e []byte, dw0mask uint32, why string) [2]uint32 {
	d.t.Helper()
	d.cid++
	binary.LittleEndian.PutUint16(e[2:], d.cid)
	sq, cq := uint64(nvASQ), uint64(nvACQ)
	if q == 1 {
		sq, cq = nvSQ1, nvCQ1
	}
	d.memWrite(sq+uint64(d.tail[q])*64, e)
	d.tail[q] = (d.tail[q] + 1) % 16
	d.w(0x1000+uint64(q)*8, 4, uint64(d.tail[q]))
	var got [2][]byte
	for i, sd := range d.sides {
		deadline := time.Now().Add(5 * time.Second)
		for {
			p, err := sd.read(cq+uint64(d.head[q])*16, 16)
			if err != nil {
				d.t.Fatal(err)
			}
			if (p[14]&1 != 0) == !d.ph[q] {
				got[i] = p
				break
			}
			if time.Now().After(deadline) {
				d.t.Fatalf("%s: %s: no completion", sd.name, why)
			}
			d.step[i]()
		}
	}
	d.head[q]++
	if d.head[q] == 16 {
		d.head[q], d.ph[q] = 0, !d.ph[q]
	}
	d.w(0x1000+uint64(q)*8+4, 4, uint64(d.head[q]))
	var dw0 [2]uint32
	for i := range got {
		dw0[i] = binary.LittleEndian.Uint32(got[i])
	}
	if dw0[0]&dw0mask != dw0[1]&dw0mask || !bytesEq(got[0][8:], got[1][8:]) {
		d.fail("%s: completion QEMU % x, godm % x", why, got[0], got[1])
	}
	return dw0
}

func bytesEq(a, b []byte) bool { return string(a) == string(b) }

func nvCmd(op byte, nsid uint32, prp1, prp2 uint64, dw ...uint32) []byte {
	e := make([]byte, 64)
	e[0] = op
	binary.LittleEndian.PutUint32(e[4:], nsid)
	binary.LittleEndian.PutUint64(e[24:], prp1)
	binary.LittleEndian.PutUint64(e[32:], prp2)
	for i, v := range dw {
		binary.LittleEndian.PutUint32(e[40+4*i:], v)
	}
	return e
}

// field compares n bytes at off of both sides' copies of a data buffer.
func (d *nvDiff) field(addr uint64, off, n int, why string) {
	d.t.Helper()
	var got [2][]byte
	for i, sd := range d.sides {
		p, err := sd.read(addr+uint64(off), n)
		if err != nil {
			d.t.Fatal(err)
		}
		got[i] = p
	}
	if !bytesEq(got[0], got[1]) {
		d.fail("%s (bytes %d+%d): QEMU % x, godm % x", why, off, n, got[0], got[1])
	}
}

func TestQEMUDiffXen_NVMe(t *testing.T) {
	d, qemuDisk, godmDisk := nvTargets(t)
	// Identity: IDs, class, revision, subsystem, interrupt pin.
	for _, off := range []uint8{0x00, 0x08, 0x2c} {
		d.cfgr(off, 4, fmt.Sprintf("config %#x", off))
	}
	d.cfgr(0x3d, 1, "interrupt pin")
	d.cfgr(0x0e, 1, "header type")
	// BAR0: 64-bit memory, 16 KiB.
	d.cfgw(0x10, 4, 0xffffffff)
	d.cfgr(0x10, 4, "BAR0 size")
	d.cfgw(0x14, 4, 0xffffffff)
	d.cfgr(0x14, 4, "BAR0 upper size")
	d.cfgw(0x10, 4, nvBAR)
	d.cfgw(0x14, 4, 0)
	d.cfgw(0x04, 2, 0x6)
	// Registers at reset. CAP: MQES, CQR, AMS, TO, DSTRD, NSSRS, CSS bit
	// 0 (NVM), BPS, MPSMIN, MPSMAX.
	const capMask = 0x00ff_0021_ffff_ffff
	d.r(0x00, 4, capMask&0xffffffff, "CAP low")
	d.r(0x04, 4, capMask>>32, "CAP high")
	for _, off := range []uint64{0x08, 0x0c, 0x10, 0x14, 0x1c, 0x24, 0x28, 0x2c, 0x30, 0x34} {
		d.r(off, 4, 0xffffffff, fmt.Sprintf("register %#x at reset", off))
	}
	// Enable: admin queues of 16 entries.
	d.memWrite(nvACQ, make([]byte, 0x1000))
	d.memWrite(nvCQ1, make([]byte, 0x1000))
	d.w(0x24, 4, 15<<16|15)
	d.w(0x28, 4, nvASQ)
	d.w(0x2c, 4, 0)
	d.w(0x30, 4, nvACQ)
	d.w(0x34, 4, 0)
	d.w(0x14, 4, 4<<20|6<<16)
	d.r(0x14, 4, 0xffffffff, "CC before enable")
	d.w(0x14, 4, 4<<20|6<<16|1)
	d.r(0x14, 4, 0xffffffff, "CC enabled")
	d.r(0x1c, 4, 0xffffffff, "CSTS enabled")
	for _, off := range []uint64{0x24, 0x28, 0x30} {
		d.r(off, 4, 0xffffffff, fmt.Sprintf("register %#x enabled", off))
	}
	// Narrow and unaligned reads of the register file, the doorbells.
	for _, a := range [][2]int{{0x00, 1}, {0x01, 1}, {0x02, 2}, {0x08, 2}, {0x09, 1}, {0x14, 2}, {0x16, 1}, {0x1c, 1}, {0x1000, 4}, {0x1004, 4}} {
		mask := uint64(1)<<(8*a[1]) - 1
		if a[0] < 8 {
			mask &= capMask >> (8 * a[0])
		}
		d.r(uint64(a[0]), a[1], mask, fmt.Sprintf("read %#x/%d", a[0], a[1]))
	}
	// The MSI-X table and PBA behind the registers (QEMU's layout).
	for _, off := range []uint64{0x2000, 0x200c, 0x2000 + 64*16 + 12, 0x3000, 0x3008} {
		d.r(off, 4, 0xffffffff, fmt.Sprintf("MSI-X at %#x", off))
	}
	// INTMS/INTMC with MSI-X off.
	d.w(0x0c, 4, 5)
	d.r(0x0c, 4, 0xffffffff, "INTMS after setting 5")
	d.r(0x10, 4, 0xffffffff, "INTMC after setting 5")
	d.w(0x10, 4, 4)
	d.r(0x0c, 4, 0xffffffff, "INTMS after clearing 4")
	d.w(0x10, 4, 1)
	// Identify Controller.
	d.memWrite(nvID, make([]byte, 4096))
	d.cmd(0, nvCmd(0x06, 0, nvID, 0, 1), 0xffffffff, "identify controller")
	for _, f := range []struct {
		off, n int
		what   string
	}{
		{0, 2, "VID"}, {2, 2, "SSVID"}, {4, 20, "SN"}, {24, 40, "MN"}, {72, 1, "RAB"},
		{76, 1, "CMIC"}, {78, 2, "CNTLID"}, {80, 4, "VER"}, {111, 1, "CNTRLTYPE"},
		{258, 1, "ACL"}, {259, 1, "AERL"}, {262, 1, "ELPE"}, {263, 1, "NPSS"},
		{266, 2, "WCTEMP"}, {268, 2, "CCTEMP"},
		{512, 1, "SQES"}, {513, 1, "CQES"}, {516, 4, "NN"}, {525, 1, "VWC"},
		{768, 32, "SUBNQN"}, {2048, 2, "PSD0 MP"}, {2052, 8, "PSD0 ENLAT/EXLAT"},
	} {
		d.field(nvID, f.off, f.n, "Identify Controller "+f.what)
	}
	// Identify Namespace 1.
	d.memWrite(nvID, make([]byte, 4096))
	d.cmd(0, nvCmd(0x06, 1, nvID, 0, 0), 0xffffffff, "identify namespace")
	for _, f := range []struct {
		off, n int
		what   string
	}{
		{0, 8, "NSZE"}, {8, 8, "NCAP"}, {26, 1, "FLBAS"}, {128, 4, "LBAF0"},
	} {
		d.field(nvID, f.off, f.n, "Identify Namespace "+f.what)
	}
	// Active namespace list.
	d.memWrite(nvID, make([]byte, 4096))
	d.cmd(0, nvCmd(0x06, 0, nvID, 0, 2), 0xffffffff, "active namespace list")
	d.field(nvID, 0, 16, "active namespace list")
	// Errors both answer the same way.
	d.cmd(0, nvCmd(0x06, 0, nvID, 0, 0x77), 0xffffffff, "identify CNS 77h")
	d.cmd(0, nvCmd(0x06, 5, nvID, 0, 0), 0xffffffff, "identify inactive namespace 5")
	d.field(nvID, 0, 64, "inactive namespace data")
	d.cmd(0, nvCmd(0x06, 300, nvID, 0, 0), 0xffffffff, "identify namespace 300")
	d.cmd(0, nvCmd(0x7f, 0, 0, 0), 0xffffffff, "opcode 7fh")
	d.cmd(0, nvCmd(0x05, 0, nvCQ1, 0, 15<<16|0, 3), 0xffffffff, "create CQ 0")
	d.cmd(0, nvCmd(0x05, 0, nvCQ1, 0, 0<<16|1, 3), 0xffffffff, "create CQ of one entry")
	d.cmd(0, nvCmd(0x05, 0, nvCQ1+8, 0, 15<<16|1, 3), 0xffffffff, "create CQ off a page")
	d.cmd(0, nvCmd(0x05, 0, nvCQ1, 0, 15<<16|1, 2), 0xffffffff, "non-contiguous CQ")
	d.cmd(0, nvCmd(0x01, 0, nvSQ1, 0, 15<<16|1, 1<<16|1), 0xffffffff, "SQ on a missing CQ")
	d.cmd(0, nvCmd(0x00, 0, 0, 0, 1), 0xffffffff, "delete a missing SQ")
	d.cmd(0, nvCmd(0x0a, 0, 0, 0, 0x77), 0xffffffff, "get feature 77h")
	// Number of queues (QEMU's max_ioqpairs 64).
	d.cmd(0, nvCmd(0x09, 0, 0, 0, 0x07, 3<<16|3), 0xffffffff, "set number of queues")
	d.cmd(0, nvCmd(0x0a, 0, 0, 0, 0x07), 0xffffffff, "get number of queues")
	// I/O queue pair 1.
	d.cmd(0, nvCmd(0x05, 0, nvCQ1, 0, 15<<16|1, 3), 0xffffffff, "create CQ 1")
	d.cmd(0, nvCmd(0x01, 0, nvSQ1, 0, 15<<16|1, 1<<16|1), 0xffffffff, "create SQ 1")
	d.cmd(0, nvCmd(0x05, 0, nvCQ1, 0, 15<<16|1, 3), 0xffffffff, "create CQ 1 again")
	d.cmd(0, nvCmd(0x04, 0, 0, 0, 1), 0xffffffff, "delete CQ 1 in use")
	// Write 8 KiB at LBA 100 from two pages, read it back elsewhere.
	pat := make([]byte, 8192)
	for i := range pat {
		pat[i] = byte(i*13 + i>>8)
	}
	d.memWrite(nvData, pat)
	d.cmd(1, nvCmd(0x01, 1, nvData, nvData+0x1000, 100, 0, 15), 0xffffffff, "write")
	d.memWrite(nvData+0x10000, make([]byte, 8192))
	d.cmd(1, nvCmd(0x02, 1, nvData+0x10000, nvData+0x11000, 100, 0, 15), 0xffffffff, "read")
	d.ahciMem(nvData+0x10000, 8192, "read data")
	d.cmd(1, nvCmd(0x02, 1, nvData, 0, ideDiskSectors, 0, 0), 0xffffffff, "read past the end")
	d.cmd(1, nvCmd(0x02, 2, nvData, 0, 0, 0, 0), 0xffffffff, "read inactive namespace 2")
	d.cmd(1, nvCmd(0x02, 0, nvData, 0, 0, 0, 0), 0xffffffff, "read namespace 0")
	d.cmd(1, nvCmd(0x00, 1, 0, 0), 0xffffffff, "flush")
	d.cmd(1, nvCmd(0x08, 1, 0, 0, 200, 0, 7), 0xffffffff, "write zeroes")
	d.cmd(0, nvCmd(0x00, 0, 0, 0, 1), 0xffffffff, "delete SQ 1")
	d.cmd(0, nvCmd(0x04, 0, 0, 0, 1), 0xffffffff, "delete CQ 1")
	// Shutdown, then disable.
	d.w(0x14, 4, 4<<20|6<<16|1|1<<14)
	d.r(0x1c, 4, 0xffffffff, "CSTS after shutdown")
	d.w(0x14, 4, 0)
	d.r(0x1c, 4, 0xffffffff, "CSTS after disable")
	d.r(0x14, 4, 0xffffffff, "CC after disable")
	// Enabling with 128 KiB pages fails (CFS on both).
	d.w(0x14, 4, 4<<20|6<<16|5<<7|1)
	d.r(0x1c, 4, 0xffffffff, "CSTS after a bad enable")
	compareImages(t, qemuDisk, godmDisk)
}

// compareImages reports where two disk images first differ.
func compareImages(t *testing.T, qemuDisk, godmDisk string) {
	t.Helper()
	a, err := os.ReadFile(qemuDisk)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(godmDisk)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != len(b) {
		t.Fatalf("image sizes %d and %d", len(a), len(b))
	}
	for i := 0; i < len(a); i += 512 {
		if !bytes.Equal(a[i:i+512], b[i:i+512]) {
			t.Errorf("the images differ first at sector %d", i/512)
			return
		}
	}
}

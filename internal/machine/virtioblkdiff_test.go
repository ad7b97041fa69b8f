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

// The virtio-blk differential test drives QEMU 7.2's virtio-blk-pci
// ("-device virtio-blk-pci,addr=05" on the pc machine, a raw disk) and the
// godm machine's (a copy of the image, the board entry at the same slot)
// through the transitional device's legacy I/O BAR, which qtest's port
// steps carry: configuration space, the legacy registers and the device
// configuration at every width, feature negotiation, a split ring in
// guest memory, reads and writes with several segments and through an
// indirect table, flush, GET_ID, discard, write-zeroes, an unknown
// request type and one past the end, a reset. Register values, the used
// ring, the status bytes, the read data and the images must agree. The
// modern registers (memory-mapped) are TestQEMUDiffXen_VirtioBlkModern's.

const (
	vbSlot  = 5
	vbIO    = 0xc200
	vbRing  = 0x100000 // PFN 0x100: desc, avail at +0x1000, used at +0x2000
	vbAvail = vbRing + 0x1000
	vbUsed  = vbRing + 0x2000
	vbHdr   = 0x200000
	vbStat  = 0x200800
	vbData  = 0x210000
	vbInd   = 0x300000
)

func (d *ideDiff) vbCfgw(off uint8, size uint8, v uint64) {
	d.out(0xcf8, 4, 0x80000000|vbSlot<<11|uint64(off)&^3)
	d.out(0xcfc+uint16(off&3), size, v)
}

func (d *ideDiff) vbCfgr(off uint8, size uint8, why string) uint64 {
	d.out(0xcf8, 4, 0x80000000|vbSlot<<11|uint64(off)&^3)
	return d.in(0xcfc+uint16(off&3), size, why)
}

// vbMMIO is one side's memory-mapped access (qtest readX/writeX on
// QEMU, a xensim vCPU's MMIO on godm).
type vbMMIO func(write bool, addr uint64, size int, v uint64) (uint64, error)

func vbTargets(t *testing.T) (d *ideDiff, qemuDisk, godmDisk string) {
	d, qemuDisk, godmDisk, _ = vbTargetsMMIO(t)
	return d, qemuDisk, godmDisk
}

func vbTargetsMMIO(t *testing.T) (d *ideDiff, qemuDisk, godmDisk string, mm [2]vbMMIO) {
	t.Helper()
	skipWithoutQEMU(t)
	dir := t.TempDir()
	disk, _ := ideImages(t, dir)
	godmDisk = filepath.Join(dir, "g-disk.img")
	copyFile(t, disk, godmDisk)
	c, err := qtest.Start(qtest.Options{Args: []string{"-m", "128", "-serial", "null",
		"-device", fmt.Sprintf("virtio-blk-pci,drive=vd0,addr=%02x,serial=GODM-VB-1", vbSlot),
		"-drive", "file=" + disk + ",if=none,id=vd0,format=raw,cache=writeback"}})
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
	hd, err := board.OpenDrive(board.DriveOptions{ID: "vd0", File: godmDisk, Format: "raw", Cache: block.CacheWriteback, Media: "disk"})
	if err != nil {
		t.Fatal(err)
	}
	s := startSimMachineWith(t, Spec{Drives: map[string]*board.Drive{"vd0": hd},
		Storage: []board.Entry{{Driver: "virtio-blk-pci", Props: map[string]string{"drive": "vd0", "addr": fmt.Sprintf("%02x", vbSlot), "serial": "GODM-VB-1"}}}})
	g := &ideSide{name: "godm", run: s.target()}
	g.write = func(addr uint64, p []byte) error { return s.dom.WriteRAM(addr, p) }
	g.read = func(addr uint64, n int) ([]byte, error) {
		p := make([]byte, n)
		return p, s.dom.ReadRAM(addr, p)
	}
	sfx := map[int]string{1: "b", 2: "w", 4: "l", 8: "q"}
	mm[0] = func(write bool, addr uint64, size int, v uint64) (uint64, error) {
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
	mm[1] = func(write bool, addr uint64, size int, v uint64) (uint64, error) {
		if write {
			return 0, vcpu.MMIOWrite(addr, size, v)
		}
		return vcpu.MMIORead(addr, size)
	}
	return &ideDiff{t: t, sides: [2]*ideSide{q, g}}, disk, godmDisk, mm
}

// vbDesc is one descriptor as the test lays it out.
type vbDesc struct {
	addr        uint64
	n           uint32
	flags, next uint16
}

func vbTable(ds []vbDesc) []byte {
	b := make([]byte, 16*len(ds))
	for i, x := range ds {
		binary.LittleEndian.PutUint64(b[16*i:], x.addr)
		binary.LittleEndian.PutUint32(b[16*i+8:], x.n)
		binary.LittleEndian.PutUint16(b[16*i+12:], x.flags)
		binary.LittleEndian.PutUint16(b[16*i+14:], x.next)
	}
	return b
}

type vbRun struct {
	d     *ideDiff
	avail uint16
}

// submit writes the chain's descriptors at index first, makes head
// available, kicks and waits for the interrupt (ISR bit 0), then
// compares the used ring, the status byte and memory.
func (v *vbRun) submit(why string, first uint16, ds []vbDesc, head uint16) {
	d := v.d
	d.t.Helper()
	d.memWrite(vbRing+16*uint64(first), vbTable(ds))
	var e [2]byte
	binary.LittleEndian.PutUint16(e[:], head)
	d.memWrite(vbAvail+4+2*uint64(v.avail%256), e[:])
	v.avail++
	binary.LittleEndian.PutUint16(e[:], v.avail)
	d.memWrite(vbAvail+2, e[:])
	d.out(vbIO+16, 2, 0)
	d.wait(vbIO+19, 1, 1, why+": ISR")
	d.ahciMem(vbUsed, 4+8*int(v.avail), why+": used ring")
	d.ahciMem(vbStat, 16, why+": status bytes")
}

func hdrBytes(typ uint32, sector uint64) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint32(b, typ)
	binary.LittleEndian.PutUint64(b[8:], sector)
	return b
}

func TestQEMUDiffXen_VirtioBlk(t *testing.T) {
	d, qemuDisk, godmDisk := vbTargets(t)
	for off := uint8(0); off < 0xb0; off += 4 {
		d.vbCfgr(off, 4, fmt.Sprintf("config %#x", off))
	}
	// BAR sizes (all-ones written, read back), then BAR0 and I/O on.
	for _, off := range []uint8{0x10, 0x14, 0x18, 0x20, 0x24} {
		d.vbCfgw(off, 4, 0xffffffff)
		d.vbCfgr(off, 4, fmt.Sprintf("BAR size at %#x", off))
		d.vbCfgw(off, 4, 0)
	}
	d.vbCfgw(0x10, 4, vbIO)
	d.vbCfgw(0x04, 2, 0x1)
	// Every legacy register and the device configuration, at each width.
	for _, w := range []uint8{1, 2, 4} {
		for off := uint16(0); off < 0x80; off++ {
			d.in(vbIO+off, w, fmt.Sprintf("legacy %#x/%d", off, w))
		}
	}
	// A driver's start (Linux virtio_pci_legacy): reset, ACKNOWLEDGE,
	// DRIVER (QEMU turns bus mastering on), features, queue 0's PFN,
	// DRIVER_OK.
	d.out(vbIO+18, 1, 0)
	d.out(vbIO+18, 1, 1)
	d.out(vbIO+18, 1, 3)
	d.vbCfgr(0x04, 2, "command after ACKNOWLEDGE|DRIVER")
	feat := d.in(vbIO+0, 4, "host features")
	d.out(vbIO+4, 4, feat&^(1<<29)) // no event index
	d.in(vbIO+4, 4, "guest features")
	d.out(vbIO+14, 2, 0)
	d.in(vbIO+12, 2, "queue size")
	d.out(vbIO+14, 2, 1)
	d.in(vbIO+12, 2, "queue 1 size")
	d.in(vbIO+8, 4, "queue 1 PFN")
	d.out(vbIO+14, 2, 0)
	d.memWrite(vbRing, make([]byte, 0x3000))
	d.out(vbIO+8, 4, vbRing>>12)
	d.in(vbIO+8, 4, "queue PFN")
	d.out(vbIO+18, 1, 7)
	d.in(vbIO+18, 1, "status")
	d.in(vbIO+20, 4, "capacity after DRIVER_OK")
	v := &vbRun{d: d}

	// WRITE 24 sectors at 100 from three segments.
	pat := make([]byte, 24*512)
	for i := range pat {
		pat[i] = byte(i*13 + 5)
	}
	d.memWrite(vbData, pat)
	d.memWrite(vbHdr, hdrBytes(1, 100))
	d.memWrite(vbStat, bytes.Repeat([]byte{0xee}, 16))
	v.submit("write", 0, []vbDesc{{vbHdr, 16, 1, 1}, {vbData, 4096, 1, 2}, {vbData + 4096, 2048, 1, 3}, {vbData + 6144, 24*512 - 6144, 1, 4}, {vbStat, 1, 2, 0}}, 0)

	// READ 300 sectors at 90 into two segments.
	d.memWrite(vbData, make([]byte, 300*512))
	d.memWrite(vbHdr+0x100, hdrBytes(0, 90))
	v.submit("read", 5, []vbDesc{{vbHdr + 0x100, 16, 1, 6}, {vbData, 100 * 512, 3, 7}, {vbData + 100*512, 200 * 512, 3, 8}, {vbStat + 1, 1, 2, 0}}, 5)
	d.ahciMem(vbData, 300*512, "read data")

	// An indirect table: header, 8 sectors at 100, status.
	d.memWrite(vbData, make([]byte, 8*512))
	d.memWrite(vbInd, vbTable([]vbDesc{{vbHdr + 0x100, 16, 1, 1}, {vbData, 8 * 512, 3, 2}, {vbStat + 2, 1, 2, 0}}))
	d.memWrite(vbHdr+0x100, hdrBytes(0, 100))
	v.submit("indirect read", 9, []vbDesc{{vbInd, 48, 4, 0}}, 9)
	d.ahciMem(vbData, 8*512, "indirect read data")

	// FLUSH; GET_ID into 20 bytes; an unknown type (SCSI); a read past
	// the end; a partial sector.
	d.memWrite(vbHdr+0x200, hdrBytes(4, 0))
	v.submit("flush", 10, []vbDesc{{vbHdr + 0x200, 16, 1, 11}, {vbStat + 3, 1, 2, 0}}, 10)
	d.memWrite(vbData, bytes.Repeat([]byte{0xaa}, 32))
	d.memWrite(vbHdr+0x300, hdrBytes(8, 0))
	v.submit("get id", 12, []vbDesc{{vbHdr + 0x300, 16, 1, 13}, {vbData, 20, 3, 14}, {vbStat + 4, 1, 2, 0}}, 12)
	d.ahciMem(vbData, 32, "serial")
	d.memWrite(vbHdr+0x400, hdrBytes(2, 0))
	v.submit("scsi", 15, []vbDesc{{vbHdr + 0x400, 16, 1, 16}, {vbStat + 5, 1, 2, 0}}, 15)
	d.memWrite(vbHdr+0x500, hdrBytes(0, ideDiskSectors-2))
	v.submit("read past the end", 17, []vbDesc{{vbHdr + 0x500, 16, 1, 18}, {vbData, 4 * 512, 3, 19}, {vbStat + 6, 1, 2, 0}}, 17)
	d.memWrite(vbHdr+0x600, hdrBytes(1, 0))
	v.submit("partial sector", 20, []vbDesc{{vbHdr + 0x600, 16, 1, 21}, {vbData, 100, 1, 22}, {vbStat + 7, 1, 2, 0}}, 20)

	// SCSI with its headers (UNSUPP, errors = 255 in the SCSI inhdr),
	// and an unknown type.
	d.memWrite(vbData+0x300, bytes.Repeat([]byte{0xcc}, 64))
	v.submit("scsi with headers", 35, []vbDesc{{vbHdr + 0x400, 16, 1, 36}, {vbData + 0x300, 16, 1, 37}, {vbData + 0x320, 16, 3, 38}, {vbStat + 12, 1, 2, 0}}, 35)
	v.submit("scsi with headers and sense", 39, []vbDesc{{vbHdr + 0x400, 16, 1, 40}, {vbData + 0x300, 16, 1, 41}, {vbData + 0x310, 8, 3, 42}, {vbData + 0x320, 16, 3, 43}, {vbStat + 13, 1, 2, 0}}, 39)
	d.ahciMem(vbData+0x300, 64, "scsi inhdr")
	d.memWrite(vbHdr+0xa00, hdrBytes(0x20, 0))
	v.submit("unknown type", 44, []vbDesc{{vbHdr + 0xa00, 16, 1, 45}, {vbStat + 14, 1, 2, 0}}, 44)

	// Write zeroes (unmap) over 4 sectors at 104, discard 8 at 0, a
	// discard with flags, write zeroes without the OUT bit.
	dwz := func(sec uint64, n, flags uint32) []byte {
		b := make([]byte, 16)
		binary.LittleEndian.PutUint64(b, sec)
		binary.LittleEndian.PutUint32(b[8:], n)
		binary.LittleEndian.PutUint32(b[12:], flags)
		return b
	}
	d.memWrite(vbHdr+0x700, hdrBytes(13, 0))
	d.memWrite(vbData, dwz(104, 4, 1))
	v.submit("write zeroes", 23, []vbDesc{{vbHdr + 0x700, 16, 1, 24}, {vbData, 16, 1, 25}, {vbStat + 8, 1, 2, 0}}, 23)
	d.memWrite(vbHdr+0x800, hdrBytes(11, 0))
	d.memWrite(vbData+0x100, dwz(0, 8, 0))
	v.submit("discard", 26, []vbDesc{{vbHdr + 0x800, 16, 1, 27}, {vbData + 0x100, 16, 1, 28}, {vbStat + 9, 1, 2, 0}}, 26)
	d.memWrite(vbData+0x200, dwz(0, 8, 1))
	v.submit("discard with flags", 29, []vbDesc{{vbHdr + 0x800, 16, 1, 30}, {vbData + 0x200, 16, 1, 31}, {vbStat + 10, 1, 2, 0}}, 29)
	d.memWrite(vbHdr+0x900, hdrBytes(12, 0))
	v.submit("write zeroes without OUT", 32, []vbDesc{{vbHdr + 0x900, 16, 1, 33}, {vbData, 16, 1, 34}, {vbStat + 11, 1, 2, 0}}, 32)

	// Reset through the status register.
	d.out(vbIO+18, 1, 0)
	for _, off := range []uint16{4, 8, 12, 14, 18} {
		d.in(vbIO+off, 2, fmt.Sprintf("legacy %#x after reset", off))
	}
	d.in(vbIO+19, 1, "ISR after reset")

	// The images hold the same bytes.
	time.Sleep(100 * time.Millisecond)
	a, err := os.ReadFile(qemuDisk)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(godmDisk)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		for i := 0; i < len(a); i += 512 {
			if !bytes.Equal(a[i:i+512], b[i:i+512]) {
				t.Errorf("the images differ first at sector %d", i/512)
				break
			}
		}
	}
	if !bytes.Equal(b[100*512:104*512], pat[:4*512]) || !bytes.Equal(b[104*512:108*512], make([]byte, 4*512)) {
		t.Error("godm's image lacks the write or the zeroes")
	}
}

// vbModern drives both sides' BAR4.
type vbModern struct {
	d  *ideDiff
	mm [2]vbMMIO
}

const vbBAR4 = 0xfe000000

func (m *vbModern) w(off uint64, size int, v uint64) {
	m.d.t.Helper()
	for i, f := range m.mm {
		if _, err := f(true, vbBAR4+off, size, v); err != nil {
			m.d.t.Fatalf("%s: write %#x: %v", m.d.sides[i].name, off, err)
		}
	}
}

func (m *vbModern) r(off uint64, size int, why string) uint64 {
	m.d.t.Helper()
	var v [2]uint64
	for i, f := range m.mm {
		x, err := f(false, vbBAR4+off, size, 0)
		if err != nil {
			m.d.t.Fatalf("%s: read %#x: %v", m.d.sides[i].name, off, err)
		}
		v[i] = x
	}
	if v[0] != v[1] {
		m.d.fail("%s: BAR4 %#x/%d: QEMU %#x, godm %#x", why, off, size, v[0], v[1])
	}
	return v[0]
}

// waitISR polls the ISR on each side until bit 0 is set (the read
// clears it), then compares the final values.
func (m *vbModern) waitISR(why string) {
	m.d.t.Helper()
	var final [2]uint64
	for i, f := range m.mm {
		deadline := time.Now().Add(5 * time.Second)
		for {
			x, err := f(false, vbBAR4+0x1000, 1, 0)
			if err != nil {
				m.d.t.Fatal(err)
			}
			if x&1 != 0 {
				final[i] = x
				break
			}
			if time.Now().After(deadline) {
				m.d.t.Fatalf("%s: %s: ISR stays %#x", m.d.sides[i].name, why, x)
			}
			time.Sleep(time.Millisecond)
		}
	}
	if final[0] != final[1] {
		m.d.fail("%s: ISR QEMU %#x, godm %#x", why, final[0], final[1])
	}
}

// TestQEMUDiffXen_VirtioBlkModern drives the modern interface (BAR4 by
// MMIO: qtest's readX/writeX on QEMU, a xensim vCPU's MMIO on godm):
// every common-configuration register at widths 1, 2 and 4, the device
// features, negotiation with VERSION_1, the queue registers, the device
// configuration, a write and a read through the ring with the notify
// region, the ISR, queue_reset, a bad queue_enable value
// (DEVICE_NEEDS_RESET) and the reset.
func TestQEMUDiffXen_VirtioBlkModern(t *testing.T) {
	d, _, _, mm := vbTargetsMMIO(t)
	m := &vbModern{d: d, mm: mm}
	d.vbCfgw(0x20, 4, vbBAR4)
	d.vbCfgw(0x24, 4, 0)
	d.vbCfgw(0x10, 4, vbIO) // the legacy BAR too: it shows the negotiated bits
	d.vbCfgw(0x04, 2, 0x7)
	for _, w := range []int{1, 2, 4} {
		for off := uint64(0); off < 0x38; off += uint64(w) {
			m.r(off, w, "common")
		}
	}
	for sel := uint64(0); sel < 3; sel++ {
		m.w(0x00, 4, sel)
		m.r(0x04, 4, fmt.Sprintf("device features %d", sel))
	}
	m.w(0x14, 1, 1)
	m.w(0x14, 1, 3)
	m.w(0x08, 4, 0)
	// SEG_MAX|BLK_SIZE|FLUSH... indirect, and the legacy-only
	// NOTIFY_ON_EMPTY and ANY_LAYOUT the modern DF read hides: both keep
	// them (virtio_set_features masks with every offered bit).
	m.w(0x0c, 4, 0x19000244)
	m.w(0x08, 4, 1)
	m.w(0x0c, 4, 1)
	m.r(0x0c, 4, "driver features 1")
	d.in(vbIO+4, 4, "negotiated features through the legacy BAR")
	m.w(0x14, 1, 0xb)
	m.r(0x14, 1, "status FEATURES_OK")
	m.w(0x08, 4, 0)
	m.w(0x0c, 4, 0xffffffff) // refused after FEATURES_OK
	m.r(0x0c, 4, "driver features after FEATURES_OK")
	m.w(0x16, 2, 0)
	m.r(0x18, 2, "queue size")
	m.w(0x18, 2, 128)
	m.r(0x18, 2, "queue size set")
	m.w(0x1a, 2, 1)
	m.r(0x1a, 2, "queue vector (MSI-X off)")
	m.w(0x1a, 2, 7)
	m.r(0x1a, 2, "queue vector beyond the table")
	m.w(0x20, 4, vbRing)
	m.w(0x24, 4, 0)
	m.w(0x28, 4, vbAvail)
	m.w(0x30, 4, vbUsed)
	for off := uint64(0x16); off < 0x38; off += 2 {
		m.r(off, 2, "queue registers")
	}
	d.memWrite(vbRing, make([]byte, 0x3000))
	m.w(0x1c, 2, 1)
	m.r(0x1c, 2, "queue enable")
	m.w(0x14, 1, 0xf)
	for _, w := range []int{1, 2, 4} {
		for off := uint64(0); off < 64; off += uint64(w) {
			m.r(0x2000+off, w, "device config")
		}
	}
	// A write then a read of 16 sectors at 200, queue of 128 entries.
	pat := make([]byte, 16*512)
	for i := range pat {
		pat[i] = byte(i*31 + 7)
	}
	v := &vbRun{d: d}
	submit := func(why string, first uint16, ds []vbDesc, head uint16) {
		d.memWrite(vbRing+16*uint64(first), vbTable(ds))
		var e [2]byte
		binary.LittleEndian.PutUint16(e[:], head)
		d.memWrite(vbAvail+4+2*uint64(v.avail%128), e[:])
		v.avail++
		binary.LittleEndian.PutUint16(e[:], v.avail)
		d.memWrite(vbAvail+2, e[:])
		m.w(0x3000, 2, 0)
		m.waitISR(why)
		d.ahciMem(vbUsed, 4+8*int(v.avail), why+": used ring")
		d.ahciMem(vbStat, 16, why+": status bytes")
	}
	d.memWrite(vbData, pat)
	d.memWrite(vbHdr, hdrBytes(1, 200))
	d.memWrite(vbStat, bytes.Repeat([]byte{0xee}, 16))
	submit("modern write", 0, []vbDesc{{vbHdr, 16, 1, 1}, {vbData, 16 * 512, 1, 2}, {vbStat, 1, 2, 0}}, 0)
	d.memWrite(vbData, make([]byte, 16*512))
	d.memWrite(vbHdr+0x100, hdrBytes(0, 200))
	submit("modern read", 3, []vbDesc{{vbHdr + 0x100, 16, 1, 4}, {vbData, 16 * 512, 3, 5}, {vbStat + 1, 1, 2, 0}}, 3)
	d.ahciMem(vbData, 16*512, "modern read data")
	m.r(0x1000, 1, "ISR after it was read")
	// VIRTIO_F_RING_RESET: queue_reset, then the queue's registers.
	m.w(0x3a, 2, 1)
	for off := uint64(0x16); off < 0x3c; off += 2 {
		m.r(off, 2, "queue registers after queue_reset")
	}
	m.w(0x1c, 2, 1)
	// queue_enable = 0 is a device error in QEMU 7.2.
	m.w(0x1c, 2, 0)
	m.r(0x14, 1, "status after a bad queue_enable")
	m.w(0x14, 1, 0)
	for off := uint64(0); off < 0x38; off += 2 {
		m.r(off, 2, "after reset")
	}
}

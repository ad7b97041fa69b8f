package machine

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"godm/block"
	"godm/internal/board"
	"godm/internal/qtest"
)

// The AHCI differential test drives QEMU 7.2's ich9-ahci ("-device
// ahci,addr=05" on the pc machine, a raw disk on port 0) and the godm
// machine's (the same image, copied, on board entries at the same slot)
// with the same accesses. The HBA registers are reached through BAR4's
// index/data pair (port I/O, which qtest steps carry); command lists,
// FIS areas, PRDTs and buffers are written into guest memory on both
// sides. Register values, the received FISes, the command headers'
// PRDBC, the DMA'd buffers and the images afterwards must agree.
// Interrupt lines are not compared (QEMU's pc routes INTx through its
// PIIX3 PIRQ links, xenfv through Xen's): the HBA's and port's IS
// registers, which decide the line, are.

const (
	ahciSlot = 5
	ahciIDP  = 0xc100 // BAR4 on both machines
	ahciCLB  = 0x100000
	ahciFB   = 0x101000
	ahciTbl  = 0x102000
	ahciBuf  = 0x200000
	ahciBuf2 = 0x300000
)

func (d *ideDiff) ahciCfgw(off uint8, size uint8, v uint64) {
	d.out(0xcf8, 4, 0x80000000|ahciSlot<<11|uint64(off)&^3)
	d.out(0xcfc+uint16(off&3), size, v)
}

func (d *ideDiff) ahciCfgr(off uint8, size uint8, why string) uint64 {
	d.out(0xcf8, 4, 0x80000000|ahciSlot<<11|uint64(off)&^3)
	return d.in(0xcfc+uint16(off&3), size, why)
}

// reg reads an ABAR register through the index/data pair.
func (d *ideDiff) reg(off uint32, why string) uint64 {
	d.out(ahciIDP+0x10, 4, uint64(off))
	return d.in(ahciIDP+0x14, 4, why)
}

func (d *ideDiff) setReg(off uint32, v uint32) {
	d.out(ahciIDP+0x10, 4, uint64(off))
	d.out(ahciIDP+0x14, 4, uint64(v))
}

// waitReg polls an ABAR register on each side until value&mask == want,
// then compares the final values.
func (d *ideDiff) waitReg(off uint32, mask, want uint64, why string) {
	d.t.Helper()
	var final [2]uint64
	for i, sd := range d.sides {
		deadline := time.Now().Add(5 * time.Second)
		for n := 0; ; n++ {
			if _, err := sd.run.Run(qtest.Step{Write: true, Port: ahciIDP + 0x10, Size: 4, Value: uint64(off)}); err != nil {
				d.t.Fatal(err)
			}
			r, err := sd.run.Run(qtest.Step{Port: ahciIDP + 0x14, Size: 4})
			if err != nil {
				d.t.Fatalf("%s: wait %s: %v", sd.name, why, err)
			}
			if r.Value&mask == want {
				final[i] = r.Value
				break
			}
			if time.Now().After(deadline) {
				d.t.Fatalf("%s: %s: register %#x stays %#x", sd.name, why, off, r.Value)
			}
			if n > 10 {
				time.Sleep(time.Millisecond)
			}
		}
	}
	if final[0] != final[1] {
		d.fail("%s: final %#x: QEMU %#x, godm %#x", why, off, final[0], final[1])
	}
}

func ahciTargets(t *testing.T) (d *ideDiff, qemuDisk, godmDisk string) {
	return ahciTargetsKind(t, false)
}

// ahciTargetsKind starts both machines with a disk, or (cd) a CD-ROM
// drive holding the CD image, on port 0.
func ahciTargetsKind(t *testing.T, cd bool) (d *ideDiff, qemuDisk, godmDisk string) {
	t.Helper()
	skipWithoutQEMU(t)
	dir := t.TempDir()
	disk, iso := ideImages(t, dir)
	drvOpts := ",format=raw,cache=writeback"
	devArg, media, driver := "ide-hd,bus=ahci0.0,unit=0,drive=ahcidisk-0", "disk", "ide-hd"
	if cd {
		disk, drvOpts = iso, ",format=raw,readonly=on"
		devArg, media, driver = "ide-cd,bus=ahci0.0,unit=0,drive=ahcidisk-0", "cdrom", "ide-cd"
	}
	godmDisk = filepath.Join(dir, "g-disk.img")
	copyFile(t, disk, godmDisk)
	c, err := qtest.Start(qtest.Options{Args: []string{"-m", "128", "-serial", "null",
		"-device", fmt.Sprintf("ahci,id=ahci0,addr=%02x", ahciSlot),
		"-drive", "file=" + disk + ",if=none,id=ahcidisk-0" + drvOpts,
		"-device", devArg}})
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
	hd, err := board.OpenDrive(board.DriveOptions{ID: "ahcidisk-0", File: godmDisk, Format: "raw", Cache: block.CacheWriteback, Media: media, ReadOnly: cd})
	if err != nil {
		t.Fatal(err)
	}
	s := startSimMachineWith(t, Spec{Drives: map[string]*board.Drive{"ahcidisk-0": hd},
		Devices: nil,
		Storage: []board.Entry{
			{Driver: "ahci", Props: map[string]string{"id": "ahci0", "addr": fmt.Sprintf("%02x", ahciSlot)}},
			{Driver: driver, Props: map[string]string{"bus": "ahci0.0", "unit": "0", "drive": "ahcidisk-0"}},
		}})
	gt := s.target()
	gt.OnReset = s.m.Board.SystemReset
	g := &ideSide{name: "godm", run: gt}
	g.write = func(addr uint64, p []byte) error { return s.dom.WriteRAM(addr, p) }
	g.read = func(addr uint64, n int) ([]byte, error) {
		p := make([]byte, n)
		return p, s.dom.ReadRAM(addr, p)
	}
	return &ideDiff{t: t, sides: [2]*ideSide{q, g}}, disk, godmDisk
}

// ahciIssue writes slot s's header and table (the FIS and one PRD per
// segment) and sets CI.
func (d *ideDiff) ahciIssue(s int, fis []byte, write bool, segs [][2]uint64) {
	d.ahciIssueACMD(s, fis, nil, write, segs)
}

// ahciIssueACMD is ahciIssue with an ATAPI command (acmd non-nil: the
// header's A bit and the table's ACMD area).
func (d *ideDiff) ahciIssueACMD(s int, fis, acmd []byte, write bool, segs [][2]uint64) {
	tbl := uint64(ahciTbl + s*0x100)
	h := make([]byte, 32)
	opts := uint16(5)
	if write {
		opts |= 0x40
	}
	if acmd != nil {
		opts |= 0x20
	}
	binary.LittleEndian.PutUint16(h[0:], opts)
	binary.LittleEndian.PutUint16(h[2:], uint16(len(segs)))
	binary.LittleEndian.PutUint64(h[8:], tbl)
	d.memWrite(ahciCLB+uint64(s)*32, h)
	t := make([]byte, 0x80+16*len(segs))
	copy(t, fis)
	copy(t[0x40:0x50], acmd)
	for i, sg := range segs {
		binary.LittleEndian.PutUint64(t[0x80+16*i:], sg[0])
		binary.LittleEndian.PutUint32(t[0x80+16*i+12:], uint32(sg[1]-1))
	}
	d.memWrite(tbl, t)
	d.setReg(0x100+0x38, 1<<s)
}

// ahciMem compares guest memory and shows where the sides differ.
func (d *ideDiff) ahciMem(addr uint64, n int, why string) {
	d.t.Helper()
	var got [2][]byte
	for i, sd := range d.sides {
		p, err := sd.read(addr, n)
		if err != nil {
			d.t.Fatalf("%s: read memory: %v", sd.name, err)
		}
		got[i] = p
	}
	for i := range got[0] {
		if got[0][i] != got[1][i] {
			e := min(n, (i+32)&^15)
			s := i &^ 15
			d.fail("%s: guest memory at %#x differs from offset %#x: QEMU % x, godm % x", why, addr, i, got[0][s:e], got[1][s:e])
			return
		}
	}
}

func ahciH2D(cmd uint8, lba uint64, count uint16) []byte {
	return []byte{0x27, 0x80, cmd, 0, byte(lba), byte(lba >> 8), byte(lba >> 16), 0x40,
		byte(lba >> 24), byte(lba >> 32), byte(lba >> 40), 0, byte(count), byte(count >> 8), 0, 0, 0, 0, 0, 0}
}

// portRegs compares port 0's registers and the HBA's IS.
func (d *ideDiff) portRegs(why string) {
	for _, r := range []struct {
		off  uint32
		name string
	}{{0x08, "IS"}, {0x110, "PxIS"}, {0x118, "PxCMD"}, {0x120, "PxTFD"}, {0x124, "PxSIG"}, {0x128, "PxSSTS"},
		{0x130, "PxSERR"}, {0x134, "PxSACT"}, {0x138, "PxCI"}} {
		d.reg(r.off, why+" "+r.name)
	}
}

func TestQEMUDiffXen_AHCI(t *testing.T) {
	d, qemuDisk, godmDisk := ahciTargets(t)
	for off := uint8(0); off < 0xc0; off += 4 {
		d.ahciCfgr(off, 4, fmt.Sprintf("config %#x", off))
	}
	d.ahciCfgw(0x20, 4, ahciIDP)
	d.ahciCfgw(0x04, 2, 0x7)
	for _, off := range []uint32{0x00, 0x04, 0x08, 0x0c, 0x10, 0x14, 0x18, 0x1c, 0x20, 0x24, 0x28, 0x2c, 0x30} {
		d.reg(off, fmt.Sprintf("host register %#x", off))
	}
	for p := range 6 {
		for off := uint32(0); off < 0x80; off += 4 {
			d.reg(0x100+uint32(p)*0x80+off, fmt.Sprintf("port %d register %#x", p, off))
		}
	}
	// A driver's start: the areas, FRE (the initial D2H FIS), ST.
	d.memWrite(ahciFB, make([]byte, 256))
	d.setReg(0x100, ahciCLB)
	d.setReg(0x108, ahciFB)
	d.setReg(0x118, 0x16)
	d.portRegs("after FRE")
	d.ahciMem(ahciFB, 256, "received FIS after FRE")
	d.setReg(0x118, 0x17)
	d.portRegs("after ST")
	d.setReg(0x110, 0xffffffff)
	d.setReg(0x114, 0xffffffff)
	d.reg(0x114, "PxIE")
	d.setReg(0x04, 2)
	d.portRegs("interrupts enabled")

	// IDENTIFY DEVICE.
	d.ahciIssue(0, ahciH2D(0xec, 0, 0), false, [][2]uint64{{ahciBuf, 512}})
	d.waitReg(0x138, 1, 0, "IDENTIFY")
	d.portRegs("IDENTIFY")
	d.ahciMem(ahciBuf, 512, "IDENTIFY data")
	d.ahciMem(ahciFB, 256, "FISes after IDENTIFY")
	d.ahciMem(ahciCLB, 32, "header after IDENTIFY")
	d.setReg(0x110, 0xffffffff)

	// WRITE DMA EXT of 24 sectors from three segments, READ DMA EXT back.
	pat := make([]byte, 24*512)
	for i := range pat {
		pat[i] = byte(i*13 + 5)
	}
	d.memWrite(ahciBuf, pat)
	d.ahciIssue(1, ahciH2D(0x35, 100, 24), true, [][2]uint64{{ahciBuf, 4096}, {ahciBuf + 4096, 2048}, {ahciBuf + 6144, 24*512 - 6144}})
	d.waitReg(0x138, 2, 0, "WRITE DMA EXT")
	d.portRegs("WRITE DMA EXT")
	d.ahciMem(ahciFB, 256, "FISes after WRITE DMA EXT")
	d.ahciMem(ahciCLB+32, 32, "header after WRITE DMA EXT")
	d.setReg(0x110, 0xffffffff)
	d.memWrite(ahciBuf2, make([]byte, 300*512))
	d.ahciIssue(2, ahciH2D(0x25, 90, 300), false, [][2]uint64{{ahciBuf2, 300 * 512}})
	d.waitReg(0x138, 4, 0, "READ DMA EXT")
	d.portRegs("READ DMA EXT")
	d.ahciMem(ahciBuf2, 300*512, "READ DMA EXT data")
	d.ahciMem(ahciFB, 256, "FISes after READ DMA EXT")
	d.ahciMem(ahciCLB+64, 32, "header after READ DMA EXT")
	d.setReg(0x110, 0xffffffff)

	// (A DMA command past the disk's end is not compared: QEMU 7.2's
	// ide_dma_error never calls the HBA's cmd_done, so the slot stays in
	// PxCI and is run again at every later CI write; godm ends it with
	// ABRT and a D2H FIS, see devices/ahci TestBadCommands.)

	// NCQ: READ FPDMA QUEUED, tag 4 in slot 4.
	d.setReg(0x134, 1<<4)
	d.ahciIssue(4, []byte{0x27, 0x80, 0x60, 8, 0x20, 0, 0, 0x40, 0, 0, 0, 0, 4 << 3, 0, 0, 0, 0, 0, 0, 0}, false, [][2]uint64{{ahciBuf, 8 * 512}})
	d.waitReg(0x134, 1<<4, 0, "READ FPDMA QUEUED")
	d.portRegs("READ FPDMA QUEUED")
	d.ahciMem(ahciBuf, 8*512, "NCQ data")
	d.ahciMem(ahciFB, 256, "FISes after NCQ")
	d.setReg(0x110, 0xffffffff)

	// FLUSH CACHE EXT, then an unknown command.
	d.ahciIssue(5, ahciH2D(0xea, 0, 0), false, nil)
	d.waitReg(0x138, 1<<5, 0, "FLUSH CACHE EXT")
	d.portRegs("FLUSH CACHE EXT")
	d.setReg(0x110, 0xffffffff)
	// SET FEATURES: write cache enable. (Aborted commands are not
	// compared: the QEMU 7.2 under test ends an ABRT, of an unknown
	// command or feature, without the HBA's cmd_done, so the slot stays
	// in PxCI for good and no D2H FIS comes; godm completes it with ABRT,
	// TFES and a D2H FIS, see devices/ahci TestBadCommands.)
	setf := ahciH2D(0xef, 0, 0)
	setf[3] = 0x02
	d.ahciIssue(6, setf, false, nil)
	d.waitReg(0x138, 1<<6, 0, "SET FEATURES write cache")
	d.portRegs("SET FEATURES write cache")
	d.ahciMem(ahciFB, 256, "FISes after SET FEATURES")
	d.setReg(0x110, 0xffffffff)
	d.ahciIssue(8, ahciH2D(0xec, 0, 0), false, [][2]uint64{{ahciBuf, 512}})
	d.waitReg(0x138, 1<<8, 0, "IDENTIFY after SET FEATURES")
	d.ahciMem(ahciBuf, 512, "IDENTIFY data after SET FEATURES")

	// HBA reset.
	d.setReg(0x04, 1)
	d.portRegs("after HBA reset")
	d.reg(0x04, "GHC after reset")

	// System reset (QEMU's system_reset; godm's board reset) of a
	// started port with interrupts on and MSI enabled: afterwards config
	// space, every host register and every port register must read as
	// QEMU's (hw/ide/ich.c pci_ich9_reset: ahci_reset; the PCI core's
	// reset of the header and MSI).
	d.memWrite(ahciFB, make([]byte, 256))
	d.setReg(0x100, ahciCLB)
	d.setReg(0x108, ahciFB)
	d.setReg(0x118, 0x17)
	d.setReg(0x114, 0xffffffff)
	d.setReg(0x04, 0x80000002)
	d.ahciCfgw(0x82, 2, 1) // MSI enable
	d.ahciCfgw(0x3c, 1, 0x0b)
	d.portRegs("before system_reset")
	d.step(qtest.Step{Reset: true, Why: "system_reset"})
	for off := uint8(0); off < 0xc0; off += 4 {
		d.ahciCfgr(off, 4, fmt.Sprintf("config %#x after system_reset", off))
	}
	d.ahciCfgw(0x20, 4, ahciIDP)
	d.ahciCfgw(0x04, 2, 0x7)
	for _, off := range []uint32{0x00, 0x04, 0x08, 0x0c, 0x10, 0x14, 0x18, 0x1c, 0x20, 0x24, 0x28, 0x2c, 0x30} {
		d.reg(off, fmt.Sprintf("host register %#x after system_reset", off))
	}
	for p := range 6 {
		for off := uint32(0); off < 0x80; off += 4 {
			d.reg(0x100+uint32(p)*0x80+off, fmt.Sprintf("port %d register %#x after system_reset", p, off))
		}
	}
	d.sync("system_reset")

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
		t.Error("the images differ after the writes")
	}
	if !bytes.Equal(b[100*512:124*512], pat) {
		t.Error("godm's image lacks the written sectors")
	}
}

// TestQEMUDiffXen_AHCIATAPI runs ATAPI over AHCI against QEMU 7.2's
// ide-cd on an ich9-ahci port: the signature, IDENTIFY DEVICE (aborted
// with the signature: not compared, as every ATA abort, see below) and
// IDENTIFY PACKET DEVICE, PACKET commands by PIO
// (byte count limits that split the data into several blocks) and DMA
// through the PRDT, READs of several frames, errors with their sense,
// and a guest eject and load. Registers, the received FISes, PRDBC and
// the PRDT's buffers must agree. Not compared (see devices/ahci): every
// command that ends with ERR (ATA aborts such as IDENTIFY DEVICE on a
// CD-ROM or a PIO byte count limit of 0, and CHECK CONDITION: a READ past
// the end, an unknown opcode, NOT READY), which QEMU 7.2 leaves in PxCI
// to run again at the next CI write while godm completes it; a command
// refused under a unit attention, DEVICE RESET and EXECUTE DEVICE
// DIAGNOSTIC, for which QEMU 7.2 writes no D2H FIS.
func TestQEMUDiffXen_AHCIATAPI(t *testing.T) {
	d, _, _ := ahciTargetsKind(t, true)
	d.ahciCfgw(0x20, 4, ahciIDP)
	d.ahciCfgw(0x04, 2, 0x7)
	d.memWrite(ahciFB, make([]byte, 256))
	d.setReg(0x100, ahciCLB)
	d.setReg(0x108, ahciFB)
	d.setReg(0x118, 0x16)
	d.portRegs("CD-ROM after FRE")
	d.ahciMem(ahciFB, 256, "received FIS after FRE")
	d.setReg(0x118, 0x17)
	d.setReg(0x110, 0xffffffff)
	d.setReg(0x114, 0xffffffff)
	d.setReg(0x04, 2)
	d.portRegs("CD-ROM started")

	slot := 0
	run := func(fis, acmd []byte, segs [][2]uint64, why string) {
		t.Helper()
		for _, sg := range segs {
			d.memWrite(sg[0], make([]byte, sg[1]))
		}
		d.memWrite(ahciFB, make([]byte, 256))
		d.ahciIssueACMD(slot, fis, acmd, false, segs)
		d.waitReg(0x138, 1<<slot, 0, why)
		d.portRegs(why)
		d.ahciMem(ahciFB, 256, why+": received FISes")
		d.ahciMem(ahciCLB+uint64(slot)*32, 32, why+": header")
		for _, sg := range segs {
			d.ahciMem(sg[0], int(sg[1]), why+": data")
		}
		d.setReg(0x110, 0xffffffff)
		slot = (slot + 1) % 32
	}
	// packet issues PACKET: by DMA, or by PIO with byte count limit bcl.
	packet := func(cdb []byte, dma bool, bcl uint16, n uint64, why string) {
		t.Helper()
		f := ahciH2D(0xa0, 0, 0)
		f[5], f[6], f[7] = byte(bcl), byte(bcl>>8), 0xa0
		if dma {
			f[3] = 1
		}
		c := make([]byte, 16)
		copy(c, cdb)
		var segs [][2]uint64
		if n > 0 {
			segs = [][2]uint64{{ahciBuf, n}}
		}
		run(f, c, segs, why)
	}

	run(ahciH2D(0xa1, 0, 0), nil, [][2]uint64{{ahciBuf, 512}}, "IDENTIFY PACKET DEVICE")
	packet([]byte{0x00}, false, 0, 0, "TEST UNIT READY")
	packet([]byte{0x12, 0, 0, 0, 36}, false, 16, 64, "INQUIRY PIO in 16-byte blocks")
	packet([]byte{0x12, 0, 0, 0, 36}, false, 15, 64, "INQUIRY PIO, odd limit")
	packet([]byte{0x12, 0, 0, 0, 36}, true, 0, 64, "INQUIRY DMA")
	packet([]byte{0x25}, true, 0, 8, "READ CAPACITY")
	packet([]byte{0x28, 0, 0, 0, 0, 3, 0, 0, 5}, true, 0, 5*2048, "READ(10) DMA")
	packet([]byte{0x28, 0, 0, 0, 0, 60, 0, 0, 2}, false, 0xfffe, 2*2048, "READ(10) PIO")
	packet([]byte{0x28, 0, 0, 0, 0, 7, 0, 0, 3}, false, 3000, 3*2048, "READ(10) PIO, limit across frames")
	packet([]byte{0xa8, 0, 0, 0, 0, 10, 0, 0, 0, 2}, true, 0, 2*2048, "READ(12) DMA")
	packet([]byte{0xbe, 0, 0, 0, 0, 2, 0, 0, 2, 0xf8}, true, 0, 2*2352, "READ CD raw DMA")
	packet([]byte{0x03, 0, 0, 0, 18}, true, 0, 18, "REQUEST SENSE")
	packet([]byte{0x43, 0, 0, 0, 0, 0, 0, 0, 100}, true, 0, 100, "READ TOC")
	packet([]byte{0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8}, true, 0, 8, "GESN")
	packet([]byte{0x46, 0, 0, 0, 0, 0, 0, 0, 32}, true, 0, 32, "GET CONFIGURATION")
	packet([]byte{0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 30}, false, 30, 30, "MODE SENSE capabilities")
	packet([]byte{0x1e, 0, 0, 0, 1}, false, 0, 0, "PREVENT REMOVAL")
	packet([]byte{0x1e, 0, 0, 0, 0}, false, 0, 0, "ALLOW REMOVAL")
	packet([]byte{0x1b, 0, 0, 0, 2}, false, 0, 0, "eject")
	packet([]byte{0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8}, true, 0, 8, "GESN tray open")
	packet([]byte{0x1b, 0, 0, 0, 3}, false, 0, 0, "load")
	packet([]byte{0x28, 0, 0, 0, 0, 1, 0, 0, 1}, true, 0, 2048, "READ(10) after the load")
	// A port reset (SCTL.DET 1 then 0) brings the signature back.
	d.setReg(0x12c, 1)
	d.setReg(0x12c, 0)
	d.portRegs("after COMRESET")
	d.sync("ATAPI over AHCI")
}

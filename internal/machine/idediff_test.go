package machine

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"godm/block"
	"godm/devices/chardev"
	"godm/hyp/xensim"
	"godm/internal/board"
	"godm/internal/qtest"
	"godm/internal/qtest/simtarget"
	"godm/internal/testfake"
)

// The IDE differential test drives QEMU 7.2's PIIX3 IDE (the "pc"
// machine's 00:01.1, a raw disk at if=ide index 0 and a CD-ROM image at
// index 2) and the godm machine's (the same images, copied, through
// -drive-style back ends) with the same accesses: registers, PIO data,
// DMA through PRD tables in guest memory, ATAPI packets. Read values,
// the bytes DMA put in guest memory and the interrupt edges (IRQ 14/15,
// compared at each command's end) must agree, and so must the disk
// images afterwards.
//
// QEMU completes disk I/O in its main loop (PIO reads and writes show
// BSY until then, DMA runs in the background), godm completes PIO at
// once and DMA on its queue: each command therefore ends with a wait that
// polls a register that does not acknowledge the interrupt (alternate
// status or bus-master status) until the command is over, on each side
// on its own, and compares only the final value.

const (
	ideDiskSectors = 2048     // 1 MiB disk
	ideCDFrames    = 64       // 128 KiB CD image
	ideBM          = 0xc000   // BAR4 on both machines
	idePRD         = 0x100000 // PRD table
	ideBuf         = 0x200000 // DMA buffers
	ideBuf2        = 0x300000
)

// ideSide is one machine: its steps, and guest memory.
type ideSide struct {
	name  string
	run   qtest.Target
	write func(addr uint64, p []byte) error
	read  func(addr uint64, n int) ([]byte, error)
	edges []qtest.IRQEvent
}

type ideDiff struct {
	t     *testing.T
	sides [2]*ideSide
	bad   int
}

func (d *ideDiff) step(s qtest.Step) [2]uint64 {
	d.t.Helper()
	var v [2]uint64
	for i, sd := range d.sides {
		r, err := sd.run.Run(s)
		if err != nil {
			d.t.Fatalf("%s: %s: %v", sd.name, s, err)
		}
		v[i] = r.Value
		sd.edges = append(sd.edges, r.IRQs...)
	}
	return v
}

func (d *ideDiff) out(port uint16, size uint8, v uint64) {
	d.t.Helper()
	d.step(qtest.Step{Write: true, Port: port, Size: size, Value: v})
}

func (d *ideDiff) in(port uint16, size uint8, why string) uint64 {
	d.t.Helper()
	v := d.step(qtest.Step{Port: port, Size: size})
	if v[0] != v[1] {
		d.fail("%s: in %#x: QEMU %#x, godm %#x", why, port, v[0], v[1])
	}
	return v[0]
}

func (d *ideDiff) fail(f string, args ...any) {
	d.t.Helper()
	d.bad++
	d.t.Errorf(f, args...)
	if d.bad > 20 {
		d.t.FailNow()
	}
}

// wait polls port on each side until value&mask == want (at most 2000
// polls, 2 s), then compares the final values.
func (d *ideDiff) wait(port uint16, mask, want uint64, why string) {
	d.t.Helper()
	var final [2]uint64
	for i, sd := range d.sides {
		deadline := time.Now().Add(5 * time.Second)
		for n := 0; ; n++ {
			r, err := sd.run.Run(qtest.Step{Port: port, Size: 1})
			if err != nil {
				d.t.Fatalf("%s: wait %s: %v", sd.name, why, err)
			}
			sd.edges = append(sd.edges, r.IRQs...)
			if r.Value&mask == want {
				final[i] = r.Value
				break
			}
			if time.Now().After(deadline) {
				d.t.Fatalf("%s: %s: port %#x stays %#x", sd.name, why, port, r.Value)
			}
			if n > 10 {
				time.Sleep(time.Millisecond)
			}
		}
	}
	if final[0] != final[1] {
		d.fail("%s: final %#x: QEMU %#x, godm %#x", why, port, final[0], final[1])
	}
}

// sync compares the interrupt edges since the last sync.
func (d *ideDiff) sync(why string) {
	d.t.Helper()
	a, b := d.sides[0].edges, d.sides[1].edges
	if fmt.Sprint(a) != fmt.Sprint(b) {
		d.fail("%s: interrupts QEMU %v, godm %v", why, a, b)
	}
	d.sides[0].edges, d.sides[1].edges = nil, nil
}

func (d *ideDiff) memWrite(addr uint64, p []byte) {
	d.t.Helper()
	for _, sd := range d.sides {
		if err := sd.write(addr, p); err != nil {
			d.t.Fatalf("%s: write memory: %v", sd.name, err)
		}
	}
}

func (d *ideDiff) memCompare(addr uint64, n int, why string) []byte {
	d.t.Helper()
	var got [2][]byte
	for i, sd := range d.sides {
		p, err := sd.read(addr, n)
		if err != nil {
			d.t.Fatalf("%s: read memory: %v", sd.name, err)
		}
		got[i] = p
	}
	if !bytes.Equal(got[0], got[1]) {
		d.fail("%s: guest memory at %#x differs", why, addr)
	}
	return got[1]
}

// words reads n data words from port and compares them.
func (d *ideDiff) words(port uint16, n int, why string) []byte {
	d.t.Helper()
	out := make([]byte, 0, 2*n)
	for i := range n {
		v := d.in(port, 2, fmt.Sprintf("%s word %d", why, i))
		out = binary.LittleEndian.AppendUint16(out, uint16(v))
	}
	return out
}

// cfgw writes PCI configuration of 00:01.1.
func (d *ideDiff) cfgw(off uint8, size uint8, v uint64) {
	d.out(0xcf8, 4, 0x80000000|1<<11|1<<8|uint64(off)&^3)
	d.out(0xcfc+uint16(off&3), size, v)
}

func (d *ideDiff) cfgr(off uint8, size uint8, why string) uint64 {
	d.out(0xcf8, 4, 0x80000000|1<<11|1<<8|uint64(off)&^3)
	return d.in(0xcfc+uint16(off&3), size, why)
}

// ideImages writes a patterned disk and CD image and returns their paths.
func ideImages(t *testing.T, dir string) (disk, cd string) {
	t.Helper()
	rng := rand.New(rand.NewPCG(14, 0x1de))
	mk := func(name string, n int) string {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		// An MBR signature with one partition (16 heads, 63 sectors),
		// so both sides guess the geometry from it.
		if name == "disk.img" {
			copy(p[0x1be:], []byte{0x80, 1, 1, 0, 0x83, 15, 63, 1, 63, 0, 0, 0, 0, 4, 0, 0})
			p[510], p[511] = 0x55, 0xaa
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, p, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	return mk("disk.img", ideDiskSectors*512), mk("cd.iso", ideCDFrames*2048)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// ideTargets starts QEMU and the godm machine on copies of the images.
func ideTargets(t *testing.T) (d *ideDiff, qemuDisk, godmDisk string) {
	t.Helper()
	skipWithoutQEMU(t)
	dir := t.TempDir()
	disk, cd := ideImages(t, dir)
	godmDisk, godmCD := filepath.Join(dir, "g-disk.img"), filepath.Join(dir, "g-cd.iso")
	copyFile(t, disk, godmDisk)
	copyFile(t, cd, godmCD)

	c, err := qtest.Start(qtest.Options{Args: []string{"-m", "128", "-serial", "null",
		"-drive", "file=" + disk + ",if=ide,index=0,media=disk,format=raw,cache=writeback",
		"-drive", "file=" + cd + ",if=ide,index=2,readonly=on,media=cdrom,format=raw"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.InterceptIRQ("ioapic"); err != nil {
		t.Fatal(err)
	}
	q := &ideSide{name: "QEMU", run: &qtest.QEMUTarget{C: c, Watch: []int{14, 15}}}
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

	hd, err := board.OpenDrive(board.DriveOptions{ID: "hd0", File: godmDisk, Format: "raw", Cache: block.CacheWriteback, Media: "disk"})
	if err != nil {
		t.Fatal(err)
	}
	cdd, err := board.OpenDrive(board.DriveOptions{ID: "cd0", File: godmCD, Format: "raw", ReadOnly: true, Media: "cdrom"})
	if err != nil {
		t.Fatal(err)
	}
	e0, _ := board.IDEIndexEntry(0, "disk", "hd0")
	e2, _ := board.IDEIndexEntry(2, "cdrom", "cd0")
	s := startSimMachineWith(t, Spec{Drives: map[string]*board.Drive{"hd0": hd, "cd0": cdd}, Storage: []board.Entry{e0, e2}})
	gt := s.target(14, 15)
	gt.OnReset = s.m.Board.SystemReset
	g := &ideSide{name: "godm", run: gt}
	g.write = func(addr uint64, p []byte) error { return s.dom.WriteRAM(addr, p) }
	g.read = func(addr uint64, n int) ([]byte, error) {
		p := make([]byte, n)
		return p, s.dom.ReadRAM(addr, p)
	}
	return &ideDiff{t: t, sides: [2]*ideSide{q, g}}, disk, godmDisk
}

// startSimMachineWith builds the xenfv machine of spec (COM1 on a null
// back end) for a new xensim domain and serves it until the test ends.
func startSimMachineWith(t *testing.T, spec Spec) *simMachine {
	t.Helper()
	xen := testfake.NewXen(t, xensim.Config{}, testfake.RAM(2, diffMemBytes))
	be := chardev.NewNull()
	spec.Dom, spec.VCPUs, spec.MemBytes, spec.DeathPoll = xen.Dom.ID(), 2, diffMemBytes, -1
	spec.Serial = []chardev.Backend{be}
	m, err := New(xen.Sim.Kernel(0), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); be.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &simMachine{sim: xen.Sim, dom: xen.Dom, m: m}
}

var _ = simtarget.New

// taskfile programs channel base's registers for an LBA28 command.
func (d *ideDiff) taskfile(base uint16, dev uint8, lba uint32, n uint8) {
	d.out(base+6, 1, uint64(0xe0|dev|uint8(lba>>24)&0xf))
	d.out(base+2, 1, uint64(n))
	d.out(base+3, 1, uint64(lba&0xff))
	d.out(base+4, 1, uint64(lba>>8&0xff))
	d.out(base+5, 1, uint64(lba>>16&0xff))
}

// ataCmd issues cmd and waits for BSY to clear.
func (d *ideDiff) ataCmd(base uint16, cmd uint8, why string) {
	d.out(base+7, 1, uint64(cmd))
	d.wait(base+0x206, 0x80, 0, why)
}

func TestQEMUDiffXen_IDE(t *testing.T) {
	d, qemuDisk, godmDisk := ideTargets(t)
	const b0, b1 = 0x1f0, 0x170

	// The function's identity and BAR4, then its place in I/O space.
	for off := uint8(0); off < 0x40; off += 4 {
		d.cfgr(off, 4, fmt.Sprintf("config %#x", off))
	}
	d.cfgw(0x20, 4, ideBM)
	d.cfgw(0x04, 2, 0x5)
	d.cfgr(0x20, 4, "BAR4 placed")
	d.cfgw(0x40, 2, 0x8000) // hvmloader's IDE decode enable
	d.cfgr(0x40, 4, "IDETIM")
	d.sync("config")

	// Power-on registers of both channels, both drives.
	for _, base := range []uint16{b0, b1} {
		for _, dev := range []uint64{0xa0, 0xb0} {
			d.out(base+6, 1, dev)
			for r := uint16(1); r <= 7; r++ {
				d.in(base+r, 1, fmt.Sprintf("reset %#x dev %#x reg %d", base, dev, r))
			}
			d.in(base+0x206, 1, "alt status")
			d.in(base, 2, "data without DRQ")
		}
	}
	d.sync("reset registers")

	// IDENTIFY DEVICE.
	d.out(b0+6, 1, 0xa0)
	d.ataCmd(b0, 0xec, "IDENTIFY")
	d.in(b0+7, 1, "IDENTIFY status")
	d.words(b0, 256, "IDENTIFY")
	d.in(b0+7, 1, "after IDENTIFY")
	d.sync("IDENTIFY")

	// Absent slave, unknown command, command to the absent slave.
	d.out(b0+6, 1, 0xb0)
	d.in(b0+7, 1, "absent slave status")
	d.out(b0+7, 1, 0xec)
	d.in(b0+1, 1, "absent slave error")
	d.out(b0+6, 1, 0xa0)
	d.ataCmd(b0, 0x00, "NOP")
	d.in(b0+7, 1, "NOP status")
	d.in(b0+1, 1, "NOP error")
	d.sync("errors")

	// READ SECTORS, 2 at LBA 3.
	d.taskfile(b0, 0, 3, 2)
	d.ataCmd(b0, 0x20, "READ SECTORS")
	for i := range 2 {
		d.in(b0+7, 1, "READ block status")
		d.words(b0, 256, fmt.Sprintf("READ sector %d", i))
		d.wait(b0+0x206, 0x80, 0, "READ next")
	}
	for r := uint16(1); r <= 7; r++ {
		d.in(b0+r, 1, fmt.Sprintf("after READ reg %d", r))
	}
	d.sync("READ SECTORS")

	// WRITE SECTORS, 2 at LBA 5, dword accesses.
	d.taskfile(b0, 0, 5, 2)
	d.ataCmd(b0, 0x30, "WRITE SECTORS")
	for s := range 2 {
		d.in(b0+0x206, 1, "WRITE DRQ")
		for i := range 128 {
			d.out(b0, 4, uint64(0x01020304*uint32(s+1)+uint32(i)))
		}
		d.wait(b0+0x206, 0x80, 0, "WRITE block done")
	}
	d.in(b0+7, 1, "after WRITE")
	d.sync("WRITE SECTORS")

	// SET MULTIPLE 4, READ MULTIPLE 6 sectors at LBA 4 (the write's).
	d.out(b0+2, 1, 4)
	d.ataCmd(b0, 0xc6, "SET MULTIPLE")
	d.in(b0+7, 1, "SET MULTIPLE status")
	d.taskfile(b0, 0, 4, 6)
	d.ataCmd(b0, 0xc4, "READ MULTIPLE")
	for blk := range 2 {
		d.in(b0+7, 1, "READ MULTIPLE block")
		d.in(b0+2, 1, "READ MULTIPLE count")
		n := 4
		if blk == 1 {
			n = 2
		}
		d.words(b0, 256*n, fmt.Sprintf("READ MULTIPLE block %d", blk))
		d.wait(b0+0x206, 0x80, 0, "READ MULTIPLE next")
	}
	d.in(b0+7, 1, "READ MULTIPLE end")
	d.sync("READ MULTIPLE")
	d.out(b0+2, 1, 3)
	d.ataCmd(b0, 0xc6, "SET MULTIPLE 3 (not a power of two)")
	d.in(b0+1, 1, "SET MULTIPLE 3 error")
	d.in(b0+7, 1, "SET MULTIPLE 3 status")
	d.sync("SET MULTIPLE 3")

	// LBA48: READ SECTORS EXT, 1 sector at 0x000000000801 (beyond the
	// end: ABRT), then at 9.
	for _, lba := range []uint64{0x801, 9} {
		d.out(b0+6, 1, 0x40)
		for _, r := range []uint16{2, 3, 4, 5} {
			hi := uint64(0)
			lo := []uint64{1, lba & 0xff, lba >> 8 & 0xff, 0}[r-2]
			d.out(b0+r, 1, hi)
			d.out(b0+r, 1, lo)
		}
		d.ataCmd(b0, 0x24, "READ EXT")
		d.in(b0+7, 1, "READ EXT status")
		d.in(b0+1, 1, "READ EXT error")
		if lba == 9 {
			d.words(b0, 256, "READ EXT data")
			d.out(0x3f6, 1, 0x80) // HOB
			for r := uint16(2); r <= 5; r++ {
				d.in(b0+r, 1, "HOB register")
			}
			d.out(0x3f6, 1, 0)
		}
		d.sync("READ EXT")
	}

	// Bus-master DMA: READ DMA, 16 sectors at 100 into two buffers.
	prd := func(ents ...[2]uint32) {
		var p []byte
		for i, e := range ents {
			sz := e[1]
			if i == len(ents)-1 {
				sz |= 0x80000000
			}
			p = binary.LittleEndian.AppendUint32(p, e[0])
			p = binary.LittleEndian.AppendUint32(p, sz)
		}
		d.memWrite(idePRD, p)
	}
	bmStop := func() {
		d.out(ideBM, 1, 0)
		d.out(ideBM+2, 1, 0x06)
	}
	d.memWrite(ideBuf, make([]byte, 16*512))
	prd([2]uint32{ideBuf, 4096}, [2]uint32{ideBuf + 0x10000, 4096})
	d.out(ideBM+4, 4, idePRD)
	d.in(ideBM+4, 4, "PRD address")
	d.taskfile(b0, 0, 100, 16)
	d.out(b0+7, 1, 0xc8)
	d.in(b0+0x206, 1, "READ DMA status before start")
	d.out(ideBM, 1, 0x09)
	d.wait(ideBM+2, 0x05, 0x04, "READ DMA completion")
	d.in(b0+7, 1, "READ DMA status")
	d.memCompare(ideBuf, 4096, "READ DMA buffer 1")
	d.memCompare(ideBuf+0x10000, 4096, "READ DMA buffer 2")
	for r := uint16(2); r <= 6; r++ {
		d.in(b0+r, 1, "after READ DMA")
	}
	bmStop()
	d.sync("READ DMA")

	// WRITE DMA (engine started first), 8 sectors at 300; PRDs longer
	// than the transfer keep the active bit.
	pat := make([]byte, 8*512)
	for i := range pat {
		pat[i] = byte(i*3 + 1)
	}
	d.memWrite(ideBuf2, pat)
	prd([2]uint32{ideBuf2, 8192})
	d.out(ideBM, 1, 0x01)
	d.taskfile(b0, 0, 300, 8)
	d.out(b0+7, 1, 0xca)
	d.wait(ideBM+2, 0x04, 0x04, "WRITE DMA completion")
	d.in(ideBM+2, 1, "WRITE DMA bus-master status (active kept)")
	d.in(b0+7, 1, "WRITE DMA status")
	bmStop()
	d.sync("WRITE DMA")

	// READ DMA with PRDs too short: no interrupt, active cleared.
	prd([2]uint32{ideBuf, 1024})
	d.taskfile(b0, 0, 300, 8)
	d.out(b0+7, 1, 0xc8)
	d.out(ideBM, 1, 0x09)
	d.wait(ideBM+2, 0x01, 0x00, "short PRD")
	d.in(b0+0x206, 1, "short PRD status")
	bmStop()
	d.sync("short PRD")

	// READ DMA EXT (LBA48), 8 sectors at 300: the data DMA wrote.
	prd([2]uint32{ideBuf, 4096})
	d.out(b0+6, 1, 0x40)
	for _, r := range []uint16{2, 3, 4, 5} {
		d.out(b0+r, 1, 0)
		d.out(b0+r, 1, []uint64{8, 300 & 0xff, 300 >> 8, 0}[r-2])
	}
	d.out(b0+7, 1, 0x25)
	d.out(ideBM, 1, 0x09)
	d.wait(ideBM+2, 0x05, 0x04, "READ DMA EXT completion")
	d.in(b0+7, 1, "READ DMA EXT status")
	if got := d.memCompare(ideBuf, 4096, "READ DMA EXT buffer"); !bytes.Equal(got, pat) {
		t.Error("READ DMA EXT did not return what WRITE DMA wrote")
	}
	bmStop()
	d.sync("READ DMA EXT")

	// DATA SET MANAGEMENT (TRIM) by DMA: one range, then one past the
	// end (ABRT). discard=ignore on both: the data stays.
	for _, ent := range []uint64{8<<48 | 40, 8<<48 | ideDiskSectors - 4} {
		rng := make([]byte, 512)
		binary.LittleEndian.PutUint64(rng, ent)
		d.memWrite(ideBuf2, rng)
		prd([2]uint32{ideBuf2, 512})
		d.out(b0+1, 1, 0x01)
		d.taskfile(b0, 0, 0, 1)
		d.out(b0+7, 1, 0x06)
		d.out(ideBM, 1, 0x01)
		d.wait(ideBM+2, 0x05, 0x04, "TRIM completion")
		d.in(b0+7, 1, "TRIM status")
		d.in(b0+1, 1, "TRIM error")
		bmStop()
		d.sync("TRIM")
	}

	// INITIALIZE DEVICE PARAMETERS (4 heads, 17 sectors), then a CHS
	// read of cylinder 1, head 2, sector 3.
	d.out(b0+6, 1, 0xa3)
	d.out(b0+2, 1, 17)
	d.ataCmd(b0, 0x91, "INITIALIZE DEVICE PARAMETERS")
	d.in(b0+7, 1, "INITIALIZE status")
	d.out(b0+6, 1, 0xa2)
	d.out(b0+2, 1, 1)
	d.out(b0+3, 1, 3)
	d.out(b0+4, 1, 1)
	d.out(b0+5, 1, 0)
	d.ataCmd(b0, 0x20, "CHS READ")
	d.words(b0, 256, "CHS READ")
	for r := uint16(2); r <= 7; r++ {
		d.in(b0+r, 1, "after CHS READ")
	}
	d.sync("CHS READ")

	// FLUSH CACHE, SET FEATURES (UDMA 5, write cache off/on), IDENTIFY.
	d.ataCmd(b0, 0xe7, "FLUSH CACHE")
	d.in(b0+7, 1, "FLUSH status")
	d.out(b0+1, 1, 0x03)
	d.out(b0+2, 1, 0x45)
	d.ataCmd(b0, 0xef, "SET FEATURES xfer")
	d.in(b0+7, 1, "SET FEATURES status")
	d.out(b0+1, 1, 0x82)
	d.ataCmd(b0, 0xef, "SET FEATURES wcache off")
	d.in(b0+7, 1, "wcache off status")
	d.out(b0+1, 1, 0x77)
	d.ataCmd(b0, 0xef, "SET FEATURES unknown")
	d.in(b0+1, 1, "unknown feature error")
	d.in(b0+7, 1, "unknown feature status")
	d.ataCmd(b0, 0xec, "IDENTIFY again")
	d.words(b0, 256, "IDENTIFY after SET FEATURES")
	d.out(b0+1, 1, 0x02)
	d.ataCmd(b0, 0xef, "SET FEATURES wcache on")
	d.in(b0+7, 1, "wcache on status")
	for _, c := range []uint8{0x91, 0x10, 0x70, 0xe5, 0xe0, 0x40, 0xf8, 0x90} {
		d.taskfile(b0, 0, 1, 1)
		d.ataCmd(b0, c, fmt.Sprintf("command %#x", c))
		for r := uint16(1); r <= 7; r++ {
			d.in(b0+r, 1, fmt.Sprintf("command %#x reg %d", c, r))
		}
		d.sync(fmt.Sprintf("command %#x", c))
	}

	// ATAPI on the secondary master.
	d.out(b1+6, 1, 0xa0)
	d.ataCmd(b1, 0xec, "IDENTIFY on a CD")
	for r := uint16(1); r <= 7; r++ {
		d.in(b1+r, 1, "IDENTIFY on a CD")
	}
	d.ataCmd(b1, 0xa1, "IDENTIFY PACKET")
	d.words(b1, 256, "IDENTIFY PACKET")
	d.in(b1+7, 1, "after IDENTIFY PACKET")
	d.sync("IDENTIFY PACKET")
	packet := func(p []byte, bcl uint16, dma bool, why string) {
		feat := uint64(0)
		if dma {
			feat = 1
		}
		d.out(b1+1, 1, feat)
		d.out(b1+4, 1, uint64(bcl&0xff))
		d.out(b1+5, 1, uint64(bcl>>8))
		d.out(b1+7, 1, 0xa0)
		d.in(b1+0x206, 1, why+": packet DRQ")
		d.in(b1+2, 1, why+": packet reason")
		var pk [12]byte
		copy(pk[:], p)
		for i := 0; i < 12; i += 2 {
			d.out(b1, 2, uint64(binary.LittleEndian.Uint16(pk[i:])))
		}
		if dma { // BSY|DRQ until the engine starts
			d.in(b1+0x206, 1, why+": waiting for the engine")
			return
		}
		d.wait(b1+0x206, 0x80, 0, why)
		// The PIO reply, block by block.
		for blk := 0; blk < 64; blk++ {
			st := d.in(b1+7, 1, why+": status")
			d.in(b1+2, 1, why+": reason")
			d.in(b1+1, 1, why+": error")
			if st&0x08 == 0 || dma {
				break
			}
			n := d.in(b1+4, 1, why+": count low") | d.in(b1+5, 1, why+": count high")<<8
			d.words(b1, int(n+1)/2, why)
			d.wait(b1+0x206, 0x80, 0, why+" next")
		}
		d.sync(why)
	}
	packet([]byte{0x00}, 0, false, "TEST UNIT READY")
	packet([]byte{0x03, 0, 0, 0, 18}, 18, false, "REQUEST SENSE")
	packet([]byte{0x12, 0, 0, 0, 36}, 36, false, "INQUIRY")
	packet([]byte{0x12, 1, 0, 0, 96}, 96, false, "INQUIRY VPD 0")
	packet([]byte{0x12, 1, 0x83, 0, 96}, 96, false, "INQUIRY VPD 0x83")
	packet([]byte{0x25}, 8, false, "READ CAPACITY")
	packet([]byte{0x28, 0, 0, 0, 0, 5, 0, 0, 3}, 2048, false, "READ(10) PIO")
	packet([]byte{0x28, 0, 0, 0, 0, 1, 0, 0, 2}, 1000, false, "READ(10) odd limit")
	packet([]byte{0x28, 0, 0, 0, 0, 63, 0, 0, 2}, 2048, false, "READ(10) past the end")
	packet([]byte{0x03, 0, 0, 0, 18}, 18, false, "REQUEST SENSE after an error")
	packet([]byte{0x43, 0, 0, 0, 0, 0, 0, 0, 100}, 100, false, "READ TOC")
	packet([]byte{0x43, 2, 0, 0, 0, 0, 0, 0, 100}, 100, false, "READ TOC MSF")
	packet([]byte{0x43, 0, 0, 0, 0, 0, 0, 0, 100, 0x40}, 100, false, "READ TOC session")
	packet([]byte{0x43, 0, 0, 0, 0, 0, 0, 0, 100, 0x80}, 100, false, "READ TOC raw")
	packet([]byte{0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8}, 8, false, "GESN")
	packet([]byte{0x4a, 0, 0, 0, 0x10, 0, 0, 0, 8}, 8, false, "GESN async")
	packet([]byte{0x46, 0, 0, 0, 0, 0, 0, 0, 32}, 32, false, "GET CONFIGURATION")
	packet([]byte{0x51, 0, 0, 0, 0, 0, 0, 0, 34}, 34, false, "READ DISC INFORMATION")
	packet([]byte{0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 30}, 30, false, "MODE SENSE capabilities")
	packet([]byte{0x5a, 0, 0x01, 0, 0, 0, 0, 0, 16}, 16, false, "MODE SENSE error recovery")
	packet([]byte{0x5a, 0, 0xc1, 0, 0, 0, 0, 0, 16}, 16, false, "MODE SENSE saved")
	packet([]byte{0x1a, 0, 0x2a, 0, 30}, 30, false, "MODE SENSE(6)")
	packet([]byte{0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 8}, 8, false, "MECHANISM STATUS")
	packet([]byte{0xad, 0, 0, 0, 0, 0, 0, 0, 0, 100}, 100, false, "READ DVD STRUCTURE on a CD")
	packet([]byte{0xad, 0, 0, 0, 0, 0, 0, 0xff, 0, 100}, 100, false, "READ DVD STRUCTURE list")
	packet([]byte{0xbb}, 0, false, "SET CD SPEED")
	packet([]byte{0x2b, 0, 0, 0, 0, 9}, 0, false, "SEEK")
	packet([]byte{0xff}, 8, false, "unknown opcode")
	packet([]byte{0x12, 0, 0, 0, 36}, 0, false, "INQUIRY with limit 0")
	packet([]byte{0xbe, 0, 0, 0, 0, 2, 0, 0, 1, 0xf8}, 2352, false, "READ CD raw")
	packet([]byte{0x1e, 0, 0, 0, 1}, 0, false, "PREVENT REMOVAL")
	packet([]byte{0x1b, 0, 0, 0, 2}, 0, false, "eject while locked")
	packet([]byte{0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 30}, 30, false, "MODE SENSE locked")
	packet([]byte{0x1e, 0, 0, 0, 0}, 0, false, "ALLOW REMOVAL")
	// ATAPI DMA: READ(12) of 2 frames, then INQUIRY by DMA.
	bm1 := uint16(ideBM + 8)
	prd([2]uint32{ideBuf, 4096})
	d.memWrite(ideBuf, make([]byte, 4096))
	d.out(bm1+4, 4, idePRD)
	packet([]byte{0xa8, 0, 0, 0, 0, 10, 0, 0, 0, 2}, 0, true, "READ(12) DMA command")
	d.out(bm1, 1, 0x09)
	d.wait(bm1+2, 0x05, 0x04, "READ(12) DMA completion")
	d.in(b1+7, 1, "READ(12) DMA status")
	d.in(b1+2, 1, "READ(12) DMA reason")
	d.memCompare(ideBuf, 4096, "READ(12) DMA buffer")
	d.out(bm1, 1, 0)
	d.out(bm1+2, 1, 0x06)
	d.sync("READ(12) DMA")
	packet([]byte{0x12, 0, 0, 0, 36}, 0, true, "INQUIRY DMA command")
	d.out(bm1, 1, 0x09)
	d.wait(bm1+2, 0x05, 0x04, "INQUIRY DMA completion")
	d.in(b1+7, 1, "INQUIRY DMA status")
	d.memCompare(ideBuf, 64, "INQUIRY DMA buffer")
	d.out(bm1, 1, 0)
	d.out(bm1+2, 1, 0x06)
	d.sync("INQUIRY DMA")
	packet([]byte{0x1b, 0, 0, 0, 2}, 0, false, "eject")
	packet([]byte{0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8}, 8, false, "GESN tray open")
	packet([]byte{0x00}, 0, false, "TUR tray open")
	packet([]byte{0x1b, 0, 0, 0, 3}, 0, false, "load")
	d.ataCmd(b1, 0x08, "DEVICE RESET")
	for r := uint16(1); r <= 7; r++ {
		d.in(b1+r, 1, fmt.Sprintf("after DEVICE RESET reg %d", r))
	}
	d.sync("DEVICE RESET")

	// Soft reset of both channels, interrupts enabled and masked.
	for _, ctl := range []uint16{0x3f6, 0x376} {
		for _, nien := range []uint64{0, 2} {
			d.out(ctl, 1, 4|nien)
			d.out(ctl, 1, nien)
			d.wait(ctl, 0x80, 0, "SRST")
			for r := uint16(1); r <= 7; r++ {
				d.in(ctl-0x206+r, 1, fmt.Sprintf("after SRST %#x reg %d", ctl, r))
			}
			d.sync(fmt.Sprintf("SRST %#x nIEN %d", ctl, nien))
		}
	}

	// System reset (QEMU's system_reset; godm's board reset) with state
	// left everywhere: bus-master registers, a selected slave, nIEN, task
	// file registers, the function's command register. Afterwards every
	// register must read as QEMU's (hw/ide/piix.c piix_ide_reset: PCI
	// command 0, BMIBA back to 1, ide_bus_reset of both channels).
	d.out(ideBM+4, 4, idePRD)
	d.out(ideBM+0xc, 4, idePRD+0x100)
	d.out(ideBM, 1, 0x08)
	d.out(ideBM+2, 1, 0x60)
	d.out(ideBM+0xa, 1, 0x20)
	d.out(b0+6, 1, 0xb0)
	d.out(0x376, 1, 2)
	for r := uint16(1); r <= 5; r++ {
		d.out(b1+r, 1, 0x40+uint64(r))
	}
	d.ataCmd(b0, 0xe7, "FLUSH before reset")
	d.sync("before reset")
	d.step(qtest.Step{Reset: true, Why: "system_reset"})
	for off := uint8(0); off < 0x48; off += 4 {
		d.cfgr(off, 4, fmt.Sprintf("config %#x after system_reset", off))
	}
	d.cfgw(0x20, 4, ideBM)
	d.cfgw(0x04, 2, 0x5)
	for off := uint16(0); off < 0x10; off++ {
		d.in(ideBM+off, 1, fmt.Sprintf("bus master %#x after system_reset", off))
	}
	for _, base := range []uint16{b0, b1} {
		for _, dev := range []uint64{0xa0, 0xb0} {
			d.out(base+6, 1, dev)
			for r := uint16(1); r <= 7; r++ {
				d.in(base+r, 1, fmt.Sprintf("%#x dev %#x reg %d after system_reset", base, dev, r))
			}
			d.in(base+0x206, 1, fmt.Sprintf("%#x dev %#x alt status after system_reset", base, dev))
		}
	}
	d.sync("system_reset")

	// The images hold the same bytes (QEMU flushes on exit; compare
	// what both wrote through a fresh read).
	d.ataCmd(b0, 0xe7, "final FLUSH")
	a, err := os.ReadFile(qemuDisk)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(godmDisk)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("the disk images differ after the same writes")
	}
	// qemu-io reads what godm's IDE wrote.
	if _, err := exec.LookPath("qemu-io"); err == nil {
		out, err := exec.Command("qemu-io", "-r", "-f", "raw", "-U", "-c", "read -P 0x01 153600 1", godmDisk).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "read 1/1 bytes") {
			t.Errorf("qemu-io on godm's image: %v\n%s", err, out)
		}
	}
}

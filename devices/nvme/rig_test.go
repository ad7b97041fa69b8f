package nvme

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"godm/block"
	"godm/devices"
	"godm/internal/testfake"
	"godm/memory"
	"godm/pci"
)

// Guest layout of the test driver.
const (
	barAt    = 0xfe000000
	asqAt    = 0x10000
	acqAt    = 0x20000
	sq1At    = 0x30000
	cq1At    = 0x40000
	listAt   = 0x80000
	dataAt   = 0x100000
	memSize  = 16 << 20
	diskSize = 4 << 20
	adminQ   = 16
	ioQ      = 32
)

// rig is a guest driver over fake guest memory and a PCI bus.
type rig struct {
	t      testing.TB
	mem    *memory.Flat
	c      *Controller
	drv    *block.Drive
	path   string
	spaces *devices.Bus
	rec    *testfake.Recorder
	sbdf   devices.SBDF
	sqTail [Vectors]uint32
	sqSize [Vectors]uint32
	sqBase [Vectors]uint64
	cqHead [Vectors]uint32
	cqSize [Vectors]uint32
	cqBase [Vectors]uint64
	phase  [Vectors]bool
	cid    uint16
}

func writeImage(t testing.TB, format string) string {
	t.Helper()
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	img := make([]byte, diskSize)
	for i := range img {
		img[i] = byte(i/512) ^ byte(i)
	}
	if err := os.WriteFile(raw, img, 0o600); err != nil {
		t.Fatal(err)
	}
	if format == "raw" {
		return raw
	}
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("qemu-img not installed (Debian qemu-utils): no qcow2 image to test against")
	}
	q := filepath.Join(dir, "disk.qcow2")
	if out, err := exec.Command(qemuImg, "convert", "-f", "raw", "-O", "qcow2", raw, q).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v: %s", err, out)
	}
	return q
}

func newRigFormat(t testing.TB, format string, ro, wc bool) *rig {
	t.Helper()
	path := writeImage(t, format)
	cache := block.CacheWriteback
	if !wc {
		cache = block.CacheWritethrough
	}
	drv, err := block.Open(path, block.Options{Format: format, ReadOnly: ro, Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	mem := memory.NewFlat(0, memSize)
	c, err := New(Config{Memory: mem, Drive: drv, Serial: "GODM-NVME-1", Discard: true})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, mem: mem, c: c, drv: drv, path: path}
	r.spaces = devices.NewBus()
	r.rec = &testfake.Recorder{}
	bus, err := pci.NewBus(pci.BusConfig{Spaces: r.spaces, INTx: r.rec, MSI: r.rec})
	if err != nil {
		t.Fatal(err)
	}
	r.sbdf, err = bus.Add(c.Function(), 4, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		drv.Close()
	})
	r.cfg(0x10, 4, barAt)
	r.cfg(0x14, 4, 0)
	r.cfg(pci.RegCommand, 2, pci.CommandMemory|pci.CommandMaster)
	return r
}

func newRig(t testing.TB) *rig { return newRigFormat(t, "raw", false, true) }

func (r *rig) cfg(off uint32, size uint8, v uint64) { r.spaces.PCI.Write(r.sbdf, off, size, 0, v) }
func (r *rig) rd(off uint64, size uint8) uint64     { return r.spaces.MMIO.Read(barAt+off, size, 0) }
func (r *rig) wr(off uint64, size uint8, v uint64) {
	r.spaces.MMIO.Write(barAt+off, size, 0, v)
}

func (r *rig) put(a uint64, p []byte) {
	if err := r.mem.Write(memory.GPA(a), p); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) get(a uint64, n int) []byte {
	p := make([]byte, n)
	if err := r.mem.Read(memory.GPA(a), p); err != nil {
		r.t.Fatal(err)
	}
	return p
}

// enable brings the controller up with the admin queues.
func (r *rig) enable() {
	r.t.Helper()
	r.put(acqAt, make([]byte, adminQ*16)) // a driver clears its CQs
	r.wr(regAQA, 4, (adminQ-1)<<16|(adminQ-1))
	r.wr(regASQ, 8, asqAt)
	r.wr(regACQ, 8, acqAt)
	r.wr(regCC, 4, 6<<16|4<<20|1)
	if v := r.rd(regCSTS, 4); v != 1 {
		r.t.Fatalf("CSTS after enable %#x", v)
	}
	r.sqSize[0], r.sqBase[0], r.sqTail[0] = adminQ, asqAt, 0
	r.cqSize[0], r.cqBase[0], r.cqHead[0], r.phase[0] = adminQ, acqAt, 0, true
}

// cmd is a submission queue entry under construction.
type cmd [64]byte

func newCmd(op byte) *cmd {
	var c cmd
	c[0] = op
	return &c
}

func (c *cmd) dw(i int, v uint32) *cmd { binary.LittleEndian.PutUint32(c[4*i:], v); return c }
func (c *cmd) prp(p1, p2 uint64) *cmd {
	binary.LittleEndian.PutUint64(c[24:], p1)
	binary.LittleEndian.PutUint64(c[32:], p2)
	return c
}

// submit writes the entry at the queue's tail and rings its doorbell; it
// returns the CID given.
func (r *rig) submit(q int, c *cmd) uint16 {
	r.cid++
	binary.LittleEndian.PutUint16(c[2:], r.cid)
	r.put(r.sqBase[q]+uint64(r.sqTail[q])*64, c[:])
	r.sqTail[q] = (r.sqTail[q] + 1) % r.sqSize[q]
	r.wr(regDoorbell+uint64(q)*8, 4, uint64(r.sqTail[q]))
	return r.cid
}

type cqe struct {
	dw0    uint32
	sqhd   uint16
	sqid   uint16
	cid    uint16
	status uint16 // without the phase bit, DNR included
}

// peek reports the entry at the CQ's head if its phase is the current one.
func (r *rig) peek(q int) (cqe, bool) {
	e := r.get(r.cqBase[q]+uint64(r.cqHead[q])*16, 16)
	dw3 := binary.LittleEndian.Uint32(e[12:])
	if (dw3>>16&1 != 0) != r.phase[q] {
		return cqe{}, false
	}
	dw2 := binary.LittleEndian.Uint32(e[8:])
	return cqe{dw0: binary.LittleEndian.Uint32(e), sqhd: uint16(dw2), sqid: uint16(dw2 >> 16), cid: uint16(dw3), status: uint16(dw3 >> 17)}, true
}

// reap waits for the next completion on CQ q and consumes it.
func (r *rig) reap(q int) cqe {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if e, ok := r.peek(q); ok {
			r.cqHead[q]++
			if r.cqHead[q] == r.cqSize[q] {
				r.cqHead[q], r.phase[q] = 0, !r.phase[q]
			}
			r.wr(regDoorbell+uint64(q)*8+4, 4, uint64(r.cqHead[q]))
			return e
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("no completion on CQ %d (CSTS %#x)", q, r.rd(regCSTS, 4))
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// run submits and waits for the command's completion (the only one
// outstanding on the queue).
func (r *rig) run(q int, c *cmd) cqe {
	r.t.Helper()
	cid := r.submit(q, c)
	e := r.reap(cqFor(q))
	if e.cid != cid || e.sqid != uint16(q) {
		r.t.Fatalf("completion %+v for CID %d on SQ %d", e, cid, q)
	}
	return e
}

func cqFor(q int) int { return q }

// admin runs an admin command and returns its status.
func (r *rig) admin(c *cmd) cqe { r.t.Helper(); return r.run(0, c) }

// ioQueues creates CQ 1 (vector iv, interrupts on) and SQ 1 on it.
func (r *rig) ioQueues(iv uint16) {
	r.t.Helper()
	r.put(cq1At, make([]byte, ioQ*16))
	if e := r.admin(newCmd(aCreateCQ).prp(cq1At, 0).dw(10, (ioQ-1)<<16|1).dw(11, uint32(iv)<<16|3)); e.status != 0 {
		r.t.Fatalf("create CQ: %#x", e.status)
	}
	if e := r.admin(newCmd(aCreateSQ).prp(sq1At, 0).dw(10, (ioQ-1)<<16|1).dw(11, 1<<16|1)); e.status != 0 {
		r.t.Fatalf("create SQ: %#x", e.status)
	}
	r.sqSize[1], r.sqBase[1], r.sqTail[1] = ioQ, sq1At, 0
	r.cqSize[1], r.cqBase[1], r.cqHead[1], r.phase[1] = ioQ, cq1At, 0, true
}

// rw builds a Read or Write of nlb blocks at slba.
func rw(op byte, slba uint64, nlb int, p1, p2 uint64) *cmd {
	var c cmd
	c.fillRW(op, slba, nlb, p1, p2)
	return &c
}

func (c *cmd) fillRW(op byte, slba uint64, nlb int, p1, p2 uint64) {
	*c = cmd{}
	c[0] = op
	c.dw(1, 1).prp(p1, p2).dw(10, uint32(slba)).dw(11, uint32(slba>>32)).dw(12, uint32(nlb-1))
}

func (r *rig) image(off, n int) []byte {
	p := make([]byte, n)
	if err := r.drv.ReadAt(p, int64(off)); err != nil {
		r.t.Fatal(err)
	}
	return p
}

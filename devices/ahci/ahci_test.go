package ahci

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"godm/block"
	"godm/devices"
	"godm/memory"
)

const ramSize = 4 << 20

// Guest memory layout of the tests' driver.
const (
	clbAddr  = 0x10000 // port n's command list at clbAddr + n*0x1000
	fbAddr   = 0x20000 // port n's received FIS at fbAddr + n*0x100
	tblAddr  = 0x30000 // slot s's command table at tblAddr + s*0x100
	dataAddr = 0x100000
)

type rig struct {
	t    testing.TB
	c    *Controller
	mem  *memory.Flat
	img  []byte
	drv  *block.Drive
	path string
}

func image(t testing.TB, n int) (*block.Drive, []byte, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	data := make([]byte, n*512)
	rng := rand.New(rand.NewPCG(uint64(n), 9))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := block.Open(path, block.Options{Format: "raw"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, data, path
}

func newRig(t testing.TB) *rig {
	t.Helper()
	r := &rig{t: t, mem: memory.NewFlat(0, ramSize)}
	c, err := New(Config{Memory: r.mem})
	if err != nil {
		t.Fatal(err)
	}
	r.c = c
	t.Cleanup(func() { c.Close() })
	r.drv, r.img, r.path = image(t, 2048)
	if err := c.Attach(0, DriveConfig{Drive: r.drv}); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) rd(off uint64) uint32 {
	return uint32(abar{r.c}.Read(devices.Access{Offset: off, Size: 4}))
}
func (r *rig) wr(off uint64, v uint32) {
	abar{r.c}.Write(devices.Access{Offset: off, Size: 4}, uint64(v))
}
func (r *rig) prd(n int, reg uint64) uint32 { return r.rd(portBase + uint64(n)*portLen + reg) }
func (r *rig) pwr(n int, reg uint64, v uint32) {
	r.wr(portBase+uint64(n)*portLen+reg, v)
}

func (r *rig) put(gpa uint64, b []byte) {
	if err := r.mem.Write(memory.GPA(gpa), b); err != nil {
		r.t.Fatal(err)
	}
}
func (r *rig) get(gpa uint64, n int) []byte {
	b := make([]byte, n)
	if err := r.mem.Read(memory.GPA(gpa), b); err != nil {
		r.t.Fatal(err)
	}
	return b
}

// start programs port n's areas and starts its engines, as a driver does.
func (r *rig) start(n int) {
	r.pwr(n, pCLB, clbAddr+uint32(n)*0x1000)
	r.pwr(n, pFB, fbAddr+uint32(n)*0x100)
	r.pwr(n, pCMD, r.prd(n, pCMD)|cmdFRE)
	r.pwr(n, pCMD, r.prd(n, pCMD)|cmdST)
}

type seg struct {
	addr uint64
	n    uint32
}

// issue writes slot s's header, command FIS and PRDT, then sets CI.
func (r *rig) issue(n, s int, fis []byte, write bool, segs []seg) {
	tbl := uint64(tblAddr + s*0x100 + n*0x2000)
	h := make([]byte, 32)
	opts := uint16(5)
	if write {
		opts |= 0x40
	}
	binary.LittleEndian.PutUint16(h[0:], opts)
	binary.LittleEndian.PutUint16(h[2:], uint16(len(segs)))
	binary.LittleEndian.PutUint64(h[8:], tbl)
	r.put(clbAddr+uint64(n)*0x1000+uint64(s)*32, h)
	f := make([]byte, 0x80)
	copy(f, fis)
	r.put(tbl, f)
	for i, sg := range segs {
		e := make([]byte, 16)
		binary.LittleEndian.PutUint64(e[0:], sg.addr)
		binary.LittleEndian.PutUint32(e[12:], sg.n-1)
		r.put(tbl+0x80+uint64(i)*16, e)
	}
	r.pwr(n, pCI, 1<<s)
}

func (r *rig) wait(n int, reg uint64) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for r.prd(n, reg) != 0 {
		if time.Now().After(deadline) {
			r.t.Fatalf("port %d reg %#x still %#x", n, reg, r.prd(n, reg))
		}
		time.Sleep(time.Millisecond)
	}
}

func h2d(cmd uint8, lba uint64, count uint16) []byte {
	return []byte{0x27, 0x80, cmd, 0, byte(lba), byte(lba >> 8), byte(lba >> 16), 0x40,
		byte(lba >> 24), byte(lba >> 32), byte(lba >> 40), 0, byte(count), byte(count >> 8), 0, 0, 0, 0, 0, 0}
}

func TestHostRegisters(t *testing.T) {
	r := newRig(t)
	if got := r.rd(hostCap); got != 0xc0141f05 {
		t.Errorf("CAP %#x, want 0xc0141f05 (QEMU ahci_reg_init with 6 ports)", got)
	}
	if got := r.rd(hostGHC); got != ghcAE {
		t.Errorf("GHC %#x", got)
	}
	if got := r.rd(hostPI); got != 0x3f {
		t.Errorf("PI %#x", got)
	}
	if got := r.rd(hostVS); got != 0x10000 {
		t.Errorf("VS %#x", got)
	}
	// Unaligned byte read of CAP's second byte.
	if got := (abar{r.c}).Read(devices.Access{Offset: 1, Size: 1}); got != 0x1f {
		t.Errorf("CAP byte 1 %#x", got)
	}
	if got := r.prd(0, pSSTS); got != 0x113 {
		t.Errorf("port 0 SSTS %#x", got)
	}
	if got := r.prd(1, pSSTS); got != 0 {
		t.Errorf("empty port SSTS %#x", got)
	}
	if got := r.prd(0, pSIG); got != 0xffffffff {
		t.Errorf("SIG before FRE %#x", got)
	}
	if got := r.prd(0, pCMD); got != cmdSUD|cmdPOD {
		t.Errorf("CMD %#x", got)
	}
}

func TestStartIdentifyAndInterrupt(t *testing.T) {
	r := newRig(t)
	r.start(0)
	if got := r.prd(0, pCMD); got&(cmdCR|cmdFR) != cmdCR|cmdFR {
		t.Fatalf("CMD %#x: engines not running", got)
	}
	if got := r.prd(0, pSIG); got != sigDisk {
		t.Errorf("SIG %#x", got)
	}
	if got := r.prd(0, pTFD); got != 0x130 {
		t.Errorf("TFD %#x, want 0x130 (QEMU: error 1, SEEK|DF)", got)
	}
	if got := r.prd(0, pIS); got != isDHRS {
		t.Errorf("IS %#x after the initial D2H FIS", got)
	}
	r.pwr(0, pIS, 0xffffffff)
	r.pwr(0, pIE, 0xffffffff)
	r.wr(hostGHC, ghcIE)
	if r.c.line {
		t.Fatal("line high with nothing pending")
	}
	r.issue(0, 0, h2d(ataIdentify, 0, 0), false, []seg{{dataAddr, 512}})
	if got := r.prd(0, pCI); got != 0 {
		t.Fatalf("CI %#x after IDENTIFY", got)
	}
	if got := r.prd(0, pIS); got != isDHRS|isPSS {
		t.Errorf("IS %#x, want DHRS|PSS", got)
	}
	if got := r.rd(hostIS); got != 1 || !r.c.line {
		t.Errorf("HBA IS %#x, line %v", got, r.c.line)
	}
	id := r.get(dataAddr, 512)
	if got := binary.LittleEndian.Uint32(id[200:]); got != 2048 {
		t.Errorf("IDENTIFY LBA48 sectors %d", got)
	}
	model := make([]byte, 40)
	for i := 0; i < 40; i++ {
		model[i] = id[54+i^1]
	}
	if !bytes.HasPrefix(model, []byte("QEMU HARDDISK")) {
		t.Errorf("model %q", model)
	}
	if got := binary.LittleEndian.Uint32(r.get(clbAddr+4, 4)); got != 512 {
		t.Errorf("PRDBC %d", got)
	}
	d2h := r.get(fbAddr+fisRFIS, 20)
	if d2h[0] != 0x34 || d2h[2] != stREADY|stSEEK || d2h[3] != 0 {
		t.Errorf("D2H FIS % x", d2h)
	}
	if ps := r.get(fbAddr+fisPSFIS, 20); ps[0] != 0x5f || ps[16] != 0 || ps[17] != 2 {
		t.Errorf("PIO setup FIS % x", ps)
	}
	r.pwr(0, pIS, 0xffffffff)
	if r.c.line || r.rd(hostIS) != 0 {
		t.Error("line still high after clearing PxIS")
	}
}

func TestDMAReadWrite(t *testing.T) {
	r := newRig(t)
	r.start(0)
	// WRITE DMA EXT: 40 sectors at LBA 100 from three segments.
	pat := make([]byte, 40*512)
	for i := range pat {
		pat[i] = byte(i*7 + 3)
	}
	r.put(dataAddr, pat[:4096])
	r.put(dataAddr+0x10000, pat[4096:4096+10000])
	r.put(dataAddr+0x20000, pat[14096:])
	r.issue(0, 2, h2d(ataWriteDMAExt, 100, 40), true, []seg{{dataAddr, 4096}, {dataAddr + 0x10000, 10000}, {dataAddr + 0x20000, uint32(len(pat) - 14096)}})
	r.wait(0, pCI)
	if got := r.prd(0, pTFD); got != 0x50 {
		t.Fatalf("TFD %#x after write", got)
	}
	if got := binary.LittleEndian.Uint32(r.get(clbAddr+2*32+4, 4)); got != uint32(len(pat)) {
		t.Errorf("PRDBC %d", got)
	}
	got := make([]byte, len(pat))
	if err := r.drv.ReadAt(got, 100*512); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, pat) {
		t.Fatal("image differs from the written data")
	}
	// READ DMA (LBA28) of 300 sectors across chunks: the image's data.
	r.issue(0, 5, h2d(ataReadDMA, 1000, 300), false, []seg{{dataAddr + 0x100000, 300 * 512}})
	r.wait(0, pCI)
	if got := r.prd(0, pTFD); got != 0x50 {
		t.Fatalf("TFD %#x after read", got)
	}
	if !bytes.Equal(r.get(dataAddr+0x100000, 300*512), r.img[1000*512:1300*512]) {
		t.Fatal("read data differs from the image")
	}
	d2h := r.get(fbAddr+fisRFIS, 20)
	if lba := uint32(d2h[4]) | uint32(d2h[5])<<8 | uint32(d2h[6])<<16; lba != 1300 || d2h[12] != 0 {
		t.Errorf("D2H after READ DMA: LBA %d count %d", lba, d2h[12])
	}
}

func TestNCQ(t *testing.T) {
	r := newRig(t)
	r.start(0)
	r.pwr(0, pIE, 0xffffffff)
	r.wr(hostGHC, ghcIE)
	f := []byte{0x27, 0x80, ataReadFPDMA, 8, 0x10, 0, 0, 0x40, 0, 0, 0, 0, 7 << 3, 0, 0, 0, 0, 0, 0, 0}
	r.pwr(0, pSACT, 1<<7)
	r.issue(0, 7, f, false, []seg{{dataAddr, 8 * 512}})
	r.wait(0, pSACT)
	if !bytes.Equal(r.get(dataAddr, 8*512), r.img[16*512:24*512]) {
		t.Fatal("NCQ read data differs")
	}
	sdb := r.get(fbAddr+fisSDB, 8)
	if sdb[0] != 0xa1 || binary.LittleEndian.Uint32(sdb[4:]) != 1<<7 {
		t.Errorf("SDB FIS % x", sdb)
	}
	if got := r.prd(0, pIS); got&isSDBS == 0 {
		t.Errorf("IS %#x without SDBS", got)
	}
	if r.prd(0, pCI) != 0 || r.prd(0, pSERR) != 0 {
		t.Errorf("CI %#x SERR %#x", r.prd(0, pCI), r.prd(0, pSERR))
	}
	// A PRDT shorter than the transfer: OFS, the tag in SERR.
	r.pwr(0, pSACT, 1<<2)
	f[12] = 2 << 3
	r.issue(0, 2, f, false, []seg{{dataAddr, 512}})
	if got := r.prd(0, pIS); got&isOFS == 0 || r.prd(0, pSERR) != 1<<2 {
		t.Errorf("short PRDT: IS %#x SERR %#x", got, r.prd(0, pSERR))
	}
}

func TestBadCommands(t *testing.T) {
	r := newRig(t)
	r.start(0)
	cases := []struct {
		name string
		fis  []byte
		segs []seg
	}{
		{"out of range", h2d(ataReadDMAExt, 2040, 16), []seg{{dataAddr, 16 * 512}}},
		{"PRD outside RAM", h2d(ataReadDMAExt, 0, 1), []seg{{ramSize - 16, 512}}},
		{"no PRDT", h2d(ataReadDMAExt, 0, 1), nil},
		{"unknown command", h2d(0x77, 0, 1), nil},
	}
	for _, c := range cases {
		r.pwr(0, pIS, 0xffffffff)
		r.issue(0, 0, c.fis, false, c.segs)
		r.wait(0, pCI)
		if got := r.prd(0, pTFD); got != errABRT<<8|stREADY|stERR {
			t.Errorf("%s: TFD %#x", c.name, got)
		}
		if got := r.prd(0, pIS); got&isTFES == 0 {
			t.Errorf("%s: IS %#x without TFES", c.name, got)
		}
	}
	// The port still works afterwards.
	r.issue(0, 1, h2d(ataReadDMAExt, 3, 1), false, []seg{{dataAddr, 512}})
	r.wait(0, pCI)
	if got := r.prd(0, pTFD); got != 0x50 || !bytes.Equal(r.get(dataAddr, 512), r.img[3*512:4*512]) {
		t.Errorf("after errors: TFD %#x", got)
	}
}

func TestResetAndPause(t *testing.T) {
	r := newRig(t)
	r.start(0)
	r.pwr(0, pCI, 0) // nothing
	r.c.Pause()
	r.issue(0, 0, h2d(ataReadDMAExt, 0, 8), false, []seg{{dataAddr, 8 * 512}})
	if r.prd(0, pCI) != 1 {
		t.Fatal("a command ran while paused")
	}
	r.c.Resume()
	r.wait(0, pCI)
	r.wr(hostGHC, ghcReset)
	if got := r.prd(0, pCMD); got != cmdSUD|cmdPOD || r.rd(hostGHC) != ghcAE || r.prd(0, pSIG) != 0xffffffff {
		t.Errorf("after HBA reset: CMD %#x GHC %#x SIG %#x", got, r.rd(hostGHC), r.prd(0, pSIG))
	}
	drv, err := r.c.Detach(0)
	if err != nil || drv != r.drv || r.prd(0, pSSTS) != 0 {
		t.Errorf("Detach: %v, SSTS %#x", err, r.prd(0, pSSTS))
	}
}

func TestSnapshotRestore(t *testing.T) {
	r := newRig(t)
	r.start(0)
	r.pwr(0, pIE, 0xffffffff)
	r.wr(hostGHC, ghcIE)
	r.issue(0, 0, h2d(ataSetFeatures, 0, 0), false, nil) // feature 0: ABRT
	snap, err := r.c.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r2 := newRig(t)
	if err := r2.c.Restore(snap); err != nil {
		t.Fatal(err)
	}
	for _, reg := range []uint64{pCLB, pFB, pIS, pIE, pCMD, pTFD, pSIG, pSSTS, pCI} {
		if a, b := r.prd(0, reg), r2.prd(0, reg); a != b {
			t.Errorf("reg %#x: %#x restored as %#x", reg, a, b)
		}
	}
	if !r2.c.line || r2.rd(hostIS) != 1 {
		t.Error("restored controller does not interrupt")
	}
	// The restored port runs commands on the second rig's memory.
	copy(r2.mem.Mem, r.mem.Mem)
	r2.issue(0, 1, h2d(ataReadDMAExt, 5, 1), false, []seg{{dataAddr, 512}})
	r2.wait(0, pCI)
	if got := r2.prd(0, pTFD); got != 0x50 {
		t.Errorf("restored port: TFD %#x", got)
	}
	// A record for another layout is refused.
	r3 := &rig{t: t, mem: memory.NewFlat(0, ramSize)}
	c3, _ := New(Config{Memory: r3.mem})
	defer c3.Close()
	if err := c3.Restore(snap); err == nil {
		t.Error("restore onto a controller without the disk succeeded")
	}
	if err := c3.Restore(snap[:len(snap)/2]); err == nil {
		t.Error("truncated record accepted")
	}
}

// TestCommandAllocs: issuing a command on the ioreq path (register
// writes, the command walk, a synchronous command's FISes) allocates
// nothing.
func TestCommandAllocs(t *testing.T) {
	r := newRig(t)
	r.start(0)
	r.issue(0, 0, h2d(ataIdentify, 0, 0), false, []seg{{dataAddr, 512}})
	n := testing.AllocsPerRun(100, func() {
		r.pwr(0, pIS, 0xffffffff)
		r.pwr(0, pCI, 1)
		_ = r.prd(0, pTFD)
	})
	if n != 0 {
		t.Errorf("%v allocations per IDENTIFY", n)
	}
	if r.prd(0, pCI) != 0 || r.prd(0, pTFD) != 0x50 {
		t.Fatalf("IDENTIFY did not run: CI %#x TFD %#x", r.prd(0, pCI), r.prd(0, pTFD))
	}
}

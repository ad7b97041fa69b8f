package ahci

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"godm/block"
)

const cdPort = 1

// cdImage writes an image of frames 2 KiB frames (random, frame i's first
// bytes holding i) and opens it read-only as a CD-ROM medium.
func cdImage(t testing.TB, frames int, seed uint64) (*block.Drive, []byte) {
	t.Helper()
	data := make([]byte, frames*2048)
	rng := rand.New(rand.NewPCG(seed, 3))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	for i := 0; i < frames; i++ {
		binary.BigEndian.PutUint32(data[i*2048:], uint32(i))
	}
	path := filepath.Join(t.TempDir(), "cd.iso")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := block.Open(path, block.Options{Format: "raw", ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, data
}

func newCDRig(t testing.TB) (*rig, []byte) {
	r := newRig(t)
	cd, data := cdImage(t, 200, 1)
	if err := r.c.Attach(cdPort, DriveConfig{Drive: cd, CD: true}); err != nil {
		t.Fatal(err)
	}
	r.start(cdPort)
	r.pwr(cdPort, pIS, 0xffffffff)
	return r, data
}

// packet issues PACKET in slot 0 of the CD port with cdb in ACMD: by DMA,
// or by PIO with byte count limit bcl; it waits for the slot.
func (r *rig) packet(cdb []byte, dma bool, bcl uint16, segs []seg) {
	r.t.Helper()
	n, s := cdPort, 0
	tbl := uint64(tblAddr + s*0x100 + n*0x2000)
	h := make([]byte, 32)
	binary.LittleEndian.PutUint16(h[0:], 5|0x20) // CFL 5, ATAPI
	binary.LittleEndian.PutUint16(h[2:], uint16(len(segs)))
	binary.LittleEndian.PutUint64(h[8:], tbl)
	r.put(clbAddr+uint64(n)*0x1000+uint64(s)*32, h)
	f := make([]byte, 0x80)
	feat := byte(0)
	if dma {
		feat = 1
	}
	copy(f, []byte{0x27, 0x80, ataPacket, feat, 0, byte(bcl), byte(bcl >> 8), 0xa0})
	copy(f[acmdOff:], cdb)
	r.put(tbl, f)
	for i, sg := range segs {
		e := make([]byte, 16)
		binary.LittleEndian.PutUint64(e[0:], sg.addr)
		binary.LittleEndian.PutUint32(e[12:], sg.n-1)
		r.put(tbl+0x80+uint64(i)*16, e)
	}
	r.pwr(n, pCI, 1<<s)
	r.wait(n, pCI)
}

// sense returns the error register (PxTFD bits 15:8) and status.
func (r *rig) tfd() (errReg, status uint8) {
	v := r.prd(cdPort, pTFD)
	return uint8(v >> 8), uint8(v)
}

func TestATAPISignatureAndIdentify(t *testing.T) {
	r, _ := newCDRig(t)
	if got := r.prd(cdPort, pSIG); got != 0xeb140101 {
		t.Fatalf("SIG %#x, want the ATAPI signature 0xeb140101", got)
	}
	if got := r.prd(cdPort, pTFD); got != 0x170 {
		t.Errorf("TFD %#x, want 0x170 (QEMU: error 1, READY|SEEK|DF)", got)
	}
	// IDENTIFY DEVICE aborts, the signature in the D2H FIS.
	r.issue(cdPort, 0, h2d(ataIdentify, 0, 0), false, []seg{{dataAddr, 512}})
	r.wait(cdPort, pCI)
	if e, st := r.tfd(); e != errABRT || st&stERR == 0 {
		t.Errorf("IDENTIFY on a CD: error %#x status %#x, want ABRT", e, st)
	}
	fis := r.get(fbAddr+cdPort*0x100+fisRFIS, 20)
	if fis[5] != 0x14 || fis[6] != 0xeb {
		t.Errorf("D2H FIS cylinders %#x %#x, want the packet signature 14 eb", fis[5], fis[6])
	}
	r.issue(cdPort, 0, h2d(ataIdentPacket, 0, 0), false, []seg{{dataAddr, 512}})
	r.wait(cdPort, pCI)
	id := r.get(dataAddr, 512)
	if w0 := binary.LittleEndian.Uint16(id); w0 != 0x85c0 {
		t.Errorf("IDENTIFY PACKET word 0 %#x, want 0x85c0", w0)
	}
	if !bytes.Contains(id[54:94], []byte("EQUMD DVR-MO")) { // "QEMU DVD-ROM", byte-swapped
		t.Errorf("model %q", id[54:94])
	}
	if r.prd(cdPort, pIS)&isPSS == 0 {
		t.Error("no PSS for IDENTIFY PACKET's PIO data")
	}
}

func TestATAPIInquiryPIO(t *testing.T) {
	r, _ := newCDRig(t)
	// PIO, byte count limit 16: 36 bytes go as blocks of 16, 16, 4.
	r.packet([]byte{0x12, 0, 0, 0, 36, 0}, false, 16, []seg{{dataAddr, 512}})
	e, st := r.tfd()
	if e != 0 || st != stREADY|stSEEK {
		t.Fatalf("INQUIRY: error %#x status %#x", e, st)
	}
	got := r.get(dataAddr, 36)
	if got[0] != 0x05 || !bytes.Equal(got[8:12], []byte("QEMU")) || !bytes.HasPrefix(got[16:], []byte("QEMU DVD-ROM")) {
		t.Errorf("INQUIRY data % x", got)
	}
	d2h := r.get(fbAddr+cdPort*0x100+fisRFIS, 20)
	if d2h[12] != reasonIO|reasonCD || d2h[5] != 4 || d2h[6] != 0 {
		t.Errorf("D2H: count %#x cylinders %d %d, want IO|CD and the last block's 4 bytes", d2h[12], d2h[5], d2h[6])
	}
	ps := r.get(fbAddr+cdPort*0x100+fisPSFIS, 20)
	if ps[0] != 0x5f || ps[1]&0x40 == 0 || binary.LittleEndian.Uint16(ps[16:]) != 4 || ps[12] != reasonIO {
		t.Errorf("PIO setup FIS % x: want the interrupt bit, 4 bytes, reason IO", ps)
	}
	if r.prd(cdPort, pIS)&(isPSS|isDHRS) != isPSS|isDHRS {
		t.Errorf("IS %#x", r.prd(cdPort, pIS))
	}
	if prdbc := binary.LittleEndian.Uint32(r.get(clbAddr+cdPort*0x1000+4, 4)); prdbc != 36 {
		t.Errorf("PRDBC %d", prdbc)
	}
	// A byte count limit of 0 aborts a PIO data command.
	r.packet([]byte{0x12, 0, 0, 0, 36, 0}, false, 0, []seg{{dataAddr, 512}})
	if e, _ := r.tfd(); e != errABRT {
		t.Errorf("byte count 0: error %#x, want ABRT", e)
	}
}

func read10(lba uint32, n uint16) []byte {
	c := make([]byte, 12)
	c[0] = 0x28
	binary.BigEndian.PutUint32(c[2:], lba)
	binary.BigEndian.PutUint16(c[7:], n)
	return c
}

func TestATAPIRead(t *testing.T) {
	r, data := newCDRig(t)
	for _, tc := range []struct {
		name   string
		dma    bool
		lba, n int
		segs   []seg
	}{
		{"dma", true, 5, 3, []seg{{dataAddr, 1000}, {dataAddr + 0x1000, 5144}}},
		{"dma-chunks", true, 10, 150, []seg{{dataAddr, 150 * 2048}}},
		{"pio", false, 199, 1, []seg{{dataAddr, 2048}}},
		{"pio-chunks", false, 0, 100, []seg{{dataAddr, 100 * 2048}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.put(dataAddr, make([]byte, 400<<10))
			r.put(dataAddr+0x1000, make([]byte, 8192))
			r.packet(read10(uint32(tc.lba), uint16(tc.n)), tc.dma, 0xfffe, tc.segs)
			if e, st := r.tfd(); e != 0 || st != stREADY|stSEEK {
				t.Fatalf("error %#x status %#x", e, st)
			}
			var got []byte
			for _, s := range tc.segs {
				got = append(got, r.get(s.addr, int(s.n))...)
			}
			want := data[tc.lba*2048 : (tc.lba+tc.n)*2048]
			if !bytes.Equal(got, want) {
				t.Error("data differs from the medium")
			}
			if prdbc := binary.LittleEndian.Uint32(r.get(clbAddr+cdPort*0x1000+4, 4)); prdbc != uint32(tc.n*2048) {
				t.Errorf("PRDBC %d", prdbc)
			}
		})
	}
	// Past the end: ILLEGAL REQUEST, LBA OUT OF RANGE.
	r.packet(read10(199, 2), true, 0, []seg{{dataAddr, 4096}})
	if e, st := r.tfd(); e != 0x50 || st&stERR == 0 {
		t.Errorf("read past the end: error %#x status %#x", e, st)
	}
	r.packet([]byte{0x03, 0, 0, 0, 18, 0}, true, 0, []seg{{dataAddr, 18}})
	if s := r.get(dataAddr, 18); s[2] != 5 || s[12] != 0x21 {
		t.Errorf("sense % x, want key 5 asc 0x21", s)
	}
	// READ CD, raw frames: sync, header (MSF of LBA 7 + 150), data.
	rc := make([]byte, 12)
	rc[0] = 0xbe
	binary.BigEndian.PutUint32(rc[2:], 7)
	rc[8], rc[9] = 2, 0xf8
	r.packet(rc, true, 0, []seg{{dataAddr, 2 * 2352}})
	raw := r.get(dataAddr, 2*2352)
	if raw[0] != 0 || raw[1] != 0xff || raw[11] != 0 || raw[12] != 0 || raw[13] != 2 || raw[14] != 7 || raw[15] != 1 ||
		!bytes.Equal(raw[16:16+2048], data[7*2048:8*2048]) || !bytes.Equal(raw[2352+16:2352+16+2048], data[8*2048:9*2048]) {
		t.Errorf("raw frames: header % x", raw[:16])
	}
}

func tur() []byte { return make([]byte, 12) }

func TestATAPIMediaChange(t *testing.T) {
	r, _ := newCDRig(t)
	r.packet(tur(), false, 0, nil)
	if e, _ := r.tfd(); e != 0 {
		t.Fatalf("TEST UNIT READY: error %#x", e)
	}
	// The guest locks the tray: eject is refused, an event is queued.
	r.packet([]byte{0x1e, 0, 0, 0, 1, 0}, false, 0, nil)
	if _, err := r.c.OpenTray(cdPort, false); !errors.Is(err, ErrLocked) {
		t.Fatalf("eject of a locked tray: %v", err)
	}
	if open, locked, _ := r.c.TrayState(cdPort); open || !locked {
		t.Fatalf("tray open %v locked %v", open, locked)
	}
	old, err := r.c.OpenTray(cdPort, true)
	if err != nil || old == nil {
		t.Fatalf("forced eject: %v %v", old, err)
	}
	r.packet(tur(), false, 0, nil)
	if e, _ := r.tfd(); e != 0x20 {
		t.Errorf("TUR without a medium: error %#x, want NOT READY", e)
	}
	cd2, data2 := cdImage(t, 50, 2)
	if err := r.c.InsertMedium(cdPort, cd2); err != nil {
		t.Fatal(err)
	}
	// GET EVENT STATUS NOTIFICATION (polled, media class): new media.
	r.packet([]byte{0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8, 0}, true, 0, []seg{{dataAddr, 8}})
	if ev := r.get(dataAddr, 8); ev[4] != 2 || ev[5] != 2 {
		t.Errorf("event % x, want new media, medium present", ev)
	}
	r.packet(tur(), false, 0, nil)
	if e, _ := r.tfd(); e != 0x20 {
		t.Errorf("first TUR after the change: error %#x, want NOT READY", e)
	}
	r.packet(tur(), false, 0, nil)
	if e, _ := r.tfd(); e != 0x60 {
		t.Errorf("second TUR: error %#x, want UNIT ATTENTION", e)
	}
	// A data command under unit attention: MC and UNIT ATTENTION.
	r.packet(read10(0, 1), true, 0, []seg{{dataAddr, 2048}})
	if e, st := r.tfd(); e != errMC|0x60 || st&stERR == 0 {
		t.Errorf("READ under unit attention: error %#x status %#x", e, st)
	}
	r.packet([]byte{0x03, 0, 0, 0, 18, 0}, false, 18, []seg{{dataAddr, 18}})
	if s := r.get(dataAddr, 18); s[2] != 6 || s[12] != 0x28 {
		t.Errorf("sense % x, want UNIT ATTENTION, medium may have changed", s)
	}
	r.packet(read10(49, 1), true, 0, []seg{{dataAddr, 2048}})
	if e, _ := r.tfd(); e != 0 || !bytes.Equal(r.get(dataAddr, 2048), data2[49*2048:]) {
		t.Errorf("read of the new medium: error %#x", e)
	}
	// READ CAPACITY sees the new size.
	r.packet([]byte{0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}, true, 0, []seg{{dataAddr, 8}})
	if c := r.get(dataAddr, 8); binary.BigEndian.Uint32(c) != 49 || binary.BigEndian.Uint32(c[4:]) != 2048 {
		t.Errorf("READ CAPACITY % x", c)
	}
	if _, err := r.c.OpenTray(0, false); !errors.Is(err, ErrNotCD) {
		t.Errorf("eject of a disk port: %v", err)
	}
}

func TestATAPISnapshot(t *testing.T) {
	r, _ := newCDRig(t)
	r.packet([]byte{0x1e, 0, 0, 0, 1, 0}, false, 0, nil)
	snap, err := r.c.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r2, _ := newCDRig(t)
	if err := r2.c.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if _, locked, _ := r2.c.TrayState(cdPort); !locked {
		t.Error("the restored tray is not locked")
	}
	r3 := newRig(t) // a disk board: no CD-ROM on port 1
	if err := r3.c.Restore(snap); err == nil {
		t.Error("restore onto a controller without the CD-ROM drive succeeded")
	}
}

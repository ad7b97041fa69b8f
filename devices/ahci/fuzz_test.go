package ahci

import (
	"encoding/binary"
	"testing"
	"time"

	"godm/devices"
	"godm/memory"
)

// waitIdle waits until no command of port 0 runs (the fuzz commands are
// small: the image has 2048 sectors, so bigger transfers end at the range
// check).
func (r *rig) waitIdle(t *testing.T) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.c.mu.Lock()
		busy := r.c.p[0].running || r.c.p[0].inflight
		r.c.mu.Unlock()
		if !busy {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("port 0 still busy after 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// reuse makes a rig from an earlier iteration fresh: no command runs,
// the HBA is reset and guest memory is zero (building a rig per input,
// with its image file, costs more than the input).
func (r *rig) reuse(t *testing.T) {
	r.t = t
	r.waitIdle(t)
	r.c.fn.Reset()
	r.c.Reset()
	clear(r.mem.Mem)
}

// checkInvariants holds after every step whatever the guest did.
func (r *rig) checkInvariants(t *testing.T) {
	c := r.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ghc&ghcAE == 0 || c.ghc&^(ghcAE|ghcIE) != 0 {
		t.Fatalf("GHC %#x", c.ghc)
	}
	want := uint32(0)
	for i := range c.p {
		p := &c.p[i]
		if p.ie&^ieMask != 0 {
			t.Fatalf("port %d IE %#x", i, p.ie)
		}
		if p.is&p.ie != 0 {
			want |= 1 << i
		}
		if p.running && p.busy < 0 && p.job.tag < 0 {
			t.Fatalf("port %d runs a command without a slot", i)
		}
	}
	if c.is != want {
		t.Fatalf("HBA IS %#x, want %#x", c.is, want)
	}
	// With MSI off the INTx level follows IS and GHC.IE.
	if high := want != 0 && c.ghc&ghcIE != 0; high != c.line && !msiOn(c) {
		t.Fatalf("line %v, want %v", c.line, high)
	}
}

// msiOn reports the MSI capability's enable bit.
func msiOn(c *Controller) bool {
	ids, offs := c.fn.Capabilities()
	for i, id := range ids {
		if id == 0x05 {
			return c.fn.ConfigRead(uint32(offs[i])+2, 2)&1 != 0
		}
	}
	return false
}

// FuzzCommand runs one guest-written command slot: the header, command
// table and PRDT come from the input, so every decoder on the path (the
// header, the H2D and NCQ FISes, the PRDT cursor) sees hostile bytes.
func FuzzCommand(f *testing.F) {
	f.Add(h2d(ataReadDMAExt, 3, 2), uint16(0x0005), uint16(1), uint64(dataAddr), uint32(1023))
	f.Add(h2d(ataIdentify, 0, 0), uint16(0x0005), uint16(1), uint64(dataAddr), uint32(511))
	f.Add([]byte{0x27, 0x80, ataWriteFPDMA, 4, 1, 0, 0, 0x40, 0, 0, 0, 0, 3 << 3}, uint16(0x45), uint16(3), uint64(ramSize-100), uint32(0x3fffff))
	f.Add([]byte{0x27, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4}, uint16(5), uint16(0), uint64(0), uint32(0))
	f.Add(h2d(ataWriteDMA, 0, 0), uint16(0x45), uint16(0xffff), uint64(1<<63), uint32(0))
	r := newRig(f)
	f.Fuzz(func(t *testing.T, fis []byte, opts, prdtl uint16, dba uint64, dbc uint32) {
		r.reuse(t)
		r.start(0)
		r.pwr(0, pIE, 0xffffffff)
		r.wr(hostGHC, ghcIE)
		tbl := uint64(tblAddr)
		h := make([]byte, 32)
		binary.LittleEndian.PutUint16(h[0:], opts)
		binary.LittleEndian.PutUint16(h[2:], prdtl)
		binary.LittleEndian.PutUint64(h[8:], tbl)
		r.put(clbAddr, h)
		ft := make([]byte, 0x80)
		copy(ft, fis)
		r.put(tbl, ft)
		// Every entry the same: dba advances per entry.
		for i := 0; i < int(min(prdtl, 64)); i++ {
			e := make([]byte, 16)
			binary.LittleEndian.PutUint64(e[0:], dba+uint64(i)*uint64(dbc&0x3fffff+1))
			binary.LittleEndian.PutUint32(e[12:], dbc)
			r.put(tbl+0x80+uint64(i)*16, e)
		}
		r.pwr(0, pSACT, 1)
		r.pwr(0, pCI, 1)
		r.waitIdle(t)
		r.checkInvariants(t)
		// The port takes the next command: an IDENTIFY in slot 1.
		r.pwr(0, pIS, 0xffffffff)
		r.issue(0, 1, h2d(ataIdentify, 0, 0), false, []seg{{dataAddr, 512}})
		r.waitIdle(t)
		r.checkInvariants(t)
		if r.prd(0, pCI)&2 != 0 && r.prd(0, pCMD)&cmdST != 0 && r.prd(0, pTFD)&(stBUSY|stDRQ) == 0 {
			t.Fatalf("IDENTIFY after the fuzz command did not run: CI %#x TFD %#x", r.prd(0, pCI), r.prd(0, pTFD))
		}
	})
}

// FuzzRegisters writes and reads the ABAR and the index/data pair in any
// order, with command tables pointing anywhere.
func FuzzRegisters(f *testing.F) {
	f.Add([]byte{0x18, 0x01, 0x11, 0x00, 0x00, 0x00, 0x38, 0x01, 0x01, 0, 0, 0})
	f.Add([]byte{0x04, 0x00, 0x01, 0, 0, 0, 0x2c, 0x01, 0x01, 0, 0, 0, 0x2c, 0x01, 0, 0, 0, 0})
	r := newRig(f)
	f.Fuzz(func(t *testing.T, script []byte) {
		r.reuse(t)
		copy(r.mem.Mem[clbAddr:], script) // some header bytes from the input
		for len(script) >= 6 {
			op, reg, port := script[0], script[1], int(script[0]>>5)%Ports
			v := binary.LittleEndian.Uint32(script[2:6])
			script = script[6:]
			off := uint64(reg) &^ 3
			if op&1 != 0 {
				off = portBase + uint64(port)*portLen + uint64(reg)&0x7c
			}
			switch op >> 1 & 3 {
			case 0:
				r.wr(off, v)
			case 1:
				_ = abar{r.c}.Read(devices.Access{Offset: off + uint64(v&3), Size: 1 << (v >> 2 & 3)})
			case 2:
				idpBAR{r.c}.Write(devices.Access{Offset: idpOffset, Size: 4}, uint64(off))
				idpBAR{r.c}.Write(devices.Access{Offset: idpOffset + 4, Size: 4}, uint64(v))
			case 3:
				_ = r.mem.Write(memory.GPA(uint64(v)%ramSize), script[:min(len(script), 16)])
			}
			r.waitIdle(t)
			r.checkInvariants(t)
		}
	})
}

// FuzzRestore feeds hostile snapshot records to Restore.
func FuzzRestore(f *testing.F) {
	r := newRig(f)
	r.start(0)
	snap, err := r.c.Snapshot()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(snap)
	f.Fuzz(func(t *testing.T, b []byte) {
		r.reuse(t)
		if err := r.c.Restore(b); err != nil {
			return
		}
		r.checkInvariants(t)
		r.issue(0, 0, h2d(ataIdentify, 0, 0), false, []seg{{dataAddr, 512}})
		r.waitIdle(t)
		r.checkInvariants(t)
	})
}

// FuzzATAPI runs one guest-written PACKET command on a CD-ROM port: the
// ATAPI command, the feature (DMA, overlap), the byte count limit, the
// header's options and the PRDT come from the input; the port must then
// still take a TEST UNIT READY, and a media change between the two must
// not upset it.
func FuzzATAPI(f *testing.F) {
	f.Add([]byte{0x28, 0, 0, 0, 0, 3, 0, 0, 2}, byte(1), uint16(0), uint16(0x25), uint16(1), uint64(dataAddr), uint32(4095), false)
	f.Add([]byte{0xbe, 0, 0, 0, 0, 2, 0, 0, 2, 0xf8}, byte(0), uint16(3000), uint16(0x25), uint16(2), uint64(dataAddr), uint32(2351), true)
	f.Add([]byte{0x12, 0, 0, 0, 36}, byte(0), uint16(1), uint16(0x25), uint16(1), uint64(ramSize-10), uint32(0x3fffff), false)
	f.Add([]byte{0xad, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff}, byte(1), uint16(0), uint16(0x25), uint16(0xffff), uint64(1<<63), uint32(0), false)
	f.Add([]byte{0xa8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, byte(0), uint16(0xffff), uint16(0x05), uint16(1), uint64(dataAddr), uint32(100), true)
	r := &rig{t: f, mem: memory.NewFlat(0, ramSize)}
	c, err := New(Config{Memory: r.mem})
	if err != nil {
		f.Fatal(err)
	}
	r.c = c
	f.Cleanup(func() { c.Close() })
	cd, _ := cdImage(f, 64, 5)
	cd2, _ := cdImage(f, 8, 6)
	if err := c.Attach(0, DriveConfig{Drive: cd, CD: true}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, cdb []byte, feature byte, bcl, opts, prdtl uint16, dba uint64, dbc uint32, change bool) {
		r.reuse(t)
		r.start(0)
		r.pwr(0, pIE, 0xffffffff)
		r.wr(hostGHC, ghcIE)
		tbl := uint64(tblAddr)
		h := make([]byte, 32)
		binary.LittleEndian.PutUint16(h[0:], opts)
		binary.LittleEndian.PutUint16(h[2:], prdtl)
		binary.LittleEndian.PutUint64(h[8:], tbl)
		r.put(clbAddr, h)
		ft := make([]byte, 0x80)
		copy(ft, []byte{0x27, 0x80, ataPacket, feature, 0, byte(bcl), byte(bcl >> 8), 0xa0})
		copy(ft[acmdOff:acmdOff+16], cdb)
		r.put(tbl, ft)
		for i := 0; i < int(min(prdtl, 64)); i++ {
			e := make([]byte, 16)
			binary.LittleEndian.PutUint64(e[0:], dba+uint64(i)*uint64(dbc&0x3fffff+1))
			binary.LittleEndian.PutUint32(e[12:], dbc)
			r.put(tbl+0x80+uint64(i)*16, e)
		}
		r.pwr(0, pCI, 1)
		if change {
			// An eject (forced: the guest may have locked the tray)
			// and an insert while the command may still run.
			if old, err := c.OpenTray(0, true); err == nil {
				next := cd2
				if old == cd2 {
					next = cd
				}
				if err := c.InsertMedium(0, next); err != nil {
					t.Fatalf("insert: %v", err)
				}
			}
		}
		r.waitIdle(t)
		r.checkInvariants(t)
		r.pwr(0, pIS, 0xffffffff)
		r.issue(0, 1, []byte{0x27, 0x80, ataPacket, 0, 0, 0, 0, 0xa0}, false, nil)
		r.waitIdle(t)
		r.checkInvariants(t)
		if r.prd(0, pCI)&2 != 0 && r.prd(0, pCMD)&cmdST != 0 && r.prd(0, pTFD)&(stBUSY|stDRQ) == 0 {
			t.Fatalf("TEST UNIT READY after the fuzz command did not run: CI %#x TFD %#x", r.prd(0, pCI), r.prd(0, pTFD))
		}
	})
}

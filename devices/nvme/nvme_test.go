package nvme

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"godm/devices"
	"godm/devices/savestate"
	"godm/internal/testfake"
	"godm/memory"
)

func TestRegistersAtReset(t *testing.T) {
	r := newRig(t)
	h := r.c.Function().Header()
	if h.VendorID != 0x1b36 || h.DeviceID != 0x0010 || h.Class != 0x010802 || h.Revision != 2 {
		t.Errorf("identity %+v", h)
	}
	capv := r.rd(regCAP, 8)
	if capv&0xffff != 0x7ff || capv>>16&1 != 1 || capv>>24&0xff != 0xf || capv>>32&0xf != 0 || capv>>37&1 != 1 || capv>>52&0xf != 4 || capv>>48&0xf != 0 {
		t.Errorf("CAP %#x", capv)
	}
	if lo, hi := r.rd(regCAP, 4), r.rd(regCAP+4, 4); lo|hi<<32 != capv {
		t.Errorf("CAP halves %#x %#x", lo, hi)
	}
	if v := r.rd(regVS, 4); v != 0x10400 {
		t.Errorf("VS %#x", v)
	}
	for _, off := range []uint64{regCC, regCSTS, regAQA, regASQ, regACQ, regINTMS} {
		if v := r.rd(off, 4); v != 0 {
			t.Errorf("register %#x = %#x at reset", off, v)
		}
	}
	// The MSI-X capability points into BAR0 (table 0x2000, PBA 0x3000).
	ids, offs := r.c.Function().Capabilities()
	found := false
	for i, id := range ids {
		if id == 0x11 {
			found = true
			at := uint32(offs[i])
			if v := r.c.Function().ConfigRead(at+2, 2); v != Vectors-1 {
				t.Errorf("MSI-X table size %d", v+1)
			}
			if v := r.c.Function().ConfigRead(at+4, 4); v != 0x2000 {
				t.Errorf("MSI-X table %#x", v)
			}
			if v := r.c.Function().ConfigRead(at+8, 4); v != 0x3000 {
				t.Errorf("MSI-X PBA %#x", v)
			}
		}
	}
	if !found {
		t.Error("no MSI-X capability")
	}
	// ASQ/ACQ keep their page offset bits clear; AQA its reserved bits.
	r.wr(regASQ, 8, 0x123456789abc)
	r.wr(regAQA, 4, 0xffffffff)
	if v := r.rd(regASQ, 8); v != 0x123456789000 {
		t.Errorf("ASQ %#x", v)
	}
	if v := r.rd(regAQA, 4); v != 0x0fff0fff {
		t.Errorf("AQA %#x", v)
	}
}

func TestAdminInit(t *testing.T) {
	r := newRig(t)
	r.enable()
	// Identify Controller.
	e := r.admin(newCmd(aIdentify).prp(dataAt, 0).dw(10, 1))
	if e.status != 0 || e.sqhd != 1 || e.sqid != 0 {
		t.Fatalf("identify controller: %+v", e)
	}
	id := r.get(dataAt, 4096)
	le := binary.LittleEndian
	if le.Uint16(id[0:]) != 0x1b36 || le.Uint16(id[2:]) != 0x1af4 {
		t.Errorf("VID/SSVID %x", id[0:4])
	}
	if sn := string(id[4:24]); sn != "GODM-NVME-1         " {
		t.Errorf("SN %q", sn)
	}
	if mn := strings.TrimRight(string(id[24:64]), " "); mn != "QEMU NVMe Ctrl" {
		t.Errorf("MN %q", mn)
	}
	if id[77] != mdts || le.Uint32(id[80:]) != 0x10400 || id[512] != 0x66 || id[513] != 0x44 || le.Uint32(id[516:]) != 256 {
		t.Errorf("MDTS %d VER %#x SQES %#x CQES %#x NN %d", id[77], le.Uint32(id[80:]), id[512], id[513], le.Uint32(id[516:]))
	}
	if le.Uint32(id[536:]) != 0 {
		t.Error("SGLS claims SGL support")
	}
	if id[525]&1 != 1 || le.Uint16(id[520:])&0xc != 0xc {
		t.Errorf("VWC %#x ONCS %#x", id[525], le.Uint16(id[520:]))
	}
	if !bytes.HasPrefix(id[768:], []byte("nqn.2019-08.org.qemu:GODM-NVME-1\x00")) {
		t.Errorf("SUBNQN %q", id[768:800])
	}
	// Identify Namespace 1, into a buffer crossing a page (PRP2).
	if e := r.admin(newCmd(aIdentify).dw(1, 1).prp(dataAt+0x800, dataAt+0x1000).dw(10, 0)); e.status != 0 {
		t.Fatalf("identify namespace: %#x", e.status)
	}
	ns := r.get(dataAt+0x800, 4096)
	if le.Uint64(ns[0:]) != diskSize/512 || le.Uint64(ns[8:]) != diskSize/512 || ns[25] != 0 || ns[26] != 0 || ns[130] != 9 {
		t.Errorf("NSZE %d NCAP %d NLBAF %d FLBAS %d LBADS %d", le.Uint64(ns[0:]), le.Uint64(ns[8:]), ns[25], ns[26], ns[130])
	}
	// Active namespace list: 1 after 0, none after 1; FFFFFFFEh refused.
	if e := r.admin(newCmd(aIdentify).prp(dataAt, 0).dw(10, 2)); e.status != 0 || le.Uint32(r.get(dataAt, 8)) != 1 || le.Uint32(r.get(dataAt+4, 4)) != 0 {
		t.Errorf("active list: %#x %x", e.status, r.get(dataAt, 8))
	}
	if e := r.admin(newCmd(aIdentify).dw(1, 1).prp(dataAt, 0).dw(10, 2)); e.status != 0 || le.Uint32(r.get(dataAt, 4)) != 0 {
		t.Errorf("active list after 1: %#x", e.status)
	}
	if e := r.admin(newCmd(aIdentify).dw(1, 0xfffffffe).prp(dataAt, 0).dw(10, 2)); e.status != sInvalidNS|dnr {
		t.Errorf("active list after FFFFFFFEh: %#x", e.status)
	}
	// Descriptor list: one UUID.
	if e := r.admin(newCmd(aIdentify).dw(1, 1).prp(dataAt, 0).dw(10, 3)); e.status != 0 || r.get(dataAt, 2)[0] != 3 || r.get(dataAt, 2)[1] != 16 {
		t.Errorf("descriptors: %#x %x", e.status, r.get(dataAt, 4))
	}
	for _, tc := range []struct {
		c    *cmd
		want uint16
		what string
	}{
		{newCmd(aIdentify).dw(1, 257).prp(dataAt, 0).dw(10, 0), sInvalidNS | dnr, "namespace 257"},
		{newCmd(aIdentify).prp(dataAt, 0).dw(10, 0x10), sInvalidField | dnr, "CNS 10h"},
		{newCmd(aIdentify).prp(dataAt+1, 0).dw(10, 1), sPRPOffset | dnr, "unaligned PRP1"},
		{newCmd(aIdentify).prp(dataAt+0x800, dataAt+0x1004).dw(10, 1), sPRPOffset | dnr, "PRP2 with an offset"},
		{newCmd(aIdentify).prp(memSize+0x1000, 0).dw(10, 1), sDataTransfer | dnr, "PRP1 beyond guest RAM"},
		{newCmd(0x7f), sInvalidOpcode | dnr, "opcode 7fh"},
		{newCmd(0x80), sInvalidOpcode | dnr, "format NVM"},
		{newCmd(aIdentify).dw(0, 1<<14).prp(dataAt, 0).dw(10, 1), sInvalidField | dnr, "PSDT (SGL)"},
		{newCmd(aGetFeature).dw(10, 0x77), sInvalidField | dnr, "feature 77h"},
		{newCmd(aSetFeature).dw(10, fNumQueues).dw(11, 0xffff), sInvalidField | dnr, "65536 SQs"},
		{newCmd(aSetFeature).dw(10, 1<<31|fArbitration), sNotSaveable | dnr, "saving"},
		{newCmd(aGetLogPage).prp(dataAt, 0).dw(10, 127<<16|0x77), sInvalidLogPage | dnr, "log 77h"},
		{newCmd(aGetLogPage).prp(dataAt, 0).dw(10, 127<<16|logSMART).dw(12, 1024), sInvalidField | dnr, "SMART from 1024"},
		{newCmd(aGetLogPage).prp(dataAt, 0).dw(10, 0xffff<<16|logSMART).dw(11, 0xffff), sInvalidField | dnr, "16 GiB log"},
	} {
		if e := r.admin(tc.c); e.status != tc.want {
			t.Errorf("%s: status %#x, want %#x", tc.what, e.status, tc.want)
		}
	}
	// Number of queues: 64 each; interrupt coalescing and the write cache
	// are kept.
	if e := r.admin(newCmd(aSetFeature).dw(10, fNumQueues).dw(11, 3<<16|3)); e.status != 0 || e.dw0 != 63<<16|63 {
		t.Errorf("number of queues: %+v", e)
	}
	r.admin(newCmd(aSetFeature).dw(10, fIntCoalesce).dw(11, 0x0a05))
	if e := r.admin(newCmd(aGetFeature).dw(10, fIntCoalesce)); e.dw0 != 0x0a05 {
		t.Errorf("coalescing reads %#x", e.dw0)
	}
	r.admin(newCmd(aSetFeature).dw(10, fWriteCache).dw(11, 0))
	if e := r.admin(newCmd(aGetFeature).dw(10, fWriteCache)); e.status != 0 || e.dw0 != 0 {
		t.Errorf("write cache %+v", e)
	}
	r.admin(newCmd(aSetFeature).dw(10, fWriteCache).dw(11, 1))
	// SMART log.
	if e := r.admin(newCmd(aGetLogPage).dw(1, 0xffffffff).prp(dataAt, 0).dw(10, 127<<16|logSMART)); e.status != 0 {
		t.Errorf("SMART: %#x", e.status)
	} else if s := r.get(dataAt, 512); le.Uint16(s[1:]) != temp || s[3] != 100 {
		t.Errorf("SMART temperature %#x spare %d", le.Uint16(s[1:]), s[3])
	}
	if e := r.admin(newCmd(aGetLogPage).prp(dataAt, 0).dw(10, 15<<16|logError)); e.status != 0 {
		t.Errorf("error log: %#x", e.status)
	}
	// Queue creation and its errors.
	for _, tc := range []struct {
		c    *cmd
		want uint16
		what string
	}{
		{newCmd(aCreateCQ).prp(cq1At, 0).dw(10, 15<<16|0).dw(11, 3), sInvalidQID | dnr, "CQ 0"},
		{newCmd(aCreateCQ).prp(cq1At, 0).dw(10, 15<<16|65).dw(11, 3), sInvalidQID | dnr, "CQ 65"},
		{newCmd(aCreateCQ).prp(cq1At, 0).dw(10, 0<<16|1).dw(11, 3), sInvalidQSize | dnr, "CQ of 1 entry"},
		{newCmd(aCreateCQ).prp(cq1At, 0).dw(10, 0x800<<16|1).dw(11, 3), sInvalidQSize | dnr, "CQ of 2049 entries"},
		{newCmd(aCreateCQ).prp(cq1At+8, 0).dw(10, 15<<16|1).dw(11, 3), sPRPOffset | dnr, "CQ off a page"},
		{newCmd(aCreateCQ).prp(cq1At, 0).dw(10, 15<<16|1).dw(11, 2), sInvalidField | dnr, "non-contiguous CQ"},
		{newCmd(aCreateCQ).prp(cq1At, 0).dw(10, 15<<16|1).dw(11, 1<<16|3), sInvalidIV | dnr, "vector 1 without MSI-X"},
		{newCmd(aCreateSQ).prp(sq1At, 0).dw(10, 15<<16|1).dw(11, 1<<16|1), sCQInvalid | dnr, "SQ on a missing CQ"},
		{newCmd(aCreateSQ).prp(sq1At, 0).dw(10, 15<<16|1).dw(11, 0<<16|1), sCQInvalid | dnr, "SQ on the admin CQ"},
		{newCmd(aDeleteSQ).dw(10, 1), sInvalidQID | dnr, "delete a missing SQ"},
		{newCmd(aDeleteSQ).dw(10, 0), sInvalidQID | dnr, "delete the admin SQ"},
		{newCmd(aDeleteCQ).dw(10, 3), sInvalidQID | dnr, "delete a missing CQ"},
	} {
		if e := r.admin(tc.c); e.status != tc.want {
			t.Errorf("%s: status %#x, want %#x", tc.what, e.status, tc.want)
		}
	}
	r.ioQueues(0)
	if e := r.admin(newCmd(aCreateCQ).prp(cq1At, 0).dw(10, 15<<16|1).dw(11, 3)); e.status != sInvalidQID|dnr {
		t.Errorf("CQ 1 twice: %#x", e.status)
	}
	if e := r.admin(newCmd(aDeleteCQ).dw(10, 1)); e.status != sInvalidQDelete {
		t.Errorf("deleting a CQ in use: %#x", e.status)
	}
	if e := r.admin(newCmd(aSetFeature).dw(10, fNumQueues).dw(11, 3<<16|3)); e.status != sCmdSeqError|dnr {
		t.Errorf("number of queues after creation: %#x", e.status)
	}
	// Abort never aborts; AERs are held, the fifth exceeds AERL.
	if e := r.admin(newCmd(aAbort).dw(10, 5)); e.status != 0 || e.dw0 != 1 {
		t.Errorf("abort: %+v", e)
	}
	for range 4 {
		r.submit(0, newCmd(aAsyncEvent))
	}
	if e := r.admin(newCmd(aAsyncEvent)); e.status != sAERLimit|dnr {
		t.Errorf("fifth AER: %+v", e)
	}
	if e := r.admin(newCmd(aDeleteSQ).dw(10, 1)); e.status != 0 {
		t.Errorf("delete SQ: %#x", e.status)
	}
	if e := r.admin(newCmd(aDeleteCQ).dw(10, 1)); e.status != 0 {
		t.Errorf("delete CQ: %#x", e.status)
	}
	// Shutdown: SHST complete; then disable: not ready, queues gone.
	r.wr(regCC, 4, r.rd(regCC, 4)|1<<14)
	if v := r.rd(regCSTS, 4); v&0xc != 8 || v&1 != 1 {
		t.Errorf("CSTS after shutdown %#x", v)
	}
	r.wr(regCC, 4, 0)
	if v := r.rd(regCSTS, 4); v != 0 {
		t.Errorf("CSTS after disable %#x", v)
	}
	if r.c.sqs[0].valid || r.c.cqs[0].valid || r.c.naer != 0 {
		t.Error("disable left queues or AERs")
	}
	// A second bring-up works the same.
	r.enable()
	if e := r.admin(newCmd(aIdentify).prp(dataAt, 0).dw(10, 1)); e.status != 0 || e.sqhd != 1 {
		t.Errorf("identify after re-enable: %+v", e)
	}
}

func TestBadEnable(t *testing.T) {
	for _, tc := range []struct {
		what string
		set  func(r *rig)
	}{
		{"AQA 0", func(r *rig) { r.wr(regAQA, 4, 0) }},
		{"MPS 5", func(r *rig) { r.wr(regCC, 4, 5<<7|6<<16|4<<20) }},
		{"IOSQES 7", func(r *rig) { r.wr(regCC, 4, 7<<16|4<<20) }},
		{"CSS 1", func(r *rig) { r.wr(regCC, 4, 1<<4|6<<16|4<<20) }},
		{"ACQ off a 64 KiB page", func(r *rig) { r.wr(regCC, 4, 4<<7|6<<16|4<<20); r.wr(regACQ, 8, 0x21000) }},
	} {
		r := newRig(t)
		r.wr(regAQA, 4, 15<<16|15)
		r.wr(regASQ, 8, asqAt)
		r.wr(regACQ, 8, acqAt)
		r.wr(regCC, 4, 6<<16|4<<20)
		tc.set(r)
		r.wr(regCC, 4, r.rd(regCC, 4)|1)
		if v := r.rd(regCSTS, 4); v != cstsFS {
			t.Errorf("%s: CSTS %#x, want CFS", tc.what, v)
		}
		// Doorbells do nothing; a disable clears CFS.
		r.wr(regDoorbell, 4, 1)
		r.wr(regCC, 4, 0)
		if v := r.rd(regCSTS, 4); v != 0 {
			t.Errorf("%s: CSTS after disable %#x", tc.what, v)
		}
	}
}

func testRoundTrip(t *testing.T, format string) {
	r := newRigFormat(t, format, false, true)
	r.enable()
	r.ioQueues(0)
	// 64 KiB write from a PRP1 with an offset, PRP2 a list of 16 pages.
	pat := make([]byte, 64<<10)
	for i := range pat {
		pat[i] = byte(i*7 + i>>9)
	}
	r.put(dataAt+0x200, pat)
	var list [17]uint64
	for i := range list {
		list[i] = dataAt + uint64(i+1)*0x1000
	}
	lb := make([]byte, 8*len(list))
	for i, v := range list {
		binary.LittleEndian.PutUint64(lb[8*i:], v)
	}
	r.put(listAt, lb)
	if e := r.run(1, rw(oWrite, 100, 128, dataAt+0x200, listAt)); e.status != 0 || e.sqhd != 1 {
		t.Fatalf("write: %+v", e)
	}
	if got := r.image(100*512, len(pat)); !bytes.Equal(got, pat) {
		t.Fatal("the image does not hold what was written")
	}
	// Read it back into one page plus a chained list: the first list
	// page holds its last entries, the last of them pointing to a second
	// list page.
	const rbuf = 0x400000
	first := uint64(listAt + 0x1000 - 8*4) // 4 entries left in this page
	var ents []uint64
	for i := 1; i <= 16; i++ {
		ents = append(ents, rbuf+uint64(i)*0x1000)
	}
	put := func(a uint64, v uint64) {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], v)
		r.put(a, b[:])
	}
	for i := range 3 {
		put(first+uint64(i)*8, ents[i])
	}
	put(first+24, listAt+0x2000)
	for i, v := range ents[3:] {
		put(listAt+0x2000+uint64(i)*8, v)
	}
	if e := r.run(1, rw(oRead, 100, 128, rbuf, first)); e.status != 0 {
		t.Fatalf("read: %+v", e)
	}
	if got := r.get(rbuf, len(pat)); !bytes.Equal(got, pat) {
		t.Fatal("read back differs")
	}
	// Flush (NSID 1 and all), Write Zeroes, DSM deallocate.
	for _, ns := range []uint32{1, 0xffffffff} {
		if e := r.run(1, newCmd(oFlush).dw(1, ns)); e.status != 0 {
			t.Errorf("flush %#x: %#x", ns, e.status)
		}
	}
	if e := r.run(1, newCmd(oWriteZeroes).dw(1, 1).dw(10, 100).dw(12, 7)); e.status != 0 {
		t.Fatalf("write zeroes: %#x", e.status)
	}
	if got := r.image(100*512, 8*512); !bytes.Equal(got, make([]byte, 8*512)) {
		t.Error("write zeroes left data")
	}
	if got := r.image(108*512, 512); !bytes.Equal(got, pat[8*512:9*512]) {
		t.Error("write zeroes went past its range")
	}
	rng := make([]byte, 32)
	binary.LittleEndian.PutUint32(rng[4:], 8)
	binary.LittleEndian.PutUint64(rng[8:], 112)
	binary.LittleEndian.PutUint32(rng[16+4:], 0)
	r.put(dataAt, rng)
	if e := r.run(1, newCmd(oDSM).dw(1, 1).prp(dataAt, 0).dw(10, 1).dw(11, 4)); e.status != 0 {
		t.Fatalf("DSM: %#x", e.status)
	}
	// SMART counts the commands.
	if e := r.admin(newCmd(aGetLogPage).prp(dataAt, 0).dw(10, 127<<16|logSMART)); e.status != 0 {
		t.Fatal(e.status)
	}
	s := r.get(dataAt, 512)
	if binary.LittleEndian.Uint64(s[64:]) != 1 || binary.LittleEndian.Uint64(s[80:]) != 2 {
		t.Errorf("SMART read/write commands %d/%d", binary.LittleEndian.Uint64(s[64:]), binary.LittleEndian.Uint64(s[80:]))
	}
}

func TestRoundTripRaw(t *testing.T)   { testRoundTrip(t, "raw") }
func TestRoundTripQcow2(t *testing.T) { testRoundTrip(t, "qcow2") }

func TestHostileIO(t *testing.T) {
	r := newRig(t)
	r.enable()
	r.ioQueues(0)
	loop := uint64(listAt + 0x1000 - 8) // the page's last entry points at itself
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], loop)
	r.put(loop, b[:])
	binary.LittleEndian.PutUint64(b[:], dataAt+0x10)
	r.put(listAt+0x3000, b[:])
	for _, tc := range []struct {
		c    *cmd
		want uint16
		what string
	}{
		{rw(oRead, diskSize/512, 1, dataAt, 0), sLBARange | dnr, "read past the end"},
		{rw(oRead, diskSize/512-1, 2, dataAt, 0), sLBARange | dnr, "read across the end"},
		{rw(oRead, 1<<63, 1, dataAt, 0), sLBARange | dnr, "huge LBA"},
		{rw(oRead, 0, 257, dataAt, listAt), sInvalidField | dnr, "beyond MDTS"},
		{rw(oRead, 0, 1, dataAt+2, 0), sPRPOffset | dnr, "PRP1 not dword-aligned"},
		{rw(oRead, 0, 2, 0xfffffffffffffe00, 0), sInvalidField | dnr, "PRP1 wrapping the address space"},
		{rw(oRead, 0, 24, dataAt, loop), sInvalidField | dnr, "PRP list loop"},
		{rw(oRead, 0, 24, dataAt, listAt+0x3000), sPRPOffset | dnr, "PRP entry with an offset"},
		{rw(oRead, 0, 24, dataAt, listAt+0x3004), sPRPOffset | dnr, "PRP list not qword-aligned"},
		{rw(oRead, 0, 24, dataAt, memSize+0x1000), sDataTransfer | dnr, "PRP list beyond guest RAM"},
		{rw(oRead, 0, 2, memSize-0x200, memSize), sDataTransfer | dnr, "PRP2 beyond RAM"},
		{rw(oWrite, 0, 1, memSize+0x1000, 0), sDataTransfer | dnr, "write from beyond RAM"},
		{rw(oRead, 0, 1, dataAt, 0).dw(1, 2), sInvalidField | dnr, "inactive namespace 2"},
		{rw(oRead, 0, 1, dataAt, 0).dw(1, 257), sInvalidNS | dnr, "namespace 257"},
		{rw(oRead, 0, 1, dataAt, 0).dw(1, 0), sInvalidNS | dnr, "namespace 0"},
		{rw(oRead, 0, 1, dataAt, 0).dw(0, 1<<15), sInvalidField | dnr, "SGL"},
		{rw(oRead, 0, 1, dataAt, 0).dw(0, 1<<8), sInvalidField | dnr, "fused"},
		{newCmd(0x05), sInvalidOpcode | dnr, "compare"},
		{newCmd(oFlush).dw(1, 7), sInvalidNS | dnr, "flush namespace 7"},
		{newCmd(oWriteZeroes).dw(1, 1).dw(10, diskSize/512-1).dw(12, 1), sLBARange | dnr, "write zeroes across the end"},
		{newCmd(oDSM).dw(1, 1).prp(memSize, 0).dw(11, 4), sDataTransfer | dnr, "DSM ranges beyond RAM"},
	} {
		if e := r.run(1, tc.c); e.status != tc.want {
			t.Errorf("%s: status %#x, want %#x", tc.what, e.status, tc.want)
		}
	}
	rng := make([]byte, 16)
	binary.LittleEndian.PutUint32(rng[4:], 16)
	binary.LittleEndian.PutUint64(rng[8:], diskSize/512-8)
	r.put(dataAt, rng)
	if e := r.run(1, newCmd(oDSM).dw(1, 1).prp(dataAt, 0).dw(11, 4)); e.status != sLBARange|dnr {
		t.Errorf("DSM past the end: %#x", e.status)
	}
	// Doorbells: a tail beyond the queue, a missing queue, misaligned, a
	// CQ head beyond the queue are ignored and counted.
	before := r.c.BadDoorbells()
	r.wr(regDoorbell+8, 4, ioQ)
	r.wr(regDoorbell+8*9, 4, 1)
	r.wr(regDoorbell+8*9+4, 4, 1)
	r.wr(regDoorbell+12, 4, ioQ+5)
	r.wr(regDoorbell+2, 2, 1)
	r.wr(doorbellEnd+0x100, 4, 1)
	if got := r.c.BadDoorbells() - before; got != 4 {
		t.Errorf("%d bad doorbells counted, want 4", got)
	}
	// The queue still works.
	if e := r.run(1, rw(oRead, 0, 1, dataAt, 0)); e.status != 0 {
		t.Errorf("read after bad doorbells: %#x", e.status)
	}
	// A submission queue beyond guest RAM: the fetch fails, CFS.
	if e := r.admin(newCmd(aCreateSQ).prp(memSize+0x10000, 0).dw(10, 15<<16|2).dw(11, 1<<16|1)); e.status != 0 {
		t.Fatalf("create SQ 2: %#x", e.status)
	}
	r.wr(regDoorbell+16, 4, 1)
	if v := r.rd(regCSTS, 4); v&cstsFS == 0 {
		t.Errorf("CSTS %#x after fetching from beyond RAM", v)
	}
}

func TestReadOnlyNamespace(t *testing.T) {
	r := newRigFormat(t, "raw", true, true)
	r.enable()
	r.ioQueues(0)
	if e := r.run(1, rw(oWrite, 0, 1, dataAt, 0)); e.status != sNSWriteProtect|dnr {
		t.Errorf("write: %#x", e.status)
	}
	if e := r.run(1, rw(oRead, 0, 1, dataAt, 0)); e.status != 0 {
		t.Errorf("read: %#x", e.status)
	}
	r.admin(newCmd(aIdentify).dw(1, 1).prp(dataAt, 0))
	if r.get(dataAt+99, 1)[0] != 1 {
		t.Error("NSATTR does not say write protected")
	}
}

// TestCQFullWaits fills a 4-entry CQ: completions wait for the head
// doorbell, in order, and SQ head moves in them.
func TestCQFullWaits(t *testing.T) {
	r := newRig(t)
	r.enable()
	if e := r.admin(newCmd(aCreateCQ).prp(cq1At, 0).dw(10, 3<<16|1).dw(11, 1)); e.status != 0 {
		t.Fatal(e.status)
	}
	if e := r.admin(newCmd(aCreateSQ).prp(sq1At, 0).dw(10, 15<<16|1).dw(11, 1<<16|1)); e.status != 0 {
		t.Fatal(e.status)
	}
	r.sqSize[1], r.sqBase[1] = 16, sq1At
	r.cqSize[1], r.cqBase[1], r.phase[1] = 4, cq1At, true
	var cids []uint16
	for i := range 8 {
		cids = append(cids, r.submit(1, rw(oRead, uint64(i), 1, dataAt+uint64(i)*0x1000, 0)))
	}
	// Three fit (one slot stays empty).
	testfake.WaitFor(t, 5*time.Second, "three completions", func() bool {
		r.c.mu.Lock()
		defer r.c.mu.Unlock()
		return r.c.cqs[1].tail == 3
	})
	// Completions come in the order the block layer finished them.
	want := map[uint16]int{}
	for i, c := range cids {
		want[c] = i
	}
	for range 8 {
		e := r.reap(1)
		i, ok := want[e.cid]
		if !ok || e.status != 0 {
			t.Fatalf("completion %+v: unknown or failed", e)
		}
		delete(want, e.cid)
		if got := r.get(dataAt+uint64(i)*0x1000, 512); !bytes.Equal(got, r.image(i*512, 512)) {
			t.Errorf("read %d differs", i)
		}
	}
}

func TestINTxAndMask(t *testing.T) {
	r := newRig(t)
	r.enable()
	pin := r.rec.Pin(4, 0, 1)
	r.submit(0, newCmd(aIdentify).prp(dataAt, 0).dw(10, 1))
	if !pin.Level() {
		t.Fatal("INTx not raised by an admin completion")
	}
	r.wr(regINTMS, 4, 1)
	if pin.Level() || r.rd(regINTMC, 4) != 1 {
		t.Error("INTMS bit 0 does not mask")
	}
	r.wr(regINTMC, 4, 1)
	if !pin.Level() {
		t.Error("INTMC does not unmask")
	}
	r.reap(0)
	if pin.Level() {
		t.Error("INTx still high with the CQ consumed")
	}
}

func TestMSIX(t *testing.T) {
	r := newRig(t)
	// Vector 2 in the table in BAR0; MSI-X on.
	r.wr(msixTableOff+2*16, 4, 0xfee00000)
	r.wr(msixTableOff+2*16+8, 4, 0x4062)
	r.wr(msixTableOff+2*16+12, 4, 0)
	r.wr(msixTableOff+0*16+12, 4, 0)
	ids, offs := r.c.Function().Capabilities()
	for i, id := range ids {
		if id == 0x11 {
			r.cfg(uint32(offs[i])+2, 2, 0x8000)
		}
	}
	r.enable()
	r.ioQueues(2)
	r.rec.TakeMSIs()
	if e := r.run(1, rw(oRead, 0, 1, dataAt, 0)); e.status != 0 {
		t.Fatal(e.status)
	}
	testfake.WaitFor(t, 5*time.Second, "the CQ's MSI", func() bool { return len(r.rec.MSIs()) > 0 })
	if m := r.rec.TakeMSIs(); len(m) != 1 || m[0].Data != 0x4062 {
		t.Errorf("MSIs %+v", m)
	}
	if r.rec.Pin(4, 0, 1).Level() {
		t.Error("INTx with MSI-X on")
	}
	if e := r.admin(newCmd(aCreateCQ).prp(cq1At+0x10000, 0).dw(10, 15<<16|2).dw(11, 65<<16|3)); e.status != sInvalidIV|dnr {
		t.Errorf("vector 65: %#x", e.status)
	}
}

// TestSnapshotRestore saves a controller with I/O queues and completions
// waiting for room, restores it into a fresh one, which goes on.
func TestSnapshotRestore(t *testing.T) {
	r := newRig(t)
	r.enable()
	if e := r.admin(newCmd(aCreateCQ).prp(cq1At, 0).dw(10, 1<<16|1).dw(11, 1)); e.status != 0 {
		t.Fatal(e.status)
	}
	if e := r.admin(newCmd(aCreateSQ).prp(sq1At, 0).dw(10, 15<<16|1).dw(11, 1<<16|1)); e.status != 0 {
		t.Fatal(e.status)
	}
	r.sqSize[1], r.sqBase[1] = 16, sq1At
	r.cqSize[1], r.cqBase[1], r.phase[1] = 2, cq1At, true
	var cids []uint16
	for i := range 3 {
		cids = append(cids, r.submit(1, rw(oRead, uint64(i), 1, dataAt+uint64(i)*0x1000, 0)))
	}
	r.submit(0, newCmd(aAsyncEvent))
	r.c.Pause()
	var w savestate.Writer
	if err := r.c.WriteState(&w); err != nil {
		t.Fatal(err)
	}
	// A fresh controller on the same memory and image.
	r2 := newRig(t)
	r2.mem = r.mem
	r2.c.mem = r.mem
	if err := r2.c.ReadState(savestate.NewReader(w.Out())); err != nil {
		t.Fatal(err)
	}
	r2.sqSize, r2.sqBase, r2.sqTail = r.sqSize, r.sqBase, r.sqTail
	r2.cqSize, r2.cqBase, r2.cqHead, r2.phase = r.cqSize, r.cqBase, r.cqHead, r.phase
	r2.cid = r.cid
	if v := r2.rd(regCSTS, 4); v != 1 {
		t.Errorf("CSTS after restore %#x", v)
	}
	seen := map[uint16]bool{}
	for range 3 {
		e := r2.reap(1)
		seen[e.cid] = true
		if e.status != 0 {
			t.Fatalf("restored completion %+v", e)
		}
	}
	for _, c := range cids {
		if !seen[c] {
			t.Errorf("CID %d not completed after restore", c)
		}
	}
	if e := r2.run(1, rw(oRead, 9, 1, dataAt, 0)); e.status != 0 {
		t.Errorf("read after restore: %#x", e.status)
	}
	if r2.c.naer != 1 {
		t.Errorf("%d AERs held after restore", r2.c.naer)
	}
	// Hostile records are refused whole.
	out := w.Out()
	for i := range len(out) {
		bad := bytes.Clone(out)
		bad[i] ^= 0xff
		_ = r2.c.ReadState(savestate.NewReader(bad))
	}
	if err := r2.c.ReadState(savestate.NewReader(out[:len(out)/2])); err == nil {
		t.Error("a truncated record restored")
	}
}

// lean drives one command at a time on SQ/CQ 1 without allocating: the
// entry is built once, the CQ polled into a fixed buffer.
type lean struct {
	r    *rig
	h    bar0
	c    cmd
	e    [16]byte
	tail uint32
	head uint32
	ph   bool
}

func newLean(r *rig) *lean { return &lean{r: r, h: bar0{r.c}, ph: true} }

func (l *lean) do(op byte, slba uint64) {
	l.c.fillRW(op, slba, 8, dataAt, 0)
	_ = l.r.mem.Write(memory.GPA(sq1At+uint64(l.tail)*64), l.c[:])
	l.tail = (l.tail + 1) % ioQ
	l.h.Write(devices.Access{Offset: regDoorbell + 8, Size: 4}, uint64(l.tail))
	for {
		_ = l.r.mem.Read(memory.GPA(cq1At+uint64(l.head)*16), l.e[:])
		if (l.e[14]&1 != 0) == l.ph {
			break
		}
		runtime.Gosched()
	}
	if st := binary.LittleEndian.Uint16(l.e[14:]) >> 1; st != 0 {
		panic(fmt.Sprintf("status %#x", st))
	}
	l.head++
	if l.head == ioQ {
		l.head, l.ph = 0, !l.ph
	}
	l.h.Write(devices.Access{Offset: regDoorbell + 12, Size: 4}, uint64(l.head))
}

// TestIONoAlloc: read and write round trips allocate nothing once the
// slots have their buffers.
func TestIONoAlloc(t *testing.T) {
	r := newRig(t)
	r.enable()
	r.ioQueues(0)
	l := newLean(r)
	for i := range 2 * ioSlots {
		l.do(oRead, uint64(i))
	}
	op := byte(oRead)
	if n := testing.AllocsPerRun(100, func() {
		op ^= oRead ^ oWrite
		l.do(op, 8)
	}); n != 0 {
		t.Errorf("%.1f allocations per I/O round trip", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		_ = l.h.Read(devices.Access{Offset: regCSTS, Size: 4})
		_ = l.h.Read(devices.Access{Offset: regCAP, Size: 8})
		l.h.Write(devices.Access{Offset: regDoorbell + 12, Size: 4}, uint64(l.head)) // no new entries
	}); n != 0 {
		t.Errorf("%.1f allocations per register access", n)
	}
}

func BenchmarkRead4K(b *testing.B) {
	r := newRig(b)
	r.enable()
	r.ioQueues(0)
	l := newLean(r)
	b.ReportAllocs()
	b.SetBytes(4096)
	for i := 0; b.Loop(); i++ {
		l.do(oRead, uint64(i%1000)*8)
	}
}

func BenchmarkWrite4K(b *testing.B) {
	r := newRig(b)
	r.enable()
	r.ioQueues(0)
	l := newLean(r)
	b.ReportAllocs()
	b.SetBytes(4096)
	for i := 0; b.Loop(); i++ {
		l.do(oWrite, uint64(i%1000)*8)
	}
}

// TestTeardownWithIOInFlight deletes an SQ, then resets the controller,
// each with reads in flight: nothing of the old queue is posted, the
// slots all come back, and the controller serves a new queue pair.
func TestTeardownWithIOInFlight(t *testing.T) {
	r := newRig(t)
	r.enable()
	r.ioQueues(0)
	lb := make([]byte, 8*8)
	for i := range 8 {
		binary.LittleEndian.PutUint64(lb[8*i:], dataAt+0x100000+uint64(i)*0x1000)
	}
	r.put(listAt, lb)
	for i := range 20 {
		r.submit(1, rw(oRead, uint64(i)*8, 64, dataAt+uint64(i%4)*0x10000, listAt))
	}
	if e := r.admin(newCmd(aDeleteSQ).dw(10, 1)); e.status != 0 {
		t.Fatalf("delete SQ: %#x", e.status)
	}
	r.c.bq.Drain()
	r.c.mu.Lock()
	posted := r.c.cqs[1].tail
	r.c.mu.Unlock()
	// Whatever was posted before the deletion is there; nothing after.
	time.Sleep(10 * time.Millisecond)
	r.c.mu.Lock()
	if r.c.cqs[1].tail != posted || r.c.cqs[1].wait != nil {
		t.Error("completions of a deleted SQ posted")
	}
	r.c.mu.Unlock()
	if e := r.admin(newCmd(aCreateSQ).prp(sq1At, 0).dw(10, (ioQ-1)<<16|1).dw(11, 1<<16|1)); e.status != 0 {
		t.Fatalf("re-create SQ: %#x", e.status)
	}
	r.sqTail[1] = 0
	for range posted {
		r.reap(1)
	}
	if e := r.run(1, rw(oRead, 0, 1, dataAt, 0)); e.status != 0 {
		t.Fatalf("read on the new SQ: %+v", e)
	}
	// Reads in flight, then CC.EN 1 → 0.
	for i := range 20 {
		r.submit(1, rw(oRead, uint64(i)*8, 64, dataAt, listAt))
	}
	r.wr(regCC, 4, 0)
	r.c.bq.Drain()
	r.c.mu.Lock()
	free := len(r.c.ioFree) + len(r.c.adminFree)
	r.c.mu.Unlock()
	if free != ioSlots+adminSlots {
		t.Errorf("%d slots free after the reset, want %d", free, ioSlots+adminSlots)
	}
	r.enable()
	r.ioQueues(0)
	if e := r.run(1, rw(oRead, 0, 1, dataAt, 0)); e.status != 0 {
		t.Fatalf("read after the reset: %+v", e)
	}
}

// BenchmarkRead4KQD32 keeps 31 reads of 4 KiB in flight (a 32-entry
// queue holds 31): one doorbell per batch, every completion reaped.
func BenchmarkRead4KQD32(b *testing.B) {
	r := newRig(b)
	r.enable()
	r.ioQueues(0)
	l := newLean(r)
	const qd = ioQ - 1
	b.ReportAllocs()
	b.SetBytes(4096 * qd)
	for i := 0; b.Loop(); i++ {
		for j := range qd {
			l.c.fillRW(oRead, uint64((i*qd+j)%1000)*8, 8, dataAt+uint64(j)*0x1000, 0)
			_ = l.r.mem.Write(memory.GPA(sq1At+uint64(l.tail)*64), l.c[:])
			l.tail = (l.tail + 1) % ioQ
		}
		l.h.Write(devices.Access{Offset: regDoorbell + 8, Size: 4}, uint64(l.tail))
		for range qd {
			for {
				_ = l.r.mem.Read(memory.GPA(cq1At+uint64(l.head)*16), l.e[:])
				if (l.e[14]&1 != 0) == l.ph {
					break
				}
				runtime.Gosched()
			}
			l.head++
			if l.head == ioQ {
				l.head, l.ph = 0, !l.ph
			}
		}
		l.h.Write(devices.Access{Offset: regDoorbell + 12, Size: 4}, uint64(l.head))
	}
}

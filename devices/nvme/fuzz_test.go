package nvme

import (
	"encoding/binary"
	"testing"
	"time"

	"godm/devices/savestate"
)

// known are the status values the controller may answer.
var known = map[uint16]bool{}

func init() {
	for _, s := range []uint16{sInvalidOpcode, sInvalidField, sDataTransfer, sInternal, sInvalidNS, sCmdSeqError,
		sNSWriteProtect, sPRPOffset, sLBARange, sCQInvalid, sInvalidQID, sInvalidQSize, sAERLimit, sInvalidIV,
		sInvalidLogPage, sInvalidQDelete, sNotSaveable} {
		known[s|dnr] = true
	}
	known[sSuccess] = true
	known[sInvalidQDelete] = true
	known[sWriteFault] = true
	known[sUnrecoveredRead] = true
}

// fzList is where the input's PRP list page goes.
const fzList = 0x900000

// sane keeps a guest address off the rig's own queues (below dataAt), so
// a command's data cannot overwrite the entries the rig is waiting for;
// addresses beyond RAM stay beyond it.
func sane(a uint64) uint64 {
	if a < dataAt {
		return a + dataAt
	}
	return a
}

// FuzzCommand runs one admin or I/O command whose entry and PRP list page
// come from the input, on a controller brought up fresh: it completes
// with a status the spec defines (or is a held AER), never hangs or
// crashes, and the controller still serves a read afterwards.
func FuzzCommand(f *testing.F) {
	add := func(q byte, c *cmd, list []byte) { f.Add(q, c[:], list) }
	var l [64]byte
	for i := range 8 {
		binary.LittleEndian.PutUint64(l[8*i:], dataAt+uint64(i+1)*0x1000)
	}
	add(1, rw(oRead, 0, 24, dataAt, fzList), l[:])
	add(1, rw(oWrite, 3, 16, dataAt+0x10, fzList+8), l[:])
	add(1, newCmd(oDSM).dw(1, 1).prp(fzList, 0).dw(10, 1).dw(11, 4), l[:])
	add(1, newCmd(oWriteZeroes).dw(1, 1).dw(10, 7).dw(12, 1<<25|300), nil)
	add(0, newCmd(aIdentify).prp(dataAt+0x800, fzList).dw(10, 1), l[:])
	add(0, newCmd(aGetLogPage).prp(dataAt, fzList).dw(10, 0x3ff<<16|logSMART), l[:])
	add(0, newCmd(aCreateSQ).prp(0x60000, 0).dw(10, 7<<16|2).dw(11, 1<<16|1), nil)
	add(0, newCmd(aDeleteSQ).dw(10, 1), nil)
	add(0, newCmd(aSetFeature).dw(10, fWriteCache).dw(11, 0), nil)
	r := newRig(f)
	f.Fuzz(func(t *testing.T, q byte, entry []byte, list []byte) {
		r.t = t
		r.wr(regCC, 4, 0)
		r.cid = 0
		r.enable()
		r.ioQueues(0)
		var c cmd
		copy(c[:], entry)
		le := binary.LittleEndian
		le.PutUint64(c[24:], sane(le.Uint64(c[24:])))
		le.PutUint64(c[32:], sane(le.Uint64(c[32:])))
		var page [4096]byte
		copy(page[:], list)
		for i := 0; i < len(page); i += 8 {
			le.PutUint64(page[i:], sane(le.Uint64(page[i:])))
		}
		r.put(fzList, page[:])
		qid := int(q & 1)
		cid := r.submit(qid, &c)
		if qid == 0 && c[0] == aAsyncEvent {
			return
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			if e, ok := r.peek(qid); ok {
				if e.cid != cid {
					t.Fatalf("completion %+v, want CID %d", e, cid)
				}
				if !known[e.status] {
					t.Fatalf("undefined status %#x", e.status)
				}
				r.reap(qid)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no completion (CSTS %#x)", r.rd(regCSTS, 4))
			}
			time.Sleep(20 * time.Microsecond)
		}
		if v := r.rd(regCSTS, 4); v&cstsFS != 0 {
			t.Fatalf("CSTS %#x", v)
		}
		if r.c.sqs[1].valid && r.c.cqs[1].valid {
			if e := r.run(1, rw(oRead, 0, 1, dataAt, 0)); e.status != 0 {
				t.Fatalf("read afterwards: %#x", e.status)
			}
		}
	})
}

// FuzzRestore feeds mutated snapshot records to ReadState: refused or
// restored, never a crash; a restored controller serves its doorbells.
func FuzzRestore(f *testing.F) {
	r := newRig(f)
	r.enable()
	r.ioQueues(0)
	r.submit(0, newCmd(aAsyncEvent))
	var w savestate.Writer
	if err := r.c.WriteState(&w); err != nil {
		f.Fatal(err)
	}
	f.Add(w.Out())
	f.Fuzz(func(t *testing.T, b []byte) {
		r.t = t
		r.wr(regCC, 4, 0)
		if r.c.ReadState(savestate.NewReader(b)) != nil {
			return
		}
		for i := range 2 * Vectors {
			r.wr(regDoorbell+uint64(i)*4, 4, 1)
		}
		r.c.bq.Drain()
		r.wr(regCC, 4, 0)
	})
}

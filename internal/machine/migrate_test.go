package machine

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"godm/devices/testdev"
	"godm/hyp/xensim"
	"godm/internal/devstate"
	"godm/memory"
	"godm/pci"
)

// modifiedRuns returns the modified_memory extents Xen recorded for the
// rig's domain after seq.
func modifiedRuns(s *boardRig, after uint64) []dirtyRun {
	var out []dirtyRun
	for _, e := range s.sim.EventsSince(after) {
		if e.Kind == xensim.EventModifiedMemory && e.Dom == s.dom.ID() {
			out = append(out, dirtyRun{e.First, e.Nr})
		}
	}
	return out
}

// With log-dirty on, the pages a device wrote reach Xen as
// modified_memory extents: on the reporter's tick, and at once on a
// flush; switching it off flushes the rest and stops reporting.
func TestDirtyPagesReachXen(t *testing.T) {
	s := newBoardRig(t, Spec{TestDevice: true, TestSlot: 5})
	enableTestdev(t, s, 5)
	dma := func(addr, n uint64) {
		t.Helper()
		before := mmioR(t, s, testdev.RegDone)
		mmioW(t, s, testdev.RegDMALo, addr)
		mmioW(t, s, testdev.RegDMALen, n)
		mmioW(t, s, testdev.RegDoorbell, 1)
		for mmioR(t, s, testdev.RegDone) == before {
		}
	}
	dma(0x20000, 8) // before log-dirty: never reported
	mark := s.sim.LastSeq()
	if err := s.m.SetDirtyLog(true); err != nil {
		t.Fatal(err)
	}
	dma(0x30800, 2*memory.PageSize+1) // gfns 0x30..0x32
	// The reporter's tick sends it without being asked.
	if _, err := s.sim.WaitEvent(mark, 10*time.Second, func(e xensim.Event) bool {
		return e.Kind == xensim.EventModifiedMemory && e.First == 0x30 && e.Nr == 3
	}); err != nil {
		t.Fatalf("the DMA's pages never reached Xen: %v (recorded: %v)", err, modifiedRuns(s, mark))
	}
	mark = s.sim.LastSeq()
	dma(0x50000, 8)
	if err := s.m.FlushDirty(); err != nil {
		t.Fatal(err)
	}
	if got := modifiedRuns(s, mark); !slices.Contains(got, dirtyRun{0x50, 1}) {
		t.Errorf("after FlushDirty Xen has %v, want gfn 0x50", got)
	}
	dma(0x60000, 8)
	mark2 := s.sim.LastSeq()
	if err := s.m.SetDirtyLog(false); err != nil {
		t.Fatal(err)
	}
	if got := modifiedRuns(s, mark2); !slices.Equal(got, []dirtyRun{{0x60, 1}}) {
		t.Errorf("switching log-dirty off flushed %v, want gfn 0x60", got)
	}
	mark = s.sim.LastSeq()
	dma(0x70000, 8)
	time.Sleep(3 * DirtyReportEvery)
	if got := modifiedRuns(s, mark); len(got) != 0 {
		t.Errorf("log-dirty off, yet Xen was told %v", got)
	}
	for _, r := range modifiedRuns(s, 0) {
		if r.gfn == 0x20 {
			t.Errorf("a write from before log-dirty was reported: %v", r)
		}
	}
}

// deviceRegs reads registers of several devices through the guest's
// accesses: what a restore must bring back.
func deviceRegs(t *testing.T, s *boardRig) []uint64 {
	t.Helper()
	out := deviceRegs0(t, s)
	for _, reg := range []uint32{pci.RegBAR0, pci.RegCommand, 0x3c} {
		v, err := s.v.PCIConfigRead(5<<3, reg, 4)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	for _, off := range []uint64{testdev.RegDMALo, testdev.RegDMALen, testdev.RegDone} {
		out = append(out, mmioR(t, s, off))
	}
	return out
}

// The devices' state saved from one machine and loaded into a fresh one
// of the same layout reads back the same through the guest's accesses;
// a machine of another layout refuses the stream and keeps its state.
func TestSaveLoadDeviceState(t *testing.T) {
	a := newBoardRig(t, Spec{TestDevice: true, TestSlot: 5})
	enableTestdev(t, a, 5)
	// PIIX3's PIRQ routes (00:01.0 0x60) and the host bridge's PAM
	// register 0x5a (00:00.0).
	for _, w := range []struct {
		sbdf, reg uint32
		v         uint64
	}{{1 << 3, 0x60, 0x0b0a0509}, {0, 0x58, 0x00331100}} {
		if err := a.v.PCIConfigWrite(w.sbdf, w.reg, 4, w.v); err != nil {
			t.Fatal(err)
		}
	}
	mmioW(t, a, testdev.RegDMALo, 0x12340)
	mmioW(t, a, testdev.RegDMALen, 77)
	want := deviceRegs(t, a)

	var buf bytes.Buffer
	if err := a.m.SaveState(&buf); err != nil {
		t.Fatal(err)
	}
	if a.m.Board.Paused() {
		t.Error("SaveState left a running machine paused")
	}
	b := newBoardRig(t, Spec{TestDevice: true, TestSlot: 5})
	fresh := deviceRegs(t, b)
	if slices.Equal(fresh, want) {
		t.Fatal("the test's writes do not change what it reads: it could not tell a restore")
	}
	if err := b.m.LoadState(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if got := deviceRegs(t, b); !slices.Equal(got, want) {
		t.Errorf("after LoadState the guest reads %#x, the saved machine %#x", got, want)
	}

	// Another layout: no test device.
	c := newBoardRig(t, Spec{})
	before := deviceRegs0(t, c)
	err := c.m.LoadState(bytes.NewReader(buf.Bytes()))
	if !errors.Is(err, devstate.ErrLayout) || !strings.Contains(err.Error(), "which this machine lacks") {
		t.Errorf("loading into another layout: %v", err)
	}
	if after := deviceRegs0(t, c); !slices.Equal(after, before) {
		t.Errorf("a refused stream changed the machine: %#x, was %#x", after, before)
	}
	// A damaged stream is refused too.
	bad := slices.Clone(buf.Bytes())
	bad[len(bad)/2] ^= 0xff
	if err := b.m.LoadState(bytes.NewReader(bad)); !errors.Is(err, devstate.ErrFormat) {
		t.Errorf("damaged stream: %v", err)
	}
}

// deviceRegs0 is what deviceRegs reads of the machine's own devices
// (PIIX3's PIRQ routes, the host bridge's PAM registers).
func deviceRegs0(t *testing.T, s *boardRig) []uint64 {
	t.Helper()
	var out []uint64
	for _, r := range []struct{ sbdf, reg uint32 }{{1 << 3, 0x60}, {0, 0x58}, {0, 0x5c}} {
		v, err := s.v.PCIConfigRead(r.sbdf, r.reg, 4)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

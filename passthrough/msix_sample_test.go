package passthrough

import (
	"fmt"
	"testing"

	"godm/devices"
	"godm/hyp/xenabi"
	"godm/hyp/xensim"
)

// binding is an MSI binding as the recorded hypercalls leave it.
type binding struct {
	pirq, gvec, gtable uint64
}

// msiBindings replays the MSI map_pirq/bind_pt_irq events: the PIRQs
// mapped and the live binding of each.
func msiBindings(evs []xensim.Event) (pirqs map[uint64]bool, bound map[uint64]binding) {
	pirqs, bound = map[uint64]bool{}, map[uint64]binding{}
	for _, e := range evs {
		switch e.Kind {
		case xensim.EventMapPIRQ:
			if e.Type == xenabi.MAP_PIRQ_TYPE_MSI {
				pirqs[e.Data] = true
			}
		case xensim.EventUnmapPIRQ:
			delete(pirqs, e.Data)
		case xensim.EventBindPtIRQ:
			if e.Type != xenabi.PT_IRQ_TYPE_MSI {
				continue
			}
			if e.Level {
				bound[e.Data] = binding{e.Data, e.First, e.Addr}
			} else {
				delete(bound, e.Data)
			}
		}
	}
	return pirqs, bound
}

// gvecs returns the bound guest vectors, sorted, as a string.
func gvecs(bound map[uint64]binding) string {
	var v [256]bool
	for _, b := range bound {
		v[b.gvec] = true
	}
	s := ""
	for i, ok := range v {
		if ok {
			s += fmt.Sprintf("%#x ", i)
		}
	}
	return s
}

// TestRealSampleMSIX drives this machine's virtio-net function (its real
// configuration space: MSI-X at 0x98, 3 vectors, table at BAR0+0x8000,
// PBA at BAR0+0x48000) from a simulated guest through the standalone
// server: BAR sizing and placement, MSI-X table writes (32- and 64-bit),
// enable, per-vector mask and unmask, the function mask, a PBA read and
// disable, with every binding checked against the recorded hypercalls,
// and nothing left after the stop.
func TestRealSampleMSIX(t *testing.T) {
	r := newSimRig(t)
	dev, stop, done := r.standalone(t, "0000:00:03.0", 3)
	h := dev.cfg.Host
	sbdf := uint32(devices.NewSBDF(0, 0, 3, 0))
	v := r.dom.VCPU(0)
	cr := func(reg uint32, size int) uint64 {
		t.Helper()
		x, err := v.PCIConfigRead(sbdf, reg, size)
		must(t, err)
		return x
	}
	cw := func(reg uint32, size int, val uint64) {
		t.Helper()
		must(t, v.PCIConfigWrite(sbdf, reg, size, val))
	}
	mw := func(gpa uint64, size int, val uint64) {
		t.Helper()
		must(t, v.MMIOWrite(gpa, size, val))
	}
	mr := func(gpa uint64, size int) uint64 {
		t.Helper()
		x, err := v.MMIORead(gpa, size)
		must(t, err)
		return x
	}
	// The capability as the guest sees it: table size 3, disabled (the
	// host had it enabled; godm turned it off at plug).
	if got := cr(0x98, 4); got != 0x00020011 {
		t.Errorf("MSI-X capability header = %#x, want 0x00020011", got)
	}
	if got := hostCfg(t, h, 0x9b, 1); got&0x80 != 0 {
		t.Errorf("host MSI-X control high byte = %#x: left enabled at plug", got)
	}
	if tbl, pba := cr(0x9c, 4), cr(0xa0, 4); tbl != 0x8000 || pba != 0x48000 {
		t.Errorf("table/PBA = %#x/%#x, want the host's 0x8000/0x48000", tbl, pba)
	}
	// Sizing and placement of the 64-bit BAR0 at 0x8_0000_0000.
	cw(0x10, 4, 0xffffffff)
	cw(0x14, 4, 0xffffffff)
	if lo, hi := cr(0x10, 4), cr(0x14, 4); lo != 0xfff80004 || hi != 0xffffffff {
		t.Errorf("BAR0 size probe = %#x:%#x", hi, lo)
	}
	cw(0x10, 4, 0)
	cw(0x14, 4, 8)
	mark := r.sim.LastSeq()
	cw(0x04, 2, 0x0006)
	var maps []string
	for _, e := range kinds(r.sim.EventsSince(mark), xensim.EventMemoryMapping) {
		maps = append(maps, fmt.Sprintf("%#x->%#x+%#x/%v", e.First, e.Addr, e.Nr, e.Level))
	}
	if want := "[0x800000->0x4000100+0x8/true 0x800009->0x4000109+0x3f/true 0x800049->0x4000149+0x37/true]"; fmt.Sprint(maps) != want {
		t.Errorf("mappings = %v, want %s (table page 8 and PBA page 0x48 trapped)", maps, want)
	}

	// Table writes: entries 0 and 1 unmasked, entry 2 left masked;
	// entry 1's address as one 64-bit write.
	const table = 0x8_0000_8000
	mw(table+0, 4, 0xfee00000)
	mw(table+4, 4, 0)
	mw(table+8, 4, 0x61)
	mw(table+12, 4, 0)
	mw(table+16, 8, 0x0000_0000_fee01000) // destination 1
	mw(table+24, 4, 0x62)
	mw(table+28, 4, 0)
	mw(table+32, 4, 0xfee00000)
	mw(table+40, 4, 0x63)
	if got := mr(table+16, 8); got != 0xfee01000 {
		t.Errorf("entry 1 address read as 64 bits = %#x", got)
	}
	if got := mr(table+44, 4); got != 1 {
		t.Errorf("entry 2 vector control = %#x, want masked", got)
	}
	if ev := kinds(r.sim.EventsSince(mark), xensim.EventMapPIRQ); len(ev) != 0 {
		t.Errorf("routed before enable: %v", ev)
	}

	// Enable: entries 0 and 1 mapped (MSI, the host function's bus and
	// devfn) and bound with the table's guest address.
	mark = r.sim.LastSeq()
	cw(0x9a, 2, 0x8000)
	pirqs, bound := msiBindings(r.sim.EventsSince(mark))
	if len(pirqs) != 2 || gvecs(bound) != "0x61 0x62 " {
		t.Fatalf("after enable: pirqs %v, vectors %s; want two, 0x61 0x62", pirqs, gvecs(bound))
	}
	for _, e := range kinds(r.sim.EventsSince(mark), xensim.EventMapPIRQ) {
		if e.First != 0 || e.Nr != 3<<3 {
			t.Errorf("map_pirq for bus %d devfn %#x, want the host's 00:03.0", e.First, e.Nr)
		}
	}
	for _, b := range bound {
		if b.gtable != table {
			t.Errorf("binding %+v: gtable %#x, want %#x", b, b.gtable, uint64(table))
		}
	}
	if got := hostCfg(t, h, 0x9b, 1); got&0xc0 != 0x80 {
		t.Errorf("host MSI-X control high byte = %#x, want enabled, unmasked", got)
	}
	all := r.sim.EventsSince(0)

	// Function mask: mirrored to the host; an entry unmasked meanwhile
	// is not routed until the function mask is lifted.
	mark = r.sim.LastSeq()
	cw(0x9a, 2, 0xc000)
	if got := hostCfg(t, h, 0x9b, 1); got&0x40 == 0 {
		t.Errorf("host MSI-X control high byte = %#x: function mask not mirrored", got)
	}
	mw(table+44, 4, 0)
	if ev := kinds(r.sim.EventsSince(mark), xensim.EventMapPIRQ, xensim.EventBindPtIRQ); len(ev) != 0 {
		t.Errorf("routed under the function mask: %v", ev)
	}
	cw(0x9a, 2, 0x8000)
	_, bound = msiBindings(r.sim.EventsSince(0))
	if gvecs(bound) != "0x61 0x62 0x63 " {
		t.Errorf("after lifting the function mask: vectors %s, want 0x61 0x62 0x63", gvecs(bound))
	}

	// Per-vector mask, reprogram, unmask: rebound, same PIRQ.
	_, before := msiBindings(all)
	var pirq0 uint64
	for p, b := range before {
		if b.gvec == 0x61 {
			pirq0 = p
		}
	}
	mark = r.sim.LastSeq()
	mw(table+12, 4, 1)
	mw(table+8, 4, 0x71)
	mw(table+12, 4, 0)
	ev := kinds(r.sim.EventsSince(mark), xensim.EventMapPIRQ, xensim.EventBindPtIRQ)
	if len(ev) != 1 || ev[0].Kind != xensim.EventBindPtIRQ || ev[0].Data != pirq0 || ev[0].First != 0x71 {
		t.Errorf("mask/reprogram/unmask events = %v, want one rebind of pirq %d to 0x71", ev, pirq0)
	}

	// The PBA is on a trapped page; this tree has no resource0 file to
	// map, so it reads 0, counted (TestRealSamplePBA has one).
	misses := dev.Stats().TrapMisses
	if got := mr(0x8_0004_8000, 4); got != 0 {
		t.Errorf("PBA read = %#x, want 0", got)
	}
	if dev.Stats().TrapMisses != misses+1 {
		t.Errorf("TrapMisses = %d, want %d", dev.Stats().TrapMisses, misses+1)
	}

	// Disable: every vector unbound and unmapped, host disabled.
	cw(0x9a, 2, 0)
	pirqs, bound = msiBindings(r.sim.Events())
	if len(pirqs)+len(bound) != 0 {
		t.Errorf("after disable: pirqs %v, bindings %v", pirqs, bound)
	}
	if got := hostCfg(t, h, 0x9b, 1); got&0x80 != 0 {
		t.Errorf("host MSI-X control high byte = %#x after disable", got)
	}
	// Enabled again, then an abrupt stop.
	cw(0x9a, 2, 0x8000)
	if _, bound = msiBindings(r.sim.Events()); len(bound) != 3 {
		t.Errorf("re-enable bound %d vectors, want 3", len(bound))
	}
	stop()
	must(t, wait(t, done))
	if err := replay(r.sim.Events()).clean(); err != nil {
		t.Error(err)
	}
	for _, e := range r.sim.Violations() {
		t.Errorf("protocol violation: %v", e)
	}
}

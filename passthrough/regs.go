package passthrough

// Configuration-space virtualisation table. Every byte of the 256-byte
// space has masks saying what each bit is for the guest:
//
//   - emulated (emu): the guest sees and writes the device model's copy;
//     with ro also set, the copy is fixed (the guest's writes are
//     ignored);
//   - read-only (ro, without emu): the guest reads the host's bit and
//     its writes are dropped;
//   - write-1-to-clear (rw1c, without emu): the host's status bit, which
//     the guest clears by writing 1;
//   - mirrored (mirror): emulated, and the guest's value is also written
//     to the host (MSI-X enable and function mask);
//   - merged (or): emulated, and a 1 the guest writes is also set on the
//     host but a 0 never clears it there (I/O and memory decoding: the
//     host keeps decoding its own BARs, the guest's view only decides
//     what is mapped into it);
//   - reserved (res): read from the host, written only in permissive
//     mode;
//   - everything else in a covered register is read-write through.
//
// Bytes no rule covers read from the host and their writes are dropped
// unless the device is permissive (QEMU's xen_pt_config_init.c, which
// introduced permissive mode with the XSA-131 fix). Hidden bytes read as
// zero and are never written.
//
// The rules for each register follow the PCI Local Bus Specification 3.0
// (§6.1-6.2 header, §6.7 capabilities, §6.8 MSI/MSI-X), the PCI Power
// Management Specification 1.2 (PMC/PMCSR) and the PCI Express Base
// Specification (device control/status).

// byte kinds
const (
	kindUncovered uint8 = iota
	kindCovered
	kindHidden
)

// hook says which state a register's write changes, so that the device
// re-derives it (mappings, interrupts) after the write.
type hook uint8

const (
	hookNone    hook = 0
	hookCommand hook = 1 << iota
	hookBAR
	hookROM
	hookMSI
	hookMSIX
)

// regTable is the per-byte rule table plus the emulated values.
type regTable struct {
	kind   [256]uint8
	hook   [256]hook
	emu    [256]uint8
	ro     [256]uint8
	rw1c   [256]uint8
	res    [256]uint8
	mirror [256]uint8
	or     [256]uint8
	val    [256]uint8 // emulated values
}

// rule describes one register of up to four bytes.
type rule struct {
	off, size                    int
	emu, ro, rw1c, res, mir, orm uint32
	hook                         hook
}

// add installs r, skipping bytes beyond the space or already covered
// (the first rule for a byte wins, so a malformed capability list cannot
// override the header).
func (t *regTable) add(r rule) {
	for i := 0; i < r.size; i++ {
		o := r.off + i
		if o < 0 || o >= len(t.kind) || t.kind[o] != kindUncovered {
			continue
		}
		sh := 8 * i
		t.kind[o] = kindCovered
		t.hook[o] = r.hook
		t.emu[o] = uint8(r.emu >> sh)
		t.ro[o] = uint8(r.ro >> sh)
		t.rw1c[o] = uint8(r.rw1c >> sh)
		t.res[o] = uint8(r.res >> sh)
		t.mirror[o] = uint8(r.mir >> sh)
		t.or[o] = uint8(r.orm >> sh)
	}
}

// hide makes n bytes from off read as zero and ignore writes.
func (t *regTable) hide(off, n int) {
	for o := off; o < off+n && o < len(t.kind); o++ {
		if t.kind[o] == kindUncovered {
			t.kind[o] = kindHidden
		}
	}
}

// set stores an emulated value of size bytes.
func (t *regTable) set(off, size int, v uint32) {
	for i := 0; i < size && off+i < len(t.val); i++ {
		t.val[off+i] = uint8(v >> (8 * i))
	}
}

// get returns an emulated value of size bytes.
func (t *regTable) get(off, size int) uint32 {
	var v uint32
	for i := 0; i < size && off+i < len(t.val); i++ {
		v |= uint32(t.val[off+i]) << (8 * i)
	}
	return v
}

// through returns the bits of byte o a guest write may change on the
// host (rw1c bits included: the guest's 1s clear them).
func (t *regTable) through(o int, permissive bool) uint8 {
	switch t.kind[o] {
	case kindUncovered:
		if permissive {
			return 0xff
		}
		return 0
	case kindHidden:
		return 0
	}
	m := ^(t.emu[o] | t.ro[o]) | t.mirror[o] | t.or[o]
	if !permissive {
		m &^= t.res[o]
	}
	return m
}

// Capability IDs (PCI Local Bus Specification 3.0, appendix H).
const (
	capPM     = 0x01
	capMSI    = 0x05
	capVendor = 0x09
	capPCIe   = 0x10
	capMSIX   = 0x11
)

// capInfo is a supported capability found in the host's list.
type capInfo struct {
	id  uint8
	off int
}

// walkCaps returns the host's capabilities in list order, stopping at a
// loop, a pointer into the header or the 48th entry.
func walkCaps(cfg *[256]byte) []capInfo {
	if cfg[0x06]&0x10 == 0 { // status: capabilities list
		return nil
	}
	var caps []capInfo
	var seen [256]bool
	for p := int(cfg[0x34] &^ 3); p >= 0x40 && p < 0xff && !seen[p] && len(caps) < 48; p = int(cfg[p+1] &^ 3) {
		seen[p] = true
		caps = append(caps, capInfo{id: cfg[p], off: p})
	}
	return caps
}

func supportedCap(id uint8) bool {
	switch id {
	case capPM, capMSI, capMSIX, capPCIe, capVendor:
		return true
	}
	return false
}

// Command register bits (PCI 3.0 §6.2.2).
const (
	cmdIO          = 1 << 0
	cmdMemory      = 1 << 1
	cmdBusMaster   = 1 << 2
	cmdINTxDisable = 1 << 10
)

// buildTable derives the rule table and the initial emulated values from
// the host's configuration space. It returns the supported capabilities.
func buildTable(t *regTable, cfg *[256]byte, hasIRQ bool) []capInfo {
	le16 := func(o int) uint32 { return uint32(cfg[o]) | uint32(cfg[o+1])<<8 }
	// Header (type 0).
	t.add(rule{off: 0x00, size: 4, ro: 0xffffffff}) // vendor, device
	// Command: I/O and memory decoding merged (the host keeps decoding),
	// parity and SERR reporting emulated (host errors must not become
	// host NMIs), special cycles, VGA snoop, fast back-to-back and the
	// reserved bits read-only; bus master, MWI and INTx disable through.
	t.add(rule{off: 0x04, size: 2, emu: 0x0143, ro: 0xfaa8, orm: cmdIO | cmdMemory, hook: hookCommand})
	// Status: the error bits are write-1-to-clear on the host; the
	// capability-list bit is emulated.
	t.add(rule{off: 0x06, size: 2, emu: 0x0010, ro: 0x06ff, rw1c: 0xf900})
	t.add(rule{off: 0x08, size: 4, ro: 0xffffffff})          // revision, class
	t.add(rule{off: 0x0c, size: 2, emu: 0xffff})             // cache line, latency
	t.add(rule{off: 0x0e, size: 2, emu: 0xffff, ro: 0xffff}) // header type (single function), BIST
	t.set(0x0e, 1, uint32(cfg[0x0e]&0x7f))
	for i := 0; i < 6; i++ {
		t.add(rule{off: 0x10 + 4*i, size: 4, emu: 0xffffffff, hook: hookBAR})
	}
	t.add(rule{off: 0x28, size: 4, emu: 0xffffffff, ro: 0xffffffff}) // CardBus CIS: 0
	t.add(rule{off: 0x2c, size: 4, ro: 0xffffffff})                  // subsystem
	t.add(rule{off: 0x30, size: 4, emu: 0xffffffff, hook: hookROM})
	t.add(rule{off: 0x34, size: 4, emu: 0xffffffff, ro: 0xffffffff}) // capability pointer, reserved
	t.add(rule{off: 0x38, size: 4, emu: 0xffffffff, ro: 0xffffffff}) // reserved
	t.add(rule{off: 0x3c, size: 1, emu: 0xff})                       // interrupt line
	t.add(rule{off: 0x3d, size: 1, emu: 0xff, ro: 0xff})             // interrupt pin
	if hasIRQ {
		t.set(0x3d, 1, uint32(cfg[0x3d]))
	}
	t.add(rule{off: 0x3e, size: 2, ro: 0xffff}) // min grant, max latency

	// Capabilities: the supported ones get rules, the others are left
	// out of the emulated list.
	var caps []capInfo
	all := walkCaps(cfg)
	for _, c := range all {
		if !supportedCap(c.id) {
			t.hide(c.off, 2)
			continue
		}
		caps = append(caps, c)
	}
	for _, c := range caps {
		o := c.off
		t.add(rule{off: o, size: 2, emu: 0xffff, ro: 0xffff}) // ID, next (set below)
		switch c.id {
		case capPM:
			// The masks follow QEMU's xen_pt_emu_reg_pm (hw/xen/
			// xen_pt_config_init.c). PMC: PME support, D1/D2-independent
			// bits and aux current hidden (PME is not delivered to the
			// guest).
			t.add(rule{off: o + 2, size: 2, emu: 0xf9c8, ro: 0xffff})
			t.set(o+2, 2, 0)
			// PMCSR: the power state is emulated (a D3 transition would
			// reset the function behind pciback's back); No_Soft_Reset
			// from the host; PME enable and status emulated read-only 0;
			// data select through; the reserved bits reserved.
			t.add(rule{off: o + 4, size: 2, emu: 0x810b, ro: 0xe10c, res: 0x00f0})
			t.set(o+4, 2, le16(o+4)&0x0008)
			t.add(rule{off: o + 6, size: 2, ro: 0xffff})
		case capMSI:
			ctrl := le16(o + 2)
			is64, maskable := ctrl&0x80 != 0, ctrl&0x100 != 0
			// Control (QEMU's xen_pt_emu_reg_msi): one vector only:
			// Multiple Message Capable and Enable read 0 and ignore
			// writes (Device.Write counts a request for more). Xen
			// could map a block of PIRQs (MAP_PIRQ_TYPE_MULTI_MSI, only
			// with interrupt remapping: xen/arch/x86/irq.c) and bind
			// each, but QEMU never offers it and a guest told of
			// several vectors could not be given fewer once it enabled
			// them. Per-vector masking hidden; 64-bit from the host.
			// Enable is emulated and mirrored: since Xen 4.x's
			// split-brain model the hardware domain enables MSI on the
			// device once the PIRQ is mapped
			// (xen/arch/x86/msi.c:msi_capability_init).
			t.add(rule{off: o + 2, size: 2, emu: 0x017f, ro: 0xfffe, mir: 0x0001, hook: hookMSI})
			t.set(o+2, 2, 0)
			t.add(rule{off: o + 4, size: 4, emu: 0xffffffff, ro: 0x3, hook: hookMSI}) // address
			d := o + 8
			if is64 {
				t.add(rule{off: o + 8, size: 4, emu: 0xffffffff, hook: hookMSI}) // upper address
				d = o + 12
			}
			t.add(rule{off: d, size: 2, emu: 0xffff, hook: hookMSI})  // data
			t.add(rule{off: d + 2, size: 2, emu: 0xffff, ro: 0xffff}) // extended data: not supported
			if maskable {
				// Mask and pending bits: emulated read-only 0, as the
				// guest is told there is no per-vector masking.
				t.add(rule{off: d + 4, size: 4, emu: 0xffffffff, ro: 0xffffffff})
				t.add(rule{off: d + 8, size: 4, emu: 0xffffffff, ro: 0xffffffff})
			}
		case capMSIX:
			// Control: table size from the host; enable and function mask
			// emulated and mirrored to the host (QEMU passes them
			// through; Xen's intercept of the hardware domain's writes
			// keeps its own host mask-all state).
			t.add(rule{off: o + 2, size: 2, emu: 0xc000, ro: 0x3fff, mir: 0xc000, hook: hookMSIX})
			t.set(o+2, 2, 0)
			t.add(rule{off: o + 4, size: 4, ro: 0xffffffff})
			t.add(rule{off: o + 8, size: 4, ro: 0xffffffff})
		case capPCIe:
			// QEMU's xen_pt_emu_reg_pcie: the control registers are
			// emulated, never written to the device (their settings
			// belong to the host's fabric configuration).
			flags := le16(o + 2)
			v2 := flags&0xf >= 2
			n := 0x24
			if v2 {
				n = 0x3c
			}
			t.add(rule{off: o + 2, size: 2, ro: 0xffff})
			// Device capabilities: function-level reset hidden (resets
			// belong to pciback).
			t.add(rule{off: o + 4, size: 4, emu: 1 << 28, ro: 0xffffffff})
			t.set(o+4, 4, 0)
			// Device control: emulated; initiate FLR and aux power
			// read-only.
			t.add(rule{off: o + 8, size: 2, emu: 0xffff, ro: 0x8400})
			t.set(o+8, 2, le16(o+8)&^0x8000)
			// Device status: error bits write-1-to-clear on the host.
			t.add(rule{off: o + 10, size: 2, ro: 0xfff0, rw1c: 0x000f})
			t.add(rule{off: o + 12, size: 4, ro: 0xffffffff}) // link capabilities
			// Link control: emulated.
			t.add(rule{off: o + 16, size: 2, emu: 0xffff, ro: 0xfc34})
			t.set(o+16, 2, le16(o+16))
			t.add(rule{off: o + 18, size: 2, ro: 0xffff}) // link status
			if v2 {
				// Device control 2 and link control 2: emulated.
				t.add(rule{off: o + 0x28, size: 2, emu: 0xffff, ro: 0xffe0})
				t.set(o+0x28, 2, le16(o+0x28))
				t.add(rule{off: o + 0x30, size: 2, emu: 0xffff, ro: 0xe040})
				t.set(o+0x30, 2, le16(o+0x30))
			}
			// Slot and root registers, the rest of version 2's: read-only.
			for r := o + 20; r < o+n; r += 2 {
				t.add(rule{off: r, size: 2, ro: 0xffff})
			}
		case capVendor:
			// Only the list pointers and the length are virtualised
			// (QEMU's xen_pt_emu_reg_vendor); the body is the device's
			// own: read from the host, written in permissive mode only
			// (e.g. virtio's PCI configuration access window).
			t.add(rule{off: o + 2, size: 1, ro: 0xff})
		}
	}
	// The emulated list: 0x34 and each next pointer skip what is hidden.
	first := 0
	if len(caps) > 0 {
		first = caps[0].off
	}
	t.set(0x34, 1, uint32(first))
	for i, c := range caps {
		next := 0
		if i+1 < len(caps) {
			next = caps[i+1].off
		}
		t.set(c.off, 1, uint32(c.id))
		t.set(c.off+1, 1, uint32(next))
	}
	if len(caps) > 0 {
		t.set(0x06, 2, 0x0010)
	}
	return caps
}

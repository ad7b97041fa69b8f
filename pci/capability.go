package pci

import "fmt"

// AddCapability appends a capability to the function's capability list
// (PCI Local Bus 3.0 §6.7) and returns its offset. body is the capability
// after its two-byte header (ID and next pointer, which are read-only);
// wmask and w1c, if not nil, are the writable and write-1-to-clear masks of
// body and must be as long as body. The capability is placed at the lowest
// free dword-aligned offset at or above 0x40 in the first 256 bytes.
func (d *Device) AddCapability(id uint8, body, wmask, w1c []byte) (uint8, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.setupCheck("add capability"); err != nil {
		return 0, err
	}
	return d.addCapabilityLocked(id, body, wmask, w1c)
}

func (d *Device) addCapabilityLocked(id uint8, body, wmask, w1c []byte) (uint8, error) {
	if (wmask != nil && len(wmask) != len(body)) || (w1c != nil && len(w1c) != len(body)) {
		return 0, fmt.Errorf("pci: capability %#x: mask length differs from body: %w", id, ErrInvalid)
	}
	n := uint32(2 + len(body))
	off := uint32(0)
	for o := uint32(headerSize); o+n <= ConfigSize; o += 4 {
		if d.free(o, n) {
			off = o
			break
		}
	}
	if off == 0 {
		return 0, fmt.Errorf("pci: capability %#x of %d bytes: %w", id, n, ErrNoSpace)
	}
	if err := d.claim(off, n); err != nil {
		return 0, fmt.Errorf("pci: capability %#x: %w", id, err)
	}
	d.cfg[off] = id
	d.cfg[off+1] = 0
	copy(d.cfg[off+2:], body)
	if wmask != nil {
		copy(d.wmask[off+2:], wmask)
	}
	if w1c != nil {
		copy(d.w1c[off+2:], w1c)
	}
	if d.capLast == 0 {
		d.cfg[RegCapabilities] = byte(off)
	} else {
		d.cfg[d.capLast+1] = byte(off)
	}
	d.capLast = uint8(off)
	put16(d.cfg, RegStatus, get16(d.cfg, RegStatus)|statusCapList)
	return uint8(off), nil
}

// free reports whether [off, off+n) is unclaimed.
func (d *Device) free(off, n uint32) bool {
	for o := off; o < off+n; o++ {
		if d.claimed[o/8]&(1<<(o%8)) != 0 {
			return false
		}
	}
	return true
}

// Capabilities returns the IDs and offsets of the capability list as the
// guest walks it (at most 48 entries, so a loop cannot hang).
func (d *Device) Capabilities() (ids, offsets []uint8) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if get16(d.cfg, RegStatus)&statusCapList == 0 {
		return nil, nil
	}
	for p, n := d.cfg[RegCapabilities]&^3, 0; p != 0 && n < 48; p, n = d.cfg[p+1]&^3, n+1 {
		ids = append(ids, d.cfg[p])
		offsets = append(offsets, p)
	}
	return ids, offsets
}

// AddExtendedCapability appends a PCI Express extended capability (PCIe
// Base Specification §7.6.3: a 32-bit header of ID in bits 15:0, version
// in bits 19:16 and the next offset in bits 31:20, all read-only) and
// returns its offset. The list starts at 0x100, so the first capability
// takes 0x100 if it is free; body, wmask and w1c are as for AddCapability.
// The function must have been created with Header.Extended.
func (d *Device) AddExtendedCapability(id uint16, version uint8, body, wmask, w1c []byte) (uint16, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.setupCheck("add extended capability"); err != nil {
		return 0, err
	}
	if !d.hdr.Extended || version > 0xf {
		return 0, fmt.Errorf("pci: extended capability %#x version %d: %w", id, version, ErrInvalid)
	}
	if (wmask != nil && len(wmask) != len(body)) || (w1c != nil && len(w1c) != len(body)) {
		return 0, fmt.Errorf("pci: extended capability %#x: mask length differs from body: %w", id, ErrInvalid)
	}
	n := uint32(4 + len(body))
	off := uint32(0)
	for o := uint32(ConfigSize); o+n <= ExtendedConfigSize; o += 4 {
		if d.extLast == 0 && o != ConfigSize {
			break // the list must start at 0x100
		}
		if d.free(o, n) {
			off = o
			break
		}
	}
	if off == 0 {
		return 0, fmt.Errorf("pci: extended capability %#x of %d bytes: %w", id, n, ErrNoSpace)
	}
	if err := d.claim(off, n); err != nil {
		return 0, fmt.Errorf("pci: extended capability %#x: %w", id, err)
	}
	put32(d.cfg, int(off), uint32(id)|uint32(version)<<16)
	copy(d.cfg[off+4:], body)
	if wmask != nil {
		copy(d.wmask[off+4:], wmask)
	}
	if w1c != nil {
		copy(d.w1c[off+4:], w1c)
	}
	if d.extLast != 0 {
		h := get32(d.cfg, int(d.extLast))
		put32(d.cfg, int(d.extLast), h&0xfffff|off<<20)
	}
	d.extLast = uint16(off)
	return uint16(off), nil
}

// ReverseCapabilities reverses the order of the capability list (the
// offsets stay): the first capability added becomes the last one the
// guest walks. QEMU's pci_add_capability (hw/pci/pci.c) links each new
// capability at the head of the list, so a device that mirrors QEMU's
// layout adds its capabilities in QEMU's order, then calls this. It is a
// set-up call, before the function joins a bus.
func (d *Device) ReverseCapabilities() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.setupCheck("reverse capabilities"); err != nil {
		return err
	}
	var offs []uint8
	for p, n := d.cfg[RegCapabilities]&^3, 0; p != 0 && n < 48; p, n = d.cfg[p+1]&^3, n+1 {
		offs = append(offs, p)
	}
	if len(offs) < 2 {
		return nil
	}
	next := uint8(0)
	for _, p := range offs {
		d.cfg[p+1] = next
		next = p
	}
	d.cfg[RegCapabilities] = next
	d.capLast = offs[0]
	return nil
}

package pci

import (
	"fmt"
	"math/bits"

	"godm/devices"
)

// MSIXConfig describes an MSI-X capability and where its table and pending
// bit array (PBA) live (PCI Local Bus 3.0 §6.8.2).
type MSIXConfig struct {
	// Vectors is the table size, 1..2048.
	Vectors int
	// TableBAR and TableOffset place the table (16 bytes per vector) in a
	// memory BAR; the offset must be 8-byte aligned.
	TableBAR    int
	TableOffset uint64
	// PBABAR and PBAOffset place the PBA (one bit per vector, in 64-bit
	// words); the offset must be 8-byte aligned.
	PBABAR    int
	PBAOffset uint64
}

// msixState is the MSI-X table, kept outside configuration space.
type msixState struct {
	cap      uint8 // 0: no MSI-X capability
	n        int
	table    []byte   // guarded by mu: n entries of 16 bytes
	pba      []uint64 // guarded by mu: pending bits
	tableBAR int
	tableOff uint64
	pbaBAR   int
	pbaOff   uint64
}

// AddMSIX adds an MSI-X capability whose table and PBA live in memory BARs
// already described with SetBAR, and returns the capability's offset. The
// BAR's Handler no longer sees accesses to the table and PBA. Every vector
// starts masked.
func (d *Device) AddMSIX(c MSIXConfig) (uint8, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.setupCheck("add msi-x"); err != nil {
		return 0, err
	}
	bad := func(why string) error {
		return fmt.Errorf("pci: msi-x with %d vectors: %s: %w", c.Vectors, why, ErrInvalid)
	}
	if d.msix.cap != 0 {
		return 0, bad("already present")
	}
	if c.Vectors < 1 || c.Vectors > MaxMSIXVectors {
		return 0, bad("vector count out of range")
	}
	tableLen := uint64(c.Vectors) * msixEntrySize
	pbaLen := uint64((c.Vectors+63)/64) * 8
	inBAR := func(i int, off, n uint64) bool {
		if i < 0 || i >= numBARs || off%8 != 0 || off > 0xffffffff {
			return false
		}
		b := &d.bars[i]
		return (b.kind == BARMem32 || b.kind == BARMem64) && off+n <= b.size
	}
	if !inBAR(c.TableBAR, c.TableOffset, tableLen) {
		return 0, bad("table does not fit a memory bar")
	}
	if !inBAR(c.PBABAR, c.PBAOffset, pbaLen) {
		return 0, bad("pba does not fit a memory bar")
	}
	if c.TableBAR == c.PBABAR && c.TableOffset < c.PBAOffset+pbaLen && c.PBAOffset < c.TableOffset+tableLen {
		return 0, bad("table and pba overlap")
	}
	body := make([]byte, msixCapSize-2)
	wmask := make([]byte, msixCapSize-2)
	put16(body, msixControl-2, uint16(c.Vectors-1))
	put16(wmask, msixControl-2, msixEnable|msixFunctionMask)
	put32(body, msixTable-2, uint32(c.TableOffset)|uint32(c.TableBAR))
	put32(body, msixPBA-2, uint32(c.PBAOffset)|uint32(c.PBABAR))
	off, err := d.addCapabilityLocked(CapMSIX, body, wmask, nil)
	if err != nil {
		return 0, err
	}
	d.msix = msixState{
		cap:      off,
		n:        c.Vectors,
		table:    make([]byte, tableLen),
		pba:      make([]uint64, pbaLen/8),
		tableBAR: c.TableBAR,
		tableOff: c.TableOffset,
		pbaBAR:   c.PBABAR,
		pbaOff:   c.PBAOffset,
	}
	d.msixResetLocked()
	return off, nil
}

// msixResetLocked masks every vector and clears the pending bits.
func (d *Device) msixResetLocked() {
	m := &d.msix
	clear(m.table)
	clear(m.pba)
	for v := 0; v < m.n; v++ {
		m.table[v*msixEntrySize+msixEntryControl] = msixEntryMasked
	}
}

func (m *msixState) control(d *Device) uint16 { return get16(d.cfg, int(m.cap)+msixControl) }

func (m *msixState) enabledLocked(d *Device) bool {
	return m.cap != 0 && m.control(d)&msixEnable != 0
}

func (m *msixState) entryMasked(v int) bool {
	return m.table[v*msixEntrySize+msixEntryControl]&msixEntryMasked != 0
}

func (m *msixState) sendLocked(d *Device, v int) {
	e := m.table[v*msixEntrySize:]
	addr := uint64(get32(e, msixEntryAddrLo)) | uint64(get32(e, msixEntryAddrHi))<<32
	if d.send != nil {
		d.send.SendMSI(addr, get32(e, msixEntryData))
	}
}

func (d *Device) msixTriggerLocked(v int) {
	m := &d.msix
	if v < 0 || v >= m.n {
		d.msiDropped.Add(1)
		return
	}
	if m.control(d)&msixFunctionMask != 0 || m.entryMasked(v) {
		m.pba[v/64] |= 1 << (v % 64)
		return
	}
	m.sendLocked(d, v)
}

// msixUpdateLocked delivers pending vectors that are no longer masked
// (§6.8.2.9: a pending message is sent once its mask clears).
func (d *Device) msixUpdateLocked() {
	m := &d.msix
	if !m.enabledLocked(d) || m.control(d)&msixFunctionMask != 0 {
		return
	}
	for w, bitsLeft := range m.pba {
		for bitsLeft != 0 {
			b := bits.TrailingZeros64(bitsLeft)
			bitsLeft &^= 1 << b
			v := w*64 + b
			if !m.entryMasked(v) {
				m.pba[w] &^= 1 << b
				m.sendLocked(d, v)
			}
		}
	}
}

// MSIXPending reports whether vector v's pending bit is set.
func (d *Device) MSIXPending(v int) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := &d.msix
	return v >= 0 && v < m.n && m.pba[v/64]&(1<<(v%64)) != 0
}

// msixBARRead serves a read of BAR i if it falls in the table or PBA.
func (d *Device) msixBARRead(i int, a devices.Access) (uint64, bool) {
	m := &d.msix
	switch {
	case i == m.tableBAR && a.Offset >= m.tableOff && a.Offset-m.tableOff < uint64(len(m.table)):
		d.mu.Lock()
		v := readBytes(m.table, a.Offset-m.tableOff, a.Size)
		d.mu.Unlock()
		return v, true
	case i == m.pbaBAR && a.Offset >= m.pbaOff && a.Offset-m.pbaOff < uint64(len(m.pba))*8:
		off := a.Offset - m.pbaOff
		var v uint64
		d.mu.Lock()
		for b := uint64(0); b < uint64(a.Size) && b < 8; b++ {
			if o := off + b; o < uint64(len(m.pba))*8 {
				v |= (m.pba[o/8] >> (8 * (o % 8)) & 0xff) << (8 * b)
			}
		}
		d.mu.Unlock()
		return v, true
	}
	return 0, false
}

// msixBARWrite serves a write to BAR i if it falls in the table or PBA
// (the PBA is read-only). Only the mask bit of Vector Control is writable
// (its other bits are reserved).
func (d *Device) msixBARWrite(i int, a devices.Access, v uint64) bool {
	m := &d.msix
	switch {
	case i == m.tableBAR && a.Offset >= m.tableOff && a.Offset-m.tableOff < uint64(len(m.table)):
		off := a.Offset - m.tableOff
		d.mu.Lock()
		unmasked := false
		for b := uint64(0); b < uint64(a.Size) && b < 8; b++ {
			o := off + b
			if o >= uint64(len(m.table)) {
				break
			}
			nb := byte(v >> (8 * b))
			if o%msixEntrySize >= msixEntryControl {
				if o%msixEntrySize != msixEntryControl {
					continue // reserved bits of Vector Control
				}
				nb &= msixEntryMasked
				if m.table[o]&msixEntryMasked != 0 && nb == 0 {
					unmasked = true
				}
			}
			m.table[o] = nb
		}
		if unmasked {
			d.msixUpdateLocked()
		}
		d.mu.Unlock()
		return true
	case i == m.pbaBAR && a.Offset >= m.pbaOff && a.Offset-m.pbaOff < uint64(len(m.pba))*8:
		return true
	}
	return false
}

func readBytes(b []byte, off uint64, size uint8) uint64 {
	var v uint64
	for i := uint64(0); i < uint64(size) && i < 8; i++ {
		if o := off + i; o < uint64(len(b)) {
			v |= uint64(b[o]) << (8 * i)
		}
	}
	return v
}

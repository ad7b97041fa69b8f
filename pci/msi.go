package pci

import (
	"fmt"
	"math/bits"
)

// MSIConfig describes an MSI capability (PCI Local Bus 3.0 §6.8.1).
type MSIConfig struct {
	// Vectors is the number of vectors the function requests (Multiple
	// Message Capable): 1, 2, 4, 8, 16 or 32.
	Vectors int
	// Addr64 makes the capability 64-bit address capable.
	Addr64 bool
	// PerVectorMask adds the mask and pending bits.
	PerVectorMask bool
}

// msiState locates the MSI capability's registers; the values live in
// configuration space.
type msiState struct {
	cap     uint8 // 0: no MSI capability
	size    uint8
	vectors int
	addrHi  uint8 // offset of the upper address, 0 if 32-bit
	data    uint8
	mask    uint8 // 0 without per-vector masking
	pending uint8
}

// AddMSI adds an MSI capability and returns its offset. Messages are sent
// through the Bus's irq.MSISender; see Interrupt.
func (d *Device) AddMSI(c MSIConfig) (uint8, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.setupCheck("add msi"); err != nil {
		return 0, err
	}
	if d.msi.cap != 0 || c.Vectors < 1 || c.Vectors > 32 || !isPow2(uint64(c.Vectors)) {
		return 0, fmt.Errorf("pci: msi with %d vectors: %w", c.Vectors, ErrInvalid)
	}
	mmc := uint16(bits.TrailingZeros(uint(c.Vectors)))
	ctl := mmc << msiMMCShift
	s := msiState{vectors: c.Vectors}
	// Layout after the 2-byte control word (offsets from the capability).
	next := uint8(msiAddrLo + 4)
	if c.Addr64 {
		ctl |= msi64Bit
		s.addrHi = next
		next += 4
	}
	s.data = next
	next += 4 // 16-bit data plus the reserved extended-data word
	if c.PerVectorMask {
		ctl |= msiPerVectorMask
		s.mask = next
		s.pending = next + 4
		next += 8
	}
	if !c.PerVectorMask {
		next -= 2 // without masking the capability ends after the data word
	}
	s.size = next
	body := make([]byte, next-2)
	wmask := make([]byte, next-2)
	put16(body, msiControl-2, ctl)
	put16(wmask, msiControl-2, msiEnable|7<<msiMMEShift)
	put32(wmask, msiAddrLo-2, 0xfffffffc)
	if s.addrHi != 0 {
		put32(wmask, int(s.addrHi)-2, 0xffffffff)
	}
	put16(wmask, int(s.data)-2, 0xffff)
	if s.mask != 0 {
		put32(wmask, int(s.mask)-2, uint32(1<<c.Vectors-1))
	}
	off, err := d.addCapabilityLocked(CapMSI, body, wmask, nil)
	if err != nil {
		return 0, err
	}
	s.cap = off
	d.msi = s
	return off, nil
}

func (m *msiState) enabledLocked(d *Device) bool {
	return m.cap != 0 && get16(d.cfg, int(m.cap)+msiControl)&msiEnable != 0
}

// allocatedLocked returns the number of vectors the guest enabled (Multiple
// Message Enable), capped at the number requested.
func (m *msiState) allocatedLocked(d *Device) int {
	mme := (get16(d.cfg, int(m.cap)+msiControl) >> msiMMEShift) & 7
	n := 1 << mme
	if n > m.vectors {
		n = m.vectors
	}
	return n
}

// sendLocked delivers vector vec; the low bits of the data select the
// vector when several are enabled (§6.8.3.4).
func (m *msiState) sendLocked(d *Device, vec, n int) {
	c := int(m.cap)
	addr := uint64(get32(d.cfg, c+msiAddrLo))
	if m.addrHi != 0 {
		addr |= uint64(get32(d.cfg, c+int(m.addrHi))) << 32
	}
	data := uint32(get16(d.cfg, c+int(m.data)))
	data = data&^uint32(n-1) | uint32(vec)
	if d.send != nil {
		d.send.SendMSI(addr, data)
	}
}

func (d *Device) msiTriggerLocked(vec int) {
	m := &d.msi
	n := m.allocatedLocked(d)
	if vec < 0 || vec >= n {
		d.msiDropped.Add(1)
		return
	}
	if m.mask != 0 {
		c := int(m.cap)
		if get32(d.cfg, c+int(m.mask))&(1<<vec) != 0 {
			put32(d.cfg, c+int(m.pending), get32(d.cfg, c+int(m.pending))|1<<vec)
			return
		}
	}
	m.sendLocked(d, vec, n)
}

// msiUpdateLocked delivers pending vectors the guest has unmasked.
func (d *Device) msiUpdateLocked() {
	m := &d.msi
	if m.mask == 0 || !m.enabledLocked(d) {
		return
	}
	c := int(m.cap)
	n := m.allocatedLocked(d)
	pend := get32(d.cfg, c+int(m.pending))
	ready := pend &^ get32(d.cfg, c+int(m.mask)) & uint32(1<<n-1)
	if ready == 0 {
		return
	}
	put32(d.cfg, c+int(m.pending), pend&^ready)
	for ready != 0 {
		vec := bits.TrailingZeros32(ready)
		ready &^= 1 << vec
		m.sendLocked(d, vec, n)
	}
}

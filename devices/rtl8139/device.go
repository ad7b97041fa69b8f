package rtl8139

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"godm/devices"
	"godm/devices/clock"
	"godm/devices/nic"
	"godm/memory"
	"godm/netback"
	"godm/pci"
)

// PCI identity (QEMU hw/net/rtl8139.c rtl8139_class_init: vendor
// PCI_VENDOR_ID_REALTEK, device PCI_DEVICE_ID_REALTEK_8139, revision
// RTL8139_PCI_REVID_8139CPLUS "(>=0x20 is for 8139C+)", class Ethernet;
// QEMU's default subsystem IDs 1af4:1100, hw/pci/pci.c
// pci_set_default_subsystem_id).
const (
	VendorID  = 0x10ec
	DeviceID  = 0x8139
	Revision  = 0x20
	ClassCode = 0x020000
	// RegSize is each BAR's size (QEMU: 0x100 for both).
	RegSize = 0x100
)

// Register offsets (QEMU enum RTL8139_registers; RTL8139C+ datasheet).
const (
	regMAC0         = 0x00
	regMAR0         = 0x08
	regTxStatus0    = 0x10
	regTxAddr0      = 0x20
	regRxBuf        = 0x30
	regChipCmd      = 0x37
	regRxBufPtr     = 0x38
	regRxBufAddr    = 0x3a
	regIntrMask     = 0x3c
	regIntrStatus   = 0x3e
	regTxConfig     = 0x40
	regRxConfig     = 0x44
	regTimer        = 0x48
	regRxMissed     = 0x4c
	regCfg9346      = 0x50
	regConfig0      = 0x51
	regConfig1      = 0x52
	regTimerInt     = 0x54 // FlashReg in QEMU's names
	regMediaStatus  = 0x58
	regConfig3      = 0x59
	regConfig4      = 0x5a
	regHltClk       = 0x5b
	regMultiIntr    = 0x5c
	regPCIRevision  = 0x5e
	regTxSummary    = 0x60
	regBMCR         = 0x62
	regBMSR         = 0x64
	regANAR         = 0x66
	regANLPAR       = 0x68
	regANER         = 0x6a
	regCSCR         = 0x74
	regConfig5      = 0xd8
	regTxPoll       = 0xd9
	regCpCmd        = 0xe0
	regIntrMitigate = 0xe2
	regRxRingLo     = 0xe4
	regRxRingHi     = 0xe8
	regTxThresh     = 0xec
)

// ChipCmd bits.
const (
	cmdReset      = 0x10
	cmdRxEnb      = 0x08
	cmdTxEnb      = 0x04
	cmdRxBufEmpty = 0x01
)

// CPlusCmd bits.
const (
	cpRxVLAN = 0x0040
	cpRxEnb  = 0x0002
	cpTxEnb  = 0x0001
)

// Interrupt status bits (ISR/IMR).
const (
	IntPCIErr     = 0x8000
	IntPCSTimeout = 0x4000
	IntRxFIFOOver = 0x40
	IntLinkChg    = 0x20 // RxUnderrun / packet underrun / link change
	IntRxOverflow = 0x10
	IntTxErr      = 0x08
	IntTxOK       = 0x04
	IntRxErr      = 0x02
	IntRxOK       = 0x01
)

// Transmit status bits (TSD).
const (
	tsdOwn      = 0x2000 // "TxHostOwns": the driver owns the descriptor
	tsdUnderrun = 0x4000
	tsdOK       = 0x8000
	tsdAborted  = 0x40000000
)

// Receive packet header bits (normal mode).
const (
	rxMulticast = 0x8000
	rxPhysical  = 0x4000
	rxBroadcast = 0x2000
	rxStatusOK  = 0x0001
)

// RCR accept bits.
const (
	acceptBroadcast = 0x08
	acceptMulticast = 0x04
	acceptMyPhys    = 0x02
	acceptAllPhys   = 0x01
	rxNoWrap        = 0x80
)

// TCR: loopback mode bits, and the hardware version QEMU reports
// (HW_REVID(1,1,1,0,1,1,0): RTL-8139C+).
const (
	tcrLoopback = 3 << 17
	tcrVersion  = 1<<30 | 1<<29 | 1<<28 | 1<<26 | 1<<23
	tcrWritable = 0x7c800000 | 0x8070f80f // SET_MASKED's kept bits: version and reserved
)

const (
	// pciHz is the TCTR's rate (QEMU PCI_FREQUENCY).
	pciHz = 33000000
	// cpTxRing bounds one C+ transmit poll and wraps the ring (QEMU:
	// currCPlusTxDesc >= 64 wraps).
	cpTxRing = 64
	// cpRxRing wraps a C+ receive ring whose driver set no EOR.
	cpRxRing = 1024
	// minFrame is the padded length of a short frame (QEMU MIN_BUF_SIZE).
	minFrame = 60
	// vlanLen is an 802.1Q tag's length.
	vlanLen = 4
	// txStage bounds a C+ frame assembled from descriptors (QEMU
	// CP_TX_BUFFER_SIZE): a large-send frame is cut into Ethernet frames
	// from it; any other frame must fit one.
	txStage = 65536
	// normalTxMax is a normal-mode TSD's largest size (13 bits).
	normalTxMax = 0x1fff
)

// Stats are the device's counters (atomic; read any time).
type Stats struct {
	// RxFrames and TxFrames count frames delivered to the guest and sent
	// to the back-end.
	RxFrames, TxFrames atomic.Uint64
	// RxFiltered counts frames the accept modes refused (not errors).
	RxFiltered atomic.Uint64
	// RxMissed counts frames dropped for want of guest buffer (ring full,
	// C+ descriptor not owned or too small) or while the receiver is off.
	RxMissed atomic.Uint64
	// RxTooLong counts frames from the back-end larger than a NIC without
	// offloads takes.
	RxTooLong atomic.Uint64
	// TxDropped counts frames the guest described that were not sent:
	// too long, or a DMA error reading them.
	TxDropped atomic.Uint64
	// TxStalls counts transmits held for want of room in the back-end
	// (retried, not lost).
	TxStalls atomic.Uint64
	// DMAErrors counts guest-memory accesses that failed (unmapped).
	DMAErrors atomic.Uint64
}

// Config describes a device.
type Config struct {
	// MAC is the station address (IDR0-5 and the EEPROM).
	MAC [6]byte
	// Memory is guest memory (descriptors, buffers).
	Memory memory.Accessor
	// Backend is the network back-end; nil: a NIC with no cable (frames
	// sent are dropped, the link is down).
	Backend netback.Backend
	// Clock times TCTR and the timer interrupt; nil: the system clock.
	Clock clock.Clock
}

// Device is one RTL8139C+.
type Device struct {
	fn    *pci.Device
	mem   memory.Accessor
	be    netback.Backend
	clk   clock.Clock
	mac   [6]byte
	stats Stats

	mu sync.Mutex // guards st and the staging buffers
	st state

	// Staging buffers, owned under mu: normal-mode loopback and runt
	// padding (rxPad), C+ transmit assembly (txBuf).
	rxPad [netback.MaxFrame + vlanLen + 8]byte
	txBuf [txStage]byte
	loop  [normalTxMax + 1]byte
	// desc and word stage descriptors and ring words: guest memory is an
	// interface, so a stack array handed to it would escape (allocate).
	desc  [16]byte
	word  [4]byte
	tdump [64]byte
	seg   [netback.MaxFrame]byte // one large-send segment

	timer clock.Timer // PCSTimeout, armed under mu

	// w runs the back-end worker (poll) on its wake-ups.
	w nic.Worker
}

// state is the register file and the device's internal pointers: what a
// snapshot carries.
type state struct {
	phys [6]byte
	mult [8]byte

	txStatus [4]uint32
	txAddr   [4]uint32

	rxBuf, rxBufSize, rxBufPtr, rxBufAddr uint32

	isr, imr uint16

	tcr, rcr, rxMissed uint32
	cscr               uint16

	cfg9346, config0, config1, config3, config4, config5 uint8

	clockEnabled bool
	cmd          uint8
	multiIntr    uint16

	bmcr, bmsr, anar, anlpar, aner uint16

	cpCmd    uint16
	txThresh uint8
	cplus    bool

	currTxDesc, cpRxDesc, cpTxDesc uint32
	rxRingLo, rxRingHi             uint32

	ee eeprom

	timerInt    uint32
	tctrBase    time.Duration
	timerExpire time.Duration // 0: none

	tally tally

	// C+ transmit in progress: bytes assembled so far (may exceed
	// txStage: the excess is not kept and the frame is dropped).
	cpTxLen int
	// txStalled: a transmit waits for room in the back-end.
	txStalled bool
	// linkDown is the cable state (BMSR's link bit follows it).
	linkDown bool
}

// tally is the C+ tally counter block (QEMU RTL8139TallyCounters; dumped
// by DTCCR, 64 bytes).
type tally struct {
	txOK, rxOK, txErr uint64
	rxErr             uint32
	missPkt, fae      uint16
	tx1Col, txMCol    uint32
	rxOKPhy, rxOKBrd  uint64
	rxOKMul           uint32
	txAbt, txUndrn    uint16
}

// ErrNoMemory is returned by New without guest memory.
var ErrNoMemory = errors.New("rtl8139: no guest memory")

// New makes a device; call Function to place it on a bus and Close to
// stop it.
func New(c Config) (*Device, error) {
	if c.Memory == nil {
		return nil, ErrNoMemory
	}
	clk := c.Clock
	if clk == nil {
		clk = clock.System()
	}
	d := &Device{
		mem: c.Memory,
		be:  c.Backend,
		clk: clk,
		mac: c.MAC,
	}
	fn, err := pci.NewFunction(pci.Header{
		VendorID:          VendorID,
		DeviceID:          DeviceID,
		Revision:          Revision,
		Class:             ClassCode,
		SubsystemVendorID: 0x1af4,
		SubsystemID:       0x1100,
		InterruptPin:      1,
	},
		pci.BAR{Kind: pci.BARIO, Size: RegSize, Handler: regs{d}},
		pci.BAR{Kind: pci.BARMem32, Size: RegSize, Handler: regs{d}},
	)
	if err != nil {
		return nil, err
	}
	// QEMU pci_rtl8139_realize: "start of capability list, but no
	// capability list bit in status register, and offset 0xdc seems
	// unused".
	// Set before the function joins a bus, so its reset image has it.
	fn.SetConfig(0x34, 1, 0xdc)
	d.fn = fn
	d.st.ee.init(c.MAC)
	d.st.linkDown = c.Backend == nil
	d.resetLocked()
	d.w.Start(d.be, d.poll)
	return d, nil
}

// Function returns the PCI function.
func (d *Device) Function() *pci.Device { return d.fn }

// Stats returns the device's counters.
func (d *Device) Stats() *Stats { return &d.stats }

// MAC returns the station address the device was made with.
func (d *Device) MAC() [6]byte { return d.mac }

// Close stops the worker and detaches the back-end (which stays open: its
// owner closes it). Idempotent.
func (d *Device) Close() error {
	d.w.Close(func() {
		d.mu.Lock()
		if d.timer != nil {
			d.timer.Stop()
		}
		d.mu.Unlock()
	})
	return nil
}

// poll is the worker's work on a wake-up: timers, a transmit the back-end
// refused, frames waiting in the back-end.
func (d *Device) poll() {
	d.mu.Lock()
	d.checkTimerLocked()
	if d.st.txStalled {
		d.st.txStalled = false
		if d.st.cplus {
			d.cplusTransmitLocked()
		} else {
			d.transmitLocked()
		}
	}
	d.receiveLocked()
	d.mu.Unlock()
}

// Pause implements devices.Pauser: once it returns the device neither
// touches guest memory from its worker nor raises an interrupt from it;
// frames wait in the back-end's queue.
func (d *Device) Pause() { d.w.Pause() }

// Resume implements devices.Pauser.
func (d *Device) Resume() { d.w.Resume() }

// SetLink sets the cable state (QMP set_link): BMSR's link bit and MSR's
// LinkDown follow it, and ISR's link-change bit is raised (QEMU
// rtl8139_set_link_status).
func (d *Device) SetLink(up bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.st.linkDown = !up
	if up {
		d.st.bmsr |= 0x04
	} else {
		d.st.bmsr &^= 0x04
	}
	d.st.isr |= IntLinkChg
	d.updateIRQLocked()
	if up {
		d.w.Wake()
	}
}

// LinkUp reports the cable state.
func (d *Device) LinkUp() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return !d.st.linkDown
}

// Reset is the device's reset (PCI reset or a system reset; its PCI
// function is reset by its owner).
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.resetLocked()
}

// resetLocked is QEMU's rtl8139_reset: what ChipCmd's reset bit, a
// Cfg9346 auto-load and a system reset do. The EEPROM's contents and the
// cable state survive.
func (d *Device) resetLocked() {
	s := &d.st
	s.phys = d.mac
	s.isr, s.imr = 0, 0
	d.updateIRQLocked()
	for i := range s.txStatus {
		s.txStatus[i] = tsdOwn
	}
	s.currTxDesc, s.cpRxDesc, s.cpTxDesc = 0, 0, 0
	s.rxRingLo, s.rxRingHi = 0, 0
	s.rxBuf = 0
	s.resetRxRing(8192)
	s.tcr = tcrVersion
	s.clockEnabled = true
	s.cmd = cmdReset
	s.config0 = 0    // no boot ROM
	s.config1 = 0x0c // I/O and memory mapped registers
	s.config3 = 0x01 // fast back-to-back
	s.config5 = 0
	s.cscr = 1<<6 | 1<<8 | 1<<9 // CSCR_F_LINK_100 | CSCR_HEART_BIT | CSCR_LD
	s.cpCmd = 0
	s.cplus = false
	s.bmcr = 0x1000 // autonegotiation
	s.bmsr = 0x7809 | 0x0020
	if !s.linkDown {
		s.bmsr |= 0x04
	}
	s.anar, s.anlpar, s.aner = 0x05e1, 0x05e1, 0x0001
	s.timerInt = 0
	s.tctrBase = 0
	s.timerExpire = 0
	if d.timer != nil {
		d.timer.Stop()
	}
	s.tally = tally{}
	s.cpTxLen = 0
	s.txStalled = false
}

func (s *state) resetRxRing(size uint32) {
	s.rxBufSize, s.rxBufPtr, s.rxBufAddr = size, 0, 0
}

func (d *Device) updateIRQLocked() {
	d.fn.SetINTx(d.st.isr&d.st.imr != 0)
}

// --- register access (QEMU rtl8139_io_{read,write}{b,w,l}: the same file
// behind the I/O and memory BARs). An access is cut into pieces as QEMU's
// memory core cuts it before the device sees it (system/physmem.c
// memory_access_size: at most 4 bytes, and no larger than the address's
// alignment, the region not taking unaligned accesses): a 4-byte read at
// 0x11 is a byte at 0x11, a word at 0x12 and a byte at 0x14.

type regs struct{ d *Device }

// piece is nic.Piece.
func piece(off uint64, n uint8) uint8 { return nic.Piece(off, n) }

func (r regs) Read(a devices.Access) uint64 {
	d := r.d
	d.mu.Lock()
	defer d.mu.Unlock()
	var v uint64
	for done := uint8(0); done < a.Size; {
		off := a.Offset + uint64(done)
		l := piece(off, a.Size-done)
		var p uint64
		switch l {
		case 1:
			p = uint64(d.readb(uint8(off)))
		case 2:
			p = uint64(d.readw(uint8(off)))
		default:
			p = uint64(d.readl(uint8(off)))
		}
		v |= p << (8 * done)
		done += l
	}
	return v
}

func (r regs) Write(a devices.Access, v uint64) {
	d := r.d
	d.mu.Lock()
	defer d.mu.Unlock()
	for done := uint8(0); done < a.Size; {
		off := a.Offset + uint64(done)
		l := piece(off, a.Size-done)
		p := v >> (8 * done)
		switch l {
		case 1:
			d.writeb(uint8(off), uint8(p))
		case 2:
			d.writew(uint8(off), uint16(p))
		default:
			d.writel(uint8(off), uint32(p))
		}
		done += l
	}
}

func (d *Device) readb(addr uint8) uint8 {
	s := &d.st
	switch {
	case addr < regMAC0+6:
		return s.phys[addr]
	case addr < regMAR0:
		return 0
	case addr < regMAR0+8:
		return s.mult[addr-regMAR0]
	case addr >= regTxStatus0 && addr < regTxStatus0+16:
		return uint8(s.txStatus[(addr-regTxStatus0)/4] >> (8 * (addr & 3)))
	}
	switch addr {
	case regChipCmd:
		v := s.cmd
		if s.rxUnread() == 0 {
			v |= cmdRxBufEmpty
		}
		return v
	case regCfg9346:
		v := s.cfg9346
		if v&0xc0 == 0x80 {
			v &^= 1
			if s.ee.cs && s.ee.do {
				v |= 1
			}
		}
		return v
	case regConfig0:
		return s.config0
	case regConfig1:
		return s.config1
	case regConfig3:
		return s.config3
	case regConfig4:
		return s.config4
	case regConfig5:
		return s.config5
	case regMediaStatus:
		// LinkDown (bit 2) is the inverse of BMSR's link status.
		return 0xd0 | uint8(^s.bmsr&0x04)
	case regHltClk:
		if s.clockEnabled {
			return 1
		}
		return 0
	case regPCIRevision:
		return Revision
	case regTxThresh:
		return s.txThresh
	case 0x43: // TCR's top byte (Windows' driver reads it alone)
		return uint8(s.tcr >> 24)
	}
	return 0
}

func (d *Device) readw(addr uint8) uint16 {
	s := &d.st
	if addr >= regTxAddr0 && addr < regTxAddr0+16 {
		if addr&1 != 0 {
			return 0
		}
		return uint16(s.txAddr[(addr-regTxAddr0)/4] >> (8 * (addr & 3)))
	}
	switch addr {
	case regIntrMask:
		return s.imr
	case regIntrStatus:
		d.checkTimerLocked()
		return s.isr
	case regMultiIntr:
		return s.multiIntr
	case regRxBufPtr:
		return uint16(s.rxBufPtr - 0x10) // off by 16
	case regRxBufAddr:
		return uint16(s.rxBufAddr)
	case regBMCR:
		return s.bmcr
	case regBMSR:
		return s.bmsr
	case regANAR:
		return s.anar
	case regANLPAR:
		return s.anlpar
	case regANER:
		return s.aner
	case regCpCmd:
		return s.cpCmd
	case regIntrMitigate:
		return 0
	case regTxSummary:
		return s.tsad()
	case regCSCR:
		return s.cscr
	}
	return uint16(d.readb(addr)) | uint16(d.readb(addr+1))<<8
}

func (d *Device) readl(addr uint8) uint32 {
	s := &d.st
	switch {
	case addr >= regTxStatus0 && addr < regTxStatus0+16:
		if addr&3 != 0 {
			return 0
		}
		return s.txStatus[(addr-regTxStatus0)/4]
	case addr >= regTxAddr0 && addr < regTxAddr0+16:
		return s.txAddr[(addr-regTxAddr0)/4]
	}
	switch addr {
	case regRxMissed:
		return s.rxMissed
	case regTxConfig:
		return s.tcr
	case regRxConfig:
		return s.rcr
	case regRxBuf:
		return s.rxBuf
	case regRxRingLo:
		return s.rxRingLo
	case regRxRingHi:
		return s.rxRingHi
	case regTimer:
		return d.tctr()
	case regTimerInt:
		return s.timerInt
	}
	return uint32(d.readb(addr)) | uint32(d.readb(addr+1))<<8 |
		uint32(d.readb(addr+2))<<16 | uint32(d.readb(addr+3))<<24
}

// setMasked keeps the bits of mask from cur and takes the others from v
// (QEMU SET_MASKED).
func setMasked[T ~uint8 | ~uint16 | ~uint32](v, mask, cur T) T { return v&^mask | cur&mask }

func (d *Device) writeb(addr uint8, v uint8) {
	s := &d.st
	switch {
	case addr < regMAC0+6:
		s.phys[addr] = v
		return
	case addr < regMAR0:
		return
	case addr < regMAR0+8:
		s.mult[addr-regMAR0] = v
		return
	}
	switch addr {
	case regChipCmd:
		if v&cmdReset != 0 {
			d.resetLocked()
		}
		if v&cmdRxEnb != 0 {
			s.cpRxDesc = 0
		}
		if v&cmdTxEnb != 0 {
			s.cpTxDesc = 0
		}
		v = setMasked(v, 0xe3, s.cmd) &^ cmdReset
		wasRx := s.cmd&cmdRxEnb != 0
		s.cmd = v
		if !wasRx && v&cmdRxEnb != 0 {
			d.w.Wake()
		}
	case regCfg9346:
		v = setMasked(v, 0x31, s.cfg9346)
		switch v & 0xc0 {
		case 0x80:
			s.ee.setWire(v&0x08 != 0, v&0x04 != 0, v&0x02 != 0)
		case 0x40: // auto-load: a reset
			v = 0
			d.resetLocked()
		}
		s.cfg9346 = v
	case regTxConfig:
		d.writeTCR(s.tcr&0xffffff00 | uint32(v))
	case regConfig0:
		if s.configWritable() {
			s.config0 = setMasked(v, 0xf8, s.config0)
		}
	case regConfig1:
		if s.configWritable() {
			s.config1 = setMasked(v, 0x0c, s.config1)
		}
	case regConfig3:
		if s.configWritable() {
			s.config3 = setMasked(v, 0x8f, s.config3)
		}
	case regConfig4:
		if s.configWritable() {
			s.config4 = setMasked(v, 0x0a, s.config4)
		}
	case regConfig5:
		s.config5 = setMasked(v, 0x80, s.config5)
	case regHltClk:
		switch v {
		case 'R':
			s.clockEnabled = true
			d.w.Wake()
		case 'H':
			s.clockEnabled = false
		}
	case regTxThresh:
		s.txThresh = v
	case regTxPoll:
		// Bit 6 polls the normal-priority ring; the high-priority ring
		// (bit 7) is not implemented, as in QEMU.
		if v&0x40 != 0 {
			d.cplusTransmitLocked()
		}
	}
}

func (d *Device) writew(addr uint8, v uint16) {
	s := &d.st
	switch addr {
	case regIntrMask:
		s.imr = setMasked(v, 0x1e00, s.imr)
		d.armTimerLocked()
		d.updateIRQLocked()
	case regIntrStatus:
		n := setMasked(s.isr&^v, 0x1e00, s.isr)
		// QEMU lowers the line, then raises it again if bits remain.
		s.isr = 0
		d.updateIRQLocked()
		s.isr = n
		d.armTimerLocked()
		d.updateIRQLocked()
	case regMultiIntr:
		s.multiIntr = setMasked(v, 0xf000, s.multiIntr)
	case regRxBufPtr:
		s.rxBufPtr = (uint32(v) + 0x10) & (s.rxBufSize - 1)
		d.w.Wake() // room for frames held in the back-end
	case regBMCR:
		// QEMU 7.2 keeps 0xccff (reset self-clears; loopback, power
		// down, isolate are not writable), speed, autonegotiation and
		// duplex read-only.
		s.bmcr = setMasked(v, 0xccff|0x3000|0x0100, s.bmcr)
	case regBMSR:
		s.bmsr = setMasked(v, 0xff3f, s.bmsr)
	case regANAR:
		s.anar = v
	case regANLPAR:
	case regANER:
		s.aner = v
	case regCpCmd:
		s.cplus = true
		s.cpCmd = setMasked(v, 0xff84, s.cpCmd)
		d.w.Wake()
	case regIntrMitigate:
	default:
		d.writeb(addr, uint8(v))
		d.writeb(addr+1, uint8(v>>8))
	}
}

func (d *Device) writel(addr uint8, v uint32) {
	s := &d.st
	switch {
	case addr >= regTxStatus0 && addr < regTxStatus0+16:
		d.writeTSD(uint32(addr-regTxStatus0)/4, v)
		return
	case addr >= regTxAddr0 && addr < regTxAddr0+16:
		s.txAddr[(addr-regTxAddr0)/4] = v
		return
	}
	switch addr {
	case regRxMissed:
		s.rxMissed = 0
	case regTxConfig:
		d.writeTCR(v)
	case regRxConfig:
		s.rcr = setMasked(v, 0xf0fc0040, s.rcr)
		s.resetRxRing(8192 << ((s.rcr >> 11) & 3))
	case regRxBuf:
		s.rxBuf = v
	case regRxRingLo:
		s.rxRingLo = v
		d.w.Wake()
	case regRxRingHi:
		s.rxRingHi = v
	case regTimer:
		s.tctrBase = d.clk.Now()
		d.armTimerLocked()
	case regTimerInt:
		if s.timerInt != v {
			s.timerInt = v
			d.armTimerLocked()
		}
	default:
		d.writeb(addr, uint8(v))
		d.writeb(addr+1, uint8(v>>8))
		d.writeb(addr+2, uint8(v>>16))
		d.writeb(addr+3, uint8(v>>24))
	}
}

func (s *state) configWritable() bool { return s.cfg9346&0xc0 == 0xc0 }

// writeTCR takes a TCR write only while the transmitter is enabled (QEMU
// rtl8139_TxConfig_write).
func (d *Device) writeTCR(v uint32) {
	s := &d.st
	if s.cmd&cmdTxEnb == 0 {
		return
	}
	s.tcr = setMasked(v, tcrWritable, s.tcr)
}

// tsad is the Transmit Status of All Descriptors register.
func (s *state) tsad() uint16 {
	var v uint16
	for i, t := range s.txStatus {
		if t&tsdOK != 0 {
			v |= 1 << (12 + i)
		}
		if t&tsdUnderrun != 0 {
			v |= 1 << (8 + i)
		}
		if t&tsdAborted != 0 {
			v |= 1 << (4 + i)
		}
		if t&tsdOwn != 0 {
			v |= 1 << i
		}
	}
	return v
}

// rxUnread is the count of bytes in the normal-mode ring the driver has
// not read.
func (s *state) rxUnread() uint32 {
	return (s.rxBufSize + s.rxBufAddr - s.rxBufPtr) & (s.rxBufSize - 1)
}

// --- timer (QEMU rtl8139_set_next_tctr_time: TCTR counts PCI clocks
// from the last TCTR write; PCSTimeout is set when its low 32 bits reach
// TimerInt)

func (d *Device) tctr() uint32 {
	return uint32(ticks(d.clk.Now() - d.st.tctrBase))
}

func ticks(t time.Duration) uint64 {
	if t < 0 {
		return 0
	}
	// t*33e6/1e9 without overflow for any uptime a process has.
	sec, ns := uint64(t/time.Second), uint64(t%time.Second)
	return sec*pciHz + ns*pciHz/uint64(time.Second)
}

func fromTicks(n uint64) time.Duration {
	sec, rest := n/pciHz, n%pciHz
	return time.Duration(sec)*time.Second + time.Duration(rest*uint64(time.Second)/pciHz)
}

// checkTimerLocked sets PCSTimeout if the timer expired since it was
// armed, and arms it again.
func (d *Device) checkTimerLocked() {
	s := &d.st
	if s.timerExpire != 0 && d.clk.Now() >= s.timerExpire {
		s.isr |= IntPCSTimeout
		d.updateIRQLocked()
	}
	d.armTimerLocked()
}

// armTimerLocked computes the next expiry and, when the interrupt is
// unmasked and not pending, starts a clock timer for it (whose callback
// goes through the worker, so a paused device raises nothing).
func (d *Device) armTimerLocked() {
	s := &d.st
	s.timerExpire = 0
	if s.timerInt == 0 {
		return
	}
	now := d.clk.Now()
	pt := ticks(now - s.tctrBase)
	low := pt & 0xffffffff
	next := pt - low + uint64(s.timerInt)
	if low >= uint64(s.timerInt) {
		next += 1 << 32
	}
	s.timerExpire = s.tctrBase + fromTicks(next)
	if s.timerExpire <= now {
		s.timerExpire = now + 1
	}
	if s.imr&IntPCSTimeout != 0 && s.isr&IntPCSTimeout == 0 {
		wait := s.timerExpire - now
		if d.timer == nil {
			d.timer = d.clk.AfterFunc(wait, d.w.Wake)
		} else {
			d.timer.Reset(wait)
		}
	}
}

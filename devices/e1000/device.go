package e1000

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

// PCI identity (QEMU hw/net/e1000.c e1000_devices[0] "e1000":
// E1000_DEV_ID_82540EM, revision 0x03; class Ethernet; QEMU's default
// subsystem IDs 1af4:1100, hw/pci/pci.c pci_set_default_subsystem_id).
const (
	VendorID  = 0x8086
	DeviceID  = 0x100e
	Revision  = 0x03
	ClassCode = 0x020000
	// MMIOSize and IOSize are the BARs' sizes (QEMU PNPMMIO_SIZE,
	// IOPORT_SIZE).
	MMIOSize = 0x20000
	IOSize   = 0x40
)

// Register offsets (QEMU hw/net/e1000_regs.h; 8254x SDM table 13-2),
// in bytes.
const (
	regCTRL    = 0x00000
	regSTATUS  = 0x00008
	regEECD    = 0x00010
	regEERD    = 0x00014
	regMDIC    = 0x00020
	regVET     = 0x00038
	regICR     = 0x000c0
	regITR     = 0x000c4
	regICS     = 0x000c8
	regIMS     = 0x000d0
	regIMC     = 0x000d8
	regRCTL    = 0x00100
	regTCTL    = 0x00400
	regAIT     = 0x00458
	regLEDCTL  = 0x00e00
	regPBA     = 0x01000
	regRDFH    = 0x02410
	regRDFT    = 0x02418
	regRDFHS   = 0x02420
	regRDFTS   = 0x02428
	regRDFPC   = 0x02430
	regRDBAL   = 0x02800
	regRDBAH   = 0x02804
	regRDLEN   = 0x02808
	regRDH     = 0x02810
	regRDT     = 0x02818
	regRDTR    = 0x02820
	regRADV    = 0x0282c
	regTDFH    = 0x03410
	regTDFT    = 0x03418
	regTDFHS   = 0x03420
	regTDFTS   = 0x03428
	regTDFPC   = 0x03430
	regTDBAL   = 0x03800
	regTDBAH   = 0x03804
	regTDLEN   = 0x03808
	regTDH     = 0x03810
	regTDT     = 0x03818
	regTXDCTL  = 0x03828
	regTADV    = 0x0382c
	regCRCERRS = 0x04000
	regMPC     = 0x04010
	regSCC     = 0x04014
	regECOL    = 0x04018
	regMCC     = 0x0401c
	regLATECOL = 0x04020
	regCOLC    = 0x04028
	regDC      = 0x04030
	regTNCRS   = 0x04034
	regSEQEC   = 0x04038
	regCEXTERR = 0x0403c
	regRLEC    = 0x04040
	regXONRXC  = 0x04048
	regXONTXC  = 0x0404c
	regXOFFRXC = 0x04050
	regXOFFTXC = 0x04054
	regFCRUC   = 0x04058
	regPRC64   = 0x0405c
	regPRC1522 = 0x04070
	regGPRC    = 0x04074
	regBPRC    = 0x04078
	regMPRC    = 0x0407c
	regGPTC    = 0x04080
	regGORCL   = 0x04088
	regGORCH   = 0x0408c
	regGOTCL   = 0x04090
	regGOTCH   = 0x04094
	regRNBC    = 0x040a0
	regRUC     = 0x040a4
	regRFC     = 0x040a8
	regROC     = 0x040ac
	regRJC     = 0x040b0
	regMGTPRC  = 0x040b4
	regMGTPTC  = 0x040bc
	regTORL    = 0x040c0
	regTORH    = 0x040c4
	regTOTL    = 0x040c8
	regTOTH    = 0x040cc
	regTPR     = 0x040d0
	regTPT     = 0x040d4
	regPTC64   = 0x040d8
	regPTC1522 = 0x040ec
	regMPTC    = 0x040f0
	regBPTC    = 0x040f4
	regTSCTC   = 0x040f8
	regTSCTFC  = 0x040fc
	regMTA     = 0x05200
	regRA      = 0x05400
	regVFTA    = 0x05600
	regWUC     = 0x05800
	regWUFC    = 0x05808
	regWUS     = 0x05810
	regMANC    = 0x05820
	regIPAV    = 0x05838
	regIP4AT   = 0x05840
	regIP6AT   = 0x05880
	regWUPM    = 0x05a00
	regSWSM    = 0x05b50
	regFFLT    = 0x05f00
	regFFMT    = 0x09000
	regFFVT    = 0x09800
	regPBM     = 0x10000
)

// nregs is the register file's size in 32-bit registers.
const nregs = MMIOSize / 4

// ix is a register's index in the file.
func ix(off uint32) uint32 { return off >> 2 }

// Register bits (QEMU e1000_regs.h; 8254x SDM chapter 13).
const (
	ctrlSLU     = 0x00000040
	ctrlSPD1000 = 0x00000200
	ctrlSWDPIN0 = 0x00040000
	ctrlSWDPIN2 = 0x00100000
	ctrlRST     = 0x04000000
	ctrlVME     = 0x40000000

	statusFD       = 0x00000001
	statusLU       = 0x00000002
	statusSpd1000  = 0x00000080
	statusASDV     = 0x00000300
	statusMTXCKOK  = 0x00000400
	statusGIOMastr = 0x00080000

	eecdSK   = 0x001
	eecdCS   = 0x002
	eecdDI   = 0x004
	eecdDO   = 0x008
	eecdFWE  = 0x030
	eecdREQ  = 0x040
	eecdGNT  = 0x080
	eecdPRES = 0x100

	eerdStart     = 0x01
	eerdDone      = 0x10
	eerdAddrShift = 8
	eerdDataShift = 16

	mdicDataMask = 0x0000ffff
	mdicRegShift = 16
	mdicRegMask  = 0x001f0000
	mdicPHYShift = 21
	mdicPHYMask  = 0x03e00000
	mdicOpWrite  = 0x04000000
	mdicOpRead   = 0x08000000
	mdicReady    = 0x10000000
	mdicIntEn    = 0x20000000
	mdicError    = 0x40000000

	mancDefault = 0x00200000 | 0x00020000 | 0x00002000 | 0x00000200 | 0x00000100

	rctlEN     = 0x00000002
	rctlSBP    = 0x00000004
	rctlUPE    = 0x00000008
	rctlMPE    = 0x00000010
	rctlLPE    = 0x00000020
	rctlRDMTS  = 0x00000300
	rctlMOSh   = 12
	rctlBAM    = 0x00008000
	rctlSZMask = 0x00030000
	rctlVFE    = 0x00040000
	rctlBSEX   = 0x02000000
	rctlSECRC  = 0x04000000

	tctlEN = 0x00000002

	rahAV = 0x80000000
)

// Interrupt causes (ICR/ICS/IMS/IMC).
const (
	IntTXDW   = 0x0001
	IntTXQE   = 0x0002
	IntLSC    = 0x0004
	IntRXDMT0 = 0x0010
	IntRXO    = 0x0040
	IntRXT0   = 0x0080
	IntMDAC   = 0x0200
)

// PHY registers (IEEE 802.3 clause 22; M88E1000 specific ones) and bits
// (QEMU hw/net/mii.h).
const (
	phyBMCR       = 0x00
	phyBMSR       = 0x01
	phyID1        = 0x02
	phyID2        = 0x03
	phyANAR       = 0x04
	phyANLPAR     = 0x05
	phyANER       = 0x06
	phyCTRL1000   = 0x09
	phySTAT1000   = 0x0a
	phySpecCtrl   = 0x10
	phySpecStatus = 0x11
	phyExtSpecCtl = 0x14
	phyRxErrCntr  = 0x15

	bmcrSpeed1000 = 0x0040
	bmcrFD        = 0x0100
	bmcrANRestart = 0x0200
	bmcrAutoEn    = 0x1000
	bmcrLoopback  = 0x4000
	bmcrReset     = 0x8000

	bmsrLinkSt = 0x0004
	bmsrANComp = 0x0020

	anlparACK = 0x4000

	// phyID2Value is the 82540EM's PHY (E1000_PHY_ID2_8254xx_DEFAULT).
	phyID2Value = 0x0c20
)

// phyCap says which PHY registers MDIC reads and writes (QEMU phy_regcap).
var phyCap = [32]uint8{
	phyBMSR: phyR, phyExtSpecCtl: phyRW, phyID1: phyR, phySpecCtrl: phyRW,
	phyBMCR: phyRW, phyCTRL1000: phyRW, phyANLPAR: phyR, phySTAT1000: phyR,
	phyANAR: phyRW, phyRxErrCntr: phyR, phyID2: phyR, phySpecStatus: phyR,
	phyANER: phyR,
}

const (
	phyR  = 1
	phyW  = 2
	phyRW = phyR | phyW
)

// phyReset is the PHY at reset (QEMU phy_reg_init): 1000 Mb/s full
// duplex with autonegotiation, link up, autonegotiation not yet complete.
var phyReset = [32]uint16{
	phyBMCR:       bmcrSpeed1000 | bmcrFD | bmcrAutoEn,
	phyBMSR:       0x794d,
	phyID1:        0x0141,
	phyID2:        phyID2Value,
	phyANAR:       0x0de1,
	phyANLPAR:     0x01e0,
	phyCTRL1000:   0x0e00,
	phySTAT1000:   0x3c00,
	phySpecCtrl:   0x0360,
	phySpecStatus: 0xac00,
	phyExtSpecCtl: 0x0d60,
}

// eepromTemplate is the EEPROM image before MAC, device ID and checksum
// (QEMU e1000_eeprom_template; 8254x SDM tables 5-2/5-3).
var eepromTemplate = [64]uint16{
	0x0000, 0x0000, 0x0000, 0x0000, 0xffff, 0x0000, 0x0000, 0x0000,
	0x3000, 0x1000, 0x6403, DeviceID, 0x8086, DeviceID, 0x8086, 0x3040,
	0x0008, 0x2000, 0x7e14, 0x0048, 0x1000, 0x00d8, 0x0000, 0x2700,
	0x6cc9, 0x3150, 0x0722, 0x040b, 0x0984, 0x0000, 0xc000, 0x0706,
	0x1008, 0x0000, 0x0f04, 0x7fff, 0x4d01, 0xffff, 0xffff, 0xffff,
	0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
	0x0100, 0x4000, 0x121c, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
	0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0x0000,
}

const (
	eepromWords    = 64
	eepromChecksum = 63     // the checksum word
	eepromSum      = 0xbaba // what the 64 words add up to
	eepromReadOp   = 6      // Microwire READ opcode (110b)
)

// Timers (QEMU: autonegotiation completes 500 ms after a restart; the
// mitigation window counts 256 ns units, at least 500 of them).
const (
	autonegDelay = 500 * time.Millisecond
	mitUnit      = 256 * time.Nanosecond
	mitMin       = 500
)

// Stats are the device's counters (atomic; read any time).
type Stats struct {
	// RxFrames and TxFrames count frames delivered to the guest and sent
	// to the back-end (or looped back).
	RxFrames, TxFrames atomic.Uint64
	// RxFiltered counts frames the receive filters refused (not errors),
	// and oversized ones RCTL does not take.
	RxFiltered atomic.Uint64
	// RxMissed counts frames dropped for want of guest buffers, or while
	// the cable is out.
	RxMissed atomic.Uint64
	// RxTooLong counts frames from the back-end larger than a NIC without
	// offloads takes.
	RxTooLong atomic.Uint64
	// TxDropped counts frames the guest described that were not sent:
	// malformed, too long for the back-end, no cable, or TSO segments that
	// found the back-end full.
	TxDropped atomic.Uint64
	// TxSegments counts TCP segmentation (TSO) segments sent.
	TxSegments atomic.Uint64
	// TxStalls counts transmits held for want of room in the back-end
	// (retried, not lost).
	TxStalls atomic.Uint64
	// DMAErrors counts guest-memory accesses that failed (unmapped).
	DMAErrors atomic.Uint64
}

// Config describes a device.
type Config struct {
	// MAC is the station address (RAL0/RAH0 and the EEPROM).
	MAC [6]byte
	// Memory is guest memory (descriptors, buffers).
	Memory memory.Accessor
	// Backend is the network back-end; nil: a NIC with no cable (frames
	// sent are dropped, the link is down).
	Backend netback.Backend
	// Clock times autonegotiation and interrupt mitigation; nil: the
	// system clock.
	Clock clock.Clock
}

// Device is one 82540EM.
type Device struct {
	fn    *pci.Device
	mem   memory.Accessor
	dma   nic.DMA
	be    netback.Backend
	clk   clock.Clock
	mac   [6]byte
	stats Stats

	mu sync.Mutex // guards st, tx and the staging buffers
	st state
	tx txState

	// Staging, owned under mu: the frame being assembled (4 bytes of room
	// in front for a VLAN tag), the TSO header, a received runt's padding,
	// one descriptor.
	txBuf  [4 + txData]byte
	txHdr  [256]byte
	rxPad  [netback.MaxFrame + 8]byte
	desc   [16]byte
	status [1]byte

	autoneg clock.Timer // armed under mu
	mit     clock.Timer

	// w runs the back-end worker (poll) on its wake-ups.
	w nic.Worker
}

// state is the register file and the device's internal state: what a
// snapshot carries.
type state struct {
	r   [nregs]uint32
	phy [32]uint16
	ee  [eepromWords]uint16

	// EECD bit-banging (QEMU eecd_state).
	eeValIn              uint32
	eeBitIn, eeBitOut    uint16
	eeReading            bool
	eeOld                uint32
	rxBufSize, rxMinShft uint32

	// Interrupt mitigation (QEMU mit_*): the window is open until mitAt.
	mitOn    bool
	mitLevel bool
	mitIDE   bool
	mitAt    time.Duration
	// autonegAt is when a restarted autonegotiation completes (0: none).
	autonegAt time.Duration

	// txStalled: a transmit waits for room in the back-end.
	txStalled bool
	// linkDown is the cable state.
	linkDown bool
}

// ErrNoMemory is returned by New without guest memory.
var ErrNoMemory = errors.New("e1000: no guest memory")

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
	d.dma = nic.DMA{Mem: c.Memory, Errors: &d.stats.DMAErrors}
	fn, err := pci.NewFunction(pci.Header{
		VendorID:          VendorID,
		DeviceID:          DeviceID,
		Revision:          Revision,
		Class:             ClassCode,
		SubsystemVendorID: 0x1af4,
		SubsystemID:       0x1100,
		InterruptPin:      1,
	},
		pci.BAR{Kind: pci.BARMem32, Size: MMIOSize, Handler: mmio{d}},
		pci.BAR{Kind: pci.BARIO, Size: IOSize}, // QEMU 7.2 e1000_io_ops: reads 0
	)
	if err != nil {
		return nil, err
	}
	// The bus-master bit gates receive (QEMU e1000x_rx_ready); turning it
	// on lets frames held in the back-end in (e1000_write_config).
	if err := fn.SetWriteHook(func(off uint32, size uint8) {
		if off <= 4 && off+uint32(size) > 4 {
			d.w.Wake()
		}
	}); err != nil {
		return nil, err
	}
	d.fn = fn
	d.st.ee = eepromImage(c.MAC)
	d.st.linkDown = c.Backend == nil
	d.resetLocked()
	d.w.Start(d.be, d.poll)
	return d, nil
}

// eepromImage is the EEPROM for mac (QEMU e1000x_core_prepare_eeprom).
func eepromImage(mac [6]byte) [eepromWords]uint16 {
	e := eepromTemplate
	for i := range 3 {
		e[i] = uint16(mac[2*i+1])<<8 | uint16(mac[2*i])
	}
	var sum uint16
	for _, w := range e[:eepromChecksum] {
		sum += w
	}
	e[eepromChecksum] = eepromSum - sum
	return e
}

// Function returns the PCI function.
func (d *Device) Function() *pci.Device { return d.fn }

// Stats returns the device's counters.
func (d *Device) Stats() *Stats { return &d.stats }

// MAC returns the station address the device was made with.
func (d *Device) MAC() [6]byte { return d.mac }

// Close stops the worker and the timers and detaches the back-end (which
// stays open: its owner closes it). Idempotent.
func (d *Device) Close() error {
	d.w.Close(func() {
		d.mu.Lock()
		if d.autoneg != nil {
			d.autoneg.Stop()
		}
		if d.mit != nil {
			d.mit.Stop()
		}
		d.mu.Unlock()
	})
	return nil
}

// poll is the worker's work on a wake-up: timers, a transmit the back-end
// refused, frames waiting in the back-end.
func (d *Device) poll() {
	d.mu.Lock()
	d.timersLocked()
	if d.st.txStalled {
		d.st.txStalled = false
		d.startXmitLocked()
	}
	d.receiveLocked()
	d.mu.Unlock()
}

// timersLocked fires the mitigation and autonegotiation timers that are
// due (their clock timers only wake the worker, so a paused device raises
// nothing).
func (d *Device) timersLocked() {
	s := &d.st
	now := d.clk.Now()
	if s.mitOn && now >= s.mitAt {
		// QEMU e1000_mit_timer: the window closes; the line follows the
		// causes again.
		s.mitOn = false
		d.setCauseLocked(s.r[ix(regICR)])
	}
	if s.autonegAt != 0 && now >= s.autonegAt {
		s.autonegAt = 0
		// QEMU e1000_autoneg_timer: done unless the cable is out.
		if !s.linkDown {
			d.linkUpLocked()
			s.phy[phyANLPAR] |= anlparACK
			s.phy[phyBMSR] |= bmsrANComp
			d.setICSLocked(IntLSC)
		}
	}
}

// Pause implements devices.Pauser: once it returns the device neither
// touches guest memory from its worker nor raises an interrupt from it;
// frames wait in the back-end's queue.
func (d *Device) Pause() { d.w.Pause() }

// Resume implements devices.Pauser.
func (d *Device) Resume() { d.w.Resume() }

// SetLink sets the cable state (QMP set_link; QEMU e1000_set_link_status):
// down clears STATUS.LU and the PHY's link; up with autonegotiation on
// and not complete restarts it (the link comes up 500 ms later), else
// brings the link up at once. LSC is raised when STATUS changed.
func (d *Device) SetLink(up bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := &d.st
	s.linkDown = !up
	old := s.r[ix(regSTATUS)]
	if !up {
		d.linkDownLocked()
	} else if s.phy[phyBMCR]&bmcrAutoEn != 0 && s.phy[phyBMSR]&bmsrANComp == 0 {
		d.restartAutonegLocked()
	} else {
		d.linkUpLocked()
	}
	if s.r[ix(regSTATUS)] != old {
		d.setICSLocked(IntLSC)
	}
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

func (d *Device) linkDownLocked() {
	s := &d.st
	s.r[ix(regSTATUS)] &^= statusLU
	s.phy[phyBMSR] &^= bmsrLinkSt | bmsrANComp
	s.phy[phyANLPAR] &^= anlparACK
}

func (d *Device) linkUpLocked() {
	s := &d.st
	s.r[ix(regSTATUS)] |= statusLU
	s.phy[phyBMSR] |= bmsrLinkSt
	d.w.Wake() // frames held for want of link
}

// restartAutonegLocked takes the link down and completes autonegotiation
// autonegDelay later (QEMU e1000x_restart_autoneg).
func (d *Device) restartAutonegLocked() {
	d.linkDownLocked()
	d.st.autonegAt = d.clk.Now() + autonegDelay
	d.armLocked(&d.autoneg, autonegDelay)
}

// armLocked starts (or re-arms) a clock timer that wakes the worker.
func (d *Device) armLocked(t *clock.Timer, wait time.Duration) {
	if *t == nil {
		*t = d.clk.AfterFunc(wait, d.w.Wake)
	} else {
		(*t).Reset(wait)
	}
}

// Reset is the device's reset (PCI reset or a system reset; its PCI
// function is reset by its owner).
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.resetLocked()
}

// resetLocked is QEMU's e1000_reset: registers and PHY to their reset
// values, the transmit state cleared, RA0 from the MAC; the EEPROM and
// the cable state survive. CTRL.RST does not call it (QEMU 7.2 only
// clears the bit).
func (d *Device) resetLocked() {
	s := &d.st
	if d.autoneg != nil {
		d.autoneg.Stop()
	}
	if d.mit != nil {
		d.mit.Stop()
	}
	s.mitOn, s.mitLevel, s.mitIDE = false, false, false
	s.mitAt, s.autonegAt = 0, 0
	s.phy = phyReset
	s.r = [nregs]uint32{}
	r := &s.r
	r[ix(regPBA)] = 0x00100030
	r[ix(regLEDCTL)] = 0x602
	r[ix(regCTRL)] = ctrlSWDPIN2 | ctrlSWDPIN0 | ctrlSPD1000 | ctrlSLU
	r[ix(regSTATUS)] = 0x80000000 | statusGIOMastr | statusASDV | statusMTXCKOK |
		statusSpd1000 | statusFD | statusLU
	r[ix(regMANC)] = mancDefault
	r[ix(regVET)] = 0x8100 // init-vet (QEMU's default since 7.0: ETH_P_VLAN)
	s.rxMinShft = 1        // the buffer size stays (QEMU keeps rxbuf_size)
	d.tx = txState{}
	s.txStalled = false
	s.eeValIn, s.eeBitIn, s.eeBitOut, s.eeReading, s.eeOld = 0, 0, 0, false, 0
	if s.linkDown {
		d.linkDownLocked()
	}
	m := d.mac
	r[ix(regRA)] = uint32(m[0]) | uint32(m[1])<<8 | uint32(m[2])<<16 | uint32(m[3])<<24
	r[ix(regRA)+1] = rahAV | uint32(m[4]) | uint32(m[5])<<8
	d.fn.SetINTx(false)
}

// --- interrupts (QEMU set_interrupt_cause and the mitigation timer)

// setCauseLocked sets ICR (and ICS, which reads the same) to v and
// drives the line: a rising edge inside the mitigation window waits for
// it to close; one outside opens a new window.
func (d *Device) setCauseLocked(v uint32) {
	s := &d.st
	r := &s.r
	r[ix(regICR)] = v
	r[ix(regICS)] = v
	pending := r[ix(regIMS)] & v
	if !s.mitLevel && pending != 0 {
		if s.mitOn {
			return
		}
		var delay uint32
		upd := func(v uint32) {
			if v != 0 && (delay == 0 || v < delay) {
				delay = v
			}
		}
		if s.mitIDE && pending&(IntTXQE|IntTXDW) != 0 {
			upd(r[ix(regTADV)] * 4)
		}
		if r[ix(regRDTR)] != 0 && pending&IntRXT0 != 0 {
			upd(r[ix(regRADV)] * 4)
		}
		upd(r[ix(regITR)])
		delay = max(delay, mitMin)
		s.mitOn = true
		wait := time.Duration(delay) * mitUnit
		s.mitAt = d.clk.Now() + wait
		d.armLocked(&d.mit, wait)
		s.mitIDE = false
	}
	s.mitLevel = pending != 0
	d.fn.SetINTx(s.mitLevel)
}

// setICSLocked adds causes (QEMU set_ics).
func (d *Device) setICSLocked(v uint32) { d.setCauseLocked(v | d.st.r[ix(regICR)]) }

// --- register access

// mmio is BAR0. QEMU's e1000 takes 32-bit accesses only; its memory
// core first cuts an access into aligned pieces of at most 4 bytes
// (nic.Piece), then widens each piece to the 32-bit register its address
// falls in (system/memory.c access_with_adjusted_size: the register of
// addr>>2, the piece's value zero-extended on writes, the register's low
// bytes on reads).
type mmio struct{ d *Device }

func (m mmio) Read(a devices.Access) uint64 {
	if a.Size == 0 || a.Size > 8 || a.Offset+uint64(a.Size) > MMIOSize {
		return 0
	}
	d := m.d
	var v uint64
	d.mu.Lock()
	for done := uint8(0); done < a.Size; {
		off := a.Offset + uint64(done)
		l := nic.Piece(off, a.Size-done)
		p := uint64(d.readLocked(uint32(off)>>2)) & (1<<(8*l) - 1)
		v |= p << (8 * done)
		done += l
	}
	d.mu.Unlock()
	return v
}

func (m mmio) Write(a devices.Access, v uint64) {
	if a.Size == 0 || a.Size > 8 || a.Offset+uint64(a.Size) > MMIOSize {
		return
	}
	d := m.d
	d.mu.Lock()
	for done := uint8(0); done < a.Size; {
		off := a.Offset + uint64(done)
		l := nic.Piece(off, a.Size-done)
		d.writeLocked(uint32(off)>>2, uint32(v>>(8*done))&uint32(1<<(8*l)-1))
		done += l
	}
	d.mu.Unlock()
}

// Register kinds for the plain ones (QEMU macreg_readops/writeops).
const (
	kRead  = 1 << iota // readable as stored
	kWrite             // writable as given (or under its mask)
	kClr4              // read-to-clear
	kClr8              // read-to-clear high half of a pair (clears both)
)

// regKind and regMask describe every register index; filled by init.
var (
	regKind [nregs]uint8
	regMask [nregs]uint32
)

func init() {
	set := func(k uint8, offs ...uint32) {
		for _, o := range offs {
			regKind[ix(o)] |= k
			regMask[ix(o)] = 0xffffffff
		}
	}
	span := func(k uint8, off, n uint32) {
		for i := range n {
			set(k, off+4*i)
		}
	}
	set(kRead, regPBA, regRCTL, regTDH, regTXDCTL, regWUFC, regTDT, regCTRL, regLEDCTL,
		regMANC, regMDIC, regSWSM, regSTATUS, regTORL, regTOTL, regIMS, regTCTL, regRDH,
		regRDT, regVET, regICS, regTDBAL, regTDBAH, regRDBAH, regRDBAL, regTDLEN, regRDLEN,
		regRDTR, regRADV, regTADV, regITR, regFCRUC, regIPAV, regWUC, regWUS, regSCC,
		regECOL, regMCC, regLATECOL, regCOLC, regDC, regTNCRS, regSEQEC, regCEXTERR,
		regRLEC, regXONRXC, regXONTXC, regXOFFRXC, regXOFFTXC, regRFC, regRJC, regRNBC,
		regTSCTFC, regMGTPRC, regMGTPRC+4, regMGTPTC, regGORCL, regGOTCL, regRDFH,
		regRDFT, regRDFHS, regRDFTS, regRDFPC, regTDFH, regTDFT, regTDFHS, regTDFTS,
		regTDFPC, regAIT, regEERD)
	span(kRead, regCRCERRS, 5)
	set(kClr8, regTOTH, regTORH, regGOTCH, regGORCH)
	span(kClr4, regPRC64, 6)
	span(kClr4, regPTC64, 6)
	set(kClr4, regGPRC, regGPTC, regTPT, regTPR, regRUC, regROC, regBPRC, regMPRC,
		regTSCTC, regBPTC, regMPTC)
	set(kWrite, regPBA, regEERD, regSWSM, regWUFC, regTDBAL, regTDBAH, regTXDCTL,
		regRDBAH, regRDBAL, regLEDCTL, regVET, regFCRUC, regIPAV, regWUC, regWUS)
	span(kRead|kWrite, regIP6AT, 4)
	span(kRead|kWrite, regIP4AT, 7)
	span(kRead|kWrite, regFFLT, 7)
	span(kRead|kWrite, regRA, 32)
	span(kRead|kWrite, regWUPM, 32)
	span(kRead|kWrite, regMTA, 128)
	span(kRead|kWrite, regVFTA, 128)
	span(kRead|kWrite, regFFMT, 255)
	span(kRead|kWrite, regFFVT, 255)
	span(kRead|kWrite, regPBM, 16384)
	// Writes that keep the low bits only (QEMU 7.2 masks them on read;
	// the same answer).
	mask := func(m uint32, offs ...uint32) {
		for _, o := range offs {
			regKind[ix(o)] |= kWrite
			regMask[ix(o)] = m
		}
	}
	mask(1<<11-1, regTDFH, regTDFT)
	mask(1<<13-1, regTDFHS, regTDFTS, regTDFPC, regRDFH, regRDFT, regRDFHS, regRDFTS, regRDFPC)
	mask(1<<16-1, regRDTR, regRADV, regTADV, regITR, regAIT, regTDH, regRDH)
	mask(0xfff80, regTDLEN, regRDLEN)
	for i := range uint32(7) {
		mask(1<<11-1, regFFLT+4*i)
	}
	for i := range uint32(255) {
		mask(0xf, regFFMT+4*i)
	}
}

func (d *Device) readLocked(i uint32) uint32 {
	s := &d.st
	r := &s.r
	switch i {
	case ix(regICR):
		// QEMU mac_icr_read: the causes, then all cleared.
		v := r[i]
		d.setCauseLocked(0)
		return v
	case ix(regEECD):
		return d.eecdRead()
	case ix(regEERD):
		return d.eerdRead()
	}
	k := regKind[i]
	switch {
	case k&kClr4 != 0:
		v := r[i]
		r[i] = 0
		return v
	case k&kClr8 != 0:
		v := r[i]
		r[i], r[i-1] = 0, 0
		return v
	case k&kRead != 0:
		return r[i]
	}
	return 0
}

func (d *Device) writeLocked(i uint32, v uint32) {
	s := &d.st
	r := &s.r
	switch i {
	case ix(regCTRL):
		r[i] = v &^ ctrlRST // self-clearing (QEMU set_ctrl)
	case ix(regEECD):
		d.eecdWrite(v)
	case ix(regMDIC):
		d.mdicWrite(v)
	case ix(regICS):
		d.setICSLocked(v)
	case ix(regICR):
		d.setCauseLocked(r[i] &^ v)
	case ix(regIMS):
		r[ix(regIMS)] |= v
		d.setICSLocked(0)
	case ix(regIMC):
		r[ix(regIMS)] &^= v
		d.setICSLocked(0)
	case ix(regRCTL):
		r[i] = v
		s.rxBufSize = rxBufSize(v)
		s.rxMinShft = (v/0x100)&3 + 1
		d.w.Wake()
	case ix(regRDT):
		r[i] = v & 0xffff
		d.w.Wake() // buffers for frames held in the back-end
	case ix(regTCTL), ix(regTDT):
		r[i] = v
		r[ix(regTDT)] &= 0xffff
		d.startXmitLocked()
	default:
		if regKind[i]&kWrite != 0 {
			r[i] = v & regMask[i]
		}
	}
}

// rxBufSize is RCTL's receive buffer size (QEMU e1000x_rxbufsize).
func rxBufSize(rctl uint32) uint32 {
	switch rctl & (rctlBSEX | rctlSZMask) {
	case rctlBSEX | 0x10000:
		return 16384
	case rctlBSEX | 0x20000:
		return 8192
	case rctlBSEX | 0x30000:
		return 4096
	case 0x10000:
		return 1024
	case 0x20000:
		return 512
	case 0x30000:
		return 256
	}
	return 2048
}

// --- EEPROM through EECD (QEMU get_eecd/set_eecd: a Microwire READ, 3
// opcode bits and 6 address bits shifted in on SK's rising edges, then
// the words' bits shifted out MSB first on falling edges, running on
// through the following words) and EERD.

func (d *Device) eecdRead() uint32 {
	s := &d.st
	v := eecdPRES | eecdGNT | s.eeOld
	if !s.eeReading || (s.ee[(s.eeBitOut>>4)&0x3f]>>((s.eeBitOut&0xf)^0xf))&1 != 0 {
		v |= eecdDO
	}
	return v
}

func (d *Device) eecdWrite(v uint32) {
	s := &d.st
	old := s.eeOld
	s.eeOld = v & (eecdSK | eecdCS | eecdDI | eecdFWE | eecdREQ)
	if v&eecdCS == 0 {
		return
	}
	if (v^old)&eecdCS != 0 { // chip select rises: start over
		s.eeValIn, s.eeBitIn, s.eeBitOut, s.eeReading = 0, 0, 0, false
	}
	if (v^old)&eecdSK == 0 {
		return
	}
	if v&eecdSK == 0 { // falling edge: next bit out
		s.eeBitOut++
		return
	}
	s.eeValIn <<= 1
	if v&eecdDI != 0 {
		s.eeValIn |= 1
	}
	s.eeBitIn++
	if s.eeBitIn == 9 && !s.eeReading {
		s.eeBitOut = uint16((s.eeValIn&0x3f)<<4) - 1
		s.eeReading = (s.eeValIn>>6)&7 == eepromReadOp
	}
}

// eerdRead is EERD (QEMU flash_eerd_read): with START set, DONE and the
// word of the address written (none past the checksum word).
func (d *Device) eerdRead() uint32 {
	v := d.st.r[ix(regEERD)]
	if v&eerdStart == 0 {
		return v
	}
	v &^= eerdStart
	a := v >> eerdAddrShift
	if a > eepromChecksum {
		return eerdDone | v
	}
	return uint32(d.st.ee[a])<<eerdDataShift | eerdDone | v
}

// --- PHY through MDIC (QEMU set_mdic: PHY address 1 only; a register
// outside phyCap's read or write set answers ERROR).

func (d *Device) mdicWrite(v uint32) {
	s := &d.st
	data := v & mdicDataMask
	addr := (v & mdicRegMask) >> mdicRegShift
	switch {
	case (v&mdicPHYMask)>>mdicPHYShift != 1:
		v = s.r[ix(regMDIC)] | mdicError
	case v&mdicOpRead != 0:
		if phyCap[addr]&phyR == 0 {
			v |= mdicError
		} else {
			v = v ^ data | uint32(s.phy[addr])
		}
	case v&mdicOpWrite != 0:
		if phyCap[addr]&phyW == 0 {
			v |= mdicError
		} else if addr == phyBMCR {
			d.bmcrWrite(uint16(data))
		} else {
			s.phy[addr] = uint16(data)
		}
	}
	s.r[ix(regMDIC)] = v | mdicReady
	if v&mdicIntEn != 0 {
		d.setICSLocked(IntMDAC)
	}
}

// bmcrWrite is QEMU set_phy_ctrl: reset and restart self-clear; a
// restart with autonegotiation on restarts it.
func (d *Device) bmcrWrite(v uint16) {
	s := &d.st
	s.phy[phyBMCR] = v &^ (0x3f | bmcrReset | bmcrANRestart)
	if s.phy[phyBMCR]&bmcrAutoEn != 0 && v&bmcrANRestart != 0 {
		d.restartAutonegLocked()
	}
}

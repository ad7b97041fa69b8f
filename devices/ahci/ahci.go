package ahci

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"godm/block"
	"godm/devices"
	"godm/devices/ide"
	"godm/memory"
	"godm/pci"
)

// Identity (QEMU hw/ide/ich.c: PCI_DEVICE_ID_INTEL_82801IR, revision 2,
// PCI_CLASS_STORAGE_SATA with programming interface AHCI 1.0).
const (
	VendorID = 0x8086
	DeviceID = 0x2922
	Revision = 0x02
	Class    = 0x010601

	// Ports is the ICH9's port count (QEMU ich.c: ahci_realize(..., 6)).
	Ports = 6
	// Slots is the command slots per port (AHCI_MAX_CMDS).
	Slots = 32
	// BARSize is ABAR's size (QEMU AHCI_MEM_BAR_SIZE).
	BARSize = 0x1000
	// idpSize is the index/data pair BAR's (QEMU ahci_init: 32 ports).
	idpSize = 32
	// idpOffset is the index register's offset in it (ICH9_IDP_INDEX).
	idpOffset = 0x10
)

// Host registers and bits (QEMU hw/ide/ahci_internal.h).
const (
	hostCap     = 0x00
	hostGHC     = 0x04
	hostIS      = 0x08
	hostPI      = 0x0c
	hostVS      = 0x10
	hostRegsEnd = 0x2c // AHCI_GENERIC_HOST_CONTROL_REGS_MAX_ADDR
	portBase    = 0x100
	portLen     = 0x80

	ghcReset = 1 << 0
	ghcIE    = 1 << 1
	ghcAE    = 1 << 31

	capNCQ   = 1 << 30
	cap64    = 1 << 31
	capAHCI  = 1 << 18
	capSpeed = 1 << 20 // Gen1 in the ISS field
	version  = 0x00010000
)

// Port registers (offsets in a port's 128 bytes) and bits.
const (
	pCLB  = 0x00
	pCLBU = 0x04
	pFB   = 0x08
	pFBU  = 0x0c
	pIS   = 0x10
	pIE   = 0x14
	pCMD  = 0x18
	pTFD  = 0x20
	pSIG  = 0x24
	pSSTS = 0x28
	pSCTL = 0x2c
	pSERR = 0x30
	pSACT = 0x34
	pCI   = 0x38

	cmdST      = 1 << 0
	cmdSUD     = 1 << 1
	cmdPOD     = 1 << 2
	cmdFRE     = 1 << 4
	cmdFR      = 1 << 14
	cmdCR      = 1 << 15
	cmdROMask  = 0x007dffe0 // PORT_CMD_RO_MASK
	cmdICCMask = 0xf0000000

	ieMask = 0xfdc000ff

	// PxIS bits (AHCI 1.3 §3.3.5).
	isDHRS = 1 << 0
	isPSS  = 1 << 1
	isSDBS = 1 << 3
	isOFS  = 1 << 24
	isHBFS = 1 << 29
	isTFES = 1 << 30

	// SSTS with a device: DET present and Phy up, Gen1, IPM active.
	sstsPresent = 0x3 | 0x10 | 0x100

	sigDisk = 0x00000101 // SATA_SIGNATURE_DISK
)

// Received-FIS area offsets (AHCI 1.3 §4.2.1).
const (
	fisPSFIS = 0x20
	fisRFIS  = 0x40
	fisSDB   = 0x58
	fisLen   = 256
	clbLen   = 1024
)

// ATA status and error bits (QEMU hw/ide/internal.h).
const (
	stERR   = 0x01
	stDRQ   = 0x08
	stSEEK  = 0x10
	stDF    = 0x20 // WRERR_STAT
	stREADY = 0x40
	stBUSY  = 0x80
	errABRT = 0x04
)

// dmaChunk is the most one queued request moves.
const dmaChunk = 128 << 10

// Config wires the controller.
type Config struct {
	// Memory is guest memory, for the command lists, FIS areas and DMA.
	Memory memory.Accessor
}

// Controller is the ICH9 AHCI function.
type Controller struct {
	fn  *pci.Device
	mem memory.Accessor

	mu      sync.Mutex
	ghc, is uint32
	idx     uint32 // the index/data pair's index
	p       [Ports]port
	line    bool // INTx level as last set
	paused  bool
}

// ErrPosition is returned for a port outside 0..5 or one already taken.
var ErrPosition = errors.New("ahci: bad port")

// New returns a controller with no drives.
func New(c Config) (*Controller, error) {
	if c.Memory == nil {
		return nil, errors.New("ahci: no guest memory")
	}
	fn, err := pci.New(pci.Header{
		VendorID: VendorID, DeviceID: DeviceID, Class: Class, Revision: Revision,
		SubsystemVendorID: 0x1af4, SubsystemID: 0x1100,
		InterruptPin: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("ahci: %w", err)
	}
	d := &Controller{fn: fn, mem: c.Memory}
	if err := fn.SetBAR(4, pci.BAR{Kind: pci.BARIO, Size: idpSize, Handler: idpBAR{d}}); err != nil {
		return nil, fmt.Errorf("ahci: %w", err)
	}
	if err := fn.SetBAR(5, pci.BAR{Kind: pci.BARMem32, Size: BARSize, Handler: abar{d}}); err != nil {
		return nil, fmt.Errorf("ahci: %w", err)
	}
	// QEMU ich.c: MSI (one 64-bit vector) at 0x80, the SATA capability
	// (revision 1.0; BAR4 holds the index/data pair at offset 16) at
	// 0xa8, the address map register (0x90) reading 0x40, AHCI mode. The
	// other device-specific bytes are writable and kept across resets,
	// as QEMU's default write mask and pci_do_device_reset leave them.
	plain := func(lo, hi uint32) error {
		for off := lo; off < hi; off++ {
			reset := uint32(0)
			if off == 0x90 {
				reset = 0x40
			}
			if err := fn.DefineRegister(off, 1, reset, 0xff, 0); err != nil {
				return err
			}
			if err := fn.KeepOnReset(off, 1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := plain(0x40, 0x80); err != nil {
		return nil, fmt.Errorf("ahci: %w", err)
	}
	if off, err := fn.AddMSI(pci.MSIConfig{Vectors: 1, Addr64: true}); err != nil || off != 0x80 {
		return nil, fmt.Errorf("ahci: msi at %#x: %v", off, err)
	}
	if err := plain(0x8e, 0xa8); err != nil {
		return nil, fmt.Errorf("ahci: %w", err)
	}
	if off, err := fn.AddCapability(0x12, []byte{0x10, 0x00, 0x48, 0x00, 0x00, 0x00}, nil, nil); err != nil || off != 0xa8 {
		return nil, fmt.Errorf("ahci: sata capability at %#x: %v", off, err)
	}
	if err := plain(0xb0, pci.ConfigSize); err != nil {
		return nil, fmt.Errorf("ahci: %w", err)
	}
	for i := range d.p {
		p := &d.p[i]
		p.c, p.n = d, i
		p.busy = -1
		p.ioDoneFn = p.ioDone // one method value, not one per request
		// QEMU numbers IDE drive states in creation order from 1
		// (ide_init1): the PIIX3 IDE's four come first, then two per
		// AHCI port (each port is an IDE bus of two).
		p.serial = fmt.Sprintf("QM%05d", 5+2*i)
	}
	d.reset()
	return d, nil
}

// Function returns the PCI function.
func (d *Controller) Function() *pci.Device { return d.fn }

// DriveConfig describes a device to attach.
type DriveConfig struct {
	// Drive is the medium (required and writable for a hard disk; nil
	// is an empty CD-ROM drive).
	Drive *block.Drive
	// CD makes the device an ATAPI CD-ROM drive (ide-cd).
	CD bool
	// Serial overrides the serial number (QEMU's default: QM0000n).
	Serial string
}

// Attach puts a hard disk or CD-ROM drive on port n (before the guest
// runs; the controller does not own the medium: Detach or Close hand it
// back).
func (d *Controller) Attach(n int, dc DriveConfig) error {
	if n < 0 || n >= Ports {
		return fmt.Errorf("%w: %d", ErrPosition, n)
	}
	if dc.Drive == nil && !dc.CD {
		return errors.New("ahci: Device needs media, but drive is empty")
	}
	if dc.Drive != nil && !dc.CD && dc.Drive.Info().ReadOnly {
		return errors.New("ahci: Can't use a read-only drive")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	p := &d.p[n]
	if p.present {
		return fmt.Errorf("%w: port %d is taken", ErrPosition, n)
	}
	p.present, p.cd = true, dc.CD
	p.drv = dc.Drive
	if dc.Drive != nil {
		p.q = block.NewQueue(dc.Drive, 2, 1)
	}
	p.buf = make([]byte, dmaChunk)
	if dc.Serial != "" {
		p.serial = dc.Serial
	}
	p.identSet = false
	if dc.CD {
		p.cds = ide.CDState{}
		p.cds.SetIdentity(p.serial, "QEMU DVD-ROM")
		p.cds.SetMedium(dc.Drive)
		p.resetPort()
		return nil
	}
	info := dc.Drive.Info()
	p.sectors = uint64(info.Size) / 512
	p.wcache = info.WriteCache
	p.cyls, p.heads, p.secs = ide.GuessGeometry(dc.Drive, p.sectors)
	p.resetPort()
	return nil
}

// Detach removes port n's device (Xen's PV unplug) after waiting for its
// I/O and flushing a disk, and returns its medium.
func (d *Controller) Detach(n int) (*block.Drive, error) {
	if n < 0 || n >= Ports {
		return nil, fmt.Errorf("%w: %d", ErrPosition, n)
	}
	d.mu.Lock()
	p := &d.p[n]
	q, drv, cd := p.q, p.drv, p.cd
	p.gen++
	d.mu.Unlock()
	if q != nil {
		q.Close()
	}
	var err error
	if drv != nil && !cd {
		err = drv.Flush()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	p.q, p.drv, p.buf = nil, nil, nil
	p.present, p.cd = false, false
	p.cds = ide.CDState{}
	p.sectors = 0
	p.resetPort()
	return drv, err
}

// IsCD reports whether port n holds a CD-ROM drive.
func (d *Controller) IsCD(n int) bool {
	if n < 0 || n >= Ports {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.p[n].present && d.p[n].cd
}

// DriveAt returns port n's medium (nil: none).
func (d *Controller) DriveAt(n int) *block.Drive {
	if n < 0 || n >= Ports {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.p[n].drv
}

// Reset is the controller's reset (QEMU ahci_reset); the PCI function's
// header is its owner's.
func (d *Controller) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reset()
}

func (d *Controller) reset() {
	d.is = 0
	d.ghc = ghcAE
	for i := range d.p {
		p := &d.p[i]
		p.is, p.ie, p.sctl = 0, 0, 0
		p.cmd = cmdSUD | cmdPOD
		p.resetPort()
	}
	d.checkIRQ()
}

// Pause implements devices.Pauser: it waits for the I/O in flight.
func (d *Controller) Pause() {
	d.mu.Lock()
	d.paused = true
	d.mu.Unlock()
	d.drain()
}

// Resume implements devices.Pauser: commands issued while paused start.
func (d *Controller) Resume() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.paused = false
	for i := range d.p {
		d.p[i].checkCmd()
	}
}

func (d *Controller) drain() {
	for i := range d.p {
		d.mu.Lock()
		q := d.p[i].q
		d.mu.Unlock()
		if q != nil {
			q.Drain()
		}
	}
}

// Close waits for the I/O in flight and stops the queues. The media stay
// open. It is idempotent.
func (d *Controller) Close() error {
	var qs []*block.Queue
	d.mu.Lock()
	for i := range d.p {
		d.p[i].gen++
		if q := d.p[i].q; q != nil {
			qs = append(qs, q)
		}
	}
	d.mu.Unlock()
	for _, q := range qs {
		q.Close()
	}
	return nil
}

// checkIRQ is ahci_check_irq: HBA IS collects the ports with an enabled
// pending bit; the interrupt goes out while it is non-zero and GHC.IE is
// set (MSI once the guest enabled it, else the INTx level).
func (d *Controller) checkIRQ() {
	d.is = 0
	for i := range d.p {
		if d.p[i].is&d.p[i].ie != 0 {
			d.is |= 1 << i
		}
	}
	if d.is != 0 && d.ghc&ghcIE != 0 {
		if d.fn.Interrupt(0) {
			return
		}
		d.setLine(true)
		return
	}
	d.setLine(false)
}

func (d *Controller) setLine(high bool) {
	if d.line != high {
		d.line = high
		d.fn.SetINTx(high)
	}
}

// --- ABAR

type abar struct{ d *Controller }

// Read is ahci_mem_read: any width at any offset, from the aligned
// dwords it covers.
func (b abar) Read(a devices.Access) uint64 {
	d := b.d
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.memRead(a.Offset, a.Size)
}

func (d *Controller) memRead(off uint64, size uint8) uint64 {
	al := off &^ 3
	sh := (off - al) * 8
	lo := uint64(d.read32(al))
	if (off-al)+uint64(size) <= 4 {
		return (lo >> sh) & devices.SizeMask(size)
	}
	hi := uint64(d.read32(al + 4))
	return ((hi<<32 | lo) >> sh) & devices.SizeMask(size)
}

// Write is ahci_mem_write: misaligned writes are dropped; the value is
// taken as a dword.
func (b abar) Write(a devices.Access, v uint64) {
	d := b.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if a.Offset&3 != 0 {
		return
	}
	d.write32(a.Offset, uint32(v))
}

func (d *Controller) read32(off uint64) uint32 {
	switch {
	case off < hostRegsEnd:
		switch off {
		case hostCap:
			return (Ports - 1) | (Slots-1)<<8 | capSpeed | capNCQ | capAHCI | cap64
		case hostGHC:
			return d.ghc
		case hostIS:
			return d.is
		case hostPI:
			return 1<<Ports - 1
		case hostVS:
			return version
		}
	case off >= portBase && off < portBase+Ports*portLen:
		return d.p[(off-portBase)/portLen].read(uint32(off % portLen))
	}
	return 0
}

func (d *Controller) write32(off uint64, v uint32) {
	switch {
	case off < hostRegsEnd:
		switch off {
		case hostGHC:
			if v&ghcReset != 0 {
				d.reset()
				return
			}
			d.ghc = v&(ghcReset|ghcIE) | ghcAE
			d.checkIRQ()
		case hostIS:
			d.is &^= v
			d.checkIRQ()
		}
	case off >= portBase && off < portBase+Ports*portLen:
		d.p[(off-portBase)/portLen].write(uint32(off%portLen), v)
	}
}

// idpBAR is the index/data pair (QEMU ahci_idp_read/write).
type idpBAR struct{ d *Controller }

func (b idpBAR) Read(a devices.Access) uint64 {
	d := b.d
	d.mu.Lock()
	defer d.mu.Unlock()
	switch a.Offset {
	case idpOffset:
		return uint64(d.idx) & devices.SizeMask(a.Size)
	case idpOffset + 4:
		return d.memRead(uint64(d.idx), a.Size)
	}
	return 0
}

func (b idpBAR) Write(a devices.Access, v uint64) {
	d := b.d
	d.mu.Lock()
	defer d.mu.Unlock()
	switch a.Offset {
	case idpOffset:
		d.idx = uint32(v) & ((BARSize - 1) &^ 3)
	case idpOffset + 4:
		d.write32(uint64(d.idx), uint32(v))
	}
}

func le16(p []byte) uint16 { return binary.LittleEndian.Uint16(p) }
func le32(p []byte) uint32 { return binary.LittleEndian.Uint32(p) }
func le64(p []byte) uint64 { return binary.LittleEndian.Uint64(p) }

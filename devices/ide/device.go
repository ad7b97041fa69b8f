package ide

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"godm/block"
	"godm/devices"
	"godm/irq"
	"godm/memory"
	"godm/pci"
)

// Kind is what sits in a drive position.
type Kind uint8

// Drive kinds.
const (
	None Kind = iota
	HD        // ide-hd: a hard disk
	CD        // ide-cd: an ATAPI CD-ROM drive, possibly empty
)

func (k Kind) String() string {
	switch k {
	case HD:
		return "ide-hd"
	case CD:
		return "ide-cd"
	}
	return "none"
}

// Config wires the controller.
type Config struct {
	// Memory is guest memory, for bus-master DMA.
	Memory memory.Accessor
	// IRQ are the channels' interrupt lines (ISA 14 and 15).
	IRQ [2]irq.Line
}

// Controller is the PIIX3 IDE function: two channels of two drives each
// and the bus-master DMA engine.
type Controller struct {
	fn  *pci.Device
	mem memory.Accessor
	ch  [2]channel
	bar bmBAR

	pmu    sync.Mutex
	paused bool
}

// endFn names what happens when the guest has moved the last byte of a
// PIO data block (QEMU's end_transfer_func).
type endFn uint8

const (
	endDummy endFn = iota
	endStop
	endSectorRead
	endSectorWrite
	endAtapiCmd
	endAtapiReply
	numEnds
)

// unit is one drive position (QEMU's IDEState).
type unit struct {
	ch      *channel
	n       int
	kd      Kind // HD for an empty position, as QEMU's default drive kind
	has     bool // a drive is attached (QEMU: s->blk != NULL)
	q       *block.Queue
	CDState // the medium (hard disks too) and the ATAPI state

	cyls, heads, secs     uint32
	driveHeads, driveSecs uint32 // the geometry at power-on
	resetReverts          bool
	discard               bool
	wcache                bool

	feature, errReg                                     uint8
	nsector                                             uint32
	sector, lcyl, hcyl                                  uint8
	hobFeature, hobNsector, hobSector, hobLcyl, hobHcyl uint8
	sel, status                                         uint8
	lba48                                               bool
	multSectors, reqNbSectors                           int
	identify                                            [512]byte
	identifySet                                         bool

	buf              []byte
	wv               [1][]byte // WriteV's list, kept (no allocation per write)
	dataPtr, dataEnd int
	end              endFn

	// ATAPI transfer
	lba                  int64
	packetSize, elemSize int64
	bufIndex, ioBufSize  int
	atapiDMA             bool
	dmaCmd               dmaKind
	serialNo             int
}

// dmaKind is the DMA a command waits for (QEMU's dma_cmd with dma_cb set).
type dmaKind uint8

const (
	dmaNone dmaKind = iota
	dmaRead
	dmaWrite
	dmaATAPI
	dmaTrim
)

// channel is one IDE bus with its bus-master DMA registers.
type channel struct {
	c   *Controller
	idx int
	irq irq.Line

	mu    sync.Mutex
	u     [2]unit
	cur   int   // selected unit
	cmd   uint8 // device control
	level bool  // the line's level as last set
	bm    bmdma
	gen   uint64 // bumped by resets: completions of older jobs are dropped
	jobs  [2]dmaJob
	prd   [8]byte // the PRD being read
}

// bmdma is a channel's bus-master state (QEMU's BMDMAState).
type bmdma struct {
	cmd, status uint8
	addr        uint32
	curAddr     uint32
	curPrdLast  bool
	curPrdAddr  uint32
	curPrdLen   uint32
	pending     dmaKind // a command waits for the engine (QEMU: dma_cb set)
	pendUnit    int
	stopped     bool // the guest cleared START while a job ran
}

// ErrPosition is returned for a drive position other than bus 0..1,
// unit 0..1, or one already taken.
var ErrPosition = errors.New("ide: bad drive position")

// New returns a controller with no drives.
func New(c Config) (*Controller, error) {
	if c.Memory == nil {
		return nil, errors.New("ide: no guest memory")
	}
	// The command register reads 0 after reset and the status register
	// DEVSEL medium | fast back-to-back (QEMU piix_ide_reset); the
	// subsystem IDs are QEMU's default ones.
	fn, err := pci.New(pci.Header{
		VendorID: VendorID, DeviceID: DeviceID, Class: Class,
		SubsystemVendorID: 0x1af4, SubsystemID: 0x1100,
		Status: 0x0280,
	})
	if err != nil {
		return nil, fmt.Errorf("ide: %w", err)
	}
	d := &Controller{fn: fn, mem: c.Memory}
	d.bar.c = d
	if err := fn.SetBAR(4, pci.BAR{Kind: pci.BARIO, Size: 16, Handler: &d.bar}); err != nil {
		return nil, fmt.Errorf("ide: %w", err)
	}
	// QEMU's default write mask makes the device-specific bytes (the
	// IDE timing registers 0x40..) writable; piix_ide_reset does not
	// touch them.
	for off := uint32(0x40); off < pci.ConfigSize; off += 4 {
		if err := fn.DefineRegister(off, 4, 0, 0xffffffff, 0); err != nil {
			return nil, fmt.Errorf("ide: %w", err)
		}
	}
	if err := fn.KeepOnReset(0x40, pci.ConfigSize-0x40); err != nil {
		return nil, fmt.Errorf("ide: %w", err)
	}
	for i := range d.ch {
		ch := &d.ch[i]
		ch.c, ch.idx, ch.irq = d, i, c.IRQ[i]
		if ch.irq == nil {
			ch.irq = irq.LineFunc(func(bool) {})
		}
		for n := range ch.u {
			u := &ch.u[n]
			u.ch, u.n, u.kd = ch, n, HD
			u.buf = make([]byte, ioBufLen)
			// QEMU numbers drives in creation order from 1 (ide_init1).
			u.serialNo = 2*i + n + 1
			u.serial = fmt.Sprintf("QM%05d", u.serialNo)
			u.reset()
		}
		for j := range ch.jobs {
			ch.jobs[j].init(ch)
		}
	}
	return d, nil
}

// Function returns the PCI function to place at 00:01.1.
func (d *Controller) Function() *pci.Device { return d.fn }

// Handler returns port range i (0..3): the two command blocks (8 ports)
// and the two control registers (1 port). It returns a nil handler past
// the last range.
func (d *Controller) Handler(i int) (base, size uint64, h devices.Handler) {
	switch {
	case i >= 0 && i < 2:
		return cmdBase[i], 8, cmdPorts{&d.ch[i]}
	case i >= 2 && i < 4:
		return ctlPort[i-2], 1, ctlPorts{&d.ch[i-2]}
	}
	return 0, 0, nil
}

// DriveConfig describes a drive to attach.
type DriveConfig struct {
	Kind Kind
	// Drive is the medium; nil is an empty CD-ROM drive (a hard disk
	// needs one).
	Drive *block.Drive
	// Serial overrides the serial number (QEMU's default: QM0000n).
	Serial string
	// Discard passes the guest's TRIM ranges to the drive (-drive
	// discard=unmap); otherwise they are accepted and ignored.
	Discard bool
}

// Attach puts a drive at bus, unit (before the guest runs; the controller
// does not own the medium: Detach or Close hand it back).
func (d *Controller) Attach(bus, unitN int, dc DriveConfig) error {
	if bus < 0 || bus > 1 || unitN < 0 || unitN > 1 {
		return fmt.Errorf("%w: bus %d unit %d", ErrPosition, bus, unitN)
	}
	switch dc.Kind {
	case HD:
		if dc.Drive == nil {
			return errors.New("ide: Device needs media, but drive is empty")
		}
		if dc.Drive.Info().ReadOnly {
			return errors.New("ide: Can't use a read-only drive")
		}
	case CD:
	default:
		return fmt.Errorf("ide: drive kind %v", dc.Kind)
	}
	ch := &d.ch[bus]
	ch.mu.Lock()
	defer ch.mu.Unlock()
	u := &ch.u[unitN]
	if u.has {
		return fmt.Errorf("%w: bus %d unit %d is taken", ErrPosition, bus, unitN)
	}
	u.kd, u.has, u.discard = dc.Kind, true, dc.Discard
	if dc.Serial != "" {
		u.serial = dc.Serial
	}
	u.model = "QEMU HARDDISK"
	if dc.Kind == CD {
		u.model = "QEMU DVD-ROM"
	}
	u.setMedium(dc.Drive)
	if dc.Kind == HD {
		u.cyls, u.heads, u.secs = guessGeometry(dc.Drive, u.nbSectors)
		u.driveHeads, u.driveSecs = u.heads, u.secs
	}
	u.identifySet = false
	u.reset()
	return nil
}

// setMedium installs drv (nil: none) with its queue.
func (u *unit) setMedium(drv *block.Drive) {
	if u.q != nil {
		u.q.Close()
		u.q = nil
	}
	u.drv = drv
	u.nbSectors = 0
	u.wcache = false
	if drv != nil {
		info := drv.Info()
		u.nbSectors = uint64(info.Size) / sectorSize
		u.wcache = info.WriteCache
		// Two requests: a job abandoned by a reset may still be in
		// flight when the next one starts.
		u.q = block.NewQueue(drv, 2, 1)
	}
}

// Detach removes the drive at bus, unit (Xen's PV unplug of an emulated
// disk) after waiting for its I/O and flushing it, and returns its medium.
// The position then behaves as empty.
func (d *Controller) Detach(bus, unitN int) (*block.Drive, error) {
	if bus < 0 || bus > 1 || unitN < 0 || unitN > 1 {
		return nil, fmt.Errorf("%w: bus %d unit %d", ErrPosition, bus, unitN)
	}
	ch := &d.ch[bus]
	ch.mu.Lock()
	u := &ch.u[unitN]
	q, drv := u.q, u.drv
	ch.gen++ // no completion of this drive's jobs lands any more
	ch.mu.Unlock()
	if q != nil {
		q.Close()
	}
	var err error
	if drv != nil {
		err = drv.Flush()
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	u.q = nil
	u.setMedium(nil)
	u.has = false
	u.kd = HD
	u.identifySet = false
	return drv, err
}

// DriveAt returns what is at bus, unit.
func (d *Controller) DriveAt(bus, unitN int) (Kind, *block.Drive) {
	if bus < 0 || bus > 1 || unitN < 0 || unitN > 1 {
		return None, nil
	}
	ch := &d.ch[bus]
	ch.mu.Lock()
	defer ch.mu.Unlock()
	u := &ch.u[unitN]
	if !u.has {
		return None, nil
	}
	return u.kd, u.drv
}

// Reset is the controller's reset (QEMU piix_ide_reset): both buses and
// their bus-master engines; the PCI function's header is its owner's.
func (d *Controller) Reset() {
	for i := range d.ch {
		ch := &d.ch[i]
		ch.mu.Lock()
		ch.busReset()
		ch.mu.Unlock()
	}
}

// busReset is ide_bus_reset plus the bus master's reset.
func (ch *channel) busReset() {
	ch.gen++
	ch.cur = 0
	ch.cmd = 0
	ch.u[0].reset()
	ch.u[1].reset()
	ch.bm = bmdma{}
	ch.setLine(false)
}

// Pause implements devices.Pauser: it waits for every DMA request in
// flight (and the jobs they continue) to finish. No request can start
// while the guest is stopped, so nothing moves until Resume.
func (d *Controller) Pause() {
	d.pmu.Lock()
	defer d.pmu.Unlock()
	d.paused = true
	d.drain()
}

// Resume implements devices.Pauser.
func (d *Controller) Resume() {
	d.pmu.Lock()
	d.paused = false
	d.pmu.Unlock()
}

func (d *Controller) drain() {
	for i := range d.ch {
		ch := &d.ch[i]
		for n := range ch.u {
			ch.mu.Lock()
			q := ch.u[n].q
			ch.mu.Unlock()
			if q != nil {
				q.Drain()
			}
		}
	}
}

// Close waits for the I/O in flight and stops the queues. The media stay
// open (their owner closes them). It is idempotent.
func (d *Controller) Close() error {
	for i := range d.ch {
		ch := &d.ch[i]
		ch.mu.Lock()
		ch.gen++
		var qs []*block.Queue
		for n := range ch.u {
			if q := ch.u[n].q; q != nil {
				qs = append(qs, q)
			}
		}
		ch.mu.Unlock()
		for _, q := range qs {
			q.Close()
		}
	}
	return nil
}

// --- interrupts

// setIRQ is ide_set_irq: unless nIEN masks it, the bus master's interrupt
// bit is set and the line raised (QEMU hw/ide/pci.c bmdma_irq).
func (ch *channel) setIRQ() {
	if ch.cmd&ctlNIEN != 0 {
		return
	}
	ch.bm.status |= bmStInt
	ch.setLine(true)
}

func (ch *channel) setLine(high bool) {
	if ch.level != high {
		ch.level = high
		ch.irq.SetLevel(high)
	}
}

// --- port handlers

type cmdPorts struct{ ch *channel }

func (p cmdPorts) Read(a devices.Access) uint64 {
	ch := p.ch
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if a.Offset == 0 && (a.Size == 2 || a.Size == 4) {
		return uint64(ch.dataRead(int(a.Size)))
	}
	var v uint64
	for i := uint64(0); i < uint64(a.Size); i++ {
		v |= uint64(ch.regRead(int((a.Offset+i)&7))) << (8 * i)
	}
	return v
}

func (p cmdPorts) Write(a devices.Access, v uint64) {
	ch := p.ch
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if a.Offset == 0 && (a.Size == 2 || a.Size == 4) {
		ch.dataWrite(int(a.Size), uint32(v))
		return
	}
	for i := uint64(0); i < uint64(a.Size); i++ {
		ch.regWrite(int((a.Offset+i)&7), uint8(v>>(8*i)))
	}
}

type ctlPorts struct{ ch *channel }

// Read is the alternate status register (ide_status_read: no interrupt
// acknowledge).
func (p ctlPorts) Read(a devices.Access) uint64 {
	ch := p.ch
	ch.mu.Lock()
	defer ch.mu.Unlock()
	v := uint64(ch.statusValue())
	for i := uint8(1); i < a.Size; i++ {
		v |= 0xff << (8 * i)
	}
	return v
}

// Write is the device control register (ide_ctrl_write): a rising SRST
// resets both drives. QEMU runs that reset from a bottom half right after
// the write; here it runs at once, with the new register value in place
// as QEMU's bottom half sees it, and SRST is cleared afterwards as QEMU's
// ide_bus_perform_srst does.
func (p ctlPorts) Write(a devices.Access, v uint64) {
	ch := p.ch
	ch.mu.Lock()
	defer ch.mu.Unlock()
	val := uint8(v)
	rising := ch.cmd&ctlSRST == 0 && val&ctlSRST != 0
	ch.cmd = val
	if rising {
		ch.gen++
		for n := range ch.u {
			ch.u[n].status |= stBUSY
		}
		for n := range ch.u {
			u := &ch.u[n]
			u.transferStop()
			ch.cancelDMA()
			u.reset()
			u.diagnostic()
		}
		ch.cmd &^= ctlSRST
	}
}

// cancelDMA forgets a DMA the engine was waiting for and the job in
// flight (ide_cancel_dma_sync; QEMU waits for the request, godm lets it
// finish in the background and drops its completion).
func (ch *channel) cancelDMA() {
	ch.bm.pending = dmaNone
}

// statusValue is the status register as the selected drive answers it.
func (ch *channel) statusValue() uint8 {
	u := &ch.u[ch.cur]
	if (!ch.u[0].has && !ch.u[1].has) || (ch.cur != 0 && !u.has) {
		return 0
	}
	return u.status
}

// regRead is ide_ioport_read for registers 0..7 as bytes.
func (ch *channel) regRead(reg int) uint8 {
	u := &ch.u[ch.cur]
	none := !ch.u[0].has && !ch.u[1].has
	hob := ch.cmd&ctlHOB != 0
	switch reg {
	case 0:
		return 0xff
	case 1:
		switch {
		case none || (ch.cur != 0 && !u.has):
			return 0
		case hob:
			return u.hobFeature
		}
		return u.errReg
	case 2:
		switch {
		case none:
			return 0
		case hob:
			return u.hobNsector
		}
		return uint8(u.nsector)
	case 3:
		switch {
		case none:
			return 0
		case hob:
			return u.hobSector
		}
		return u.sector
	case 4:
		switch {
		case none:
			return 0
		case hob:
			return u.hobLcyl
		}
		return u.lcyl
	case 5:
		switch {
		case none:
			return 0
		case hob:
			return u.hobHcyl
		}
		return u.hcyl
	case 6:
		if none {
			return 0
		}
		return u.sel
	}
	v := ch.statusValue()
	ch.setLine(false)
	return v
}

// regWrite is ide_ioport_write: both drives latch the task file.
func (ch *channel) regWrite(reg int, v uint8) {
	u := &ch.u[ch.cur]
	if reg != 7 && u.status&(stBUSY|stDRQ) != 0 {
		return
	}
	if reg != 0 {
		ch.cmd &^= ctlHOB
	}
	for n := range ch.u {
		w := &ch.u[n]
		switch reg {
		case 1:
			w.hobFeature, w.feature = w.feature, v
		case 2:
			w.hobNsector, w.nsector = uint8(w.nsector), uint32(v)
		case 3:
			w.hobSector, w.sector = w.sector, v
		case 4:
			w.hobLcyl, w.lcyl = w.lcyl, v
		case 5:
			w.hobHcyl, w.hcyl = w.hcyl, v
		case 6:
			w.sel = v | devAlwaysOn
		}
	}
	switch reg {
	case 6:
		ch.cur = 0
		if v&devSelect != 0 {
			ch.cur = 1
		}
	case 7:
		ch.setLine(false)
		ch.execCmd(v)
	}
}

// isPIOOut reports whether the data block moves from the drive to the
// guest.
func (u *unit) isPIOOut() bool {
	return u.end != endSectorWrite && u.end != endAtapiCmd
}

func (ch *channel) dataRead(size int) uint32 {
	u := &ch.u[ch.cur]
	if u.status&stDRQ == 0 || !u.isPIOOut() {
		return 0
	}
	// The transfer window must lie in the buffer: a unit without one (no
	// drive behind it) can still be made to raise DRQ by a guest, and
	// the fuzzer found the read that then indexed an empty buffer.
	if u.dataPtr < 0 || u.dataPtr+size > u.dataEnd || u.dataPtr+size > len(u.buf) {
		return 0
	}
	var v uint32
	if size == 2 {
		v = uint32(binary.LittleEndian.Uint16(u.buf[u.dataPtr:]))
	} else {
		v = binary.LittleEndian.Uint32(u.buf[u.dataPtr:])
	}
	u.dataPtr += size
	if u.dataPtr >= u.dataEnd {
		u.status &^= stDRQ
		u.callEnd()
	}
	return v
}

func (ch *channel) dataWrite(size int, v uint32) {
	u := &ch.u[ch.cur]
	if u.status&stDRQ == 0 || u.isPIOOut() {
		return
	}
	if u.dataPtr < 0 || u.dataPtr+size > u.dataEnd || u.dataPtr+size > len(u.buf) {
		return
	}
	if size == 2 {
		binary.LittleEndian.PutUint16(u.buf[u.dataPtr:], uint16(v))
	} else {
		binary.LittleEndian.PutUint32(u.buf[u.dataPtr:], v)
	}
	u.dataPtr += size
	if u.dataPtr >= u.dataEnd {
		u.status &^= stDRQ
		u.callEnd()
	}
}

func (u *unit) callEnd() {
	switch u.end {
	case endDummy:
		u.dummyTransferStop()
	case endStop:
		u.transferStop()
	case endSectorRead:
		u.sectorRead()
	case endSectorWrite:
		u.sectorWrite()
	case endAtapiCmd:
		u.atapiCmd()
	case endAtapiReply:
		u.atapiReplyEnd()
	}
}

// --- bus-master BAR

type bmBAR struct{ c *Controller }

// Read: per channel (8 ports each), byte accesses to command (+0) and
// status (+2), 0xff for +1 and +3, wider accesses to those 4 bytes read
// all-ones (QEMU piix.c bmdma_read); +4..+7 the PRD table address at any
// width (bmdma_addr_read).
func (b *bmBAR) Read(a devices.Access) uint64 {
	ch := &b.c.ch[(a.Offset>>3)&1]
	off := a.Offset & 7
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if off >= 4 {
		return uint64(ch.bm.addr>>(8*(off-4))) & devices.SizeMask(a.Size)
	}
	if a.Size != 1 {
		return devices.SizeMask(a.Size)
	}
	switch off {
	case 0:
		return uint64(ch.bm.cmd)
	case 2:
		return uint64(ch.bm.status)
	}
	return 0xff
}

func (b *bmBAR) Write(a devices.Access, v uint64) {
	ch := &b.c.ch[(a.Offset>>3)&1]
	off := a.Offset & 7
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if off >= 4 {
		shift := 8 * (off - 4)
		mask := uint32(devices.SizeMask(a.Size))
		ch.bm.addr &^= mask << shift
		ch.bm.addr |= (uint32(v) & mask << shift) &^ 3
		return
	}
	if a.Size != 1 {
		return
	}
	switch off {
	case 0:
		ch.bmCmdWrite(uint8(v))
	case 2:
		val := uint8(v)
		ch.bm.status = val&bmStKept | ch.bm.status&bmStActive | ch.bm.status&^val&bmStW1C
	}
}

// bmCmdWrite is bmdma_cmd_writeb.
func (ch *channel) bmCmdWrite(val uint8) {
	if val&bmCmdStart != ch.bm.cmd&bmCmdStart {
		if val&bmCmdStart == 0 {
			// QEMU waits for the request in flight here; godm lets it
			// complete on its own (its completion keeps the engine
			// stopped).
			if ch.jobRunning() {
				ch.bm.stopped = true
			}
			ch.bm.status &^= bmStActive
		} else {
			ch.bm.curAddr = ch.bm.addr
			if ch.bm.status&bmStActive == 0 {
				ch.bm.status |= bmStActive
				ch.bm.stopped = false
				if ch.bm.pending != dmaNone {
					ch.runDMA()
				}
			}
		}
	}
	ch.bm.cmd = val & bmCmdMask
}

package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"

	"godm/devices"
	"godm/memory"
	"godm/pci"
)

// NoVector is VIRTIO_MSI_NO_VECTOR.
const NoVector = 0xffff

// Device status bits (virtio 1.2 §2.1).
const (
	StatusAcknowledge = 1
	StatusDriver      = 2
	StatusDriverOK    = 4
	StatusFeaturesOK  = 8
	StatusNeedsReset  = 0x40
	StatusFailed      = 0x80
)

// Transport feature bits (§6).
const (
	FNotifyOnEmpty = 1 << 24
	FAnyLayout     = 1 << 27
	FIndirectDesc  = 1 << 28
	FEventIdx      = 1 << 29
	FBadFeature    = 1 << 30
	FVersion1      = 1 << 32
	// FRingReset is VIRTIO_F_RING_RESET (§2.6.1): queue_reset in the
	// common configuration (QEMU 7.2 offers it on every device).
	FRingReset = 1 << 40
	// legacyOnly are offered through the legacy interface only (QEMU
	// VIRTIO_LEGACY_FEATURES).
	legacyOnly = FNotifyOnEmpty | FAnyLayout | FBadFeature
)

// ISR bits (§4.1.4.5): a used buffer, a configuration change. QEMU's
// virtio_notify_config sets both.
const (
	isrQueue  = 1
	isrConfig = 3
)

// PCI identity (§4.1.2): vendor 0x1af4, transitional device IDs
// 0x1000.., modern 0x1040+ID, subsystem ID = the virtio device ID.
const (
	VendorID = 0x1af4
	// ModernBase plus the device ID is a modern-only function's ID.
	ModernBase = 0x1040
)

// BAR layout as QEMU 7.2 builds it for virtio-pci (hw/virtio/virtio-pci.c,
// checked through qtest): BAR0 the legacy I/O registers, BAR1 the MSI-X
// table (0) and PBA (0x800), BAR4 the modern regions 4 KiB apart.
const (
	legacyBAR = 0
	msixBAR   = 1
	modernBAR = 4

	commonOff = 0x0000
	isrOff    = 0x1000
	deviceOff = 0x2000
	notifyOff = 0x3000
	regionLen = 0x1000
	modernLen = 0x4000
	// notifyMult is notify_off_multiplier: queue n's doorbell is at n*4
	// (QEMU virtio_pci_queue_mem_mult without page-per-vq).
	notifyMult = 4
)

// Legacy register offsets (§4.1.4.8).
const (
	lHostFeatures  = 0
	lGuestFeatures = 4
	lQueuePFN      = 8
	lQueueNum      = 12
	lQueueSel      = 14
	lQueueNotify   = 16
	lStatus        = 18
	lISR           = 19
	lConfigVector  = 20
	lQueueVector   = 22
	legacyHdr      = 20 // device config offset without MSI-X enabled
	legacyHdrMSIX  = 24 // with it
)

// Common configuration offsets (§4.1.4.3).
const (
	cDFSelect  = 0x00
	cDF        = 0x04
	cGFSelect  = 0x08
	cGF        = 0x0c
	cMSIX      = 0x10
	cNumQ      = 0x12
	cStatus    = 0x14
	cGen       = 0x15
	cQSelect   = 0x16
	cQSize     = 0x18
	cQMSIX     = 0x1a
	cQEnable   = 0x1c
	cQNotifyOf = 0x1e
	cQDescLo   = 0x20
	cQDescHi   = 0x24
	cQAvailLo  = 0x28
	cQAvailHi  = 0x2c
	cQUsedLo   = 0x30
	cQUsedHi   = 0x34
	cQReset    = 0x3a
)

// Memory is what the transport needs of guest memory: copies for data
// and indirect tables, pins for the rings (memory.MapCache).
type Memory interface {
	memory.Accessor
	Pin(gpa memory.GPA, n int) (*memory.Region, error)
}

// Device is a virtio device behind the transport.
type Device interface {
	// Features are the device's feature bits, with the ring features it
	// handles (FIndirectDesc, FEventIdx); the transport adds FVersion1
	// and the legacy-only bits.
	Features() uint64
	// ConfigLen is the device configuration's length in bytes.
	ConfigLen() int
	// ReadConfig and WriteConfig access the device configuration
	// (bounds checked by the transport).
	ReadConfig(off int, p []byte)
	WriteConfig(off int, p []byte)
	// Notify is the driver's kick of queue q. It runs on the notifying
	// vCPU's request, with no transport lock held.
	Notify(q *Queue)
	// Reset stops the device: requests in flight are waited for and
	// their completions dropped. No queue lock is held.
	Reset()
	// ResetQueue does the same for queue q alone (VIRTIO_F_RING_RESET).
	ResetQueue(q *Queue)
}

// LegacyFeaturer is a Device some of whose feature bits are offered
// through the legacy interface only (QEMU's VirtioDeviceClass
// legacy_features: virtio-net's VIRTIO_NET_F_GSO); they must be among
// Features.
type LegacyFeaturer interface {
	LegacyFeatures() uint64
}

// Config describes a transport.
type Config struct {
	// DeviceID is the virtio device ID (1 net, 2 block).
	DeviceID uint16
	// PCIDeviceID is the transitional function's PCI device ID (0x1000
	// net, 0x1001 block).
	PCIDeviceID uint16
	// Class is the PCI class code.
	Class uint32
	// Queues and QueueSize are the number of virtqueues and their
	// maximum size (a power of two, at most MaxQueueSize).
	Queues    int
	QueueSize uint16
	// QueueSizes, when set, gives each queue its own maximum size (one
	// entry a queue, each a power of two of at most MaxQueueSize); it
	// overrides QueueSize (QEMU's virtio-net: 256 for rx and tx, 64 for
	// the control queue).
	QueueSizes []uint16
	// Vectors is the MSI-X table size (0: no MSI-X).
	Vectors int
	// ModernBAR32 puts the modern regions in a 32-bit BAR instead of
	// QEMU's 64-bit prefetchable one (for harnesses forwarding 32-bit
	// BARs only).
	ModernBAR32 bool
	Memory      Memory
	Device      Device
}

// Transport is a transitional virtio PCI function (§4.1): the modern
// capabilities in BAR4, the legacy registers in I/O BAR0, MSI-X in BAR1.
type Transport struct {
	fn      *pci.Device
	mem     Memory
	dev     Device
	devID   uint16
	msixCap uint8
	hostF   uint64
	legacyF uint64 // of hostF, the bits the modern interface does not offer
	cfgLen  int
	queues  []*Queue

	mu         sync.Mutex // registers
	dfSel      uint32
	gfSel      uint32
	gf         [2]uint32
	queueSel   uint16
	cfgVector  atomic.Uint32
	modernQ    []modernQueue
	status     atomic.Uint32
	negotiated atomic.Uint64
	generation atomic.Uint32
	broken     atomic.Bool

	irqMu sync.Mutex
	isr   uint32 // guarded by irqMu
	line  bool   // guarded by irqMu
}

// modernQueue is what the driver wrote to a queue's common registers
// before enabling it (QEMU VirtIOPCIQueue).
type modernQueue struct {
	desc, avail, used [2]uint32
}

// New builds the transport and its PCI function.
func New(c Config) (*Transport, error) {
	if c.Memory == nil || c.Device == nil {
		return nil, errors.New("virtio: no guest memory or device")
	}
	if c.Queues < 1 || c.Queues > 64 {
		return nil, fmt.Errorf("virtio: %d queues: out of range", c.Queues)
	}
	sizes := c.QueueSizes
	if sizes == nil {
		sizes = make([]uint16, c.Queues)
		for i := range sizes {
			sizes[i] = c.QueueSize
		}
	}
	if len(sizes) != c.Queues {
		return nil, fmt.Errorf("virtio: %d queue sizes for %d queues", len(sizes), c.Queues)
	}
	for _, n := range sizes {
		if n == 0 || n > MaxQueueSize || n&(n-1) != 0 {
			return nil, fmt.Errorf("virtio: queue of %d entries: out of range", n)
		}
	}
	if c.Vectors < 0 || c.Vectors > 2048 {
		return nil, fmt.Errorf("virtio: %d MSI-X vectors: out of range", c.Vectors)
	}
	fn, err := pci.New(pci.Header{
		VendorID: VendorID, DeviceID: c.PCIDeviceID, Class: c.Class, Revision: 0,
		SubsystemVendorID: VendorID, SubsystemID: c.DeviceID, InterruptPin: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("virtio: %w", err)
	}
	t := &Transport{fn: fn, mem: c.Memory, dev: c.Device, devID: c.DeviceID,
		hostF: c.Device.Features() | FVersion1 | FRingReset | legacyOnly, cfgLen: c.Device.ConfigLen(),
		modernQ: make([]modernQueue, c.Queues)}
	t.legacyF = legacyOnly
	if lf, ok := c.Device.(LegacyFeaturer); ok {
		t.legacyF |= lf.LegacyFeatures() & t.hostF
	}
	for i := range c.Queues {
		t.queues = append(t.queues, &Queue{t: t, idx: i, max: sizes[i]})
	}
	// BAR0: the legacy header with MSI-X vectors, then the device
	// configuration, rounded up to a power of two (QEMU
	// virtio_pci_device_plugged).
	lsize := uint64(1) << bits.Len64(uint64(legacyHdrMSIX+t.cfgLen)-1)
	if err := fn.SetBAR(legacyBAR, pci.BAR{Kind: pci.BARIO, Size: lsize, Handler: legacyRegs{t}}); err != nil {
		return nil, fmt.Errorf("virtio: %w", err)
	}
	if c.Vectors > 0 {
		if err := fn.SetBAR(msixBAR, pci.BAR{Kind: pci.BARMem32, Size: 0x1000}); err != nil {
			return nil, fmt.Errorf("virtio: %w", err)
		}
	}
	mk := pci.BARMem64
	if c.ModernBAR32 {
		mk = pci.BARMem32
	}
	if err := fn.SetBAR(modernBAR, pci.BAR{Kind: mk, Size: modernLen, Prefetchable: !c.ModernBAR32, Handler: modernRegs{t}}); err != nil {
		return nil, fmt.Errorf("virtio: %w", err)
	}
	// The capabilities in QEMU's order: common, ISR, device, notify,
	// PCI configuration access, MSI-X; QEMU links each at the head.
	vcap := func(typ uint8, off, n uint32, extra []byte) error {
		body := make([]byte, 14, 14+len(extra))
		body[0] = byte(16 + len(extra))
		body[1] = typ
		body[2] = modernBAR
		binary.LittleEndian.PutUint32(body[6:], off)
		binary.LittleEndian.PutUint32(body[10:], n)
		body = append(body, extra...)
		_, err := fn.AddCapability(0x09, body, nil, nil)
		return err
	}
	mult := binary.LittleEndian.AppendUint32(nil, notifyMult)
	if err := errors.Join(
		vcap(1, commonOff, regionLen, nil),
		vcap(3, isrOff, regionLen, nil),
		vcap(4, deviceOff, regionLen, nil),
		vcap(2, notifyOff, regionLen, mult)); err != nil {
		return nil, fmt.Errorf("virtio: %w", err)
	}
	// VIRTIO_PCI_CAP_PCI_CFG: bar, offset, length and data are
	// writable (QEMU sets their wmask); the window itself is not served.
	pcfg := make([]byte, 18)
	pcfg[0], pcfg[1] = 0x14, 5
	wm := make([]byte, 18)
	wm[2] = 0xff
	for i := 6; i < 18; i++ {
		wm[i] = 0xff
	}
	if _, err := fn.AddCapability(0x09, pcfg, wm, nil); err != nil {
		return nil, fmt.Errorf("virtio: %w", err)
	}
	if c.Vectors > 0 {
		off, err := fn.AddMSIX(pci.MSIXConfig{Vectors: c.Vectors, TableBAR: msixBAR, TableOffset: 0, PBABAR: msixBAR, PBAOffset: 0x800})
		if err != nil {
			return nil, fmt.Errorf("virtio: %w", err)
		}
		t.msixCap = off
	}
	if err := fn.ReverseCapabilities(); err != nil {
		return nil, fmt.Errorf("virtio: %w", err)
	}
	t.resetRegs()
	return t, nil
}

// Function is the PCI function.
func (t *Transport) Function() *pci.Device { return t.fn }

// Queue returns queue i.
func (t *Transport) Queue(i int) *Queue { return t.queues[i] }

// NumQueues is the number of queues.
func (t *Transport) NumQueues() int { return len(t.queues) }

// Negotiated returns the features the driver accepted.
func (t *Transport) Negotiated() uint64 { return t.negotiated.Load() }

// Status returns the device status.
func (t *Transport) Status() uint8 { return uint8(t.status.Load()) }

// Broken reports whether the device failed (a malformed ring) and waits
// for a reset.
func (t *Transport) Broken() bool { return t.broken.Load() }

// Fail marks the device broken after a guest error: DEVICE_NEEDS_RESET
// under VERSION_1, and a configuration interrupt (QEMU virtio_error). It
// takes no transport or queue lock.
func (t *Transport) Fail() {
	if t.broken.Swap(true) {
		return
	}
	if t.negotiated.Load()&FVersion1 == 0 {
		return
	}
	for {
		s := t.status.Load()
		if t.status.CompareAndSwap(s, s|StatusNeedsReset) {
			break
		}
	}
	t.ConfigChanged()
}

// ConfigChanged sends the configuration change interrupt (QEMU
// virtio_notify_config: only once DRIVER_OK).
func (t *Transport) ConfigChanged() {
	if t.status.Load()&StatusDriverOK == 0 {
		return
	}
	t.generation.Add(1)
	t.interrupt(uint16(t.cfgVector.Load()), isrConfig)
}

func (t *Transport) msixEnabled() bool {
	return t.msixCap != 0 && t.fn.ConfigRead(uint32(t.msixCap)+2, 2)&0x8000 != 0
}

// interrupt sets ISR bits and signals vector v through MSI-X when it is
// enabled, else the INTx level follows ISR bit 0 (QEMU virtio_pci_notify).
func (t *Transport) interrupt(v uint16, bit uint32) {
	t.irqMu.Lock()
	t.isr |= bit
	t.irqMu.Unlock()
	if t.msixEnabled() {
		if v != NoVector {
			t.fn.Interrupt(int(v))
		}
		return
	}
	t.irqMu.Lock()
	t.setLineLocked(t.isr&1 != 0)
	t.irqMu.Unlock()
}

func (t *Transport) setLineLocked(high bool) {
	if t.line != high {
		t.line = high
		t.fn.SetINTx(high)
	}
}

// readISR returns ISR and clears it, lowering INTx (§4.1.4.5).
func (t *Transport) readISR() uint32 {
	t.irqMu.Lock()
	defer t.irqMu.Unlock()
	v := t.isr
	t.isr = 0
	t.setLineLocked(false)
	return v
}

// Reset is the device reset (status 0, a PCI reset): the device stops,
// the queues and registers return to their power-on values.
func (t *Transport) Reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.resetLocked()
}

func (t *Transport) resetLocked() {
	// The queues stop first, so the device pops nothing new while it
	// waits for its requests in flight; then the rest returns to its
	// power-on state (a Fail in between is forgotten).
	for _, q := range t.queues {
		q.mu.Lock()
		q.enabled = false
		q.mu.Unlock()
	}
	t.dev.Reset()
	t.resetRegs()
}

func (t *Transport) resetRegs() {
	for i, q := range t.queues {
		q.mu.Lock()
		q.resetLocked()
		q.mu.Unlock()
		t.modernQ[i] = modernQueue{}
	}
	t.status.Store(0)
	t.negotiated.Store(0)
	// The feature selectors and the driver features as written stay, as
	// QEMU's virtio_pci_reset leaves them; the queue select does not.
	t.queueSel = 0
	t.cfgVector.Store(NoVector)
	t.broken.Store(false)
	t.irqMu.Lock()
	t.isr = 0
	t.setLineLocked(false)
	t.irqMu.Unlock()
}

// Close releases the rings' pins (the device is stopped first).
func (t *Transport) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.resetLocked()
}

// setFeatures is virtio_set_features: refused once FEATURES_OK is set,
// masked with what the device offers. The mask is every offered bit, the
// legacy-only ones included, whichever interface the driver writes
// through: QEMU 7.2 does the same (virtio_pci_common_write's GF case calls
// virtio_set_features, which masks with host_features; only the modern
// DF read hides legacy_features), and the differential compares
// the negotiated bits with it.
func (t *Transport) setFeaturesLocked(f uint64) {
	if t.status.Load()&StatusFeaturesOK != 0 {
		return
	}
	f &= t.hostF
	t.negotiated.Store(f)
	for _, q := range t.queues {
		q.mu.Lock()
		q.eventIdx = f&FEventIdx != 0
		q.mu.Unlock()
	}
}

func (t *Transport) setStatusLocked(v uint8, legacy bool) {
	if v == 0 {
		t.resetLocked()
		return
	}
	t.status.Store(uint32(v))
	// QEMU virtio_ioport_write: Linux before 2.6.34 drove the device
	// without bus mastering; ACKNOWLEDGE|DRIVER turns it on.
	if legacy && v == StatusAcknowledge|StatusDriver {
		t.fn.Write(devices.Access{Offset: pci.RegCommand, Size: 1}, uint64(t.fn.ConfigRead(pci.RegCommand, 1)|pci.CommandMaster))
	}
}

func (t *Transport) notify(i uint64) {
	if i < uint64(len(t.queues)) && !t.broken.Load() {
		t.dev.Notify(t.queues[i])
	}
}

func (t *Transport) selected() *Queue {
	if int(t.queueSel) < len(t.queues) {
		return t.queues[t.queueSel]
	}
	return nil
}

// checkVector is msix_vector_use: a vector beyond the table reads back as
// NO_VECTOR, so the driver sees its error.
func (t *Transport) checkVector(v uint16) uint16 {
	if t.msixCap == 0 || int(v) >= t.vectors() {
		return NoVector
	}
	return v
}

func (t *Transport) vectors() int {
	return int(t.fn.ConfigRead(uint32(t.msixCap)+2, 2)&0x7ff) + 1
}

// split breaks an access into naturally aligned pieces, as QEMU's memory
// core does for regions without unaligned support, and calls fn for each
// (offset, size, shift in the value).
func split(off uint64, size uint8, fn func(off uint64, size uint8, sh uint)) {
	sh := uint(0)
	for size > 0 {
		p := uint8(1)
		for p*2 <= size && off%uint64(p*2) == 0 && p < 4 {
			p *= 2
		}
		fn(off, p, sh)
		off += uint64(p)
		size -= p
		sh += 8 * uint(p)
	}
}

// --- the legacy I/O BAR

type legacyRegs struct{ t *Transport }

func (r legacyRegs) Read(a devices.Access) uint64 {
	var v uint64
	split(a.Offset, a.Size, func(off uint64, size uint8, sh uint) {
		v |= (r.t.legacyRead(off, size) & devices.SizeMask(size)) << sh
	})
	return v
}

func (r legacyRegs) Write(a devices.Access, v uint64) {
	split(a.Offset, a.Size, func(off uint64, size uint8, sh uint) {
		r.t.legacyWrite(off, size, (v>>sh)&devices.SizeMask(size))
	})
}

func (t *Transport) legacyHdrLen() uint64 {
	if t.msixEnabled() {
		return legacyHdrMSIX
	}
	return legacyHdr
}

// legacyRead is virtio_pci_config_read / virtio_ioport_read.
func (t *Transport) legacyRead(off uint64, size uint8) uint64 {
	if h := t.legacyHdrLen(); off >= h {
		return t.deviceRead(off-h, size)
	}
	if off == lISR {
		return uint64(t.readISR())
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch off {
	case lHostFeatures:
		return uint64(uint32(t.hostF))
	case lGuestFeatures:
		return uint64(uint32(t.negotiated.Load()))
	case lQueuePFN:
		if q := t.selected(); q != nil {
			q.mu.Lock()
			defer q.mu.Unlock()
			return q.desc >> 12
		}
		return 0
	case lQueueNum:
		if q := t.selected(); q != nil {
			q.mu.Lock()
			defer q.mu.Unlock()
			return uint64(q.size)
		}
		return 0
	case lQueueSel:
		return uint64(t.queueSel)
	case lStatus:
		return uint64(t.status.Load() & 0xff)
	case lConfigVector:
		return uint64(t.cfgVector.Load())
	case lQueueVector:
		if q := t.selected(); q != nil {
			q.mu.Lock()
			defer q.mu.Unlock()
			return uint64(q.vector)
		}
		return NoVector
	}
	return 0xffffffff
}

// legacyWrite is virtio_pci_config_write / virtio_ioport_write.
func (t *Transport) legacyWrite(off uint64, size uint8, v uint64) {
	if h := t.legacyHdrLen(); off >= h {
		t.deviceWrite(off-h, size, v)
		return
	}
	if off == lQueueNotify {
		t.notify(v)
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch off {
	case lGuestFeatures:
		if v&FBadFeature != 0 {
			v = 0
		}
		t.setFeaturesLocked(uint64(uint32(v)))
	case lQueuePFN:
		if v == 0 {
			t.resetLocked()
			return
		}
		if q := t.selected(); q != nil {
			q.mu.Lock()
			q.setLegacyPFNLocked(uint32(v))
			q.eventIdx = t.negotiated.Load()&FEventIdx != 0
			q.mu.Unlock()
		}
	case lQueueSel:
		if v < MaxQueueSize {
			t.queueSel = uint16(v)
		}
	case lStatus:
		t.setStatusLocked(uint8(v), true)
	case lConfigVector:
		t.cfgVector.Store(uint32(t.checkVector(uint16(v))))
	case lQueueVector:
		if q := t.selected(); q != nil {
			q.mu.Lock()
			q.vector = t.checkVector(uint16(v))
			q.mu.Unlock()
		}
	}
}

// deviceRead reads the device configuration; beyond it, all ones (QEMU
// virtio_config_readb/w/l).
func (t *Transport) deviceRead(off uint64, size uint8) uint64 {
	if off >= uint64(t.cfgLen) || uint64(t.cfgLen)-off < uint64(size) {
		return devices.SizeMask(size)
	}
	var b [8]byte
	t.dev.ReadConfig(int(off), b[:size])
	return binary.LittleEndian.Uint64(b[:])
}

func (t *Transport) deviceWrite(off uint64, size uint8, v uint64) {
	if off >= uint64(t.cfgLen) || uint64(t.cfgLen)-off < uint64(size) {
		return
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	t.dev.WriteConfig(int(off), b[:size])
}

// --- the modern regions (BAR4)

type modernRegs struct{ t *Transport }

func (r modernRegs) Read(a devices.Access) uint64 {
	t := r.t
	reg := a.Offset &^ (regionLen - 1)
	off := a.Offset & (regionLen - 1)
	if off+uint64(a.Size) > regionLen {
		return 0
	}
	switch reg {
	case commonOff:
		var v uint64
		split(off, a.Size, func(o uint64, s uint8, sh uint) {
			v |= (t.commonRead(o) & devices.SizeMask(s)) << sh
		})
		return v
	case isrOff:
		return uint64(t.readISR()) & devices.SizeMask(a.Size)
	case deviceOff:
		return t.deviceRead(off, a.Size)
	}
	return 0
}

func (r modernRegs) Write(a devices.Access, v uint64) {
	t := r.t
	reg := a.Offset &^ (regionLen - 1)
	off := a.Offset & (regionLen - 1)
	if off+uint64(a.Size) > regionLen {
		return
	}
	switch reg {
	case commonOff:
		split(off, a.Size, func(o uint64, s uint8, sh uint) {
			t.commonWrite(o, (v>>sh)&devices.SizeMask(s))
		})
	case deviceOff:
		t.deviceWrite(off, a.Size, v)
	case notifyOff:
		// QEMU virtio_pci_notify_write: the queue is the offset over the
		// multiplier; the value is not looked at.
		t.notify(off / notifyMult)
	}
}

// commonRead is virtio_pci_common_read.
func (t *Transport) commonRead(off uint64) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	q := t.selected()
	var mq *modernQueue
	if q != nil {
		mq = &t.modernQ[q.idx]
		q.mu.Lock()
		defer q.mu.Unlock()
	}
	switch off {
	case cDFSelect:
		return uint64(t.dfSel)
	case cDF:
		if t.dfSel <= 1 {
			return (t.hostF &^ t.legacyF) >> (32 * t.dfSel) & 0xffffffff
		}
	case cGFSelect:
		return uint64(t.gfSel)
	case cGF:
		if t.gfSel < 2 {
			return uint64(t.gf[t.gfSel])
		}
	case cMSIX:
		return uint64(t.cfgVector.Load())
	case cNumQ:
		return uint64(len(t.queues))
	case cStatus:
		return uint64(t.status.Load() & 0xff)
	case cGen:
		return uint64(t.generation.Load() & 0xff)
	case cQSelect:
		return uint64(t.queueSel)
	}
	if q == nil {
		return 0
	}
	switch off {
	case cQSize:
		return uint64(q.size)
	case cQMSIX:
		return uint64(q.vector)
	case cQEnable:
		if q.enabled {
			return 1
		}
	case cQNotifyOf:
		return uint64(q.idx)
	case cQDescLo:
		return uint64(mq.desc[0])
	case cQDescHi:
		return uint64(mq.desc[1])
	case cQAvailLo:
		return uint64(mq.avail[0])
	case cQAvailHi:
		return uint64(mq.avail[1])
	case cQUsedLo:
		return uint64(mq.used[0])
	case cQUsedHi:
		return uint64(mq.used[1])
	case cQReset:
		return 0 // a reset completes within the write
	}
	return 0
}

// commonWrite is virtio_pci_common_write.
func (t *Transport) commonWrite(off uint64, v uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch off {
	case cDFSelect:
		t.dfSel = uint32(v)
		return
	case cGFSelect:
		t.gfSel = uint32(v)
		return
	case cGF:
		if t.gfSel < 2 {
			t.gf[t.gfSel] = uint32(v)
			t.setFeaturesLocked(uint64(t.gf[1])<<32 | uint64(t.gf[0]))
		}
		return
	case cMSIX:
		t.cfgVector.Store(uint32(t.checkVector(uint16(v))))
		return
	case cStatus:
		t.setStatusLocked(uint8(v), false)
		return
	case cQSelect:
		if v < MaxQueueSize {
			t.queueSel = uint16(v)
		}
		return
	}
	q := t.selected()
	if q == nil {
		return
	}
	mq := &t.modernQ[q.idx]
	switch off {
	case cQDescLo:
		mq.desc[0] = uint32(v)
		return
	case cQDescHi:
		mq.desc[1] = uint32(v)
		return
	case cQAvailLo:
		mq.avail[0] = uint32(v)
		return
	case cQAvailHi:
		mq.avail[1] = uint32(v)
		return
	case cQUsedLo:
		mq.used[0] = uint32(v)
		return
	case cQUsedHi:
		mq.used[1] = uint32(v)
		return
	case cQReset:
		// §4.1.4.3.2: the queue stops, its requests in flight are
		// waited for, and it returns to its reset state (QEMU
		// virtio_queue_reset; the registers as written stay).
		if v == 1 {
			q.mu.Lock()
			q.enabled = false
			q.mu.Unlock()
			t.dev.ResetQueue(q)
			q.mu.Lock()
			q.resetLocked()
			q.eventIdx = t.negotiated.Load()&FEventIdx != 0
			q.mu.Unlock()
		}
		return
	case cQEnable:
		if v != 1 {
			// QEMU 7.2: "wrong value for queue_enable" is virtio_error
			// (Fail takes no transport lock).
			t.Fail()
			return
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	switch off {
	case cQSize:
		// virtio_queue_set_num: a configured queue keeps a size, at
		// most VIRTQUEUE_MAX_SIZE.
		if v != 0 && v <= MaxQueueSize && !q.enabled {
			q.size = uint16(v)
		}
	case cQMSIX:
		q.vector = t.checkVector(uint16(v))
	case cQEnable:
		q.unpinLocked()
		q.desc = uint64(mq.desc[1])<<32 | uint64(mq.desc[0])
		q.avail = uint64(mq.avail[1])<<32 | uint64(mq.avail[0])
		q.used = uint64(mq.used[1])<<32 | uint64(mq.used[0])
		q.enabled = true
		q.lastAvail, q.usedIdx, q.signalled, q.signalledOK, q.pinErr = 0, 0, 0, false, false
		q.eventIdx = t.negotiated.Load()&FEventIdx != 0
	}
}

// LegacyRegs and ModernRegs are the handlers of BAR0 and BAR4 (offsets
// relative to the BAR), for tests and fuzzing without a bus.
func (t *Transport) LegacyRegs() devices.Handler { return legacyRegs{t} }
func (t *Transport) ModernRegs() devices.Handler { return modernRegs{t} }

package testdev

import (
	"sync"
	"sync/atomic"

	"godm/devices"
	"godm/memory"
	"godm/pci"
)

// IDs and register offsets; see the package documentation.
const (
	VendorID = 0x676f
	DeviceID = 0x646d
	Magic    = 0x676f646d

	RegMagic    = 0x00
	RegScratch  = 0x04
	RegDMALo    = 0x08
	RegDMAHi    = 0x0c
	RegDMALen   = 0x10
	RegSeed     = 0x14
	RegVector   = 0x18
	RegDoorbell = 0x1c
	RegDone     = 0x20
	RegStatus   = 0x24
	RegINTx     = 0x28

	StatusOK     = 0
	StatusDMAErr = 1
	StatusBadLen = 2

	// MaxDMA bounds one fill.
	MaxDMA = 1 << 20
	// Vectors is the MSI-X table size.
	Vectors = 4
)

// Device is the test device.
type Device struct {
	fn  *pci.Device
	mem memory.Accessor

	mu      sync.Mutex // guards the registers below
	scratch uint32
	dmaAddr uint64
	dmaLen  uint32
	seed    uint32
	vector  uint32
	ioScr   uint32
	intx    bool   // INTx asserted by a completion (no MSI-X)
	gen     uint64 // bumped by Reset: a fill started before completes silently
	pending bool   // a doorbell rang and its fill has not started

	done   atomic.Uint32
	status atomic.Uint32

	kick    chan struct{}
	stop    chan struct{}
	stopped chan struct{}
	once    sync.Once
	buf     []byte // DMA staging, owned by the worker

	// run is held by the worker for a whole fill and by Pause until
	// Resume: a paused device neither writes guest memory nor
	// interrupts. paused says whether Pause holds it.
	run    sync.Mutex
	pmu    sync.Mutex
	paused bool
}

// New returns the device; mem is the guest memory its DMA writes to.
func New(mem memory.Accessor) (*Device, error) {
	d := &Device{
		mem:     mem,
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	fn, err := pci.NewFunction(pci.Header{
		VendorID:          VendorID,
		DeviceID:          DeviceID,
		Class:             0xff0000, // unassigned class
		SubsystemVendorID: VendorID,
		SubsystemID:       DeviceID,
		InterruptPin:      1,
	},
		pci.BAR{Kind: pci.BARMem32, Size: 4096, Handler: regs{d}},
		pci.BAR{Kind: pci.BARIO, Size: 16, Handler: ioRegs{d}},
		pci.BAR{Kind: pci.BARMem32, Size: 4096},
	)
	if err != nil {
		return nil, err
	}
	if _, err := fn.AddMSIX(pci.MSIXConfig{Vectors: Vectors, TableBAR: 2, TableOffset: 0, PBABAR: 2, PBAOffset: 0x800}); err != nil {
		return nil, err
	}
	d.fn = fn
	go d.worker()
	return d, nil
}

// Function returns the PCI function to add to a pci.Bus.
func (d *Device) Function() *pci.Device { return d.fn }

// Done returns the number of completed commands.
func (d *Device) Done() uint32 { return d.done.Load() }

// Close stops the DMA worker (resuming it first if paused). It is
// idempotent.
func (d *Device) Close() error {
	d.Resume()
	d.once.Do(func() { close(d.stop) })
	<-d.stopped
	return nil
}

func (d *Device) worker() {
	defer close(d.stopped)
	for {
		select {
		case <-d.stop:
			return
		case <-d.kick:
		}
		d.fill()
	}
}

// Pause implements devices.Pauser: it waits for a fill under way to
// complete and holds the next one until Resume.
func (d *Device) Pause() {
	d.pmu.Lock()
	defer d.pmu.Unlock()
	if !d.paused {
		d.run.Lock()
		d.paused = true
	}
}

// Resume implements devices.Pauser.
func (d *Device) Resume() {
	d.pmu.Lock()
	defer d.pmu.Unlock()
	if d.paused {
		d.paused = false
		d.run.Unlock()
	}
}

// fill runs the pending doorbell's fill, if one is still pending.
func (d *Device) fill() {
	d.run.Lock()
	defer d.run.Unlock()
	d.mu.Lock()
	if !d.pending {
		d.mu.Unlock()
		return
	}
	d.pending = false
	addr, n, seed, vec, gen := d.dmaAddr, d.dmaLen, d.seed, d.vector, d.gen
	d.mu.Unlock()
	st := uint32(StatusOK)
	if n == 0 || n > MaxDMA {
		st = StatusBadLen
	} else {
		if cap(d.buf) < int(n) {
			d.buf = make([]byte, n)
		}
		b := d.buf[:n]
		for i := range b {
			b[i] = byte(seed + uint32(i))
		}
		if err := d.mem.Write(addr, b); err != nil {
			st = StatusDMAErr
		}
	}
	// Completion and its interrupt are one step under mu, the lock a
	// DONE read takes to acknowledge INTx: otherwise a DONE read
	// between the two could acknowledge before the level rose and
	// leave INTx asserted with nothing to acknowledge.
	d.mu.Lock()
	if d.gen != gen { // reset while filling: no completion, no interrupt
		d.mu.Unlock()
		return
	}
	d.status.Store(st)
	d.done.Add(1)
	if !d.fn.Interrupt(int(vec % Vectors)) {
		d.intx = true
		d.fn.SetINTx(true)
	}
	d.mu.Unlock()
}

// Reset returns the device's registers to their power-on values, as a
// PCI reset does: a doorbell not yet taken is dropped, and a fill already
// under way completes without touching the registers or interrupting.
// The PCI function itself (config space, MSI-X) is reset by its owner
// (pci.Device.Reset).
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	select {
	case <-d.kick:
	default:
	}
	d.gen++
	d.pending = false
	d.scratch, d.dmaAddr, d.dmaLen, d.seed, d.vector, d.ioScr = 0, 0, 0, 0, 0, 0
	if d.intx {
		d.intx = false
		d.fn.SetINTx(false)
	}
	d.done.Store(0)
	d.status.Store(StatusOK)
}

type regs struct{ d *Device }

// Read implements devices.Handler.
func (r regs) Read(a devices.Access) uint64 {
	d := r.d
	if a.Size != 4 {
		return devices.SizeMask(a.Size)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	switch a.Offset {
	case RegMagic:
		return Magic
	case RegScratch:
		return uint64(d.scratch)
	case RegDMALo:
		return d.dmaAddr & 0xffffffff
	case RegDMAHi:
		return d.dmaAddr >> 32
	case RegDMALen:
		return uint64(d.dmaLen)
	case RegSeed:
		return uint64(d.seed)
	case RegVector:
		return uint64(d.vector)
	case RegDone:
		// Reading DONE acknowledges a level-triggered completion.
		if d.intx {
			d.intx = false
			d.fn.SetINTx(false)
		}
		return uint64(d.done.Load())
	case RegStatus:
		return uint64(d.status.Load())
	case RegINTx:
		if d.intx {
			return 1
		}
		return 0
	}
	return 0
}

// Write implements devices.Handler.
func (r regs) Write(a devices.Access, v uint64) {
	d := r.d
	if a.Size != 4 {
		return
	}
	val := uint32(v)
	d.mu.Lock()
	defer d.mu.Unlock()
	switch a.Offset {
	case RegScratch:
		d.scratch = val
	case RegDMALo:
		d.dmaAddr = d.dmaAddr&^0xffffffff | uint64(val)
	case RegDMAHi:
		d.dmaAddr = d.dmaAddr&0xffffffff | uint64(val)<<32
	case RegDMALen:
		d.dmaLen = val
	case RegSeed:
		d.seed = val
	case RegVector:
		d.vector = val
	case RegDoorbell:
		if val == 1 {
			d.pending = true
			select { // never blocks: one pending kick is enough
			case d.kick <- struct{}{}:
			default:
			}
		}
	case RegINTx:
		d.intx = val&1 != 0
		d.fn.SetINTx(d.intx)
	}
}

type ioRegs struct{ d *Device }

// Read implements devices.Handler. Bytes 0-3 are the scratch register,
// bytes 4-7 its inverse; any size and alignment inside the 8 bytes works.
func (r ioRegs) Read(a devices.Access) uint64 {
	r.d.mu.Lock()
	defer r.d.mu.Unlock()
	view := uint64(r.d.ioScr) | uint64(^r.d.ioScr)<<32
	if a.Offset >= 8 {
		return 0
	}
	return view >> (8 * a.Offset) & devices.SizeMask(a.Size)
}

// Write implements devices.Handler: only the scratch bytes 0-3 are
// writable.
func (r ioRegs) Write(a devices.Access, v uint64) {
	r.d.mu.Lock()
	defer r.d.mu.Unlock()
	for i := uint64(0); i < uint64(a.Size); i++ {
		if o := a.Offset + i; o < 4 {
			sh := 8 * o
			r.d.ioScr = r.d.ioScr&^(0xff<<sh) | uint32(v>>(8*i)&0xff)<<sh
		}
	}
}

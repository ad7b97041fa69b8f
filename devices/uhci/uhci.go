// Package uhci is the PIIX3 USB 1.1 host controller (-usb, -device
// piix3-usb-uhci): the UHCI register set in a 32-byte I/O BAR, two root
// ports, and the schedule (frame list, queue heads, transfer descriptors)
// walked from guest memory once a millisecond while the controller runs.
// References: the UHCI 1.1 design guide (Intel, 1996) for the register
// and descriptor semantics; QEMU 7.2 hw/usb/hcd-uhci.c for what QEMU's
// guests see (reset values, the access widths, the IRQ condition).
//
// The schedule is hostile input: each frame does a bounded amount of
// work (MaxFrameSteps links, the USB 1.1 bandwidth of a frame), a queue
// head revisited without progress ends the frame, and a descriptor or
// buffer outside guest memory is a host system error (USBSTS HSERR, the
// controller halts, UHCI 1.1 §2.1.2), never a crash.
package uhci

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"godm/devices"
	"godm/devices/clock"
	"godm/devices/usb"
	"godm/memory"
	"godm/pci"
)

// PCI identity (QEMU hcd-uhci.c uhci_info "piix3-usb-uhci": Intel
// 82371SB function 2, revision 1, irq_pin 3 = INTD#; class serial bus /
// USB / UHCI) and placement (hw/i386/pc_piix.c: -usb puts it at the
// PIIX3's devfn + 2).
const (
	VendorID  = 0x8086
	DeviceID  = 0x7020
	Revision  = 0x01
	ClassCode = 0x0c0300
	Slot      = 1
	Function  = 2
	// BARIndex is the I/O BAR's index (QEMU: "region 4 for consistency
	// with real hardware").
	BARIndex = 4
	// RegSize is the I/O BAR's size.
	RegSize = 0x20
	// NumPorts is the root hub's port count.
	NumPorts = 2
	// regSBRN is the serial bus release number in config space (0x10:
	// USB 1.0, as QEMU sets it); regUSBClock the clock control byte
	// QEMU's reset sets to 1.
	regSBRN     = 0x60
	regUSBClock = 0x6a
)

// I/O registers (UHCI 1.1 §2.1).
const (
	RegCmd     = 0x00
	RegStatus  = 0x02
	RegIntr    = 0x04
	RegFrnum   = 0x06
	RegFLBase  = 0x08
	RegSOF     = 0x0c
	RegPortSC1 = 0x10
	RegPortSC2 = 0x12
)

// USBCMD bits.
const (
	CmdRS      = 1 << 0
	CmdHCReset = 1 << 1
	CmdGReset  = 1 << 2
	CmdEGSM    = 1 << 3
	CmdFGR     = 1 << 4
)

// USBSTS bits.
const (
	StsUSBInt  = 1 << 0
	StsUSBErr  = 1 << 1
	StsRD      = 1 << 2
	StsHSErr   = 1 << 3
	StsHCPErr  = 1 << 4
	StsHalted  = 1 << 5
	intrTO     = 1 << 0 // USBINTR: timeout/CRC
	intrResume = 1 << 1
	intrIOC    = 1 << 2
	intrSP     = 1 << 3
)

// PORTSC bits.
const (
	PortCCS     = 1 << 0
	PortCSC     = 1 << 1
	PortEN      = 1 << 2
	PortENC     = 1 << 3
	PortRD      = 1 << 6
	PortLSDA    = 1 << 8
	PortReset   = 1 << 9
	PortSuspend = 1 << 12
	// portRO are the bits a write leaves (QEMU UHCI_PORT_READ_ONLY),
	// portWC those a 1 clears.
	portRO = 0x1bb
	portWC = PortCSC | PortENC
	// portIdle is a port's value after reset, empty (bit 7 reads 1).
	portIdle = 0x0080
)

// TD control/status bits (UHCI 1.1 §3.2.2).
const (
	tdActLen = 0x7ff
	tdSPD    = 1 << 29
	tdErrCnt = 3 << 27
	tdIOS    = 1 << 25
	tdIOC    = 1 << 24
	tdActive = 1 << 23
	tdStall  = 1 << 22
	tdNAK    = 1 << 19
	tdCRC    = 1 << 18 // CRC/timeout
)

// Link pointer bits.
const (
	linkTerm  = 1 << 0
	linkQH    = 1 << 1
	linkDepth = 1 << 2
)

const (
	// FrameTime is one USB frame.
	FrameTime = time.Millisecond
	// MaxFrameSteps bounds the links (QHs and TDs) one frame follows:
	// a looping or endless list ends the frame there (QEMU's
	// FRAME_MAX_LOOPS is the same 256).
	MaxFrameSteps = 256
	// frameBandwidth is a full-speed frame's bytes (QEMU's "bandwidth"
	// default, 1280).
	frameBandwidth = 1280
	// maxPacket is the largest TD MaxLen the controller takes: 0x4ff+1
	// (UHCI 1.1 §3.2.3: 0x500..0x7fe are illegal).
	maxPacket = 1280
	// qhSeen bounds the queue heads remembered to notice a loop.
	qhSeen = 128
	// maxCatchUp and maxPerTick bound the frames one timer tick runs
	// after a late wake-up (QEMU: maxframes 128, MAX_FRAMES_PER_TICK).
	maxCatchUp = 128
	maxPerTick = 16
)

// Stats are the controller's counters (atomic).
type Stats struct {
	// Frames counts frames processed; TDs the transfer descriptors
	// executed (not those found inactive).
	Frames, TDs atomic.Uint64
	// StepLimit counts frames ended by MaxFrameSteps or a queue-head loop
	// without progress.
	StepLimit atomic.Uint64
	// DMAErrors counts schedule or buffer accesses outside guest memory.
	DMAErrors atomic.Uint64
}

// Config describes a controller.
type Config struct {
	// Memory is guest memory (the schedule and the data buffers).
	Memory memory.Accessor
	// Clock times the frames; nil: the system clock.
	Clock clock.Clock
}

// Controller is one UHCI host controller.
type Controller struct {
	fn    *pci.Device
	mem   memory.Accessor
	clk   clock.Clock
	stats Stats

	mu      sync.Mutex
	st      state
	devs    [NumPorts]usb.Device
	timer   clock.Timer
	running bool // the frame timer is armed
	paused  bool
	closed  bool

	// staging, owned under mu (guest memory is an interface: stack
	// arrays handed to it would escape)
	buf  [maxPacket]byte
	word [16]byte
	seen [qhSeen]uint32
}

// state is the register file: what a snapshot carries.
type state struct {
	cmd, status, intr, frnum uint16
	flbase                   uint32
	sof                      uint8
	// status2 tells IOC (bit 0) from short-packet (bit 1) interrupts
	// behind USBINT (QEMU keeps the same hidden register); pending are
	// those of the frame in progress, raised when it ends.
	status2, pending uint8
	ports            [NumPorts]uint16
	// lastRun is when the last frame ran (the clock's time).
	lastRun time.Duration
}

// ErrNoMemory is returned by New without guest memory.
var ErrNoMemory = errors.New("uhci: no guest memory")

// New makes a controller with empty ports.
func New(c Config) (*Controller, error) {
	if c.Memory == nil {
		return nil, ErrNoMemory
	}
	clk := c.Clock
	if clk == nil {
		clk = clock.System()
	}
	d := &Controller{mem: c.Memory, clk: clk}
	fn, err := pci.New(pci.Header{
		VendorID:     VendorID,
		DeviceID:     DeviceID,
		Revision:     Revision,
		Class:        ClassCode,
		InterruptPin: 4,
		// QEMU's default subsystem IDs (hw/pci/pci.c
		// pci_set_default_subsystem_id).
		SubsystemVendorID: 0x1af4,
		SubsystemID:       0x1100,
	})
	if err != nil {
		return nil, err
	}
	if err := fn.SetBAR(BARIndex, pci.BAR{Kind: pci.BARIO, Size: RegSize, Handler: regs{d}}); err != nil {
		return nil, err
	}
	// QEMU leaves the device-specific configuration space (0x40-0xff)
	// writable (hw/pci/pci.c pci_init_wmask); the UHCI sets the serial
	// bus release number and the USB clock byte in it.
	for off := uint32(0x40); off < 0x100; off += 4 {
		var reset uint32
		switch off {
		case regSBRN:
			reset = 0x10
		case regUSBClock &^ 3:
			reset = 0x01 << (8 * (regUSBClock & 3))
		}
		if err := fn.DefineRegister(off, 4, reset, 0xffffffff, 0); err != nil {
			return nil, err
		}
	}
	d.fn = fn
	d.resetLocked()
	return d, nil
}

// Function returns the PCI function.
func (d *Controller) Function() *pci.Device { return d.fn }

// Stats returns the counters.
func (d *Controller) Stats() *Stats { return &d.stats }

// Close stops the frame timer. Idempotent.
func (d *Controller) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	d.stopTimerLocked()
	return nil
}

// Attach connects dev to root port i (0-based): the port reports a
// connection (CCS and CSC), as QEMU's uhci_attach.
func (d *Controller) Attach(i int, dev usb.Device) error {
	if i < 0 || i >= NumPorts {
		return errors.New("uhci: no such port")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.devs[i] != nil {
		return errors.New("uhci: port in use")
	}
	d.devs[i] = dev
	dev.BusReset()
	d.st.ports[i] |= PortCCS | PortCSC
	d.st.ports[i] &^= PortLSDA // full speed
	d.resumeLocked()
	return nil
}

// Detach disconnects port i's device (connect and enable change).
func (d *Controller) Detach(i int) {
	if i < 0 || i >= NumPorts {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.devs[i] = nil
	p := &d.st.ports[i]
	if *p&PortCCS != 0 {
		*p = *p&^PortCCS | PortCSC
	}
	if *p&PortEN != 0 {
		*p = *p&^PortEN | PortENC
	}
	d.resumeLocked()
}

// FreePort returns the first port without a device, or -1.
func (d *Controller) FreePort() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, dev := range d.devs {
		if dev == nil {
			return i
		}
	}
	return -1
}

// Reset is the controller's reset (a system reset; its PCI function is
// reset by its owner): QEMU's uhci_reset, with the devices on the ports
// reset and connected again.
func (d *Controller) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.resetLocked()
}

func (d *Controller) resetLocked() {
	d.fn.SetConfig(regUSBClock, 2, 0x0001)
	s := &d.st
	s.cmd = 0
	s.status = StsHalted
	s.status2, s.pending = 0, 0
	s.intr = 0
	s.flbase = 0
	s.sof = 64
	d.stopTimerLocked()
	for i := range s.ports {
		s.ports[i] = portIdle
		if dev := d.devs[i]; dev != nil {
			dev.BusReset()
			s.ports[i] |= PortCCS | PortCSC
		}
	}
	d.updateIRQLocked()
}

// updateIRQLocked drives INTx (QEMU uhci_update_irq: the enabled causes;
// the error bits unconditionally).
func (d *Controller) updateIRQLocked() {
	s := &d.st
	level := s.status2&1 != 0 && s.intr&intrIOC != 0 ||
		s.status2&2 != 0 && s.intr&intrSP != 0 ||
		s.status&StsUSBErr != 0 && s.intr&intrTO != 0 ||
		s.status&StsRD != 0 && s.intr&intrResume != 0 ||
		s.status&(StsHSErr|StsHCPErr) != 0
	d.fn.SetINTx(level)
}

// resumeLocked signals resume to a globally suspended controller.
func (d *Controller) resumeLocked() {
	if d.st.cmd&CmdEGSM != 0 {
		d.st.cmd |= CmdFGR
		d.st.status |= StsRD
		d.updateIRQLocked()
	}
}

// --- registers. QEMU's region implements 16-bit accesses only
// (impl.min/max_access_size 2) and takes no unaligned ones, so its memory
// core first cuts an access into aligned pieces of at most 4 bytes
// (system/physmem.c memory_access_size: a 4-byte read at 0x01 is a byte
// at 0x01, a word at 0x02 and a byte at 0x04), then runs a byte piece as
// a 16-bit access at the same offset cut to its low byte and a dword
// piece as two 16-bit ones. Bytes past the BAR read all-ones.

type regs struct{ d *Controller }

// piece is the size of the next aligned piece of an n-byte access at off.
func piece(off uint64, n uint8) uint8 {
	l := min(n, 4)
	if l == 3 {
		l = 2
	}
	for l > 1 && off&uint64(l-1) != 0 {
		l >>= 1
	}
	return l
}

func (r regs) Read(a devices.Access) uint64 {
	d := r.d
	d.mu.Lock()
	defer d.mu.Unlock()
	var v uint64
	for done := uint8(0); done < a.Size; {
		off := a.Offset + uint64(done)
		n := piece(off, a.Size-done)
		var p uint64
		switch {
		case off >= RegSize:
			p = 1<<(8*uint(n)) - 1
		case n == 1:
			p = uint64(d.read16Locked(off) & 0xff)
		case n == 2:
			p = uint64(d.read16Locked(off))
		default:
			p = uint64(d.read16Locked(off)) | uint64(d.read16Locked(off+2))<<16
		}
		v |= p << (8 * uint(done))
		done += n
	}
	return v
}

func (r regs) Write(a devices.Access, v uint64) {
	d := r.d
	d.mu.Lock()
	defer d.mu.Unlock()
	for done := uint8(0); done < a.Size; {
		off := a.Offset + uint64(done)
		n := piece(off, a.Size-done)
		p := v >> (8 * uint(done))
		switch {
		case off >= RegSize:
		case n == 1:
			d.write16Locked(off, uint16(p&0xff))
		case n == 2:
			d.write16Locked(off, uint16(p))
		default:
			d.write16Locked(off, uint16(p))
			d.write16Locked(off+2, uint16(p>>16))
		}
		done += n
	}
}

func (d *Controller) read16Locked(off uint64) uint16 {
	s := &d.st
	switch off {
	case RegCmd:
		return s.cmd
	case RegStatus:
		return s.status
	case RegIntr:
		return s.intr
	case RegFrnum:
		return s.frnum
	case RegFLBase:
		return uint16(s.flbase)
	case RegFLBase + 2:
		return uint16(s.flbase >> 16)
	case RegSOF:
		return uint16(s.sof)
	}
	if off >= RegPortSC1 {
		if n := (off >> 1) & 7; n < NumPorts {
			return s.ports[n]
		}
	}
	return 0xff7f // QEMU: "disabled port"
}

func (d *Controller) write16Locked(off uint64, v uint16) {
	s := &d.st
	switch off {
	case RegCmd:
		if v&CmdRS != 0 && s.cmd&CmdRS == 0 {
			s.status &^= StsHalted
			d.startTimerLocked()
		} else if v&CmdRS == 0 {
			s.status |= StsHalted
		}
		if v&CmdGReset != 0 {
			// Global reset: the bus's devices, then the controller.
			d.resetLocked()
			return
		}
		if v&CmdHCReset != 0 {
			d.resetLocked()
			return
		}
		s.cmd = v
		if v&CmdEGSM != 0 && (s.ports[0]|s.ports[1])&PortRD != 0 {
			d.resumeLocked()
		}
	case RegStatus:
		s.status &^= v
		if v&StsUSBInt != 0 {
			s.status2 = 0
		}
		d.updateIRQLocked()
	case RegIntr:
		s.intr = v
		d.updateIRQLocked()
	case RegFrnum:
		if s.status&StsHalted != 0 {
			s.frnum = v & 0x7ff
		}
	case RegFLBase:
		s.flbase = s.flbase&0xffff0000 | uint32(v)&^0xfff
	case RegFLBase + 2:
		s.flbase = s.flbase&0xffff | uint32(v)<<16
	case RegSOF:
		s.sof = uint8(v)
	default:
		if off < RegPortSC1 {
			return
		}
		n := (off >> 1) & 7
		if n >= NumPorts {
			return
		}
		p := &s.ports[n]
		if dev := d.devs[n]; dev != nil && v&PortReset != 0 && *p&PortReset == 0 {
			dev.BusReset()
		}
		*p &= portRO
		if *p&PortCCS == 0 {
			v &^= PortEN // enabled only with a device connected
		}
		*p |= v &^ portRO
		*p &^= v & portWC
	}
}

// --- the frame timer

func (d *Controller) startTimerLocked() {
	d.st.lastRun = d.clk.Now()
	d.armLocked()
}

func (d *Controller) armLocked() {
	d.running = true
	if d.closed || d.paused {
		return
	}
	if d.timer == nil {
		d.timer = d.clk.AfterFunc(FrameTime, d.tick)
	} else {
		d.timer.Reset(FrameTime)
	}
}

func (d *Controller) stopTimerLocked() {
	d.running = false
	if d.timer != nil {
		d.timer.Stop()
	}
}

// tick runs the frames due since the last one (QEMU uhci_frame_timer:
// late wake-ups catch up a bounded number of frames and skip the rest).
func (d *Controller) tick() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.running || d.paused || d.closed {
		return
	}
	s := &d.st
	if s.cmd&CmdRS == 0 {
		d.running = false
		s.status |= StsHalted
		return
	}
	now := d.clk.Now()
	frames := int64((now - s.lastRun) / FrameTime)
	if frames > maxCatchUp {
		skip := frames - maxCatchUp
		s.lastRun += time.Duration(skip) * FrameTime
		s.frnum = uint16((int64(s.frnum) + skip) & 0x7ff)
		frames = maxCatchUp
	}
	frames = min(frames, maxPerTick)
	for range frames {
		if s.cmd&CmdRS == 0 {
			break
		}
		d.frameLocked()
		// The frame number counts the frame being processed; the guest
		// looks at frnum-1 after an interrupt (QEMU).
		s.frnum = (s.frnum + 1) & 0x7ff
		s.lastRun += FrameTime
	}
	if s.pending != 0 {
		s.status2 |= s.pending
		s.status |= StsUSBInt
		s.pending = 0
	}
	d.updateIRQLocked()
	if s.cmd&CmdRS == 0 {
		d.running = false
		s.status |= StsHalted
		return
	}
	d.armLocked()
}

// RunFrame processes one frame now, as the frame timer does, whether or
// not the timer runs (tests and fuzzing drive the schedule with it). It
// does nothing unless the controller is running.
func (d *Controller) RunFrame() {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := &d.st
	if s.cmd&CmdRS == 0 || d.paused || d.closed {
		return
	}
	d.frameLocked()
	s.frnum = (s.frnum + 1) & 0x7ff
	if s.pending != 0 {
		s.status2 |= s.pending
		s.status |= StsUSBInt
		s.pending = 0
	}
	d.updateIRQLocked()
}

// Pause implements devices.Pauser: once it returns no frame runs (no
// guest memory access, no interrupt) until Resume.
func (d *Controller) Pause() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.paused = true
	if d.timer != nil {
		d.timer.Stop()
	}
}

// Resume implements devices.Pauser: a running controller goes on from
// now (the frames of the pause are not made up, as QEMU's virtual clock
// stops with the VM).
func (d *Controller) Resume() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.paused {
		return
	}
	d.paused = false
	if d.running {
		d.st.lastRun = d.clk.Now()
		d.armLocked()
	}
}

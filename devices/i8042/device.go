package i8042

import (
	"fmt"
	"sync"

	"godm/devices"
	"godm/irq"
)

// ResetRequester receives the controller's CPU reset pulse (command 0xfe,
// or an output-port write with bit 0 clear): the guest asked for a
// reboot. RequestReset is called with the controller's mutex held; it must
// not block or call back into the controller.
type ResetRequester interface {
	RequestReset()
}

// ResetFunc adapts a function to ResetRequester.
type ResetFunc func()

// RequestReset implements ResetRequester.
func (f ResetFunc) RequestReset() { f() }

// Config wires a Controller. The zero value is usable (no interrupts, and
// reset requests are only counted).
type Config struct {
	// KeyboardIRQ is ISA IRQ 1; nil means none.
	KeyboardIRQ irq.Line
	// MouseIRQ is ISA IRQ 12; nil means none.
	MouseIRQ irq.Line
	// Reset receives reset requests; nil means none.
	Reset ResetRequester
}

// Stats are the controller's counters.
type Stats struct {
	// ResetRequests counts reset pulses the guest issued.
	ResetRequests uint64
	// UnknownCommands counts controller commands it ignored.
	UnknownCommands uint64
}

// Controller is the i8042 with its keyboard and mouse. It implements
// devices.Handler for both ports (the port is taken from Access.Addr, so
// register the same Controller at 0x60 and 0x64, as Register does) and
// devices.Resetter.
type Controller struct {
	kbdLine, mouseLine irq.Line
	resetReq           ResetRequester

	mu                    sync.Mutex
	status, mode, outport uint8 // +checklocks:mu
	writeCmd              uint8
	pending               uint8
	obsrc, obdata, cbdata uint8
	kbd                   keyboard
	mouse                 mouse
	kbdLevel, mouseLevel  bool
	stats                 Stats
	paused                bool // Pause: lines hold their levels, host input is dropped
}

var (
	_ devices.Handler  = (*Controller)(nil)
	_ devices.Resetter = (*Controller)(nil)
)

// New returns a controller in its reset state.
func New(cfg Config) *Controller {
	c := &Controller{kbdLine: cfg.KeyboardIRQ, mouseLine: cfg.MouseIRQ, resetReq: cfg.Reset}
	c.kbd.q.irq = c.kbdIRQ
	c.mouse.q.irq = c.auxIRQ
	c.mu.Lock()
	c.resetLocked()
	c.mu.Unlock()
	return c
}

// Register registers c at DataPort and StatusPort in the port I/O space.
func Register(pio *devices.Space, c *Controller) error {
	if err := pio.Register(DataPort, 1, c); err != nil {
		return fmt.Errorf("i8042: register port %#x: %w", DataPort, err)
	}
	if err := pio.Register(StatusPort, 1, c); err != nil {
		pio.Unregister(DataPort)
		return fmt.Errorf("i8042: register port %#x: %w", StatusPort, err)
	}
	return nil
}

// Reset implements devices.Resetter: controller, keyboard and mouse
// return to their power-on state and both lines drop.
func (c *Controller) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resetLocked()
}

// +checklocks:c.mu
func (c *Controller) resetLocked() {
	c.kbd.reset()
	c.mouse.reset()
	c.mode = resetMode
	c.status = resetStatus
	c.outport = resetOutport
	c.writeCmd = 0
	c.pending = 0
	c.obsrc, c.obdata, c.cbdata = 0, 0, 0
	c.deassertLocked()
}

// Stats returns a snapshot of the counters.
func (c *Controller) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Read implements devices.Handler. Only the low byte carries data; the
// ports are byte wide.
func (c *Controller) Read(a devices.Access) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var v uint8
	if a.Addr&4 != 0 {
		v = c.status
	} else {
		v = c.readDataLocked()
	}
	return uint64(v)
}

// Write implements devices.Handler; the low byte is written.
func (c *Controller) Write(a devices.Access, v uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if a.Addr&4 != 0 {
		c.writeCommandLocked(uint8(v))
	} else {
		c.writeDataLocked(uint8(v))
	}
}

// devPending is what may fill the output buffer: a disabled port's own
// data waits (pckbd.c kbd_pending).
//
// +checklocks:c.mu
func (c *Controller) devPendingLocked() uint8 {
	return c.pending &^ (c.mode & (pendKbd | pendAux))
}

// updateLinesLocked drives IRQ 1 and 12 from the output buffer state and
// the command byte's interrupt enables.
//
// +checklocks:c.mu
func (c *Controller) updateLinesLocked() {
	kbd, aux := false, false
	if c.status&statOBF != 0 {
		if c.status&statMouseOBF != 0 {
			aux = c.mode&modeMouseInt != 0
		} else {
			kbd = c.mode&modeKbdInt != 0 && c.mode&modeDisableKbd == 0
		}
	}
	if kbd != c.kbdLevel {
		c.kbdLevel = kbd
		if c.kbdLine != nil && !c.paused {
			c.kbdLine.SetLevel(kbd)
		}
	}
	if aux != c.mouseLevel {
		c.mouseLevel = aux
		if c.mouseLine != nil && !c.paused {
			c.mouseLine.SetLevel(aux)
		}
	}
}

// +checklocks:c.mu
func (c *Controller) deassertLocked() {
	c.status &^= statOBF | statMouseOBF
	c.outport &^= outOBF | outMouseOBF
	c.updateLinesLocked()
}

// fillLocked loads the output buffer from the highest-priority pending
// source: controller reply, then keyboard, then mouse.
//
// +checklocks:c.mu
func (c *Controller) fillLocked() {
	p := c.devPendingLocked()
	c.status &^= statOBF | statMouseOBF
	c.outport &^= outOBF | outMouseOBF
	if p != 0 {
		c.status |= statOBF
		c.outport |= outOBF
		switch {
		case p&pendCtrlKbd != 0:
			c.obsrc = srcCtrl
		case p&pendCtrlAux != 0:
			c.status |= statMouseOBF
			c.outport |= outMouseOBF
			c.obsrc = srcCtrl
		case p&pendKbd != 0:
			c.obsrc = srcKbd
		default:
			c.status |= statMouseOBF
			c.outport |= outMouseOBF
			c.obsrc = srcMouse
		}
	}
	c.updateLinesLocked()
}

// safeFillLocked fills the output buffer only if it is empty.
//
// +checklocks:c.mu
func (c *Controller) safeFillLocked() {
	if c.status&statOBF != 0 {
		return
	}
	if c.devPendingLocked() != 0 {
		c.fillLocked()
	}
}

// kbdIRQ and auxIRQ are the PS/2 devices' requests (called with c.mu
// held, from the queues).
func (c *Controller) kbdIRQ(high bool) { c.devIRQLocked(pendKbd, high) }
func (c *Controller) auxIRQ(high bool) { c.devIRQLocked(pendAux, high) }

// +checklocks:c.mu
func (c *Controller) devIRQLocked(bit uint8, high bool) {
	if high {
		c.pending |= bit
	} else {
		c.pending &^= bit
	}
	c.safeFillLocked()
}

// queueLocked puts a controller-generated byte in the controller's own
// one-byte buffer (a newer reply replaces an unread one).
//
// +checklocks:c.mu
func (c *Controller) queueLocked(b uint8, aux bool) {
	c.cbdata = b
	c.pending &^= pendCtrlKbd | pendCtrlAux
	if aux {
		c.pending |= pendCtrlAux
	} else {
		c.pending |= pendCtrlKbd
	}
	c.safeFillLocked()
}

// +checklocks:c.mu
func (c *Controller) readDataLocked() uint8 {
	if c.status&statOBF == 0 {
		return c.obdata // reading an empty buffer returns the last byte
	}
	c.deassertLocked()
	switch c.obsrc {
	case srcKbd:
		c.obdata = c.kbd.q.read()
	case srcMouse:
		c.obdata = c.mouse.q.read()
	case srcCtrl:
		c.obdata = c.cbdata
		c.pending &^= pendCtrlKbd | pendCtrlAux
		if c.devPendingLocked() != 0 {
			c.fillLocked()
		}
	}
	return c.obdata
}

// +checklocks:c.mu
func (c *Controller) writeCommandLocked(v uint8) {
	// 0xf0-0xff pulse the output-port bits 3-0 that are 0 in the
	// command; only bit 0 (CPU reset) matters.
	if v&cmdPulseMask == cmdPulseMask {
		if v&1 == 0 {
			v = cmdReset
		} else {
			v = cmdNop
		}
	}
	switch v {
	case cmdReadMode:
		c.queueLocked(c.mode, false)
	case cmdWriteMode, cmdWriteObuf, cmdWriteAuxObuf, cmdWriteMouse, cmdWriteOutport:
		c.writeCmd = v
	case cmdMouseDisable:
		c.mode |= modeDisableMouse
	case cmdMouseEnable:
		c.mode &^= modeDisableMouse
		c.safeFillLocked()
	case cmdTestMouse, cmdTestKbd:
		c.queueLocked(0x00, false) // 0 = interface OK
	case cmdSelfTest:
		c.status |= statSelfTest
		c.queueLocked(0x55, false)
	case cmdKbdDisable:
		c.mode |= modeDisableKbd
	case cmdKbdEnable:
		c.mode &^= modeDisableKbd
		c.safeFillLocked()
	case cmdReadInport:
		c.queueLocked(0x80, false) // keyboard not inhibited
	case cmdReadOutport:
		c.queueLocked(c.outport, false)
	case cmdEnableA20:
		c.outport |= outA20
	case cmdDisableA20:
		c.outport &^= outA20
	case cmdReset:
		c.requestResetLocked()
	case cmdNop:
	default:
		c.stats.UnknownCommands++
	}
}

// +checklocks:c.mu
func (c *Controller) writeDataLocked(v uint8) {
	switch c.writeCmd {
	case 0:
		c.kbd.write(v)
		// Sending to the keyboard re-enables its interface.
		c.mode &^= modeDisableKbd
		c.safeFillLocked()
	case cmdWriteMode:
		c.mode = v
		c.kbd.translate = v&modeKCC != 0
		c.updateLinesLocked()
		c.safeFillLocked()
	case cmdWriteObuf:
		c.queueLocked(v, false)
	case cmdWriteAuxObuf:
		c.queueLocked(v, true)
	case cmdWriteOutport:
		// A20 is always on in an HVM guest; the bit is only stored.
		c.outport = v
		if v&outReset == 0 {
			c.requestResetLocked()
		}
	case cmdWriteMouse:
		c.mouse.write(v)
		c.mode &^= modeDisableMouse
		c.safeFillLocked()
	}
	c.writeCmd = 0
}

// +checklocks:c.mu
func (c *Controller) requestResetLocked() {
	c.stats.ResetRequests++
	if c.resetReq != nil {
		c.resetReq.RequestReset()
	}
}

// PutScancodes queues keyboard bytes in the keyboard's current scan code
// set (set 2 unless the guest chose another), as a key press or release
// produces them; the controller translates them to set 1 when the command
// byte asks for it. Nothing is queued while the guest has disabled
// scanning. Bytes beyond the keyboard's 16-byte queue are dropped.
func (c *Controller) PutScancodes(codes []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.kbd.scanEnabled || c.paused {
		return
	}
	for _, b := range codes {
		c.kbd.put(b)
	}
}

// MouseEvent reports relative motion (dx right, dy down as a host reports
// it; PS/2 counts up as positive), wheel steps dz (positive scrolls down,
// as QEMU's wheel-down; sent only to IntelliMouse-mode guests) and the
// button state
// (bit 0 left, 1 right, 2 middle, 3 side, 4 extra). It is ignored while
// the guest has not enabled reporting; in stream mode packets are queued
// at once (several if the motion exceeds one packet's range).
func (c *Controller) MouseEvent(dx, dy, dz int, buttons uint8) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := &c.mouse
	if m.status&mouseEnabled == 0 || c.paused {
		return
	}
	m.dx += dx
	m.dy -= dy
	m.dz += dz
	m.buttons = buttons
	if m.status&mouseRemote != 0 {
		return
	}
	for m.sendPacket() {
		if m.dx == 0 && m.dy == 0 && m.dz == 0 && m.dw == 0 {
			break
		}
	}
}

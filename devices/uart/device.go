package uart

import (
	"sync"
	"time"

	"godm/devices"
	"godm/devices/chardev"
	"godm/irq"
)

// Config configures a UART. The zero value is usable: no interrupt line, a
// null backend, the system clock and the standard 1.8432 MHz clock.
type Config struct {
	// IRQ is the interrupt line (ISA IRQ 4 for COM1); nil means none.
	IRQ irq.Line
	// Backend carries the serial line to the host; nil means a null
	// backend. The UART attaches itself as the backend's Sink.
	Backend chardev.Backend
	// Clock drives the character timeout; nil means SystemClock.
	Clock Clock
	// BaudBase is the input clock divided by 16; zero means
	// DefaultBaudBase.
	BaudBase uint32
}

// Stats are the UART's counters.
type Stats struct {
	// Transmitted counts bytes handed to the backend.
	Transmitted uint64
	// TxDropped counts bytes the backend's queue refused.
	TxDropped uint64
	// Received counts bytes taken from the backend into the receiver.
	Received uint64
	// Overruns counts receive overruns (LSR.OE events).
	Overruns uint64
}

// UART is one 16550A. It implements devices.Handler (offsets 0..7, any
// access size: wider accesses act as consecutive byte accesses, as QEMU's
// byte-only region does) and devices.Resetter.
type UART struct {
	backend  chardev.Backend
	line     irq.Line
	clock    Clock
	baudBase uint32

	mu sync.Mutex
	// Registers. iir keeps the FIFO bits (6-7) and the current ID.
	rbr, ier, iir, lcr, mcr, lsr, msr, scr, fcr uint8 // +checklocks:mu
	divisor                                     uint16
	// rx is the receive FIFO as a ring.
	rx              [fifoLen]byte
	rxHead, rxCount int
	itl             int  // receive trigger level in bytes
	thrIPending     bool // THRE interrupt latched (cleared by IIR read / THR write)
	timeoutIPending bool // character timeout latched
	irqLevel        bool
	charTime        time.Duration
	timer           Timer
	timeoutArmed    bool
	timeoutAt       time.Duration
	modemIn         uint8 // host-driven CTS/DSR/RI/DCD (MSR bits 4-7)
	txByte          [1]byte
	stats           Stats
	closed          bool
	paused          bool // Pause: the line holds its level, input waits
}

var (
	_ devices.Handler  = (*UART)(nil)
	_ devices.Resetter = (*UART)(nil)
	_ chardev.Sink     = (*UART)(nil)
)

// New returns a UART in its reset state, attached to cfg.Backend.
func New(cfg Config) *UART {
	u := &UART{
		backend:  cfg.Backend,
		line:     cfg.IRQ,
		clock:    cfg.Clock,
		baudBase: cfg.BaudBase,
		modemIn:  resetMSR,
	}
	if u.backend == nil {
		u.backend = chardev.NewNull()
	}
	if u.clock == nil {
		u.clock = SystemClock()
	}
	if u.baudBase == 0 {
		u.baudBase = DefaultBaudBase
	}
	u.timer = u.clock.AfterFunc(time.Hour, u.timeoutFired)
	u.timer.Stop()
	u.mu.Lock()
	u.resetLocked()
	u.mu.Unlock()
	u.backend.Attach(u)
	return u
}

// Close detaches the UART from its backend and stops its timer. The
// backend is not closed. Guest accesses after Close still work (output is
// dropped).
func (u *UART) Close() error {
	u.backend.Attach(nil)
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closed = true
	u.timer.Stop()
	u.timeoutArmed = false
	return nil
}

// Reset implements devices.Resetter: the power-on state of QEMU's
// serial_reset (divisor 12, MCR=OUT2, LSR=THRE|TEMT, MSR from the modem
// inputs), with the FIFOs off and empty.
func (u *UART) Reset() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.resetLocked()
	u.backend.Ready()
}

// +checklocks:u.mu
func (u *UART) resetLocked() {
	u.rbr, u.ier, u.iir, u.lcr, u.scr, u.fcr = 0, 0, iirNoInt, 0, 0, 0
	u.mcr = resetMCR
	u.lsr = lsrTEMT | lsrTHRE
	u.msr = u.modemIn & 0xf0
	u.divisor = resetDivisor
	u.rxHead, u.rxCount, u.itl = 0, 0, 1
	u.thrIPending, u.timeoutIPending = false, false
	u.timer.Stop()
	u.timeoutArmed = false
	// QEMU's serial_reset assumes 8N1 frames (10 bits) at the reset
	// divisor until the guest writes LCR or the divisor.
	u.charTime = time.Second / time.Duration(u.baudBase/resetDivisor) * 10
	u.setIRQLocked(false)
}

// Stats returns a snapshot of the counters.
func (u *UART) Stats() Stats {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.stats
}

// Read implements devices.Handler.
func (u *UART) Read(a devices.Access) uint64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	var v uint64
	for i := uint64(0); i < uint64(a.Size) && i < 8; i++ {
		v |= uint64(u.readLocked(a.Offset+i)) << (8 * i)
	}
	return v
}

// Write implements devices.Handler.
func (u *UART) Write(a devices.Access, v uint64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for i := uint64(0); i < uint64(a.Size) && i < 8; i++ {
		u.writeLocked(a.Offset+i, uint8(v>>(8*i)))
	}
}

// +checklocks:u.mu
func (u *UART) readLocked(off uint64) uint8 {
	switch off {
	case regRBR:
		if u.lcr&lcrDLAB != 0 {
			return uint8(u.divisor)
		}
		return u.readRBRLocked()
	case regIER:
		if u.lcr&lcrDLAB != 0 {
			return uint8(u.divisor >> 8)
		}
		return u.ier
	case regIIR:
		v := u.iir
		// Reading IIR while it reports THRE clears that source
		// (datasheet, interrupt control table: THRE is reset by reading IIR
		// when it is the source, or by writing THR).
		if v&iirIDMask == iirTHRI {
			u.thrIPending = false
			u.updateIRQLocked()
		}
		return v
	case regLCR:
		return u.lcr
	case regMCR:
		return u.mcr
	case regLSR:
		v := u.lsr
		// Reading LSR clears the error bits; QEMU clears BI and OE
		// (the only ones it ever sets).
		if u.lsr&(lsrBI|lsrOE) != 0 {
			u.lsr &^= lsrBI | lsrOE
			u.updateIRQLocked()
		}
		return v
	case regMSR:
		if u.mcr&mcrLoop != 0 {
			// Loopback: DTR→DSR, RTS→CTS, OUT1→RI, OUT2→DCD
			// (datasheet, MCR bit 4; QEMU serial_ioport_read).
			return (u.mcr&(mcrOUT1|mcrOUT2))<<4 | (u.mcr&mcrRTS)<<3 | (u.mcr&mcrDTR)<<5
		}
		v := u.msr
		if u.msr&msrAnyDelta != 0 {
			u.msr &= 0xf0
			u.updateIRQLocked()
		}
		return v
	case regSCR:
		return u.scr
	}
	return 0xff // beyond the 8 registers: unassigned
}

// +checklocks:u.mu
func (u *UART) readRBRLocked() uint8 {
	var v uint8
	if u.fcr&fcrFE != 0 {
		if u.rxCount > 0 {
			v = u.rx[u.rxHead]
			u.rxHead = (u.rxHead + 1) % fifoLen
			u.rxCount--
		}
		if u.rxCount == 0 {
			u.lsr &^= lsrDR | lsrBI
		} else {
			u.armTimeoutLocked()
		}
		u.timeoutIPending = false
	} else {
		v = u.rbr
		u.lsr &^= lsrDR | lsrBI
	}
	u.updateIRQLocked()
	if u.mcr&mcrLoop == 0 {
		u.backend.Ready()
	}
	return v
}

// +checklocks:u.mu
func (u *UART) writeLocked(off uint64, v uint8) {
	switch off {
	case regRBR:
		if u.lcr&lcrDLAB != 0 {
			u.divisor = u.divisor&0xff00 | uint16(v)
			u.updateParamsLocked()
			return
		}
		u.writeTHRLocked(v)
	case regIER:
		if u.lcr&lcrDLAB != 0 {
			u.divisor = u.divisor&0x00ff | uint16(v)<<8
			u.updateParamsLocked()
			return
		}
		changed := (u.ier ^ v) & ierMask
		u.ier = v & ierMask
		// Enabling the THRE interrupt while THR is empty raises it
		// even if it had been cleared by an IIR read (not in the
		// datasheet; Windows depends on it; QEMU serial.c).
		if changed&ierTHRI != 0 {
			u.thrIPending = u.ier&ierTHRI != 0 && u.lsr&lsrTHRE != 0
		}
		if changed != 0 {
			u.updateIRQLocked()
		}
	case regIIR: // FCR
		u.writeFCRLocked(v)
	case regLCR:
		u.lcr = v
		u.updateParamsLocked()
	case regMCR:
		old := u.mcr
		u.mcr = v & mcrMask
		if old&mcrLoop != 0 && u.mcr&mcrLoop == 0 {
			u.backend.Ready() // input is connected again
		}
	case regLSR, regMSR:
		// Read-only (the datasheet calls writes to LSR "for factory
		// test"; QEMU ignores them).
	case regSCR:
		u.scr = v
	}
}

// +checklocks:u.mu
func (u *UART) writeTHRLocked(v uint8) {
	// The byte enters THR (or the transmit FIFO) and leaves at once: the
	// sequence of flag changes, and so of interrupt edges, is the one of
	// QEMU's serial_ioport_write + serial_xmit.
	u.thrIPending = false
	u.lsr &^= lsrTHRE | lsrTEMT
	u.updateIRQLocked()

	u.lsr |= lsrTHRE
	u.thrIPending = true
	u.updateIRQLocked()
	if u.mcr&mcrLoop != 0 {
		u.receiveByteLocked(v)
	} else {
		u.txByte[0] = v
		if u.backend.Write(u.txByte[:]) == 1 {
			u.stats.Transmitted++
		} else {
			u.stats.TxDropped++
		}
	}
	u.lsr |= lsrTEMT
}

// +checklocks:u.mu
func (u *UART) writeFCRLocked(v uint8) {
	// Toggling FE clears both FIFOs (datasheet FCR bit 0).
	if (v^u.fcr)&fcrFE != 0 {
		v |= fcrXFR | fcrRFR
	}
	if v&fcrRFR != 0 {
		u.lsr &^= lsrDR | lsrBI
		u.timer.Stop()
		u.timeoutArmed = false
		u.timeoutIPending = false
		u.rxHead, u.rxCount = 0, 0
		u.backend.Ready()
	}
	if v&fcrXFR != 0 {
		// The transmit FIFO is always empty here (instant transmit);
		// QEMU still re-latches the THRE interrupt.
		u.lsr |= lsrTHRE
		u.thrIPending = true
	}
	u.fcr = v & fcrSticky
	if u.fcr&fcrFE != 0 {
		u.iir |= iirFIFO
		u.itl = [4]int{1, 4, 8, 14}[u.fcr>>6]
	} else {
		u.iir &^= iirFIFO
	}
	u.updateIRQLocked()
}

// updateParamsLocked recomputes the time of one character frame from the
// divisor and LCR (start + data + parity + stop bits), as QEMU does; a
// zero or too large divisor keeps the previous value.
//
// +checklocks:u.mu
func (u *UART) updateParamsLocked() {
	if u.divisor == 0 || uint32(u.divisor) > u.baudBase {
		return
	}
	frame := 1 + int(u.lcr&lcrWLS) + 5
	if u.lcr&lcrParity != 0 {
		frame++
	}
	if u.lcr&lcrStop2 != 0 {
		frame += 2
	} else {
		frame++
	}
	speed := u.baudBase / uint32(u.divisor)
	u.charTime = time.Duration(int64(time.Second)/int64(speed)) * time.Duration(frame)
}

// updateIRQLocked recomputes IIR from the pending sources in priority
// order (datasheet, interrupt control table; CTI is masked by IER.RDI as on real parts)
// and drives the line.
//
// +checklocks:u.mu
func (u *UART) updateIRQLocked() {
	id := uint8(iirNoInt)
	switch {
	case u.ier&ierRLSI != 0 && u.lsr&lsrIntAny != 0:
		id = iirRLSI
	case u.ier&ierRDI != 0 && u.timeoutIPending:
		id = iirCTI
	case u.ier&ierRDI != 0 && u.lsr&lsrDR != 0 && (u.fcr&fcrFE == 0 || u.rxCount >= u.itl):
		id = iirRDI
	case u.ier&ierTHRI != 0 && u.thrIPending:
		id = iirTHRI
	case u.ier&ierMSI != 0 && u.msr&msrAnyDelta != 0:
		id = iirMSI
	}
	u.iir = id | u.iir&0xf0
	u.setIRQLocked(id != iirNoInt)
}

// +checklocks:u.mu
func (u *UART) setIRQLocked(high bool) {
	if high == u.irqLevel {
		return
	}
	u.irqLevel = high
	if u.line != nil && !u.paused {
		u.line.SetLevel(high)
	}
}

// Receive implements chardev.Sink: it moves input into the receiver,
// taking no more than QEMU's serial_can_receive would (up to the trigger
// level, then one byte at a time) so that the guest sees trigger-level
// interrupts rather than a FIFO filled in one go.
func (u *UART) Receive(p []byte) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed || u.paused || u.mcr&mcrLoop != 0 {
		return 0 // loopback disconnects the serial input; Resume asks again
	}
	n := 0
	for n < len(p) && u.canReceiveLocked() > 0 {
		u.receiveByteLocked(p[n])
		n++
	}
	return n
}

// +checklocks:u.mu
func (u *UART) canReceiveLocked() int {
	if u.fcr&fcrFE == 0 {
		if u.lsr&lsrDR != 0 {
			return 0
		}
		return 1
	}
	if u.rxCount >= fifoLen {
		return 0
	}
	if u.rxCount <= u.itl {
		return u.itl - u.rxCount
	}
	return 1
}

// receiveByteLocked is serial_receive1 for one byte.
//
// +checklocks:u.mu
func (u *UART) receiveByteLocked(b uint8) {
	u.stats.Received++
	if u.fcr&fcrFE != 0 {
		if u.rxCount < fifoLen {
			u.rx[(u.rxHead+u.rxCount)%fifoLen] = b
			u.rxCount++
		} else {
			// Overruns do not overwrite the FIFO (datasheet LSR bit 1).
			u.lsr |= lsrOE
			u.stats.Overruns++
		}
		u.lsr |= lsrDR
		u.armTimeoutLocked()
	} else {
		if u.lsr&lsrDR != 0 {
			u.lsr |= lsrOE
			u.stats.Overruns++
		}
		u.rbr = b
		u.lsr |= lsrDR
	}
	u.updateIRQLocked()
}

// armTimeoutLocked (re)starts the character timeout: four character times
// after the last FIFO activity (datasheet: "no characters have been
// removed from or input to the RCVR FIFO during the last 4 character
// times").
//
// +checklocks:u.mu
func (u *UART) armTimeoutLocked() {
	if u.closed {
		return
	}
	d := 4 * u.charTime
	u.timeoutAt = u.clock.Now() + d
	u.timeoutArmed = true
	u.timer.Reset(d)
}

func (u *UART) timeoutFired() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.timeoutArmed || u.clock.Now() < u.timeoutAt {
		return // stale: re-armed or stopped after this firing was due
	}
	u.timeoutArmed = false
	if u.rxCount > 0 {
		u.timeoutIPending = true
		u.updateIRQLocked()
	}
}

// SendBreak makes the receiver see a break condition: a NUL byte with
// LSR.BI (QEMU serial_receive_break).
func (u *UART) SendBreak() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.rbr = 0
	if u.fcr&fcrFE != 0 {
		if u.rxCount < fifoLen {
			u.rx[(u.rxHead+u.rxCount)%fifoLen] = 0
			u.rxCount++
		} else {
			u.lsr |= lsrOE
			u.stats.Overruns++
		}
	}
	u.lsr |= lsrBI | lsrDR
	u.updateIRQLocked()
}

// ModemLines are the modem status inputs driven by the host side.
type ModemLines struct {
	CTS, DSR, RI, DCD bool
}

// SetModemLines drives the modem status inputs; changes set the MSR delta
// bits (TERI only on a RI 1→0 edge) and may raise the modem-status
// interrupt.
func (u *UART) SetModemLines(m ModemLines) {
	var in uint8
	if m.CTS {
		in |= msrCTS
	}
	if m.DSR {
		in |= msrDSR
	}
	if m.RI {
		in |= msrRI
	}
	if m.DCD {
		in |= msrDCD
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.modemIn = in
	old := u.msr
	if old&0xf0 == in {
		return
	}
	delta := (old ^ in) >> 4
	if in&msrRI != 0 || old&msrRI == 0 {
		delta &^= msrTERI // trailing edge only
	}
	u.msr = in | old&msrAnyDelta | delta
	u.updateIRQLocked()
}

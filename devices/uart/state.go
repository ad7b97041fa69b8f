package uart

import (
	"fmt"
	"slices"
	"time"

	"godm/devices"
	"godm/devices/savestate"
)

// StateVersion is the version of the UART's snapshot record.
const StateVersion = 1

// RecordName names the UART's records.
const RecordName = "16550A"

var _ devices.Snapshotter = (*UART)(nil)

// Snapshot implements devices.Snapshotter: the registers, the receive
// FIFO's contents in order, the trigger level, the latched THRE and
// timeout conditions, whether the character timeout runs, and the
// character time. The host-driven modem inputs and the counters are the
// host's and are not saved.
func (u *UART) Snapshot() ([]byte, error) {
	var w savestate.Writer
	u.mu.Lock()
	for _, r := range []uint8{u.rbr, u.ier, u.iir, u.lcr, u.mcr, u.lsr, u.msr, u.scr, u.fcr} {
		w.U8(r)
	}
	w.U16(u.divisor)
	fifo := make([]byte, u.rxCount)
	for i := range fifo {
		fifo[i] = u.rx[(u.rxHead+i)%fifoLen]
	}
	w.Bytes(fifo)
	w.U8(uint8(u.itl))
	w.Bool(u.thrIPending)
	w.Bool(u.timeoutIPending)
	w.Bool(u.timeoutArmed)
	w.U64(uint64(u.charTime))
	u.mu.Unlock()
	return savestate.Record(RecordName, StateVersion, w.Out()), nil
}

// Restore implements devices.Snapshotter. A running character timeout
// starts again from its full length.
func (u *UART) Restore(b []byte) error {
	_, r, err := savestate.Open(b, RecordName, StateVersion)
	if err != nil {
		return err
	}
	var regs [9]uint8
	for i := range regs {
		regs[i] = r.U8()
	}
	div := r.U16()
	fifo := r.Bytes(fifoLen)
	itl := int(r.U8())
	thri, toi, armed := r.Bool(), r.Bool(), r.Bool()
	ct := time.Duration(r.U64())
	if !slices.Contains([]int{1, 4, 8, 14}, itl) || ct <= 0 || ct > time.Second {
		r.Fail(fmt.Errorf("trigger level %d, character time %v: %w", itl, ct, savestate.ErrFormat))
	}
	if err := r.Done(); err != nil {
		return fmt.Errorf("uart: restore: %w", err)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.rbr, u.ier, u.iir, u.lcr = regs[0], regs[1]&ierMask, regs[2], regs[3]
	u.mcr, u.lsr, u.msr, u.scr, u.fcr = regs[4]&mcrMask, regs[5], regs[6], regs[7], regs[8]&fcrSticky
	u.divisor = div
	u.rxHead, u.rxCount = 0, copy(u.rx[:], fifo)
	u.itl, u.thrIPending, u.timeoutIPending, u.charTime = itl, thri, toi, ct
	u.timer.Stop()
	u.timeoutArmed = false
	if armed {
		u.armTimeoutLocked()
	}
	u.updateIRQLocked()
	return nil
}

var _ devices.Pauser = (*UART)(nil)

// Pause implements devices.Pauser: the interrupt line keeps its level
// (changes wait for Resume) and the backend's input waits, so no host
// input or timeout interrupts a paused machine.
func (u *UART) Pause() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.paused = true
}

// Resume implements devices.Pauser: the line takes the level the state
// calls for and input flows again.
func (u *UART) Resume() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.paused {
		return
	}
	u.paused = false
	if u.line != nil {
		u.line.SetLevel(u.irqLevel)
	}
	u.backend.Ready()
}

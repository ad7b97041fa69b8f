package i8042

import (
	"fmt"

	"godm/devices"
	"godm/devices/savestate"
)

// StateVersion is the version of the controller's snapshot record.
const StateVersion = 1

// RecordName names the controller's records.
const RecordName = "i8042"

var _ devices.Snapshotter = (*Controller)(nil)

func (q *queue) save(w *savestate.Writer) {
	w.Bytes(q.reply[q.replyHead:q.nRepl])
	data := make([]byte, q.n)
	for i := range data {
		data[i] = q.data[(q.head+i)%queueSize]
	}
	w.Bytes(data)
	w.U8(q.last)
}

func (q *queue) load(r *savestate.Reader) {
	rep := r.Bytes(len(q.reply))
	data := r.Bytes(queueSize)
	last := r.U8()
	if r.Err() != nil {
		return
	}
	q.replyHead, q.nRepl = 0, copy(q.reply[:], rep)
	q.head, q.n = 0, copy(q.data[:], data)
	q.last = last
}

func (k *keyboard) save(w *savestate.Writer) {
	k.q.save(w)
	w.U8(k.writeCmd)
	w.Bool(k.scanEnabled)
	w.Bool(k.translate)
	w.U8(k.scancodeSet)
	w.U8(k.leds)
	w.Bool(k.needHighBit)
}

func (k *keyboard) load(r *savestate.Reader) {
	k.q.load(r)
	k.writeCmd, k.scanEnabled, k.translate = r.U8(), r.Bool(), r.Bool()
	k.scancodeSet, k.leds, k.needHighBit = r.U8(), r.U8(), r.Bool()
	if k.scancodeSet < 1 || k.scancodeSet > 3 {
		r.Fail(fmt.Errorf("scan code set %d: %w", k.scancodeSet, savestate.ErrFormat))
	}
}

func (m *mouse) save(w *savestate.Writer) {
	m.q.save(w)
	for _, b := range []byte{m.writeCmd, m.status, m.resolution, m.rate, m.typ, m.detect, m.buttons} {
		w.U8(b)
	}
	w.Bool(m.wrap)
	for _, d := range []int{m.dx, m.dy, m.dz, m.dw} {
		w.U64(uint64(int64(d)))
	}
}

func (m *mouse) load(r *savestate.Reader) {
	m.q.load(r)
	m.writeCmd, m.status, m.resolution, m.rate = r.U8(), r.U8(), r.U8(), r.U8()
	m.typ, m.detect, m.buttons = r.U8(), r.U8(), r.U8()
	m.wrap = r.Bool()
	for _, d := range []*int{&m.dx, &m.dy, &m.dz, &m.dw} {
		v := int64(r.U64())
		// Motion accumulates only as far as host events carry it; bound
		// it like an int32 so that later arithmetic cannot overflow.
		if v < -1<<31 || v >= 1<<31 {
			r.Fail(fmt.Errorf("mouse motion %d: %w", v, savestate.ErrFormat))
		}
		*d = int(v)
	}
}

// Snapshot implements devices.Snapshotter: the controller's registers,
// its own reply byte and pending sources, and the keyboard's and mouse's
// state with their queues. The interrupt lines follow from the rest.
func (c *Controller) Snapshot() ([]byte, error) {
	var w savestate.Writer
	c.mu.Lock()
	for _, b := range []uint8{c.status, c.mode, c.outport, c.writeCmd, c.pending, c.obsrc, c.obdata, c.cbdata} {
		w.U8(b)
	}
	c.kbd.save(&w)
	c.mouse.save(&w)
	c.mu.Unlock()
	return savestate.Record(RecordName, StateVersion, w.Out()), nil
}

// Restore implements devices.Snapshotter.
func (c *Controller) Restore(b []byte) error {
	_, r, err := savestate.Open(b, RecordName, StateVersion)
	if err != nil {
		return err
	}
	var regs [8]uint8
	for i := range regs {
		regs[i] = r.U8()
	}
	var kbd keyboard
	var ms mouse
	kbd.load(r)
	ms.load(r)
	if err := r.Done(); err != nil {
		return fmt.Errorf("i8042: restore: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.status, c.mode, c.outport, c.writeCmd = regs[0], regs[1], regs[2], regs[3]
	c.pending, c.obsrc, c.obdata, c.cbdata = regs[4], regs[5], regs[6], regs[7]
	kbd.q.irq, ms.q.irq = c.kbdIRQ, c.auxIRQ
	c.kbd, c.mouse = kbd, ms
	c.updateLinesLocked()
	return nil
}

var _ devices.Pauser = (*Controller)(nil)

// Pause implements devices.Pauser: host keyboard and mouse input is
// dropped while paused, as QEMU drops input events outside the running
// state (ui/input.c qemu_input_event_send), and the interrupt lines hold
// their levels.
func (c *Controller) Pause() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.paused = true
}

// Resume implements devices.Pauser: the lines take the levels the state
// calls for.
func (c *Controller) Resume() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.paused {
		return
	}
	c.paused = false
	if c.kbdLine != nil {
		c.kbdLine.SetLevel(c.kbdLevel)
	}
	if c.mouseLine != nil {
		c.mouseLine.SetLevel(c.mouseLevel)
	}
}

package display

import "sync"

// PS2Keyboard is what a PS/2 keyboard model accepts: scan code set 2
// bytes (the i8042 translates them for the guest when asked).
type PS2Keyboard interface{ PutScancodes(codes []byte) }

// PS2Mouse is what a PS/2 mouse model accepts: relative motion (dy down),
// wheel steps (positive down) and buttons (bit 0 left, 1 right, 2 middle).
type PS2Mouse interface {
	MouseEvent(dx, dy, dz int, buttons uint8)
}

// PS2Input is an InputSink for a PS/2 keyboard and mouse (the i8042):
// keys become set 2 scan codes; absolute pointer positions become motion
// relative to the previous one (the first event only sets the origin), and
// RFB's wheel buttons become wheel steps on their press. Either device
// may be nil.
type PS2Input struct {
	Keyboard PS2Keyboard
	Mouse    PS2Mouse

	mu      sync.Mutex
	buf     []byte
	x, y    int
	have    bool
	lastBtn uint8
}

// KeyEvent implements InputSink.
func (p *PS2Input) KeyEvent(k Key, down bool) {
	if p.Keyboard == nil {
		return
	}
	p.mu.Lock()
	p.buf = Set2(p.buf[:0], k, down)
	if len(p.buf) > 0 {
		p.Keyboard.PutScancodes(p.buf)
	}
	p.mu.Unlock()
}

// PointerEvent implements InputSink.
func (p *PS2Input) PointerEvent(x, y, w, h int, mask uint8) {
	if p.Mouse == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	dx, dy := 0, 0
	if p.have {
		dx, dy = x-p.x, y-p.y
	}
	p.x, p.y, p.have = x, y, true
	dz := 0
	pressed := mask &^ p.lastBtn
	if pressed&0x08 != 0 { // wheel up
		dz--
	}
	if pressed&0x10 != 0 { // wheel down
		dz++
	}
	p.lastBtn = mask
	// RFB: bit 0 left, 1 middle, 2 right; PS/2: bit 0 left, 1 right, 2 middle.
	btn := mask&1 | (mask&4)>>1 | (mask&2)<<1
	p.Mouse.MouseEvent(dx, dy, dz, btn)
}

// PointerSink takes absolute pointer events (InputSink's PointerEvent):
// a USB tablet.
type PointerSink interface {
	PointerEvent(x, y, w, h int, buttons uint8)
}

// SplitInput sends key events to Keys and pointer events to Pointer (a
// tablet beside the PS/2 keyboard, as QEMU routes absolute pointer events
// to the tablet). A nil member drops its events.
type SplitInput struct {
	Keys    InputSink
	Pointer PointerSink
}

// KeyEvent implements InputSink.
func (s SplitInput) KeyEvent(k Key, down bool) {
	if s.Keys != nil {
		s.Keys.KeyEvent(k, down)
	}
}

// PointerEvent implements InputSink.
func (s SplitInput) PointerEvent(x, y, w, h int, buttons uint8) {
	if s.Pointer != nil {
		s.Pointer.PointerEvent(x, y, w, h, buttons)
	}
}

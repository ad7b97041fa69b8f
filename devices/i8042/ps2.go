package i8042

// queueSize is the PS/2 device's output queue as QEMU sizes it
// (hw/input/ps2.c PS2_QUEUE_SIZE): scan codes and mouse packets beyond it
// are dropped.
const queueSize = 16

// queue is a PS/2 device's output: a small batch of command replies that
// is read first (a keyboard answers a command ahead of queued scan codes;
// QEMU ps2.c "cqueue"), then the data bytes. irq is the device's
// interrupt request to the controller; it is raised when bytes are added
// and, as in QEMU, lowered and re-raised around every read.
type queue struct {
	reply            [3]byte
	replyHead, nRepl int
	data             [queueSize]byte
	head, n          int
	last             byte
	irq              func(high bool)
}

func (q *queue) count() int { return q.nRepl - q.replyHead + q.n }

// push appends up to 4 bytes as one unit: all or nothing.
func (q *queue) push(b [4]byte, k int) {
	if queueSize-q.count() < k {
		return
	}
	for i := 0; i < k; i++ {
		q.data[(q.head+q.n)%queueSize] = b[i]
		q.n++
	}
	q.irq(true)
}

func (q *queue) push1(b byte) { q.push([4]byte{b}, 1) }

// reply replaces any unread command reply with b[:k] (k ≤ 3), ahead of
// the data.
func (q *queue) setReply(b [3]byte, k int) {
	q.reply, q.replyHead, q.nRepl = b, 0, k
	q.irq(true)
}

// dropReply discards unread command replies (a new command supersedes
// them: QEMU ps2_cqueue_reset).
func (q *queue) dropReply() { q.replyHead, q.nRepl = 0, 0 }

func (q *queue) clear() {
	q.replyHead, q.nRepl = 0, 0
	q.head, q.n = 0, 0
}

// read pops the next byte; with nothing queued it returns the last byte
// read again.
func (q *queue) read() byte {
	switch {
	case q.replyHead < q.nRepl:
		q.last = q.reply[q.replyHead]
		q.replyHead++
		if q.replyHead == q.nRepl {
			q.replyHead, q.nRepl = 0, 0
		}
	case q.n > 0:
		q.last = q.data[q.head]
		q.head = (q.head + 1) % queueSize
		q.n--
	default:
		return q.last
	}
	q.irq(false)
	if q.count() > 0 {
		q.irq(true)
	}
	return q.last
}

// Keyboard commands and replies (IBM PS/2 Technical Reference, keyboard
// chapter; QEMU ps2.c).
const (
	kbdCmdSetLEDs      = 0xed
	kbdCmdEcho         = 0xee
	kbdCmdScancode     = 0xf0
	kbdCmdGetID        = 0xf2
	kbdCmdSetRate      = 0xf3
	kbdCmdEnable       = 0xf4
	kbdCmdResetDisable = 0xf5
	kbdCmdResetEnable  = 0xf6
	kbdCmdSetTypematic = 0xfa
	kbdCmdSetMakeBreak = 0xfc
	kbdCmdReset        = 0xff

	kbdReplyPOR    = 0xaa
	kbdReplyID     = 0xab
	kbdReplyACK    = 0xfa
	kbdReplyResend = 0xfe
)

// keyboard is an MF2 PS/2 keyboard.
type keyboard struct {
	q           queue
	writeCmd    byte // command awaiting its argument; 0 = none
	scanEnabled bool
	translate   bool // controller translates to set 1 (command byte KCC)
	scancodeSet byte
	leds        byte
	needHighBit bool // translating: the next code is a break (after 0xf0)
}

func (k *keyboard) reset() {
	k.q.clear()
	k.writeCmd = 0
	k.scanEnabled = true
	k.translate = false
	k.scancodeSet = 2
	k.leds = 0
	k.needHighBit = false
}

// resetCmd is the keyboard's own reset (commands 0xf5, 0xf6, 0xff): the
// queue is emptied, set 2 selected, LEDs off.
func (k *keyboard) resetCmd() {
	k.scanEnabled = true
	k.scancodeSet = 2
	k.q.clear()
	k.leds = 0
}

func (k *keyboard) ack() { k.q.setReply([3]byte{kbdReplyACK}, 1) }

func (k *keyboard) write(v byte) {
	k.q.dropReply()
	switch k.writeCmd {
	case kbdCmdSetMakeBreak, kbdCmdSetRate:
		k.ack()
		k.writeCmd = 0
		return
	case kbdCmdSetLEDs:
		k.leds = v
		k.ack()
		k.writeCmd = 0
		return
	case kbdCmdScancode:
		switch {
		case v == 0:
			set := k.scancodeSet
			if k.translate {
				set = translate[set]
			}
			k.q.setReply([3]byte{kbdReplyACK, set}, 2)
		case v >= 1 && v <= 3:
			k.scancodeSet = v
			k.ack()
		default:
			k.q.setReply([3]byte{kbdReplyResend}, 1)
		}
		k.writeCmd = 0
		return
	}
	switch v {
	case 0x00, kbdCmdSetTypematic:
		k.ack()
	case 0x05:
		k.q.setReply([3]byte{kbdReplyResend}, 1)
	case kbdCmdGetID:
		// An MF2 keyboard: 0xab 0x83, or 0xab 0x41 when translated.
		id := byte(0x83)
		if k.translate {
			id = 0x41
		}
		k.q.setReply([3]byte{kbdReplyACK, kbdReplyID, id}, 3)
	case kbdCmdEcho:
		k.q.setReply([3]byte{kbdCmdEcho}, 1)
	case kbdCmdEnable:
		k.scanEnabled = true
		k.ack()
	case kbdCmdScancode, kbdCmdSetLEDs, kbdCmdSetRate, kbdCmdSetMakeBreak:
		k.writeCmd = v
		k.ack()
	case kbdCmdResetDisable:
		k.resetCmd()
		k.scanEnabled = false
		k.ack()
	case kbdCmdResetEnable:
		k.resetCmd()
		k.ack()
	case kbdCmdReset:
		k.resetCmd()
		k.q.setReply([3]byte{kbdReplyACK, kbdReplyPOR}, 2)
	default:
		k.q.setReply([3]byte{kbdReplyResend}, 1)
	}
}

// put queues one byte of the current scan code set, translating to set 1
// when the controller asks for it (a 0xf0 break prefix becomes the high
// bit of the next code).
func (k *keyboard) put(code byte) {
	if !k.translate {
		k.q.push1(code)
		return
	}
	switch {
	case code == 0xf0:
		k.needHighBit = true
	case k.needHighBit:
		k.q.push1(translate[code] | 0x80)
		k.needHighBit = false
	default:
		k.q.push1(translate[code])
	}
}

// Mouse commands (IBM PS/2 Technical Reference, mouse chapter; QEMU
// ps2.c).
const (
	auxSetScale11  = 0xe6
	auxSetScale21  = 0xe7
	auxSetRes      = 0xe8
	auxGetScale    = 0xe9
	auxSetStream   = 0xea
	auxPoll        = 0xeb
	auxResetWrap   = 0xec
	auxSetWrap     = 0xee
	auxSetRemote   = 0xf0
	auxGetType     = 0xf2
	auxSetSample   = 0xf3
	auxEnableDev   = 0xf4
	auxDisableDev  = 0xf5
	auxSetDefault  = 0xf6
	auxReset       = 0xff
	auxACK         = 0xfa
	mouseRemote    = 0x40
	mouseEnabled   = 0x20
	mouseScale21   = 0x10
	mouseTypePS2   = 0
	mouseTypeIMPS2 = 3 // IntelliMouse (wheel)
	mouseTypeIMEX  = 4 // IntelliMouse Explorer (wheel + 5 buttons)
)

// mouse is a PS/2 mouse with IntelliMouse extensions.
type mouse struct {
	q                        queue
	writeCmd                 byte
	status, resolution, rate byte
	wrap                     bool
	typ, detect              byte
	dx, dy, dz, dw           int
	buttons                  byte
}

func (m *mouse) reset() {
	m.q.clear()
	m.writeCmd = 0
	m.status, m.resolution, m.rate = 0, 0, 0
	m.wrap = false
	m.typ, m.detect = 0, 0
	m.dx, m.dy, m.dz, m.dw = 0, 0, 0, 0
	m.buttons = 0
}

func (m *mouse) write(v byte) {
	switch m.writeCmd {
	case auxSetSample:
		m.rate = v
		// The IntelliMouse knock sequences: rates 200,100,80 select the
		// wheel mouse, 200,200,80 the 5-button one.
		switch m.detect {
		case 0:
			if v == 200 {
				m.detect = 1
			}
		case 1:
			switch v {
			case 100:
				m.detect = 2
			case 200:
				m.detect = 3
			default:
				m.detect = 0
			}
		case 2:
			if v == 80 {
				m.typ = mouseTypeIMPS2
			}
			m.detect = 0
		case 3:
			if v == 80 {
				m.typ = mouseTypeIMEX
			}
			m.detect = 0
		}
		m.q.push1(auxACK)
		m.writeCmd = 0
		return
	case auxSetRes:
		m.resolution = v
		m.q.push1(auxACK)
		m.writeCmd = 0
		return
	}
	if m.wrap {
		if v == auxResetWrap {
			m.wrap = false
			m.q.push1(auxACK)
			return
		}
		if v != auxReset {
			m.q.push1(v) // wrap (echo) mode
			return
		}
	}
	switch v {
	case auxSetScale11:
		m.status &^= mouseScale21
		m.q.push1(auxACK)
	case auxSetScale21:
		m.status |= mouseScale21
		m.q.push1(auxACK)
	case auxSetStream:
		m.status &^= mouseRemote
		m.q.push1(auxACK)
	case auxSetWrap:
		m.wrap = true
		m.q.push1(auxACK)
	case auxSetRemote:
		m.status |= mouseRemote
		m.q.push1(auxACK)
	case auxGetType:
		m.q.push([4]byte{auxACK, m.typ}, 2)
	case auxSetRes, auxSetSample:
		m.writeCmd = v
		m.q.push1(auxACK)
	case auxGetScale:
		m.q.push([4]byte{auxACK, m.status, m.resolution, m.rate}, 4)
	case auxPoll:
		m.q.push1(auxACK)
		m.sendPacket()
	case auxEnableDev:
		m.status |= mouseEnabled
		m.q.push1(auxACK)
	case auxDisableDev:
		m.status &^= mouseEnabled
		m.q.push1(auxACK)
	case auxSetDefault:
		m.rate, m.resolution, m.status = 100, 2, 0
		m.q.push1(auxACK)
	case auxReset:
		m.rate, m.resolution, m.status, m.typ = 100, 2, 0, mouseTypePS2
		m.q.clear()
		m.q.push([4]byte{auxACK, 0xaa, m.typ}, 3)
	}
	// Other bytes are ignored (QEMU answers nothing).
}

func clamp(v, lim int) int {
	if v > lim {
		return lim
	}
	if v < -lim {
		return -lim
	}
	return v
}

// sendPacket queues one movement packet (3 bytes, 4 for IntelliMouse
// types) if it fits, and reports whether it did.
func (m *mouse) sendPacket() bool {
	need := 3
	if m.typ != mouseTypePS2 {
		need = 4
	}
	if queueSize-m.q.count() < need {
		return false
	}
	dx, dy := clamp(m.dx, 127), clamp(m.dy, 127)
	var b [4]byte
	b[0] = 0x08 | m.buttons&0x07
	if dx < 0 {
		b[0] |= 0x10
	}
	if dy < 0 {
		b[0] |= 0x20
	}
	b[1], b[2] = byte(dx), byte(dy)
	switch m.typ {
	case mouseTypeIMPS2:
		dz := clamp(m.dz, 127)
		b[3] = byte(dz)
		m.dz -= dz
		m.dw = 0
	case mouseTypeIMEX:
		if m.dw != 0 {
			dw := clamp(m.dw, 31)
			b[3] = byte(dw)&0x3f | 0x40
			m.dw -= dw
		} else {
			dz := clamp(m.dz, 7)
			b[3] = byte(dz)&0x0f | (m.buttons&0x18)<<1
			m.dz -= dz
		}
	default:
		m.dz, m.dw = 0, 0
	}
	m.q.push(b, need)
	m.dx -= dx
	m.dy -= dy
	return true
}

// translate is the 8042's scan code translation from set 2 to set 1,
// indexed by the set-2 code (IBM PC AT Technical Reference; the same
// table as QEMU hw/input/ps2.c translate_table).
var translate = [256]byte{
	0xff, 0x43, 0x41, 0x3f, 0x3d, 0x3b, 0x3c, 0x58, 0x64, 0x44, 0x42, 0x40, 0x3e, 0x0f, 0x29, 0x59,
	0x65, 0x38, 0x2a, 0x70, 0x1d, 0x10, 0x02, 0x5a, 0x66, 0x71, 0x2c, 0x1f, 0x1e, 0x11, 0x03, 0x5b,
	0x67, 0x2e, 0x2d, 0x20, 0x12, 0x05, 0x04, 0x5c, 0x68, 0x39, 0x2f, 0x21, 0x14, 0x13, 0x06, 0x5d,
	0x69, 0x31, 0x30, 0x23, 0x22, 0x15, 0x07, 0x5e, 0x6a, 0x72, 0x32, 0x24, 0x16, 0x08, 0x09, 0x5f,
	0x6b, 0x33, 0x25, 0x17, 0x18, 0x0b, 0x0a, 0x60, 0x6c, 0x34, 0x35, 0x26, 0x27, 0x19, 0x0c, 0x61,
	0x6d, 0x73, 0x28, 0x74, 0x1a, 0x0d, 0x62, 0x6e, 0x3a, 0x36, 0x1c, 0x1b, 0x75, 0x2b, 0x63, 0x76,
	0x55, 0x56, 0x77, 0x78, 0x79, 0x7a, 0x0e, 0x7b, 0x7c, 0x4f, 0x7d, 0x4b, 0x47, 0x7e, 0x7f, 0x6f,
	0x52, 0x53, 0x50, 0x4c, 0x4d, 0x48, 0x01, 0x45, 0x57, 0x4e, 0x51, 0x4a, 0x37, 0x49, 0x46, 0x54,
	0x80, 0x81, 0x82, 0x41, 0x54, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8b, 0x8c, 0x8d, 0x8e, 0x8f,
	0x90, 0x91, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9e, 0x9f,
	0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,
	0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf,
	0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf,
	0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf,
	0xe0, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xeb, 0xec, 0xed, 0xee, 0xef,
	0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff,
}

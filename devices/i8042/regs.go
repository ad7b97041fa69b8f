package i8042

// Ports.
const (
	// DataPort is the data register (read: output buffer; write: input
	// buffer to the keyboard or to the pending command).
	DataPort = 0x60
	// StatusPort is the status register (read) and command register
	// (write).
	StatusPort = 0x64
)

// ISA interrupts of the two PS/2 ports.
const (
	KeyboardIRQ = 1
	MouseIRQ    = 12
)

// Controller commands (written to port 0x64).
const (
	cmdReadMode     = 0x20
	cmdWriteMode    = 0x60
	cmdMouseDisable = 0xa7
	cmdMouseEnable  = 0xa8
	cmdTestMouse    = 0xa9
	cmdSelfTest     = 0xaa
	cmdTestKbd      = 0xab
	cmdKbdDisable   = 0xad
	cmdKbdEnable    = 0xae
	cmdReadInport   = 0xc0
	cmdReadOutport  = 0xd0
	cmdWriteOutport = 0xd1
	cmdWriteObuf    = 0xd2
	cmdWriteAuxObuf = 0xd3
	cmdWriteMouse   = 0xd4
	cmdDisableA20   = 0xdd
	cmdEnableA20    = 0xdf
	cmdPulseMask    = 0xf0 // 0xf0-0xff: pulse output-port bits 3-0 that are 0
	cmdReset        = 0xfe
	cmdNop          = 0xff
)

// Status register bits.
const (
	statOBF      = 0x01 // output buffer full
	statIBF      = 0x02 // input buffer full (never: writes complete at once)
	statSelfTest = 0x04 // system flag, set by a passed self-test
	statCmd      = 0x08 // last write was to the command port
	statUnlocked = 0x10 // keyboard not inhibited by the keylock
	statMouseOBF = 0x20 // output buffer holds mouse data
)

// Command byte ("mode") bits.
const (
	modeKbdInt       = 0x01
	modeMouseInt     = 0x02
	modeSys          = 0x04
	modeDisableKbd   = 0x10
	modeDisableMouse = 0x20
	modeKCC          = 0x40 // translate scan codes to set 1
)

// Output port bits.
const (
	outReset    = 0x01 // 0 holds the CPU in reset
	outA20      = 0x02
	outOBF      = 0x10
	outMouseOBF = 0x20
	// outOnes are bits QEMU keeps set by default (pckbd.c KBD_OUT_ONES).
	outOnes = 0xcc
)

// pending bits: who has a byte for the output buffer. The device bits
// equal the mode's disable bits so that a disabled port masks its own
// pending data (pckbd.c kbd_pending).
const (
	pendCtrlKbd = 0x04 // controller reply, keyboard side
	pendCtrlAux = 0x08 // controller reply, mouse side (0xd3)
	pendKbd     = modeDisableKbd
	pendAux     = modeDisableMouse
)

// Output buffer sources.
const (
	srcKbd = iota + 1
	srcMouse
	srcCtrl
)

// Reset values (pckbd.c kbd_reset).
const (
	resetMode    = modeKbdInt | modeMouseInt
	resetStatus  = statCmd | statUnlocked
	resetOutport = outReset | outA20 | outOnes
)

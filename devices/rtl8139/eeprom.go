package rtl8139

// The 93C46 serial EEPROM (64 16-bit words) the driver bit-bangs through
// Cfg9346 in programming mode (bits 3 EECS, 2 EESK, 1 EEDI, 0 EEDO).
// Protocol as QEMU's prom9346_* (hw/net/rtl8139.c) and the 93C46 data
// sheet: CS rising starts a command; on each SK rising edge one bit is
// shifted; after a start bit, 8 command bits (2 opcode, 6 address); a
// read then shifts 16 data bits out MSB first and waits for the next
// command.

const eeWords = 64

// EEPROM modes.
const (
	eeNone = iota
	eeCommand
	eeReadCommand
	eeDataRead
	eeDataWrite
	eeDataWriteAll
)

type eeprom struct {
	contents      [eeWords]uint16
	mode          uint8
	tick          uint8
	address       uint8
	input, output uint16
	cs, sk, di    bool
	do            bool
}

// init fills the words QEMU's realize writes: the 0x8129 signature, the
// PCI IDs and the MAC (little-endian pairs at words 7-9).
func (e *eeprom) init(mac [6]byte) {
	e.contents = [eeWords]uint16{}
	e.contents[0] = 0x8129
	e.contents[1] = VendorID
	e.contents[2] = DeviceID
	e.contents[7] = uint16(mac[0]) | uint16(mac[1])<<8
	e.contents[8] = uint16(mac[2]) | uint16(mac[3])<<8
	e.contents[9] = uint16(mac[4]) | uint16(mac[5])<<8
}

// Word returns EEPROM word i (tests).
func (d *Device) EEPROMWord(i int) uint16 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.st.ee.contents[i&(eeWords-1)]
}

func (e *eeprom) decode(cmd uint8) {
	switch cmd & 0xc0 {
	case 0x80: // read
		e.address = cmd & (eeWords - 1)
		e.output = e.contents[e.address]
		e.do = false
		e.tick = 0
		e.mode = eeDataRead
	case 0x40: // write: QEMU leaves it disabled (mode none)
		e.address = cmd & (eeWords - 1)
		e.input = 0
		e.tick = 0
		e.mode = eeNone
	default: // write enable/disable/all: nothing is written
		e.mode = eeNone
	}
}

func (e *eeprom) shift() {
	bit := uint16(0)
	if e.di {
		bit = 1
	}
	e.tick++
	switch e.mode {
	case eeCommand:
		if bit != 0 {
			e.mode = eeReadCommand
			e.tick = 0
			e.input = 0
		}
	case eeReadCommand:
		e.input = e.input<<1 | bit
		if e.tick == 8 {
			e.decode(uint8(e.input))
		}
	case eeDataRead:
		e.do = e.output&0x8000 != 0
		e.output <<= 1
		if e.tick == 16 {
			e.mode = eeCommand
			e.input = 0
			e.tick = 0
		}
	case eeDataWrite:
		e.input = e.input<<1 | bit
		if e.tick == 16 {
			e.contents[e.address] = e.input
			e.mode = eeNone
			e.tick = 0
			e.input = 0
		}
	case eeDataWriteAll:
		e.input = e.input<<1 | bit
		if e.tick == 16 {
			for i := range e.contents {
				e.contents[i] = e.input
			}
			e.mode = eeCommand
			e.tick = 0
			e.input = 0
		}
	}
}

func (e *eeprom) setWire(cs, sk, di bool) {
	oldCS, oldSK := e.cs, e.sk
	e.cs, e.sk, e.di = cs, sk, di
	if !oldCS && cs {
		e.tick = 0
		e.input = 0
		e.output = 0
		e.mode = eeCommand
	}
	if !cs {
		return
	}
	if !oldSK && sk {
		e.shift()
	}
}

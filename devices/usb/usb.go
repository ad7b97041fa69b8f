// Package usb is godm's small USB device layer: the transaction a host
// controller hands a device (Device), and Pipe, the default control
// pipe every device has (the SETUP/DATA/STATUS stages and the standard
// requests of USB 2.0 chapter 9), over a Function that supplies a
// device's descriptors, class requests and other endpoints. Devices are
// full-speed only. Every input comes from the guest: a malformed request
// stalls, nothing panics or grows.
package usb

import (
	"encoding/binary"

	"godm/devices/savestate"
)

// Packet identifiers of the tokens a host controller issues (USB 2.0
// table 8-1).
const (
	PIDOut   = 0xe1
	PIDIn    = 0x69
	PIDSetup = 0x2d
)

// Status is a transaction's handshake.
type Status uint8

const (
	// ACK: the transaction completed (for IN, with the bytes returned).
	ACK Status = iota
	// NAK: the endpoint has nothing now; the host retries later.
	NAK
	// Stall: the endpoint refuses the request (or is halted).
	Stall
)

// Device is a USB device on a port, as a host controller sees it.
type Device interface {
	// BusReset is the reset a port signals: back to the default address
	// 0, unconfigured, the control pipe idle.
	BusReset()
	// Address is the device's USB address (0 until SET_ADDRESS ends).
	Address() uint8
	// Transfer runs one transaction to endpoint ep: for PIDSetup and
	// PIDOut data holds what the host sent; for PIDIn the device writes
	// at most len(data) bytes into it and returns how many.
	Transfer(pid, ep uint8, data []byte) (int, Status)
}

// Setup is a control request (the SETUP stage's 8 bytes, USB 2.0 §9.3).
type Setup struct {
	RequestType, Request uint8
	Value, Index, Length uint16
}

// In reports whether the request's data stage is device-to-host.
func (s Setup) In() bool { return s.RequestType&0x80 != 0 }

// ParseSetup decodes a SETUP packet; false unless it is 8 bytes.
func ParseSetup(b []byte) (Setup, bool) {
	if len(b) != 8 {
		return Setup{}, false
	}
	return Setup{RequestType: b[0], Request: b[1], Value: binary.LittleEndian.Uint16(b[2:]),
		Index: binary.LittleEndian.Uint16(b[4:]), Length: binary.LittleEndian.Uint16(b[6:])}, true
}

// Standard request codes (USB 2.0 table 9-4) and descriptor types
// (table 9-5).
const (
	ReqGetStatus        = 0x00
	ReqClearFeature     = 0x01
	ReqSetFeature       = 0x03
	ReqSetAddress       = 0x05
	ReqGetDescriptor    = 0x06
	ReqSetDescriptor    = 0x07
	ReqGetConfiguration = 0x08
	ReqSetConfiguration = 0x09
	ReqGetInterface     = 0x0a
	ReqSetInterface     = 0x0b

	DescDevice    = 1
	DescConfig    = 2
	DescString    = 3
	DescInterface = 4
	DescEndpoint  = 5

	featureEndpointHalt = 0
	featureRemoteWakeup = 1
)

// Function is what a device adds to its control pipe: descriptors, the
// requests that are not standard ones (class, vendor, and GET_DESCRIPTOR
// addressed to an interface), the other endpoints.
type Function interface {
	// DeviceDescriptor and ConfigDescriptor return the device descriptor
	// and the whole configuration (configuration 1: its interfaces,
	// class descriptors and endpoints).
	DeviceDescriptor() []byte
	ConfigDescriptor() []byte
	// String returns string descriptor i's text (i ≥ 1); false: none.
	String(i uint8) (string, bool)
	// Request handles a non-standard request. For an IN request it fills
	// data (len: the request's wLength, at most MaxControl) and returns
	// the bytes written; for an OUT request data is the data stage. false
	// stalls.
	Request(s Setup, data []byte) (int, bool)
	// Endpoint runs a transaction on endpoint ep ≥ 1 of the configured
	// device (Device.Transfer's meaning).
	Endpoint(pid, ep uint8, data []byte) (int, Status)
	// Reset returns the function's state to power-on (bus reset, and a
	// configuration set or cleared).
	Reset()
}

// MaxControl bounds a control transfer's data stage (QEMU hw/usb/core.c
// stalls above its 4096-byte buffer too).
const MaxControl = 4096

type ctlState uint8

const (
	ctlIdle    ctlState = iota // waiting for SETUP
	ctlDataIn                  // sending buf[pos:n]
	ctlDataOut                 // receiving into buf[pos:n]
	ctlStatus                  // waiting for the status stage
)

// Pipe is a device's default control pipe and its state. The zero Pipe
// with Fn set is a device at address 0, unconfigured. It is not
// safe for concurrent use: its owner locks.
type Pipe struct {
	Fn Function

	addr, newAddr uint8
	setAddr       bool // newAddr takes effect when the status stage ends
	config        uint8
	wakeup        bool
	halt          [16]bool // IN endpoints halted by SET_FEATURE

	state ctlState
	setup Setup
	n     int // data stage length
	pos   int // bytes moved so far
	buf   [MaxControl]byte
}

// Address implements Device.
func (p *Pipe) Address() uint8 { return p.addr }

// Configured reports whether SET_CONFIGURATION selected configuration 1.
func (p *Pipe) Configured() bool { return p.config != 0 }

// BusReset implements Device.
func (p *Pipe) BusReset() {
	p.addr, p.newAddr, p.setAddr = 0, 0, false
	p.config, p.wakeup = 0, false
	p.halt = [16]bool{}
	p.state, p.n, p.pos = ctlIdle, 0, 0
	p.Fn.Reset()
}

// RemoteWakeup reports whether the host enabled remote wake-up.
func (p *Pipe) RemoteWakeup() bool { return p.wakeup }

// Transfer implements Device.
func (p *Pipe) Transfer(pid, ep uint8, data []byte) (int, Status) {
	ep &= 0xf
	if ep != 0 {
		if p.config == 0 {
			return 0, Stall
		}
		if pid == PIDIn && p.halt[ep] {
			return 0, Stall
		}
		if pid == PIDSetup {
			return 0, Stall
		}
		return p.Fn.Endpoint(pid, ep, data)
	}
	switch pid {
	case PIDSetup:
		return 0, p.doSetup(data)
	case PIDIn:
		return p.doIn(data)
	case PIDOut:
		return 0, p.doOut(data)
	}
	return 0, Stall
}

// doSetup starts a control transfer (a SETUP always does, whatever the
// state: USB 2.0 §8.5.3 "a SETUP ... aborts" the transfer in progress).
func (p *Pipe) doSetup(b []byte) Status {
	s, ok := ParseSetup(b)
	p.state, p.n, p.pos = ctlIdle, 0, 0
	if !ok {
		return Stall
	}
	p.setup = s
	if s.In() {
		n, ok := p.request(s, p.buf[:min(int(s.Length), MaxControl)])
		if !ok {
			return ACK // the stall comes at the data or status stage
		}
		p.n = n
		p.state = ctlDataIn
		if s.Length == 0 {
			p.state = ctlStatus
		}
		return ACK
	}
	if int(s.Length) > MaxControl {
		return ACK // stalls at the data stage (state idle)
	}
	if s.Length == 0 {
		if _, ok := p.request(s, nil); !ok {
			return ACK
		}
		p.state = ctlStatus
		return ACK
	}
	p.n = int(s.Length)
	p.state = ctlDataOut
	return ACK
}

func (p *Pipe) doIn(data []byte) (int, Status) {
	switch p.state {
	case ctlDataIn:
		k := copy(data, p.buf[p.pos:p.n])
		p.pos += k
		if k < len(data) || p.pos >= int(p.setup.Length) {
			// The last packet: a short one (zero-length when the data
			// ends on a packet boundary before wLength, USB 2.0
			// §5.5.3), or wLength reached. The OUT status stage follows.
			p.state = ctlStatus
		}
		return k, ACK
	case ctlStatus:
		if !p.statusIn() {
			return 0, Stall
		}
		// Status stage of an OUT (or no-data) request: a zero-length IN.
		p.state = ctlIdle
		if p.setAddr {
			p.addr, p.setAddr = p.newAddr, false
		}
		return 0, ACK
	}
	return 0, Stall
}

// statusIn reports whether the transfer's status stage is an IN token:
// for OUT requests and for every request without a data stage (USB 2.0
// §8.5.3: a no-data control transfer's status is an IN).
func (p *Pipe) statusIn() bool { return !p.setup.In() || p.setup.Length == 0 }

func (p *Pipe) doOut(data []byte) Status {
	switch p.state {
	case ctlDataOut:
		if p.pos+len(data) > p.n {
			p.state = ctlIdle
			return Stall
		}
		p.pos += copy(p.buf[p.pos:p.n], data)
		if p.pos < p.n {
			return ACK
		}
		if _, ok := p.request(p.setup, p.buf[:p.n]); !ok {
			p.state = ctlIdle
			return Stall
		}
		p.state = ctlStatus
		return ACK
	case ctlDataIn, ctlStatus:
		if p.statusIn() {
			return Stall
		}
		// The status stage of an IN request (or the host ending the data
		// stage early, which USB 2.0 §8.5.3.2 allows).
		p.state = ctlIdle
		return ACK
	}
	return Stall
}

// request handles s: the standard requests here, the rest by the
// Function. For IN requests data is the buffer to fill.
func (p *Pipe) request(s Setup, data []byte) (int, bool) {
	if s.RequestType&0x60 != 0 { // class or vendor
		return p.Fn.Request(s, data)
	}
	recip := s.RequestType & 0x1f
	switch {
	case s.In() && s.Request == ReqGetStatus:
		var st uint16
		switch recip {
		case 0:
			if p.wakeup {
				st = 1 << featureRemoteWakeup
			}
		case 1:
		case 2:
			if ep := s.Index & 0xf; s.Index&0x80 != 0 && p.halt[ep] {
				st = 1
			}
		default:
			return 0, false
		}
		return copyOut(data, []byte{byte(st), byte(st >> 8)}), true
	case !s.In() && (s.Request == ReqClearFeature || s.Request == ReqSetFeature):
		set := s.Request == ReqSetFeature
		switch {
		case recip == 0 && s.Value == featureRemoteWakeup:
			p.wakeup = set
			return 0, true
		case recip == 2 && s.Value == featureEndpointHalt:
			ep := s.Index & 0xf
			if ep == 0 {
				return 0, true
			}
			if s.Index&0x80 == 0 { // this layer's functions have IN endpoints only
				return 0, false
			}
			p.halt[ep] = set
			return 0, true
		}
		return 0, false
	case !s.In() && s.Request == ReqSetAddress && recip == 0:
		if s.Value > 127 || s.Index != 0 {
			return 0, false
		}
		// USB 2.0 §9.4.6: the address changes once the status stage
		// completes.
		p.newAddr, p.setAddr = uint8(s.Value), true
		return 0, true
	case s.In() && s.Request == ReqGetDescriptor:
		if recip != 0 {
			return p.Fn.Request(s, data)
		}
		return p.descriptor(s, data)
	case s.In() && s.Request == ReqGetConfiguration && recip == 0:
		return copyOut(data, []byte{p.config}), true
	case !s.In() && s.Request == ReqSetConfiguration && recip == 0:
		if s.Value > 1 {
			return 0, false
		}
		p.config = uint8(s.Value)
		p.halt = [16]bool{}
		p.Fn.Reset()
		return 0, true
	case s.In() && s.Request == ReqGetInterface && recip == 1:
		if p.config == 0 {
			return 0, false
		}
		return copyOut(data, []byte{0}), true
	case !s.In() && s.Request == ReqSetInterface && recip == 1:
		return 0, p.config != 0 && s.Value == 0
	}
	return 0, false
}

func (p *Pipe) descriptor(s Setup, data []byte) (int, bool) {
	typ, idx := uint8(s.Value>>8), uint8(s.Value)
	switch typ {
	case DescDevice:
		return copyOut(data, p.Fn.DeviceDescriptor()), true
	case DescConfig:
		if idx != 0 {
			return 0, false
		}
		return copyOut(data, p.Fn.ConfigDescriptor()), true
	case DescString:
		if idx == 0 {
			return copyOut(data, []byte{4, DescString, 0x09, 0x04}), true // US English
		}
		str, ok := p.Fn.String(idx)
		if !ok {
			return 0, false
		}
		return copyOut(data, StringDescriptor(str)), true
	}
	return 0, false
}

func copyOut(dst, src []byte) int { return copy(dst, src) }

// StringDescriptor encodes s (ASCII; at most 126 characters are kept)
// as a string descriptor in UTF-16LE.
func StringDescriptor(s string) []byte {
	if len(s) > 126 {
		s = s[:126]
	}
	b := make([]byte, 2, 2+2*len(s))
	b[0], b[1] = byte(2+2*len(s)), DescString
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			c = '?'
		}
		b = append(b, c, 0)
	}
	return b
}

// maxState bounds the control pipe's record.
const maxState = MaxControl

// WriteState appends the pipe's state to w.
func (p *Pipe) WriteState(w *savestate.Writer) {
	w.U8(p.addr)
	w.U8(p.newAddr)
	w.Bool(p.setAddr)
	w.U8(p.config)
	w.Bool(p.wakeup)
	var h uint16
	for i, b := range p.halt {
		if b {
			h |= 1 << i
		}
	}
	w.U16(h)
	w.U8(uint8(p.state))
	w.U8(p.setup.RequestType)
	w.U8(p.setup.Request)
	w.U16(p.setup.Value)
	w.U16(p.setup.Index)
	w.U16(p.setup.Length)
	w.U32(uint32(p.pos))
	w.Bytes(p.buf[:p.n])
}

// ReadState loads what WriteState wrote; the reader's error says whether
// it was well formed (a bad record leaves the pipe reset).
func (p *Pipe) ReadState(r *savestate.Reader) {
	var q Pipe
	q.Fn = p.Fn
	q.addr = r.U8()
	q.newAddr = r.U8()
	q.setAddr = r.Bool()
	q.config = r.U8()
	q.wakeup = r.Bool()
	h := r.U16()
	for i := range q.halt {
		q.halt[i] = h&(1<<i) != 0
	}
	q.state = ctlState(r.U8())
	q.setup.RequestType = r.U8()
	q.setup.Request = r.U8()
	q.setup.Value = r.U16()
	q.setup.Index = r.U16()
	q.setup.Length = r.U16()
	pos := r.U32()
	buf := r.Bytes(maxState)
	if r.Err() != nil {
		return
	}
	if q.addr > 127 || q.newAddr > 127 || q.config > 1 || q.state > ctlStatus || int(pos) > len(buf) {
		r.Fail(savestate.ErrFormat)
		return
	}
	q.n = copy(q.buf[:], buf)
	q.pos = int(pos)
	*p = q
}

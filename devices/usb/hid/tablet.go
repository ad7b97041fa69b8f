// Package hid is the USB HID tablet (-device usb-tablet): an absolute
// pointing device with the meaning of QEMU's usb-tablet (hw/usb/dev-hid.c,
// hw/input/hid.c: X and Y in 0..0x7fff, three buttons, a wheel), so a
// guest's pointer follows a VNC client's exactly. The descriptor bytes are
// godm's own.
package hid

import (
	"sync"
	"time"

	"godm/devices/clock"
	"godm/devices/savestate"
	"godm/devices/usb"
)

// Identity: QEMU's vendor and tablet product IDs (hw/usb/dev-hid.c
// desc_device_tablet: 0x0627/0x0001), so guests' quirk tables and
// drivers treat it as they treat QEMU's.
const (
	VendorID  = 0x0627
	ProductID = 0x0001
	// Manufacturer, Product and Serial are the string descriptors 1-3;
	// Linux names the input device "Manufacturer Product" in
	// /proc/bus/input/devices (QEMU's reads "QEMU QEMU USB Tablet").
	Manufacturer = "godm"
	Product      = "godm USB Tablet"
	Serial       = "42"
	// AbsMax is the largest X and Y (QEMU INPUT_EVENT_ABS_MAX).
	AbsMax = 0x7fff
	// ReportLen is an input report's length: buttons, X, Y (16 bits
	// each, little-endian), wheel.
	ReportLen = 6
	// queueLen bounds the reports waiting for the guest (QEMU's hid
	// queue holds 16 pointer events).
	queueLen = 16
)

// ReportDescriptor is the HID report descriptor (HID 1.11 §6.2.2): a
// mouse application collection with three buttons, absolute X and Y in
// 0..0x7fff and a relative wheel in -127..127.
var ReportDescriptor = []byte{
	0x05, 0x01, // Usage Page (Generic Desktop)
	0x09, 0x02, // Usage (Mouse)
	0xa1, 0x01, // Collection (Application)
	0x09, 0x01, //   Usage (Pointer)
	0xa1, 0x00, //   Collection (Physical)
	0x05, 0x09, //     Usage Page (Button)
	0x19, 0x01, //     Usage Minimum (1)
	0x29, 0x03, //     Usage Maximum (3)
	0x15, 0x00, //     Logical Minimum (0)
	0x25, 0x01, //     Logical Maximum (1)
	0x75, 0x01, //     Report Size (1)
	0x95, 0x03, //     Report Count (3)
	0x81, 0x02, //     Input (Data, Variable, Absolute)
	0x75, 0x05, //     Report Size (5)
	0x95, 0x01, //     Report Count (1)
	0x81, 0x03, //     Input (Constant, Variable): padding
	0x05, 0x01, //     Usage Page (Generic Desktop)
	0x09, 0x30, //     Usage (X)
	0x09, 0x31, //     Usage (Y)
	0x15, 0x00, //     Logical Minimum (0)
	0x26, 0xff, 0x7f, // Logical Maximum (32767)
	0x35, 0x00, //     Physical Minimum (0)
	0x46, 0xff, 0x7f, // Physical Maximum (32767)
	0x75, 0x10, //     Report Size (16)
	0x95, 0x02, //     Report Count (2)
	0x81, 0x02, //     Input (Data, Variable, Absolute)
	0x09, 0x38, //     Usage (Wheel)
	0x15, 0x81, //     Logical Minimum (-127)
	0x25, 0x7f, //     Logical Maximum (127)
	0x35, 0x00, //     Physical Minimum (0)
	0x45, 0x00, //     Physical Maximum (0)
	0x75, 0x08, //     Report Size (8)
	0x95, 0x01, //     Report Count (1)
	0x81, 0x06, //     Input (Data, Variable, Relative)
	0xc0, //   End Collection
	0xc0, // End Collection
}

// Descriptor types and class requests (HID 1.11 §7.1, §7.2).
const (
	descHID    = 0x21
	descReport = 0x22

	reqGetReport   = 0x01
	reqGetIdle     = 0x02
	reqGetProtocol = 0x03
	reqSetReport   = 0x09
	reqSetIdle     = 0x0a
	reqSetProtocol = 0x0b
)

var deviceDesc = []byte{
	18, usb.DescDevice,
	0x10, 0x01, // bcdUSB 1.1: a full-speed device
	0, 0, 0, // class in the interface
	8,                              // bMaxPacketSize0
	VendorID & 0xff, VendorID >> 8, // idVendor
	ProductID & 0xff, ProductID >> 8, // idProduct
	0x00, 0x00, // bcdDevice
	1, 2, 3, // iManufacturer, iProduct, iSerialNumber
	1, // bNumConfigurations
}

var configDesc = func() []byte {
	b := []byte{
		9, usb.DescConfig, 0, 0, // wTotalLength below
		1,    // bNumInterfaces
		1,    // bConfigurationValue
		0,    // iConfiguration
		0xa0, // bus powered, remote wake-up
		50,   // 100 mA
		// interface 0
		9, usb.DescInterface, 0, 0,
		1,          // bNumEndpoints
		3, 0, 0, 0, // HID, no boot subclass (absolute reports), no protocol, iInterface
		// HID descriptor
		9, descHID, 0x01, 0x01, // bcdHID 1.01
		0, 1, descReport, byte(len(ReportDescriptor)), byte(len(ReportDescriptor) >> 8),
		// endpoint 1 IN, interrupt, 8 bytes, every 10 ms (QEMU's tablet
		// polls at bInterval 0x0a too)
		7, usb.DescEndpoint, 0x81, 0x03, 8, 0, 0x0a,
	}
	b[2], b[3] = byte(len(b)), byte(len(b)>>8)
	return b
}()

// event is one report waiting for the guest.
type event struct {
	x, y    uint16
	buttons uint8
	dz      int16
}

// Tablet is a USB HID tablet. Its methods are safe for concurrent use:
// the host controller's transactions and the display's pointer events
// come from different goroutines.
type Tablet struct {
	clk clock.Clock

	mu       sync.Mutex
	pipe     usb.Pipe
	q        [queueLen]event
	head, n  int
	last     event // the position reported last (repeated when idle)
	idle     uint8 // SET_IDLE's rate, in 4 ms units; 0: report changes only
	protocol uint8 // 1: report protocol (the default), 0: boot
	lastSent time.Duration
	lastMask uint8 // the RFB mask of the previous pointer event
}

// New returns a tablet timed by clk (SET_IDLE's repeat rate; nil: the
// system clock).
func New(clk clock.Clock) *Tablet {
	if clk == nil {
		clk = clock.System()
	}
	t := &Tablet{clk: clk}
	t.pipe.Fn = function{t}
	t.pipe.BusReset()
	return t
}

var _ usb.Device = (*Tablet)(nil)

// BusReset implements usb.Device.
func (t *Tablet) BusReset() {
	t.mu.Lock()
	t.pipe.BusReset()
	t.mu.Unlock()
}

// Address implements usb.Device.
func (t *Tablet) Address() uint8 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pipe.Address()
}

// Transfer implements usb.Device.
func (t *Tablet) Transfer(pid, ep uint8, data []byte) (int, usb.Status) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pipe.Transfer(pid, ep, data)
}

// Scale maps position v in a span of n pixels to 0..AbsMax (QEMU
// ui/input.c qemu_input_scale_axis over 0..n-1, as ui/vnc.c passes it).
func Scale(v, n int) uint16 {
	if n <= 1 {
		return AbsMax / 2
	}
	v = max(0, min(v, n-1))
	return uint16(int64(v) * AbsMax / int64(n-1))
}

// PointerEvent takes an absolute position in a w×h picture and RFB's
// button mask (display.InputSink's meaning: bit 0 left, 1 middle, 2
// right, 3 wheel up, 4 wheel down) and queues a report.
func (t *Tablet) PointerEvent(x, y, w, h int, mask uint8) {
	t.mu.Lock()
	defer t.mu.Unlock()
	// HID buttons: 1 left, 2 right, 3 middle (QEMU hid.c's bit order).
	e := event{x: Scale(x, w), y: Scale(y, h), buttons: mask&1 | (mask&4)>>1 | (mask&2)<<1}
	prev := t.last
	if t.n > 0 {
		prev = t.q[(t.head+t.n-1)%queueLen]
	}
	// The wheel: one step per press of RFB's wheel buttons. HID's wheel
	// counts up as positive (QEMU hid.c inverts its dz for the report).
	pressed := mask &^ t.lastMask
	t.lastMask = mask
	if pressed&0x08 != 0 {
		e.dz++
	}
	if pressed&0x10 != 0 {
		e.dz--
	}
	sameWay := e.dz == 0 || prev.dz == 0 || (e.dz > 0) == (prev.dz > 0)
	if t.n > 0 && (t.n == queueLen || prev.buttons == e.buttons && sameWay) {
		// Coalesce into the newest: the position is absolute, only
		// button changes and wheel reversals need a report of their own.
		i := (t.head + t.n - 1) % queueLen
		e.dz = max(-127, min(127, t.q[i].dz+e.dz))
		t.q[i] = e
		return
	}
	if t.n == 0 && e.dz == 0 && e.x == prev.x && e.y == prev.y && e.buttons == prev.buttons {
		return
	}
	t.q[(t.head+t.n)%queueLen] = e
	t.n++
}

// Pending reports how many reports wait for the guest.
func (t *Tablet) Pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

func (t *Tablet) report(dst []byte, e event) int {
	var r [ReportLen]byte
	r[0] = e.buttons
	r[1], r[2] = byte(e.x), byte(e.x>>8)
	r[3], r[4] = byte(e.y), byte(e.y>>8)
	r[5] = byte(int8(e.dz))
	return copy(dst, r[:])
}

// interruptIn is endpoint 1: the oldest waiting report, or the last one
// again once the idle period passed (SET_IDLE), else NAK (HID 1.11
// §7.2.4).
func (t *Tablet) interruptIn(data []byte) (int, usb.Status) {
	now := t.clk.Now()
	if t.n == 0 {
		if t.idle == 0 || now-t.lastSent < time.Duration(t.idle)*4*time.Millisecond {
			return 0, usb.NAK
		}
		t.last.dz = 0
		t.lastSent = now
		return t.report(data, t.last), usb.ACK
	}
	e := t.q[t.head]
	t.head = (t.head + 1) % queueLen
	t.n--
	t.last = e
	t.lastSent = now
	return t.report(data, e), usb.ACK
}

// function is the tablet's usb.Function (called with t.mu held).
type function struct{ t *Tablet }

func (f function) DeviceDescriptor() []byte { return deviceDesc }
func (f function) ConfigDescriptor() []byte { return configDesc }

func (f function) String(i uint8) (string, bool) {
	switch i {
	case 1:
		return Manufacturer, true
	case 2:
		return Product, true
	case 3:
		return Serial, true
	}
	return "", false
}

func (f function) Reset() {
	t := f.t
	t.head, t.n = 0, 0
	t.idle = 0
	t.protocol = 1
	t.last.dz = 0
}

func (f function) Endpoint(pid, ep uint8, data []byte) (int, usb.Status) {
	if ep != 1 || pid != usb.PIDIn {
		return 0, usb.Stall
	}
	return f.t.interruptIn(data)
}

func (f function) Request(s usb.Setup, data []byte) (int, bool) {
	t := f.t
	// Requests to interface 0 only.
	if s.RequestType&0x1f != 1 || s.Index != 0 {
		return 0, false
	}
	switch {
	case s.RequestType == 0x81 && s.Request == usb.ReqGetDescriptor:
		switch uint8(s.Value >> 8) {
		case descReport:
			return copy(data, ReportDescriptor), true
		case descHID:
			return copy(data, configDesc[18:27]), true
		}
	case s.RequestType == 0xa1 && s.Request == reqGetReport:
		if s.Value>>8 != 1 { // input reports only
			return 0, false
		}
		return t.report(data, t.current()), true
	case s.RequestType == 0xa1 && s.Request == reqGetIdle:
		return copy(data, []byte{t.idle}), true
	case s.RequestType == 0x21 && s.Request == reqSetIdle:
		t.idle = uint8(s.Value >> 8)
		t.lastSent = t.clk.Now()
		return 0, true
	case s.RequestType == 0xa1 && s.Request == reqGetProtocol:
		return copy(data, []byte{t.protocol}), true
	case s.RequestType == 0x21 && s.Request == reqSetProtocol:
		if s.Value > 1 {
			return 0, false
		}
		t.protocol = uint8(s.Value)
		return 0, true
	}
	return 0, false
}

// current is the state a GET_REPORT returns: the newest queued, else the
// last reported (without its wheel motion).
func (t *Tablet) current() event {
	if t.n > 0 {
		return t.q[(t.head+t.n-1)%queueLen]
	}
	e := t.last
	e.dz = 0
	return e
}

// StateVersion is the version of the tablet's snapshot record.
const StateVersion = 1

// RecordName names the tablet's records.
const RecordName = "usb-tablet"

// Snapshot saves the control pipe, the idle rate and protocol, and the
// reports waiting.
func (t *Tablet) Snapshot() ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var w savestate.Writer
	t.pipe.WriteState(&w)
	w.U8(t.idle)
	w.U8(t.protocol)
	writeEvent(&w, t.last)
	w.U8(uint8(t.n))
	for i := range t.n {
		writeEvent(&w, t.q[(t.head+i)%queueLen])
	}
	return savestate.Record(RecordName, StateVersion, w.Out()), nil
}

func writeEvent(w *savestate.Writer, e event) {
	w.U16(e.x)
	w.U16(e.y)
	w.U8(e.buttons)
	w.U16(uint16(e.dz))
}

func readEvent(r *savestate.Reader) event {
	e := event{x: r.U16(), y: r.U16(), buttons: r.U8(), dz: int16(r.U16())}
	if e.x > AbsMax || e.y > AbsMax || e.buttons > 7 || e.dz < -127 || e.dz > 127 {
		r.Fail(savestate.ErrFormat)
	}
	return e
}

// Restore loads a Snapshot record; a malformed one changes nothing.
func (t *Tablet) Restore(b []byte) error {
	_, r, err := savestate.Open(b, RecordName, StateVersion)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	pipe := usb.Pipe{Fn: t.pipe.Fn}
	pipe.ReadState(r)
	idle, proto := r.U8(), r.U8()
	last := readEvent(r)
	n := int(r.U8())
	if n > queueLen {
		r.Fail(savestate.ErrFormat)
	}
	var q [queueLen]event
	for i := 0; i < n && r.Err() == nil; i++ {
		q[i] = readEvent(r)
	}
	if proto > 1 {
		r.Fail(savestate.ErrFormat)
	}
	if err := r.Done(); err != nil {
		return err
	}
	t.pipe = pipe
	t.idle, t.protocol, t.last = idle, proto, last
	t.q, t.head, t.n = q, 0, n
	t.lastSent = t.clk.Now()
	return nil
}

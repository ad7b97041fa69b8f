package i8042

import (
	"testing"

	"godm/devices"
	"godm/devices/devicetest"
	"godm/internal/testfake"
)

type rig struct {
	t          *testing.T
	c          *Controller
	kbd, mouse *testfake.Recorder
	resets     int
}

func newRig(t *testing.T) *rig {
	r := &rig{t: t, kbd: &testfake.Recorder{}, mouse: &testfake.Recorder{}}
	r.c = New(Config{KeyboardIRQ: r.kbd, MouseIRQ: r.mouse, Reset: ResetFunc(func() { r.resets++ })})
	return r
}

func (r *rig) out(port uint64, v uint8) {
	r.c.Write(devices.Access{Addr: port, Size: 1}, uint64(v))
}

func (r *rig) in(port uint64) uint8 { return uint8(r.c.Read(devices.Access{Addr: port, Size: 1})) }

// reads drains n bytes from the data port, checking OBF before each.
func (r *rig) reads(n int) []byte {
	r.t.Helper()
	var b []byte
	for i := 0; i < n; i++ {
		if r.in(StatusPort)&statOBF == 0 {
			r.t.Fatalf("output buffer empty after %d of %d bytes (got % x)", i, n, b)
		}
		b = append(b, r.in(DataPort))
	}
	if s := r.in(StatusPort); s&statOBF != 0 {
		r.t.Fatalf("output buffer still full (status %#x) after % x", s, b)
	}
	return b
}

func TestController_Commands(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cmd   uint8
		data  []uint8 // written to 0x60 after cmd
		want  []byte
		after uint8 // status after draining
	}{
		{"self test", 0xaa, nil, []byte{0x55}, 0x1c},
		{"read command byte", 0x20, nil, []byte{0x03}, 0x18},
		{"keyboard interface test", 0xab, nil, []byte{0x00}, 0x18},
		{"mouse interface test", 0xa9, nil, []byte{0x00}, 0x18},
		{"read input port", 0xc0, nil, []byte{0x80}, 0x18},
		// Sampled before the reply fills the buffer: reset|A20|0xcc, no OBF.
		{"read output port", 0xd0, nil, []byte{0xcf}, 0x18},
		{"write output buffer", 0xd2, []uint8{0x42}, []byte{0x42}, 0x18},
		{"write mouse output buffer", 0xd3, []uint8{0x43}, []byte{0x43}, 0x18},
		{"mouse reset", 0xd4, []uint8{0xff}, []byte{0xfa, 0xaa, 0x00}, 0x18},
		{"mouse type", 0xd4, []uint8{0xf2}, []byte{0xfa, 0x00}, 0x18},
		{"unknown command", 0xa1, nil, nil, 0x18},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			r.out(StatusPort, tc.cmd)
			for _, d := range tc.data {
				r.out(DataPort, d)
			}
			if got := r.reads(len(tc.want)); string(got) != string(tc.want) {
				t.Errorf("replies = % x, want % x", got, tc.want)
			}
			if got := r.in(StatusPort); got != tc.after {
				t.Errorf("status = %#x, want %#x", got, tc.after)
			}
		})
	}
}

func TestController_KeyboardCommands(t *testing.T) {
	for _, tc := range []struct {
		name  string
		bytes []uint8
		want  []byte
	}{
		{"reset", []uint8{0xff}, []byte{0xfa, 0xaa}},
		{"identify", []uint8{0xf2}, []byte{0xfa, 0xab, 0x83}},
		{"set LEDs", []uint8{0xed, 0x07}, []byte{0xfa, 0xfa}},
		{"get scan code set", []uint8{0xf0, 0x00}, []byte{0xfa, 0xfa, 0x02}},
		{"set scan code set 3", []uint8{0xf0, 0x03, 0xf0, 0x00}, []byte{0xfa, 0xfa, 0xfa, 0xfa, 0x03}},
		{"bad scan code set", []uint8{0xf0, 0x09}, []byte{0xfa, 0xfe}},
		{"echo", []uint8{0xee}, []byte{0xee}},
		{"unknown", []uint8{0x42}, []byte{0xfe}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			var got []byte
			for _, b := range tc.bytes {
				r.out(DataPort, b)
				for r.in(StatusPort)&statOBF != 0 {
					got = append(got, r.in(DataPort))
				}
			}
			if string(got) != string(tc.want) {
				t.Errorf("replies = % x, want % x", got, tc.want)
			}
		})
	}
}

func TestController_IRQs(t *testing.T) {
	r := newRig(t)
	r.out(StatusPort, 0xaa)
	if !r.kbd.Level() || r.mouse.Level() {
		t.Errorf("after self test: kbd %v mouse %v, want true false", r.kbd.Level(), r.mouse.Level())
	}
	r.in(DataPort)
	if r.kbd.Level() {
		t.Error("IRQ 1 still high after reading the reply")
	}
	r.out(StatusPort, 0xd4)
	r.out(DataPort, 0xf2)
	if r.kbd.Level() || !r.mouse.Level() {
		t.Errorf("after mouse command: kbd %v mouse %v, want false true", r.kbd.Level(), r.mouse.Level())
	}
	if got, want := r.in(StatusPort), uint8(0x3d); got != want {
		t.Errorf("status = %#x, want %#x (mouse OBF)", got, want)
	}
	// Clearing the mouse interrupt enable drops IRQ 12 at once.
	r.out(StatusPort, 0x60)
	r.out(DataPort, 0x01)
	if r.mouse.Level() {
		t.Error("IRQ 12 high with the mouse interrupt disabled")
	}
	r.in(DataPort)
	r.in(DataPort)
	r.c.Reset()
	if r.kbd.Level() || r.mouse.Level() {
		t.Error("lines high after Reset")
	}
}

func TestController_ResetPulse(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps func(r *rig)
		want  int
	}{
		{"0xfe", func(r *rig) { r.out(StatusPort, 0xfe) }, 1},
		{"0xf0 pulses all low bits", func(r *rig) { r.out(StatusPort, 0xf0) }, 1},
		{"0xff pulses nothing", func(r *rig) { r.out(StatusPort, 0xff) }, 0},
		{"0xf1 keeps bit 0", func(r *rig) { r.out(StatusPort, 0xf1) }, 0},
		{"output port bit 0 clear", func(r *rig) { r.out(StatusPort, 0xd1); r.out(DataPort, 0xfe) }, 1},
		{"output port bit 0 set", func(r *rig) { r.out(StatusPort, 0xd1); r.out(DataPort, 0xdf) }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			tc.steps(r)
			if r.resets != tc.want {
				t.Errorf("reset requests = %d, want %d", r.resets, tc.want)
			}
			if got := r.c.Stats().ResetRequests; got != uint64(tc.want) {
				t.Errorf("Stats.ResetRequests = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestController_Scancodes(t *testing.T) {
	r := newRig(t)
	r.c.PutScancodes([]byte{0x1c, 0xf0, 0x1c}) // 'A' press and release, set 2
	if got, want := r.reads(3), []byte{0x1c, 0xf0, 0x1c}; string(got) != string(want) {
		t.Errorf("untranslated = % x, want % x", got, want)
	}
	r.out(StatusPort, 0x60)
	r.out(DataPort, 0x43) // translate to set 1
	r.c.PutScancodes([]byte{0x1c, 0xf0, 0x1c})
	if got, want := r.reads(2), []byte{0x1e, 0x9e}; string(got) != string(want) {
		t.Errorf("translated = % x, want % x", got, want)
	}
	// A keyboard command's reply overtakes queued scan codes.
	r.c.PutScancodes([]byte{0x1c})
	r.out(DataPort, 0xee)
	if got, want := r.reads(2), []byte{0xee, 0x1e}; string(got) != string(want) {
		t.Errorf("reply then code = % x, want % x", got, want)
	}
	// Scanning disabled (0xf5): key presses are dropped.
	r.out(DataPort, 0xf5)
	r.reads(1)
	r.c.PutScancodes([]byte{0x1c})
	if s := r.in(StatusPort); s&statOBF != 0 {
		t.Errorf("status = %#x: a scan code arrived with scanning disabled", s)
	}
	// The queue holds 16 bytes.
	r.out(DataPort, 0xf4)
	r.reads(1)
	r.out(StatusPort, 0x60)
	r.out(DataPort, 0x03)
	codes := make([]byte, 20)
	for i := range codes {
		codes[i] = byte(i + 1)
	}
	r.c.PutScancodes(codes)
	if got := r.reads(16); string(got) != string(codes[:16]) {
		t.Errorf("queue = % x, want % x", got, codes[:16])
	}
}

func TestController_MouseEvent(t *testing.T) {
	r := newRig(t)
	r.c.MouseEvent(5, 5, 0, 1) // reporting off: ignored
	if s := r.in(StatusPort); s&statOBF != 0 {
		t.Fatalf("status = %#x: packet before the guest enabled reporting", s)
	}
	r.out(StatusPort, 0xd4)
	r.out(DataPort, 0xf4)
	r.reads(1)
	r.c.MouseEvent(3, 2, 0, 1)
	if got, want := r.reads(3), []byte{0x29, 0x03, 0xfe}; string(got) != string(want) {
		t.Errorf("packet = % x, want % x (left button, dx 3, dy -2)", got, want)
	}
	r.c.MouseEvent(200, 0, 0, 0)
	if got, want := r.reads(6), []byte{0x08, 127, 0, 0x08, 73, 0}; string(got) != string(want) {
		t.Errorf("split packets = % x, want % x", got, want)
	}
}

func TestController_Conformance(t *testing.T) {
	devicetest.Run(t, func() devices.Handler { return New(Config{}) }, 8)
}

func TestController_ZeroAlloc(t *testing.T) {
	r := newRig(t)
	st := devices.Access{Addr: StatusPort, Size: 1}
	dt := devices.Access{Addr: DataPort, Size: 1}
	allocs := testing.AllocsPerRun(1000, func() {
		r.c.Write(st, 0xd4)
		r.c.Write(dt, 0xf2)
		r.c.Read(st)
		r.c.Read(dt)
		r.c.Read(dt)
		r.c.Write(st, 0x20)
		r.c.Read(dt)
	})
	if allocs != 0 {
		t.Errorf("guest access allocs = %v, want 0", allocs)
	}
}

func TestRegister(t *testing.T) {
	pio := devices.NewSpace("pio")
	c := New(Config{})
	if err := Register(pio, c); err != nil {
		t.Fatal(err)
	}
	pio.Write(StatusPort, 1, 0, 0xaa)
	if got, want := pio.Read(DataPort, 1, 0), uint64(0x55); got != want {
		t.Errorf("self test through the bus = %#x, want %#x", got, want)
	}
	if err := Register(pio, c); err == nil {
		t.Error("second Register succeeded")
	}
}

func checkInvariants(t *testing.T, c *Controller, step int) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	obf := c.status&statOBF != 0
	mobf := c.status&statMouseOBF != 0
	if mobf && !obf {
		t.Fatalf("step %d: mouse OBF without OBF: status %#x", step, c.status)
	}
	// A line may only be high for its own full buffer. (It may stay high
	// after 0xad disables the port: QEMU recomputes the lines on the next
	// buffer change, not on the command.)
	if c.kbdLevel && !(obf && !mobf) || c.mouseLevel && !(obf && mobf) {
		t.Fatalf("step %d: lines kbd %v mouse %v with status %#x",
			step, c.kbdLevel, c.mouseLevel, c.status)
	}
	if !obf && c.devPendingLocked() != 0 {
		t.Fatalf("step %d: data pending %#x but output buffer empty", step, c.devPendingLocked())
	}
	for _, q := range []*queue{&c.kbd.q, &c.mouse.q} {
		if q.n < 0 || q.n > queueSize || q.nRepl > 3 || q.replyHead > q.nRepl {
			t.Fatalf("step %d: queue state n=%d repl=%d/%d", step, q.n, q.replyHead, q.nRepl)
		}
	}
	if got, want := c.pending&pendKbd != 0, c.kbd.q.count() > 0; got != want {
		t.Fatalf("step %d: keyboard pending %v with %d bytes queued", step, got, c.kbd.q.count())
	}
	if got, want := c.pending&pendAux != 0, c.mouse.q.count() > 0; got != want {
		t.Fatalf("step %d: mouse pending %v with %d bytes queued", step, got, c.mouse.q.count())
	}
}

// FuzzController interprets the input as a script (two bytes per step) of
// port accesses and host input, checking invariants after each step.
func FuzzController(f *testing.F) {
	f.Add([]byte{0x00, 0xaa, 0x80, 0x00, 0x01, 0xff, 0x81, 0x00, 0x81, 0x00})
	f.Add([]byte{0x00, 0xd4, 0x01, 0xf4, 0x81, 0x00, 0xc0, 0x05, 0x81, 0x00})
	f.Add([]byte{0x00, 0x60, 0x01, 0x43, 0xd0, 0x1c, 0x00, 0xad, 0x01, 0xf2, 0x81, 0x00})
	f.Fuzz(func(t *testing.T, script []byte) {
		c := New(Config{Reset: ResetFunc(func() {})})
		for i := 0; i+1 < len(script); i += 2 {
			op, v := script[i], script[i+1]
			switch op >> 6 {
			case 0:
				port := uint64(StatusPort)
				if op&1 != 0 {
					port = DataPort
				}
				c.Write(devices.Access{Addr: port, Size: 1}, uint64(v))
			case 1:
				c.Read(devices.Access{Addr: uint64(StatusPort) &^ uint64(op&1) << 2, Size: 1})
			case 2:
				c.Read(devices.Access{Addr: DataPort, Size: 1})
			case 3:
				switch op & 3 {
				case 0:
					c.PutScancodes([]byte{v, 0xf0, v})
				case 1:
					c.MouseEvent(int(int8(v)), int(int8(op)), int(v&3)-1, v>>5)
				case 2:
					c.Reset()
				case 3:
					c.Write(devices.Access{Addr: uint64(v) & 7, Size: 1 << (op >> 4 & 3)}, uint64(v))
				}
			}
			checkInvariants(t, c, i/2)
		}
	})
}

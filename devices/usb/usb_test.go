package usb

import (
	"bytes"
	"encoding/binary"
	"testing"

	"godm/devices/savestate"
)

type fakeFn struct {
	resets int
	out    []byte // the last class OUT data stage
}

func (f *fakeFn) DeviceDescriptor() []byte { return []byte{18, 1, 0x10, 1, 0, 0, 0, 8} }
func (f *fakeFn) ConfigDescriptor() []byte { return bytes.Repeat([]byte{0xcc}, 20) }
func (f *fakeFn) String(i uint8) (string, bool) {
	return "ab", i == 1
}
func (f *fakeFn) Request(s Setup, data []byte) (int, bool) {
	if s.In() {
		return copy(data, "class"), true
	}
	f.out = append([]byte(nil), data...)
	return 0, s.Request == 0x42
}
func (f *fakeFn) Endpoint(pid, ep uint8, data []byte) (int, Status) { return copy(data, "ep"), ACK }
func (f *fakeFn) Reset()                                            { f.resets++ }

func setup(rt, req uint8, val, idx, n uint16) []byte {
	b := []byte{rt, req, 0, 0, 0, 0, 0, 0}
	binary.LittleEndian.PutUint16(b[2:], val)
	binary.LittleEndian.PutUint16(b[4:], idx)
	binary.LittleEndian.PutUint16(b[6:], n)
	return b
}

func TestSetAddressAfterStatus(t *testing.T) {
	p := &Pipe{Fn: &fakeFn{}}
	if _, st := p.Transfer(PIDSetup, 0, setup(0, ReqSetAddress, 9, 0, 0)); st != ACK {
		t.Fatal(st)
	}
	if p.Address() != 0 {
		t.Fatal("address changed before the status stage")
	}
	if _, st := p.Transfer(PIDIn, 0, nil); st != ACK || p.Address() != 9 {
		t.Fatalf("status %v, address %d", st, p.Address())
	}
	// An address above 127 stalls at the status stage.
	p.Transfer(PIDSetup, 0, setup(0, ReqSetAddress, 200, 0, 0))
	if _, st := p.Transfer(PIDIn, 0, nil); st != Stall || p.Address() != 9 {
		t.Fatalf("status %v, address %d", st, p.Address())
	}
}

func TestControlStages(t *testing.T) {
	f := &fakeFn{}
	p := &Pipe{Fn: f}
	// A SETUP of another length stalls what follows.
	p.Transfer(PIDSetup, 0, []byte{0x80, 6})
	if _, st := p.Transfer(PIDIn, 0, make([]byte, 8)); st != Stall {
		t.Fatal("short SETUP not stalled")
	}
	// A SETUP aborts a transfer in progress.
	p.Transfer(PIDSetup, 0, setup(0x80, ReqGetDescriptor, DescConfig<<8, 0, 20))
	p.Transfer(PIDIn, 0, make([]byte, 8))
	p.Transfer(PIDSetup, 0, setup(0x80, ReqGetDescriptor, DescDevice<<8, 0, 8))
	b := make([]byte, 8)
	if n, st := p.Transfer(PIDIn, 0, b); st != ACK || n != 8 || b[0] != 18 {
		t.Fatalf("after abort: %d %v % x", n, st, b)
	}
	if _, st := p.Transfer(PIDOut, 0, nil); st != ACK {
		t.Fatal("status OUT")
	}
	// A class OUT request with a data stage.
	p.Transfer(PIDSetup, 0, setup(0x21, 0x42, 0, 0, 10))
	p.Transfer(PIDOut, 0, []byte("01234567"))
	if _, st := p.Transfer(PIDOut, 0, []byte("89")); st != ACK || string(f.out) != "0123456789" {
		t.Fatalf("%v %q", st, f.out)
	}
	if _, st := p.Transfer(PIDIn, 0, nil); st != ACK {
		t.Fatal("status IN")
	}
	// More data than wLength stalls; so does an OUT data stage above
	// MaxControl.
	p.Transfer(PIDSetup, 0, setup(0x21, 0x42, 0, 0, 4))
	if _, st := p.Transfer(PIDOut, 0, []byte("01234567")); st != Stall {
		t.Fatal("overlong data stage taken")
	}
	p.Transfer(PIDSetup, 0, setup(0x21, 0x42, 0, 0, MaxControl+1))
	if _, st := p.Transfer(PIDOut, 0, []byte("0")); st != Stall {
		t.Fatal("data stage above MaxControl taken")
	}
	// A device-to-host request without a data stage ends with an IN
	// status stage (a no-data control transfer).
	p.Transfer(PIDSetup, 0, setup(0x80, ReqGetConfiguration, 0, 0, 0))
	if _, st := p.Transfer(PIDOut, 0, nil); st != Stall {
		t.Fatal("OUT status of a no-data transfer taken")
	}
	p.Transfer(PIDSetup, 0, setup(0x80, ReqGetConfiguration, 0, 0, 0))
	if _, st := p.Transfer(PIDIn, 0, nil); st != ACK {
		t.Fatal("IN status of a no-data GET_CONFIGURATION")
	}
	// Unknown standard requests stall.
	p.Transfer(PIDSetup, 0, setup(0x80, 0x33, 0, 0, 2))
	if _, st := p.Transfer(PIDIn, 0, b); st != Stall {
		t.Fatal("unknown request answered")
	}
}

func TestConfigurationAndEndpoints(t *testing.T) {
	f := &fakeFn{}
	p := &Pipe{Fn: f}
	b := make([]byte, 8)
	if _, st := p.Transfer(PIDIn, 1, b); st != Stall {
		t.Fatal("endpoint 1 answers unconfigured")
	}
	p.Transfer(PIDSetup, 0, setup(0, ReqSetConfiguration, 1, 0, 0))
	p.Transfer(PIDIn, 0, nil)
	if !p.Configured() || f.resets != 1 {
		t.Fatalf("configured %v, resets %d", p.Configured(), f.resets)
	}
	if n, st := p.Transfer(PIDIn, 1, b); st != ACK || n != 2 {
		t.Fatal("endpoint 1 after SET_CONFIGURATION")
	}
	// Halt endpoint 0x81, then GET_STATUS shows it and IN stalls.
	p.Transfer(PIDSetup, 0, setup(2, ReqSetFeature, 0, 0x81, 0))
	p.Transfer(PIDIn, 0, nil)
	if _, st := p.Transfer(PIDIn, 1, b); st != Stall {
		t.Fatal("halted endpoint answers")
	}
	p.Transfer(PIDSetup, 0, setup(0x82, ReqGetStatus, 0, 0x81, 2))
	if n, _ := p.Transfer(PIDIn, 0, b); n != 2 || b[0] != 1 {
		t.Fatalf("endpoint status % x", b[:n])
	}
	p.Transfer(PIDOut, 0, nil)
	p.Transfer(PIDSetup, 0, setup(2, ReqClearFeature, 0, 0x81, 0))
	p.Transfer(PIDIn, 0, nil)
	if _, st := p.Transfer(PIDIn, 1, b); st != ACK {
		t.Fatal("cleared halt still stalls")
	}
	// Configuration 2 does not exist.
	p.Transfer(PIDSetup, 0, setup(0, ReqSetConfiguration, 2, 0, 0))
	if _, st := p.Transfer(PIDIn, 0, nil); st != Stall {
		t.Fatal("configuration 2 taken")
	}
	// Bus reset: unconfigured, address 0.
	p.BusReset()
	if p.Configured() || p.Address() != 0 {
		t.Fatal("bus reset kept state")
	}
}

func TestStateRoundTrip(t *testing.T) {
	p := &Pipe{Fn: &fakeFn{}}
	p.Transfer(PIDSetup, 0, setup(0, ReqSetAddress, 3, 0, 0))
	p.Transfer(PIDIn, 0, nil)
	p.Transfer(PIDSetup, 0, setup(0x80, ReqGetDescriptor, DescConfig<<8, 0, 20))
	b := make([]byte, 8)
	p.Transfer(PIDIn, 0, b)
	var w savestate.Writer
	p.WriteState(&w)
	q := &Pipe{Fn: &fakeFn{}}
	r := savestate.NewReader(w.Out())
	q.ReadState(r)
	if err := r.Done(); err != nil {
		t.Fatal(err)
	}
	b1, b2 := make([]byte, 8), make([]byte, 8)
	n1, _ := p.Transfer(PIDIn, 0, b1)
	n2, _ := q.Transfer(PIDIn, 0, b2)
	if q.Address() != 3 || n1 != n2 || !bytes.Equal(b1, b2) {
		t.Fatalf("restored pipe differs: %d % x vs %d % x", n1, b1, n2, b2)
	}
	// A record with a position past its data is refused.
	out := w.Out()
	bad := bytes.Clone(out)
	binary.LittleEndian.PutUint32(bad[len(bad)-4-20-4:], 100)
	z := &Pipe{Fn: &fakeFn{}}
	r = savestate.NewReader(bad)
	z.ReadState(r)
	if r.Err() == nil || z.Address() != 0 {
		t.Fatal("bad position taken")
	}
}

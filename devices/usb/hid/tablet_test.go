package hid

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"godm/devices/usb"
	"godm/internal/testfake"
)

// ctl runs a whole control transfer on t's endpoint 0 with 8-byte
// packets and returns the IN data and whether every stage was acked.
func ctl(t *Tablet, s usb.Setup, out []byte) ([]byte, bool) {
	var b [8]byte
	b[0], b[1] = s.RequestType, s.Request
	binary.LittleEndian.PutUint16(b[2:], s.Value)
	binary.LittleEndian.PutUint16(b[4:], s.Index)
	binary.LittleEndian.PutUint16(b[6:], s.Length)
	if _, st := t.Transfer(usb.PIDSetup, 0, b[:]); st != usb.ACK {
		return nil, false
	}
	var data []byte
	if s.In() {
		for len(data) < int(s.Length) {
			var p [8]byte
			n, st := t.Transfer(usb.PIDIn, 0, p[:])
			if st != usb.ACK {
				return data, false
			}
			data = append(data, p[:n]...)
			if n < 8 {
				break
			}
		}
		_, st := t.Transfer(usb.PIDOut, 0, nil)
		return data, st == usb.ACK
	}
	for len(out) > 0 {
		k := min(8, len(out))
		if _, st := t.Transfer(usb.PIDOut, 0, out[:k]); st != usb.ACK {
			return nil, false
		}
		out = out[k:]
	}
	_, st := t.Transfer(usb.PIDIn, 0, nil)
	return nil, st == usb.ACK
}

func configured(t *testing.T) (*Tablet, *testfake.Clock) {
	t.Helper()
	clk := &testfake.Clock{}
	tab := New(clk)
	if _, ok := ctl(tab, usb.Setup{Request: usb.ReqSetAddress, Value: 7}, nil); !ok || tab.Address() != 7 {
		t.Fatalf("SET_ADDRESS: address %d", tab.Address())
	}
	if _, ok := ctl(tab, usb.Setup{Request: usb.ReqSetConfiguration, Value: 1}, nil); !ok {
		t.Fatal("SET_CONFIGURATION")
	}
	return tab, clk
}

func poll(tab *Tablet) ([]byte, usb.Status) {
	var b [8]byte
	n, st := tab.Transfer(usb.PIDIn, 1, b[:])
	return b[:n], st
}

func TestDescriptors(t *testing.T) {
	tab := New(nil)
	dev, ok := ctl(tab, usb.Setup{RequestType: 0x80, Request: usb.ReqGetDescriptor, Value: usb.DescDevice << 8, Length: 64}, nil)
	if !ok || len(dev) != 18 || dev[0] != 18 || dev[7] != 8 || dev[17] != 1 {
		t.Fatalf("device descriptor %v % x", ok, dev)
	}
	cfg, ok := ctl(tab, usb.Setup{RequestType: 0x80, Request: usb.ReqGetDescriptor, Value: usb.DescConfig << 8, Length: 9}, nil)
	if !ok || len(cfg) != 9 {
		t.Fatalf("config header %v % x", ok, cfg)
	}
	total := binary.LittleEndian.Uint16(cfg[2:])
	cfg, _ = ctl(tab, usb.Setup{RequestType: 0x80, Request: usb.ReqGetDescriptor, Value: usb.DescConfig << 8, Length: total}, nil)
	if len(cfg) != int(total) {
		t.Fatalf("config %d bytes, wTotalLength %d", len(cfg), total)
	}
	// Walk the descriptors: lengths chain to the end; one HID interface,
	// its HID descriptor naming the report descriptor's length, one
	// interrupt IN endpoint.
	var kinds []byte
	for i := 0; i < len(cfg); i += int(cfg[i]) {
		if cfg[i] < 2 || i+int(cfg[i]) > len(cfg) {
			t.Fatalf("descriptor at %d: length %d", i, cfg[i])
		}
		d := cfg[i : i+int(cfg[i])]
		kinds = append(kinds, d[1])
		switch d[1] {
		case usb.DescInterface:
			if d[5] != 3 || d[4] != 1 {
				t.Errorf("interface % x", d)
			}
		case descHID:
			if d[6] != descReport || int(binary.LittleEndian.Uint16(d[7:])) != len(ReportDescriptor) {
				t.Errorf("HID descriptor % x", d)
			}
		case usb.DescEndpoint:
			if d[2] != 0x81 || d[3] != 3 || d[4] < ReportLen {
				t.Errorf("endpoint % x", d)
			}
		}
	}
	if !bytes.Equal(kinds, []byte{usb.DescConfig, usb.DescInterface, descHID, usb.DescEndpoint}) {
		t.Errorf("descriptor kinds % x", kinds)
	}
	// Strings: language 0x0409, then the product.
	s0, _ := ctl(tab, usb.Setup{RequestType: 0x80, Request: usb.ReqGetDescriptor, Value: usb.DescString << 8, Length: 255}, nil)
	if !bytes.Equal(s0, []byte{4, 3, 9, 4}) {
		t.Errorf("string 0 % x", s0)
	}
	s2, _ := ctl(tab, usb.Setup{RequestType: 0x80, Request: usb.ReqGetDescriptor, Value: usb.DescString<<8 | 2, Length: 255}, nil)
	if !bytes.Equal(s2, usb.StringDescriptor(Product)) || int(s2[0]) != 2+2*len(Product) {
		t.Errorf("product string % x", s2)
	}
	if _, ok := ctl(tab, usb.Setup{RequestType: 0x80, Request: usb.ReqGetDescriptor, Value: usb.DescString<<8 | 9, Length: 255}, nil); ok {
		t.Error("string 9 answered")
	}
	rep, ok := ctl(tab, usb.Setup{RequestType: 0x81, Request: usb.ReqGetDescriptor, Value: descReport << 8, Length: 200}, nil)
	if !ok || !bytes.Equal(rep, ReportDescriptor) {
		t.Errorf("report descriptor %v % x", ok, rep)
	}
}

// TestReportDescriptorMeaning parses the report descriptor's short items
// (HID 1.11 §6.2.2.2) and checks the input report it describes: 3
// buttons, 5 bits of padding, X and Y 16-bit absolute in 0..0x7fff, an
// 8-bit relative wheel: 48 bits, ReportLen bytes.
func TestReportDescriptorMeaning(t *testing.T) {
	type field struct {
		page, usage   uint32
		size, count   uint32
		min, max      int32
		constant, rel bool
	}
	var (
		fields            []field
		page, size, count uint32
		lmin, lmax        int32
		usages            []uint32
		depth             int
	)
	d := ReportDescriptor
	for i := 0; i < len(d); {
		prefix := d[i]
		n := int(prefix & 3)
		if n == 3 {
			n = 4
		}
		if i+1+n > len(d) {
			t.Fatalf("item at %d runs past the end", i)
		}
		var u uint32
		for k := 0; k < n; k++ {
			u |= uint32(d[i+1+k]) << (8 * k)
		}
		s := int32(u)
		switch n {
		case 1:
			s = int32(int8(u))
		case 2:
			s = int32(int16(u))
		}
		switch prefix &^ 3 {
		case 0x04:
			page = u
		case 0x08:
			usages = append(usages, u)
		case 0x18: // usage minimum
			usages = append(usages, u|0x80000000)
		case 0x28:
		case 0x14:
			lmin = s
		case 0x24:
			lmax = s
		case 0x74:
			size = u
		case 0x94:
			count = u
		case 0xa0:
			depth++
			usages = nil
		case 0xc0:
			depth--
		case 0x80:
			for k := uint32(0); k < count; k++ {
				f := field{page: page, size: size, count: 1, min: lmin, max: lmax, constant: u&1 != 0, rel: u&4 != 0}
				if k < uint32(len(usages)) {
					f.usage = usages[k]
				}
				fields = append(fields, f)
			}
			usages = nil
		}
		i += 1 + n
	}
	if depth != 0 {
		t.Fatalf("collections unbalanced: %d", depth)
	}
	bits := uint32(0)
	for _, f := range fields {
		bits += f.size
	}
	if bits != ReportLen*8 {
		t.Fatalf("input report %d bits, want %d", bits, ReportLen*8)
	}
	// Fields: 3 buttons, padding, X, Y, wheel.
	if len(fields) != 3+1+2+1 {
		t.Fatalf("%d fields", len(fields))
	}
	for _, f := range fields[:3] {
		if f.page != 9 || f.size != 1 || f.rel {
			t.Errorf("button %+v", f)
		}
	}
	if !fields[3].constant || fields[3].size != 5 {
		t.Errorf("padding %+v", fields[3])
	}
	for i, want := range []uint32{0x30, 0x31} {
		f := fields[4+i]
		if f.page != 1 || f.usage != want || f.size != 16 || f.min != 0 || f.max != AbsMax || f.rel {
			t.Errorf("axis %#x: %+v", want, f)
		}
	}
	if w := fields[6]; w.usage != 0x38 || w.size != 8 || w.min != -127 || w.max != 127 || !w.rel {
		t.Errorf("wheel %+v", w)
	}
}

func TestReports(t *testing.T) {
	tab, _ := configured(t)
	if _, st := poll(tab); st != usb.NAK {
		t.Fatalf("no event: %v, want NAK", st)
	}
	// Corners of a 1024×768 screen map to 0 and 0x7fff.
	tab.PointerEvent(0, 0, 1024, 768, 0)
	tab.PointerEvent(1023, 767, 1024, 768, 0)
	r, st := poll(tab)
	if st != usb.ACK || !bytes.Equal(r, []byte{0, 0xff, 0x7f, 0xff, 0x7f, 0}) {
		t.Fatalf("corner: %v % x (moves coalesce into the newest)", st, r)
	}
	if _, st := poll(tab); st != usb.NAK {
		t.Fatal("report repeated without a change")
	}
	// A click (press, release) is two reports; right is HID button 2,
	// middle 3.
	tab.PointerEvent(10, 10, 100, 100, 1)
	tab.PointerEvent(10, 10, 100, 100, 0)
	tab.PointerEvent(10, 10, 100, 100, 4)
	tab.PointerEvent(10, 10, 100, 100, 2)
	x := Scale(10, 100)
	for i, want := range []byte{1, 0, 2, 4} {
		r, st := poll(tab)
		if st != usb.ACK || r[0] != want || binary.LittleEndian.Uint16(r[1:]) != x {
			t.Fatalf("report %d: %v % x, want buttons %d", i, st, r, want)
		}
	}
	// The wheel: one step up per press of RFB's wheel-up button.
	tab.PointerEvent(10, 10, 100, 100, 8)
	tab.PointerEvent(10, 10, 100, 100, 0)
	tab.PointerEvent(10, 10, 100, 100, 16)
	tab.PointerEvent(10, 10, 100, 100, 0)
	var dz []int8
	for {
		r, st := poll(tab)
		if st != usb.ACK {
			break
		}
		dz = append(dz, int8(r[5]))
	}
	sum := 0
	for _, v := range dz {
		sum += int(v)
	}
	if len(dz) == 0 || sum != 0 || dz[0] != 1 {
		t.Fatalf("wheel reports %v", dz)
	}
	// Out-of-range input is clamped; a zero-sized screen is the middle.
	tab.PointerEvent(-5, 99999, 100, 100, 0)
	if r, _ := poll(tab); binary.LittleEndian.Uint16(r[1:]) != 0 || binary.LittleEndian.Uint16(r[3:]) != AbsMax {
		t.Fatalf("clamped % x", r)
	}
	if Scale(3, 0) != AbsMax/2 {
		t.Fatal("Scale on an empty span")
	}
	// A flood is bounded: the queue keeps at most queueLen reports.
	for i := range 1000 {
		tab.PointerEvent(i%50, 0, 100, 100, uint8(i&1))
	}
	if n := tab.Pending(); n != queueLen {
		t.Fatalf("%d pending", n)
	}
}

func TestClassRequests(t *testing.T) {
	tab, clk := configured(t)
	tab.PointerEvent(50, 50, 101, 101, 1)
	rep, ok := ctl(tab, usb.Setup{RequestType: 0xa1, Request: reqGetReport, Value: 1 << 8, Length: 8}, nil)
	if !ok || len(rep) != ReportLen || rep[0] != 1 {
		t.Fatalf("GET_REPORT %v % x", ok, rep)
	}
	if _, ok := ctl(tab, usb.Setup{RequestType: 0xa1, Request: reqGetReport, Value: 3 << 8, Length: 8}, nil); ok {
		t.Error("feature report answered")
	}
	p, _ := ctl(tab, usb.Setup{RequestType: 0xa1, Request: reqGetProtocol, Length: 1}, nil)
	if !bytes.Equal(p, []byte{1}) {
		t.Errorf("protocol % x, want report protocol", p)
	}
	if _, ok := ctl(tab, usb.Setup{RequestType: 0x21, Request: reqSetProtocol, Value: 0}, nil); !ok {
		t.Error("SET_PROTOCOL boot")
	}
	if _, ok := ctl(tab, usb.Setup{RequestType: 0x21, Request: reqSetProtocol, Value: 2}, nil); ok {
		t.Error("SET_PROTOCOL 2 taken")
	}
	// SET_IDLE 10 (40 ms): the last report repeats once the period passed.
	if _, ok := ctl(tab, usb.Setup{RequestType: 0x21, Request: reqSetIdle, Value: 10 << 8}, nil); !ok {
		t.Fatal("SET_IDLE")
	}
	idle, _ := ctl(tab, usb.Setup{RequestType: 0xa1, Request: reqGetIdle, Length: 1}, nil)
	if !bytes.Equal(idle, []byte{10}) {
		t.Errorf("GET_IDLE % x", idle)
	}
	if _, st := poll(tab); st != usb.ACK {
		t.Fatal("queued report")
	}
	if _, st := poll(tab); st != usb.NAK {
		t.Fatal("repeat before the idle period")
	}
	clk.Advance(40 * time.Millisecond)
	if r, st := poll(tab); st != usb.ACK || r[0] != 1 {
		t.Fatalf("idle repeat %v % x", st, r)
	}
	// Requests to another interface, or unknown ones, stall.
	if _, ok := ctl(tab, usb.Setup{RequestType: 0xa1, Request: reqGetIdle, Index: 1, Length: 1}, nil); ok {
		t.Error("interface 1 answered")
	}
	if _, ok := ctl(tab, usb.Setup{RequestType: 0x21, Request: reqSetReport, Value: 2 << 8, Length: 1}, []byte{0}); ok {
		t.Error("SET_REPORT taken")
	}
}

func TestSnapshot(t *testing.T) {
	tab, _ := configured(t)
	tab.PointerEvent(1, 2, 10, 10, 1)
	tab.PointerEvent(3, 4, 10, 10, 0)
	snap, err := tab.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	other := New(&testfake.Clock{})
	if err := other.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if other.Address() != 7 || other.Pending() != 2 {
		t.Fatalf("restored address %d, %d pending", other.Address(), other.Pending())
	}
	a, _ := poll(tab)
	b, _ := poll(other)
	if !bytes.Equal(a, b) {
		t.Fatalf("% x vs % x", a, b)
	}
	fresh := New(nil)
	for i := range snap {
		if fresh.Restore(snap[:i]) == nil {
			t.Fatalf("truncated record (%d bytes) taken", i)
		}
	}
	if fresh.Address() != 0 || fresh.Pending() != 0 {
		t.Fatal("a refused record changed the tablet")
	}
}

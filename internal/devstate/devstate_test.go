package devstate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"runtime"
	"strings"
	"testing"
)

func sample() Header {
	return Header{Writer: "godm test", RAMBytes: 32 << 20, VCPUs: 2,
		Devices: []Device{{"i440fx", "i440FX"}, {"piix3", "PIIX3"}, {"serial0", "isa-serial"}}}
}

func stream(t testing.TB, h Header, payload []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Write(&b, h, payload); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestRoundTrip(t *testing.T) {
	h := sample()
	payload := bytes.Repeat([]byte("state"), 1000)
	s := stream(t, h, payload)
	// Bytes after the stream stay unread.
	r := bytes.NewReader(append(s, "tail"...))
	got, gp, err := Read(r)
	if err != nil {
		t.Fatal(err)
	}
	if got.Writer != h.Writer || got.RAMBytes != h.RAMBytes || got.VCPUs != h.VCPUs || len(got.Devices) != 3 || got.Devices[2] != h.Devices[2] {
		t.Errorf("header %+v, want %+v", got, h)
	}
	if !bytes.Equal(gp, payload) {
		t.Errorf("payload of %d bytes differs", len(gp))
	}
	if rest, _ := io.ReadAll(r); string(rest) != "tail" {
		t.Errorf("Read consumed past the stream: %q left", rest)
	}
	if err := got.Check(h); err != nil {
		t.Errorf("Check of the same machine: %v", err)
	}
}

func TestLayoutRefusals(t *testing.T) {
	h := sample()
	for _, c := range []struct {
		change func(*Header)
		want   string
	}{
		{func(x *Header) { x.RAMBytes = 64 << 20 }, "the stream is for 32 MiB of RAM, this machine has 64 MiB"},
		{func(x *Header) { x.VCPUs = 1 }, "the stream is for 2 vCPUs, this machine has 1"},
		{func(x *Header) { x.Devices = x.Devices[:2] }, "the stream has device 'serial0' (isa-serial), which this machine lacks"},
		{func(x *Header) { x.Devices = append(x.Devices, Device{"vga", "VGA"}) }, "device 'vga' (VGA) is not in the stream"},
		{func(x *Header) {
			x.Devices = []Device{{"i440fx", "i440FX"}, {"ide", "piix3-ide"}, {"serial0", "isa-serial"}}
		},
			"device 1 is 'piix3' (PIIX3) in the stream, 'ide' (piix3-ide) here"},
	} {
		here := sample()
		here.Devices = append([]Device(nil), h.Devices...)
		c.change(&here)
		err := h.Check(here)
		if !errors.Is(err, ErrLayout) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Check: %v, want %q", err, c.want)
		}
	}
}

// fix recomputes a stream's checksum after a test edited its bytes, so
// that the reader's other checks are what answers.
func fix(s []byte) []byte {
	s = append([]byte(nil), s...)
	n := len(s) - 4
	binary.LittleEndian.PutUint32(s[n:], crc32.Checksum(s[:n], castagnoli))
	return s
}

func TestHostileStreams(t *testing.T) {
	good := stream(t, sample(), []byte("payload"))
	hl := int(binary.LittleEndian.Uint32(good[12:]))
	plOff := 16 + hl
	cases := map[string]struct {
		s    []byte
		want error
		msg  string
	}{
		"empty":         {nil, ErrFormat, "ends in the magic"},
		"other magic":   {fix(append([]byte("QEVM\x00\x00\x00\x03"), good[8:]...)), ErrFormat, "not a godm device-state stream"},
		"newer version": {fix(func() []byte { s := append([]byte(nil), good...); s[8] = 2; return s }()), ErrVersion, "version 2 (this godm reads 1..1)"},
		"version zero":  {fix(func() []byte { s := append([]byte(nil), good...); s[8] = 0; return s }()), ErrVersion, "version 0"},
		"huge header": {fix(func() []byte {
			s := append([]byte(nil), good...)
			binary.LittleEndian.PutUint32(s[12:], 1<<30)
			return s
		}()), ErrFormat, "header of 1073741824 bytes"},
		"huge payload": {fix(func() []byte {
			s := append([]byte(nil), good...)
			binary.LittleEndian.PutUint64(s[plOff:], 1<<40)
			return s
		}()), ErrFormat, "device state of 1099511627776 bytes"},
		"lying payload": {fix(func() []byte {
			s := append([]byte(nil), good...)
			binary.LittleEndian.PutUint64(s[plOff:], 1<<29)
			return s
		}()), ErrFormat, "cut short"},
		"bad checksum": {func() []byte { s := append([]byte(nil), good...); s[len(s)-1] ^= 1; return s }(), ErrFormat, "checksum"},
		"flipped byte": {func() []byte { s := append([]byte(nil), good...); s[plOff+9] ^= 0x40; return s }(), ErrFormat, "checksum"},
		"truncated":    {good[:len(good)-2], ErrFormat, "ends in the checksum"},
		"header garbage": {fix(func() []byte {
			s := append([]byte(nil), good...)
			binary.LittleEndian.PutUint32(s[16+len("godm test")+4+8+4:], 5000)
			return s
		}()), ErrFormat, "5000 devices"},
	}
	for name, c := range cases {
		_, _, err := Read(bytes.NewReader(c.s))
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want %v with %q", name, err, c.want, c.msg)
		}
	}
}

// A peer that claims a big payload and sends little costs little memory.
func TestLyingLengthAllocatesLittle(t *testing.T) {
	good := stream(t, sample(), []byte("x"))
	hl := int(binary.LittleEndian.Uint32(good[12:]))
	s := append([]byte(nil), good...)
	binary.LittleEndian.PutUint64(s[16+hl:], MaxPayload)
	allocs := testing.AllocsPerRun(5, func() { Read(bytes.NewReader(s)) })
	var ms1, ms2 runtimeMem
	ms1.read()
	Read(bytes.NewReader(s))
	ms2.read()
	if d := ms2.total - ms1.total; d > 4*readChunk {
		t.Errorf("reading a stream claiming %d payload bytes allocated %d bytes (%v allocs)", MaxPayload, d, allocs)
	}
}

func FuzzRead(f *testing.F) {
	f.Add(stream(f, sample(), []byte("payload")))
	f.Add(stream(f, Header{}, nil))
	f.Add([]byte(Magic))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, p, err := Read(bytes.NewReader(b))
		if err != nil {
			return
		}
		// Whatever reads must write back to the same bytes.
		again := stream(t, h, p)
		if !bytes.Equal(again, b[:len(again)]) {
			t.Fatalf("a stream read and written again differs")
		}
	})
}

type runtimeMem struct{ total uint64 }

func (m *runtimeMem) read() {
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	m.total = s.TotalAlloc
}

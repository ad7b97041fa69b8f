package golden

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Fixture is one captured reference-library call.
type Fixture struct {
	// Name is the fixture's file name without ".json".
	Name string `json:"name"`
	// Call describes the C call that was captured.
	Call string `json:"call"`
	// Result is what the C call returned, as text (e.g. "rc=0 id=1").
	Result string `json:"result"`
	// Events are the device-file events, in order.
	Events []Event `json:"events"`
}

// Event is one device-file operation of a captured call.
type Event struct {
	// Kind is open, close, ioctl, mmap, munmap, read or write.
	Kind string `json:"kind"`
	// Dev is the device: privcmd, hypercall, evtchn or xenbus.
	Dev string `json:"dev"`
	// Flags are the open flags (open) or the MAP_* flags (mmap).
	Flags int64 `json:"flags,omitempty"`
	// Req is the ioctl request number.
	Req uint32 `json:"req,omitempty"`
	// ReqName is the ioctl request's C name.
	ReqName string `json:"req_name,omitempty"`
	// Arg is the ioctl argument struct.
	Arg *Buffer `json:"arg,omitempty"`
	// Buffers are the buffers reachable from Arg through pointers.
	Buffers []Buffer `json:"buffers,omitempty"`
	// Ret is the fake kernel's answer to an ioctl (result or -errno).
	Ret int64 `json:"ret,omitempty"`
	// Offset is the mmap offset.
	Offset int64 `json:"offset,omitempty"`
	// Length is the mmap/munmap length or the read size.
	Length int64 `json:"length,omitempty"`
	// Prot is the mmap protection.
	Prot int64 `json:"prot,omitempty"`
	// Data is the hex of the bytes read or written.
	Data string `json:"data,omitempty"`
}

// Buffer is an ioctl argument struct or a buffer it points to.
type Buffer struct {
	// Name says what the buffer is (e.g. "privcmd_dm_op_buf[2]").
	Name string `json:"name"`
	// Hex is the input contents, pointer fields zeroed; empty for an
	// output-only buffer.
	Hex string `json:"hex,omitempty"`
	// Len is the length in bytes.
	Len int `json:"len"`
	// Out is the contents after the fake kernel answered, when it wrote.
	Out string `json:"out,omitempty"`
	// Undef lists [offset, length] ranges the C library left undefined
	// (struct padding, reserved fields it does not initialise, unused
	// union space); they are zero in Hex and Out and ignored by Compare.
	Undef [][2]int `json:"undef,omitempty"`
	// Ptrs are the pointer fields inside the buffer.
	Ptrs []Ptr `json:"ptrs,omitempty"`
}

// Ptr is a pointer field inside a Buffer.
type Ptr struct {
	// Off is the byte offset of the 8-byte pointer.
	Off int `json:"off"`
	// Buf is the index in Event.Buffers of the target, or -1.
	Buf int `json:"buf"`
	// Region is null, user, hypercall or mmap.
	Region string `json:"region"`
	// RegionOff is the offset inside a hypercall mapping (informational).
	RegionOff int64 `json:"region_off,omitempty"`
}

// Pointer regions.
const (
	RegionNull      = "null"
	RegionUser      = "user"
	RegionHypercall = "hypercall"
	RegionMmap      = "mmap"
)

// Dir returns the directory holding the fixtures (hyp/testdata/golden),
// found relative to this source file so tests in any package can use it.
func Dir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return filepath.Join("testdata", "golden")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "golden")
}

// Load reads fixture name (without .json), failing the test if it is
// missing or malformed.
func Load(tb testing.TB, name string) *Fixture {
	tb.Helper()
	f, err := LoadFile(filepath.Join(Dir(), name+".json"))
	if err != nil {
		tb.Fatalf("golden: %v", err)
	}
	return f
}

// LoadFile reads and validates a fixture file.
func LoadFile(path string) (*Fixture, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Parse decodes and validates a fixture: unknown fields, malformed hex,
// lengths that disagree with the hex, and pointers or undefined ranges
// outside their buffer are errors.
func Parse(b []byte) (*Fixture, error) {
	var f Fixture
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	if err := f.validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

func (f *Fixture) validate() error {
	for i := range f.Events {
		ev := &f.Events[i]
		bufs := ev.Buffers
		check := func(what string, b *Buffer) error {
			if b.Hex != "" {
				d, err := DecodeHex(b.Hex)
				if err != nil {
					return fmt.Errorf("event %d %s hex: %w", i, what, err)
				}
				if len(d) != b.Len {
					return fmt.Errorf("event %d %s: hex has %d bytes, len %d", i, what, len(d), b.Len)
				}
			}
			if b.Out != "" {
				if _, err := DecodeHex(b.Out); err != nil {
					return fmt.Errorf("event %d %s out: %w", i, what, err)
				}
			}
			if b.Len < 0 {
				return fmt.Errorf("event %d %s: negative length %d", i, what, b.Len)
			}
			for _, u := range b.Undef {
				if u[0] < 0 || u[1] <= 0 || u[0] > b.Len || u[1] > b.Len-u[0] {
					return fmt.Errorf("event %d %s: undef range %v outside %d bytes", i, what, u, b.Len)
				}
			}
			for _, p := range b.Ptrs {
				if p.Off < 0 || p.Off > b.Len-8 {
					return fmt.Errorf("event %d %s: pointer at %d outside %d bytes", i, what, p.Off, b.Len)
				}
				if p.Buf >= len(bufs) {
					return fmt.Errorf("event %d %s: pointer to buffer %d of %d", i, what, p.Buf, len(bufs))
				}
			}
			return nil
		}
		if ev.Arg != nil {
			if err := check("arg", ev.Arg); err != nil {
				return err
			}
		}
		for j := range bufs {
			if err := check(fmt.Sprintf("buffer %d", j), &bufs[j]); err != nil {
				return err
			}
		}
		if ev.Data != "" {
			if _, err := DecodeHex(ev.Data); err != nil {
				return fmt.Errorf("event %d data: %w", i, err)
			}
		}
	}
	return nil
}

// DecodeHex decodes hex with optional whitespace between digit pairs.
func DecodeHex(s string) ([]byte, error) {
	return hex.DecodeString(strings.Join(strings.Fields(s), ""))
}

// EncodeHex formats b like the fixtures: groups of four bytes.
func EncodeHex(b []byte) string {
	var sb strings.Builder
	for i := 0; i < len(b); i += 4 {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(hex.EncodeToString(b[i:min(i+4, len(b))]))
	}
	return sb.String()
}

// Bytes returns the buffer's input contents (pointer fields zeroed), or
// nil for an output-only buffer. The fixture was validated at load.
func (b *Buffer) Bytes() []byte {
	d, _ := DecodeHex(b.Hex)
	return d
}

// OutBytes returns the contents after the fake kernel answered, or nil.
func (b *Buffer) OutBytes() []byte {
	d, _ := DecodeHex(b.Out)
	return d
}

// Mask returns a copy of got with the buffer's pointer fields and
// undefined ranges zeroed, so that an encoding holding real pointers (and
// whatever it puts in padding) compares with Bytes.
func (b *Buffer) Mask(got []byte) []byte {
	m := append([]byte(nil), got...)
	for _, p := range b.Ptrs {
		if p.Off >= 0 && p.Off <= len(m)-8 {
			clear(m[p.Off : p.Off+8])
		}
	}
	for _, u := range b.Undef {
		if u[0] >= 0 && u[1] >= 0 && u[0] <= len(m) && u[1] <= len(m)-u[0] {
			clear(m[u[0] : u[0]+u[1]])
		}
	}
	return m
}

// Check fails the test unless got (pointer fields masked) equals the
// buffer's input bytes, reporting both as hex.
func (b *Buffer) Check(tb testing.TB, what string, got []byte) {
	tb.Helper()
	if err := b.Compare(got); err != nil {
		tb.Errorf("%s (%s): %v", what, b.Name, err)
	}
}

// Compare is Check returning an error instead of failing a test.
func (b *Buffer) Compare(got []byte) error {
	want := b.Bytes()
	g := b.Mask(got)
	if !bytes.Equal(g, want) {
		return fmt.Errorf("bytes differ\n got %s\nwant %s", EncodeHex(g), EncodeHex(want))
	}
	return nil
}

// Find returns the events of the given kind ("ioctl", "mmap", ...), in
// order.
func (f *Fixture) Find(kind string) []*Event {
	var out []*Event
	for i := range f.Events {
		if f.Events[i].Kind == kind {
			out = append(out, &f.Events[i])
		}
	}
	return out
}

// Ioctls returns the ioctl events with request number req, in order.
func (f *Fixture) Ioctls(req uint32) []*Event {
	var out []*Event
	for i := range f.Events {
		if f.Events[i].Kind == "ioctl" && f.Events[i].Req == req {
			out = append(out, &f.Events[i])
		}
	}
	return out
}

// Ioctl returns the only ioctl event with request number req, failing the
// test unless there is exactly one.
func (f *Fixture) Ioctl(tb testing.TB, req uint32) *Event {
	tb.Helper()
	evs := f.Ioctls(req)
	if len(evs) != 1 {
		tb.Fatalf("golden %s: %d ioctls with request %#x, want 1", f.Name, len(evs), req)
	}
	return evs[0]
}

// Last returns the last ioctl event with request number req (the call
// itself, after any probing the library did first), failing the test if
// there is none.
func (f *Fixture) Last(tb testing.TB, req uint32) *Event {
	tb.Helper()
	evs := f.Ioctls(req)
	if len(evs) == 0 {
		tb.Fatalf("golden %s: no ioctl with request %#x", f.Name, req)
	}
	return evs[len(evs)-1]
}

// Target returns the buffer that pointer field p of the event points to,
// or nil.
func (e *Event) Target(p Ptr) *Buffer {
	if p.Buf < 0 || p.Buf >= len(e.Buffers) {
		return nil
	}
	return &e.Buffers[p.Buf]
}

// PtrAt returns the pointer field at byte offset off of b, and whether
// there is one.
func (b *Buffer) PtrAt(off int) (Ptr, bool) {
	for _, p := range b.Ptrs {
		if p.Off == off {
			return p, true
		}
	}
	return Ptr{}, false
}

// DataBytes returns the decoded Data of a read or write event.
func (e *Event) DataBytes() []byte {
	d, _ := DecodeHex(e.Data)
	return d
}

// DMOpBuffers returns, for an IOCTL_PRIVCMD_DM_OP event, the DM-op buffers
// in order (buffers[0] is struct xen_dm_op), following the privcmd_dm_op_buf
// array. It fails the test if the event is not shaped like one.
func (e *Event) DMOpBuffers(tb testing.TB) []*Buffer {
	tb.Helper()
	if e.Arg == nil {
		tb.Fatalf("golden: DM op event without arg")
	}
	p, ok := e.Arg.PtrAt(8)
	if !ok {
		tb.Fatalf("golden: DM op arg without ubufs pointer")
	}
	arr := e.Target(p)
	if arr == nil {
		return nil
	}
	var out []*Buffer
	for i := 0; i*16 < arr.Len; i++ {
		q, ok := arr.PtrAt(i * 16)
		if !ok || e.Target(q) == nil {
			tb.Fatalf("golden: privcmd_dm_op_buf[%d] has no target", i)
		}
		out = append(out, e.Target(q))
	}
	return out
}

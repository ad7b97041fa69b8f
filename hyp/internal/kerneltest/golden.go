package kerneltest

import (
	"bytes"
	"fmt"
	"testing"

	"godm/hyp/internal/golden"

	"golang.org/x/sys/unix"
)

// Golden converts e to the fixture format of package golden (pointer
// fields zeroed, open flags masked like the capture does).
func (e *Event) Golden() golden.Event {
	g := golden.Event{Kind: e.Kind, Dev: e.Dev.Name()}
	switch e.Kind {
	case "open":
		g.Flags = int64(e.Flags & (unix.O_ACCMODE | unix.O_NONBLOCK | unix.O_CLOEXEC))
	case "ioctl":
		g.Req = uint32(e.Req)
		g.ReqName = ReqName(e.Req)
		g.Ret = e.Ret
		if e.Arg != nil {
			a := e.Arg.golden()
			g.Arg = &a
		}
		for i := range e.Bufs {
			g.Buffers = append(g.Buffers, e.Bufs[i].golden())
		}
	case "mmap":
		g.Offset, g.Length, g.Prot, g.Flags = e.Offset, int64(e.Length), int64(e.Prot), int64(e.Flags)
	case "munmap":
		g.Length = int64(e.Length)
	case "read":
		g.Length = int64(e.Length)
		g.Data = golden.EncodeHex(e.Data)
	case "write":
		g.Data = golden.EncodeHex(e.Data)
	}
	return g
}

// masked returns a copy of mem with b's pointer fields zeroed.
func (b *Buf) masked(mem []byte) []byte {
	m := append([]byte(nil), mem...)
	for _, p := range b.Ptrs {
		if p.Off >= 0 && p.Off+8 <= len(m) {
			clear(m[p.Off : p.Off+8])
		}
	}
	return m
}

func (b *Buf) golden() golden.Buffer {
	g := golden.Buffer{Name: b.Name, Len: b.Len}
	in := b.masked(b.In)
	out := b.masked(b.Out)
	if b.In != nil {
		g.Hex = golden.EncodeHex(in)
	}
	if b.Len > 0 && (b.In == nil || !bytes.Equal(in, out)) {
		g.Out = golden.EncodeHex(out)
	}
	for _, p := range b.Ptrs {
		g.Ptrs = append(g.Ptrs, golden.Ptr{Off: p.Off, Buf: p.Buf, Region: p.Region, RegionOff: p.RegionOff})
	}
	return g
}

// CheckIoctl fails the test unless the recorded ioctl got matches the
// fixture event want byte for byte: the request, the argument struct and
// every reachable buffer (input bytes with pointer fields masked, length,
// and contents after the call where the fixture has them), and the
// pointer structure (offsets, targets and regions; offsets inside regions
// are ignored, as the fixtures say).
func CheckIoctl(tb testing.TB, got Event, want *golden.Event) {
	tb.Helper()
	for _, err := range CompareIoctl(got, want) {
		tb.Errorf("%s: %v", ReqName(got.Req), err)
	}
}

// CompareIoctl is CheckIoctl returning the differences.
func CompareIoctl(got Event, want *golden.Event) []error {
	var errs []error
	if got.Kind != "ioctl" || want.Kind != "ioctl" {
		return []error{fmt.Errorf("kinds %q and %q, want two ioctls", got.Kind, want.Kind)}
	}
	g := got.Golden()
	if g.Req != want.Req {
		errs = append(errs, fmt.Errorf("request %#x, want %#x", g.Req, want.Req))
	}
	if g.Dev != want.Dev {
		errs = append(errs, fmt.Errorf("device %s, want %s", g.Dev, want.Dev))
	}
	if g.Ret != want.Ret {
		errs = append(errs, fmt.Errorf("result %d, want %d (the fake answers differ from the capture's)", g.Ret, want.Ret))
	}
	switch {
	case (g.Arg == nil) != (want.Arg == nil):
		errs = append(errs, fmt.Errorf("argument present %v, want %v", g.Arg != nil, want.Arg != nil))
	case g.Arg != nil:
		errs = append(errs, compareBuf("arg", g.Arg, want.Arg)...)
	}
	if len(g.Buffers) != len(want.Buffers) {
		errs = append(errs, fmt.Errorf("%d reachable buffers, want %d", len(g.Buffers), len(want.Buffers)))
	}
	for i := 0; i < min(len(g.Buffers), len(want.Buffers)); i++ {
		errs = append(errs, compareBuf(fmt.Sprintf("buffer %d (%s)", i, want.Buffers[i].Name), &g.Buffers[i], &want.Buffers[i])...)
	}
	return errs
}

func compareBuf(what string, got, want *golden.Buffer) []error {
	var errs []error
	if got.Len != want.Len {
		return []error{fmt.Errorf("%s: %d bytes, want %d", what, got.Len, want.Len)}
	}
	// Mask with the fixture's pointer fields and undefined ranges
	// (padding the C library leaves uninitialised).
	if want.Hex != "" {
		if g := want.Mask(got.Bytes()); !bytes.Equal(g, want.Bytes()) {
			errs = append(errs, fmt.Errorf("%s: input differs\n got %s\nwant %s", what, golden.EncodeHex(g), want.Hex))
		}
	}
	if want.Out != "" {
		gotOut := got.OutBytes()
		if got.Out == "" { // unchanged by the call
			gotOut = got.Bytes()
		}
		if g := want.Mask(gotOut); !bytes.Equal(g, want.Mask(want.OutBytes())) {
			errs = append(errs, fmt.Errorf("%s: output differs\n got %s\nwant %s", what, golden.EncodeHex(g), want.Out))
		}
	}
	if len(got.Ptrs) != len(want.Ptrs) {
		errs = append(errs, fmt.Errorf("%s: %d pointer fields, want %d", what, len(got.Ptrs), len(want.Ptrs)))
		return errs
	}
	for i, p := range got.Ptrs {
		w := want.Ptrs[i]
		if p.Off != w.Off || p.Buf != w.Buf || p.Region != w.Region {
			errs = append(errs, fmt.Errorf("%s: pointer %d at %d to buffer %d in %s, want at %d to buffer %d in %s",
				what, i, p.Off, p.Buf, p.Region, w.Off, w.Buf, w.Region))
		}
	}
	return errs
}

// LastIoctl returns the last recorded ioctl with request req, failing the
// test if there is none.
func (k *Kernel) LastIoctl(tb testing.TB, req uint) Event {
	tb.Helper()
	evs := k.Ioctls(req)
	if len(evs) == 0 {
		tb.Fatalf("kerneltest: no ioctl %s (%#x) recorded", ReqName(req), req)
	}
	return evs[len(evs)-1]
}

// CheckEvent fails the test unless got matches the fixture event want:
// ioctls as CheckIoctl does, other events field by field (kind, device,
// open flags, mmap offset/length/prot/flags, munmap and read length, data
// read or written).
func CheckEvent(tb testing.TB, got Event, want *golden.Event) {
	tb.Helper()
	for _, err := range CompareEvent(got, want) {
		tb.Errorf("%s event: %v", want.Kind, err)
	}
}

// CompareEvent is CheckEvent returning the differences.
func CompareEvent(got Event, want *golden.Event) []error {
	if got.Kind == "ioctl" && want.Kind == "ioctl" {
		return CompareIoctl(got, want)
	}
	g := got.Golden()
	var errs []error
	diff := func(what string, a, b any) {
		if a != b {
			errs = append(errs, fmt.Errorf("%s %v, want %v", what, a, b))
		}
	}
	diff("kind", g.Kind, want.Kind)
	diff("device", g.Dev, want.Dev)
	diff("flags", g.Flags, want.Flags)
	diff("offset", g.Offset, want.Offset)
	diff("length", g.Length, want.Length)
	diff("prot", g.Prot, want.Prot)
	if !bytes.Equal(got.Data, want.DataBytes()) {
		errs = append(errs, fmt.Errorf("data %s, want %s", golden.EncodeHex(got.Data), want.Data))
	}
	return errs
}

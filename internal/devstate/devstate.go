// Package devstate is godm's device-state stream: what the device model
// hands libxl at xl save / migrate (QMP xen-save-devices-state) and reads
// back at restore (-incoming fd:N). Xen saves the vCPUs and RAM; this
// stream carries the devices. It is godm's own format, versioned:
//
//	magic    8 bytes  "GODMDEVS"
//	version  u32 LE   StreamVersion
//	header   u32 LE length, then the Header (devices/savestate encoding)
//	payload  u64 LE length, then the board's snapshot (board.Snapshot)
//	crc      u32 LE   CRC-32C (Castagnoli) of every byte before it
//
// The header names the machine the state belongs to (RAM, vCPUs, the
// devices by id and driver, in plug order) so that a stream for another
// layout is refused with a line saying what differs, before any device
// changes. A stream is untrusted input (a file, a peer): the reader is
// bounded (header and payload sizes, device count, string lengths),
// allocates as the bytes arrive rather than as a length field claims, and
// answers every malformed stream with an error, never a panic or a hang.
package devstate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"godm/devices/savestate"
)

// StreamVersion is the stream format this godm writes and the newest it
// reads.
const StreamVersion = 1

// Magic starts every stream.
const Magic = "GODMDEVS"

// Bounds of what a reader accepts.
const (
	MaxHeader  = 64 << 10  // header bytes
	MaxPayload = 1 << 30   // payload bytes (VRAM dominates: vgamem_mb up to 512)
	MaxDevices = 1024      // devices in a header
	maxID      = 256       // bytes of a device id
	maxDriver  = 64        // bytes of a driver name
	maxVersion = 128       // bytes of the writer's version string
	readChunk  = 256 << 10 // payload read step (allocation follows data)
)

// ErrFormat is wrapped by every error about a stream that cannot be read.
var ErrFormat = errors.New("devstate: malformed device-state stream")

// ErrVersion is wrapped when the stream is of a newer format.
var ErrVersion = errors.New("devstate: device-state stream of a newer format")

// ErrLayout is wrapped when the stream belongs to another machine.
var ErrLayout = errors.New("devstate: device state of another machine")

// Device names one device of the machine.
type Device struct {
	ID, Driver string
}

// Header describes the machine whose devices the stream holds.
type Header struct {
	// Writer is the godm version that wrote the stream (informational).
	Writer string
	// RAMBytes and VCPUs are the guest's RAM and vCPU slots.
	RAMBytes uint64
	VCPUs    uint32
	// Devices are the board's devices in plug order.
	Devices []Device
}

func (h *Header) encode() []byte {
	var w savestate.Writer
	w.String(h.Writer)
	w.U64(h.RAMBytes)
	w.U32(h.VCPUs)
	w.U32(uint32(len(h.Devices)))
	for _, d := range h.Devices {
		w.String(d.ID)
		w.String(d.Driver)
	}
	return w.Out()
}

func decodeHeader(b []byte) (Header, error) {
	r := savestate.NewReader(b)
	h := Header{Writer: r.String(maxVersion), RAMBytes: r.U64(), VCPUs: r.U32()}
	n := r.U32()
	if n > MaxDevices {
		return Header{}, fmt.Errorf("%w: %d devices (at most %d)", ErrFormat, n, MaxDevices)
	}
	for i := uint32(0); i < n && r.Err() == nil; i++ {
		h.Devices = append(h.Devices, Device{ID: r.String(maxID), Driver: r.String(maxDriver)})
	}
	if err := r.Done(); err != nil {
		return Header{}, fmt.Errorf("%w: header: %v", ErrFormat, err)
	}
	return h, nil
}

// Write writes one stream: h and the board snapshot payload.
func Write(w io.Writer, h Header, payload []byte) error {
	hb := h.encode()
	if len(hb) > MaxHeader {
		return fmt.Errorf("devstate: header of %d bytes (at most %d)", len(hb), MaxHeader)
	}
	if len(payload) > MaxPayload {
		return fmt.Errorf("devstate: device state of %d bytes (at most %d)", len(payload), MaxPayload)
	}
	crc := crc32.New(castagnoli)
	out := io.MultiWriter(w, crc)
	var fixed [8]byte
	pieces := [][]byte{[]byte(Magic), le32(fixed[:4], StreamVersion), le32(make([]byte, 4), uint32(len(hb))), hb,
		le64(make([]byte, 8), uint64(len(payload))), payload}
	for _, p := range pieces {
		if _, err := out.Write(p); err != nil {
			return fmt.Errorf("devstate: writing: %w", err)
		}
	}
	if _, err := w.Write(le32(fixed[4:], crc.Sum32())); err != nil {
		return fmt.Errorf("devstate: writing: %w", err)
	}
	return nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func le32(b []byte, v uint32) []byte { binary.LittleEndian.PutUint32(b, v); return b }
func le64(b []byte, v uint64) []byte { binary.LittleEndian.PutUint64(b, v); return b }

// Read reads one stream from r and returns its header and payload. It
// reads exactly the stream's bytes (nothing after the checksum), so a
// caller may go on reading r.
func Read(r io.Reader) (Header, []byte, error) {
	crc := crc32.New(castagnoli)
	in := io.TeeReader(r, crc)
	var fixed [12]byte
	if err := readFull(in, fixed[:12], "magic and version"); err != nil {
		return Header{}, nil, err
	}
	if string(fixed[:8]) != Magic {
		return Header{}, nil, fmt.Errorf("%w: not a godm device-state stream (magic % x)", ErrFormat, fixed[:8])
	}
	if v := binary.LittleEndian.Uint32(fixed[8:]); v == 0 || v > StreamVersion {
		return Header{}, nil, fmt.Errorf("%w: version %d (this godm reads 1..%d)", ErrVersion, v, StreamVersion)
	}
	if err := readFull(in, fixed[:4], "header length"); err != nil {
		return Header{}, nil, err
	}
	hl := binary.LittleEndian.Uint32(fixed[:4])
	if hl > MaxHeader {
		return Header{}, nil, fmt.Errorf("%w: header of %d bytes (at most %d)", ErrFormat, hl, MaxHeader)
	}
	hb := make([]byte, hl)
	if err := readFull(in, hb, "header"); err != nil {
		return Header{}, nil, err
	}
	h, err := decodeHeader(hb)
	if err != nil {
		return Header{}, nil, err
	}
	if err := readFull(in, fixed[:8], "payload length"); err != nil {
		return Header{}, nil, err
	}
	pl := binary.LittleEndian.Uint64(fixed[:8])
	if pl > MaxPayload {
		return Header{}, nil, fmt.Errorf("%w: device state of %d bytes (at most %d)", ErrFormat, pl, MaxPayload)
	}
	payload, err := readGrowing(in, pl)
	if err != nil {
		return Header{}, nil, err
	}
	sum := crc.Sum32()
	if err := readFull(r, fixed[:4], "checksum"); err != nil {
		return Header{}, nil, err
	}
	if got := binary.LittleEndian.Uint32(fixed[:4]); got != sum {
		return Header{}, nil, fmt.Errorf("%w: checksum %#08x, the bytes give %#08x", ErrFormat, got, sum)
	}
	return h, payload, nil
}

// readGrowing reads n bytes, growing the buffer as they arrive: a length
// field that lies costs no more memory than the bytes really sent.
func readGrowing(r io.Reader, n uint64) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(int(min(n, readChunk)))
	got, err := io.CopyN(&buf, r, int64(n))
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: device state cut short at %d of %d bytes", ErrFormat, got, n)
		}
		return nil, fmt.Errorf("devstate: reading: %w", err)
	}
	return buf.Bytes(), nil
}

func readFull(r io.Reader, b []byte, what string) error {
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: stream ends in the %s", ErrFormat, what)
		}
		return fmt.Errorf("devstate: reading the %s: %w", what, err)
	}
	return nil
}

// Check compares the header of a stream with the machine that is to load
// it and says the first difference, wrapping ErrLayout.
func (h Header) Check(here Header) error {
	if h.RAMBytes != here.RAMBytes {
		return fmt.Errorf("%w: the stream is for %d MiB of RAM, this machine has %d MiB", ErrLayout, h.RAMBytes>>20, here.RAMBytes>>20)
	}
	if h.VCPUs != here.VCPUs {
		return fmt.Errorf("%w: the stream is for %d vCPUs, this machine has %d", ErrLayout, h.VCPUs, here.VCPUs)
	}
	for i := 0; i < max(len(h.Devices), len(here.Devices)); i++ {
		switch {
		case i >= len(h.Devices):
			return fmt.Errorf("%w: device '%s' (%s) is not in the stream", ErrLayout, here.Devices[i].ID, here.Devices[i].Driver)
		case i >= len(here.Devices):
			return fmt.Errorf("%w: the stream has device '%s' (%s), which this machine lacks", ErrLayout, h.Devices[i].ID, h.Devices[i].Driver)
		case h.Devices[i] != here.Devices[i]:
			return fmt.Errorf("%w: device %d is '%s' (%s) in the stream, '%s' (%s) here", ErrLayout, i,
				h.Devices[i].ID, h.Devices[i].Driver, here.Devices[i].ID, here.Devices[i].Driver)
		}
	}
	return nil
}

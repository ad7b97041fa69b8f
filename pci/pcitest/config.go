package pcitest

import (
	"bytes"
	"testing"

	"godm/devices"
	"godm/pci"
)

// Masks are a function's per-byte register masks, as LearnMasks finds them.
type Masks struct {
	// Writable holds the bits a guest write stores.
	Writable []byte
	// W1C holds the write-1-to-clear bits.
	W1C []byte
}

// LearnMasks finds the writable and write-1-to-clear bits of every
// configuration byte of the functions newFn builds, without looking inside
// package pci: a restored state takes exactly the guest-writable bits
// (Writable|W1C), so restoring all-ones and all-zeros images shows them;
// a guest write of 0xff over an all-ones byte then keeps the writable bits
// and clears the W1C ones. newFn is called once; its function must not be
// on a bus (it is left in an arbitrary state, and close is called on it when
// non-nil). MSI pending bits restore like writable bits: a checker must
// treat them as dynamic.
func LearnMasks(tb testing.TB, newFn func() (fn *pci.Device, close func())) Masks {
	tb.Helper()
	fn, closeFn := newFn()
	if closeFn != nil {
		defer closeFn()
	}
	base := fn.Save()
	n := len(base.Config)
	restore := func(fill byte) []byte {
		tb.Helper()
		s := base
		s.Config = bytes.Repeat([]byte{fill}, n)
		if err := fn.Restore(s); err != nil {
			tb.Fatalf("learn masks: restore: %v", err)
		}
		return fn.Save().Config
	}
	hi, lo := restore(0xff), restore(0)
	m := Masks{Writable: make([]byte, n), W1C: make([]byte, n)}
	for o := range n {
		bits := hi[o] ^ lo[o]
		if bits == 0 {
			continue
		}
		restore(0xff)
		fn.Write(devices.Access{Addr: uint64(o), Offset: uint64(o), Size: 1}, 0xff)
		now := byte(fn.ConfigRead(uint32(o), 1))
		m.Writable[o] = bits & now
		m.W1C[o] = bits &^ now
	}
	return m
}

// DynamicFunc returns, for a configuration byte, the bits the device (not
// the guest) may change at any time, which a ConfigChecker does not
// compare.
type DynamicFunc func(off uint32) byte

// StatusINTx is the DynamicFunc of a function whose only device-owned
// configuration bit is the Interrupt Status bit (PCI Local Bus 3.0 §6.2.3).
func StatusINTx(off uint32) byte {
	if off == pci.RegStatus {
		return 1 << 3
	}
	return 0
}

// ConfigChecker checks guest accesses to one function's configuration
// space, made through the bus's devices.ConfigSpace, against its masks:
// read-only bits never change, writable bits take the written value,
// write-1-to-clear bits clear where a one is written, bytes outside an
// access do not change, reads return the register image masked to the
// access size and misses (bad size, crossing the 4 KiB space) answer
// all-ones and change nothing. It is for one goroutine.
type ConfigChecker struct {
	cfg     *devices.ConfigSpace
	sbdf    devices.SBDF
	fn      *pci.Device
	m       Masks
	reset   []byte
	dynamic DynamicFunc
}

// NewConfigChecker returns a checker for fn, which is on cfg at sbdf and
// in its reset state (the image Check and CheckReset compare against is
// taken now). dynamic may be nil (nothing is device-owned).
func NewConfigChecker(tb testing.TB, cfg *devices.ConfigSpace, sbdf devices.SBDF, fn *pci.Device, m Masks, dynamic DynamicFunc) *ConfigChecker {
	tb.Helper()
	if dynamic == nil {
		dynamic = func(uint32) byte { return 0 }
	}
	reset := fn.Save().Config
	if len(m.Writable) != len(reset) || len(m.W1C) != len(reset) {
		tb.Fatalf("config checker: masks for %d bytes, function has %d", len(m.Writable), len(reset))
	}
	return &ConfigChecker{cfg: cfg, sbdf: sbdf, fn: fn, m: m, reset: reset, dynamic: dynamic}
}

// ResetImage returns the configuration image taken by NewConfigChecker.
func (c *ConfigChecker) ResetImage() []byte { return bytes.Clone(c.reset) }

func miss(off uint32, size uint8) bool {
	switch size {
	case 1, 2, 4, 8:
	default:
		return true
	}
	return off >= devices.ConfigSize || devices.ConfigSize-off < uint32(size)
}

// unchanged fails unless before and after agree outside [lo, hi) (but for
// dynamic bits).
func (c *ConfigChecker) unchanged(tb testing.TB, what string, before, after []byte, lo, hi uint32) {
	tb.Helper()
	for o := range uint32(len(before)) {
		if o >= lo && o < hi {
			continue
		}
		if d := (before[o] ^ after[o]) &^ c.dynamic(o); d != 0 {
			tb.Fatalf("%s changed config[%#x] %#02x -> %#02x", what, o, before[o], after[o])
		}
	}
}

// Write makes a guest configuration write and checks its effect.
func (c *ConfigChecker) Write(tb testing.TB, off uint32, size uint8, v uint64) {
	tb.Helper()
	before := c.fn.Save().Config
	c.cfg.Write(c.sbdf, off, size, 0, v)
	after := c.fn.Save().Config
	if miss(off, size) {
		c.unchanged(tb, "missed write", before, after, 0, 0)
		return
	}
	v &= devices.SizeMask(size)
	for i := range uint32(size) {
		o := off + i
		if o >= uint32(len(before)) {
			break
		}
		old, now, w, w1c, dyn := before[o], after[o], c.m.Writable[o], c.m.W1C[o], c.dynamic(o)
		b := byte(v >> (8 * i))
		if d := (old ^ now) &^ (w | w1c | dyn); d != 0 {
			tb.Fatalf("write %#x/%d=%#x: read-only bits %#02x of config[%#x] changed: %#02x -> %#02x", off, size, v, d, o, old, now)
		}
		if got, want := now&w&^dyn, b&w&^dyn; got != want {
			tb.Fatalf("write %#x/%d=%#x: writable bits of config[%#x] = %#02x, want %#02x", off, size, v, o, got, want)
		}
		if got, want := now&w1c&^dyn, old&w1c&^b&^dyn; got != want {
			tb.Fatalf("write %#x/%d=%#x: write-1-to-clear bits of config[%#x] = %#02x, want %#02x (was %#02x)", off, size, v, o, got, want, old)
		}
	}
	c.unchanged(tb, "write outside its bytes", before, after, off, off+uint32(size))
}

// Read makes a guest configuration read and checks that it returns the
// register image (all-ones beyond the function's space or for a miss),
// masked to the access size, and changes nothing.
func (c *ConfigChecker) Read(tb testing.TB, off uint32, size uint8) uint64 {
	tb.Helper()
	before := c.fn.Save().Config
	got := c.cfg.Read(c.sbdf, off, size, 0)
	after := c.fn.Save().Config
	c.unchanged(tb, "read", before, after, 0, 0)
	mask := devices.SizeMask(size)
	if got&^mask != 0 {
		tb.Fatalf("read %#x/%d = %#x: bits above the access size", off, size, got)
	}
	if miss(off, size) {
		if got != mask {
			tb.Fatalf("missed read %#x/%d = %#x, want all-ones", off, size, got)
		}
		return got
	}
	// The function itself, not only the bus, answers within the size.
	if raw := c.fn.Read(devices.Access{Addr: uint64(off), Offset: uint64(off), Size: size}); raw != got {
		tb.Fatalf("read %#x/%d: function answers %#x, bus %#x", off, size, raw, got)
	}
	for i := range uint32(size) {
		o, b := off+i, byte(got>>(8*i))
		want, dyn := byte(0xff), byte(0)
		if o < uint32(len(before)) {
			want, dyn = before[o], c.dynamic(o)
		}
		if (b^want)&^dyn != 0 {
			tb.Fatalf("read %#x/%d = %#x: byte %#x is %#02x, image %#02x", off, size, got, o, b, want)
		}
	}
	return got
}

// Check fails if a read-only bit differs from the reset image: the IDs,
// class, header type, subsystem, interrupt pin and every other register
// the guest cannot write are stable.
func (c *ConfigChecker) Check(tb testing.TB) {
	tb.Helper()
	now := c.fn.Save().Config
	for o := range uint32(len(now)) {
		if d := (now[o] ^ c.reset[o]) &^ (c.m.Writable[o] | c.m.W1C[o] | c.dynamic(o)); d != 0 {
			tb.Fatalf("read-only bits %#02x of config[%#x] changed: %#02x, reset %#02x", d, o, now[o], c.reset[o])
		}
	}
}

// CheckReset fails unless configuration space equals the reset image
// (but for dynamic bits and the bytes the function keeps over a reset,
// pci.Device.KeepOnReset); call it after resetting the device. Reset
// checks the kept bytes too.
func (c *ConfigChecker) CheckReset(tb testing.TB) {
	tb.Helper()
	now := c.fn.Save().Config
	for o := range uint32(len(now)) {
		if c.fn.KeptOnReset(uint64(o)) {
			continue
		}
		if d := (now[o] ^ c.reset[o]) &^ c.dynamic(o); d != 0 {
			tb.Fatalf("after reset config[%#x] = %#02x, reset image %#02x", o, now[o], c.reset[o])
		}
	}
}

// Reset runs reset (the device's Reset) and checks the result: the bytes
// the function keeps over a reset are unchanged, the others are the reset
// image (CheckReset).
func (c *ConfigChecker) Reset(tb testing.TB, reset func()) {
	tb.Helper()
	before := c.fn.Save().Config
	reset()
	now := c.fn.Save().Config
	for o := range uint32(len(now)) {
		if c.fn.KeptOnReset(uint64(o)) && (now[o]^before[o])&^c.dynamic(o) != 0 {
			tb.Fatalf("reset changed kept config[%#x]: %#02x, before %#02x", o, now[o], before[o])
		}
	}
	c.CheckReset(tb)
}

// SetW1C restores the function's saved state with the write-1-to-clear
// bits set to the bits of v (cycled over the bytes), as a migrated guest
// whose device had latched errors would find them, so that scripts can
// clear them.
func (c *ConfigChecker) SetW1C(tb testing.TB, v uint64) {
	tb.Helper()
	s := c.fn.Save()
	for o := range s.Config {
		if w := c.m.W1C[o]; w != 0 {
			s.Config[o] = s.Config[o]&^w | byte(v>>(8*(o%8)))&w
		}
	}
	if err := c.fn.Restore(s); err != nil {
		tb.Fatalf("set w1c bits: restore: %v", err)
	}
}

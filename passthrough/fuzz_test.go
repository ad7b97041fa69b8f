package passthrough

import (
	"encoding/binary"
	"fmt"
	"sync"
	"testing"

	"godm/devices"
)

// memConfig is a host configuration space in memory with the hardware's
// write-1-to-clear status bits; it checks every write against an
// independent list of the bits a guest may change on the host.
type memConfig struct {
	mu      sync.Mutex
	b       [256]byte
	allowed [256]uint8 // bits a write may change
	sticky  [256]uint8 // bits a write may set but never clear (decoding)
	rw1c    [256]uint8
	bad     []string
	writes  int
}

func (m *memConfig) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 || off+int64(len(p)) > 256 {
		return 0, fmt.Errorf("read out of range")
	}
	return copy(p, m.b[off:]), nil
}

func (m *memConfig) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 || off+int64(len(p)) > 256 {
		m.bad = append(m.bad, fmt.Sprintf("write out of range at %#x", off))
		return 0, fmt.Errorf("write out of range")
	}
	m.writes++
	for i, v := range p {
		o := int(off) + i
		old := m.b[o]
		// What the write asks for: rw1c bits are requests to clear.
		set := v &^ m.rw1c[o]
		changed := (old &^ m.rw1c[o]) ^ set
		if changed&^m.allowed[o] != 0 {
			m.bad = append(m.bad, fmt.Sprintf("write %#02x to %#x (was %#02x) changes bits %#02x outside %#02x",
				v, o, old, changed&^m.allowed[o], m.allowed[o]))
		}
		if c := old & m.sticky[o] &^ v; c != 0 {
			m.bad = append(m.bad, fmt.Sprintf("write %#02x to %#x clears decoding bits %#02x", v, o, c))
		}
		if c := v & m.rw1c[o] &^ m.allowed[o]; c != 0 {
			m.bad = append(m.bad, fmt.Sprintf("write %#02x to %#x clears status bits %#02x it may not", v, o, c))
		}
		m.b[o] = set | old&m.rw1c[o]&^v
	}
	return len(p), nil
}

// allow marks bits of a register the host may see changed.
func (m *memConfig) allow(off, size int, mask uint32) {
	for i := 0; i < size; i++ {
		m.allowed[off+i] |= uint8(mask >> (8 * i))
	}
}

// fuzzHost is the synthetic function over a memConfig whose allowed bits
// are written out from the specifications, independently of regs.go.
func fuzzHost(permissive bool) (*HostDevice, *memConfig) {
	s := synthetic()
	m := &memConfig{}
	copy(m.b[:], s.config)
	m.allow(0x04, 2, 0x0417|0x0003) // command: I/O, memory (set only), bus master, MWI, INTx disable
	m.sticky[0x04] = 0x03
	m.allow(0x06, 2, 0xf900) // status error bits, write-1-to-clear
	m.rw1c[0x07] = 0xf9
	m.rw1c[0x06] = 0x00
	m.allow(0xcc, 2, 0x1e00) // PMCSR data select (power state stays emulated)
	m.allow(0xd2, 2, 0x0001) // MSI enable
	m.allow(0xa2, 2, 0xc000) // MSI-X enable, function mask
	m.allow(0x6a, 2, 0x000f) // PCIe device status, write-1-to-clear
	m.rw1c[0x6a] = 0x0f
	if permissive {
		m.allow(0xcc, 1, 0xf0) // PMCSR reserved bits
		// Bytes of no capability or header register.
		covered := func(o int) bool {
			switch {
			case o < 0x40, o >= 0x60 && o < 0x9c, o >= 0xa0 && o < 0xac, o >= 0xb0 && o < 0xb3,
				o >= 0xc8 && o < 0xe8, o == 0x40 || o == 0x41:
				return true
			}
			return false
		}
		for o := 0x40; o < 256; o++ {
			if !covered(o) {
				m.allowed[o] = 0xff
			}
		}
	}
	h := &HostDevice{Addr: devices.NewSBDF(0, 3, 0, 0), Vendor: s.vendor, Device: s.device, Class: s.class,
		GSI: s.irq, Driver: "pciback", Config: m, ROM: s.rom}
	copy(h.Resources[:], s.resources)
	return h, m
}

// FuzzConfigWrites runs random scripts of guest configuration and MSI-X
// table writes and checks that no host write ever changes a bit outside
// the allowed mask, and that unplugging leaves nothing in the hypervisor.
// The first byte picks permissive mode (bit 0) and a function Xen has not
// assigned (bit 1: Config.Assign answers "free"), for which bus mastering
// and MSI enable must never reach the host and nothing may be mapped or
// bound but the INTx set up at plug.
func FuzzConfigWrites(f *testing.F) {
	f.Add([]byte{0, 0x04, 2, 7, 0, 0, 0, 0x10, 4, 0, 0, 0, 0xe0})
	f.Add([]byte{1, 0x06, 2, 0xff, 0xff, 0, 0, 0xf0, 1, 0x12, 0, 0, 0})
	f.Add([]byte{0, 0x1c, 4, 0, 0, 0x10, 0xe0, 0x04, 2, 6, 0, 0, 0, 0xa2, 2, 0, 0x80, 0, 0, 0xff, 4, 0, 0, 0, 0})
	f.Add([]byte{0, 0xd4, 4, 0, 0, 0xe0, 0xfe, 0xdc, 2, 0x41, 0, 0, 0, 0xd2, 2, 1, 0, 0, 0, 0x68, 2, 0xff, 0xff, 0, 0})
	f.Add([]byte{2, 0x04, 2, 7, 0, 0, 0, 0x10, 4, 0, 0, 0, 0xe0, 0xd2, 2, 1, 0, 0, 0, 0xa2, 2, 0, 0x80, 0, 0})
	f.Fuzz(func(t *testing.T, script []byte) {
		if len(script) == 0 {
			return
		}
		permissive := script[0]&1 != 0
		unassigned := script[0]&2 != 0
		h, m := fuzzHost(permissive)
		var assign AssignQuery
		if unassigned {
			assign = &fakeAssign{} // test_assign_device: free
			m.b[0x04] &^= cmdBusMaster
			m.allowed[0x04] &^= cmdBusMaster
			m.allowed[0xd2] &^= 0x01
		}
		x := newFakeXen()
		dev, err := New(Config{Dom: 5, Host: h, Xen: x, Slot: 4, Permissive: permissive, Assign: assign})
		if err != nil {
			t.Fatal(err)
		}
		bus := devices.NewBus()
		if err := dev.Plug(bus); err != nil {
			t.Fatal(err)
		}
		c := cfgIO{dev}
		sizes := [4]uint8{1, 2, 4, 8}
		for ops := script[1:]; len(ops) >= 6; ops = ops[6:] {
			reg, size := uint32(ops[0]), sizes[ops[1]&3]
			v := uint64(binary.LittleEndian.Uint32(ops[2:6]))
			if ops[1]&4 != 0 {
				reg += 0x100 // some extended-space writes
			}
			if ops[1]&0x80 != 0 {
				// An MSI-X table access at wherever the guest put BAR3.
				base := uint64(c.r(0x1c, 4) &^ 0xf)
				bus.MMIO.Write(base+uint64(ops[0]&0x3f), size, 0, v)
				_ = bus.MMIO.Read(base+uint64(ops[0]&0x3f), size, 0)
				continue
			}
			c.w(reg, size, v)
			_ = c.r(reg, size)
		}
		if unassigned {
			for _, c := range x.since(2) { // after INTx's map and bind
				t.Errorf("unassigned function reached Xen: %v", c)
			}
		}
		if err := dev.Unplug(); err != nil {
			t.Fatalf("Unplug: %v", err)
		}
		x.leftovers(t)
		for _, b := range m.bad {
			t.Error(b)
		}
	})
}

// TestConfigAccessNoAlloc: configuration reads and writes that change no
// mapping do not allocate.
func TestConfigAccessNoAlloc(t *testing.T) {
	h, _ := fuzzHost(false)
	dev, err := New(Config{Dom: 5, Host: h, Xen: newFakeXen(), Slot: 4})
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.Plug(devices.NewBus()); err != nil {
		t.Fatal(err)
	}
	defer dev.Unplug()
	c := cfgIO{dev}
	tests := []struct {
		name string
		fn   func()
	}{
		{"read vendor", func() { _ = c.r(0, 4) }},
		{"read command", func() { _ = c.r(4, 2) }},
		{"read capability", func() { _ = c.r(0xd0, 4) }},
		{"write cache line", func() { c.w(0x0c, 1, 0x10) }},
		{"write status", func() { c.w(0x06, 2, 0x0100) }},
		{"write MSI mask", func() { c.w(0xe0, 4, 1) }},
		{"write uncovered", func() { c.w(0xf0, 1, 1) }},
		{"read extended", func() { _ = c.r(0x100, 4) }},
		{"read straddling", func() { _ = c.r(0xfe, 4) }},
		{"write extended", func() { c.w(0x104, 4, 1) }},
	}
	for _, tt := range tests {
		if n := testing.AllocsPerRun(100, tt.fn); n != 0 {
			t.Errorf("%s: %v allocations", tt.name, n)
		}
	}
}

// TestMemConfigChecker: the fuzz oracle catches a forbidden write.
func TestMemConfigChecker(t *testing.T) {
	tests := []struct {
		name string
		off  int64
		p    []byte
		bad  bool
	}{
		{"vendor", 0x00, []byte{0x00}, true},
		{"bus master", 0x04, []byte{0x06}, false},
		{"clear memory decoding", 0x04, []byte{0x04}, true},
		{"clear one status bit", 0x07, []byte{0x01}, false},
		{"FLR", 0x69, []byte{0xa8}, true},
		{"power state", 0xcc, []byte{0x0b}, true},
		{"MSI enable", 0xd2, []byte{0x81}, false},
		{"uncovered", 0xf0, []byte{0x12}, true},
		{"unchanged rewrite", 0x00, []byte{0x86}, false},
	}
	for _, tt := range tests {
		_, m := fuzzHost(false)
		_, _ = m.WriteAt(tt.p, tt.off)
		if got := len(m.bad) != 0; got != tt.bad {
			t.Errorf("%s: flagged %v (%v), want %v", tt.name, got, m.bad, tt.bad)
		}
	}
}

// TestConfigAccessNoAllocSysfs: the same through a real file (the sysfs
// config file's pread/pwrite path).
func TestConfigAccessNoAllocSysfs(t *testing.T) {
	dev, _, _, _ := plugged(t, synthetic(), false)
	c := cfgIO{dev}
	for name, fn := range map[string]func(){
		"read":  func() { _ = c.r(0, 4) },
		"write": func() { c.w(0x06, 2, 0x0100) },
	} {
		if n := testing.AllocsPerRun(100, fn); n != 0 {
			t.Errorf("%s: %v allocations", name, n)
		}
	}
}

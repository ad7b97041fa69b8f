package passthrough

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"godm/devices"
	"godm/hyp"
	"godm/hyp/domctl"
	"godm/hyp/hcall"
)

// sysfsDevice is a function in a fake sysfs tree.
type sysfsDevice struct {
	addr      string
	config    []byte
	resources []Resource // up to 7 (BAR0-5, ROM)
	irq       int
	driver    string // "" for none
	class     uint32
	vendor    uint16
	device    uint16
	rom       []byte
	// bars are the contents of the "resourceN" files (the BARs' bytes,
	// as a read-only mmap of the real file shows them), by BAR.
	bars map[int][]byte
}

// loadSample reads a real function's files, copied from this machine's
// /sys/bus/pci/devices into testdata/devices (":" spelled "_").
func loadSample(t testing.TB, name string) sysfsDevice {
	t.Helper()
	dir := filepath.Join("testdata", "devices", name)
	cfg, err := os.ReadFile(filepath.Join(dir, "config"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := os.ReadFile(filepath.Join(dir, "resource"))
	if err != nil {
		t.Fatal(err)
	}
	var rs []Resource
	for _, l := range strings.Split(strings.TrimSpace(string(res)), "\n") {
		var r Resource
		if _, err := fmt.Sscanf(l, "0x%x 0x%x 0x%x", &r.Start, &r.End, &r.Flags); err != nil {
			t.Fatalf("%s: resource line %q: %v", name, l, err)
		}
		rs = append(rs, r)
	}
	return sysfsDevice{addr: strings.ReplaceAll(name, "_", ":"), config: cfg, resources: rs, driver: "pciback",
		vendor: binary.LittleEndian.Uint16(cfg[0:]), device: binary.LittleEndian.Uint16(cfg[2:]),
		class: uint32(cfg[9]) | uint32(cfg[10])<<8 | uint32(cfg[11])<<16}
}

// synthetic returns a NIC-like function with every supported capability
// and an unsupported one: VPD at 0x40 (hidden) -> PM at 0xc8 -> MSI
// (64-bit, maskable) at 0xd0 -> PCIe v2 at 0x60 -> MSI-X at 0xa0 ->
// vendor specific at 0xb0. BAR0 32-bit memory 128K, BAR2 I/O
// 32 ports, BAR3 32-bit memory 16K holding the MSI-X table (at 0) and
// PBA (at 0x2000), INTA on GSI 17, a 64K expansion ROM.
func synthetic() sysfsDevice {
	c := make([]byte, 256)
	le := binary.LittleEndian
	le.PutUint16(c[0x00:], 0x8086)
	le.PutUint16(c[0x02:], 0x10d3)
	le.PutUint16(c[0x04:], 0x0006) // memory, bus master (pciback enabled it)
	le.PutUint16(c[0x06:], 0x0010) // capabilities list
	c[0x08] = 0x01
	c[0x0b], c[0x0a] = 0x02, 0x00 // network, ethernet
	c[0x0e] = 0x80                // multi-function on the host
	le.PutUint32(c[0x10:], 0xf7c00000)
	le.PutUint32(c[0x18:], 0xe001)
	le.PutUint32(c[0x1c:], 0xf7c20000)
	le.PutUint32(c[0x30:], 0xf7b00000)
	le.PutUint16(c[0x2c:], 0x8086)
	le.PutUint16(c[0x2e:], 0xa01f)
	c[0x34] = 0x40
	c[0x3c], c[0x3d] = 17, 1
	// VPD (unsupported: hidden).
	c[0x40], c[0x41] = 0x03, 0xc8
	// PM: PMC with PME support, PMCSR D0.
	c[0xc8], c[0xc9] = 0x01, 0xd0
	le.PutUint16(c[0xca:], 0xc823)
	le.PutUint16(c[0xcc:], 0x0008)
	// MSI: 64-bit, per-vector masking.
	c[0xd0], c[0xd1] = 0x05, 0x60
	le.PutUint16(c[0xd2:], 0x0180)
	// PCIe v2 endpoint at 0x60 (0x3c bytes).
	c[0x60], c[0x61] = 0x10, 0xa0
	le.PutUint16(c[0x62:], 0x0002)
	le.PutUint32(c[0x64:], 0x10008cc1) // FLR capable
	le.PutUint16(c[0x68:], 0x2810)
	// MSI-X: 5 entries, table BAR3+0, PBA BAR3+0x2000.
	c[0xa0], c[0xa1] = 0x11, 0xb0
	le.PutUint16(c[0xa2:], 0x0004)
	le.PutUint32(c[0xa4:], 0x00000003)
	le.PutUint32(c[0xa8:], 0x00002003)
	// Vendor specific, 8 bytes.
	c[0xb0], c[0xb1], c[0xb2] = 0x09, 0x00, 0x08
	c[0xb4] = 0x5a
	// Device-specific bytes no rule covers.
	c[0xf0] = 0x77
	rom := make([]byte, 0x800)
	rom[0], rom[1] = 0x55, 0xaa
	return sysfsDevice{addr: "0000:03:00.0", config: c, irq: 17, driver: "pciback",
		vendor: 0x8086, device: 0x10d3, class: 0x020000, rom: rom,
		resources: []Resource{
			{0xf7c00000, 0xf7c1ffff, resourceMem},
			{},
			{0xe000, 0xe01f, resourceIO},
			{0xf7c20000, 0xf7c23fff, resourceMem},
			{}, {},
			{0xf7b00000, 0xf7b0ffff, resourceMem | 0x4000},
		}}
}

// tree writes devs into a fake sysfs root.
func tree(t testing.TB, devs ...sysfsDevice) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range devs {
		dir := filepath.Join(root, "bus", "pci", "devices", d.addr)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		var res strings.Builder
		for i := 0; i < 13; i++ {
			var r Resource
			if i < len(d.resources) {
				r = d.resources[i]
			}
			fmt.Fprintf(&res, "0x%016x 0x%016x 0x%016x\n", r.Start, r.End, r.Flags)
		}
		files := map[string]string{
			"config":   string(d.config),
			"resource": res.String(),
			"vendor":   fmt.Sprintf("0x%04x\n", d.vendor),
			"device":   fmt.Sprintf("0x%04x\n", d.device),
			"class":    fmt.Sprintf("0x%06x\n", d.class),
			"irq":      fmt.Sprintf("%d\n", d.irq),
		}
		if d.rom != nil {
			files["rom"] = string(d.rom)
		}
		for i, b := range d.bars {
			files[fmt.Sprintf("resource%d", i)] = string(b)
		}
		for n, v := range files {
			if err := os.WriteFile(filepath.Join(dir, n), []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if d.driver != "" {
			drv := filepath.Join(root, "bus", "pci", "drivers", d.driver)
			if err := os.MkdirAll(drv, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(drv, filepath.Join(dir, "driver")); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

// openHost opens d from a fake tree.
func openHost(t testing.TB, d sysfsDevice) *HostDevice {
	t.Helper()
	addr, err := ParseSBDF(d.addr)
	if err != nil {
		t.Fatal(err)
	}
	h, err := OpenHost(HostOptions{SysfsRoot: tree(t, d)}, addr)
	if err != nil {
		t.Fatalf("OpenHost(%s): %v", d.addr, err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// call is one recorded hypervisor call of fakeXen.
type call struct {
	op   string // map_pirq, unmap_pirq, bind, unbind, memory_mapping, ioport_mapping
	b    domctl.IRQBinding
	req  hcall.MapPIRQRequest
	pirq int
	g, m uint64 // guest and machine first frame/port
	nr   uint64
	add  bool
}

func (c call) String() string {
	switch c.op {
	case "map_pirq":
		return fmt.Sprintf("map_pirq(%+v)=%d", c.req, c.pirq)
	case "unmap_pirq":
		return fmt.Sprintf("unmap_pirq(%d)", c.pirq)
	case "bind", "unbind":
		return fmt.Sprintf("%s(%+v)", c.op, c.b)
	}
	return fmt.Sprintf("%s(g=%#x m=%#x nr=%#x add=%v)", c.op, c.g, c.m, c.nr, c.add)
}

// fakeXen records calls, hands out PIRQs and tracks what is left mapped
// or bound; fail makes chosen operations fail.
type fakeXen struct {
	mu       sync.Mutex
	calls    []call
	next     int
	pirqs    map[int]bool
	bound    map[int]bool
	mem      map[uint64]uint64 // gfn -> mfn
	ports    map[uint64]uint64
	fail     func(op string) error
	dom      hyp.DomID
	wrongDom bool
}

func newFakeXen() *fakeXen {
	return &fakeXen{next: 100, pirqs: map[int]bool{}, bound: map[int]bool{}, mem: map[uint64]uint64{}, ports: map[uint64]uint64{}}
}

func (f *fakeXen) rec(c call) error {
	f.calls = append(f.calls, c)
	if f.fail != nil {
		return f.fail(c.op)
	}
	return nil
}

func (f *fakeXen) MapPIRQ(dom hyp.DomID, req hcall.MapPIRQRequest) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := int(req.PIRQ)
	if p < 0 {
		p = f.next
		f.next++
	}
	if err := f.rec(call{op: "map_pirq", req: req, pirq: p}); err != nil {
		return -1, err
	}
	f.pirqs[p] = true
	return p, nil
}

func (f *fakeXen) UnmapPIRQ(dom hyp.DomID, pirq int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.rec(call{op: "unmap_pirq", pirq: pirq}); err != nil {
		return err
	}
	delete(f.pirqs, pirq)
	return nil
}

func (f *fakeXen) BindPtIRQ(dom hyp.DomID, b domctl.IRQBinding) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.rec(call{op: "bind", b: b}); err != nil {
		return err
	}
	f.bound[int(b.MachineIRQ)] = true
	return nil
}

func (f *fakeXen) UnbindPtIRQ(dom hyp.DomID, b domctl.IRQBinding) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.rec(call{op: "unbind", b: b}); err != nil {
		return err
	}
	delete(f.bound, int(b.MachineIRQ))
	return nil
}

func (f *fakeXen) MemoryMapping(dom hyp.DomID, gfn, mfn, nr uint64, add bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.rec(call{op: "memory_mapping", g: gfn, m: mfn, nr: nr, add: add}); err != nil {
		return err
	}
	for i := uint64(0); i < nr; i++ {
		if add {
			f.mem[gfn+i] = mfn + i
		} else {
			delete(f.mem, gfn+i)
		}
	}
	return nil
}

func (f *fakeXen) IoportMapping(dom hyp.DomID, g, m, nr uint32, add bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.rec(call{op: "ioport_mapping", g: uint64(g), m: uint64(m), nr: uint64(nr), add: add}); err != nil {
		return err
	}
	for i := uint64(0); i < uint64(nr); i++ {
		if add {
			f.ports[uint64(g)+i] = uint64(m) + i
		} else {
			delete(f.ports, uint64(g)+i)
		}
	}
	return nil
}

// since returns the calls after the first n.
func (f *fakeXen) since(n int) []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls[n:]...)
}

func (f *fakeXen) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// leftovers fails the test if anything is still mapped or bound.
func (f *fakeXen) leftovers(t testing.TB) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.pirqs)+len(f.bound)+len(f.mem)+len(f.ports) != 0 {
		t.Errorf("left behind: pirqs %v, bindings %v, %d frames, %d ports", f.pirqs, f.bound, len(f.mem), len(f.ports))
	}
}

// cfgIO is guest configuration access to a plugged device.
type cfgIO struct{ d *Device }

func (c cfgIO) r(reg uint32, size uint8) uint64 {
	return c.d.Read(devices.Access{Addr: uint64(reg), Offset: uint64(reg), Size: size})
}
func (c cfgIO) w(reg uint32, size uint8, v uint64) {
	c.d.Write(devices.Access{Addr: uint64(reg), Offset: uint64(reg), Size: size}, v)
}

// plugged builds and plugs a Device for d on a fresh bus with a fakeXen.
func plugged(t testing.TB, d sysfsDevice, permissive bool) (*Device, *fakeXen, *devices.Bus, *HostDevice) {
	t.Helper()
	h := openHost(t, d)
	x := newFakeXen()
	dev, err := New(Config{Dom: 5, Host: h, Xen: x, Slot: 4, Permissive: permissive})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	bus := devices.NewBus()
	if err := dev.Plug(bus); err != nil {
		t.Fatalf("Plug: %v", err)
	}
	t.Cleanup(func() { _ = dev.Unplug() })
	return dev, x, bus, h
}

// hostCfg reads the host's config space back from the fake sysfs file.
func hostCfg(t testing.TB, h *HostDevice, reg int64, size int) uint64 {
	t.Helper()
	var b [8]byte
	if _, err := h.Config.ReadAt(b[:size], reg); err != nil {
		t.Fatal(err)
	}
	return binary.LittleEndian.Uint64(b[:])
}

var errBoom = fmt.Errorf("injected failure")

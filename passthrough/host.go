package passthrough

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"godm/devices"

	upci "github.com/u-root/u-root/pkg/pci"
)

// Errors of OpenHost. They are wrapped with the device's address and what
// was found.
var (
	// ErrNoDevice: the function is not in sysfs.
	ErrNoDevice = errors.New("passthrough: no such PCI function")
	// ErrNotAssignable: the function is not bound to the stub driver
	// (pciback), so dom0 may still be using it.
	ErrNotAssignable = errors.New("passthrough: function not bound to the passthrough stub driver")
	// ErrBridge: bridges cannot be passed through.
	ErrBridge = errors.New("passthrough: function is a bridge")
	// ErrNotGranted: the domain was not granted the function's resources.
	ErrNotGranted = errors.New("passthrough: resources not granted to the domain")
)

// DefaultStubDriver is the driver a passed-through function must be bound
// to by default: xen-pciback registers itself as "pciback"
// (drivers/xen/xen-pciback/pci_stub.c).
const DefaultStubDriver = "pciback"

// Linux resource flags (include/linux/ioport.h), as the third column of
// sysfs "resource".
const (
	resourceIO       = 0x00000100
	resourceMem      = 0x00000200
	resourcePrefetch = 0x00002000
	resourceMem64    = 0x00100000
)

// Resource is one line of sysfs "resource": a BAR (0-5) or the expansion
// ROM (6), in host physical addresses (I/O ports for an I/O BAR).
type Resource struct {
	Start, End, Flags uint64
}

// Size returns the resource's length, 0 if it is unused.
func (r Resource) Size() uint64 {
	if r.End <= r.Start && r.Start == 0 {
		return 0
	}
	return r.End - r.Start + 1
}

// IO reports an I/O-port resource.
func (r Resource) IO() bool { return r.Flags&resourceIO != 0 }

// HostConfig is the host function's configuration space (the sysfs
// "config" file): reads and writes at byte offsets.
type HostConfig interface {
	io.ReaderAt
	io.WriterAt
}

// HostDevice is the host PCI function being passed through, as sysfs
// describes it.
type HostDevice struct {
	// Addr is the host address.
	Addr devices.SBDF
	// Vendor, Device and Class (24 bits) identify it.
	Vendor, Device uint16
	Class          uint32
	// GSI is the legacy interrupt (sysfs "irq"); 0 for none.
	GSI int
	// Driver is the bound driver.
	Driver string
	// Resources are BAR0-5 and the expansion ROM.
	Resources [7]Resource
	// Config is the configuration space.
	Config HostConfig
	// ROM is the expansion ROM image (sysfs "rom"), nil if there is none
	// or it could not be read.
	ROM []byte
	// Dir is the function's sysfs directory (under HostOptions.SysfsRoot;
	// OpenHost sets it). A plugged Device maps the "resourceN" file of
	// the BARs holding the MSI-X table and PBA read-only, to read the PBA
	// (and any other register on those pages) from the device. Empty: no
	// such mapping; those reads return 0 (Stats.TrapMisses).
	Dir string

	closer io.Closer
}

// Close releases the configuration-space file.
func (h *HostDevice) Close() error {
	if h.closer == nil {
		return nil
	}
	err := h.closer.Close()
	h.closer = nil
	return err
}

// HostOptions says where and how to look for host devices.
type HostOptions struct {
	// SysfsRoot is the sysfs mount point ("/sys" on a real host; a fake
	// tree in tests). Required.
	SysfsRoot string
	// StubDrivers are the acceptable drivers; nil means
	// DefaultStubDriver only.
	StubDrivers []string
}

// ParseSBDF parses a PCI address "SSSS:BB:DD.F" (or "BB:DD.F", segment 0),
// all fields hexadecimal. An error names the field that is wrong and why.
func ParseSBDF(s string) (devices.SBDF, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("passthrough: PCI address %q: %s", s, fmt.Sprintf(format, a...))
	}
	rest := s
	seg := uint64(0)
	if strings.Count(s, ":") == 2 {
		segStr, r, _ := strings.Cut(s, ":")
		v, err := strconv.ParseUint(segStr, 16, 16)
		if err != nil {
			return 0, bad("segment %q: want 0..ffff (hexadecimal)", segStr)
		}
		seg, rest = v, r
	}
	bus, devfn, ok := strings.Cut(rest, ":")
	dev, fn, ok2 := strings.Cut(devfn, ".")
	if !ok || !ok2 || strings.Contains(devfn, ":") {
		return 0, bad("want SSSS:BB:DD.F (segment, bus, device, function in hexadecimal)")
	}
	// PCI: 256 buses, 32 devices per bus, 8 functions per device.
	for _, f := range []struct {
		name, v string
		max     uint64
	}{{"bus", bus, 0xff}, {"device", dev, 0x1f}, {"function", fn, 7}} {
		n, err := strconv.ParseUint(f.v, 16, 64)
		if err != nil || f.v == "" {
			return 0, bad("%s %q is not a hexadecimal number", f.name, f.v)
		}
		if n > f.max {
			return 0, bad("%s %#x is out of range: a PCI %s is 0..%#x", f.name, n, f.name, f.max)
		}
	}
	b, _ := strconv.ParseUint(bus, 16, 8)
	d, _ := strconv.ParseUint(dev, 16, 8)
	f, _ := strconv.ParseUint(fn, 16, 8)
	return devices.NewSBDF(uint16(seg), uint8(b), uint8(d), uint8(f)), nil
}

// OpenHost finds the host function addr under opts.SysfsRoot and opens its
// configuration space for reading and writing. It refuses (with
// ErrNoDevice, ErrNotAssignable or ErrBridge) a function that does not
// exist, is not bound to a stub driver or is a bridge.
func OpenHost(opts HostOptions, addr devices.SBDF) (_ *HostDevice, err error) {
	dir := filepath.Join(opts.SysfsRoot, "bus", "pci", "devices", addr.String())
	if _, err := os.Stat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("passthrough: %v: %w", addr, ErrNoDevice)
		}
		return nil, fmt.Errorf("passthrough: %v: %w", addr, err)
	}
	// u-root reads the identification, the IRQ and the resources.
	p, err := upci.OnePCI(dir)
	if err != nil {
		return nil, fmt.Errorf("passthrough: %v: reading sysfs: %w", addr, err)
	}
	h := &HostDevice{Addr: addr, Vendor: p.Vendor, Device: p.Device, Class: p.Class, GSI: int(p.IRQLine), Dir: dir}
	stubs := opts.StubDrivers
	if stubs == nil {
		stubs = []string{DefaultStubDriver}
	}
	if link, err := os.Readlink(filepath.Join(dir, "driver")); err == nil {
		h.Driver = filepath.Base(link)
	}
	if !slices.Contains(stubs, h.Driver) {
		drv := h.Driver
		if drv == "" {
			drv = "no driver"
		}
		return nil, fmt.Errorf("passthrough: %v is bound to %s, want one of %v (bind it with xl pci-assignable-add): %w",
			addr, drv, stubs, ErrNotAssignable)
	}
	lines := strings.Split(strings.TrimSpace(p.Resource), "\n")
	for i := 0; i < len(h.Resources) && i < len(lines); i++ {
		start, end, flags, err := upci.BaseLimType(lines[i])
		if err != nil {
			return nil, fmt.Errorf("passthrough: %v: resource %d: %w", addr, i, err)
		}
		h.Resources[i] = Resource{Start: start, End: end, Flags: flags}
	}
	f, err := os.OpenFile(filepath.Join(dir, "config"), os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("passthrough: %v: opening config space: %w", addr, err)
	}
	h.Config, h.closer = f, f
	defer func() {
		if err != nil {
			_ = h.Close()
		}
	}()
	var hdr [0x40]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return nil, fmt.Errorf("passthrough: %v: reading config space: %w", addr, err)
	}
	if hdr[0x0e]&0x7f != 0 || hdr[0x0b] == 0x06 {
		return nil, fmt.Errorf("passthrough: %v (class %06x, header type %#x): %w", addr, h.Class, hdr[0x0e], ErrBridge)
	}
	if h.Resources[6].Size() != 0 {
		h.ROM = readROM(filepath.Join(dir, "rom"))
	}
	return h, nil
}

// readROM reads the sysfs "rom" file, which Linux only allows once "1"
// has been written to it; it is switched off again afterwards.
func readROM(path string) []byte {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	rom, err := io.ReadAll(f)
	if err == nil && len(rom) > 0 {
		return rom
	}
	if _, err := f.WriteAt([]byte("1"), 0); err != nil {
		return nil
	}
	defer func() { _, _ = f.WriteAt([]byte("0"), 0) }()
	rom, err = io.ReadAll(io.NewSectionReader(f, 0, 1<<24))
	if err != nil || len(rom) == 0 {
		return nil
	}
	return rom
}

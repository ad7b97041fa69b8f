package passthrough

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// hostWindow is a read-only mapping of the host pages of a BAR that godm
// traps (the MSI-X table and PBA pages), made from the function's sysfs
// "resourceN" file, not /dev/mem. It serves guest reads of the PBA and
// of any other register on those pages. Read-only on purpose: Xen keeps
// the MSI-X table and PBA pages read-only for every domain, dom0
// included, while the host function uses MSI-X (mmio_ro_ranges,
// xen/arch/x86/msi.c msix_capability_init), so a write through a dom0
// mapping could not reach the device; a writable mapping would only
// risk a fault in godm.
type hostWindow struct {
	bar   int
	start int64  // BAR offset of mem[0]; negative when the BAR does not start its page
	mem   []byte // from unix.Mmap; nil once unmapped
}

// read loads size bytes at offset off of BAR bar with a single access,
// false if the window does not cover them.
func (w *hostWindow) read(bar int, off int64, size uint8) (uint64, bool) {
	if w.bar != bar {
		return 0, false
	}
	i := off - w.start
	if i < 0 || i+int64(size) > int64(len(w.mem)) {
		return 0, false
	}
	return loadMMIO(w.mem, int(i), size), true
}

// pbaLen is the size of the PBA of n vectors: one bit each, in QWORDs
// (PCI Local Bus Specification 3.0, §6.8.2, Pending Bits).
func pbaLen(n int) uint64 { return (uint64(n) + 63) / 64 * 8 }

// windowSpan is a run of host pages of a BAR, counted from the page that
// holds the BAR's first byte (page 0 of its sysfs resource file).
type windowSpan struct {
	bar      int
	from, to uint64
}

// windowSpans returns the page runs of the table and the PBA, merged
// when they are in the same BAR and touch.
func windowSpans(m *msixState, h *HostDevice) []windowSpan {
	var spans []windowSpan
	add := func(bar int, off, n uint64) {
		p := pageSpan(h.Resources[bar].Start%pageSize+off, n)
		for k := range spans {
			s := &spans[k]
			if s.bar == bar && p[0] <= s.to && s.from <= p[1] {
				s.from, s.to = min(s.from, p[0]), max(s.to, p[1])
				return
			}
		}
		spans = append(spans, windowSpan{bar: bar, from: p[0], to: p[1]})
	}
	add(m.bir, m.tableOff, uint64(m.n)*16)
	add(m.pbaBIR, m.pbaOff, pbaLen(m.n))
	return spans
}

// mapWindowsLocked maps the host pages the MSI-X traps cover (Plug). A
// window that cannot be made (no resource file, a file too short, mmap
// refused: Linux's pci_mmap_resource, drivers/pci/pci-sysfs.c, refuses
// under kernel lockdown and for an exclusive region) is left out: reads it
// would serve return 0 (Stats.TrapMisses). Called with mu held.
func (d *Device) mapWindowsLocked() error {
	m, h := d.msix, d.cfg.Host
	if m == nil || h.Dir == "" || len(d.windows) != 0 {
		return nil
	}
	var errs []error
	for _, s := range windowSpans(m, h) {
		w, err := mapWindow(h, s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		d.windows = append(d.windows, w)
	}
	return errors.Join(errs...)
}

// mapWindow maps span s of the function's resource file read-only.
func mapWindow(h *HostDevice, s windowSpan) (hostWindow, error) {
	path := filepath.Join(h.Dir, "resource"+strconv.Itoa(s.bar))
	f, err := os.Open(path)
	if err != nil {
		return hostWindow{}, fmt.Errorf("passthrough: %v: opening BAR%d for the MSI-X PBA: %w", h.Addr, s.bar, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return hostWindow{}, fmt.Errorf("passthrough: %v: %s: %w", h.Addr, path, err)
	}
	// Linux lets a resource file be mapped over the pages its BAR
	// touches (pci_mmap_fits, drivers/pci/pci-sysfs.c); its size is the
	// BAR's length. A regular file standing in for it must cover every
	// page mapped, or a read past its end would fault.
	if have := (uint64(st.Size()) + pageSize - 1) / pageSize; !st.Mode().IsRegular() || s.to > have {
		return hostWindow{}, fmt.Errorf("passthrough: %v: %s (%d bytes, %v) does not cover the MSI-X pages %d-%d: %w",
			h.Addr, path, st.Size(), st.Mode().Type(), s.from, s.to-1, unix.EINVAL)
	}
	mem, err := unix.Mmap(int(f.Fd()), int64(s.from*pageSize), int((s.to-s.from)*pageSize), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return hostWindow{}, fmt.Errorf("passthrough: %v: mapping %s pages %d-%d: %w", h.Addr, path, s.from, s.to-1, err)
	}
	return hostWindow{bar: s.bar, start: int64(s.from*pageSize) - int64(h.Resources[s.bar].Start%pageSize), mem: mem}, nil
}

// unmapWindowsLocked undoes mapWindowsLocked. Called with mu held.
func (d *Device) unmapWindowsLocked() error {
	var errs []error
	for i := range d.windows {
		if err := unix.Munmap(d.windows[i].mem); err != nil {
			errs = append(errs, fmt.Errorf("passthrough: %v: unmapping BAR%d pages: %w", d.cfg.Host.Addr, d.windows[i].bar, err))
		}
		d.windows[i].mem = nil
	}
	d.windows = d.windows[:0]
	return errors.Join(errs...)
}

package piix4pm

import (
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"

	"godm/devices"
	"godm/irq"
	"godm/pci"
)

// Identity (QEMU hw/acpi/piix4.c).
const (
	VendorID = 0x8086
	DeviceID = 0x7113
	Revision = 0x03
	Class    = 0x068000 // bridge, other

	// Function is the function number next to the PIIX3 at slot 1.
	Function = 3
	// Slot is the PIIX's slot.
	Slot = 1
)

// Configuration registers (82371AB datasheet; hvmloader's pci_setup).
const (
	RegPMBA      = 0x40 // PM base address: bit 0 is 1 (I/O) at reset, bits 15:6 the base
	RegPMRegMisc = 0x80 // bit 0: PM I/O space enable
	RegSMBBA     = 0x90 // SMBus base address: bit 0 is 1 at reset, bits 15:4 the base
	RegSMBHSTCFG = 0xd2 // bit 0: SMBus host interface enable

	smbusBase = 0xb100 // QEMU's smb_io_base for the pc machines (hw/i386/pc_piix.c)
)

// Port addresses (xen/include/public/hvm/ioreq.h, tools/libacpi/mk_dsdt.c).
const (
	PM1aControlPort = 0xb004 // ACPI_PM1A_CNT_BLK_ADDRESS_V1
	GPE0Port        = 0xafe0 // ACPI_GPE0_BLK_ADDRESS_V1
	GPE0Len         = 4      // ACPI_GPE0_BLK_LEN_V1
	HotplugPort     = 0xae00 // PCIU, PCID, B0EJ, RMV
	HotplugLen      = 0x10
	CPUPresentPort  = 0xaf00 // PRST
	CPUPresentLen   = 32
	DebugPort       = 0xb044 // DG1
	DebugLen        = 4
)

// PM1 control bits (ACPI 6.x §4.8.3.2.1).
const (
	pm1SCIEnable   = 1 << 0
	pm1SleepType   = 7 << 10
	pm1SleepEnable = 1 << 13

	// SleepTypeOff is SLP_TYP for \_S4 and \_S5, SleepTypeS3 for \_S3.
	SleepTypeOff = 0
	SleepTypeS3  = 1
)

// GPE0 bits used by the DSDT's _E01 and _E02 methods.
const (
	GPEPCIHotplug = 1 << 1
	GPECPUHotplug = 1 << 2
)

// ShutdownPoweroff is SHUTDOWN_poweroff (xen/include/public/sched.h).
const ShutdownPoweroff = 0

// Shutdowner ends the domain with a SHUTDOWN_* reason; the hyp/dm Client
// implements it.
type Shutdowner interface {
	RemoteShutdown(reason uint32) error
}

// Suspender puts the domain into ACPI S3. Under Xen a device model does
// that by setting HVM_PARAM_ACPI_S_STATE to 3 (QEMU's xen suspend
// notifier), not with a DM op.
type Suspender interface {
	SuspendToRAM() error
}

// Ejector removes the device in a PCI slot when the guest ejects it.
type Ejector interface {
	EjectPCISlot(slot uint8) error
}

// Config wires the PM function.
type Config struct {
	// SCI is ISA IRQ 9; nil leaves SCI unconnected.
	SCI irq.Line
	// Shutdown powers the domain off; nil drops (and counts) requests.
	Shutdown Shutdowner
	// Suspend enters S3; nil drops (and counts) requests.
	Suspend Suspender
	// Eject handles B0EJ writes; nil drops (and counts) them.
	Eject Ejector
	// LPT1, COM1 and COM2 tell whether the machine has a parallel port at
	// 0x378 and serial ports at 0x3f8 and 0x2f8; they show in the device
	// resource registers 0x5f and 0x67 (piix4_pm_machine_ready,
	// hw/acpi/piix4.c).
	LPT1, COM1, COM2 bool
	// RemovableSlots is the RMV mask (bit n: slot n may be ejected).
	RemovableSlots uint32
	// VCPUs is the number of processors present at start (PRST bits).
	VCPUs int
}

// Stats are the PM function's counters.
type Stats struct {
	// PowerOffs, Suspends and Ejects count guest requests; Errors counts
	// requests that failed or had nothing wired to them, and sleep types
	// the DSDT does not define.
	PowerOffs, Suspends, Ejects, Errors uint64
}

// Device is the PIIX4 PM function and its ACPI registers.
type Device struct {
	cfg Config
	fn  *pci.Device

	regions [numKinds]region

	mu      sync.Mutex
	pm1Cnt  uint16              // guarded by mu
	gpeSts  uint16              // guarded by mu
	gpeEn   uint16              // guarded by mu
	sci     bool                // guarded by mu: level last sent
	pciUp   uint32              // guarded by mu
	pciDown uint32              // guarded by mu
	cpus    [CPUPresentLen]byte // guarded by mu
	debug   [DebugLen]byte      // guarded by mu

	powerOffs, suspends, ejects, errors atomic.Uint64
}

// New returns the PM function in its reset state.
func New(c Config) (*Device, error) {
	fn, err := pci.New(pci.Header{
		VendorID: VendorID, DeviceID: DeviceID, Revision: Revision, Class: Class,
		SubsystemVendorID: 0x1af4, SubsystemID: 0x1100, // QEMU's default
		InterruptPin: 1,
		Status:       0x0280, // fast back-to-back, DEVSEL medium
	})
	if err != nil {
		return nil, fmt.Errorf("piix4pm: %w", err)
	}
	// Reset values from QEMU's piix4_pm_realize, piix4_pm_reset and
	// piix4_pm_machine_ready (hw/acpi/piix4.c): PMBA's I/O bit, "SMM
	// already initialised" in 0x5b (no SMM under Xen), the device resource
	// registers, the SMBus base pc_piix.c passes (0xb100) with its I/O bit
	// and SMBus enabled in 0xd2 (hvmloader clears it). Everything above the
	// header is writable, as in QEMU.
	var reset [pci.ConfigSize]byte
	reset[RegPMBA] = 1
	reset[0x5b] = 0x02
	reset[0x5f] = 0x10
	if c.LPT1 {
		reset[0x5f] |= 0x80
	}
	reset[0x63] = 0x60
	if c.COM1 {
		reset[0x67] |= 0x08
	}
	if c.COM2 {
		reset[0x67] |= 0x90
	}
	reset[RegSMBBA] = byte(smbusBase&0xff | 1)
	reset[RegSMBBA+1] = byte(smbusBase >> 8)
	reset[RegSMBHSTCFG] = 0x09
	for off := uint32(0x40); off < pci.ConfigSize; off += 4 {
		v := uint32(reset[off]) | uint32(reset[off+1])<<8 | uint32(reset[off+2])<<16 | uint32(reset[off+3])<<24
		if err := fn.DefineRegister(off, 4, v, 0xffffffff, 0); err != nil {
			return nil, fmt.Errorf("piix4pm: %w", err)
		}
	}
	// A system reset sets only what QEMU's piix4_pm_reset sets (PMBA's
	// low byte, 0x58-0x5b, PMREGMISC 0x80; hw/acpi/piix4.c); the other
	// device-specific bytes keep the guest's values.
	for off := uint32(0x41); off < pci.ConfigSize; off++ {
		if (off < 0x58 || off > 0x5b) && off != 0x80 {
			if err := fn.KeepOnReset(off, 1); err != nil {
				return nil, fmt.Errorf("piix4pm: %w", err)
			}
		}
	}
	if c.VCPUs < 0 || c.VCPUs > CPUPresentLen*8 {
		return nil, fmt.Errorf("piix4pm: %d vcpus: %w", c.VCPUs, pci.ErrInvalid)
	}
	d := &Device{cfg: c, fn: fn}
	for i := range d.regions {
		d.regions[i] = region{d: d, kind: i}
	}
	d.resetLocked()
	return d, nil
}

// Function returns the PCI function.
func (d *Device) Function() *pci.Device { return d.fn }

// portRanges lists the fixed port ranges, indexed by region kind.
func portRanges() [numKinds]struct{ base, size uint64 } {
	return [numKinds]struct{ base, size uint64 }{
		kindPM1Cnt:  {PM1aControlPort, 2},
		kindGPE0:    {GPE0Port, GPE0Len},
		kindHotplug: {HotplugPort, HotplugLen},
		kindCPU:     {CPUPresentPort, CPUPresentLen},
		kindDebug:   {DebugPort, DebugLen},
	}
}

const (
	kindPM1Cnt = iota
	kindGPE0
	kindHotplug
	kindCPU
	kindDebug
	numKinds
)

// Handler returns the handler of port range i (0..4: PM1a control, GPE0,
// PCI hotplug, processor presence, debug), for tests and tracing; nil for
// any other i.
func (d *Device) Handler(i int) (base, size uint64, h devices.Handler) {
	if i < 0 || i >= numKinds {
		return 0, 0, nil
	}
	p := portRanges()[i]
	return p.base, p.size, &d.regions[i]
}

// Attach places the function at 00:01.3 and registers its port ranges.
func (d *Device) Attach(b *pci.Bus, pio *devices.Space) (devices.SBDF, error) {
	s, err := b.Add(d.fn, Slot, Function)
	if err != nil {
		return 0, fmt.Errorf("piix4pm: attach: %w", err)
	}
	ports := portRanges()
	for i, p := range ports {
		if err := pio.Register(p.base, p.size, &d.regions[i]); err != nil {
			for _, q := range ports[:i] {
				_ = pio.Unregister(q.base)
			}
			_ = b.Remove(d.fn)
			return 0, fmt.Errorf("piix4pm: attach: %w", err)
		}
	}
	return s, nil
}

// Stats returns the counters.
func (d *Device) Stats() Stats {
	return Stats{
		PowerOffs: d.powerOffs.Load(), Suspends: d.suspends.Load(),
		Ejects: d.ejects.Load(), Errors: d.errors.Load(),
	}
}

// Reset implements devices.Resetter: registers return to their reset
// values, pending hotplug events are dropped and SCI is deasserted. The
// processors present stay as they are.
func (d *Device) Reset() {
	d.fn.Reset()
	d.mu.Lock()
	d.resetLocked()
	d.mu.Unlock()
}

func (d *Device) resetLocked() {
	// acpi_pm1_cnt_reset (hw/acpi/core.c): SCI_EN set when there is no SMM.
	d.pm1Cnt = pm1SCIEnable
	d.gpeSts, d.gpeEn = 0, 0
	d.pciUp, d.pciDown = 0, 0
	d.debug = [DebugLen]byte{}
	if d.cpus == ([CPUPresentLen]byte{}) {
		for c := range d.cfg.VCPUs {
			d.cpus[c/8] |= 1 << (c % 8)
		}
	}
	d.updateSCILocked()
}

func (d *Device) updateSCILocked() {
	level := d.gpeSts&d.gpeEn != 0
	if level == d.sci {
		return
	}
	d.sci = level
	if d.cfg.SCI != nil {
		d.cfg.SCI.SetLevel(level)
	}
}

// raiseLocked sets GPE0 status bits and updates SCI.
func (d *Device) raiseLocked(bits uint16) {
	d.gpeSts |= bits
	d.updateSCILocked()
}

// PCIPlugged reports a device inserted in slot (1..31) to the guest.
func (d *Device) PCIPlugged(slot uint8) {
	if slot >= 32 {
		return
	}
	d.mu.Lock()
	d.pciUp |= 1 << slot
	d.pciDown &^= 1 << slot
	d.raiseLocked(GPEPCIHotplug)
	d.mu.Unlock()
}

// PCIUnplugRequest asks the guest to release the device in slot; the guest
// answers by ejecting it (B0EJ), which reaches the Ejector.
func (d *Device) PCIUnplugRequest(slot uint8) {
	if slot >= 32 {
		return
	}
	d.mu.Lock()
	d.pciDown |= 1 << slot
	d.pciUp &^= 1 << slot
	d.raiseLocked(GPEPCIHotplug)
	d.mu.Unlock()
}

// SetCPUPresent marks processor cpu present or absent in PRST and raises
// the CPU hotplug event if that changed it.
func (d *Device) SetCPUPresent(cpu int, present bool) {
	if cpu < 0 || cpu >= CPUPresentLen*8 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.cpus[cpu/8]
	if present {
		d.cpus[cpu/8] |= 1 << (cpu % 8)
	} else {
		d.cpus[cpu/8] &^= 1 << (cpu % 8)
	}
	if d.cpus[cpu/8] != old {
		d.raiseLocked(GPECPUHotplug)
	}
}

// region is the handler of one port range.
type region struct {
	d    *Device
	kind int
}

// Read implements devices.Handler.
func (r *region) Read(a devices.Access) uint64 {
	d := r.d
	d.mu.Lock()
	defer d.mu.Unlock()
	var v uint64
	for i := uint64(0); i < uint64(a.Size) && i < 8; i++ {
		v |= uint64(d.byteLocked(r.kind, a.Offset+i)) << (8 * i)
	}
	return v
}

// byteLocked returns one register byte of a region; bytes outside read 0.
func (d *Device) byteLocked(kind int, off uint64) byte {
	switch kind {
	case kindPM1Cnt:
		if off < 2 {
			return byte(d.pm1Cnt >> (8 * off))
		}
	case kindGPE0:
		switch off {
		case 0, 1:
			return byte(d.gpeSts >> (8 * off))
		case 2, 3:
			return byte(d.gpeEn >> (8 * (off - 2)))
		}
	case kindHotplug:
		var w uint32
		switch off / 4 {
		case 0:
			w = d.pciUp
		case 1:
			w = d.pciDown
		case 3:
			w = d.cfg.RemovableSlots
		}
		return byte(w >> (8 * (off % 4)))
	case kindCPU:
		if off < CPUPresentLen {
			return d.cpus[off]
		}
	case kindDebug:
		if off < DebugLen {
			return d.debug[off]
		}
	}
	return 0
}

// Write implements devices.Handler.
func (r *region) Write(a devices.Access, v uint64) {
	d := r.d
	sleep := -1
	var eject uint32
	d.mu.Lock()
	switch r.kind {
	case kindPM1Cnt:
		cnt := d.pm1Cnt
		for i := uint64(0); i < uint64(a.Size); i++ {
			if o := a.Offset + i; o < 2 {
				cnt = cnt&^(0xff<<(8*o)) | uint16(byte(v>>(8*i)))<<(8*o)
			}
		}
		// acpi_pm1_cnt_write: SLP_EN is write-only, the rest is kept.
		d.pm1Cnt = cnt &^ pm1SleepEnable
		if cnt&pm1SleepEnable != 0 {
			sleep = int(cnt&pm1SleepType) >> 10
		}
	case kindGPE0:
		for i := uint64(0); i < uint64(a.Size); i++ {
			b := uint16(byte(v >> (8 * i)))
			switch o := a.Offset + i; o {
			case 0, 1:
				d.gpeSts &^= b << (8 * o)
			case 2, 3:
				d.gpeEn = d.gpeEn&^(0xff<<(8*(o-2))) | b<<(8*(o-2))
			}
		}
		d.updateSCILocked()
	case kindHotplug:
		for i := uint64(0); i < uint64(a.Size); i++ {
			if o := a.Offset + i; o >= 8 && o < 12 {
				eject |= uint32(byte(v>>(8*i))) << (8 * (o - 8))
			}
		}
		d.pciUp &^= eject
		d.pciDown &^= eject
	case kindDebug:
		for i := uint64(0); i < uint64(a.Size); i++ {
			if o := a.Offset + i; o < DebugLen {
				d.debug[o] = byte(v >> (8 * i))
			}
		}
	}
	d.mu.Unlock()
	if sleep >= 0 {
		d.sleep(sleep)
	}
	for eject != 0 {
		slot := uint8(bits.TrailingZeros32(eject))
		eject &^= 1 << slot
		d.ejects.Add(1)
		if d.cfg.Eject == nil || d.cfg.Eject.EjectPCISlot(slot) != nil {
			d.errors.Add(1)
		}
	}
}

// sleep acts on SLP_EN with the given SLP_TYP.
func (d *Device) sleep(typ int) {
	switch typ {
	case SleepTypeOff:
		d.powerOffs.Add(1)
		if d.cfg.Shutdown == nil || d.cfg.Shutdown.RemoteShutdown(ShutdownPoweroff) != nil {
			d.errors.Add(1)
		}
	case SleepTypeS3:
		d.suspends.Add(1)
		if d.cfg.Suspend == nil || d.cfg.Suspend.SuspendToRAM() != nil {
			d.errors.Add(1)
		}
	default:
		d.errors.Add(1)
	}
}

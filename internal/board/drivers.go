package board

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"godm/devices"
	"godm/devices/e1000"
	"godm/devices/i440fx"
	"godm/devices/i8042"
	"godm/devices/ide"
	"godm/devices/piix3"
	"godm/devices/piix4pm"
	"godm/devices/rtl8139"
	"godm/devices/testdev"
	"godm/devices/uart"
	"godm/devices/uart/pciserial"
	"godm/devices/vga"
	"godm/devices/virtio"
	"godm/devices/virtionet"
	"godm/devices/xenplatform"
	"godm/memory"
	"godm/netback"
	"godm/netback/antispoof"
	"godm/pci"
)

// Platform services a driver may need, as the devices define them.
type (
	LinkRouter      = piix3.LinkRouter
	INTxSink        = piix3.INTxSink
	Shutdowner      = piix3.Shutdowner
	Suspender       = piix4pm.Suspender
	Ejector         = piix4pm.Ejector
	ResetRequester  = i8042.ResetRequester
	ROMLocker       = xenplatform.ROMLocker
	PVUnplugger     = xenplatform.Unplugger
	PlatformLogSink = xenplatform.LogSink
)

// Driver is one entry of the driver table: a QEMU device name and the
// constructor that builds and plugs such a device.
type Driver struct {
	// Name is the QEMU driver name (-device NAME).
	Name string
	// Bus is where the device plugs ("PCI", "ISA"), as -device help says.
	Bus string
	// Category groups -device help ("Controller/Bridge/Hub devices", ...).
	Category string
	// Desc is a one-line description.
	Desc string
	// Hotpluggable says whether device_del may remove it at run time.
	Hotpluggable bool
	// Props are the properties the constructor reads.
	Props []Prop
	// New builds the device from props on board b and plugs it,
	// recording in pl the device and the steps that unplug it.
	New func(b *Board, props Props, pl *Plugged) error
}

// Prop describes one property of a driver.
type Prop struct {
	Name, Type, Desc, Default string
}

// Driver names of godm's devices that QEMU does not have.
const (
	// TestDevice is godm's test device (devices/testdev).
	TestDevice = "godm-testdev"
	// PCISerialDriver is QEMU's PCI 16550A (devices/uart/pciserial).
	PCISerialDriver = "pci-serial"
	// NICDriver is the emulated NIC's driver (libxl's default model).
	NICDriver = "rtl8139"
	// E1000Driver is the Intel 82540EM (xl's vif model=e1000).
	E1000Driver = "e1000"
	// VirtioNetDriver is virtio-net (xl's vif model=virtio-net-pci).
	VirtioNetDriver = "virtio-net-pci"
	// PassthroughDriver is QEMU's name of a passed-through host function
	// (passthrough.DriverName).
	PassthroughDriver = "xen-pci-passthrough"
)

// pciAddrProp is the "addr" property of PCI devices.
var pciAddrProp = Prop{Name: "addr", Type: "int32", Desc: "Slot and optional function number, example: 06.0 or 06"}

// nicProps are the emulated NICs' properties.
var nicProps = []Prop{
	{Name: "netdev", Type: "str", Desc: "ID of a netdev to use as a backend"},
	{Name: "mac", Type: "str", Desc: "Ethernet 6-byte MAC Address, example: 52:54:00:12:34:56", Default: "52:54:00:12:34:56 + n"},
	pciAddrProp,
}

// drivers is the driver table, in the order -device help lists them
// inside a category. It is the whole list: nothing registers itself.
var drivers = []*Driver{
	{Name: "i440FX", Bus: "PCI", Category: "Controller/Bridge/Hub devices", Desc: "Host bridge (at 00.0)",
		New: newI440FX},
	{Name: "PIIX3", Bus: "PCI", Category: "Controller/Bridge/Hub devices", Desc: "ISA bridge, PCI interrupt router, reset control 0xcf9 (at 01.0)",
		Props: []Prop{pciAddrProp}, New: newPIIX3},
	{Name: "piix3-ide", Bus: "PCI", Category: "Storage devices", Desc: "PIIX3 IDE controller: buses ide.0 and ide.1, bus-master DMA (at 01.1)",
		Props: []Prop{pciAddrProp}, New: newPIIX3IDE},
	{Name: "ide-hd", Bus: "IDE", Category: "Storage devices", Desc: "virtual IDE disk",
		Props: []Prop{
			{Name: "drive", Type: "str", Desc: "Node name or ID of a block device to use as a backend"},
			{Name: "bus", Type: "str", Desc: "ide.0 or ide.1, or an ahci device's ID.0 to ID.5", Default: "first free position"},
			{Name: "unit", Type: "uint32", Desc: "0 (master) or 1 (slave); 0 on AHCI", Default: "0"},
		}, New: newIDEDrive(ide.HD)},
	{Name: "ide-cd", Bus: "IDE", Category: "Storage devices", Desc: "virtual IDE CD-ROM",
		Props: []Prop{
			{Name: "drive", Type: "str", Desc: "Node name or ID of a block device to use as a backend", Default: "none: an empty drive"},
			{Name: "bus", Type: "str", Desc: "ide.0 or ide.1", Default: "first free position"},
			{Name: "unit", Type: "uint32", Desc: "0 (master) or 1 (slave)", Default: "0"},
		}, New: newIDEDrive(ide.CD)},
	{Name: "ahci", Bus: "PCI", Category: "Storage devices", Desc: "ICH9 AHCI SATA controller (ich9-ahci): buses ID.0 to ID.5 for ide-hd",
		Props: []Prop{pciAddrProp}, New: newAHCI},
	{Name: "virtio-blk-pci", Bus: "PCI", Category: "Storage devices", Desc: "virtio block device (transitional: modern BAR4, legacy I/O BAR0, MSI-X)", Hotpluggable: true,
		Props: []Prop{
			{Name: "drive", Type: "str", Desc: "Node name or ID of a block device to use as a backend"},
			{Name: "serial", Type: "str", Desc: "GET_ID string (at most 20 bytes are returned)", Default: "empty"},
			{Name: "x-godm-bar32", Type: "bool", Desc: "modern registers in a 32-bit BAR (test harnesses that forward 32-bit BARs only)", Default: "off"},
			pciAddrProp,
		}, New: newVirtioBlk},
	{Name: "nvme", Bus: "PCI", Category: "Storage devices", Desc: "Non-Volatile Memory Express (NVMe 1.4, one namespace; BAR0 with MSI-X, INTx)", Hotpluggable: true,
		Props: []Prop{
			{Name: "drive", Type: "str", Desc: "Node name or ID of a block device to use as a backend"},
			{Name: "serial", Type: "str", Desc: "Identify's serial number (required; at most 20 bytes are used)"},
			{Name: "x-godm-bar32", Type: "bool", Desc: "BAR0 as a 32-bit BAR (test harnesses that forward 32-bit BARs only)", Default: "off"},
			pciAddrProp,
		}, New: newNVMe},
	{Name: "piix4-pm", Bus: "PCI", Category: "Controller/Bridge/Hub devices", Desc: "PM (ACPI PM1a control, GPE0, PCI hotplug; at 01.3)",
		Props: []Prop{pciAddrProp}, New: newPIIX4PM},
	{Name: "xen-platform", Bus: "PCI", Category: "Misc devices", Desc: "Xen platform device (PV drivers' unplug, log, ROM lock)",
		Props: []Prop{pciAddrProp}, New: newXenPlatform},
	{Name: "isa-serial", Bus: "ISA", Category: "Input devices", Desc: "16550A serial port",
		Props: []Prop{
			{Name: "chardev", Type: "str", Desc: "ID of a chardev to use as a backend"},
			{Name: "index", Type: "uint32", Desc: "COM port number - 1 (0..3)", Default: "first free"},
			{Name: "iobase", Type: "uint32", Default: "the index's COM base"},
			{Name: "irq", Type: "uint32", Default: "the index's COM IRQ"},
		}, New: newISASerial},
	{Name: PCISerialDriver, Bus: "PCI", Category: "Input devices", Desc: "PCI 16550A serial port (1b36:0002)", Hotpluggable: true,
		Props: []Prop{
			{Name: "chardev", Type: "str", Desc: "ID of a chardev to use as a backend"},
			pciAddrProp,
		}, New: newPCISerial},
	{Name: "i8042", Bus: "ISA", Category: "Input devices", Desc: "PS/2 keyboard and mouse controller",
		Props: []Prop{
			{Name: "kbd-irq", Type: "uint8", Default: "1"},
			{Name: "mouse-irq", Type: "uint8", Default: "12"},
		}, New: newI8042},
	{Name: NICDriver, Bus: "PCI", Category: "Network devices", Desc: "Realtek RTL8139C+ Fast Ethernet", Hotpluggable: true,
		Props: nicProps, New: newNIC(NICDriver, newRTL8139)},
	{Name: E1000Driver, Bus: "PCI", Category: "Network devices", Desc: "Intel Gigabit Ethernet (82540EM)", Hotpluggable: true,
		Props: nicProps, New: newNIC(E1000Driver, newE1000)},
	{Name: VirtioNetDriver, Bus: "PCI", Category: "Network devices", Desc: "virtio network device (transitional: modern BAR4, legacy I/O BAR0, MSI-X)", Hotpluggable: true,
		Props: append(append([]Prop{}, nicProps...), Prop{Name: "x-godm-bar32", Type: "bool", Desc: "modern BAR 32-bit (for harnesses forwarding 32-bit BARs only)", Default: "off"}),
		New:   newVirtioNet},
	{Name: "VGA", Bus: "PCI", Category: "Display devices", Desc: "standard VGA with Bochs VBE (libxl's vga=\"stdvga\")",
		Props: []Prop{
			{Name: "vgamem_mb", Type: "uint32", Default: "16"},
			pciAddrProp,
			{Name: "romfile", Type: "str", Desc: "VGA BIOS image, a path or a name searched in the firmware directories (empty: no ROM)", Default: vgaROM},
		}, New: newVGA},
	{Name: "cirrus-vga", Bus: "PCI", Category: "Display devices", Desc: "Cirrus CLGD 54xx VGA (CL-GD5446; libxl's default vga)",
		Props: []Prop{
			{Name: "vgamem_mb", Type: "uint32", Desc: "4, 8 or 16", Default: "4"},
			pciAddrProp,
			{Name: "romfile", Type: "str", Desc: "VGA BIOS image, a path or a name searched in the firmware directories (empty: no ROM)", Default: cirrusROM},
		}, New: newCirrusVGA},
	{Name: UHCIDriver, Bus: "PCI", Category: "USB devices", Desc: "PIIX3 USB 1.1 UHCI host controller, two root ports (-usb puts it at 01.2)",
		Props: []Prop{pciAddrProp}, New: newUHCI},
	{Name: TabletDriver, Bus: "usb-bus", Category: "Input devices", Desc: "USB HID tablet: absolute pointer for VNC",
		Props: []Prop{
			{Name: "bus", Type: "str", Desc: "the controller's id followed by .0", Default: "the first controller with a free port"},
			{Name: "port", Type: "str", Desc: "root port, 1 or 2", Default: "first free"},
		}, New: newUSBTablet},
	{Name: TestDevice, Bus: "PCI", Category: "Misc devices", Desc: "godm's test device (DMA, MSI-X, INTx)", Hotpluggable: true,
		Props: []Prop{pciAddrProp}, New: newTestDev},
	{Name: PassthroughDriver, Bus: "PCI", Category: "Misc devices", Desc: "a host PCI function passed through", Hotpluggable: true,
		Props: []Prop{
			{Name: "hostaddr", Type: "str", Desc: "host function, SSSS:BB:DD.F"},
			pciAddrProp,
			{Name: "permissive", Type: "bool", Default: "false"},
		}, New: newPassthrough},
}

// Drivers returns the driver table.
func Drivers() []*Driver { return drivers }

// LookupDriver returns the driver called name, or nil.
func LookupDriver(name string) *Driver {
	for _, d := range drivers {
		if d.Name == name {
			return d
		}
	}
	return nil
}

// Help writes the driver list as QEMU's -device help does: by category,
// one `name "...", bus ..., desc "..."` line per driver.
func Help(w io.Writer) error {
	cats := map[string][]*Driver{}
	var order []string
	for _, d := range drivers {
		if cats[d.Category] == nil {
			order = append(order, d.Category)
		}
		cats[d.Category] = append(cats[d.Category], d)
	}
	sort.Strings(order)
	var sb strings.Builder
	for i, c := range order {
		if i > 0 {
			sb.WriteString("\n")
		}
		fmt.Fprintf(&sb, "%s:\n", c)
		for _, d := range cats[c] {
			fmt.Fprintf(&sb, "name %q, bus %s, desc %q\n", d.Name, d.Bus, d.Desc)
		}
	}
	_, err := io.WriteString(w, sb.String())
	return err
}

// DriverHelp writes driver's properties as QEMU's -device DRIVER,help
// does, or an error for an unknown driver.
func DriverHelp(w io.Writer, driver string) error {
	d := LookupDriver(driver)
	if d == nil {
		return fmt.Errorf("'%s' is not a valid device model name", driver)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s options:\n", d.Name)
	if len(d.Props) == 0 {
		sb.Reset()
		fmt.Fprintf(&sb, "There are no options for %s.\n", d.Name)
	}
	for _, p := range d.Props {
		line := fmt.Sprintf("  %s=<%s>", p.Name, p.Type)
		if p.Desc != "" || p.Default != "" {
			line = fmt.Sprintf("%-24s -", line)
			if p.Desc != "" {
				line += " " + p.Desc
			}
			if p.Default != "" {
				line += fmt.Sprintf(" (default: %s)", p.Default)
			}
		}
		sb.WriteString(line + "\n")
	}
	_, err := io.WriteString(w, sb.String())
	return err
}

// --- plumbing shared by the constructors

// addPCI places fn at slot.f (or, with auto, the lowest free slot) and
// records its removal.
func (b *Board) addPCI(pl *Plugged, fn *pci.Device, slot, f uint8, auto bool) error {
	var err error
	if auto {
		_, err = b.PCI.AddAuto(fn)
	} else {
		_, err = b.PCI.Add(fn, slot, f)
	}
	if err != nil {
		return err
	}
	pl.PCI = fn
	pl.onUnplug(func() error { return b.PCI.Remove(fn) })
	return nil
}

// registerPIO routes ports [base, base+size) to h and records the
// unregistration.
func (b *Board) registerPIO(pl *Plugged, base, size uint64, h devices.Handler) error {
	pio := b.env.Spaces.PIO
	if err := pio.Register(base, size, h); err != nil {
		return err
	}
	pl.onUnplug(func() error { return pio.Unregister(base) })
	return nil
}

// fixedPCIAddr reads "addr" for a function whose place is fixed.
func fixedPCIAddr(p Props, slot, fn uint8) error {
	s, f, ok, err := pciAddr(p)
	if err != nil {
		return err
	}
	if ok && (s != slot || f != fn) {
		return fmt.Errorf("property 'addr': this function lives at %02x.%x", slot, fn)
	}
	return nil
}

// resetWith sets the device reset: its PCI function (if any), then its
// own registers.
func (pl *Plugged) resetWith(fn *pci.Device, own func()) {
	pl.reset = func() {
		if fn != nil {
			fn.Reset()
		}
		if own != nil {
			own()
		}
	}
}

// --- constructors

func newI440FX(b *Board, p Props, pl *Plugged) error {
	d, err := i440fx.New(i440fx.Config{RAMSize: b.env.RAMSize})
	if err != nil {
		return err
	}
	pl.Dev = d
	if err := b.addPCI(pl, d.Function(), i440fx.Slot, 0, false); err != nil {
		return err
	}
	// The CONFIG_ADDRESS block covers PIIX3's reset control register
	// 0xcf9; the board's share hands that byte to the PIIX3 once plugged.
	if err := d.AttachPorts(b.env.Spaces.PIO, &b.rcr); err != nil {
		return err
	}
	pl.onUnplug(func() error { return b.env.Spaces.PIO.Unregister(i440fx.ConfigAddressPort) })
	if err := d.AttachDataPorts(b.env.Spaces.PIO, b.env.Spaces.PCI); err != nil {
		return err
	}
	pl.onUnplug(func() error { return b.env.Spaces.PIO.Unregister(i440fx.ConfigDataPort) })
	pl.reset = d.Reset // function and CONFIG_ADDRESS
	return nil
}

func newPIIX3(b *Board, p Props, pl *Plugged) error {
	if err := fixedPCIAddr(p, piix3.Slot, 0); err != nil {
		return err
	}
	if b.router.r.Load() != nil {
		return errors.New("the board has an interrupt router already")
	}
	d, err := piix3.New(piix3.Config{Links: b.env.Links, INTx: b.env.INTx, Shutdown: b.env.Shutdown})
	if err != nil {
		return err
	}
	pl.Dev = d
	b.router.set(d)
	pl.onUnplug(func() error { b.router.set(nil); return nil })
	if err := b.addPCI(pl, d.Function(), piix3.Slot, 0, false); err != nil {
		return err
	}
	b.rcr.set(d.ResetControl())
	pl.onUnplug(func() error { b.rcr.set(nil); return nil })
	pl.reset = d.Reset
	return nil
}

func newPIIX4PM(b *Board, p Props, pl *Plugged) error {
	if err := fixedPCIAddr(p, piix4pm.Slot, piix4pm.Function); err != nil {
		return err
	}
	if b.env.ISA == nil {
		return errors.New("the machine has no ISA interrupts")
	}
	com := func(base uint64) bool {
		return b.planned("isa-serial", func(q Props) bool {
			io, _, err := serialPlace(q, -1)
			return err == nil && io == base
		}) || b.hasSerialAt(base)
	}
	d, err := piix4pm.New(piix4pm.Config{
		SCI:      b.env.ISA(9), // acpi_pm1_evt / SCI_INT: ISA IRQ 9 (hw/acpi/piix4.c)
		Shutdown: b.env.Shutdown,
		Suspend:  b.env.Suspend,
		Eject:    b.env.Eject,
		COM1:     com(0x3f8),
		COM2:     com(0x2f8),
		VCPUs:    b.env.VCPUs,
	})
	if err != nil {
		return err
	}
	pl.Dev = d
	if err := b.addPCI(pl, d.Function(), piix4pm.Slot, piix4pm.Function, false); err != nil {
		return err
	}
	for i := 0; ; i++ {
		base, size, h := d.Handler(i)
		if h == nil {
			break
		}
		if err := b.registerPIO(pl, base, size, h); err != nil {
			return err
		}
	}
	pl.reset = d.Reset
	return nil
}

func newXenPlatform(b *Board, p Props, pl *Plugged) error {
	slot, fn, ok, err := pciAddr(p)
	if err != nil {
		return err
	}
	if ok && fn != 0 {
		return errors.New("property 'addr': the platform device is function 0")
	}
	d, err := xenplatform.New(xenplatform.Config{Unplug: platformUnplugger{b, b.env.PVUnplug}, ROM: b.env.ROM, Log: b.env.PlatformLog})
	if err != nil {
		return err
	}
	pl.Dev = d
	if err := b.addPCI(pl, d.Function(), slot, 0, !ok); err != nil {
		return err
	}
	if err := b.registerPIO(pl, xenplatform.FixedPort, xenplatform.FixedLen, d.FixedPorts()); err != nil {
		return err
	}
	pl.reset = d.Reset
	return nil
}

// serialPlace resolves isa-serial's index, iobase and irq properties as
// QEMU's serial_isa_realizefn does: the index defaults to next (-1: 0),
// iobase and irq to that COM port's.
func serialPlace(p Props, next int) (iobase uint64, irq uint8, err error) {
	def := uint64(max(next, 0))
	idx, err := p.Uint("index", def)
	if err != nil {
		return 0, 0, err
	}
	if idx >= 4 {
		return 0, 0, errors.New("Max. supported number of ISA serial ports is 4.")
	}
	place, err := uart.COM(int(idx) + 1)
	if err != nil {
		return 0, 0, err
	}
	io, err := p.Uint("iobase", place.Base)
	if err != nil {
		return 0, 0, err
	}
	if io > 0xffff-uart.Size+1 {
		return 0, 0, fmt.Errorf("property 'iobase': %#x is not a port", io)
	}
	n, err := p.Uint("irq", uint64(place.IRQ))
	if err != nil {
		return 0, 0, err
	}
	if n >= 16 {
		return 0, 0, fmt.Errorf("property 'irq': %d is not an ISA IRQ (0..15)", n)
	}
	return io, uint8(n), nil
}

// hasSerialAt reports whether an isa-serial device is plugged at base.
func (b *Board) hasSerialAt(base uint64) bool {
	for _, p := range b.Devices() {
		if s, ok := p.Dev.(*ISASerial); ok && s.IOBase == base {
			return true
		}
	}
	return false
}

// ISASerial is an isa-serial device: the UART and where it is.
type ISASerial struct {
	*uart.UART
	Index  int
	IOBase uint64
	IRQ    uint8
}

func newISASerial(b *Board, p Props, pl *Plugged) error {
	if b.env.ISA == nil {
		return errors.New("the machine has no ISA interrupts")
	}
	// QEMU numbers ports in creation order (isa_serial_index).
	used := map[int]bool{}
	for _, q := range b.Devices() {
		if s, ok := q.Dev.(*ISASerial); ok {
			used[s.Index] = true
		}
	}
	next := 0
	for used[next] {
		next++
	}
	idx, err := p.Uint("index", uint64(next))
	if err != nil {
		return err
	}
	io, irqn, err := serialPlace(p, int(idx))
	if err != nil {
		return err
	}
	id := p.String("chardev", "")
	be := b.env.Chardevs[id]
	if id != "" && be == nil {
		return fmt.Errorf("Property 'isa-serial.chardev' can't find value '%s'", id)
	}
	u := uart.New(uart.Config{IRQ: b.env.ISA(irqn), Backend: be, Clock: b.env.UARTClock})
	pl.Dev = &ISASerial{UART: u, Index: int(idx), IOBase: io, IRQ: irqn}
	pl.onUnplug(u.Close)
	if err := b.registerPIO(pl, io, uart.Size, u); err != nil {
		return err
	}
	pl.reset = u.Reset
	return nil
}

func newPCISerial(b *Board, p Props, pl *Plugged) error {
	slot, fn, ok, err := pciAddr(p)
	if err != nil {
		return err
	}
	id := p.String("chardev", "")
	be := b.env.Chardevs[id]
	if id != "" && be == nil {
		return fmt.Errorf("Property '%s.chardev' can't find value '%s'", PCISerialDriver, id)
	}
	d, err := pciserial.New(uart.Config{Backend: be, Clock: b.env.UARTClock})
	if err != nil {
		return err
	}
	pl.Dev = d
	pl.onUnplug(d.Close)
	if err := b.addPCI(pl, d.PCI, slot, fn, !ok); err != nil {
		return err
	}
	pl.reset = d.Reset
	return nil
}

func newI8042(b *Board, p Props, pl *Plugged) error {
	if b.env.ISA == nil {
		return errors.New("the machine has no ISA interrupts")
	}
	kbd, err := p.Uint("kbd-irq", i8042.KeyboardIRQ)
	if err != nil {
		return err
	}
	mouse, err := p.Uint("mouse-irq", 12)
	if err != nil {
		return err
	}
	if kbd >= 16 || mouse >= 16 {
		return errors.New("property 'kbd-irq'/'mouse-irq': not an ISA IRQ (0..15)")
	}
	c := i8042.New(i8042.Config{
		KeyboardIRQ: b.env.ISA(uint8(kbd)),
		MouseIRQ:    b.env.ISA(uint8(mouse)),
		Reset:       b.env.CPUReset,
	})
	pl.Dev = c
	if err := b.registerPIO(pl, i8042.DataPort, 1, c); err != nil {
		return err
	}
	if err := b.registerPIO(pl, i8042.StatusPort, 1, c); err != nil {
		return err
	}
	pl.reset = c.Reset
	return nil
}

func newTestDev(b *Board, p Props, pl *Plugged) error {
	slot, fn, ok, err := pciAddr(p)
	if err != nil {
		return err
	}
	if b.env.Memory == nil {
		return errors.New("the machine has no guest memory access")
	}
	d, err := testdev.New(b.env.Memory)
	if err != nil {
		return err
	}
	pl.Dev = d
	pl.onUnplug(d.Close)
	if err := b.addPCI(pl, d.Function(), slot, fn, !ok); err != nil {
		return err
	}
	pl.resetWith(d.Function(), d.Reset)
	return nil
}

// PCIPassthrough passes host PCI functions through to the guest: the
// machine's passthrough Manager behind an adapter (internal/board/ptdriver
// makes one; the board does not import package passthrough, whose tests
// build whole machines).
type PCIPassthrough interface {
	// Add passes through the function a QMP device_add / -device
	// dictionary describes (driver, id, hostaddr, addr, permissive);
	// requireAssigned refuses a function the toolstack has not assigned
	// to the domain yet (those named at start-up).
	Add(args map[string]any, requireAssigned bool) (PCIView, error)
	// Remove unplugs the function added under id.
	Remove(id string) error
}

// PCIView is a PCI function as QMP's query-pci shows it: its guest
// address, its configuration space as the guest reads it, its BARs.
// *pci.Device is one; so is a passed-through function.
type PCIView interface {
	SBDF() devices.SBDF
	ConfigRead(off uint32, size uint8) uint32
	Regions() []pci.Region
}

var _ PCIView = (*pci.Device)(nil)

// Passthrough is a xen-pci-passthrough device on the board.
type Passthrough struct {
	// Guest is its address on the guest's bus.
	Guest devices.SBDF
	// View is the function as the guest sees it.
	View PCIView
}

func newPassthrough(b *Board, p Props, pl *Plugged) error {
	b.mu.Lock()
	newPT := b.env.Passthrough
	b.mu.Unlock()
	if newPT == nil {
		return errors.New("this machine cannot pass PCI functions through")
	}
	args := map[string]any{"driver": PassthroughDriver, "id": pl.ID}
	for _, k := range []string{"hostaddr", "addr", "permissive"} {
		if v := p.String(k, ""); v != "" {
			args[k] = v
		}
	}
	pt, err := newPT()
	if err != nil {
		return err
	}
	// Functions on the command line (a board being built) must be
	// assigned by the toolstack already; a run-time device_add is
	// assigned by libxl afterwards.
	view, err := pt.Add(args, b.building())
	if err != nil {
		return err
	}
	pl.Dev = &Passthrough{Guest: view.SBDF(), View: view}
	id := pl.ID
	pl.onUnplug(func() error { return pt.Remove(id) })
	return nil
}

// vgaROM is the VGA BIOS QEMU's standard VGA loads (vga-pci.c romfile),
// shipped by Debian's seabios package.
const vgaROM = "vgabios-stdvga.bin"

// cirrusROM is the Cirrus VGA's BIOS (cirrus_vga.c romfile), also from
// Debian's seabios package.
const cirrusROM = "vgabios-cirrus.bin"

// DefaultFirmwareDirs are where firmware names are looked up when
// Env.FirmwareDirs is nil: Debian's seabios package, then QEMU's data
// directory.
var DefaultFirmwareDirs = []string{"/usr/share/seabios", "/usr/share/qemu"}

// maxROM bounds an option ROM image read from a file.
const maxROM = 16 << 20

// loadROM finds and reads an option ROM: name "" is none, a name with a
// slash a path, others are searched in the firmware directories. A
// missing default ROM is no error (nil, the device works without its
// BIOS, as under an OS that programs it itself).
func (b *Board) loadROM(name, def string) ([]byte, error) {
	if name == "" {
		return nil, nil
	}
	paths := []string{name}
	if !strings.Contains(name, "/") {
		dirs := b.env.FirmwareDirs
		if dirs == nil {
			dirs = DefaultFirmwareDirs
		}
		paths = paths[:0]
		for _, d := range dirs {
			paths = append(paths, filepath.Join(d, name))
		}
	}
	for _, p := range paths {
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("property 'romfile': %w", err)
		}
		rom, err := io.ReadAll(io.LimitReader(f, maxROM+1))
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("property 'romfile': %s: %w", p, err)
		}
		if len(rom) > maxROM {
			return nil, fmt.Errorf("property 'romfile': %s is larger than %d MiB", p, maxROM>>20)
		}
		return rom, nil
	}
	if name == def {
		b.env.Log.Warn("VGA BIOS not found; the guest's firmware will show nothing until its OS sets a mode", "romfile", name, "dirs", paths)
		return nil, nil
	}
	return nil, fmt.Errorf("property 'romfile': failed to find romfile %q", name)
}

func newVGA(b *Board, p Props, pl *Plugged) error {
	slot, fn, ok, err := pciAddr(p)
	if err != nil {
		return err
	}
	mb, err := p.Uint("vgamem_mb", vga.DefaultVRAMMiB)
	if err != nil {
		return err
	}
	rom, err := b.loadROM(p.String("romfile", vgaROM), vgaROM)
	if err != nil {
		return err
	}
	size := vga.VRAMSize(mb)
	p2m, err := b.vramP2M(p, pl, size)
	if err != nil {
		return err
	}
	d, err := vga.New(vga.Config{VRAMSize: size, ROM: rom, P2M: p2m, Drop: b.vramDrop(p2m, size)})
	if err != nil {
		if p2m != nil {
			_ = p2m.Close()
		}
		return err
	}
	pl.Dev = d
	if p2m != nil {
		// Runs after the function left the bus (undo steps run backwards).
		pl.onUnplug(d.ReleaseP2M)
	}
	if err := b.addPCI(pl, d.Function(), slot, fn, !ok); err != nil {
		return err
	}
	for _, r := range vga.LegacyPorts() {
		if err := b.registerPIO(pl, r.Base, r.Size, d.Ports()); err != nil {
			return err
		}
	}
	if err := b.registerPIO(pl, vga.PortIndex, vga.DISPIPorts, d.DISPI()); err != nil {
		return err
	}
	mmio := b.env.Spaces.MMIO
	if err := mmio.Register(vga.WindowBase, vga.WindowSize, d.Window()); err != nil {
		return err
	}
	pl.onUnplug(func() error { return mmio.Unregister(vga.WindowBase) })
	pl.reset = d.Reset
	return nil
}

// vramP2MProp puts the VGA's (or Cirrus VGA's) VRAM into the guest's p2m (on, the default, as
// QEMU-xen keeps vga.vram) or keeps it trapped device memory (off: every LFB access an ioreq).
const vramP2MProp = "x-godm-vram-p2m"

// vramP2M returns p2m VRAM of size bytes unless the device says off or
// the machine cannot place it; otherwise nil (trapped VRAM), with one
// warning when on was asked for explicitly (an informational line when
// it is only the default).
func (b *Board) vramP2M(p Props, pl *Plugged, size uint32) (vga.P2M, error) {
	explicit := p.String(vramP2MProp, "") != ""
	on, err := p.Bool(vramP2MProp, true)
	if err != nil || !on {
		return nil, err
	}
	say := b.env.Log.Info
	if explicit {
		say = b.env.Log.Warn
	}
	if b.env.VRAM == nil {
		say("VRAM stays trapped: this machine cannot place it in the guest's p2m", "id", pl.ID)
		return nil, nil
	}
	v, err := b.env.VRAM.AllocVRAM(size)
	if err != nil {
		say("VRAM stays trapped: placing it in the guest's p2m failed", "id", pl.ID, "err", err)
		return nil, nil
	}
	return v, nil
}

// vramDrop is vga.Config.Drop for a display whose VRAM stays trapped
// (p2m nil) on a machine that can place VRAM in the p2m.
func (b *Board) vramDrop(p2m vga.P2M, size uint32) func(gfn uint64) error {
	if p2m != nil || b.env.VRAM == nil {
		return nil
	}
	return func(gfn uint64) error { return b.env.VRAM.DropVRAM(gfn, size) }
}

func newCirrusVGA(b *Board, p Props, pl *Plugged) error {
	slot, fn, ok, err := pciAddr(p)
	if err != nil {
		return err
	}
	mb, err := p.Uint("vgamem_mb", vga.CirrusDefaultVRAMMiB)
	if err != nil {
		return err
	}
	rom, err := b.loadROM(p.String("romfile", cirrusROM), cirrusROM)
	if err != nil {
		return err
	}
	var p2m vga.P2M
	if mb == 4 || mb == 8 || mb == 16 { // others: NewCirrus's error
		if p2m, err = b.vramP2M(p, pl, uint32(mb<<20)); err != nil {
			return err
		}
	}
	d, err := vga.NewCirrus(vga.CirrusConfig{VRAMMiB: mb, ROM: rom, P2M: p2m, Drop: b.vramDrop(p2m, uint32(mb<<20))})
	if err != nil {
		if p2m != nil {
			_ = p2m.Close()
		}
		return err
	}
	pl.Dev = d
	if p2m != nil {
		pl.onUnplug(d.ReleaseP2M)
	}
	if err := b.addPCI(pl, d.Function(), slot, fn, !ok); err != nil {
		return err
	}
	if err := b.registerPIO(pl, vga.CirrusPorts.Base, vga.CirrusPorts.Size, d.CirrusPortHandler()); err != nil {
		return err
	}
	mmio := b.env.Spaces.MMIO
	if err := mmio.Register(vga.WindowBase, vga.WindowSize, d.Window()); err != nil {
		return err
	}
	pl.onUnplug(func() error { return mmio.Unregister(vga.WindowBase) })
	pl.reset = d.Reset
	return nil
}

// building reports whether Build is running.
func (b *Board) building() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.plan != nil
}

// NICModel is what the board needs of an emulated NIC model
// (devices/rtl8139, devices/e1000, devices/virtionet).
type NICModel interface {
	devices.Snapshotter
	devices.Pauser
	Function() *pci.Device
	Reset()
	Close() error
	MAC() [6]byte
	SetLink(up bool)
	LinkUp() bool
}

var (
	_ NICModel = (*rtl8139.Device)(nil)
	_ NICModel = (*e1000.Device)(nil)
	_ NICModel = (*virtionet.Device)(nil)
)

// NIC is an emulated NIC on the board: the device and the netdev it is
// attached to ("" for none).
type NIC struct {
	NICModel
	Netdev string
	// spoof is the netdev's anti-spoofing filter (nil when off), bound
	// to this NIC's MAC while it is plugged.
	spoof *antispoof.Filter
}

// NICStats are a NIC's counters beyond the model's own: its netdev's
// anti-spoofing filter's (machine metrics read them through StatsValue).
type NICStats struct {
	Antispoof antispoof.Stats
}

// StatsValue returns the NIC's NICStats, or nil without a filter (or
// when its counters cannot be read).
func (n *NIC) StatsValue() any {
	if n.spoof == nil {
		return nil
	}
	c, err := n.spoof.Counters()
	if err != nil {
		return nil
	}
	return NICStats{Antispoof: c.Stats()}
}

// ParseMAC is netback.ParseMAC with the property's name.
func ParseMAC(s string) ([6]byte, error) {
	m, err := netback.ParseMAC(s)
	if err != nil {
		return m, fmt.Errorf("property 'mac': %w", err)
	}
	return m, nil
}

func newRTL8139(mac [6]byte, mem memory.Accessor, be netback.Backend) (NICModel, error) {
	return rtl8139.New(rtl8139.Config{MAC: mac, Memory: mem, Backend: be})
}

func newE1000(mac [6]byte, mem memory.Accessor, be netback.Backend) (NICModel, error) {
	return e1000.New(e1000.Config{MAC: mac, Memory: mem, Backend: be})
}

// newVirtioNet is virtio-net-pci's driver: the NIC driver's properties
// and x-godm-bar32; its rings need guest memory that pins.
func newVirtioNet(b *Board, p Props, pl *Plugged) error {
	bar32, err := p.Bool("x-godm-bar32", false)
	if err != nil {
		return err
	}
	return plugNIC(b, p, pl, VirtioNetDriver, func(mac [6]byte, mem memory.Accessor, be netback.Backend) (NICModel, error) {
		pm, ok := mem.(virtio.Memory)
		if !ok {
			return nil, errors.New("the machine has no pinnable guest memory for virtio rings")
		}
		return virtionet.New(virtionet.Config{MAC: mac, Memory: pm, Backend: be, ModernBAR32: bar32})
	})
}

// newNIC is the driver of an emulated NIC model: netdev=, mac= (QEMU's
// default MACs when none), addr=; the netdev's anti-spoofing filter bound
// to the MAC while the NIC is plugged.
func newNIC(driver string, model func(mac [6]byte, mem memory.Accessor, be netback.Backend) (NICModel, error)) func(*Board, Props, *Plugged) error {
	return func(b *Board, p Props, pl *Plugged) error {
		return plugNIC(b, p, pl, driver, model)
	}
}

func plugNIC(b *Board, p Props, pl *Plugged, driver string, model func([6]byte, memory.Accessor, netback.Backend) (NICModel, error)) error {
	slot, fn, ok, err := pciAddr(p)
	if err != nil {
		return err
	}
	if b.env.Memory == nil {
		return errors.New("the machine has no guest memory access")
	}
	b.mu.Lock()
	n := b.nicCount
	b.nicCount++
	b.mu.Unlock()
	// QEMU qemu_macaddr_default_if_unset: 52:54:00:12:34:56 for the
	// first NIC without mac=, then :57, ...
	mac := [6]byte{0x52, 0x54, 0x00, 0x12, 0x34, byte(0x56 + n)}
	if s := p.String("mac", ""); s != "" {
		if mac, err = ParseMAC(s); err != nil {
			return err
		}
	}
	id := p.String("netdev", "")
	var be netback.Backend
	if id != "" {
		be = b.env.Netdevs[id]
		if be == nil {
			return fmt.Errorf("Property '%s.netdev' can't find value '%s'", driver, id)
		}
		b.mu.Lock()
		if b.nicUsed == nil {
			b.nicUsed = map[string]string{}
		}
		if other, used := b.nicUsed[id]; used {
			b.mu.Unlock()
			return fmt.Errorf("Property '%s.netdev' can't take value '%s', it's in use by '%s'", driver, id, other)
		}
		b.nicUsed[id] = pl.ID
		b.mu.Unlock()
		pl.onUnplug(func() error {
			b.mu.Lock()
			delete(b.nicUsed, id)
			b.mu.Unlock()
			return nil
		})
	}
	var spoof *antispoof.Filter
	if a, ok := be.(interface{ AntiSpoof() *antispoof.Filter }); ok && a.AntiSpoof() != nil {
		// The tap's filter checks the guest's frames against the MAC the
		// toolstack gave (mac=), not the one the guest may program; gone
		// with the NIC (a PV unplug), it drops everything again.
		spoof = a.AntiSpoof()
		if err := spoof.Bind(mac); err != nil {
			return fmt.Errorf("netdev '%s': %v", id, err)
		}
		pl.onUnplug(spoof.Unbind)
	}
	d, err := model(mac, b.env.Memory, be)
	if err != nil {
		return err
	}
	pl.Dev = &NIC{NICModel: d, Netdev: id, spoof: spoof}
	pl.onUnplug(d.Close)
	if err := b.addPCI(pl, d.Function(), slot, fn, !ok); err != nil {
		return err
	}
	pl.resetWith(d.Function(), d.Reset)
	return nil
}

// SetLink sets the link of the NIC whose id or netdev is name (QEMU
// qmp_set_link takes either); false if there is none.
func (b *Board) SetLink(name string, up bool) bool {
	found := false
	for _, p := range b.Devices() {
		if n, ok := p.Dev.(*NIC); ok && (p.ID == name || n.Netdev != "" && n.Netdev == name) {
			n.SetLink(up)
			found = true
		}
	}
	return found
}

// UnplugNICs removes every emulated NIC: the Xen platform device's unplug
// of NICs (QEMU hw/i386/xen/xen_platform.c pci_unplug_nics: the PV
// drivers took over; passed-through functions are not NICs here).
func (b *Board) UnplugNICs() error {
	var errs []error
	for _, p := range b.Devices() {
		if _, ok := p.Dev.(*NIC); ok {
			errs = append(errs, b.remove(p.ID, true))
		}
	}
	return errors.Join(errs...)
}

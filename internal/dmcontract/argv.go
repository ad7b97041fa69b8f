package dmcontract

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"godm/display"
	"godm/display/vnc"
	"godm/internal/qemuopts"
	"godm/netback"
)

// Monitor is one QMP monitor libxl asked for: a -chardev socket and the
// -mon that puts it in control mode.
type Monitor struct {
	ID   string // the chardev id: "libxl-cmd", "libxenstat-cmd"
	Path string // the socket path, or "" with FD
	FD   int    // a listening socket libxl pre-opened (dm_restrict), or -1
}

// Config is what a qemu-xen command line asks of godm.
type Config struct {
	// Dom is -xen-domid (0 only for the probe).
	Dom int
	// Name is -name's guest name ("" if absent).
	Name string
	// Probe is -machine none: libxl's command-line probe, which only
	// asks query-command-line-options and quits.
	Probe bool
	// Prelaunch is -S: the guest's devices wait for QMP's cont.
	Prelaunch bool
	// Incoming is -incoming's source of device state to restore before
	// serving (xl restore, migrate); nil without -incoming.
	Incoming *Incoming
	// Monitors are the QMP monitors, in command-line order.
	Monitors []Monitor
	// Restrict is -xen-domid-restrict: every Xen handle limited to Dom.
	Restrict bool
	// Chroot and User are -chroot/-runas or -run-with chroot=,user=:
	// where and as whom godm runs once its handles are open.
	Chroot, User string
	// Sandbox is godm's -godm-sandbox on|log|off (xl.cfg
	// device_model_args_hvm): whether godm deprivileges itself when libxl
	// did not ask for dm_restrict (package sandbox; default on).
	Sandbox string
	// Spin is godm's -godm-spin DURATION|off (xl.cfg
	// device_model_args_hvm): the bound of the ioreq workers' polling
	// window (ioreq.WorkerConfig.Spin); negative is off (blocking only),
	// zero the default.
	Spin time.Duration
	// MemMiB is -m (MiB); Below4G is -machine's max-ram-below-4g (0:
	// Xen's default hole).
	MemMiB, Below4G uint64
	// VCPUs is the vCPU slots to serve: -smp's maxcpus (else cpus), 0
	// when -smp is absent (ask Xen). OnlineVCPUs is -smp's cpus, those
	// online at start (libxl's avail_vcpus; query-cpus-fast lists them).
	VCPUs, OnlineVCPUs int
	// NoPlatform is -machine pc,accel=xen (xl.cfg xen_platform_pci=0).
	NoPlatform bool
	// Serial are the -serial backends, in godm's chardev syntax
	// (machine.OpenChardev), COM1 first (QEMU's chardev serialN is
	// Serial[N]).
	Serial []string
	// TestSlots are -device godm-testdev slots (godm's own test device).
	TestSlots []int
	// NICs are the emulated NICs (-device rtl8139, e1000 or virtio-net-pci), in
	// command-line order; each names one of Netdevs.
	NICs []NIC
	// Netdevs are the network back-ends (-netdev), in command-line order,
	// for netback/netdev to open (which checks their other keys).
	Netdevs []Netdev
	// Drives are the -drive back ends, in command-line order; IDEDevices
	// the -device ide-hd/ide-cd that place if=none drives.
	Drives     []Drive
	IDEDevices []IDEDevice
	// AHCI is -device ahci (at most one: libxl's hdtype="ahci").
	AHCI []AHCIController
	// PCIDisks are -device nvme and virtio-blk-pci on if=none drives
	// (an admin's device_model_args_hvm), in command-line order.
	PCIDisks []PCIDisk
	// VGA is the display device's driver: "VGA" (libxl's vga="stdvga"),
	// "cirrus-vga" (its default), "" for none; VGAMemMB its vgamem_mb.
	VGA      string
	VGAMemMB uint64
	// VRAMP2M is -global DRIVER.x-godm-vram-p2m=on|off by driver (VGA,
	// cirrus-vga): the display's VRAM as guest RAM in the p2m (on, the
	// board's default) or trapped (off: the opt-out, through xl.cfg's
	// device_model_args_hvm).
	VRAMP2M map[string]string
	// VNC is -vnc (Enabled false for "-vnc none" or none given).
	VNC vnc.Options
	// Keymap is -k's keymap name ("" for the default, en-us).
	Keymap string
	// Version is -version: print the version and exit.
	Version bool
	// USBController is -usb (or -usbdevice, which implies it): the
	// machine's UHCI controller at 01.2, as QEMU's pc_piix.c places it.
	USBController bool
	// USB are the USB devices of -device and -usbdevice, in command-line
	// order: piix3-usb-uhci controllers (libxl's usbversion=1) and
	// usb-tablet (usbdevice="tablet").
	USB []USBDevice
	// DeviceHelp is set by -device help (list the drivers) or
	// -device DRIVER,help (that driver's properties; HelpDriver names
	// it): print it and exit, as QEMU does.
	DeviceHelp bool
	HelpDriver string
}

// Incoming is where -incoming's device state comes from: a descriptor
// libxl opened (FD, -1 for none) or a file (Path).
type Incoming struct {
	FD   int
	Path string
}

// NIC is one -device rtl8139, e1000 or virtio-net-pci as libxl writes it
// (id=nicN,netdev=netN,mac=...).
type NIC struct {
	// Model is the driver: rtl8139 (libxl's default), e1000 or
	// virtio-net-pci (vif model=).
	Model           string
	ID, Netdev, MAC string
}

// Netdev is one -netdev: its id, type (tap or user) and the argument as
// given.
type Netdev struct {
	ID, Type, Arg string
}

// Refusal is a command-line option godm does not serve: one line
// naming the option and the xl.cfg setting that produced it.
type Refusal struct {
	Option string // as given: "-device qxl-vga,vram_size_mb=64"
	Why    string // "godm emulates only the standard VGA and the Cirrus: ..."
}

func (r *Refusal) Error() string { return r.Option + ": " + r.Why }

func refuse(a qemuopts.Arg, why string, args ...any) error {
	opt := "-" + a.Name
	if a.HasValue {
		opt += " " + a.Value
	}
	return &Refusal{Option: opt, Why: fmt.Sprintf(why, args...)}
}

// IsQEMUArgv reports whether args (without the program name) is a QEMU
// command line rather than one of godm's subcommands: libxl's argv
// starts with an option ("-xen-domid", or "-S" for the probe).
func IsQEMUArgv(args []string) bool {
	if len(args) == 0 || len(args[0]) < 2 || args[0][0] != '-' {
		return false
	}
	switch strings.TrimLeft(args[0], "-") {
	case "h", "help":
		return false
	}
	return true
}

// Refusals for options by the device class (or xl.cfg setting) behind
// them; the reasons name what the admin changes in the domain's config.
const (
	whyDisplay = `godm emulates only the standard VGA and the Cirrus: set vga="stdvga" or "cirrus" (or vga="none") in the domain's config`
	whyNIC     = `emulated NIC model not served (godm has rtl8139, e1000 and virtio-net-pci): set model=rtl8139 (libxl's default), model=e1000 or model=virtio-net-pci in the vif=[...] entry, or type=vif for PV only`
	whyUSB     = `godm serves the UHCI controller (usb=1 or usbversion=1) with usbdevice="tablet" only: remove usbversion=2/3, usbctrl= and usbdev=`
	whySound   = `no sound device yet: remove soundhw=`
	whySpice   = `spice is not supported: remove spice=1`
	whyChannel = `no channel support yet: remove channel=[...]`
)

// VRAMP2MProp is the VGA property putting VRAM in the guest's p2m
// (internal/board).
const VRAMP2MProp = "x-godm-vram-p2m"

// Parse reads a qemu-xen command line as libxl 4.15 to 4.20 writes it
// (tools/libs/light/libxl_dm.c libxl__build_device_model_args_new and the
// -machine none probe; XEN-FACTS §2.2-2.3). getenv is os.Getenv (libxl
// sets XEN_DOMAIN_ID). Every option is either taken into the Config or
// refused with a *Refusal naming it and the xl.cfg setting behind it;
// nothing is ignored silently. Every error is one line.
func Parse(argv []string, getenv func(string) string) (*Config, error) {
	args, err := qemuopts.Scan(argv, qemuopts.LibxlOptions)
	if err != nil {
		return nil, err
	}
	c := &Config{Dom: -1}
	chardevs := map[string]Monitor{} // socket chardevs not yet used by a -mon
	var chardevOrder []string
	seen := map[string]bool{}
	machineSeen := false
	for _, a := range args {
		// Options libxl writes at most once; a repeat is a mistake.
		switch a.Name {
		case "xen-domid", "name", "machine", "M", "m", "smp", "boot", "chroot", "runas", "S", "xen-domid-restrict", "godm-sandbox", "godm-spin":
			if seen[a.Name] {
				return nil, fmt.Errorf("-%s given twice", a.Name)
			}
			seen[a.Name] = true
		}
		switch a.Name {
		case "xen-domid":
			n, err := strconv.Atoi(a.Value)
			if err != nil || n <= 0 || n >= 0x7ff0 {
				return nil, fmt.Errorf("-xen-domid %q: want a guest domain id in 1..32751", a.Value)
			}
			c.Dom = n
		case "xen-attach":
			return nil, refuse(a, "godm serves HVM domains only (the PV backend QEMU of type=pv domains is qemu-xen's)")
		case "xen-domid-restrict":
			c.Restrict = true
		case "no-shutdown":
			// QEMU's -no-shutdown keeps the process when the guest powers
			// off; godm never exits on the guest's request either (it asks
			// Xen to shut the domain down, and exits when the domain dies
			// or libxl signals it).
		case "S":
			c.Prelaunch = true
		case "nodefaults", "no-user-config":
			// godm has no default devices beyond the machine's and reads
			// no configuration files: both hold already.
		case "nographic":
			// No display: godm has none (and does not take stdio unless a
			// -serial says so).
		case "name":
			o, err := qemuopts.ParseArg(a)
			if err != nil {
				return nil, err
			}
			c.Name = o.String("guest", "")
			if err := o.CheckUnused(); err != nil {
				return nil, err
			}
		case "chardev":
			m, err := parseChardev(a)
			if err != nil {
				return nil, err
			}
			if _, dup := chardevs[m.ID]; dup {
				return nil, fmt.Errorf("-chardev id=%s given twice", m.ID)
			}
			chardevs[m.ID] = m
			chardevOrder = append(chardevOrder, m.ID)
		case "mon":
			o, err := qemuopts.ParseArg(a)
			if err != nil {
				return nil, err
			}
			id := o.String("chardev", "")
			mode := o.String("mode", "readline")
			pretty, err := o.Bool("pretty", false)
			if err != nil {
				return nil, err
			}
			if err := o.CheckUnused(); err != nil {
				return nil, err
			}
			if mode != "control" {
				return nil, refuse(a, "only QMP monitors (mode=control) are served; the human monitor is reached through QMP's human-monitor-command")
			}
			if pretty {
				return nil, refuse(a, "pretty-printed QMP is not served")
			}
			m, ok := chardevs[id]
			if !ok {
				return nil, refuse(a, "no -chardev socket with id=%s before it", id)
			}
			delete(chardevs, id)
			c.Monitors = append(c.Monitors, m)
		case "qmp", "monitor":
			return nil, refuse(a, "give QMP monitors as -chardev socket,...,server=on,wait=off -mon chardev=ID,mode=control, as libxl does")
		case "run-with":
			o, err := qemuopts.Parse("-run-with", a.Value, "")
			if err != nil {
				return nil, err
			}
			// libxl writes one -run-with per key (chroot=, user=).
			if o.Has("chroot") && c.Chroot != "" || o.Has("user") && c.User != "" {
				return nil, fmt.Errorf("-run-with %s: chroot or user given twice", a.Value)
			}
			c.Chroot = o.String("chroot", c.Chroot)
			c.User = o.String("user", c.User)
			if err := o.CheckUnused(); err != nil {
				return nil, err
			}
		case "chroot":
			c.Chroot = a.Value
		case "runas":
			c.User = a.Value
		case "godm-sandbox":
			switch a.Value {
			case "on", "log", "off":
				c.Sandbox = a.Value
			default:
				return nil, fmt.Errorf("-godm-sandbox %q: want on, log or off", a.Value)
			}
		case "godm-spin":
			d, err := ParseSpin(a.Value)
			if err != nil {
				return nil, err
			}
			c.Spin = d
		case "incoming":
			if seen["incoming"] {
				return nil, fmt.Errorf("-incoming given twice")
			}
			seen["incoming"] = true
			// libxl_dm.c: "-incoming fd:N", N the opened
			// /var/lib/xen/qemu-resume.<domid> (QEMU's URI syntax;
			// file: for a developer's restore by hand).
			kind, arg, _ := strings.Cut(a.Value, ":")
			switch kind {
			case "fd":
				fd, err := strconv.Atoi(arg)
				if err != nil || fd < 0 {
					return nil, refuse(a, "fd:N wants a descriptor number")
				}
				c.Incoming = &Incoming{FD: fd}
			case "file":
				if arg == "" {
					return nil, refuse(a, "file:PATH wants a path")
				}
				c.Incoming = &Incoming{FD: -1, Path: arg}
			default:
				return nil, refuse(a, "godm restores device state from fd:N (as libxl passes it) or file:PATH, not from %q", kind+":")
			}
		case "pidfile", "daemonize":
			return nil, refuse(a, "libxl records the device model's pid itself; godm writes no pidfile and does not daemonize")
		case "machine", "M":
			machineSeen = true
			if err := c.parseMachine(a); err != nil {
				return nil, err
			}
		case "accel":
			o, err := qemuopts.ParseArg(a)
			if err != nil {
				return nil, err
			}
			if acc := o.String("accel", ""); acc != "xen" {
				return nil, refuse(a, "godm is a Xen device model: the only accelerator is xen")
			}
			if err := o.CheckUnused(); err != nil {
				return nil, err
			}
		case "m":
			o, err := qemuopts.ParseArg(a)
			if err != nil {
				return nil, err
			}
			n, err := o.SizeMiB("size", 0)
			if err != nil {
				return nil, err
			}
			if err := o.CheckUnused(); err != nil {
				return nil, err
			}
			if n == 0 || n%(1<<20) != 0 {
				return nil, fmt.Errorf("-m %s: want a whole, non-zero number of MiB", a.Value)
			}
			c.MemMiB = n >> 20
		case "smp":
			o, err := qemuopts.ParseArg(a)
			if err != nil {
				return nil, err
			}
			cpus, err := o.Uint("cpus", 0)
			if err != nil {
				return nil, err
			}
			maxc, err := o.Uint("maxcpus", cpus)
			if err != nil {
				return nil, err
			}
			if err := o.CheckUnused(); err != nil {
				return nil, err
			}
			// libxl: "-smp <avail>,maxcpus=<max>"; godm serves every slot
			// a vCPU may be hot-plugged into.
			if maxc == 0 || maxc > 128 || cpus > maxc {
				return nil, fmt.Errorf("-smp %s: want 1..128 vCPUs with cpus <= maxcpus", a.Value)
			}
			c.VCPUs, c.OnlineVCPUs = int(maxc), int(cpus)
			if cpus == 0 {
				c.OnlineVCPUs = int(maxc)
			}
		case "boot":
			o, err := qemuopts.ParseArg(a)
			if err != nil {
				return nil, err
			}
			// The boot order (xl.cfg boot=) is the firmware's business:
			// under Xen hvmloader and SeaBIOS read it from the NVRAM-free
			// BIOS boot menu and the disks they find, and QEMU's fw_cfg
			// boot order does not exist on xenfv (no fw_cfg). So QEMU-xen
			// ignores it too; godm checks its syntax and takes it.
			ord := o.String("order", "")
			if err := o.CheckUnused(); err != nil {
				return nil, err
			}
			if strings.Trim(ord, "acdn") != "" {
				return nil, fmt.Errorf("-boot %s: order wants drive letters a, c, d, n", a.Value)
			}
		case "no-acpi":
			return nil, refuse(a, "godm's machine always has the PIIX4 ACPI device: remove acpi=0 (and acpi_s3/acpi_s4 overrides)")
		case "global":
			// QEMU's -global DRIVER.PROP=VALUE; godm serves one: the
			// standard VGA's VRAM in the guest's p2m.
			k, v, _ := strings.Cut(a.Value, "=")
			drv, prop, _ := strings.Cut(k, ".")
			if prop != VRAMP2MProp || drv != "VGA" && drv != "cirrus-vga" {
				return nil, refuse(a, "not part of a configuration godm serves: remove the device_model_args that add it (godm takes -global VGA.%s=on|off, or cirrus-vga., only)", VRAMP2MProp)
			}
			if v != "on" && v != "off" {
				return nil, fmt.Errorf("-global %s: want on or off", a.Value)
			}
			if c.VRAMP2M[drv] != "" {
				return nil, fmt.Errorf("-global %s given twice", k)
			}
			if c.VRAMP2M == nil {
				c.VRAMP2M = map[string]string{}
			}
			c.VRAMP2M[drv] = v
		case "object":
			return nil, refuse(a, "not part of a configuration godm serves: remove the device_model_args that add it")
		case "kernel", "initrd", "append":
			return nil, refuse(a, "direct kernel boot of an HVM guest is not supported: remove kernel=, ramdisk= and cmdline= (boot through firmware)")
		case "device":
			if err := c.parseDevice(a); err != nil {
				return nil, err
			}
		case "drive":
			if err := c.parseDrive(a); err != nil {
				return nil, err
			}
		case "netdev":
			if err := c.parseNetdev(a); err != nil {
				return nil, err
			}
		case "net":
			if a.Value != "none" {
				return nil, refuse(a, "the legacy -net form is not served (libxl writes -netdev and -device)")
			}
		case "serial":
			s, err := serialSpec(a)
			if err != nil {
				return nil, err
			}
			if s == "none" {
				// QEMU serial_parse: "none" takes no port number; the
				// next -serial is the same COM port.
				continue
			}
			if len(c.Serial) == 4 {
				return nil, refuse(a, "at most 4 serial ports (COM1..COM4): shorten serial=[...]")
			}
			c.Serial = append(c.Serial, s)
		case "parallel":
			if a.Value != "none" {
				return nil, refuse(a, "no parallel port: remove it from device_model_args")
			}
		case "usb":
			c.USBController = true
		case "usbdevice":
			if err := c.usbdevice(a); err != nil {
				return nil, err
			}
		case "soundhw", "audiodev":
			return nil, refuse(a, whySound)
		case "vga":
			if a.Value != "none" {
				return nil, refuse(a, whyDisplay)
			}
		case "vnc":
			if seen["vnc"] {
				return nil, fmt.Errorf("-vnc given twice")
			}
			seen["vnc"] = true
			o, err := vnc.ParseOption(a.Value)
			if err != nil {
				return nil, err
			}
			c.VNC = o
		case "display":
			o, err := qemuopts.ParseArg(a)
			if err != nil {
				return nil, err
			}
			if o.String("type", "") != "none" {
				return nil, refuse(a, "no local display (godm shows the screen over VNC only): set sdl=0 in the domain's config")
			}
			if err := o.CheckUnused(); err != nil {
				return nil, err
			}
		case "spice":
			return nil, refuse(a, whySpice)
		case "k":
			if _, err := display.LookupKeymap(a.Value); err != nil {
				return nil, refuse(a, "%v: remove keymap= or set it to en-us", err)
			}
			c.Keymap = a.Value
		case "version":
			c.Version = true
		case "h", "help":
			return nil, refuse(a, "run godm help for godm's commands")
		default:
			// LibxlOptions and this switch list the same options.
			return nil, fmt.Errorf("-%s: not handled", a.Name)
		}
	}
	if c.Version || c.DeviceHelp {
		return c, nil
	}
	for _, id := range chardevOrder {
		if _, unused := chardevs[id]; unused {
			if strings.HasPrefix(id, "libxl-channel") {
				return nil, &Refusal{Option: "-chardev id=" + id, Why: whyChannel}
			}
			return nil, &Refusal{Option: "-chardev id=" + id, Why: "a socket chardev only serves as a QMP monitor (-mon chardev=" + id + ",mode=control)"}
		}
	}
	if err := c.checkNICs(); err != nil {
		return nil, err
	}
	if c.Probe {
		if c.Dom != -1 {
			return nil, fmt.Errorf("-machine none (the probe) takes no -xen-domid")
		}
		c.Dom = 0
		return c, nil
	}
	if c.Dom == -1 {
		return nil, fmt.Errorf("-xen-domid: missing: a qemu-xen command line names the domain to serve")
	}
	if err := c.checkDisks(); err != nil {
		return nil, err
	}
	if !machineSeen {
		return nil, fmt.Errorf("-machine: missing: want xenfv or pc,accel=xen")
	}
	if env := getenv("XEN_DOMAIN_ID"); env != "" && env != strconv.Itoa(c.Dom) {
		return nil, fmt.Errorf("XEN_DOMAIN_ID=%s in the environment but -xen-domid %d", env, c.Dom)
	}
	return c, nil
}

// parseChardev takes a -chardev socket for a QMP monitor; a pty chardev
// is libxl's channel (refused where the -mon check does not use it).
func parseChardev(a qemuopts.Arg) (Monitor, error) {
	o, err := qemuopts.ParseArg(a)
	if err != nil {
		return Monitor{}, err
	}
	m := Monitor{ID: o.ID(), FD: -1}
	if m.ID == "" {
		return m, refuse(a, "a chardev needs an id")
	}
	switch be := o.String("backend", ""); be {
	case "socket":
	case "pty":
		if strings.HasPrefix(m.ID, "libxl-channel") {
			return m, refuse(a, whyChannel)
		}
		return m, refuse(a, "a pty chardev has no user here: give serial ports with -serial pty")
	default:
		return m, refuse(a, "chardev backend %q: only socket (for QMP monitors) is served", be)
	}
	m.Path = o.String("path", "")
	fd := o.String("fd", "")
	server, err := o.Bool("server", false)
	if err != nil {
		return m, err
	}
	wait, err := o.Bool("wait", true)
	if err != nil {
		return m, err
	}
	if err := o.CheckUnused(); err != nil {
		return m, err
	}
	if !server || wait {
		return m, refuse(a, "a monitor socket must be server=on,wait=off, as libxl writes it")
	}
	switch {
	case m.Path != "" && fd != "":
		return m, refuse(a, "path= and fd= together")
	case fd != "":
		n, err := strconv.Atoi(fd)
		if err != nil || n < 3 {
			return m, refuse(a, "fd=%s: want a descriptor number of 3 or more, opened by the parent", fd)
		}
		m.FD = n
	case m.Path == "":
		return m, refuse(a, "a socket chardev needs path= or fd=")
	}
	return m, nil
}

// parseMachine takes -machine xenfv or pc,accel=xen (xen_platform_pci=0),
// with suppress-vmdesc and max-ram-below-4g, or none (the probe).
func (c *Config) parseMachine(a qemuopts.Arg) error {
	o, err := qemuopts.ParseArg(a)
	if err != nil {
		return err
	}
	typ := o.String("type", "")
	accel := o.String("accel", "")
	switch {
	case typ == "none":
		c.Probe = true
	case typ == "xenfv" && (accel == "" || accel == "xen"):
	case typ == "pc" && accel == "xen":
		c.NoPlatform = true
	case strings.HasPrefix(typ, "xenfv-") || strings.HasPrefix(typ, "pc-i440fx-"):
		return refuse(a, "versioned machine types are not served: remove the device_model_args that choose one")
	default:
		return refuse(a, "godm's machine is xenfv (or pc,accel=xen with xen_platform_pci=0)")
	}
	// suppress-vmdesc only shapes QEMU's migration stream, which godm
	// does not write.
	if _, err := o.Bool("suppress-vmdesc", false); err != nil {
		return err
	}
	if c.Below4G, err = o.Size("max-ram-below-4g", 0); err != nil {
		return err
	}
	igd, err := o.Bool("igd-passthru", false)
	if err != nil {
		return err
	}
	if igd {
		return refuse(a, "IGD passthrough is not supported: remove gfx_passthru=")
	}
	return o.CheckUnused()
}

// USBDevice is one USB device of the command line: its driver
// ("piix3-usb-uhci" or "usb-tablet") and the properties given (id, addr;
// bus, port).
type USBDevice struct {
	Driver string
	Props  map[string]string
}

// USB driver names (board.UHCIDriver, board.TabletDriver).
const (
	uhciDriver   = "piix3-usb-uhci"
	tabletDriver = "usb-tablet"
)

// parseUSBDevice takes -device piix3-usb-uhci[,id=][,addr=] and
// -device usb-tablet[,id=][,bus=][,port=].
func (c *Config) parseUSBDevice(a qemuopts.Arg, o *qemuopts.Opts, drv string) error {
	keys := []string{"addr"}
	if drv == tabletDriver {
		keys = []string{"bus", "port"}
	}
	d := USBDevice{Driver: drv, Props: map[string]string{}}
	if id := o.ID(); id != "" {
		d.Props["id"] = id
	}
	for _, k := range keys {
		if v := o.String(k, ""); v != "" {
			d.Props[k] = v
		}
	}
	if err := o.CheckUnused(); err != nil {
		return err
	}
	c.USB = append(c.USB, d)
	return nil
}

// usbdevice takes -usbdevice NAME (xl.cfg usbdevice=, usbdevice=[...]):
// the tablet only.
func (c *Config) usbdevice(a qemuopts.Arg) error {
	if a.Value != "tablet" {
		return refuse(a, `godm serves usbdevice="tablet" only (no USB mouse, keyboard, disk or host device): set usbdevice="tablet" or remove it`)
	}
	// QEMU vl.c: -usbdevice turns the machine's USB on.
	c.USBController = true
	c.USB = append(c.USB, USBDevice{Driver: tabletDriver, Props: map[string]string{}})
	return nil
}

// parseDevice takes the -device forms libxl writes, each refused by the
// device class (and xl.cfg key) it belongs to, and godm's own test device.
func (c *Config) parseDevice(a qemuopts.Arg) error {
	o, err := qemuopts.ParseArg(a)
	if err != nil {
		return err
	}
	drv := o.String("driver", "")
	if o.Help {
		c.DeviceHelp, c.HelpDriver = true, drv
		return nil
	}
	switch drv {
	case "VGA", "cirrus-vga":
		def := uint64(16)
		if drv == "cirrus-vga" {
			def = 4
		}
		mb, err := o.Uint("vgamem_mb", def)
		if err != nil {
			return err
		}
		if err := o.CheckUnused(); err != nil {
			return err
		}
		if c.VGA != "" {
			return refuse(a, "a second VGA: the legacy VGA ports and memory exist once")
		}
		switch {
		case drv == "VGA" && (mb == 0 || mb > 512):
			return refuse(a, "vgamem_mb=%d: want 1..512 (xl.cfg videoram=, in MiB)", mb)
		case drv == "cirrus-vga" && mb != 4 && mb != 8 && mb != 16:
			// QEMU's cirrus-vga accepts these only (cirrus_vga.c).
			return refuse(a, "vgamem_mb=%d: the Cirrus VGA takes 4, 8 or 16 (xl.cfg videoram=, in MiB)", mb)
		}
		c.VGA, c.VGAMemMB = drv, mb
		return nil
	case "qxl-vga", "qxl", "vmware-svga", "virtio-vga", "bochs-display":
		return refuse(a, whyDisplay)
	case nicDriver, e1000Driver, virtioNetDriver:
		return c.parseNIC(a, o, drv)
	case "e1000-82544gc", "e1000-82545em", "e1000e", "ne2k_pci", "pcnet", "vmxnet3", "i82551", "i82557b", "i82559er":
		return refuse(a, whyNIC)
	case "ide-hd", "ide-cd":
		return c.parseIDEDevice(a, o, drv)
	case "ahci", "ich9-ahci":
		return c.parseAHCI(a, o)
	case "virtio-blk-pci", "virtio-blk", "nvme":
		return c.parsePCIDisk(a, o, drv)
	case "scsi-hd", "scsi-cd", "lsi53c895a", "megasas", "virtio-scsi-pci":
		return refuse(a, whyDiskKind)
	case uhciDriver, tabletDriver:
		return c.parseUSBDevice(a, o, drv)
	case "piix4-usb-uhci", "ich9-usb-ehci1", "ich9-usb-uhci1", "ich9-usb-uhci2", "ich9-usb-uhci3",
		"nec-usb-xhci", "qemu-xhci", "usb-mouse", "usb-kbd", "usb-host", "usb-redir", "usb-hub", "usb-storage":
		return refuse(a, whyUSB)
	case "intel-hda", "hda-duplex", "hda-output", "hda-micro", "AC97", "ac97", "sb16", "es1370", "adlib", "cs4231a", "gus":
		return refuse(a, whySound)
	case "virtio-serial", "virtio-serial-pci", "virtserialport", "spicevmc":
		return refuse(a, whySpice)
	case "xen-pvdevice":
		return refuse(a, `the XenServer vendor device is not supported: remove xen_vendor_device= (or set it to "none")`)
	case "xen-pci-passthrough":
		return refuse(a, "libxl passes pci=[...] devices through QMP device_add once godm runs, not on the command line")
	case "i440FX", "PIIX3", "piix4-pm", "xen-platform", "i8042", "isa-serial", "piix3-ide", "piix3-ide-xen":
		return refuse(a, "part of godm's xenfv machine already (serial ports come from -serial)")
	case "godm-testdev":
		// godm's own test device (device_model_args_hvm), at a free slot.
		addr := o.String("addr", "")
		if err := o.CheckUnused(); err != nil {
			return err
		}
		slot, err := qemuopts.ParseUint(strings.TrimSuffix(addr, ".0"))
		if addr == "" || err != nil || slot < 4 || slot > 31 {
			return refuse(a, "addr=: want a free slot in 0x4..0x1f (SLOT or SLOT.0)")
		}
		for _, s := range c.TestSlots {
			if s == int(slot) {
				return refuse(a, "slot %#x used twice", slot)
			}
		}
		c.TestSlots = append(c.TestSlots, int(slot))
		return nil
	case "":
		return refuse(a, "no driver named")
	}
	return refuse(a, "godm has no device %q", drv)
}

// serialSpec turns -serial's argument into godm's chardev syntax.
// libxl writes serial= entries as they are (xl.cfg serial=["pty"]).
func serialSpec(a qemuopts.Arg) (string, error) {
	v := a.Value
	kind, arg, _ := strings.Cut(v, ":")
	switch kind {
	case "none", "null":
		if arg == "" {
			return kind, nil
		}
	case "pty", "stdio":
		if arg == "" {
			return kind, nil
		}
	case "file":
		if arg != "" {
			return v, nil
		}
	case "unix":
		// QEMU: unix:PATH[,server=on][,wait=off]; godm listens (server).
		path, opts, _ := strings.Cut(arg, ",")
		if path == "" {
			break
		}
		for _, kv := range strings.Split(opts, ",") {
			switch kv {
			case "", "server", "server=on", "nowait", "wait=off":
			default:
				return "", refuse(a, "godm's unix: serial listens (server=on,wait=off); %q is not served", kv)
			}
		}
		return "unix:" + path, nil
	}
	if strings.HasPrefix(v, "/dev/") {
		return "", refuse(a, "a host serial device is not served: use serial=\"pty\" (stubdomain consoles are not supported)")
	}
	return "", refuse(a, "want pty, none, null, stdio, file:PATH or unix:PATH in serial=")
}

// nicDriver, e1000Driver and virtioNetDriver are the NIC drivers godm
// serves (board.NICDriver, board.E1000Driver, board.VirtioNetDriver;
// dmcontract does not import the board).
const (
	nicDriver       = "rtl8139"
	e1000Driver     = "e1000"
	virtioNetDriver = "virtio-net-pci"
)

// parseNIC takes "-device rtl8139|e1000|virtio-net-pci,id=nicN,netdev=netN,mac=..."
// (libxl libxl_dm.c, the VIF_IOEMU NICs: the vif's model= is the driver;
// XEN-FACTS §2).
func (c *Config) parseNIC(a qemuopts.Arg, o *qemuopts.Opts, model string) error {
	n := NIC{Model: model, ID: o.ID(), Netdev: o.String("netdev", ""), MAC: o.String("mac", "")}
	if err := o.CheckUnused(); err != nil {
		return err
	}
	if n.MAC != "" {
		if _, err := netback.ParseMAC(n.MAC); err != nil {
			return refuse(a, "mac=%v (vif=[...] mac=)", err)
		}
	}
	for _, o := range c.NICs {
		if n.ID != "" && o.ID == n.ID {
			return refuse(a, "id '%s' used twice", n.ID)
		}
		if n.Netdev != "" && o.Netdev == n.Netdev {
			return refuse(a, "netdev '%s' is in use by another NIC", n.Netdev)
		}
	}
	c.NICs = append(c.NICs, n)
	return nil
}

// parseNetdev takes "-netdev type=tap,id=netN,..." as libxl writes it and
// godm's "-netdev user,id=...". The other keys are netback/netdev's to
// check when it opens the back-end.
func (c *Config) parseNetdev(a qemuopts.Arg) error {
	o, err := qemuopts.Parse("-netdev", a.Value, "type")
	if err != nil {
		return err
	}
	nd := Netdev{ID: o.ID(), Type: o.Label(), Arg: a.Value}
	switch nd.Type {
	case "tap", "user":
	case "":
		return refuse(a, "type= is missing (tap or user)")
	default:
		return refuse(a, "netdev type '%s' is not served (tap, as libxl writes it, or user)", nd.Type)
	}
	if nd.ID == "" {
		return refuse(a, "id= is missing")
	}
	for _, o := range c.Netdevs {
		if o.ID == nd.ID {
			return refuse(a, "id '%s' used twice", nd.ID)
		}
	}
	c.Netdevs = append(c.Netdevs, nd)
	return nil
}

// checkNICs: every NIC's netdev is on the command line.
func (c *Config) checkNICs() error {
	for _, n := range c.NICs {
		if n.Netdev == "" {
			continue
		}
		found := false
		for _, d := range c.Netdevs {
			found = found || d.ID == n.Netdev
		}
		if !found {
			return &Refusal{Option: "-device " + n.Model + ",id=" + n.ID, Why: fmt.Sprintf("netdev '%s' is not on the command line (-netdev id=%s)", n.Netdev, n.Netdev)}
		}
	}
	return nil
}

// maxSpin bounds -godm-spin: a worker polling longer than a scheduler
// tick after each request is a spinning thread, not a polling window.
const maxSpin = 10 * time.Millisecond

// ParseSpin parses -godm-spin's value: off (the workers only block) or a
// Go duration in (0, 10ms] bounding the adaptive polling window after
// each request (ioreq.WorkerConfig.Spin).
func ParseSpin(v string) (time.Duration, error) {
	if v == "off" {
		return -1, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 || d > maxSpin {
		return 0, fmt.Errorf("-godm-spin %q: want off or a duration in (0, %v], e.g. 50us", v, maxSpin)
	}
	return d, nil
}

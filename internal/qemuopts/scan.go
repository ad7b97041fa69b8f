package qemuopts

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Arg is one option of a QEMU-style command line.
type Arg struct {
	Name     string // without the leading '-' or "--": "device"
	Value    string // the option's argument; "" for a flag
	HasValue bool   // the option takes an argument (then Value may still be "")
	Index    int    // position of the option in argv, for messages
}

// Scan splits argv (without the program name) into options. takesValue
// says, for every known option name, whether it takes the next argument as
// its value (QEMU's HAS_ARG). As QEMU's lookup_opt, "--name" is "-name".
// An unknown option, a missing value or an argument that is not an option
// (QEMU would take it for a disk image) is one error line.
func Scan(argv []string, takesValue map[string]bool) ([]Arg, error) {
	var args []Arg
	for i := 0; i < len(argv); i++ {
		a := argv[i]
		if len(a) < 2 || a[0] != '-' {
			return nil, fmt.Errorf("argument %d: unexpected %q: expected an option such as -device (disk images are given with -drive)", i+1, a)
		}
		name := a[1:]
		if name[0] == '-' {
			name = name[1:]
		}
		hasValue, known := takesValue[name]
		if !known {
			return nil, fmt.Errorf("argument %d: unknown option %s", i+1, a)
		}
		arg := Arg{Name: name, HasValue: hasValue, Index: i}
		if hasValue {
			if i+1 >= len(argv) {
				return nil, fmt.Errorf("argument %d: option %s requires a value", i+1, a)
			}
			i++
			arg.Value = argv[i]
		}
		args = append(args, arg)
	}
	return args, nil
}

// LibxlOptions is every option that libxl 4.15 to 4.20 writes on a
// qemu-xen command line (libxl_dm.c libxl__build_device_model_args_new and
// the -machine none probe), with whether it takes a value (QEMU
// qemu-options.hx). A caller that serves only some of them still scans with
// this table, so that an option it does not serve is refused by name, not
// as "unknown". Callers must not modify it.
var LibxlOptions = map[string]bool{
	// Process, identity and monitors.
	"xen-domid": true, "xen-attach": false, "xen-domid-restrict": false,
	"no-shutdown": false, "S": false, "name": true,
	"chardev": true, "mon": true, "qmp": true, "monitor": true,
	"nodefaults": false, "no-user-config": false,
	"run-with": true, "chroot": true, "runas": true,
	"incoming": true, "pidfile": true, "daemonize": false,
	// godm's own, given through xl.cfg's device_model_args_hvm (libxl
	// appends those last): -godm-sandbox on|log|off, -godm-spin DURATION|off.
	"godm-sandbox": true, "godm-spin": true,
	// Machine.
	"machine": true, "M": true, "accel": true, "m": true, "smp": true,
	"boot": true, "no-acpi": false, "global": true, "object": true,
	"kernel": true, "initrd": true, "append": true,
	// Devices and back-ends.
	"device": true, "drive": true, "netdev": true, "net": true,
	"serial": true, "parallel": true, "usb": false, "usbdevice": true,
	"soundhw": true, "audiodev": true, "vga": true,
	// Display.
	"vnc": true, "display": true, "nographic": false, "spice": true, "k": true,
	// Help and version.
	"h": false, "help": false, "version": false,
}

// Implied is the implied first key of each option whose argument is a
// QemuOpts list (QEMU softmmu/vl.c and friends: qemu_device_opts "driver",
// qemu_netdev_opts "type", qemu_chardev_opts "backend", qemu_mon_opts
// "chardev", qemu_boot_opts "order", qemu_smp_opts "cpus", qemu_mem_opts
// "size", qemu_name_opts "guest", qemu_vnc_opts "vnc", parse_display_qapi
// "type", machine "type", qemu_object_opts "qom-type", qemu_accel_opts
// "accel"). Options absent here (-drive, -spice, -run-with, -global) have no
// implied key; options whose argument is a plain string (-serial, -k,
// -incoming, ...) are not QemuOpts lists at all. Callers must not modify it.
var Implied = map[string]string{
	"device":  "driver",
	"netdev":  "type",
	"net":     "type",
	"chardev": "backend",
	"mon":     "chardev",
	"machine": "type",
	"M":       "type",
	"boot":    "order",
	"smp":     "cpus",
	"m":       "size",
	"name":    "guest",
	"vnc":     "vnc",
	"display": "type",
	"object":  "qom-type",
	"accel":   "accel",
}

// ParseArg parses the value of a scanned option as a QemuOpts list, with
// the option's implied key from Implied and "-name" as the option in
// messages. For -device and -object a value starting with '{' is a JSON
// object, as QEMU accepts since 6.2 and 6.0 (it is read as FromJSON reads
// a QMP dictionary).
func ParseArg(a Arg) (*Opts, error) {
	if (a.Name == "device" || a.Name == "object") && strings.HasPrefix(a.Value, "{") {
		d := json.NewDecoder(strings.NewReader(a.Value))
		d.UseNumber()
		var obj map[string]any
		if err := d.Decode(&obj); err != nil {
			return nil, fmt.Errorf("-%s: invalid JSON: %v", a.Name, err)
		}
		if d.More() {
			return nil, fmt.Errorf("-%s: invalid JSON: more than one value", a.Name)
		}
		return FromJSON("-"+a.Name, obj)
	}
	return Parse("-"+a.Name, a.Value, Implied[a.Name])
}

// Quote returns s with every ',' doubled, the inverse of the ",," escape,
// for building an option string from a value.
func Quote(s string) string { return strings.ReplaceAll(s, ",", ",,") }

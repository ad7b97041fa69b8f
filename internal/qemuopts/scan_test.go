package qemuopts

import (
	"reflect"
	"strings"
	"testing"
)

// The argv Debian's xl 4.17.7 wrote for a default HVM config (issue 12).
const xl417 = `-xen-domid 7 -no-shutdown -chardev socket,id=libxl-cmd,path=/var/run/xen/qmp-libxl-7,server=on,wait=off ` +
	`-mon chardev=libxl-cmd,mode=control -chardev socket,id=libxenstat-cmd,path=/var/run/xen/qmp-libxenstat-7,server=on,wait=off ` +
	`-mon chardev=libxenstat-cmd,mode=control -nodefaults -no-user-config -name godmtest -vnc none ` +
	`-display none -serial pty -device cirrus-vga,vgamem_mb=8 -boot order=cda -net none ` +
	`-machine xenfv,suppress-vmdesc=on -m 56`

func TestScanLibxlArgv(t *testing.T) {
	args, err := Scan(strings.Fields(xl417), LibxlOptions)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range args {
		names = append(names, a.Name)
	}
	want := []string{"xen-domid", "no-shutdown", "chardev", "mon", "chardev", "mon", "nodefaults", "no-user-config",
		"name", "vnc", "display", "serial", "device", "boot", "net", "machine", "m"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("names %q, want %q", names, want)
	}
	if args[0].Value != "7" || !args[0].HasValue || args[1].HasValue || args[1].Value != "" || args[2].Index != 3 {
		t.Errorf("args[0..2] = %+v", args[:3])
	}
	// Every option value that is a QemuOpts list parses, with its implied key.
	for _, a := range args {
		if _, ok := Implied[a.Name]; !ok {
			continue
		}
		o, err := ParseArg(a)
		if err != nil {
			t.Errorf("%s %s: %v", a.Name, a.Value, err)
			continue
		}
		if o.Label() == "" {
			t.Errorf("-%s %s: no implied value", a.Name, a.Value)
		}
	}
	m, _ := ParseArg(args[16])
	if size, err := m.SizeMiB("size", 0); err != nil || size != 56<<20 {
		t.Errorf("-m 56 = %d %v", size, err)
	}

	// The dm_restrict probe.
	probe := "-S -no-user-config -nodefaults -nographic -machine none,accel=xen " +
		"-chardev socket,id=libxl-cmd,fd=3,server=on,wait=off -mon chardev=libxl-cmd,mode=control"
	if _, err := Scan(strings.Fields(probe), LibxlOptions); err != nil {
		t.Errorf("probe: %v", err)
	}
}

func TestScanErrors(t *testing.T) {
	for _, tc := range []struct {
		argv string
		want string
	}{
		{"-xen-domid 7 -bogus", "argument 3: unknown option -bogus"},
		{"-xen-domid", "argument 1: option -xen-domid requires a value"},
		{"-S disk.img", `argument 2: unexpected "disk.img": expected an option such as -device (disk images are given with -drive)`},
		{"-", `argument 1: unexpected "-": expected an option such as -device (disk images are given with -drive)`},
		{"--", "argument 1: unknown option --"},
		{"---S", "argument 1: unknown option ---S"},
	} {
		_, err := Scan(strings.Fields(tc.argv), LibxlOptions)
		if err == nil || err.Error() != tc.want {
			t.Errorf("Scan(%q) error %v, want %q", tc.argv, err, tc.want)
		}
	}
	// "--name" is "-name"; an empty value is a value.
	args, err := Scan([]string{"--name", "", "--S"}, LibxlOptions)
	if err != nil || len(args) != 2 || args[0].Name != "name" || args[0].Value != "" || args[1].Name != "S" {
		t.Errorf("Scan(--name '' --S) = %+v, %v", args, err)
	}
}

func TestParseArgJSON(t *testing.T) {
	o, err := ParseArg(Arg{Name: "device", Value: `{"driver":"isa-serial","id":"com1","chardev":"s0","index":0}`})
	if err != nil {
		t.Fatal(err)
	}
	if o.String("driver", "") != "isa-serial" || o.ID() != "com1" || o.String("chardev", "") != "s0" {
		t.Errorf("JSON -device: %v", o.Keys())
	}
	if n, err := o.Uint("index", 9); err != nil || n != 0 {
		t.Errorf("index %d %v", n, err)
	}
	if err := o.CheckUnused(); err != nil {
		t.Error(err)
	}
	for _, tc := range []struct{ v, want string }{
		{`{"driver":`, "-device: invalid JSON: unexpected EOF"},
		{`{"driver":"a"} {}`, "-device: invalid JSON: more than one value"},
		{`{"driver":"a","bus":{}}`, "-device a: property 'bus' must be a string, a number or a boolean"},
	} {
		if _, err := ParseArg(Arg{Name: "device", Value: tc.v}); err == nil || err.Error() != tc.want {
			t.Errorf("ParseArg(%s) = %v, want %q", tc.v, err, tc.want)
		}
	}
	// Other options keep the key=value syntax even for a leading '{'.
	if o, err := ParseArg(Arg{Name: "drive", Value: "{x"}); err != nil || !o.Has("{x") {
		t.Errorf("-drive {x: %v", err)
	}
}

package qemuopts

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

type kv struct{ k, v string }

func entriesOf(o *Opts) []kv {
	var out []kv
	for _, e := range o.entries {
		out = append(out, kv{e.key, e.value})
	}
	return out
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		option, arg, implied string
		want                 []kv
		help                 bool
		label                string
	}{
		// What libxl writes (XEN-FACTS §2.3).
		{"-device", "cirrus-vga,vgamem_mb=8", "driver", []kv{{"driver", "cirrus-vga"}, {"vgamem_mb", "8"}}, false, "cirrus-vga"},
		{"-chardev", "socket,id=libxl-cmd,path=/var/run/xen/qmp-libxl-7,server=on,wait=off", "backend",
			[]kv{{"backend", "socket"}, {"id", "libxl-cmd"}, {"path", "/var/run/xen/qmp-libxl-7"}, {"server", "on"}, {"wait", "off"}}, false, "socket"},
		{"-mon", "chardev=libxl-cmd,mode=control", "chardev", []kv{{"chardev", "libxl-cmd"}, {"mode", "control"}}, false, "libxl-cmd"},
		{"-machine", "xenfv,suppress-vmdesc=on,max-ram-below-4g=3G", "type",
			[]kv{{"type", "xenfv"}, {"suppress-vmdesc", "on"}, {"max-ram-below-4g", "3G"}}, false, "xenfv"},
		{"-netdev", "type=tap,id=net0,ifname=vif7.0-emu,br=xenbr0,script=no,downscript=no", "type",
			[]kv{{"type", "tap"}, {"id", "net0"}, {"ifname", "vif7.0-emu"}, {"br", "xenbr0"}, {"script", "no"}, {"downscript", "no"}}, false, "tap"},
		{"-m", "56", "size", []kv{{"size", "56"}}, false, "56"},
		{"-drive", "if=none,readonly=on,id=ide-5632", "", []kv{{"if", "none"}, {"readonly", "on"}, {"id", "ide-5632"}}, false, ""},
		// The short boolean forms older toolstacks write.
		{"-chardev", "socket,id=c,path=/p,server,nowait", "backend",
			[]kv{{"backend", "socket"}, {"id", "c"}, {"path", "/p"}, {"server", "on"}, {"wait", "off"}}, false, "socket"},
		// ",," is a literal comma, in the implied value and in values.
		{"-drive", "file=a,,b.img,format=raw", "", []kv{{"file", "a,b.img"}, {"format", "raw"}}, false, ""},
		{"-device", "we,,ird,x=1,,,,2", "driver", []kv{{"driver", "we,ird"}, {"x", "1,,2"}}, false, "we,ird"},
		{"-device", "d,x=,,", "driver", []kv{{"driver", "d"}, {"x", ","}}, false, "d"},
		// '=' inside a value, an empty value, a trailing comma.
		{"-append", "", "", nil, false, ""},
		{"-device", "d,cmd=a=b,e=,", "driver", []kv{{"driver", "d"}, {"cmd", "a=b"}, {"e", ""}}, false, "d"},
		// The implied key may be spelled out, but only the first element may omit it.
		{"-device", "driver=isa-serial,chardev=s0", "driver", []kv{{"driver", "isa-serial"}, {"chardev", "s0"}}, false, "isa-serial"},
		// Help.
		{"-device", "help", "driver", nil, true, ""},
		{"-device", "?", "driver", nil, true, ""},
		{"-device", "isa-serial,help", "driver", []kv{{"driver", "isa-serial"}}, true, "isa-serial"},
		{"-drive", "help", "", nil, true, ""},
	} {
		o, err := Parse(tc.option, tc.arg, tc.implied)
		if err != nil {
			t.Errorf("Parse(%q, %q): %v", tc.option, tc.arg, err)
			continue
		}
		if got := entriesOf(o); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Parse(%q, %q) = %q, want %q", tc.option, tc.arg, got, tc.want)
		}
		if o.Help != tc.help || o.Label() != tc.label {
			t.Errorf("Parse(%q, %q): Help %v label %q, want %v %q", tc.option, tc.arg, o.Help, o.Label(), tc.help, tc.label)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ option, arg, implied, want string }{
		{"-device", "isa-serial,chardev=a,chardev=b", "driver", "-device isa-serial: property 'chardev' given twice"},
		{"-chardev", "socket,wait=on,nowait", "backend", "-chardev socket: parameter 'wait' given twice"},
		{"-device", "isa-serial,driver=x", "driver", "-device isa-serial: property 'driver' given twice"},
		{"-device", "isa-serial,=x", "driver", `-device isa-serial: empty property name in "isa-serial,=x"`},
		{"-drive", ",file=x", "", `-drive: empty parameter name in ",file=x"`},
		{"-drive", "=x", "", `-drive: empty parameter name in "=x"`},
		{"-device", "isa-serial,id=1com", "driver", `-device isa-serial: property 'id' expects an identifier (letters, digits, '-', '.', '_', starting with a letter), not "1com"`},
		{"-device", "isa-serial,id=", "driver", `-device isa-serial: property 'id' expects an identifier (letters, digits, '-', '.', '_', starting with a letter), not ""`},
		{"-netdev", "tap,id=a/b", "type", `-netdev tap: parameter 'id' expects an identifier (letters, digits, '-', '.', '_', starting with a letter), not "a/b"`},
	} {
		_, err := Parse(tc.option, tc.arg, tc.implied)
		if err == nil || err.Error() != tc.want {
			t.Errorf("Parse(%q, %q) error %v, want %q", tc.option, tc.arg, err, tc.want)
		}
	}
}

func mustParse(t *testing.T, option, arg, implied string) *Opts {
	t.Helper()
	o, err := Parse(option, arg, implied)
	if err != nil {
		t.Fatalf("Parse(%q): %v", arg, err)
	}
	return o
}

func TestGetters(t *testing.T) {
	o := mustParse(t, "-device", "xen-pci-passthrough,id=pci-pt-03_00.0,hostaddr=0000:03:00.0,permissive=yes,"+
		"addr=0x10,n=010,big=18446744073709551615,mem=1.5G,ram=56", "driver")
	if got := o.String("driver", ""); got != "xen-pci-passthrough" {
		t.Errorf("driver %q", got)
	}
	if got := o.ID(); got != "pci-pt-03_00.0" {
		t.Errorf("ID %q", got)
	}
	if got, err := o.Require("hostaddr"); err != nil || got != "0000:03:00.0" {
		t.Errorf("hostaddr %q %v", got, err)
	}
	if got, err := o.Bool("permissive", false); err != nil || !got {
		t.Errorf("permissive %v %v", got, err)
	}
	if got, err := o.Bool("absent", true); err != nil || !got {
		t.Errorf("absent bool %v %v", got, err)
	}
	for key, want := range map[string]uint64{"addr": 16, "n": 8, "big": 1<<64 - 1, "absent": 77} {
		if got, err := o.Uint(key, 77); err != nil || got != want {
			t.Errorf("Uint(%s) = %d %v, want %d", key, got, err, want)
		}
	}
	if got, err := o.Size("mem", 0); err != nil || got != 3<<29 {
		t.Errorf("Size(mem) = %d %v", got, err)
	}
	if got, err := o.SizeMiB("ram", 0); err != nil || got != 56<<20 {
		t.Errorf("SizeMiB(ram) = %d %v", got, err)
	}
	if err := o.CheckUnused(); err != nil {
		t.Errorf("CheckUnused after consuming all: %v", err)
	}
	if o.Has("nothere") || !o.Has("mem") {
		t.Error("Has is wrong")
	}
	if got := o.Keys(); len(got) != 9 || got[0] != "driver" || got[8] != "ram" {
		t.Errorf("Keys %q", got)
	}
}

func TestGetterErrors(t *testing.T) {
	o := mustParse(t, "-device", "isa-serial,b=maybe,u=-1,x=0x,h=1_000,o=09,r=18446744073709551616,s=1.5,t=16E,v=0b1", "driver")
	check := func(err error, want string) {
		t.Helper()
		if err == nil || err.Error() != want {
			t.Errorf("error %v, want %q", err, want)
		}
	}
	_, err := o.Bool("b", false)
	check(err, `-device isa-serial: property 'b' expects 'on' or 'off', not "maybe"`)
	for _, k := range []string{"u", "x", "h", "o", "v"} {
		_, err = o.Uint(k, 0)
		check(err, "-device isa-serial: property '"+k+"' expects a number, not \""+o.String(k, "")+"\"")
	}
	_, err = o.Uint("r", 0)
	check(err, "-device isa-serial: value '18446744073709551616' is too large for property 'r'")
	_, err = o.Size("s", 0)
	check(err, `-device isa-serial: property 's' expects a non-negative number below 2^64 with an optional suffix k, M, G, T, P or E, not "1.5"`)
	_, err = o.Size("t", 0)
	check(err, "-device isa-serial: value '16E' is out of range for property 't'")
	_, err = o.Require("chardev")
	check(err, "-device isa-serial: property 'chardev' is missing")
	check(o.Errorf("chardev %q not found", "s9"), `-device isa-serial: chardev "s9" not found`)
}

func TestCheckUnused(t *testing.T) {
	o := mustParse(t, "-device", "isa-serial,chardev=s0,foo=1,bar=2", "driver")
	o.String("driver", "")
	o.String("chardev", "")
	err := o.CheckUnused()
	if err == nil || err.Error() != "-device isa-serial: unknown property 'foo'" {
		t.Fatalf("CheckUnused = %v", err)
	}
	o.String("foo", "")
	if err := o.CheckUnused(); err == nil || err.Error() != "-device isa-serial: unknown property 'bar'" {
		t.Fatalf("CheckUnused = %v", err)
	}
	// id is a key like any other: an option that takes none reports it.
	m := mustParse(t, "-machine", "xenfv,id=m", "type")
	m.String("type", "")
	if err := m.CheckUnused(); err == nil || err.Error() != "-machine xenfv: unknown parameter 'id'" {
		t.Fatalf("CheckUnused = %v", err)
	}
	// Has does not consume.
	h := mustParse(t, "-drive", "file=x", "")
	h.Has("file")
	if err := h.CheckUnused(); err == nil || err.Error() != "-drive: unknown parameter 'file'" {
		t.Fatalf("CheckUnused = %v", err)
	}
}

func TestFromJSON(t *testing.T) {
	var args map[string]any
	d := json.NewDecoder(strings.NewReader(`{"driver":"xen-pci-passthrough","id":"pci-pt-03_00.0",` +
		`"hostaddr":"0000:03:00.0","permissive":true,"off":false,"n":42,"f":1.5}`))
	d.UseNumber()
	if err := d.Decode(&args); err != nil {
		t.Fatal(err)
	}
	o, err := FromJSON("device_add", args)
	if err != nil {
		t.Fatal(err)
	}
	want := []kv{{"driver", "xen-pci-passthrough"}, {"f", "1.5"}, {"hostaddr", "0000:03:00.0"}, {"id", "pci-pt-03_00.0"},
		{"n", "42"}, {"off", "off"}, {"permissive", "on"}}
	if got := entriesOf(o); !reflect.DeepEqual(got, want) {
		t.Errorf("FromJSON = %q, want %q", got, want)
	}
	if n, err := o.Uint("n", 0); err != nil || n != 42 {
		t.Errorf("n = %d %v", n, err)
	}
	if _, err := o.Uint("f", 0); err == nil || err.Error() != `device_add xen-pci-passthrough: property 'f' expects a number, not "1.5"` {
		t.Errorf("f: %v", err)
	}
	o.String("driver", "")
	if err := o.CheckUnused(); err == nil || err.Error() != "device_add xen-pci-passthrough: unknown property 'hostaddr'" {
		t.Errorf("CheckUnused = %v", err)
	}

	// Plain Go values, as a caller building arguments would pass them.
	o, err = FromJSON("netdev_add", map[string]any{"type": "tap", "id": "n0", "fd": 7, "x": float64(3)})
	if err != nil {
		t.Fatal(err)
	}
	if got := entriesOf(o); !reflect.DeepEqual(got, []kv{{"fd", "7"}, {"id", "n0"}, {"type", "tap"}, {"x", "3"}}) {
		t.Errorf("FromJSON = %q", got)
	}

	for _, tc := range []struct {
		obj  map[string]any
		want string
	}{
		{map[string]any{"driver": "d", "bus": map[string]any{}}, "device_add d: property 'bus' must be a string, a number or a boolean"},
		{map[string]any{"driver": "d", "l": []any{1}}, "device_add d: property 'l' must be a string, a number or a boolean"},
		{map[string]any{"driver": "d", "z": nil}, "device_add d: property 'z' must be a string, a number or a boolean"},
		{map[string]any{"driver": "d", "": "x"}, "device_add d: empty property name"},
		{map[string]any{"driver": "d", "id": "0bad"}, `device_add d: property 'id' expects an identifier (letters, digits, '-', '.', '_', starting with a letter), not "0bad"`},
		{map[string]any{"driver": "d", "n": json.Number("1x")}, "device_add d: property 'n' is not a valid number"},
	} {
		_, err := FromJSON("device_add", tc.obj)
		if err == nil || err.Error() != tc.want {
			t.Errorf("FromJSON(%v) error %v, want %q", tc.obj, err, tc.want)
		}
	}
}

func TestParseUint(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		err  error
	}{
		{"0", 0, nil}, {"00", 0, nil}, {"42", 42, nil}, {"0x2A", 42, nil}, {"0X2a", 42, nil}, {"052", 42, nil},
		{"18446744073709551615", 1<<64 - 1, nil}, {"0xffffffffffffffff", 1<<64 - 1, nil},
		{"18446744073709551616", 0, ErrRange}, {"0x10000000000000000", 0, ErrRange},
		{"", 0, ErrSyntax}, {"-1", 0, ErrSyntax}, {"+1", 0, ErrSyntax}, {" 1", 0, ErrSyntax}, {"1 ", 0, ErrSyntax},
		{"0x", 0, ErrSyntax}, {"08", 0, ErrSyntax}, {"0o7", 0, ErrSyntax}, {"0b1", 0, ErrSyntax}, {"1_0", 0, ErrSyntax},
		{"1k", 0, ErrSyntax}, {"0xg", 0, ErrSyntax},
	} {
		got, err := ParseUint(tc.in)
		if !errors.Is(err, tc.err) || (tc.err == nil && got != tc.want) {
			t.Errorf("ParseUint(%q) = %d, %v; want %d, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestParseSize(t *testing.T) {
	const (
		KiB = 1 << 10
		MiB = 1 << 20
		GiB = 1 << 30
		EiB = 1 << 60
	)
	for _, tc := range []struct {
		in   string
		def  byte
		want uint64
		err  error
	}{
		{"0", 'B', 0, nil}, {"512", 'B', 512, nil}, {"512b", 'B', 512, nil}, {"64k", 'B', 64 * KiB, nil}, {"64K", 'B', 64 * KiB, nil},
		{"8M", 'B', 8 * MiB, nil}, {"3G", 'B', 3 * GiB, nil}, {"2T", 'B', 2 << 40, nil}, {"1P", 'B', 1 << 50, nil}, {"1E", 'B', EiB, nil},
		// Fractions: exact, rounded half up (QEMU tests/unit/test-cutils.c: 12.345M).
		{"1.5G", 'B', 3 * GiB / 2, nil}, {"12.345M", 'B', 12944671, nil}, {"1.k", 'B', KiB, nil}, {"1.", 'B', 1, nil},
		{"1.0", 'B', 1, nil}, {"0.5k", 'B', 512, nil}, {"15.5E", 'B', 31 * EiB / 2, nil}, {"1.5e", 'B', 3 * EiB / 2, nil},
		{"1.5", 'M', 3 * MiB / 2, nil}, {"56", 'M', 56 * MiB, nil}, {"56k", 'M', 56 * KiB, nil}, {"56b", 'M', 56, nil},
		// Hexadecimal: bytes only.
		{"0x1000", 'B', 4096, nil}, {"0x10B", 'B', 0x10b, nil}, {"0xffffffffffffffff", 'B', 1<<64 - 1, nil},
		{"0x10k", 'B', 0, ErrSyntax}, {"0x1.8", 'B', 0, ErrSyntax}, {"0x", 'B', 0, ErrSyntax}, {"0x10000000000000000", 'B', 0, ErrRange},
		// Limits.
		{"18446744073709551615", 'B', 1<<64 - 1, nil}, {"18446744073709551616", 'B', 0, ErrRange}, {"16E", 'B', 0, ErrRange},
		{"16383P", 'B', 16383 << 50, nil}, {"16384P", 'B', 0, ErrRange}, {"17592186044416M", 'B', 0, ErrRange},
		{"17592186044415.9999999M", 'B', 0, ErrRange}, {"15.99999999999999999E", 'B', 0, ErrRange},
		{"17592186044417", 'M', 0, ErrRange},
		// Refused forms.
		{"", 'B', 0, ErrSyntax}, {"k", 'B', 0, ErrSyntax}, {"-1", 'B', 0, ErrSyntax}, {"+1", 'B', 0, ErrSyntax}, {" 1", 'B', 0, ErrSyntax},
		{"1 ", 'B', 0, ErrSyntax}, {"1.5", 'B', 0, ErrSyntax}, {"1.5B", 'B', 0, ErrSyntax}, {"1.5e3M", 'B', 0, ErrSyntax},
		{"1e3", 'B', 0, ErrSyntax}, {"1kB", 'B', 0, ErrSyntax}, {"1x", 'B', 0, ErrSyntax}, {".5M", 'B', 0, ErrSyntax},
		{"1.-5M", 'B', 0, ErrSyntax}, {"1.5.5M", 'B', 0, ErrSyntax}, {"inf", 'B', 0, ErrSyntax}, {"1.e5M", 'B', 0, ErrSyntax},
	} {
		got, err := ParseSize(tc.in, tc.def)
		if !errors.Is(err, tc.err) || (tc.err == nil && got != tc.want) {
			t.Errorf("ParseSize(%q, %c) = %d, %v; want %d, %v", tc.in, tc.def, got, err, tc.want, tc.err)
		}
	}
}

func TestQuoteRoundTrip(t *testing.T) {
	for _, v := range []string{"", ",", ",,", "a,b", "a=b,c", "x,,,y,"} {
		o := mustParse(t, "-drive", "file="+Quote(v)+",format=raw", "")
		if got := o.String("file", "?"); got != v {
			t.Errorf("round trip of %q gave %q", v, got)
		}
	}
}

// SizeMiB follows QEMU 7.2's -m (checked by hand with qemu-system-x86_64:
// "-m 1.5" is refused, "-m 0x1A" is 26 bytes, "-m 17592186044416" overflows).
func TestSizeMiB(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		err  string
	}{
		{"56", 56 << 20, ""},
		{"0x10", 16 << 20, ""},
		{"0x1A", 26, ""},
		{"2G", 2 << 30, ""},
		{"1.5G", 3 << 29, ""},
		{"512k", 512 << 10, ""},
		{"17592186044415", (1<<44 - 1) << 20, ""},
		{"17592186044416", 0, "-m 17592186044416: value '17592186044416' is out of range for parameter 'size'"},
		{"1.5", 0, `-m 1.5: parameter 'size' expects a non-negative number below 2^64 with an optional suffix k, M, G, T, P or E, not "1.5"`},
		{"16E", 0, "-m 16E: value '16E' is out of range for parameter 'size'"},
	} {
		o := mustParse(t, "-m", tc.in, "size")
		got, err := o.SizeMiB("size", 0)
		if tc.err == "" && (err != nil || got != tc.want) || tc.err != "" && (err == nil || err.Error() != tc.err) {
			t.Errorf("-m %s = %d, %v; want %d, %q", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// TestBoolSpellings: every spelling QEMU's qapi_bool_parse takes, in a
// value and in the short forms, and nothing else.
func TestBoolSpellings(t *testing.T) {
	for v, want := range map[string]bool{"on": true, "yes": true, "true": true, "y": true,
		"off": false, "no": false, "false": false, "n": false} {
		o := mustParse(t, "-device", "d,b="+v, "driver")
		if got, err := o.Bool("b", !want); err != nil || got != want {
			t.Errorf("b=%s: %v, %v; want %v", v, got, err, want)
		}
	}
	o := mustParse(t, "-device", "d,b,nob2", "driver")
	if got, err := o.Bool("b", false); err != nil || !got {
		t.Errorf("short form b: %v, %v", got, err)
	}
	if got, err := o.Bool("b2", true); err != nil || got {
		t.Errorf("short form nob2: %v, %v", got, err)
	}
	for _, v := range []string{"", "On", "1", "0", "enabled"} {
		if _, ok := ParseBool(v); ok {
			t.Errorf("ParseBool(%q) accepted", v)
		}
	}
}

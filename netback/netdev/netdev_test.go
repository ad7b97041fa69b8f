package netdev

import (
	"strings"
	"testing"

	"godm/internal/qemuopts"
	"godm/netback/usernet"
)

func TestOpen(t *testing.T) {
	for arg, want := range map[string]string{
		"bridge,id=n0,br=xenbr0": "netdev type 'bridge' is not supported",
		"id=n0":                  "'type' is missing",
		"tap,id=n0,ifname=vif1.0-emu,br=xenbr0,script=/etc/xen/scripts/qemu-ifup,downscript=no": "godm runs no scripts",
		"user,id=n0,net=10.0.2.0/33": "net=",
		"user,id=n0,bogus=1":         "unknown parameter 'bogus'",
	} {
		o, err := Parse(arg)
		if err == nil {
			_, err = OpenWith(o, Defaults{User: usernet.Open})
		}
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "-netdev") {
			t.Errorf("%s: %v, want one line from -netdev with %q", arg, err, want)
		}
	}
	// A QMP netdev_add dictionary takes the same path.
	o, err := qemuopts.FromJSON("netdev_add", map[string]any{"type": "user", "id": "qmp0", "restrict": true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(o); err == nil || !strings.Contains(err.Error(), "user-mode networking is not available here") {
		t.Errorf("type=user without an opener: %v", err)
	}
	n, err := OpenWith(o, Defaults{User: usernet.Open})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if n.ID != "qmp0" || n.MaxLen() != 1518 {
		t.Fatalf("%+v", n)
	}
	if _, ok := n.Backend.(*usernet.User); !ok {
		t.Fatalf("type=user opened a %T", n.Backend)
	}
}

func TestDefaultsFromEnv(t *testing.T) {
	for v, want := range map[string]bool{"": false, "0": false, "off": false, "1": true, "on": true, "yes": true} {
		d, err := DefaultsFromEnv(func(k string) string {
			if k == AntiSpoofEnv {
				return v
			}
			return ""
		})
		if err != nil || d.AntiSpoof != want {
			t.Errorf("%s=%q: %+v %v, want %v", AntiSpoofEnv, v, d, err, want)
		}
	}
	_, err := DefaultsFromEnv(func(string) string { return "sometimes" })
	if err == nil || !strings.Contains(err.Error(), AntiSpoofEnv) || strings.Contains(err.Error(), "\n") {
		t.Errorf("bad value: %v, want one line naming %s", err, AntiSpoofEnv)
	}
}

// The host default applies to a tap without the key and yields to the
// netdev's own x-godm-antispoof.
func TestTapConfigDefaults(t *testing.T) {
	for _, c := range []struct {
		arg       string
		def, want bool
	}{
		{"", false, false},
		{"", true, true},
		{",x-godm-antispoof=off", true, false},
		{",x-godm-antispoof=on", false, true},
		{",x-godm-antispoof-ip=10.0.0.5", false, true},
	} {
		o, err := Parse("tap,id=n0,ifname=vif1.0-emu,script=no,downscript=no" + c.arg)
		if err != nil {
			t.Fatal(err)
		}
		tc, err := tapConfig(o, Defaults{AntiSpoof: c.def})
		if err != nil || tc.AntiSpoof != c.want {
			t.Errorf("%q default %v: antispoof %v %v, want %v", c.arg, c.def, tc.AntiSpoof, err, c.want)
		}
	}
}

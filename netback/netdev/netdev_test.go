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
			_, err = Open(o)
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
	n, err := Open(o)
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

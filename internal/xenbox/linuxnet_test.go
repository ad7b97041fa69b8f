package xenbox

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// linuxNetLines is a passing run's relayed lines for the NICs in
// LinuxNICs: the guest's OK lines and dom0's leases and CGI log.
func linuxNetLines(down, up string) []Line {
	var ls []Line
	add := func(s string) { ls = append(ls, Line{Text: "[linux-net] " + s}) }
	for i, n := range LinuxNICs {
		ip := "10.9.0.1" + string(rune('0'+i)) + "0" // 10.9.0.100, .110, .120
		add("linux: LINUX-NET OK " + n.Driver + " mac=" + n.MAC + " ip=" + ip + " ping=3/3 down=" + down + " up=" + up + " got=" + up)
		add("linux: LINUX-NET time " + n.Driver + " down=1.5s up=2.25s")
		add("ln-lease: " + strings.ToUpper(n.MAC) + " " + ip + " guest 00:59:50")
		add("ln-up: " + ip + " 131072 " + up)
	}
	add("linux: LINUX-NET nics=3")
	return ls
}

// A passing run parses whole and checks clean; every way a NIC can fail
// is reported for that NIC.
func TestParseLinuxNet(t *testing.T) {
	const down, up = "d0d0", "a1a1"
	lines := linuxNetLines(down, up)
	// Other scenarios' lines and cut-short ones are not the run's.
	lines = append(lines, Line{Text: "[linux-disk] linux: LINUX-NET OK e1000 mac=x ip=10.9.0.150 ping=0/3 down=a up=b got=c"},
		Line{Text: "[linux-net] linux: LINUX-NET OK e1000 mac=x ip=1"})
	r := ParseLinuxNet(lines, "linux-net")
	if bad := r.Check(down, up); len(bad) != 0 {
		t.Fatalf("a good run: %q", bad)
	}
	e := r.NICs["e1000"]
	if e == nil || e.IP != "10.9.0.110" || e.Lease != e.IP || e.Received != up || e.MAC != "00:16:3e:4e:00:02" || e.DownTime != "1.5s" || e.UpTime != "2.25s" {
		t.Fatalf("e1000: %+v", e)
	}
	// sub replaces old by new in the first line holding both at and old.
	sub := func(at, old, new string) func([]Line) []Line {
		return func(l []Line) []Line {
			for i := range l {
				if strings.Contains(l[i].Text, at) && strings.Contains(l[i].Text, old) {
					l[i].Text = strings.Replace(l[i].Text, old, new, 1)
					return l
				}
			}
			t.Fatalf("no line with %q and %q", at, old)
			return l
		}
	}
	for name, c := range map[string]struct {
		edit func([]Line) []Line
		want string
	}{
		"lost ping":            {sub("OK 8139cp", "ping=3/3", "ping=2/3"), "rtl8139: 2/3 ping replies"},
		"wrong data down":      {sub("OK e1000", "down="+down, "down=beef"), "e1000: downloaded data hashes to beef"},
		"dom0 got other data":  {sub("ln-up: 10.9.0.120", up, "beef"), "virtio-net-pci: uploaded"},
		"lease not dom0's":     {sub("ln-lease: 00:16:3E:4E:00:01", "10.9.0.100", "10.9.0.101"), "rtl8139: dom0's udhcpd leased \"10.9.0.101\""},
		"address off the pool": {sub("OK virtio_net", "ip=10.9.0.120", "ip=10.9.0.7"), "virtio-net-pci: lease \"10.9.0.7\" is not from udhcpd's pool"},
		"other MAC":            {sub("OK e1000", "mac=00:16:3e:4e:00:02", "mac=52:54:00:12:34:56"), "e1000: the guest's MAC is 52:54:00:12:34:56"},
		"NIC missing": {func(l []Line) []Line {
			l = sub("OK virtio_net", "OK virtio_net", "FAIL virtio_net")(l)
			return sub("nics=", "nics=3", "nics=2")(l)
		}, "virtio-net-pci (virtio_net): no OK line"},
	} {
		l := c.edit(slices.Clone(linuxNetLines(down, up)))
		bad := ParseLinuxNet(l, "linux-net").Check(down, up)
		found := false
		for _, b := range bad {
			found = found || strings.HasPrefix(b, c.want)
		}
		if !found {
			t.Errorf("%s: %q lacks %q", name, bad, c.want)
		}
	}
}

// The xl.cfg entries are the vif syntax libxl parses, and the scripts do
// each step the checks rely on.
func TestLinuxNetScripts(t *testing.T) {
	v := linuxNetVifs()
	for _, want := range []string{"vif = [ 'model=rtl8139,bridge=xenbr0,mac=00:16:3e:4e:00:01,type=ioemu',",
		"'model=e1000,bridge=xenbr0,mac=00:16:3e:4e:00:02,type=ioemu'", "'model=virtio-net-pci,bridge=xenbr0,mac=00:16:3e:4e:00:03,type=ioemu' ]"} {
		if !strings.Contains(v, want) {
			t.Errorf("vifs %q lack %q", v, want)
		}
	}
	sc := LinuxNetScenario(LinuxDisk{DataLBA: 2048})
	if sc.Name != "linux-net" {
		t.Errorf("scenario %q", sc.Name)
	}
	for _, want := range []string{"insmod /lib/modules/net/tun.ko", "insmod /lib/modules/net/xen-netback.ko",
		"brctl addbr xenbr0", "ip addr add 10.9.0.1/24 dev xenbr0", "udhcpd -f /tmp/udhcpd.conf", "httpd -f -p 80 -h $www",
		"interface xenbr0", "XENBOX-FACT brif=", v, "netreport\n", "dumpleases", `echo "$REMOTE_ADDR $CONTENT_LENGTH $s" >> /tmp/ln-up.log`} {
		if !strings.Contains(sc.Script, want) {
			t.Errorf("linux-net's dom0 script lacks %q", want)
		}
	}
	// The bridge and its services come before xl create.
	if strings.Index(sc.Script, "brctl addbr") > strings.Index(sc.Script, "xl create") {
		t.Error("the bridge is set up after xl create")
	}
	// linux-disk: the same guest and checks, no NIC and no dom0 network.
	d := LinuxDiskScenario(LinuxDisk{DataLBA: 2048})
	if d.Name != "linux-disk" || strings.Contains(d.Script, "vif =") || strings.Contains(d.Script, "brctl") {
		t.Errorf("linux-disk's script has the network:\n%s", d.Script)
	}
	g := LinuxTestScript(LinuxDisk{DataLBA: 2048})
	for _, want := range []string{"insmod /lib/modules/8139cp.ko", "insmod /lib/modules/e1000.ko", "insmod /lib/modules/virtio_net.ko",
		"S=10.9.0.1\n", "udhcpc -f -q -n", "ping -c 3 -W 10 $S", "http://$S/blob", "--post-file /tmp/w http://$S/cgi-bin/up",
		`echo "$N OK $drv mac=$mac ip=$ip ping=$p/3 down=$down up=$upsum got=$got"`, "exit $((disk | net))"} {
		if !strings.Contains(g, want) {
			t.Errorf("the guest's script lacks %q", want)
		}
	}
	// The network test runs after the disk test wrote /tmp/w.
	if strings.Index(g, "> /tmp/w") > strings.Index(g, "upsum=") {
		t.Error("the upload's sum is taken before /tmp/w is written")
	}
}

// The box's kernel package holds dom0's network modules and the guest's
// NIC drivers, in an order their dependencies allow (needs the box's
// assets).
func TestDom0NetFiles(t *testing.T) {
	dir := os.Getenv(EnvDir)
	if dir == "" {
		t.Skip(EnvDir + " unset: no kernel package to unpack")
	}
	a := Assets{Dir: dir}
	if a.KernelDeb() == "" {
		t.Skip("no kernel package in " + dir + "/debs")
	}
	tmp := t.TempDir()
	f, err := Dom0NetFiles(a, tmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range Dom0NetModules {
		if _, ok := f["lib/modules/net/"+filepath.Base(m)]; !ok {
			t.Errorf("no %s among dom0's files", m)
		}
	}
	if f["bin/bash"] != hostBash {
		t.Errorf("dom0's bash for the hotplug scripts: %q", f["bin/bash"])
	}
	b, err := os.ReadFile(f[strings.TrimPrefix(LinuxNetBlobPath, "/")])
	if err != nil || sum(b) != sum(LinuxPattern()) {
		t.Errorf("httpd's blob: %v", err)
	}
	if _, err := extractLinuxKernel(a.KernelDeb(), t.TempDir(), append(append([]string{}, LinuxModules...), LinuxNICModules...)); err != nil {
		t.Error(err)
	}
}

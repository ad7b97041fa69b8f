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
	if e == nil || e.IP != "10.9.0.110" || e.Lease != e.IP || e.Received != up || e.MAC != "00:16:3e:4e:00:02" {
		t.Fatalf("e1000: %+v", e)
	}
	for name, c := range map[string]struct {
		edit func([]Line) []Line
		want string
	}{
		"lost ping": {func(l []Line) []Line {
			l[0].Text = strings.Replace(l[0].Text, "ping=3/3", "ping=2/3", 1)
			return l
		}, "rtl8139: 2/3 ping replies"},
		"wrong data down": {func(l []Line) []Line {
			l[3].Text = strings.Replace(l[3].Text, "down="+down, "down=beef", 1)
			return l
		}, "e1000: downloaded data hashes to beef"},
		"dom0 got other data": {func(l []Line) []Line {
			l[8].Text = strings.Replace(l[8].Text, up, "beef", 1)
			return l
		}, "virtio-net-pci: uploaded"},
		"lease not dom0's": {func(l []Line) []Line {
			l[1].Text = strings.Replace(l[1].Text, "10.9.0.100", "10.9.0.101", 1)
			return l
		}, "rtl8139: dom0's udhcpd leased \"10.9.0.101\""},
		"address off the pool": {func(l []Line) []Line {
			l[6].Text = strings.Replace(l[6].Text, "ip=10.9.0.120", "ip=10.9.0.7", 1)
			return l
		}, "virtio-net-pci: lease \"10.9.0.7\" is not from udhcpd's pool"},
		"other MAC": {func(l []Line) []Line {
			l[3].Text = strings.Replace(l[3].Text, "mac=00:16:3e:4e:00:02", "mac=52:54:00:12:34:56", 1)
			return l
		}, "e1000: the guest's MAC is 52:54:00:12:34:56"},
		"NIC missing": {func(l []Line) []Line {
			l[6].Text = "[linux-net] linux: LINUX-NET FAIL virtio_net 00:16:3e:4e:00:03 no lease"
			l[len(l)-3].Text = "[linux-net] linux: LINUX-NET nics=2"
			return l
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

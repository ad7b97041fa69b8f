package xenbox

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// The linux-net scenario: the linux-disk guest (same kernel, disk and
// test) booted with three emulated NICs given the way an admin writes
// them in xl.cfg, vif = [ 'model=...,bridge=xenbr0,mac=...' ], so that
// libxl itself hands godm -device <model>,id=nicN,netdev=netN,mac= and
// -netdev type=tap,id=netN,ifname=vif<domid>.N-emu,br=xenbr0,script=no,
// downscript=no (XEN-FACTS §2), and godm's tap back-end creates each tap
// and puts it on dom0's bridge itself. In dom0 the bridge has LinuxNetServer
// and runs busybox's udhcpd and httpd; the guest, one NIC at a time, takes
// a DHCP lease, pings dom0, downloads a file and uploads one, and prints
// what it got on COM1 for the harness to check.
const (
	// LinuxNetBridge is dom0's bridge, named as Xen's scripts name it.
	LinuxNetBridge = "xenbr0"
	// LinuxNetServer is dom0's address on the bridge (a /24).
	LinuxNetServer = "10.9.0.1"
	// linuxNetPoolStart and linuxNetPoolEnd bound udhcpd's pool.
	linuxNetPoolStart = "10.9.0.100"
	linuxNetPoolEnd   = "10.9.0.199"
	// LinuxNetLine starts every line of the guest's network test.
	LinuxNetLine = "LINUX-NET"
	// LinuxNetBlobPath is the file dom0's httpd serves (LinuxPattern).
	LinuxNetBlobPath = "/xenbox/www/blob"
	// linuxNetModDir holds dom0's network modules.
	linuxNetModDir = "/lib/modules/net"
)

// LinuxNIC is one vif of the linux-net guest: libxl's model name, the MAC
// in the vif entry, and the name of the guest driver that binds it.
type LinuxNIC struct {
	Model, MAC, Driver string
}

// LinuxNICs are the linux-net guest's vifs, in vif order (devid 0, 1, 2):
// libxl's default model (godm's rtl8139 is an 8139C+, Linux's 8139cp
// drives it), the 82540EM, and virtio-net (libxl passes model= to the
// device model as it is, so the device's own name is what an admin
// writes).
var LinuxNICs = []LinuxNIC{
	{"rtl8139", "00:16:3e:4e:00:01", "8139cp"},
	{"e1000", "00:16:3e:4e:00:02", "e1000"},
	{"virtio-net-pci", "00:16:3e:4e:00:03", "virtio_net"},
}

// LinuxNICModules are the guest's drivers for LinuxNICs, after
// LinuxModules, in load order (each after its .modinfo "depends=").
var LinuxNICModules = []string{
	"kernel/drivers/net/mii.ko",
	"kernel/drivers/net/ethernet/realtek/8139cp.ko",
	"kernel/drivers/net/ethernet/intel/e1000/e1000.ko",
	"kernel/drivers/virtio/virtio_ring.ko",
	"kernel/drivers/virtio/virtio.ko",
	"kernel/drivers/virtio/virtio_pci_modern_dev.ko",
	"kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
	"kernel/drivers/virtio/virtio_pci.ko",
	"kernel/net/core/failover.ko",
	"kernel/drivers/net/net_failover.ko",
	"kernel/drivers/net/virtio_net.ko",
}

// Dom0NetModules are what dom0's kernel needs for the scenario, in load
// order: tun (godm's taps), the bridge, and xen-netback: for an HVM vif
// (nictype VIF_IOEMU) libxl also adds the PV vif, and waits for its
// back-end to reach InitWait (libxl_device.c), which without netback it
// never does. The guest has no netfront loaded, so the PV vif stays
// unconnected.
var Dom0NetModules = []string{
	"kernel/drivers/net/tun.ko",
	"kernel/net/llc/llc.ko",
	"kernel/net/802/stp.ko",
	"kernel/net/bridge/bridge.ko",
	"kernel/drivers/net/xen-netback/xen-netback.ko",
}

// hostBash is the shell Debian's Xen hotplug scripts name on their #!
// line.
const hostBash = "/bin/bash"

// Dom0NetFiles unpacks Dom0NetModules from the box's kernel package (the
// dom0 kernel's) into dir and writes the file httpd serves; it returns
// them as Dom0's extra files (archive path -> host path).
func Dom0NetFiles(a Assets, dir string) (map[string]string, error) {
	deb := a.KernelDeb()
	if deb == "" {
		return nil, fmt.Errorf("xenbox: no kernel package in %s/debs (run scripts/xenbox.sh)", a.Dir)
	}
	kdir := filepath.Join(dir, "dom0-net-modules")
	if err := os.MkdirAll(kdir, 0o755); err != nil {
		return nil, err
	}
	k, err := extractLinuxKernel(deb, kdir, Dom0NetModules)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for name, p := range k.Modules {
		out[strings.TrimPrefix(linuxNetModDir, "/")+"/"+name] = p
	}
	blob := filepath.Join(dir, "linux-net-blob")
	if err := os.WriteFile(blob, LinuxPattern(), 0o644); err != nil {
		return nil, err
	}
	out[strings.TrimPrefix(LinuxNetBlobPath, "/")] = blob
	// libxl runs Debian's vif-bridge for each vif (twice for an HVM
	// one: the PV vif, then the tap), and it is a bash script; the host
	// (bookworm too) lends its bash, Dom0 adds its libraries.
	if !fileExists(hostBash) {
		return nil, fmt.Errorf("xenbox: no %s on the host for dom0's hotplug scripts", hostBash)
	}
	out[strings.TrimPrefix(hostBash, "/")] = hostBash
	return out, nil
}

// linuxNetGuestScript is the network half of the guest's test (appended
// to LinuxTestScript, after the disk test made /tmp/w, LinuxWritePattern,
// the upload). With no NIC it prints "LINUX-NET nics=0". Each NIC in turn,
// alone up so that its lease and route are the only ones: udhcpc (a
// script of ours records the lease and sets the address), three pings of
// dom0, the blob by HTTP (its SHA-256), /tmp/w posted to dom0's CGI
// (which answers the SHA-256 of what it received), then the address
// flushed and the link down. One line per NIC:
//
//	LINUX-NET OK <driver> mac=<mac> ip=<lease> ping=<replies>/3 down=<sha256> up=<sha256> got=<dom0's sha256>
//
// or "LINUX-NET FAIL <driver> <mac> ..."; $net is 1 after a failure.
func linuxNetGuestScript() string {
	return fmt.Sprintf(`N=%s
S=%s
cat > /tmp/dhcp.sh <<'EOF'
#!/bin/sh
case "$1" in bound|renew)
	ip addr add "$ip/${mask:-24}" dev "$interface"
	echo "$ip" > /tmp/lease.$interface ;;
esac
exit 0
EOF
chmod +x /tmp/dhcp.sh
upsum=$(sha256sum < /tmp/w | cut -d' ' -f1)
ip link set lo up
net=0 nics=0
for d in /sys/class/net/eth*; do
	[ -e "$d" ] || continue
	i=$(basename $d)
	drv=$(basename "$(readlink $d/device/driver)")
	mac=$(cat $d/address)
	nics=$((nics+1))
	ip link set $i up
	udhcpc -f -q -n -t 10 -T 3 -i $i -s /tmp/dhcp.sh > /tmp/udhcpc.$i 2>&1
	ip=$(cat /tmp/lease.$i 2>/dev/null)
	if [ -z "$ip" ]; then
		echo "$N FAIL $drv $mac no lease"
		sed "s/^/$N udhcpc $i: /" /tmp/udhcpc.$i
		net=1
		ip link set $i down
		continue
	fi
	p=$(ping -c 3 -W 10 $S 2>&1 | grep -c 'bytes from')
	t0=$(cut -d' ' -f1 /proc/uptime)
	down=$(wget -q -T 60 -O - http://$S/blob | sha256sum | cut -d' ' -f1)
	t1=$(cut -d' ' -f1 /proc/uptime)
	got=$(wget -q -T 60 -O - --post-file /tmp/w http://$S/cgi-bin/up | tr -d '\r\n')
	t2=$(cut -d' ' -f1 /proc/uptime)
	echo "$N OK $drv mac=$mac ip=$ip ping=$p/3 down=$down up=$upsum got=$got"
	echo "$N time $drv down=$(awk "BEGIN{print $t1-$t0}")s up=$(awk "BEGIN{print $t2-$t1}")s"
	cat /sys/class/net/$i/statistics/rx_packets /sys/class/net/$i/statistics/tx_packets | tr '\n' ' ' | sed "s/^/$N stats $drv rx,tx packets: /"; echo
	ip addr flush dev $i
	ip link set $i down
done
echo "$N nics=$nics"
`, LinuxNetLine, LinuxNetServer)
}

// linuxNetVifs is the xl.cfg vif list for LinuxNICs.
func linuxNetVifs() string {
	var e []string
	for _, n := range LinuxNICs {
		e = append(e, fmt.Sprintf("'model=%s,bridge=%s,mac=%s,type=ioemu'", n.Model, LinuxNetBridge, n.MAC))
	}
	return "vif = [ " + strings.Join(e, ",\n  ") + " ]\n"
}

// linuxNetDom0Setup is dom0's side, run before xl create: the modules,
// the bridge with LinuxNetServer (libxl's hotplug script, Debian's
// vif-bridge, adds the PV vif to it and finds godm's tap already there:
// godm put it there itself, br= being part of what is under test), udhcpd on it, httpd serving the blob
// and the upload CGI, which logs "<client> <length> <sha256>" to
// /tmp/ln-up.log and answers the SHA-256; it defines netreport (it
// overrides the scenario's empty one).
func linuxNetDom0Setup() string {
	var b strings.Builder
	for _, m := range Dom0NetModules {
		n := filepath.Base(m)
		fmt.Fprintf(&b, "insmod %s/%s || fail \"insmod %s\"\n", linuxNetModDir, n, n)
	}
	fmt.Fprintf(&b, `brctl addbr %[1]s || fail "brctl addbr %[1]s"
ip addr add %[2]s/24 dev %[1]s || fail "no address on %[1]s"
ip link set %[1]s up || fail "%[1]s down"
cat > /tmp/udhcpd.conf <<'EOF'
start %[3]s
end %[4]s
interface %[1]s
lease_file /tmp/udhcpd.leases
option subnet 255.255.255.0
EOF
: > /tmp/udhcpd.leases
udhcpd -f /tmp/udhcpd.conf > /tmp/udhcpd.log 2>&1 &
dhcpd=$!
www=$(dirname %[5]s)
mkdir -p $www/cgi-bin
cat > $www/cgi-bin/up <<'EOF'
#!/bin/sh
s=$(head -c "$CONTENT_LENGTH" | sha256sum | cut -d' ' -f1)
echo "$REMOTE_ADDR $CONTENT_LENGTH $s" >> /tmp/ln-up.log
printf 'Content-Type: text/plain\r\n\r\n%%s\n' "$s"
EOF
chmod 755 $www/cgi-bin/up
: > /tmp/ln-up.log
httpd -f -p 80 -h $www > /tmp/httpd.log 2>&1 &
httpd=$!
# netreport: after the guest's power-off (or a failure), udhcpd's leases
# ("ln-lease: <mac> <ip> ..."), the CGI's log ("ln-up: ..."), udhcpd's
# log; udhcpd and httpd stop.
netreport() {
	kill -USR1 $dhcpd; sleep 1
	dumpleases -f /tmp/udhcpd.leases | tail -n +2 | sed 's/^/ln-lease: /'
	sed 's/^/ln-up: /' /tmp/ln-up.log
	kill $dhcpd $httpd
	sed 's/^/ln-udhcpd: /' /tmp/udhcpd.log
	sed 's/^/ln-httpd: /' /tmp/httpd.log
	[ -f /var/log/xen/xen-hotplug.log ] && sed 's/^/ln-hotplug: /' /var/log/xen/xen-hotplug.log
}
`, LinuxNetBridge, LinuxNetServer, linuxNetPoolStart, linuxNetPoolEnd, LinuxNetBlobPath)
	return b.String()
}

// NetResult is what the guest and dom0 said about one NIC.
type NetResult struct {
	Driver, MAC, IP, Ping, Down, Up, Got string
	// DownTime and UpTime are the guest's wall-clock times of the two
	// HTTP transfers (its "LINUX-NET time" line), for the log.
	DownTime, UpTime string
	// Lease is the address dom0's udhcpd leased to MAC; Received the
	// SHA-256 its CGI computed of what came from IP.
	Lease, Received string
}

// LinuxNetRun is a linux-net run's network lines.
type LinuxNetRun struct {
	NICs  map[string]*NetResult // by driver
	Count string                // the guest's nics=
	Fails []string              // the guest's FAIL lines
}

// ParseLinuxNet reads scenario scen's relayed lines: the guest's
// LINUX-NET lines (through "linux: ") and dom0's ln-lease and ln-up.
func ParseLinuxNet(lines []Line, scen string) LinuxNetRun {
	r := LinuxNetRun{NICs: map[string]*NetResult{}}
	p := "[" + scen + "] "
	leases := map[string]string{} // mac -> ip
	recv := map[string]string{}   // ip -> sha256
	times := map[string][2]string{}
	for _, l := range lines {
		s, ok := strings.CutPrefix(strings.TrimRight(l.Text, "\r\n"), p)
		if !ok {
			continue
		}
		switch {
		case strings.HasPrefix(s, "linux: "+LinuxNetLine+" "):
			g := strings.TrimPrefix(s, "linux: "+LinuxNetLine+" ")
			f := strings.Fields(g)
			switch {
			case len(f) == 1 && strings.HasPrefix(f[0], "nics="):
				r.Count = strings.TrimPrefix(f[0], "nics=")
			case len(f) == 4 && f[0] == "time":
				times[f[1]] = [2]string{strings.TrimPrefix(f[2], "down="), strings.TrimPrefix(f[3], "up=")}
			case len(f) > 0 && f[0] == "FAIL":
				r.Fails = append(r.Fails, g)
			case len(f) == 8 && f[0] == "OK":
				n := &NetResult{Driver: f[1]}
				for _, kv := range f[2:] {
					k, v, _ := strings.Cut(kv, "=")
					switch k {
					case "mac":
						n.MAC = v
					case "ip":
						n.IP = v
					case "ping":
						n.Ping = v
					case "down":
						n.Down = v
					case "up":
						n.Up = v
					case "got":
						n.Got = v
					}
				}
				r.NICs[n.Driver] = n
			}
		case strings.HasPrefix(s, "ln-lease: "):
			if f := strings.Fields(strings.TrimPrefix(s, "ln-lease: ")); len(f) >= 2 {
				leases[strings.ToLower(f[0])] = f[1]
			}
		case strings.HasPrefix(s, "ln-up: "):
			if f := strings.Fields(strings.TrimPrefix(s, "ln-up: ")); len(f) == 3 {
				recv[f[0]] = f[2]
			}
		}
	}
	for _, n := range r.NICs {
		n.Lease = leases[strings.ToLower(n.MAC)]
		n.Received = recv[n.IP]
		n.DownTime, n.UpTime = times[n.Driver][0], times[n.Driver][1]
	}
	return r
}

// Check says what is wrong with the run for the NICs in LinuxNICs: each
// NIC's driver bound with the configured MAC, a lease from the pool that
// dom0 also lists for the MAC, three ping replies, the blob's sum
// (downSum) downloaded, the upload's sum (upSum) sent and received by
// dom0 and answered back.
func (r LinuxNetRun) Check(downSum, upSum string) []string {
	var bad []string
	bad = append(bad, r.Fails...)
	if r.Count != fmt.Sprint(len(LinuxNICs)) {
		bad = append(bad, fmt.Sprintf("the guest saw %q NICs, want %d", r.Count, len(LinuxNICs)))
	}
	lo, hi := netip.MustParseAddr(linuxNetPoolStart), netip.MustParseAddr(linuxNetPoolEnd)
	for _, want := range LinuxNICs {
		n, ok := r.NICs[want.Driver]
		if !ok {
			bad = append(bad, fmt.Sprintf("%s (%s): no OK line from the guest", want.Model, want.Driver))
			continue
		}
		e := func(f string, a ...any) { bad = append(bad, want.Model+": "+fmt.Sprintf(f, a...)) }
		if !strings.EqualFold(n.MAC, want.MAC) {
			e("the guest's MAC is %s, xl.cfg says %s", n.MAC, want.MAC)
		}
		if a, err := netip.ParseAddr(n.IP); err != nil || a.Less(lo) || hi.Less(a) {
			e("lease %q is not from udhcpd's pool %s-%s", n.IP, linuxNetPoolStart, linuxNetPoolEnd)
		}
		if n.Lease != n.IP {
			e("dom0's udhcpd leased %q to %s, the guest has %q", n.Lease, want.MAC, n.IP)
		}
		if n.Ping != "3/3" {
			e("%s ping replies from %s", n.Ping, LinuxNetServer)
		}
		if n.Down != downSum {
			e("downloaded data hashes to %s, dom0 served %s", n.Down, downSum)
		}
		if n.Up != upSum || n.Received != upSum || n.Got != upSum {
			e("uploaded %s (want %s): dom0 received %q, answered %q", n.Up, upSum, n.Received, n.Got)
		}
	}
	return bad
}

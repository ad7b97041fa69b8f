package e2e

import (
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"godm/devices/e1000"
	"godm/devices/virtionet"
	"godm/internal/board"
	"godm/internal/guest"
	"godm/internal/qemuopts"
	"godm/netback"
	"godm/netback/antispoof"
	"godm/netback/netdev"
	"godm/netback/usernet"
	"godm/pci"
)

// TestGuestRTL8139: Linux's own 8139cp driver (Debian's module; the
// device is an 8139C+, which 8139too leaves to 8139cp) brings up eth0 on
// godm's rtl8139 through x-pci-proxy-dev (memory BAR: the proxy forwards
// no I/O BAR), gets a lease from godm's user-mode network with busybox
// udhcpc, and fetches a page from an HTTP server on the host's loopback
// through the gateway address (10.0.2.2 is the host's 127.0.0.1). Every
// register access crosses xensim and the ioreq server; every frame goes
// through the device's descriptor rings in guest RAM and its INTx.
func TestGuestRTL8139(t *testing.T) {
	nicModules(t)
	guestFetch(t, "rtl8139", "8139cp")
}

// TestGuestE1000: the same with Linux's own e1000 driver (Debian's
// module) on godm's e1000: EEPROM checksum and MAC, PHY and
// autonegotiation, the link interrupt, DHCP and HTTP fetches through its
// rings, the larger page's MD5 compared.
func TestGuestE1000(t *testing.T) {
	nicModules(t, "e1000.ko")
	guestFetch(t, "e1000", "e1000")
}

// virtioNetModules are Debian's modules virtio_net needs, in load order
// (the virtio core and PCI transport, then failover and net_failover).
var virtioNetModules = []string{"virtio_ring.ko", "virtio.ko", "virtio_pci_legacy_dev.ko", "virtio_pci_modern_dev.ko",
	"virtio_pci.ko", "failover.ko", "net_failover.ko", "virtio_net.ko"}

// TestGuestVirtioNet: the same with Linux's virtio_pci (modern, MSI-X)
// and virtio_net on godm's virtio-net-pci: feature negotiation with
// mergeable receive buffers, DHCP, the fetches and the upload through
// its virtqueues.
func TestGuestVirtioNet(t *testing.T) {
	nicModules(t, virtioNetModules...)
	guestFetch(t, board.VirtioNetDriver, "virtio-pci")
}

// TestGuestVirtioNetOnTap: the same over libxl's tap form.
func TestGuestVirtioNetOnTap(t *testing.T) {
	nicModules(t, virtioNetModules...)
	tapFetch(t, board.VirtioNetDriver)
}

// TestGuestVirtioNetOnTapOffloads: libxl's tap with vnet_hdr=on: the
// device offers checksum and TSO offloads, Linux's virtio_net takes them,
// and a 230 KB upload leaves the guest in TSO frames the tap segments.
func TestGuestVirtioNetOnTapOffloads(t *testing.T) {
	nicModules(t, virtioNetModules...)
	const body = "hello over a tap with virtio-net headers"
	onBridge(t, body, func(port int) {
		o, err := netdev.Parse("type=tap,id=net0,ifname=vif1.0-emu,br=xenbr0,script=no,downscript=no,vnet_hdr=on")
		if err != nil {
			t.Error(err)
			return
		}
		nd, err := netdev.Open(o)
		if err != nil {
			t.Error(err)
			return
		}
		defer nd.Close()
		con, dev := runModelGuest(t, board.VirtioNetDriver, nd, fmt.Sprintf(`
ip link set eth0 up
ip addr add 10.77.0.2/24 dev eth0
echo "GOT $(wget -q -O - http://10.77.0.1:%d/ 2>&1)"
seq 1 40000 > /up
echo "UP $(timeout 60 wget -q -O - --post-file /up http://10.77.0.1:%d/ 2>&1)"
`, port, port))
		var up strings.Builder
		for i := 1; i <= 40000; i++ {
			fmt.Fprintf(&up, "%d\n", i)
		}
		if !strings.Contains(con, "GOT "+body) || !strings.Contains(con, fmt.Sprintf("UP %s %x", body, md5.Sum([]byte(up.String())))) {
			t.Errorf("console lacks the page or the upload's answer:\n%s", con)
		}
		st := dev.(*virtionet.Device).Stats()
		t.Logf("virtio-net on a vnet_hdr tap: %d frames sent (%d TSO), %d received (%d GSO), %d dropped",
			st.TxFrames.Load(), st.TxGSO.Load(), st.RxFrames.Load(), st.RxGSO.Load(), st.RxDropped.Load())
		if st.TxGSO.Load() == 0 {
			t.Error("the upload used no TSO")
		}
		ts := nd.Stats()
		t.Logf("tap: %d frames out, %d dropped, %d bad; %d in", ts.TxFrames.Load(), ts.TxDropped.Load(), ts.Bad.Load(), ts.RxFrames.Load())
		if ts.Bad.Load() != 0 || ts.TxDropped.Load() != 0 {
			t.Errorf("the tap refused %d frames, dropped %d", ts.Bad.Load(), ts.TxDropped.Load())
		}
	})
}

// guestFetch runs the DHCP-and-fetch guest on model, whose Linux driver
// is driver.
func guestFetch(t *testing.T, model, driver string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	body := "hello from the host's loopback through godm's " + model
	// A page of some size, so that it takes many frames and the rings
	// wrap; its MD5 is compared.
	page := []byte(strings.Repeat(body+"\n", 4000))
	sum := fmt.Sprintf("%x", md5.Sum(page))
	// The guest uploads the numbers 1..40000, one a line (~230 KB: its
	// driver's TSO and checksum offloads at work); the server answers the
	// MD5 of what arrived.
	var up strings.Builder
	for i := 1; i <= 40000; i++ {
		fmt.Fprintf(&up, "%d\n", i)
	}
	upSum := fmt.Sprintf("%x", md5.Sum([]byte(up.String())))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Write(page)
		case "/up":
			h := md5.New()
			io.Copy(h, r.Body)
			fmt.Fprintf(w, "%x", h.Sum(nil))
		default:
			fmt.Fprint(w, body)
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()
	o, err := qemuopts.Parse("-netdev", "user,id=net0", "type")
	if err != nil {
		t.Fatal(err)
	}
	uc, err := usernet.Parse(o)
	if err != nil {
		t.Fatal(err)
	}
	u, err := usernet.New(uc)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	con, dev := runModelGuest(t, model, u, fmt.Sprintf(`
d=/sys/bus/pci/devices/0000:00:06.0
echo "DRIVER $(basename $(readlink $d/driver))"
echo "MAC $(cat /sys/class/net/eth0/address)"
[ -f /sys/class/net/eth0/device/features ] && echo "VIRTIO-FEATURES $(cat /sys/class/net/eth0/device/features)"
cat > /dhcp.sh <<'EOF'
#!/bin/sh
[ "$1" = bound ] || exit 0
ip addr add $ip/$mask dev $interface
ip route add default via $router
echo "LEASE $ip via $router"
EOF
chmod +x /dhcp.sh
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -n -q -t 10 -T 2 -s /dhcp.sh || echo DHCP-FAILED
echo "GOT $(wget -q -O - http://10.0.2.2:%d/ 2>&1)"
wget -q -O /big http://10.0.2.2:%d/big
echo "MD5 $(md5sum /big)"
seq 1 40000 > /up
echo "UP $(wget -q -O - --post-file /up http://10.0.2.2:%d/up 2>&1)"
grep -E 'eth0|virtio' /proc/interrupts
`, port, port, port))
	for _, want := range []string{"DRIVER " + driver, "MAC 00:16:3e:5a:00:01", "LEASE 10.0.2.15 via 10.0.2.2", "GOT " + body,
		"MD5 " + sum, "UP " + upSum} {
		if !strings.Contains(con, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	if d, ok := dev.(*e1000.Device); ok {
		// Linux's e1000 segments with TSO (NETIF_F_TSO on 82544 and later).
		st := d.Stats()
		t.Logf("e1000: %d frames sent, %d of them TSO segments, %d received", st.TxFrames.Load(), st.TxSegments.Load(), st.RxFrames.Load())
		if st.TxSegments.Load() == 0 {
			t.Error("the upload used no TSO")
		}
	}
	if d, ok := dev.(*virtionet.Device); ok {
		// The driver's features, bit 0 first (virtio's sysfs
		// attribute): VERSION_1 (32) and mergeable buffers (15).
		st := d.Stats()
		var feat string
		for _, l := range strings.Split(con, "\n") {
			if f, ok := strings.CutPrefix(strings.TrimSpace(l), "VIRTIO-FEATURES "); ok {
				feat = f
			}
		}
		t.Logf("virtio-net: features %s, %d frames sent, %d received, %d filtered, %d control commands", feat,
			st.TxFrames.Load(), st.RxFrames.Load(), st.RxFiltered.Load(), st.CtrlCommands.Load())
		// Linux's virtnet_set_rx_mode: promiscuous off, allmulti, the
		// MAC table, through the control queue.
		if st.CtrlCommands.Load() < 3 {
			t.Errorf("virtio-net: %d control commands", st.CtrlCommands.Load())
		}
		if len(feat) <= 32 || feat[15] != '1' || feat[32] != '1' {
			t.Errorf("virtio-net: VERSION_1 and mergeable buffers not both negotiated: %q", feat)
		}
		// Per-queue MSI-X vectors (virtio_pci's names for them).
		if !strings.Contains(con, "virtio0-input.0") || !strings.Contains(con, "virtio0-output.0") {
			t.Error("virtio-net: no per-queue MSI-X vectors in /proc/interrupts")
		}
		if st.GuestErrors.Load() != 0 || st.RxDropped.Load() != 0 {
			t.Errorf("virtio-net: %d guest errors, %d frames dropped", st.GuestErrors.Load(), st.RxDropped.Load())
		}
	}
	if t.Failed() {
		t.Logf("console:\n%s", con)
		return
	}
	for _, l := range strings.Split(con, "\n") {
		if strings.Contains(l, "eth0") || strings.Contains(l, "virtio") || strings.HasPrefix(l, "LEASE") || strings.HasPrefix(l, "GOT") || strings.HasPrefix(l, "MD5") || strings.HasPrefix(l, "UP") {
			t.Log(strings.TrimSpace(l))
		}
	}
}

// nicModules reads the guest's NIC driver modules (the rtl8139's when
// none are named), skipping the test without them.
func nicModules(t *testing.T, kos ...string) map[string][]byte {
	t.Helper()
	dir := os.Getenv("GODM_GUEST_DIR")
	files := map[string][]byte{}
	if len(kos) == 0 {
		kos = []string{"mii.ko", "8139cp.ko"}
	}
	for _, ko := range kos {
		b, err := os.ReadFile(filepath.Join(dir, ko))
		if err != nil {
			t.Skipf("real-guest NIC test needs Debian's %s, which scripts/guest-assets.sh extracts: %v", ko, err)
		}
		files[ko] = b
	}
	return files
}

// runNICGuest runs script in a guest whose only device is an rtl8139 on
// be, at 00:06.0, and returns the console.
func runNICGuest(t *testing.T, be netback.Backend, script string) string {
	con, _ := runModelGuest(t, "rtl8139", be, script)
	return con
}

// guestNIC is an emulated NIC model the real-guest tests run.
type guestNIC interface {
	Function() *pci.Device
	Reset()
	Close() error
}

// runModelGuest runs script in a guest whose only device is the NIC
// model (rtl8139 with Debian's 8139cp, e1000 with its e1000) on be, at
// 00:06.0, and returns the console and the (closed) device, whose
// counters stay readable.
func runModelGuest(t *testing.T, model string, be netback.Backend, script string) (string, guestNIC) {
	t.Helper()
	a, _ := guestAssets(t)
	files := nicModules(t)
	load := "insmod /mii.ko || exit 2\ninsmod /8139cp.ko || exit 3\n"
	driver := board.NICDriver
	props := map[string]string{"id": "nic", "netdev": "net0", "mac": net.HardwareAddr(nicMAC[:]).String(), "addr": "06.0"}
	switch model {
	case "e1000":
		files = nicModules(t, "e1000.ko")
		load = "insmod /e1000.ko || exit 2\n"
		driver = board.E1000Driver
	case board.VirtioNetDriver:
		files = nicModules(t, virtioNetModules...)
		var l strings.Builder
		for i, ko := range virtioNetModules {
			fmt.Fprintf(&l, "insmod /%s || exit %d\n", ko, 10+i)
		}
		load = l.String()
		driver = board.VirtioNetDriver
		props["x-godm-bar32"] = "on" // the proxy forwards 32-bit BARs
	}
	// Plugged through the board's driver table, as -device
	// MODEL,netdev=net0,mac=... is.
	m := newMachine(t, Config{
		Netdevs: map[string]netback.Backend{"net0": be},
		Devices: []board.Entry{{Driver: driver, Props: props}},
	})
	pl := m.M.Board.Device("nic")
	if pl == nil {
		t.Fatal("the NIC is not on the board")
	}
	var dev guestNIC = pl.Dev.(*board.NIC).NICModel
	// The NIC lets go of be before the caller closes it.
	defer func() {
		if err := m.M.Board.Unplug("nic"); err != nil {
			t.Error(err)
		}
	}()
	px, err := m.ProxyDevice("nic")
	if err != nil {
		t.Fatal(err)
	}
	res, err := m.Run(context.Background(), guest.Config{
		Assets:  a,
		Script:  load + script,
		Files:   files,
		Proxies: []guest.Proxy{px},
		Timeout: 180 * time.Second,
		WorkDir: t.TempDir(),
	})
	if err != nil {
		t.Fatalf("guest: %v\nconsole:\n%s", err, res.Console)
	}
	for _, e := range m.Errors() {
		t.Errorf("data path: %v", e)
	}
	return res.Console, dev
}

// TestGuestRTL8139OnTap: the same driver on the back-end exactly as libxl
// writes it (-netdev type=tap,id=net0,ifname=vif1.0-emu,br=xenbr0,
// script=no,downscript=no): godm creates the tap and attaches it to the
// bridge; the guest, with a static address, fetches a page from a server
// on the bridge's address. All of it in a network namespace the test
// makes (skipped, saying why, where it cannot).
func TestGuestRTL8139OnTap(t *testing.T) { tapFetch(t, "rtl8139") }

// TestGuestE1000OnTap: the same over Linux's e1000 on godm's e1000.
func TestGuestE1000OnTap(t *testing.T) {
	nicModules(t, "e1000.ko")
	tapFetch(t, "e1000")
}

func tapFetch(t *testing.T, model string) {
	const body = "hello over libxl's tap"
	onBridge(t, body, func(port int) {
		o, err := netdev.Parse("type=tap,id=net0,ifname=vif1.0-emu,br=xenbr0,script=no,downscript=no")
		if err != nil {
			t.Error(err)
			return
		}
		nd, err := netdev.Open(o)
		if err != nil {
			t.Error(err)
			return
		}
		defer nd.Close()
		con, _ := runModelGuest(t, model, nd, fmt.Sprintf(`
ip link set eth0 up
ip addr add 10.77.0.2/24 dev eth0
echo "GOT $(wget -q -O - http://10.77.0.1:%d/ 2>&1)"
`, port))
		if !strings.Contains(con, "GOT "+body) {
			t.Errorf("console lacks the page:\n%s", con)
		}
		if st := nd.Stats(); st.TxFrames.Load() == 0 || st.RxFrames.Load() == 0 {
			t.Errorf("tap tx %d rx %d", st.TxFrames.Load(), st.RxFrames.Load())
		}
	})
}

// TestGuestRTL8139AntiSpoof: the tap with godm's anti-spoofing filter
// (x-godm-antispoof-ip=10.77.0.2, the NIC's MAC bound as the board binds
// mac=): the guest fetches the page with its own address; once it takes
// another IP address, and then another MAC, its traffic stops and the
// filter counts the drops.
func TestGuestRTL8139AntiSpoof(t *testing.T) {
	const body = "hello from behind the filter"
	onBridge(t, body, func(port int) {
		if err := antispoof.Supported(); err != nil {
			t.Skipf("the kernel refuses a BPF classifier: %v", err)
			return
		}
		o, err := netdev.Parse("type=tap,id=net0,ifname=vif1.0-emu,br=xenbr0,script=no,downscript=no,x-godm-antispoof-ip=10.77.0.2")
		if err != nil {
			t.Error(err)
			return
		}
		nd, err := netdev.Open(o)
		if err != nil {
			t.Error(err)
			return
		}
		defer nd.Close()
		f := nd.AntiSpoof()
		if f == nil {
			t.Error("no filter")
			return
		}
		if err := f.Bind(nicMAC); err != nil {
			t.Error(err)
			return
		}
		con := runNICGuest(t, nd, fmt.Sprintf(`
URL=http://10.77.0.1:%d/
ip link set eth0 up
ip addr add 10.77.0.2/24 dev eth0
echo "OWN $(timeout 8 wget -q -O - $URL 2>&1)"
ip addr flush dev eth0
ip addr add 10.77.0.9/24 dev eth0
echo "IP $(timeout 8 wget -q -O - $URL 2>&1)"
ip addr flush dev eth0
ip link set eth0 down
ip link set eth0 address 00:16:3e:5a:00:99
ip link set eth0 up
ip addr add 10.77.0.2/24 dev eth0
echo "MAC $(timeout 8 wget -q -O - $URL 2>&1)"
`, port))
		if !strings.Contains(con, "OWN "+body) {
			t.Errorf("the guest's own address got no page:\n%s", con)
		}
		for _, p := range []string{"IP ", "MAC "} {
			if strings.Contains(con, p+body) {
				t.Errorf("a spoofed %s got the page:\n%s", p, con)
			}
		}
		c, err := f.Counters()
		if err != nil {
			t.Error(err)
			return
		}
		if c[antispoof.BadARP]+c[antispoof.BadIPv4] == 0 || c[antispoof.BadMAC] == 0 || c[antispoof.Passed] == 0 {
			t.Errorf("counters %v: want drops for the foreign IP and MAC", c)
		}
		t.Logf("filter counters: %v", c)
	})
}

// nicMAC is the MAC runNICGuest gives its rtl8139.
var nicMAC = [6]byte{0x00, 0x16, 0x3e, 0x5a, 0x00, 0x01}

// onBridge runs fn in a network namespace the test makes, with a bridge
// xenbr0 at 10.77.0.1/24 and an HTTP server there answering body on
// port (skipped, saying why, where the namespace cannot be made).
func onBridge(t *testing.T, body string, fn func(port int)) {
	nicModules(t)
	guestAssets(t)
	ran := false
	var skip string
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with its namespace
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			skip = "cannot make a network namespace (unshare CLONE_NEWNET): " + err.Error()
			return
		}
		if fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0); err != nil {
			skip = "no /dev/net/tun: " + err.Error()
			return
		} else {
			unix.Close(fd)
		}
		lo, _ := netlink.LinkByName("lo")
		netlink.LinkSetUp(lo)
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "xenbr0"}}
		if err := netlink.LinkAdd(br); err != nil {
			t.Errorf("add bridge: %v", err)
			return
		}
		addr, _ := netlink.ParseAddr("10.77.0.1/24")
		if err := netlink.AddrAdd(br, addr); err != nil {
			t.Errorf("address: %v", err)
			return
		}
		netlink.LinkSetUp(br)
		ln, err := net.Listen("tcp", "10.77.0.1:0")
		if err != nil {
			t.Errorf("listen: %v", err)
			return
		}
		// A POST is read to its end and answered with the MD5 of what
		// arrived after the body.
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := md5.New()
			io.Copy(h, r.Body)
			if r.Method == http.MethodPost {
				fmt.Fprintf(w, "%s %x", body, h.Sum(nil))
				return
			}
			fmt.Fprint(w, body)
		})}
		go srv.Serve(ln)
		defer srv.Close()
		ran = true
		fn(ln.Addr().(*net.TCPAddr).Port)
	}()
	<-done
	if skip != "" {
		t.Skip(skip)
	}
	if !ran && !t.Failed() {
		t.Fatal("the namespace part did not run")
	}
}

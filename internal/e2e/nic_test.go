package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"godm/devices/rtl8139"
	"godm/internal/guest"
	"godm/internal/qemuopts"
	"godm/netback/usernet"
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
	a, _ := guestAssets(t)
	dir := os.Getenv("GODM_GUEST_DIR")
	files := map[string][]byte{}
	for _, ko := range []string{"mii.ko", "8139cp.ko"} {
		b, err := os.ReadFile(filepath.Join(dir, ko))
		if err != nil {
			t.Skipf("real-guest NIC test needs Debian's %s, which scripts/guest-assets.sh extracts: %v", ko, err)
		}
		files[ko] = b
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const body = "hello from the host's loopback through godm's rtl8139"
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, body)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port

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

	m := newMachine(t, Config{})
	mac := [6]byte{0x00, 0x16, 0x3e, 0x5a, 0x00, 0x01}
	dev, err := rtl8139.New(rtl8139.Config{MAC: mac, Memory: m.Memory, Backend: u})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if _, err := m.PCI.Add(dev.Function(), 6, 0); err != nil {
		t.Fatal(err)
	}
	px, err := m.Proxy(dev.Function(), "6.0", dev)
	if err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`
insmod /mii.ko || exit 2
insmod /8139cp.ko || exit 3
d=/sys/bus/pci/devices/0000:00:06.0
echo "DRIVER $(basename $(readlink $d/driver))"
echo "MAC $(cat /sys/class/net/eth0/address)"
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
grep eth0 /proc/interrupts
`, port)
	res, err := m.Run(context.Background(), guest.Config{
		Assets:  a,
		Script:  script,
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
	con := res.Console
	for _, want := range []string{"DRIVER 8139cp", "MAC 00:16:3e:5a:00:01", "LEASE 10.0.2.15 via 10.0.2.2", "GOT " + body} {
		if !strings.Contains(con, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("console:\n%s", con)
	} else {
		for _, l := range strings.Split(con, "\n") {
			if strings.Contains(l, "eth0") || strings.HasPrefix(l, "LEASE") || strings.HasPrefix(l, "GOT") {
				t.Log(strings.TrimSpace(l))
			}
		}
	}
	st := dev.Stats()
	t.Logf("device: rx %d tx %d missed %d dropped %d dma errors %d", st.RxFrames.Load(), st.TxFrames.Load(),
		st.RxMissed.Load(), st.TxDropped.Load(), st.DMAErrors.Load())
}

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"godm/devices/testdev"
	"godm/hyp/xenabi"
	"godm/hyp/xensim"
	"godm/internal/guest"
)

func guestAssets(t *testing.T) (guest.Assets, []byte) {
	t.Helper()
	dir := os.Getenv("GODM_GUEST_DIR")
	a, err := guest.FindAssets(dir)
	if err != nil {
		t.Skipf("real-guest test needs the guest assets that scripts/test.sh prepares: %v", err)
	}
	ko, err := os.ReadFile(filepath.Join(dir, "godmtest.ko"))
	if err != nil {
		t.Skipf("real-guest test needs the godmtest driver that scripts/guest-assets.sh builds: %v", err)
	}
	return a, ko
}

// TestGuestDMAAndMSIX: Linux's driver for the godm test device maps its
// BARs (the script also drives the I/O BAR through /dev/port), enables MSI-X and bus mastering, and asks for a DMA fill; godm
// writes guest memory through its map cache over foreign mappings and
// raises MSI-X vector 0 through XEN_DMOP_inject_msi; the guest's handler
// runs and the data is there. Every access crosses xensim and the ioreq
// server. The guest then powers off: godm asks Xen to shut the domain
// down, the toolstack destroys it, and nothing of godm's is left.
func TestGuestDMAAndMSIX(t *testing.T) {
	a, ko := guestAssets(t)
	before := goroutines()
	var cfg Config
	withTestDev(&cfg)
	m := newMachine(t, cfg)
	dev := m.Device(testDevID).Dev.(*testdev.Device)
	px, err := m.ProxyDevice(testDevID)
	if err != nil {
		t.Fatal(err)
	}
	script := `
insmod /godmtest.ko || exit 2
d=/sys/bus/pci/devices/0000:00:06.0
echo "DRIVER $(basename $(readlink $d/driver))"
dmesg | grep -o "godmtest: MSI-X\|godmtest: INTx" | head -1
io=$(awk 'NR==2{print $1}' $d/resource)
printf '\170\126\064\022' | dd of=/dev/port bs=1 seek=$((io)) count=4 conv=notrunc 2>/dev/null
echo "IOINV $(dd if=/dev/port bs=1 skip=$((io + 4)) count=4 2>/dev/null | od -An -tx1 | tr -d ' \n')"
echo "4000 9" > $d/run && echo RUN-OK
echo "1000 200" > $d/run && echo RUN2-OK
echo "IRQS $(cat $d/irqs)"
echo "CHECK $(cat $d/check)"
grep godmtest /proc/interrupts
`
	start := time.Now()
	res, err := m.Run(context.Background(), guest.Config{
		Assets:  a,
		Script:  script,
		Files:   map[string][]byte{"godmtest.ko": ko},
		Proxies: []guest.Proxy{px},
		Timeout: 120 * time.Second,
		WorkDir: t.TempDir(),
	})
	if err != nil {
		t.Fatalf("guest: %v\nconsole:\n%s", err, res.Console)
	}
	t.Logf("guest ran %v", time.Since(start))
	// QEMU announced the guest's RAM to the proxy, and it is the
	// domain's (checkSysmem reports a mismatch as a data-path error).
	if m.SysmemRegions() == 0 {
		t.Error("no SYNC_SYSMEM region reached the proxy")
	}
	for _, e := range m.Errors() {
		t.Errorf("data path: %v", e)
	}
	con := res.Console
	// IOINV: the guest wrote 0x12345678 byte by byte to the I/O BAR's
	// scratch register and read back its inverse, 0xedcba987.
	for _, want := range []string{"DRIVER godmtest", "godmtest: MSI-X", "IOINV 87a9cbed", "RUN-OK", "RUN2-OK", "CHECK ok 1000"} {
		if !strings.Contains(con, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	if mt := regexp.MustCompile(`IRQS (\d+)`).FindStringSubmatch(con); mt == nil {
		t.Errorf("no IRQS line")
	} else if n, _ := strconv.Atoi(mt[1]); n < 2 {
		t.Errorf("guest saw %d interrupts, want >= 2", n)
	}
	if res.ExitStatus != 0 {
		t.Errorf("guest script exit status %d", res.ExitStatus)
	}
	if got := dev.Done(); got < 2 {
		t.Errorf("device completed %d DMA commands, want >= 2", got)
	}
	if msis := m.Sim.Count(m.Dom.ID(), xensim.EventMSI, ""); msis < 2 {
		t.Errorf("xensim recorded %d inject_msi, want >= 2", msis)
	}
	if res.Shutdown != "guest-shutdown" {
		t.Errorf("QEMU stopped for %q, want guest-shutdown", res.Shutdown)
	}
	if got := m.M.PM.Stats().PowerOffs; got != 1 {
		t.Errorf("godm's PIIX4 PM saw %d power-offs, want 1", got)
	}
	checkTeardown(t, m, res, xenabi.SHUTDOWN_poweroff, before)
}

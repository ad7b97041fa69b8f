package e2e

import (
	"bufio"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"godm/devices"
	"godm/devices/testdev"
	"godm/hyp/xenabi"
	"godm/internal/guest"
)

// TestGuestReboot: the guest reboots in place (reboot -f). QEMU resets its
// devices, so each proxy gets DEVICE_RESET and godm resets the function
// and the device behind it: the configuration read back through the vCPU
// after the reset is at reset values (command 0, BAR addresses cleared)
// where before it was the guest's. The guest boots a second time on the
// same godm: the firmware places the BARs again, Linux's drivers bind
// again (8250_pci to the UART, godmtest to the test device), DMA, MSI-X
// and the UART work. Each reset is relayed to godm's PIIX3 (a remote
// SHUTDOWN_reboot); the second boot powers off and the domain is torn
// down as after any power-off.
func TestGuestReboot(t *testing.T) {
	a, ko := guestAssets(t)
	before := goroutines()
	var cfg Config
	withTestDev(&cfg)
	gs := newGuestSerial(t, &cfg)
	m := newMachine(t, cfg)
	gs.attach(t, m)

	dev := m.Device(testDevID).Dev.(*testdev.Device)
	devPx, err := m.ProxyDevice(testDevID)
	if err != nil {
		t.Fatal(err)
	}

	ser, be, serPx, outR, outW := gs.dev, gs.be, gs.px, gs.out, gs.outW
	// The UART's line control, interrupt enable and modem control
	// registers (its BAR is unplaced after a reset, so they are read from
	// the device itself; none of these reads has a side effect).
	m.SetProbe("5.0", func() string {
		reg := func(off uint64) uint64 { return ser.UART.Read(devices.Access{Offset: off, Size: 1}) }
		return fmt.Sprintf("lcr %#02x ier %#02x mcr %#02x", reg(3), reg(1), reg(4))
	})
	// The test device's completion count (a DEVICE_RESET sets it to 0).
	m.SetProbe("6.0", func() string { return fmt.Sprintf("done %d", dev.Done()) })
	// What the guest's tty sent, line by line, as godm's backend got it.
	var (
		linesMu sync.Mutex
		lines   []string
	)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			linesMu.Lock()
			lines = append(lines, strings.TrimSpace(sc.Text()))
			linesMu.Unlock()
		}
	}()

	// Both boots: bind the drivers, run a DMA command, write a line on
	// the UART.
	boot := func(n string) string {
		return `
insmod /godmtest.ko || exit 2
d=/sys/bus/pci/devices/0000:00:06.0
s=/sys/bus/pci/devices/0000:00:05.0
echo "B` + n + `-DRIVERS $(basename $(readlink $d/driver)) $(basename $(readlink $s/driver))"
echo "4000 9" > $d/run && echo B` + n + `-RUN-OK
echo "B` + n + `-CHECK $(cat $d/check)"
tty=$(ls $s/tty 2>/dev/null | head -1)
[ -n "$tty" ] || exit 3
stty -F /dev/$tty raw -echo 115200
echo GODM-UART-B` + n + ` > /dev/$tty
`
	}
	res, err := m.Run(t.Context(), guest.Config{
		Assets:  a,
		Script:  guest.RebootOnce(boot("1"), boot("2")),
		Files:   map[string][]byte{"godmtest.ko": ko},
		Proxies: []guest.Proxy{devPx, serPx},
		Reboot:  true,
		Timeout: 60 * time.Second,
		WorkDir: t.TempDir(),
	})
	if err != nil {
		t.Fatalf("guest: %v", err)
	}
	t.Logf("QMP events: %+v", res.Events)
	for _, e := range m.Errors() {
		t.Errorf("data path: %v", e)
	}
	for _, want := range []string{
		"B1-DRIVERS godmtest serial", "B1-RUN-OK", "B1-CHECK ok 4000", "GODM-REBOOT",
		"GODM-BOOT 2", "B2-DRIVERS godmtest serial", "B2-RUN-OK", "B2-CHECK ok 4000",
	} {
		if !strings.Contains(res.Console, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	if res.Boots != 2 || res.Resets < 1 || res.ExitStatus != 0 || res.Shutdown != "guest-shutdown" {
		t.Errorf("boots %d, guest resets %d, exit %d, QEMU stopped for %q; want 2, >= 1, 0, guest-shutdown",
			res.Boots, res.Resets, res.ExitStatus, res.Shutdown)
	}
	// The guest's reset reset the test device too (its DONE count
	// included): what is left is the second boot's command.
	if got := dev.Done(); got != 1 {
		t.Errorf("test device shows %d completed DMA commands, want 1 (the second boot's; the reset cleared the first's)", got)
	}
	if got := m.M.ISABridge.Stats().Reboots; got != uint64(res.Resets) {
		t.Errorf("godm's PIIX3 saw %d reboot requests, want one per guest reset (%d)", got, res.Resets)
	}

	// DEVICE_RESET: one per proxy at QEMU's start-up reset and one per
	// guest reset; after each, the function is at its reset values.
	resets := m.Resets()
	t.Logf("DEVICE_RESETs: %+v", resets)
	for _, addr := range []string{"5.0", "6.0"} {
		var n, changed int
		for _, r := range resets {
			if r.Addr != addr {
				continue
			}
			n++
			if r.After.Command != 0 || r.After.BAR0&^0xf != 0 {
				t.Errorf("%s after DEVICE_RESET: %v, want command 0 and no BAR0 address", addr, r.After)
			}
			// Reset values as QEMU's serial_reset sets them
			// (hw/char/serial.c): LCR and IER 0, MCR OUT2.
			if want := "lcr 0x00 ier 0x00 mcr 0x08"; addr == "5.0" && r.DevAfter != want {
				t.Errorf("UART after DEVICE_RESET: %s, want %s", r.DevAfter, want)
			}
			if addr == "6.0" && r.DevAfter != "done 0" {
				t.Errorf("test device after DEVICE_RESET: %s, want done 0", r.DevAfter)
			}
			if r.Before != r.After || r.DevBefore != r.DevAfter {
				changed++
			}
		}
		if n != 1+res.Resets {
			t.Errorf("%s got %d DEVICE_RESETs, want %d (start-up and %d guest resets)", addr, n, 1+res.Resets, res.Resets)
		}
		if changed == 0 {
			t.Errorf("%s: no DEVICE_RESET found the guest's configuration to undo: %+v", addr, resets)
		}
	}

	if res.Shutdown == "guest-shutdown" {
		checkTeardown(t, m, res, xenabi.SHUTDOWN_poweroff, before, be)
	}
	outW.Close()
	<-readDone
	linesMu.Lock()
	defer linesMu.Unlock()
	got := strings.Join(lines, "|")
	for _, want := range []string{"GODM-UART-B1", "GODM-UART-B2"} {
		if !strings.Contains(got, want) {
			t.Errorf("godm's backend got %q, lacks %q", got, want)
		}
	}
}

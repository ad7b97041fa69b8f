package e2e

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"godm/devices/usb/hid"
	"godm/internal/board"
	"godm/internal/guest"
)

// usbModules are Debian's USB, HID and input modules in load order.
var usbModules = []string{"usb-common.ko", "usbcore.ko", "uhci-hcd.ko", "hid.ko", "usbhid.ko", "hid-generic.ko", "evdev.ko"}

// TestGuestUSBTablet: Linux's uhci_hcd drives godm's PIIX3 UHCI at
// 00:05.0 through x-pci-proxy-dev (frame list, QHs and TDs in guest RAM,
// INTx), usbcore enumerates the tablet on root port 1, usbhid and
// hid-generic bind it and evdev gives it an event node; pointer events
// injected on godm's side (as the VNC server delivers them) come out of
// /dev/input/eventN as ABS_X/ABS_Y with the positions' scaled values.
func TestGuestUSBTablet(t *testing.T) {
	a, _ := guestAssets(t)
	dir := os.Getenv("GODM_GUEST_DIR")
	files := map[string][]byte{}
	for _, ko := range usbModules {
		b, err := os.ReadFile(filepath.Join(dir, ko))
		if err != nil {
			t.Skipf("real-guest USB test needs Debian's %s, which scripts/guest-assets.sh extracts: %v", ko, err)
		}
		files[ko] = b
	}
	m := newMachine(t, Config{Devices: []board.Entry{
		{Driver: board.UHCIDriver, Props: map[string]string{"id": "usb", "addr": "05.0"}},
		{Driver: board.TabletDriver, Props: map[string]string{"id": "tablet", "bus": "usb.0"}},
	}})
	px, err := m.ProxyDevice("usb")
	if err != nil {
		t.Fatal(err)
	}
	tab := m.Device("tablet").Dev.(*board.USBTablet)

	// Two positions of a 200×100 screen, alternated with the left button
	// held on the second, until the guest has read its events.
	pos := [2][2]int{{50, 25}, {150, 75}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			p := pos[i%2]
			tab.PointerEvent(p[0], p[1], 200, 100, uint8(i%2))
		}
	}()

	var load strings.Builder
	for i, ko := range usbModules {
		fmt.Fprintf(&load, "insmod /%s || exit %d\n", ko, 10+i)
	}
	script := load.String() + tabletScript(24, 20) + "grep -i uhci /proc/interrupts\n"
	res, err := m.Run(context.Background(), guest.Config{
		Assets:  a,
		Script:  script,
		Files:   files,
		Proxies: []guest.Proxy{px},
		Timeout: 240 * time.Second,
		WorkDir: t.TempDir(),
	})
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("guest: %v\nconsole:\n%s", err, res.Console)
	}
	for _, e := range m.Errors() {
		t.Errorf("data path: %v", e)
	}
	con := res.Console
	for _, want := range []string{
		fmt.Sprintf("USBDEV %04x:%04x %s speed 12", hid.VendorID, hid.ProductID, hid.Product),
		"HCD uhci_hcd",
		`Name="` + hid.Manufacturer + " " + hid.Product + `"`,
		"EVDEV event",
	} {
		if !strings.Contains(con, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	want := map[[2]uint16]bool{}
	for _, p := range pos {
		want[[2]uint16{0, hid.Scale(p[0], 200)}] = true // ABS_X
		want[[2]uint16{1, hid.Scale(p[1], 100)}] = true // ABS_Y
	}
	ev := checkTabletEvents(t, con, want)
	buttons := ev.keys[btnLeft]
	if buttons == 0 {
		t.Error("guest read no BTN_LEFT event")
	}
	if t.Failed() {
		t.Logf("console:\n%s", con)
		return
	}
	for _, l := range strings.Split(con, "\n") {
		if strings.HasPrefix(l, "USBDEV") || strings.Contains(l, "Name=") || strings.Contains(l, "uhci") {
			t.Log(strings.TrimSpace(l))
		}
	}
	t.Logf("guest read %d distinct ABS_X/ABS_Y values and %d BTN_LEFT events", len(ev.abs), buttons)
}

// tabletScript is the guest's part of a tablet test once the USB modules
// are loaded: it waits for usbcore to enumerate the tablet on root port 1
// and for its event node, prints them, and dumps n input events read
// from the node within secs seconds as "EV <hex>" lines.
func tabletScript(n, secs int) string {
	return fmt.Sprintf(`
for i in $(seq 1 100); do [ -e /sys/bus/usb/devices/1-1/idVendor ] && break; sleep 0.2; done
d=/sys/bus/usb/devices/1-1
echo "USBDEV $(cat $d/idVendor):$(cat $d/idProduct) $(cat $d/product) speed $(cat $d/speed)"
echo "HCD $(basename $(readlink /sys/bus/pci/devices/0000:00:05.0/driver))"
for i in $(seq 1 50); do grep -q Tablet /proc/bus/input/devices && break; sleep 0.2; done
grep -A5 'Tablet' /proc/bus/input/devices
ev=$(grep -A5 'Tablet' /proc/bus/input/devices | sed -n 's/.*Handlers=.*\(event[0-9]*\).*/\1/p')
echo "EVDEV $ev"
timeout %d dd if=/dev/input/$ev bs=24 count=%d 2>/dev/null | od -An -v -tx1 -w24 | sed 's/ //g; s/^/EV /'
`, secs, n)
}

// Linux input event codes (include/uapi/linux/input-event-codes.h).
const (
	evKey, evRel, evAbs = 1, 2, 3
	btnLeft, btnRight   = 0x110, 0x111
	relWheel            = 8
)

// tabletEvents is what a guest read from the tablet's event node.
type tabletEvents struct {
	abs   map[[2]uint16]bool // (ABS_X or ABS_Y, value) seen
	keys  map[uint16]int     // EV_KEY code → events
	wheel []int32            // REL_WHEEL values
}

// checkTabletEvents parses the console's "EV" lines (struct input_event
// on x86-64: 16 bytes of time, then type, code, value) and reports, as
// test errors, an ABS_X/ABS_Y value not in want and a wanted one never
// read.
func checkTabletEvents(t *testing.T, con string, want map[[2]uint16]bool) tabletEvents {
	t.Helper()
	ev := tabletEvents{abs: map[[2]uint16]bool{}, keys: map[uint16]int{}}
	for _, l := range strings.Split(con, "\n") {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, "EV ") {
			continue
		}
		b, err := hex.DecodeString(strings.TrimPrefix(l, "EV "))
		if err != nil || len(b) != 24 {
			continue
		}
		typ, code, val := binary.LittleEndian.Uint16(b[16:]), binary.LittleEndian.Uint16(b[18:]), int32(binary.LittleEndian.Uint32(b[20:]))
		switch {
		case typ == evAbs && code <= 1: // ABS_X/ABS_Y
			k := [2]uint16{code, uint16(val)}
			if !want[k] {
				t.Errorf("guest read ABS %d = %d, not one of the positions sent", code, val)
			}
			ev.abs[k] = true
		case typ == evKey:
			ev.keys[code]++
		case typ == evRel && code == relWheel:
			ev.wheel = append(ev.wheel, val)
		}
	}
	for k := range want {
		if !ev.abs[k] {
			t.Errorf("guest never read ABS %d = %d", k[0], k[1])
		}
	}
	return ev
}

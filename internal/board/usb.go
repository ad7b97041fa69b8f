package board

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"godm/devices/uhci"
	"godm/devices/usb/hid"
)

// Driver names of the USB devices (QEMU's).
const (
	UHCIDriver   = "piix3-usb-uhci"
	TabletDriver = "usb-tablet"
)

// USBTablet is a tablet on the board: the device and where it plugs.
type USBTablet struct {
	*hid.Tablet
	// Controller and Port are its host controller and root port (0-based).
	Controller *uhci.Controller
	Port       int
}

// newUHCI is -device piix3-usb-uhci (and -usb's controller, which the
// command line places at 01.2 as QEMU's pc_piix.c does).
func newUHCI(b *Board, p Props, pl *Plugged) error {
	slot, fn, ok, err := pciAddr(p)
	if err != nil {
		return err
	}
	if b.env.Memory == nil {
		return errors.New("the machine has no guest memory access")
	}
	c, err := uhci.New(uhci.Config{Memory: b.env.Memory})
	if err != nil {
		return err
	}
	pl.Dev = c
	pl.onUnplug(c.Close)
	if err := b.addPCI(pl, c.Function(), slot, fn, !ok); err != nil {
		return err
	}
	pl.resetWith(c.Function(), c.Reset)
	return nil
}

// newUSBTablet is -device usb-tablet[,bus=ID.0][,port=N]: a tablet on
// the named controller's bus, else on the first UHCI controller with a
// free port (QEMU's usb_bus_find picks the first bus too).
func newUSBTablet(b *Board, p Props, pl *Plugged) error {
	bus := p.String("bus", "")
	port := p.String("port", "")
	var ctl *uhci.Controller
	for _, d := range b.Devices() {
		c, isUHCI := d.Dev.(*uhci.Controller)
		if !isUHCI {
			continue
		}
		if bus != "" {
			if bus == d.ID+".0" {
				ctl = c
				break
			}
			continue
		}
		if c.FreePort() >= 0 {
			ctl = c
			break
		}
	}
	if ctl == nil {
		if bus != "" {
			return fmt.Errorf("Bus '%s' not found (want the id of a piix3-usb-uhci, then .0)", bus)
		}
		return errors.New("no USB bus with a free port: add -usb or -device piix3-usb-uhci before it")
	}
	n := ctl.FreePort()
	if port != "" {
		v, err := strconv.Atoi(port)
		if err != nil || v < 1 || v > uhci.NumPorts || strings.Contains(port, ".") {
			return fmt.Errorf("property 'port': '%s' is not a root port (1..%d)", port, uhci.NumPorts)
		}
		n = v - 1
	}
	if n < 0 {
		return fmt.Errorf("bus '%s': no free port", bus)
	}
	t := hid.New(nil)
	if err := ctl.Attach(n, t); err != nil {
		return fmt.Errorf("port %d: %v", n+1, err)
	}
	pl.Dev = &USBTablet{Tablet: t, Controller: ctl, Port: n}
	pl.onUnplug(func() error { ctl.Detach(n); return nil })
	// The controller's reset resets the devices on its ports.
	return nil
}

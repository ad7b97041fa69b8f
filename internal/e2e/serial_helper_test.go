package e2e

import (
	"os"
	"testing"

	"godm/devices/chardev"
	"godm/devices/uart"
	"godm/devices/uart/pciserial"
	"godm/internal/guest"
)

// guestSerial is a PCI serial port (1b36:0002) at 00:05.0 of m, proxied
// to the guest, with its character backend on pipes: the test reads what
// the guest sent from out and feeds the guest through in.
type guestSerial struct {
	dev *pciserial.Device
	be  *chardev.Stream
	px  guest.Proxy
	in  *os.File // write end: bytes for the guest
	out *os.File // read end: bytes from the guest
	// outW is the backend's end of out; closing it ends reads of out.
	outW *os.File
}

func newGuestSerial(t *testing.T, m *Machine) *guestSerial {
	t.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inW.Close(); outR.Close() })
	be := chardev.NewStream(inR, outW, chardev.Options{})
	t.Cleanup(func() { be.Close() })
	d, err := pciserial.New(uart.Config{Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if _, err := m.PCI.Add(d.PCI, 5, 0); err != nil {
		t.Fatal(err)
	}
	px, err := m.Proxy(d.PCI, "5.0", d.UART)
	if err != nil {
		t.Fatal(err)
	}
	return &guestSerial{dev: d, be: be, px: px, in: inW, out: outR, outW: outW}
}

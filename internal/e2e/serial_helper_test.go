package e2e

import (
	"os"
	"testing"

	"godm/devices/chardev"
	"godm/devices/uart/pciserial"
	"godm/internal/board"
	"godm/internal/guest"
)

// guestSerial is a PCI serial port (pci-serial, 1b36:0002) at 00:05.0 of
// the machine, plugged through the board's driver table and proxied to
// the guest, with its character backend on pipes: the test reads what the
// guest sent from out and feeds the guest through in.
type guestSerial struct {
	dev *pciserial.Device
	be  *chardev.Stream
	px  guest.Proxy
	in  *os.File // write end: bytes for the guest
	out *os.File // read end: bytes from the guest
	// outW is the backend's end of out; closing it ends reads of out.
	outW *os.File
}

// guestSerialID is the serial port's board id.
const guestSerialID = "ser"

// newGuestSerial makes the port's backend and adds the port to cfg's
// devices; attach finds it on the machine built from cfg.
func newGuestSerial(t *testing.T, cfg *Config) *guestSerial {
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
	if cfg.Chardevs == nil {
		cfg.Chardevs = map[string]chardev.Backend{}
	}
	cfg.Chardevs["serial-e2e"] = be
	cfg.Devices = append(cfg.Devices, board.Entry{Driver: board.PCISerialDriver,
		Props: map[string]string{"id": guestSerialID, "chardev": "serial-e2e", "addr": "05.0"}})
	return &guestSerial{be: be, in: inW, out: outR, outW: outW}
}

// attach finds the port on m and makes its proxy.
func (s *guestSerial) attach(t *testing.T, m *Machine) *guestSerial {
	t.Helper()
	p := m.Device(guestSerialID)
	if p == nil {
		t.Fatal("e2e: no serial port on the board")
	}
	s.dev = p.Dev.(*pciserial.Device)
	px, err := m.ProxyDevice(guestSerialID)
	if err != nil {
		t.Fatal(err)
	}
	s.px = px
	return s
}

// testDevID is the test device's board id (godm-testdev at 00:06.0).
const testDevID = "td"

// withTestDev adds godm's test device at 00:06.0 to cfg's devices.
func withTestDev(cfg *Config) {
	cfg.Devices = append(cfg.Devices, board.Entry{Driver: board.TestDevice,
		Props: map[string]string{"id": testDevID, "addr": "06.0"}})
}

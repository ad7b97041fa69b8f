package uart

import (
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"godm/devices"
	"godm/devices/chardev"
	"godm/internal/qtest"
	"godm/internal/testfake"
)

// rxSide is one UART (QEMU's or godm's) fed from a host socket.
type rxSide struct {
	name string
	in   func(off uint16) uint8
	out  func(off uint16, v uint8)
	host net.Conn
}

// waitFor polls register off until (v & mask) == want, bounded.
func (s *rxSide) waitFor(t *testing.T, off uint16, mask, want uint8) uint8 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v := s.in(off)
		if v&mask == want {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: register %d = %#x, waiting for (v & %#x) == %#x", s.name, off, v, mask, want)
		}
	}
}

// TestQEMUDiff_UARTReceive sends the same host bytes to QEMU's UART (via
// a socket chardev) and to godm's (via chardev.Listen) and compares what
// the guest side sees: the trigger-level interrupt, every byte in order,
// and no overrun, since both models take input only as fast as their
// trigger level allows (QEMU serial_can_receive).
func TestQEMUDiff_UARTReceive(t *testing.T) {
	if _, err := qtest.Find(qtest.Options{}); errors.Is(err, exec.ErrNotFound) {
		t.Skipf("qemu-system-x86_64 not installed (scripts/test.sh installs qemu-system-x86): %v", err)
	}
	dir := t.TempDir()
	qsock := filepath.Join(dir, "qemu-serial.sock")
	c, err := qtest.Start(qtest.Options{Args: []string{
		"-chardev", "socket,id=s0,path=" + qsock + ",server=on,wait=off", "-serial", "chardev:s0"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	qhost, err := net.Dial("unix", qsock)
	if err != nil {
		t.Fatal(err)
	}
	defer qhost.Close()

	gsock := filepath.Join(dir, "godm-serial.sock")
	be, err := chardev.Listen(gsock, chardev.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	// godm's UART paces reception at the line rate, QEMU's takes input
	// as fast as its FIFO has room (serial_can_receive): godm's clock
	// moves to the next character slot whenever its receiver waits for
	// one, which makes the line infinitely fast as seen by the polling
	// guest, as QEMU's is, while never letting four character times pass
	// without a character (no spurious timeout interrupt).
	clock := &testfake.Clock{}
	u := New(Config{Backend: be, Clock: clock})
	defer u.Close()
	ghost, err := net.Dial("unix", gsock)
	if err != nil {
		t.Fatal(err)
	}
	defer ghost.Close()

	sides := []*rxSide{
		{name: "QEMU", host: qhost,
			in: func(off uint16) uint8 {
				v, _, err := c.In(com1+off, 1)
				if err != nil {
					t.Fatal(err)
				}
				return uint8(v)
			},
			out: func(off uint16, v uint8) {
				if _, err := c.Out(com1+off, 1, uint64(v)); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "godm", host: ghost,
			in: func(off uint16) uint8 {
				toNextSlot(u, clock)
				return uint8(u.Read(devices.Access{Offset: uint64(off), Size: 1}))
			},
			out: func(off uint16, v uint8) { u.Write(devices.Access{Offset: uint64(off), Size: 1}, uint64(v)) }},
	}
	msg := []byte("0123456789abcdefghijklmnopqrstuvwxyz")
	for _, fcr := range []uint8{0x41, 0x81, 0xc1, 0x00} {
		got := make([][]byte, len(sides))
		lsrs := make([]uint8, len(sides))
		for i, s := range sides {
			s.out(regIIR, fcr|0x06)
			s.out(regIER, ierRDI|ierRLSI)
			if _, err := s.host.Write(msg); err != nil {
				t.Fatal(err)
			}
			// The first interrupt is received data (trigger level reached or,
			// without FIFO, one byte): never a line-status (overrun) one.
			if iir := s.waitFor(t, regIIR, 0x0f, iirRDI); iir&iirFIFO != fcr&fcrFE*iirFIFO {
				t.Errorf("%s FCR %#x: IIR %#x", s.name, fcr, iir)
			}
			for len(got[i]) < len(msg) {
				s.waitFor(t, regLSR, lsrDR, lsrDR)
				got[i] = append(got[i], s.in(regRBR))
			}
			lsrs[i] = s.in(regLSR)
		}
		for i, s := range sides {
			if string(got[i]) != string(msg) {
				t.Errorf("FCR %#x: %s received %q, want %q", fcr, s.name, got[i], msg)
			}
			if lsrs[i] != lsrs[0] {
				t.Errorf("FCR %#x: final LSR %s %#x, %s %#x", fcr, s.name, lsrs[i], sides[0].name, lsrs[0])
			}
		}
		if lsrs[0] != 0x60 {
			t.Errorf("FCR %#x: final LSR %#x, want 0x60 (no overrun, empty)", fcr, lsrs[0])
		}
	}
}

package e2e

import (
	"bufio"
	"context"
	"strings"
	"testing"
	"time"

	"godm/hyp/xenabi"
	"godm/hyp/xensim"
	"godm/internal/guest"
)

// TestGuestSerial: Linux's 8250_pci binds godm's PCI 16550 (1b36:0002);
// a line the guest writes to the tty arrives in godm's character backend,
// and the answer godm's backend feeds in is read by the guest. The UART is
// interrupt driven: its INTx travels as XEN_DMOP_set_pci_intx_level.
func TestGuestSerial(t *testing.T) {
	a, _ := guestAssets(t)
	before := goroutines()
	var cfg Config
	s := newGuestSerial(t, &cfg)
	m := newMachine(t, cfg)
	s.attach(t, m)
	be, px, inW, outR := s.be, s.px, s.in, s.out
	// Counted as they happen: a long run wraps xensim's event ring.
	dom := m.Dom.ID()
	raises := m.Sim.NewTally(func(e xensim.Event) bool {
		return e.Kind == xensim.EventPCIIntx && e.Dom == dom && e.Dev == 5 && e.Level
	})

	// The host end of the line: answer the guest's ping.
	gotPing := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "GODM-PING") {
				close(gotPing)
				inW.Write([]byte("GODM-PONG\n"))
				break
			}
		}
		for sc.Scan() {
		}
	}()

	script := `
d=/sys/bus/pci/devices/0000:00:05.0
echo "DRIVER $(basename $(readlink $d/driver))"
tty=$(ls $d/tty 2>/dev/null | head -1)
[ -n "$tty" ] || exit 3
stty -F /dev/$tty raw -echo 115200
exec 3<>/dev/$tty
echo GODM-PING >&3
read -t 30 line <&3
echo "GOT <$line>"
grep -i "irq" /proc/tty/driver/serial | grep -v unknown | tail -1
`
	res, err := m.Run(context.Background(), guest.Config{
		Assets:  a,
		Script:  script,
		Proxies: []guest.Proxy{px},
		Timeout: 120 * time.Second,
		WorkDir: t.TempDir(),
	})
	if err != nil {
		t.Fatalf("guest: %v\nconsole:\n%s", err, res.Console)
	}
	for _, e := range m.Errors() {
		t.Errorf("data path: %v", e)
	}
	select {
	case <-gotPing:
	default:
		t.Errorf("godm's backend never received the guest's line")
	}
	for _, want := range []string{"DRIVER serial", "GOT <GODM-PONG"} {
		if !strings.Contains(res.Console, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	if raises.N() == 0 {
		t.Errorf("the UART never raised INTx through set_pci_intx_level")
	}
	checkTeardown(t, m, res, xenabi.SHUTDOWN_poweroff, before, be)
}

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"godm/hyp/xenabi"
	"godm/hyp/xensim"
	"godm/internal/guest"
	"godm/ioreq"
)

// TestGuestSerialThroughput: the guest writes a few KiB to godm's PCI
// serial port (interrupt driven, 115200 8N1); every byte arrives in order,
// and the test logs the rate the real-guest path carries (guest→host).
// Measure with
//
//	GODM_GUEST_DIR=$PWD/.cache/guest go test -count=1 -run GuestSerialThroughput -v ./internal/e2e
func TestGuestSerialThroughput(t *testing.T) {
	a, _ := guestAssets(t)
	before := goroutines()
	var cfg Config
	s := newGuestSerial(t, &cfg)
	m := newMachine(t, cfg)
	s.attach(t, m)

	const lines = 1000
	var want bytes.Buffer
	for i := 1; i <= lines; i++ {
		fmt.Fprintf(&want, "%d\n", i)
	}
	type result struct {
		got         []byte
		first, last time.Time
	}
	done := make(chan result, 1)
	go func() {
		var r result
		buf := make([]byte, 4096)
		for len(r.got) < want.Len() {
			n, err := s.out.Read(buf)
			if n > 0 {
				if r.first.IsZero() {
					r.first = time.Now()
				}
				r.last = time.Now()
				r.got = append(r.got, buf[:n]...)
			}
			if err != nil {
				break
			}
		}
		if len(r.got) >= want.Len() {
			s.in.Write([]byte("ACK\n"))
		}
		done <- r
		io.Copy(io.Discard, s.out)
	}()

	script := fmt.Sprintf(`
d=/sys/bus/pci/devices/0000:00:05.0
tty=$(ls $d/tty 2>/dev/null | head -1)
[ -n "$tty" ] || exit 3
stty -F /dev/$tty raw -echo 115200
exec 3<>/dev/$tty
seq 1 %d >&3
read -t 300 line <&3
echo "HOST SAID <$line>"
`, lines)
	res, err := m.Run(context.Background(), guest.Config{
		Assets:  a,
		Script:  script,
		Proxies: []guest.Proxy{s.px},
		Timeout: 400 * time.Second,
		WorkDir: t.TempDir(),
	})
	if err != nil {
		t.Fatalf("guest: %v\nconsole:\n%s", err, res.Console)
	}
	for _, e := range m.Errors() {
		t.Errorf("data path: %v", e)
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the host end never finished reading")
	}
	if !bytes.Equal(r.got, want.Bytes()) {
		t.Errorf("host received %d bytes, want the %d of seq 1 %d (first difference at %d)", len(r.got), want.Len(), lines, firstDiff(r.got, want.Bytes()))
	}
	if !strings.Contains(res.Console, "HOST SAID <ACK>") {
		t.Errorf("the guest did not get the host's answer")
	}
	if d := r.last.Sub(r.first); d > 0 {
		t.Logf("guest→host serial: %d bytes in %v = %.0f B/s", len(r.got), d.Round(time.Millisecond), float64(len(r.got))/d.Seconds())
	}
	var c ioreq.Counters
	m.Server.Stats(&c)
	t.Logf("godm served %d requests (%.1f per byte), service time p50 %v", c.Total(), float64(c.Total())/float64(len(r.got)), c.LatencyQuantile(0.5))
	st := m.IRQStats()
	t.Logf("INTx level changes by godm: %d; IRQ forwarder: %d qtest commands (%v in them), %d changes coalesced",
		m.Sim.Count(m.Dom.ID(), xensim.EventPCIIntx, ""), st.Relayed, st.Busy.Round(time.Millisecond), st.Coalesced)
	checkTeardown(t, m, res, xenabi.SHUTDOWN_poweroff, before, s.be)
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestGuestSerialFlood: the host floods the guest's serial port while
// the guest reads a fixed amount; every byte arrives, and the guest's CPU
// is never held in the 8250 interrupt handler (no soft lockup, no "too
// much work for irq"), since godm's UART paces reception at the line's
// rate instead of refilling its FIFO as fast as the guest drains it.
// Logs the host→guest rate.
func TestGuestSerialFlood(t *testing.T) {
	a, _ := guestAssets(t)
	before := goroutines()
	var cfg Config
	s := newGuestSerial(t, &cfg)
	m := newMachine(t, cfg)
	s.attach(t, m)

	const n = 16 << 10
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 256) // 4 KiB
	stop, flooded := make(chan struct{}), make(chan struct{})
	endFlood := func() {
		select {
		case <-stop:
		default:
			close(stop)
			s.in.Close() // unblocks a Write into the full pipe
		}
		<-flooded
	}
	defer endFlood()
	go func() {
		defer close(flooded)
		// Flood until the test ends (more than the guest reads).
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.in.Write(chunk); err != nil {
				return
			}
		}
	}()
	script := fmt.Sprintf(`
d=/sys/bus/pci/devices/0000:00:05.0
tty=$(ls $d/tty 2>/dev/null | head -1)
[ -n "$tty" ] || exit 3
stty -F /dev/$tty raw -echo 115200
t0=$(cut -d' ' -f1 /proc/uptime)
got=$(head -c %d /dev/$tty | tr -d '0-9a-f' | wc -c)
t1=$(cut -d' ' -f1 /proc/uptime)
echo "FLOOD READ $got stray bytes, from $t0 to $t1"
`, n)
	res, err := m.Run(context.Background(), guest.Config{
		Assets:  a,
		Script:  script,
		Proxies: []guest.Proxy{s.px},
		Timeout: 120 * time.Second, // ~10 s paced; without the pace the guest livelocks and this runs out
		WorkDir: t.TempDir(),
	})
	if err != nil {
		t.Fatalf("guest: %v\nconsole:\n%s", err, res.Console)
	}
	for _, e := range m.Errors() {
		t.Errorf("data path: %v", e)
	}
	var stray int
	var t0, t1 float64
	if i := strings.Index(res.Console, "FLOOD READ "); i < 0 {
		t.Errorf("the guest did not finish reading %d bytes", n)
	} else if _, err := fmt.Sscanf(res.Console[i:], "FLOOD READ %d stray bytes, from %g to %g", &stray, &t0, &t1); err != nil {
		t.Errorf("guest report: %v", err)
	} else {
		if stray != 0 {
			t.Errorf("the guest read %d bytes that the host did not send", stray)
		}
		if t1 > t0 {
			t.Logf("host→guest serial under a flood: %d bytes in %.2fs of guest time = %.0f B/s", n, t1-t0, n/(t1-t0))
		}
	}
	for _, bad := range []string{"soft lockup", "too much work for irq", "rcu_sched self-detected stall", "hung_task"} {
		if strings.Contains(res.Console, bad) {
			t.Errorf("guest console reports %q", bad)
		}
	}
	st := s.dev.UART.Stats()
	t.Logf("UART: received %d, overruns %d, offers refused for the line's pace %d", st.Received, st.Overruns, st.RxPaced)
	if st.Overruns != 0 {
		t.Errorf("%d overruns: back-pressure broken", st.Overruns)
	}
	endFlood()
	checkTeardown(t, m, res, xenabi.SHUTDOWN_poweroff, before, s.be)
}

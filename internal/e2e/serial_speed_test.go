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
	m := newMachine(t, Config{})
	s := newGuestSerial(t, m)

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
	checkTeardown(t, m, res, xenabi.SHUTDOWN_poweroff, before, s.dev, s.be)
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

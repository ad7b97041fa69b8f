package pciserial

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"godm/devices"
	"godm/devices/chardev"
	"godm/devices/uart"
	"godm/internal/guest"
	"godm/internal/mpqemu"
	"godm/internal/qtest"
	"godm/irq"
	"godm/pci"
)

// proxyFn adapts a function on a godm pci.Bus to mpqemu.Device: config
// accesses go to the configuration space, BAR accesses (absolute
// addresses) to the port I/O or MMIO space the pci package maps BARs in.
type proxyFn struct {
	spaces *devices.Bus
	sbdf   devices.SBDF
	dev    *Device
}

func (p *proxyFn) ConfigRead(addr uint32, size int) uint32 {
	return uint32(p.spaces.PCI.Read(p.sbdf, addr, uint8(size), 0))
}

func (p *proxyFn) ConfigWrite(addr uint32, val uint32, size int) {
	p.spaces.PCI.Write(p.sbdf, addr, uint8(size), 0, uint64(val))
}

func (p *proxyFn) BARRead(addr uint64, size int, memory bool) uint64 {
	if memory {
		return p.spaces.MMIO.Read(addr, uint8(size), 0)
	}
	return p.spaces.PIO.Read(addr, uint8(size), 0)
}

func (p *proxyFn) BARWrite(addr uint64, val uint64, size int, memory bool) {
	if memory {
		p.spaces.MMIO.Write(addr, uint8(size), 0, val)
		return
	}
	p.spaces.PIO.Write(addr, uint8(size), 0, val)
}

func (p *proxyFn) Reset() { p.dev.PCI.Reset(); p.dev.UART.Reset() }

func (p *proxyFn) SyncSysmem(r []mpqemu.Region) {
	for _, x := range r {
		x.File.Close()
	}
}

// intxForwarder carries the function's INTx level to QEMU's I/O APIC
// through qtest (under TCG the proxy's irqfds are not wired: ORACLES.md
// §4). SetLevel never blocks: the latest level wins.
type intxForwarder struct {
	mu      sync.Mutex
	level   bool
	changed chan struct{}
}

func (f *intxForwarder) SetLevel(high bool) {
	f.mu.Lock()
	f.level = high
	f.mu.Unlock()
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

func (f *intxForwarder) INTx(dev, fn, pin uint8) irq.Line { return f }

// run forwards levels until ctx ends; gsi gives the guest's interrupt line.
func (f *intxForwarder) run(ctx context.Context, c *qtest.Client, gsi func() int, errs chan<- error) {
	sent := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.changed:
		}
		f.mu.Lock()
		level := f.level
		f.mu.Unlock()
		if level == sent {
			continue
		}
		if _, err := c.SetIRQIn("ioapic", "unnamed-gpio-in", gsi(), level); err != nil {
			if ctx.Err() == nil {
				select {
				case errs <- err:
				default:
				}
			}
			return
		}
		sent = level
	}
}

// TestGuest_Linux8250 boots Debian's Linux under QEMU TCG with the godm
// PCI serial function proxied into slot 5: the kernel's 8250_pci driver
// must bind it, and a line must cross in each direction through the UART
// and a chardev backend.
func TestGuest_Linux8250(t *testing.T) {
	assets, err := guest.FindAssets(os.Getenv("GODM_GUEST_DIR"))
	if err != nil {
		t.Skipf("real-guest test needs the guest assets that scripts/test.sh prepares: %v", err)
	}
	if _, err := qtest.Find(qtest.Options{}); err != nil {
		t.Skipf("qemu-system-x86_64 not installed: %v", err)
	}

	fwd := &intxForwarder{changed: make(chan struct{}, 1)}
	spaces := devices.NewBus()
	bus, err := pci.NewBus(pci.BusConfig{Spaces: spaces, INTx: fwd})
	if err != nil {
		t.Fatal(err)
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer inW.Close()
	defer outR.Close()
	be := chardev.NewStream(inR, outW, chardev.Options{})
	defer be.Close()
	d, err := New(uart.Config{Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	sbdf, err := bus.Add(d.PCI, 5, 0)
	if err != nil {
		t.Fatal(err)
	}
	fn := &proxyFn{spaces: spaces, sbdf: sbdf, dev: d}

	// Host side of the serial line: answer the guest's ping.
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
echo "IDS $(cat $d/vendor) $(cat $d/device) DRIVER $(basename $(readlink $d/driver))"
tty=$(ls $d/tty 2>/dev/null | head -1)
echo "TTY $tty"
[ -n "$tty" ] || exit 3
grep -i "0000:00:05.0" /proc/tty/driver/serial 2>/dev/null
exec 3<>/dev/$tty
stty -F /dev/$tty raw -echo 115200
echo GODM-PING >&3
read -t 30 line <&3
echo "GOT <$line>"
cat /proc/tty/driver/serial | grep -v "unknown"
`
	work := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fwdErrs := make(chan error, 1)
	go func() {
		c, err := qtest.Dial(filepath.Join(work, "qtest.sock"), 60*time.Second)
		if err != nil {
			fwdErrs <- err
			return
		}
		defer c.Close()
		gsi := func() int { return int(spaces.PCI.Read(sbdf, 0x3c, 1, 0)) }
		fwd.run(ctx, c, gsi, fwdErrs)
	}()

	res, err := guest.Run(ctx, guest.Config{
		Assets:  assets,
		Script:  script,
		Proxies: []guest.Proxy{{Addr: "5.0", Dev: fn}},
		Timeout: 120 * time.Second,
		WorkDir: work,
	})
	if err != nil {
		t.Fatalf("guest: %v\nconsole:\n%s", err, res.Console)
	}
	select {
	case err := <-fwdErrs:
		t.Errorf("INTx forwarding: %v", err)
	default:
	}
	for _, want := range []string{"IDS 0x1b36 0x0002 DRIVER serial", "GOT <GODM-PONG>"} {
		if !strings.Contains(res.Console, want) {
			t.Errorf("console lacks %q:\n%s", want, res.Console)
		}
	}
	select {
	case <-gotPing:
	default:
		t.Errorf("host never received GODM-PING; console:\n%s", res.Console)
	}
	if res.ExitStatus != 0 {
		t.Errorf("guest script exit status %d", res.ExitStatus)
	}
	t.Logf("UART stats %+v, backend %+v", d.UART.Stats(), be.Stats())
}

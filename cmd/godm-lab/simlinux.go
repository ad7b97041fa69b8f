package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"godm/devices/chardev"
	"godm/internal/board"
	"godm/internal/e2e"
	"godm/internal/guest"
)

// simLinux boots Debian's Linux kernel under QEMU TCG with godm's PCI
// 16550 and test device proxied into it: every access the guest's drivers
// make travels xensim's ioreq path to godm. The guest's demo script writes
// to godm's serial port, whose backend is this process's standard output.
func simLinux(ctx context.Context, dir string, out io.Writer) error {
	assets, err := guest.FindAssets(dir)
	if err != nil {
		return fmt.Errorf("sim -linux: %w (scripts/run.sh -linux prepares them)", err)
	}
	ko, err := os.ReadFile(filepath.Join(dir, "godmtest.ko"))
	if err != nil {
		return fmt.Errorf("sim -linux: the guest test driver: %w", err)
	}
	console, err := chardev.Stdio(nil, os.Stdout, chardev.Options{})
	if err != nil {
		return err
	}
	defer console.Close()
	// The guest's devices are plugged through the board's driver table,
	// as -device entries are.
	m, err := e2e.NewMachine(e2e.Config{
		Chardevs: map[string]chardev.Backend{"console": console},
		Devices: []board.Entry{
			{Driver: board.PCISerialDriver, Props: map[string]string{"id": "ser", "chardev": "console", "addr": "05.0"}},
			{Driver: board.TestDevice, Props: map[string]string{"id": "td", "addr": "06.0"}},
		},
	})
	if err != nil {
		return err
	}
	defer m.Close()
	pser, err := m.ProxyDevice("ser")
	if err != nil {
		return err
	}
	ptd, err := m.ProxyDevice("td")
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "godm-sim-linux-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	fmt.Fprintln(out, "godm: booting Linux under QEMU TCG; its PCI serial port 00:05.0 and test device 00:06.0 are served by godm through the simulated Xen")
	fmt.Fprintln(out, "godm: what follows between the rules is the guest writing to godm's serial port")
	fmt.Fprintln(out, strings.Repeat("-", 72))
	start := time.Now()
	res, err := m.Run(ctx, guest.Config{
		Assets:  assets,
		Script:  linuxDemoScript,
		Files:   map[string][]byte{"godmtest.ko": ko},
		Proxies: []guest.Proxy{pser, ptd},
		Timeout: 180 * time.Second,
		WorkDir: work,
	})
	time.Sleep(100 * time.Millisecond) // the serial backend flushes asynchronously
	fmt.Fprintln(out, strings.Repeat("-", 72))
	if err != nil {
		fmt.Fprintf(out, "guest console:\n%s\n", res.Console)
		return err
	}
	for _, e := range m.Errors() {
		fmt.Fprintln(out, "godm: data path error:", e)
	}
	fmt.Fprintf(out, "godm: the guest powered off after %v; exit status of its script %d\n", time.Since(start).Round(time.Millisecond), res.ExitStatus)
	if res.ExitStatus != 0 {
		fmt.Fprintf(out, "guest console:\n%s\n", res.Console)
		return errors.New("sim -linux: the guest's demo script failed")
	}
	return nil
}

const linuxDemoScript = `
p=/sys/bus/pci/devices
tty=$(ls $p/0000:00:05.0/tty 2>/dev/null | head -1)
[ -n "$tty" ] || { echo "no tty on godm's serial port"; exit 3; }
stty -F /dev/$tty 115200 -echo
{
echo "Hello from Linux $(uname -r), writing to /dev/$tty: godm's PCI 16550 (1b36:0002)"
echo "PCI functions this guest sees (00:05.0 and 00:06.0 are godm's):"
for d in $p/*; do
  drv=$(basename "$(readlink $d/driver 2>/dev/null)" 2>/dev/null)
  echo "  $(basename $d)  $(cat $d/vendor):$(cat $d/device)  ${drv:--}"
done
insmod /godmtest.ko
t=$p/0000:00:06.0
echo "4096 42" > $t/run
echo "godm test device: DMA fill of 4 KiB: $(cat $t/check); interrupts received: $(cat $t/irqs)"
grep -E "godmtest|ttyS" /proc/interrupts | sed 's/^/  /'
echo "Powering off."
} > /dev/$tty
`

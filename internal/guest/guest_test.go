package guest

import (
	"context"
	"encoding/binary"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"godm/internal/mpqemu"
)

// testFn is a minimal PCI function: IDs, a 4 KiB memory BAR0 with sizing,
// and one 32-bit register file behind it. It stands in for godm's own
// devices to prove the proxy path before they are wired in.
type testFn struct {
	mu      sync.Mutex
	cfg     [256]byte
	bar0    uint32
	regs    map[uint64]uint64
	sysmem  int
	touched bool
	resets  int
}

func newTestFn() *testFn {
	f := &testFn{regs: map[uint64]uint64{}}
	binary.LittleEndian.PutUint16(f.cfg[0:], 0x676f) // vendor "go"
	binary.LittleEndian.PutUint16(f.cfg[2:], 0x646d) // device "dm"
	f.cfg[0x0b] = 0xff                               // class: unassigned
	f.cfg[0x0e] = 0                                  // header type 0
	return f
}

func (f *testFn) ConfigRead(addr uint32, size int) uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if addr >= 0x10 && addr < 0x14 {
		return f.bar0 >> (8 * (addr - 0x10))
	}
	var v uint32
	for i := 0; i < size && int(addr)+i < len(f.cfg); i++ {
		v |= uint32(f.cfg[int(addr)+i]) << (8 * i)
	}
	return v
}

func (f *testFn) ConfigWrite(addr uint32, val uint32, size int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case addr == 0x10 && size == 4:
		f.bar0 = val &^ 0xfff // 4 KiB, 32-bit, non-prefetchable memory
	case addr == 4 && size >= 2:
		f.cfg[4], f.cfg[5] = byte(val), byte(val>>8)
	}
}

func (f *testFn) BARRead(addr uint64, size int, memory bool) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.touched = true
	return f.regs[addr-uint64(f.bar0)]
}

func (f *testFn) BARWrite(addr uint64, val uint64, size int, memory bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.touched = true
	f.regs[addr-uint64(f.bar0)] = val
}

func (f *testFn) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resets++
	f.bar0 = 0
	f.cfg[4], f.cfg[5] = 0, 0
	clear(f.regs)
}

func (f *testFn) SyncSysmem(r []mpqemu.Region) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sysmem++
	for _, x := range r {
		x.File.Close()
	}
}

func assets(t *testing.T) Assets {
	t.Helper()
	a, err := FindAssets(os.Getenv("GODM_GUEST_DIR"))
	if err != nil {
		t.Skipf("real-guest test needs the guest assets that scripts/test.sh prepares: %v", err)
	}
	return a
}

func TestGuestSeesProxiedFunction(t *testing.T) {
	a := assets(t)
	fn := newTestFn()
	script := `
d=/sys/bus/pci/devices/0000:00:05.0
echo "IDS $(cat $d/vendor) $(cat $d/device)"
base=$(awk 'NR==1{print $1}' $d/resource)
echo "BAR0 $base"
devmem $((base + 8)) 32 0x12345678
echo "READBACK $(devmem $((base + 8)) 32)"
`
	res, err := Run(context.Background(), Config{
		Assets:  a,
		Script:  script,
		Proxies: []Proxy{{Addr: "5.0", Dev: fn}},
		Timeout: 90 * time.Second,
	})
	if err != nil {
		t.Fatalf("Run: %v\nconsole:\n%s", err, res.Console)
	}
	if res.ExitStatus != 0 {
		t.Errorf("exit status %d", res.ExitStatus)
	}
	for _, want := range []string{"IDS 0x676f 0x646d", "READBACK 0x12345678"} {
		if !strings.Contains(res.Console, want) {
			t.Errorf("console lacks %q:\n%s", want, res.Console)
		}
	}
	fn.mu.Lock()
	defer fn.mu.Unlock()
	if !fn.touched || fn.regs[8] != 0x12345678 {
		t.Errorf("device saw touched=%v reg8=%#x, want the guest's write", fn.touched, fn.regs[8])
	}
	if fn.sysmem == 0 {
		t.Errorf("no SYNC_SYSMEM received")
	}
	if res.Shutdown != "guest-shutdown" || res.Boots != 1 || res.Resets != 0 {
		t.Errorf("shutdown %q, boots %d, resets %d; want guest-shutdown, 1, 0", res.Shutdown, res.Boots, res.Resets)
	}
	if res.Process == nil || !res.Process.Exited() || res.Process.ExitCode() != 0 {
		t.Errorf("QEMU process state %v, want exited with status 0", res.Process)
	}
}

// TestGuestRebootResetsProxy: with Config.Reboot a guest reset reboots the
// guest in place; QEMU resets its devices, so the proxied function gets
// DEVICE_RESET, and the second boot sees it at its reset values. The
// first boot leaves a mark in CMOS RAM (kept across QEMU's reset) so the
// script knows which boot it is.
func TestGuestRebootResetsProxy(t *testing.T) {
	a := assets(t)
	fn := newTestFn()
	res, err := Run(context.Background(), Config{
		Assets:  a,
		Script:  RebootOnce("echo FIRST; devmem $(( $(awk 'NR==1{print $1}' /sys/bus/pci/devices/0000:00:05.0/resource) + 8 )) 32 0x12345678", "echo SECOND"),
		Proxies: []Proxy{{Addr: "5.0", Dev: fn}},
		Reboot:  true,
		Timeout: 90 * time.Second,
	})
	if err != nil {
		t.Fatalf("Run: %v\nconsole:\n%s", err, res.Console)
	}
	for _, want := range []string{"FIRST", "SECOND"} {
		if !strings.Contains(res.Console, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	t.Logf("QMP events: %+v", res.Events)
	// Linux's reboot may try several reset methods (ACPI reset register,
	// keyboard controller, ...) before the CPU is reset; QEMU resets the
	// machine for each request it sees.
	if res.Boots != 2 || res.Resets < 1 || res.Shutdown != "guest-shutdown" || res.ExitStatus != 0 {
		t.Errorf("boots %d, resets %d, shutdown %q, exit %d; want 2, >= 1, guest-shutdown, 0", res.Boots, res.Resets, res.Shutdown, res.ExitStatus)
	}
	fn.mu.Lock()
	defer fn.mu.Unlock()
	// One DEVICE_RESET at QEMU's start-up system reset, one per guest reset.
	if fn.resets != 1+res.Resets {
		t.Errorf("DEVICE_RESET received %d times, want %d (start-up and %d guest resets)", fn.resets, 1+res.Resets, res.Resets)
	}
	if fn.regs[8] != 0 {
		t.Errorf("register 8 = %#x after the reset, want 0", fn.regs[8])
	}
	if t.Failed() {
		t.Logf("QMP events: %+v\nconsole:\n%s", res.Events, res.Console)
	}
}

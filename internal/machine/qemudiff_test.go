package machine

import (
	"context"
	"errors"
	"math/rand/v2"
	"os/exec"
	"testing"

	"godm/devices/chardev"
	"godm/devices/uart"
	"godm/hyp/xenabi"
	"godm/hyp/xensim"
	"godm/internal/qtest"
	"godm/internal/qtest/scripts"
	"godm/internal/qtest/simtarget"
	"godm/internal/testfake"
	"godm/ioreq"
)

// The differential tests of this file run the scripts of the devices'
// QEMU tests (internal/qtest/scripts) against QEMU's "pc" machine and
// against the whole godm machine the way a guest reaches it: every port
// step is an IN or OUT of a xensim vCPU, which Xen's logic in xensim turns
// into an ioreq for godm's ioreq server (or, for 0xcfc after 0xcf8, an
// IOREQ_TYPE_PCI_CONFIG request), and the interrupt edges are the ISA IRQ
// level changes godm set through XEN_DMOP_set_isa_irq_level. Deviations
// of the full machine from QEMU are documented in the scripts (Why).

// diffMemBytes is the guest RAM of both machines (QEMU -m 128).
const diffMemBytes = 128 << 20

// skipWithoutQEMU skips t when QEMU is not installed, with the reason the
// devices' QEMU tests give.
func skipWithoutQEMU(t *testing.T) {
	t.Helper()
	if _, err := qtest.Find(qtest.Options{}); errors.Is(err, exec.ErrNotFound) {
		t.Skipf("qemu-system-x86_64 not installed (scripts/test.sh installs qemu-system-x86): %v", err)
	}
}

// startQEMU starts QEMU ("-m 128 -serial null": COM1 without input, as
// the godm machine's) with its I/O APIC inputs intercepted, and returns a
// target watching the ISA IRQs in watch.
func startQEMU(t *testing.T, watch ...int) *qtest.QEMUTarget {
	t.Helper()
	return startQEMUSerial(t, 1, watch...)
}

// startQEMUSerial is startQEMU with n null serial ports (COM1..COMn).
func startQEMUSerial(t *testing.T, n int, watch ...int) *qtest.QEMUTarget {
	t.Helper()
	args := []string{"-m", "128"}
	for range n {
		args = append(args, "-serial", "null")
	}
	c, err := qtest.Start(qtest.Options{Args: args})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.InterceptIRQ("ioapic"); err != nil {
		t.Fatal(err)
	}
	return &qtest.QEMUTarget{C: c, Watch: watch}
}

// simMachine is a godm machine serving a two-vCPU xensim domain.
type simMachine struct {
	sim *xensim.Sim
	dom *xensim.Domain
	m   *Machine
}

// startSimMachine builds the xenfv machine (COM1 on a null backend, the
// i8042, the platform device) for a new xensim domain and serves it until
// the test ends.
func startSimMachine(t *testing.T) *simMachine {
	t.Helper()
	return startSimMachineSerial(t, 1)
}

// startSimMachineSerial is startSimMachine with n serial ports
// (COM1..COMn, null backends).
func startSimMachineSerial(t *testing.T, n int) *simMachine {
	t.Helper()
	return startSimMachineSpec(t, n, nil)
}

// startSimMachineSpec is startSimMachineSerial with the serial ports'
// clock.
func startSimMachineSpec(t *testing.T, n int, clock uart.Clock) *simMachine {
	t.Helper()
	xen := testfake.NewXen(t, xensim.Config{}, testfake.RAM(2, diffMemBytes))
	sim, dom := xen.Sim, xen.Dom
	serial := make([]chardev.Backend, n)
	for i := range serial {
		serial[i] = chardev.NewNull()
	}
	m, err := New(sim.Kernel(0), Spec{Dom: dom.ID(), VCPUs: 2, MemBytes: diffMemBytes,
		Serial: serial, SerialClock: clock, DeathPoll: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Close()
		for _, be := range serial {
			be.Close()
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &simMachine{sim: sim, dom: dom, m: m}
}

// target returns a simtarget on vCPU 0 watching the ISA IRQs in watch.
func (s *simMachine) target(watch ...int) *simtarget.Target {
	return simtarget.New(s.sim, s.dom, s.dom.VCPU(0), watch...)
}

// spread makes t run its steps on both vCPUs in turn.
func (s *simMachine) spread(t *simtarget.Target) *simtarget.Target {
	t.RoundRobin(s.dom.VCPU(0), s.dom.VCPU(1))
	return t
}

// freezeCOM replaces the machine's COMn UART by one whose clock never
// moves, wired exactly as New wires it (the port's ISA IRQ through
// set_isa_irq_level, a null backend). QEMU runs with -S, so its virtual
// clock stands still and its character-timeout interrupt never fires;
// godm's UART times it on the host clock, which would fire it (IIR 0xcc)
// whenever a slow step leaves received bytes in the FIFO for four
// character times. The replacement goes through the port space as any
// run-time change does (the ioreq server unmaps and maps the range).
func (s *simMachine) freezeCOM(t *testing.T, n int) {
	t.Helper()
	place, err := uart.COM(n)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.m.Spaces.PIO.Unregister(uint64(place.Base)); err != nil {
		t.Fatal(err)
	}
	be := chardev.NewNull()
	u := uart.New(uart.Config{IRQ: ioreq.NewISALine(s.m.DM, place.IRQ), Backend: be, Clock: &testfake.Clock{}}) // never advanced: frozen, as QEMU's clock under qtest
	t.Cleanup(func() { u.Close(); be.Close() })
	if _, err := uart.RegisterCOM(s.m.Spaces.PIO, n, u); err != nil {
		t.Fatal(err)
	}
}

// uartTargets returns QEMU and the godm machine (COM1 with a frozen
// clock), both watching IRQ 4; spread runs godm's steps on both vCPUs.
func uartTargets(t *testing.T, spread bool) (want, got qtest.Target) {
	t.Helper()
	skipWithoutQEMU(t)
	want = startQEMU(t, 4)
	s := startSimMachine(t)
	s.freezeCOM(t, 1)
	if spread {
		return want, s.spread(s.target(4))
	}
	return want, s.target(4)
}

func TestQEMUDiffXen_UART(t *testing.T) {
	for name, script := range scripts.UART(scripts.COM1) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			want, got := uartTargets(t, false)
			qtest.Diff(t, script, want, got)
		})
	}
}

// TestQEMUDiffXen_UARTUnfrozen runs the scripts that receive nothing (so
// no character timeout can arm) on the machine's own COM1, as New built
// it, host clock included.
func TestQEMUDiffXen_UARTUnfrozen(t *testing.T) {
	all := scripts.UART(scripts.COM1)
	for _, name := range []string{"defaults", "scratch and LCR", "divisor latch", "IER masks and THRE",
		"FIFO enable and reset bits", "wide accesses", "MSR deltas outside loopback"} {
		script, ok := all[name]
		if !ok {
			t.Fatalf("no UART script %q", name)
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			skipWithoutQEMU(t)
			want := startQEMU(t, 4)
			s := startSimMachine(t)
			qtest.Diff(t, script, want, s.target(4))
		})
	}
}

// TestQEMUDiffXen_UARTRandom runs the device test's random seeds; seeds
// 3 and 4 alternate godm's steps between the two vCPUs.
func TestQEMUDiffXen_UARTRandom(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run("seed", func(t *testing.T) {
			t.Parallel()
			want, got := uartTargets(t, seed > 2)
			qtest.Diff(t, scripts.UARTRandom(rand.New(rand.NewPCG(seed, 0x16550)), scripts.COM1, 1500), want, got)
		})
	}
}

// i8042Targets returns QEMU and the godm machine watching IRQ 1 and 12;
// spread runs godm's steps on both vCPUs.
func i8042Targets(t *testing.T, spread bool) (want, got qtest.Target) {
	t.Helper()
	skipWithoutQEMU(t)
	want = startQEMU(t, scripts.KeyboardIRQ, scripts.MouseIRQ)
	s := startSimMachine(t)
	if spread {
		return want, s.spread(s.target(scripts.KeyboardIRQ, scripts.MouseIRQ))
	}
	return want, s.target(scripts.KeyboardIRQ, scripts.MouseIRQ)
}

func TestQEMUDiffXen_I8042(t *testing.T) {
	for name, script := range scripts.I8042() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			want, got := i8042Targets(t, false)
			qtest.Diff(t, script, want, got)
		})
	}
}

// TestQEMUDiffXen_I8042Random runs the device test's random seeds; seeds
// 3 and 4 alternate godm's steps between the two vCPUs.
func TestQEMUDiffXen_I8042Random(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run("seed", func(t *testing.T) {
			t.Parallel()
			want, got := i8042Targets(t, seed > 2)
			qtest.Diff(t, scripts.I8042Random(rand.New(rand.NewPCG(seed, 0x8042)), 1500), want, got)
		})
	}
}

func TestQEMUDiffXen_PCIConfig(t *testing.T) {
	for _, tc := range []struct {
		name   string
		devfn  uint8
		serial int // COM ports on both machines (PIIX4's decode registers show them)
		dev    []scripts.Deviation
	}{
		{"i440FX 00:00.0", 0, 1, nil},
		{"PIIX3 00:01.0", 1 << 3, 1, nil},
		{"PIIX4 PM 00:01.3", 1<<3 | PMFunction, 1, scripts.PIIX4PMDeviations()},
		{"PIIX4 PM 00:01.3 without serial ports", 1<<3 | PMFunction, 0, scripts.PIIX4PMDeviations()},
		{"PIIX4 PM 00:01.3 with COM1 and COM2", 1<<3 | PMFunction, 2, scripts.PIIX4PMDeviations()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			skipWithoutQEMU(t)
			want := startQEMUSerial(t, tc.serial)
			s := startSimMachineSerial(t, tc.serial)
			// Address writes on vCPU 0, data cycles on vCPU 1: Xen
			// latches 0xcf8 per domain.
			qtest.Diff(t, scripts.PCIConfig(tc.devfn, tc.dev...), want, s.spread(s.target()))
		})
	}
}

// TestQEMUDiffXen_ConfigMechanism runs configuration mechanism #1 through
// Xen's path: Xen latches a dword written to 0xcf8 for its own decoding of
// 0xcfc but forwards the access (xen/arch/x86/hvm/io.c hvm_access_cf8), so
// the readback Linux's probe needs (arch/x86/pci/direct.c pci_check_type1)
// comes from godm's host bridge, as from QEMU's (hw/pci/pci_host.c).
func TestQEMUDiffXen_ConfigMechanism(t *testing.T) {
	skipWithoutQEMU(t)
	want := startQEMU(t)
	s := startSimMachine(t)
	qtest.Diff(t, scripts.ConfigMechanism(""), want, s.target())
}

// TestXenS3Suspend writes SLP_TYP for S3 (the DSDT's \_S3 package, 1)
// with SLP_EN into PM1a_CNT through a vCPU: the machine suspends the
// domain the way QEMU's Xen suspend notifier does (HVM_PARAM_ACPI_S_STATE
// = 3, hw/i386/xen/xen-hvm.c) and shuts nothing down; PM1a_CNT keeps
// SLP_TYP and SCI_EN, not the write-only SLP_EN.
func TestXenS3Suspend(t *testing.T) {
	s := startSimMachine(t)
	v := s.dom.VCPU(0)
	const pm1aCnt = 0xb004 // ACPI_PM1A_CNT_BLK_ADDRESS_V1
	mark := s.sim.LastSeq()
	if got := s.dom.HVMParam(xenabi.HVM_PARAM_ACPI_S_STATE); got != 0 {
		t.Fatalf("ACPI S state before the write = %d, want 0", got)
	}
	if err := v.Out(pm1aCnt, 2, 1<<13|1<<10|1); err != nil {
		t.Fatal(err)
	}
	if got := s.dom.HVMParam(xenabi.HVM_PARAM_ACPI_S_STATE); got != 3 {
		t.Errorf("ACPI S state after S3 = %d, want 3", got)
	}
	got, err := v.In(pm1aCnt, 2)
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(1<<10 | 1); got != want {
		t.Errorf("PM1a_CNT after S3 = %#x, want %#x", got, want)
	}
	for _, e := range s.sim.EventsSince(mark) {
		if e.Kind == xensim.EventShutdown {
			t.Errorf("S3 shut the domain down: %v", e)
		}
	}
	if st := s.m.PM.Stats(); st.Suspends != 1 || st.PowerOffs != 0 || st.Errors != 0 {
		t.Errorf("PM stats %+v, want one suspend", st)
	}
}

// TestXenI8042ResetPulse sends the i8042's output-port pulse commands
// through a vCPU. A pulse with bit 0 clear pulses the CPU reset line
// (QEMU hw/input/pckbd.c: 0xf0-0xff with bit 0 clear is a reset), which
// the machine turns into a reboot (XEN_DMOP_remote_shutdown,
// SHUTDOWN_reboot); bit 0 set pulses nothing.
func TestXenI8042ResetPulse(t *testing.T) {
	for _, tc := range []struct {
		cmd    uint64
		reboot bool
	}{
		{0xfe, true},
		{0xf0, true},
		{0xff, false},
		{0xf1, false},
	} {
		s := startSimMachine(t)
		v := s.dom.VCPU(0)
		mark := s.sim.LastSeq()
		if err := v.Out(scripts.I8042Status, 1, tc.cmd); err != nil {
			t.Fatal(err)
		}
		// The reset requester calls Xen while the vCPU's request is
		// handled: the event is recorded before the OUT completes.
		var shutdowns []xensim.Event
		for _, e := range s.sim.EventsSince(mark) {
			if e.Kind == xensim.EventShutdown {
				shutdowns = append(shutdowns, e)
			}
		}
		switch {
		case tc.reboot && (len(shutdowns) != 1 || shutdowns[0].Data != xenabi.SHUTDOWN_reboot):
			t.Errorf("command %#x: shutdown events %v, want one reboot", tc.cmd, shutdowns)
		case !tc.reboot && len(shutdowns) != 0:
			t.Errorf("command %#x: shutdown events %v, want none", tc.cmd, shutdowns)
		}
		if tc.reboot {
			if got := s.dom.ShutdownReason(); got != xenabi.SHUTDOWN_reboot {
				t.Errorf("command %#x: domain shutdown reason %d, want reboot (%d)", tc.cmd, got, xenabi.SHUTDOWN_reboot)
			}
		}
	}
}

// TestQEMUDiffXen_PMIO programs 00:01.3 as hvmloader does and compares
// the PM I/O registers the device model owns under Xen (PM1a_CNT without
// SLP_EN, GPE0, the PCI hotplug block) and the SCI (IRQ 9).
func TestQEMUDiffXen_PMIO(t *testing.T) {
	skipWithoutQEMU(t)
	want := startQEMU(t, scripts.SCI)
	s := startSimMachine(t)
	qtest.Diff(t, scripts.PIIX4PMIO(), want, s.target(scripts.SCI))
}

// TestQEMUDiffXen_COM2 runs the UART scripts on the second serial port
// (0x2f8, IRQ 3) of machines with two, through both vCPUs.
func TestQEMUDiffXen_COM2(t *testing.T) {
	const com2, irq = 0x2f8, 3
	for name, script := range scripts.UART(com2) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			skipWithoutQEMU(t)
			want := startQEMUSerial(t, 2, irq)
			s := startSimMachineSerial(t, 2)
			s.freezeCOM(t, 2)
			qtest.Diff(t, script, want, s.spread(s.target(irq)))
		})
	}
}

// TestQEMUDiffXen_PCIConfigRandom runs random configuration reads and
// writes of every width on the three platform functions at once (the
// devices' own tests run them one function at a time); seed 2 alternates
// the vCPUs.
func TestQEMUDiffXen_PCIConfigRandom(t *testing.T) {
	for seed := uint64(1); seed <= 2; seed++ {
		t.Run("seed", func(t *testing.T) {
			t.Parallel()
			skipWithoutQEMU(t)
			want := startQEMU(t)
			s := startSimMachine(t)
			got := s.target()
			if seed == 2 {
				s.spread(got)
			}
			script := scripts.PCIConfigRandom(rand.New(rand.NewPCG(seed, 0xcf8)), 3000, []uint8{0, 1 << 3, 1<<3 | PMFunction},
				map[uint8][]scripts.Deviation{1<<3 | PMFunction: scripts.PIIX4PMDeviations()})
			qtest.Diff(t, script, want, got)
		})
	}
}

// TestQEMUDiffXen_SystemReset dirties every shared device, resets both
// machines (QEMU's system_reset; godm's board reset) and compares every
// register afterwards.
func TestQEMUDiffXen_SystemReset(t *testing.T) {
	skipWithoutQEMU(t)
	want := startQEMU(t, scripts.KeyboardIRQ, 4, scripts.SCI, scripts.MouseIRQ)
	s := startSimMachineSpec(t, 1, &testfake.Clock{})
	got := s.target(scripts.KeyboardIRQ, 4, scripts.SCI, scripts.MouseIRQ)
	got.OnReset = s.m.Board.SystemReset
	qtest.Diff(t, scripts.SystemReset(map[uint8][]scripts.Deviation{scripts.PMDevfn: scripts.PIIX4PMDeviations()}), want, got)
}

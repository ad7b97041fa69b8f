package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"godm/devices/testdev"
	"godm/hyp/xenabi"
	"godm/hyp/xensim"
	"godm/internal/cli"
	"godm/internal/machine"
	"godm/ioreq"
)

// cmdSim runs godm on the simulated Xen: a domain, godm's xenfv platform
// served through its real ioreq path, and a built-in guest workload on the
// simulated vCPUs that exercises it and prints what happened.
func cmdSim(ctx context.Context, args []string, out, w io.Writer) error {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	fs.SetOutput(w)
	var mf cli.MachineFlags
	mf.Register(fs, 2)
	linux := fs.Bool("linux", false, "boot a real Linux guest (QEMU TCG as its CPU) whose PCI devices godm serves")
	guestDir := fs.String("guest-dir", os.Getenv("GODM_GUEST_DIR"), "guest kernel and busybox (from scripts/guest-assets.sh), for -linux")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("sim: unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	for _, name := range setFlags(fs) {
		set[name] = true
	}
	if *linux {
		// The Linux demo's machine is fixed (internal/e2e's): a machine
		// flag would be ignored, so it is refused.
		for _, name := range setFlags(fs) {
			if name != "linux" && name != "guest-dir" {
				return fmt.Errorf("sim -linux: -%s does not apply: the Linux demo runs a fixed machine (a PCI serial port and the test device, proxied into QEMU)", name)
			}
		}
		return simLinux(ctx, *guestDir, out)
	}
	if set["guest-dir"] {
		return errors.New("sim: -guest-dir only applies with -linux")
	}
	if mf.VCPUs < 1 {
		return fmt.Errorf("sim: -vcpus %d: the simulated domain needs at least 1", mf.VCPUs)
	}
	if mf.MemMiB == 0 {
		if set["mem"] {
			return errors.New("sim: -mem 0: the simulated domain needs RAM (1 MiB or more)")
		}
		mf.MemMiB = 64
	}
	if len(mf.Serial) == 0 {
		mf.Serial = cli.StringList{"stdio"}
	}
	if mf.TestSlot < 0 && !set["test-device"] {
		mf.TestSlot = 5
	}
	log := cli.NewLogger(w, mf.Verbose)
	spec, backends, err := mf.Spec(log, w)
	if err != nil {
		return err
	}
	defer backends.Close()
	ram, err := spec.Layout()
	if err != nil {
		return err
	}

	sim := xensim.New(xensim.Config{})
	defer sim.Close()
	// The domain's RAM where Xen's toolstack puts it: below the PCI hole
	// and from 4 GiB up (memory/layout).
	dom, err := sim.CreateDomain(xensim.DomainConfig{VCPUs: mf.VCPUs, RAM: xensim.LayoutRAM(ram)})
	if err != nil {
		return err
	}
	spec.Dom = dom.ID()
	m, err := machine.New(sim.Kernel(0), spec)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := backends.Start(); err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- m.Serve(sctx) }()

	fmt.Fprintf(out, "godm: serving simulated %v (%d vCPUs, %v) as ioreq server %d\n\n", dom.ID(), mf.VCPUs, ram, m.Server.ID())
	// The workload runs until done or until a signal (ctx) interrupts
	// it. Interrupted, it may be inside a vCPU access that nobody will
	// answer once serving stops: tearing the machine down destroys the
	// ioreq server, which fails that access at once.
	worked := make(chan error, 1)
	go func() { worked <- workload(ctx, out, sim, dom, mf.TestSlot) }()
	var werr error
	select {
	case werr = <-worked:
	case <-ctx.Done():
	}
	cancel()
	if err := <-served; err != nil {
		return err
	}
	var c ioreq.Counters
	m.Server.Stats(&c)
	cerr := m.Close()
	if ctx.Err() != nil {
		<-worked // fails or ends now that the server is gone
		werr = nil
		fmt.Fprintf(out, "\ngodm: interrupted: %v\n", context.Cause(ctx))
	}
	if cerr != nil {
		return cerr
	}
	fmt.Fprintf(out, "\nioreq server: %d requests (%d PIO, %d MMIO, %d PCI config), %d rep elements, %d buffered; service time p50 %v p99 %v\n",
		c.Total(), c.Sync[ioreq.KindPIO], c.Sync[ioreq.KindMMIO], c.Sync[ioreq.KindPCIConfig], c.Reps, bufTotal(&c),
		c.LatencyQuantile(0.5), c.LatencyQuantile(0.99))
	// Cumulative counts: a long run wraps the simulator's event ring.
	created := sim.Count(dom.ID(), xensim.EventIOReqServer, "create")
	destroyed := sim.Count(dom.ID(), xensim.EventIOReqServer, "destroy")
	if left := int64(created) - int64(destroyed); left != 0 {
		return fmt.Errorf("sim: teardown left %d of %d ioreq servers in the hypervisor", left, created)
	}
	fmt.Fprintf(out, "teardown: %d ioreq server destroyed, nothing left in the hypervisor\n", destroyed)
	return werr
}

func bufTotal(c *ioreq.Counters) uint64 {
	var n uint64
	for _, v := range c.Buffered {
		n += v
	}
	return n
}

// workload is the simulated guest: what firmware and a driver would do.
// testSlot is the test device's slot (negative: none).
func workload(ctx context.Context, out io.Writer, sim *xensim.Sim, dom *xensim.Domain, testSlot int) error {
	v := dom.VCPU(0)
	step := func(format string, a ...any) { fmt.Fprintf(out, "guest: "+format+"\n", a...) }

	// 1. Enumerate PCI bus 0 through 0xcf8/0xcfc, as firmware does.
	step("scanning PCI bus 0 through 0xcf8/0xcfc")
	for dev := uint32(0); dev < 32; dev++ {
		for fn := uint32(0); fn < 8; fn++ {
			sbdf := dev<<3 | fn
			id, err := v.PCIConfigRead(sbdf, 0, 4)
			if err != nil {
				return err
			}
			if id == 0xffffffff {
				if fn == 0 {
					break
				}
				continue
			}
			class, _ := v.PCIConfigRead(sbdf, 8, 4)
			step("  00:%02x.%d  %04x:%04x  class %06x  %s", dev, fn, id&0xffff, id>>16, class>>8, pciName(uint16(id), uint16(id>>16)))
			if fn == 0 {
				if ht, _ := v.PCIConfigRead(sbdf, 0x0c, 4); ht>>16&0x80 == 0 {
					break
				}
			}
		}
	}

	// 2. COM1: the string goes out through the UART to its backend.
	if err := ctx.Err(); err != nil {
		return err
	}
	step("writing to COM1 (0x3f8), byte by byte:")
	for _, c := range []byte("  Hello from a simulated HVM guest, served by godm\r\n") {
		if err := v.Out(0x3f8, 1, uint64(c)); err != nil {
			return err
		}
	}
	msg := []byte("  ...and this line with one rep outsb (data_is_ptr from guest RAM)\r\n")
	if err := dom.WriteRAM(0x30000, msg); err != nil {
		return err
	}
	if err := v.RepOuts(0x3f8, 1, uint32(len(msg)), 0x30000, false); err != nil {
		return err
	}
	select { // let the backend flush before we print more
	case <-time.After(50 * time.Millisecond):
	case <-ctx.Done():
		return ctx.Err()
	}
	lsr, _ := v.In(0x3fd, 1)
	step("COM1 LSR = %#02x (THR empty, transmitter idle)", lsr)

	// 3. Xen platform device and i8042.
	magic, _ := v.In(0x10, 2)
	step("Xen platform device magic at port 0x10 = %#04x", magic)
	v.Out(0x64, 1, 0xaa)
	st, _ := v.In(0x60, 1)
	step("i8042 self-test answer = %#02x", st)

	// 4. The test device: BARs, MSI-X, a DMA into guest RAM.
	if err := ctx.Err(); err != nil {
		return err
	}
	if testSlot >= 0 {
		sbdf := uint32(testSlot << 3)
		if id, _ := v.PCIConfigRead(sbdf, 0, 4); id != 0x646d676f {
			return fmt.Errorf("no test device at 00:%02x.0 (reads %#x)", testSlot, id)
		}
		if err := testDeviceDMA(out, sim, dom, v, sbdf); err != nil {
			return err
		}
	}

	// 5. Bursts of port reads: the round trip through xensim and godm, with
	// the simulated vCPU blocking on its event channel until godm answers
	// (as a Xen vCPU does) and with it polling its slot.
	const n = 20000
	for _, mode := range []struct {
		name string
		spin int
	}{{"blocking", 0}, {"polling", 1 << 20}} {
		v.SetSpin(mode.spin)
		start := time.Now()
		for i := 0; i < n; i++ {
			if _, err := v.In(0x3ff, 1); err != nil {
				return err
			}
			if i%1024 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
		}
		step("%d COM1 scratch-register reads, vCPU %s: %v per round trip (simulated vCPU → ioreq page → godm → back)",
			n, mode.name, time.Since(start)/n)
	}
	v.SetSpin(0)

	// 6. ACPI S5 through the PM1a control register.
	if err := ctx.Err(); err != nil {
		return err
	}
	seq := sim.LastSeq()
	if err := v.Out(xenabi.ACPI_PM1A_CNT_BLK_ADDRESS_V1, 2, 1<<13); err != nil {
		return err
	}
	ev, err := sim.WaitEvent(seq, 5*time.Second, func(e xensim.Event) bool { return e.Kind == xensim.EventShutdown })
	if err != nil {
		return errors.New("the guest's S5 request did not reach the hypervisor")
	}
	step("ACPI S5 (PM1a_CNT SLP_EN) → hypervisor saw remote_shutdown(reason %d = poweroff)", ev.Data)
	return ctx.Err()
}

func testDeviceDMA(out io.Writer, sim *xensim.Sim, dom *xensim.Domain, v *xensim.VCPU, sbdf uint32) error {
	step := func(format string, a ...any) { fmt.Fprintf(out, "guest: "+format+"\n", a...) }
	const bar0, bar2, buf = 0xf0000000, 0xf0001000, 0x20000
	v.PCIConfigWrite(sbdf, 0x10, 4, bar0)
	v.PCIConfigWrite(sbdf, 0x18, 4, bar2)
	v.PCIConfigWrite(sbdf, 0x04, 2, 0x6) // memory decoding, bus master
	mg, _ := v.MMIORead(bar0+testdev.RegMagic, 4)
	step("test device BAR0 at %#x, MAGIC = %#x", bar0, mg)
	// MSI-X: find the capability, program vector 0, enable.
	capOff := uint32(0)
	p, _ := v.PCIConfigRead(sbdf, 0x34, 1)
	for p != 0 {
		id, _ := v.PCIConfigRead(sbdf, uint32(p), 1)
		if id == 0x11 {
			capOff = uint32(p)
			break
		}
		p, _ = v.PCIConfigRead(sbdf, uint32(p)+1, 1)
	}
	if capOff == 0 {
		return errors.New("test device has no MSI-X capability")
	}
	v.MMIOWrite(bar2+0, 4, 0xfee00000)
	v.MMIOWrite(bar2+4, 4, 0)
	v.MMIOWrite(bar2+8, 4, 0x31)
	v.MMIOWrite(bar2+12, 4, 0)
	v.PCIConfigWrite(sbdf, capOff+2, 2, 1<<15)
	seq := sim.LastSeq()
	v.MMIOWrite(bar0+testdev.RegDMALo, 4, buf)
	v.MMIOWrite(bar0+testdev.RegDMAHi, 4, 0)
	v.MMIOWrite(bar0+testdev.RegDMALen, 4, 16)
	v.MMIOWrite(bar0+testdev.RegSeed, 4, 0x41)
	v.MMIOWrite(bar0+testdev.RegDoorbell, 4, 1)
	ev, err := sim.WaitEvent(seq, 5*time.Second, func(e xensim.Event) bool { return e.Kind == xensim.EventMSI })
	if err != nil {
		return errors.New("the test device's MSI-X never reached the hypervisor")
	}
	got := make([]byte, 16)
	dom.ReadRAM(buf, got)
	step("test device DMA'd %q into guest RAM at %#x and raised MSI-X: inject_msi(addr %#x, data %#x)", got, buf, ev.Addr, ev.Data)
	return nil
}

func pciName(vendor, device uint16) string {
	switch uint32(vendor)<<16 | uint32(device) {
	case 0x80861237:
		return "i440FX host bridge"
	case 0x80867000:
		return "PIIX3 ISA bridge"
	case 0x80867113:
		return "PIIX4 ACPI power management"
	case 0x58530001:
		return "Xen platform device"
	case 0x676f646d:
		return "godm test device"
	case 0x1b360002:
		return "PCI 16550 UART"
	}
	return ""
}

// setFlags returns the names of the flags given on the command line, in
// lexical order.
func setFlags(fs *flag.FlagSet) []string {
	var names []string
	fs.Visit(func(f *flag.Flag) { names = append(names, f.Name) })
	return names
}

package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"godm/devices"
	"godm/devices/testdev"
	"godm/devices/uart"
	"godm/devices/uart/pciserial"
	"godm/hyp/foreign"
	"godm/hyp/kernel"
	"godm/hyp/privcmd"
	"godm/hyp/xensim"
	"godm/internal/board"
	"godm/ioreq"
	"godm/irq"
	"godm/memory"
	"godm/pci"
)

// The guest the scenarios run: RAM below the VGA hole and from 1 MiB to
// ramTop, a UART per vCPU, godm's test device on PCI slot testSlot with its
// register BAR at testMMIO and its I/O BAR at testIO.
const (
	ramTop   = 16 << 20
	repBuf   = 0x200000 // page-aligned guest buffer of the rep scenario
	testSlot = 4
	testMMIO = 0xfebf0000
	testIO   = 0xc000
	// uartLSR is the line status register, the register a guest's 8250
	// driver polls most.
	uartLSR = 5
	// uartSCR is the scratch register, the target of buffered writes.
	uartSCR = 7
)

// uartBase returns the port base of the UART of vCPU i: COM1 for vCPU 0,
// then private 8-port ranges, so that every vCPU has its own device.
func uartBase(i int) uint16 {
	if i == 0 {
		return 0x3f8
	}
	return uint16(0x1000 + 0x10*i)
}

// design says which server answers the guest.
type design uint8

const (
	// godmPoll is godm's ioreq.Server with its default adaptive polling.
	godmPoll design = iota
	// godmBlock is godm's ioreq.Server with polling disabled.
	godmBlock
	// classic is the single-threaded QEMU-style loop (see loop).
	classic
	// nullPoll and nullBlock answer without dispatching: the simulator's
	// own cost (see loop).
	nullPoll
	nullBlock
	// noServer leaves the accesses unclaimed: Xen's routing and null
	// handler only.
	noServer
	// godmBlockHeld is godmBlock with the worker keeping its P while it
	// sleeps (ioreq.WorkerConfig.KeepP).
	godmBlockHeld
	// godmPollWide is godmPoll with a polling window of wideSpin instead
	// of ioreq.DefaultSpin: wide enough for the think80us gap.
	godmPollWide
)

// wideSpin is godmPollWide's polling window.
const wideSpin = 200 * time.Microsecond

func (d design) String() string {
	return [...]string{"godm-poll", "godm-block", "classic", "null-poll", "null-block", "unclaimed", "godm-block-held", "godm-poll-wide"}[d]
}

// rig is one simulated guest with its devices and the server of one design.
type rig struct {
	sim   *xensim.Sim
	dom   *xensim.Domain
	k     kernel.Kernel
	p     *privcmd.Handle
	bus   *devices.Bus
	pci   *pci.Bus
	board *board.Board
	cache *memory.MapCache
	uarts []*uart.UART
	back  *backend
	test  *testdev.Device
	sbdf  devices.SBDF

	srv  *ioreq.Server
	loop *loop
	// repLast is the last dword of the rep scenario's buffer.
	repLast [4]byte

	cancel context.CancelFunc
	served chan error
}

// newRig builds a guest with vcpus vCPUs and starts the server of design d.
func newRig(vcpus int, d design) (_ *rig, err error) {
	r := &rig{sim: xensim.New(xensim.Config{IOReqTimeout: 30 * time.Second})}
	defer func() {
		if err != nil {
			err = errors.Join(err, r.close())
		}
	}()
	r.dom, err = r.sim.CreateDomain(xensim.DomainConfig{VCPUs: vcpus,
		RAM: []xensim.Region{{GPA: 0, Size: 0xa0000}, {GPA: 0x100000, Size: ramTop - 0x100000}}})
	if err != nil {
		return nil, err
	}
	r.k = r.sim.Kernel(0)
	if r.p, err = privcmd.Open(r.k); err != nil {
		return nil, err
	}
	p, dom := r.p, r.dom.ID()
	r.cache, err = memory.NewMapCache(memory.MapperFunc(func(gfns []uint64, w bool) (memory.Mapping, error) {
		return foreign.Map(p, dom, w, gfns)
	}), memory.MapCacheConfig{})
	if err != nil {
		return nil, err
	}
	if err := r.buildDevices(vcpus); err != nil {
		return nil, err
	}
	targets := ioreq.Targets{Memory: r.cache, Invalidate: r.cache.Invalidate}
	switch d {
	case godmPoll, godmBlock, godmBlockHeld, godmPollWide:
		wc := ioreq.WorkerConfig{}
		switch d {
		case godmBlock, godmBlockHeld:
			wc.Spin = -1
		case godmPollWide:
			wc.Spin = wideSpin
		}
		if d == godmBlockHeld {
			wc.KeepP = 2 * time.Millisecond
		}
		// The default worker count of the machine, not of the raised
		// GOMAXPROCS the vCPUs run under (see runRig).
		r.srv, err = ioreq.NewServer(r.p, r.k, ioreq.Config{Dom: dom, VCPUs: vcpus, Bus: r.bus, Worker: wc, Targets: targets,
			Workers: ioreq.DefaultWorkers(vcpus)})
	case classic, nullPoll, nullBlock:
		r.loop, err = newLoop(r.p, r.k, dom, vcpus, r.bus, targets, d)
	case noServer:
		return r, nil
	}
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.served = make(chan error, 1)
	go func() {
		if r.srv != nil {
			r.served <- r.srv.Serve(ctx)
			return
		}
		r.served <- r.loop.serve(ctx)
	}()
	return r, nil
}

// buildDevices puts the guest's devices on a fresh bus: one UART per vCPU
// and the test device with both BARs decoding, plugged through the board's
// driver table as -device entries are. vCPUs 0-3 get ISA serial ports
// (isa-serial, index 0-3: QEMU allows four); more get pci-serial functions
// whose I/O BAR is placed at uartBase(i), one handler indirection more on
// their accesses (the BAR's own, allocation-free).
func (r *rig) buildDevices(vcpus int) error {
	r.bus = devices.NewBus()
	r.back = newBackend()
	if err := r.bus.PIO.Register(backendPort, 1, r.back); err != nil {
		return fmt.Errorf("bench: back-end device: %w", err)
	}
	env := board.Env{
		Spaces: r.bus,
		ISA:    func(uint8) irq.Line { return irq.LineFunc(func(bool) {}) },
	}
	if r.cache != nil {
		env.Memory = r.cache
	} else {
		// No Xen (host-side probes): the test device's DMA, which no
		// probe starts, would land in a small flat memory.
		env.Memory = memory.NewFlat(0, 1<<20)
	}
	var err error
	if r.board, err = board.New(env); err != nil {
		return err
	}
	var entries []board.Entry
	for i := range vcpus {
		id := fmt.Sprintf("uart%d", i)
		if i < 4 {
			entries = append(entries, board.Entry{Driver: "isa-serial", Props: map[string]string{
				"id": id, "index": fmt.Sprint(i), "iobase": fmt.Sprint(uartBase(i))}})
		} else {
			entries = append(entries, board.Entry{Driver: board.PCISerialDriver, Props: map[string]string{"id": id}})
		}
	}
	entries = append(entries, board.Entry{Driver: board.TestDevice, Props: map[string]string{
		"id": "td", "addr": fmt.Sprintf("%02x.0", testSlot)}})
	if err := r.board.Build(entries); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	r.pci = r.board.PCI
	for i := range vcpus {
		switch d := r.board.Device(fmt.Sprintf("uart%d", i)).Dev.(type) {
		case *board.ISASerial:
			r.uarts = append(r.uarts, d.UART)
		case *pciserial.Device:
			sbdf := d.PCI.SBDF()
			r.bus.PCI.Write(sbdf, pci.RegBAR0, 4, 0, uint64(uartBase(i)))
			r.bus.PCI.Write(sbdf, pci.RegCommand, 2, 0, pci.CommandIO)
			r.uarts = append(r.uarts, d.UART)
		}
	}
	td := r.board.Device("td")
	r.test, r.sbdf = td.Dev.(*testdev.Device), td.PCI.SBDF()
	// Program the BARs and enable decoding as firmware would.
	r.bus.PCI.Write(r.sbdf, pci.RegBAR0, 4, 0, testMMIO)
	r.bus.PCI.Write(r.sbdf, pci.RegBAR0+4, 4, 0, testIO)
	r.bus.PCI.Write(r.sbdf, pci.RegCommand, 2, 0, pci.CommandIO|pci.CommandMemory)
	if got := r.bus.MMIO.Read(testMMIO, 4, 0); got != testdev.Magic {
		return fmt.Errorf("bench: test device BAR0 reads %#x, want the magic %#x", got, testdev.Magic)
	}
	for i := range vcpus {
		// LSR with an empty transmitter: each vCPU's port answers.
		if got := r.bus.PIO.Read(uint64(uartBase(i))+uartLSR, 1, 0); got != 0x60 {
			return fmt.Errorf("bench: UART %d's LSR reads %#x, want 0x60", i, got)
		}
	}
	return nil
}

// buildDevicesNoXen builds the devices of a one-vCPU guest without a
// hypervisor, for host-side probes.
func (r *rig) buildDevicesNoXen() error {
	if err := r.buildDevices(1); err != nil {
		r.closeDevices()
		return err
	}
	return nil
}

// closeDevices releases the devices' goroutines and timers.
func (r *rig) closeDevices() error {
	var errs []error
	if r.board != nil {
		// The board closes its devices (the UARTs, the test device).
		errs = append(errs, r.board.Close())
		r.board = nil
	}
	r.test = nil
	r.uarts = nil
	if r.back != nil {
		r.back.close()
		r.back = nil
	}
	return errors.Join(errs...)
}

// serverThreads returns how many OS threads the rig's server runs on.
func (r *rig) serverThreads(vcpus int) int {
	switch {
	case r.srv != nil:
		return ioreq.DefaultWorkers(vcpus)
	case r.loop != nil:
		return 1
	}
	return 0
}

// handled returns the number of synchronous requests the server answered.
func (r *rig) handled() uint64 {
	switch {
	case r.srv != nil:
		var c ioreq.Counters
		r.srv.Stats(&c)
		var n uint64
		for _, x := range c.Sync {
			n += x
		}
		return n
	case r.loop != nil:
		return r.loop.handled.Load()
	}
	return 0
}

// stages returns godm's workers' stage record so far (nil for other
// designs).
func (r *rig) stages() *Stages {
	if r.srv == nil {
		return nil
	}
	var c ioreq.Counters
	r.srv.Stats(&c)
	return stagesOf(&c)
}

// close stops the server and releases everything; it reports the server's
// error and any protocol violation the simulator recorded.
func (r *rig) close() error {
	var errs []error
	if r.cancel != nil {
		r.cancel()
		if err := <-r.served; err != nil {
			errs = append(errs, err)
		}
		r.cancel = nil
	}
	if r.srv != nil {
		errs = append(errs, r.srv.Close())
	}
	if r.loop != nil {
		errs = append(errs, r.loop.close())
	}
	errs = append(errs, r.closeDevices())
	if r.cache != nil {
		r.cache.Close()
	}
	if r.p != nil {
		errs = append(errs, r.p.Close())
	}
	if r.sim != nil {
		for _, v := range r.sim.Violations() {
			errs = append(errs, fmt.Errorf("bench: protocol violation: %v", v))
		}
		errs = append(errs, r.sim.Close())
	}
	return errors.Join(errs...)
}

package bench

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"time"

	"godm/devices"
	"godm/devices/testdev"
	"godm/hyp/xenabi"
	"godm/hyp/xensim"
	"godm/ioreq"
)

// vcpuSpin is how often a polling vCPU re-reads its slot before it blocks:
// tens of microseconds of back-to-back reads, longer than a polling server
// takes to answer, about as long as its polling window (ioreq.DefaultSpin),
// and short enough that vCPUs waiting behind others (more vCPUs than
// cores) go to sleep and leave the cores to the ones being served.
const vcpuSpin = 1 << 12

// burstWrites is a full buffered ring of one-slot writes
// (IOREQ_BUFFER_SLOT_NUM).
const burstWrites = ioreq.RingSlots

// repCount is the element count of the rep scenario: 4 KiB of dwords, one
// request (a page-aligned buffer is not split).
const repCount = 1024

// Scenario is one measurement: a workload on simulated vCPUs against one
// server design, a physical floor, or a host-side probe.
type Scenario struct {
	// Name identifies the scenario: group/workload/mode/design.
	Name string
	// Doc says what one operation is.
	Doc string
	// Ops is the number of operations per trial (all vCPUs together) of
	// the full run; ShortOps of the CI-sized run.
	Ops, ShortOps int
	// Floor, Classic and Sim name the scenarios this one's median latency
	// (Floor, Sim) and throughput (Classic) are compared with (empty:
	// none).
	Floor, Classic, Sim string
	// Dist asks for the row's full distribution (min, p25, median, p75,
	// p90, p99) in the report's distribution table.
	Dist bool
	// Plot names the panel of the picture the scenario's latency
	// histogram is drawn in (empty: not drawn).
	Plot string

	vcpus    int
	design   design
	vcpuSpin int
	perOp    int // requests per operation (for the request rate)
	// noSpareP runs the scenario with a P for each vCPU and each server
	// thread and none to spare, so that a goroutine a handler readies runs
	// only when a thread lets go of its P (see backend).
	noSpareP bool
	// compete, if not zero, runs the scenario on a shared host: no P to
	// spare and the competing load it names (competeCPU, competeGo; see
	// competitor).
	compete int
	// think is the guest's own work between two operations (not timed):
	// the box's guest reads the TSC around each access, and Xen traps
	// each read.
	think time.Duration
	// op performs operation i on vCPU v of r and checks its answer when
	// the design dispatches to the devices.
	op func(r *rig, v *xensim.VCPU, vi, i int, check bool) error
	// verify, if set, checks the devices' state after the measurement
	// (when the design dispatches).
	verify func(r *rig) error
	// probe runs a scenario that needs no rig (floors, bus dispatch).
	probe func(n int) (Result, error)
}

// Modes used in scenario names, and the picture's panels.
const (
	modePoll   = "poll"
	modeBlock  = "block"
	panelPoll  = "polled: one vCPU's UART read against the cache-line floor"
	panelBlock = "blocking: one vCPU's UART read against the eventfd floor"
)

// Scenarios returns every scenario in the order they run within a trial.
func Scenarios() []*Scenario {
	var s []*Scenario
	add := func(x *Scenario) { s = append(s, x) }

	// Physical limits.
	add(&Scenario{Name: "floor/cache-line", Doc: "two threads ping-pong one cache line", Ops: 200000, ShortOps: 2000, Plot: panelPoll,
		probe: func(n int) (Result, error) { return CacheLineFloor(n), nil }})
	add(&Scenario{Name: "floor/eventfd", Doc: "two threads ping-pong through eventfds", Ops: 40000, ShortOps: 500, Plot: panelBlock,
		probe: EventfdFloor})

	// Bus dispatch, host side: lookup and handler call, no Xen.
	add(&Scenario{Name: "bus/pio", Doc: "Space.Read of a UART register (1000 accesses per sample)", Ops: 2000, ShortOps: 20,
		probe: func(n int) (Result, error) { return busProbe(n, "pio") }})
	add(&Scenario{Name: "bus/mmio", Doc: "Space.Read of the test device's magic register", Ops: 2000, ShortOps: 20,
		probe: func(n int) (Result, error) { return busProbe(n, "mmio") }})
	add(&Scenario{Name: "bus/pci", Doc: "ConfigSpace.Read of the test device's IDs", Ops: 2000, ShortOps: 20,
		probe: func(n int) (Result, error) { return busProbe(n, "pci") }})

	// Go runtime costs the designs pay: a yield on an ordinary goroutine and
	// on one locked to its OS thread (as ioreq workers and the classic loop
	// are).
	add(&Scenario{Name: "go/gosched", Doc: "runtime.Gosched on an unlocked goroutine", Ops: 20000, ShortOps: 100,
		probe: func(n int) (Result, error) { return goschedProbe(n, false), nil }})
	add(&Scenario{Name: "go/gosched-locked", Doc: "runtime.Gosched on a goroutine locked to its OS thread", Ops: 20000, ShortOps: 100,
		probe: func(n int) (Result, error) { return goschedProbe(n, true), nil }})

	// What one system call and one clock read cost, and what the Go
	// scheduler's bookkeeping around a system call adds (syscall.Syscall
	// tells the scheduler the thread may block, RawSyscall does not):
	// per-request costs of the ioreq path that multiply on a nested or
	// emulated host (run it in the Xen box's dom0).
	add(&Scenario{Name: "go/syscall", Doc: "getpid(2) through syscall.Syscall (1000 per sample)", Ops: 2000, ShortOps: 20,
		probe: func(n int) (Result, error) { return batchProbe(n, sysGetpid), nil }})
	add(&Scenario{Name: "go/rawsyscall", Doc: "getpid(2) through syscall.RawSyscall (1000 per sample)", Ops: 2000, ShortOps: 20,
		probe: func(n int) (Result, error) { return batchProbe(n, rawGetpid), nil }})
	add(&Scenario{Name: "go/clock", Doc: "time.Now (1000 per sample)", Ops: 2000, ShortOps: 20,
		probe: func(n int) (Result, error) { return batchProbe(n, func() { time.Now() }), nil }})

	add(&Scenario{Name: "go/chan-locked", Doc: "two goroutines locked to OS threads ping-pong through channels (what a Go channel wake-up costs; xensim's vCPUs sleep on a futex instead)",
		Ops: 20000, ShortOps: 100, probe: func(n int) (Result, error) { return chanProbe(n), nil }})

	// The simulator's own cost.
	add(&Scenario{Name: "sim/unclaimed", Doc: "IN of a port no server claims (routing, null handler)", Ops: 100000, ShortOps: 500,
		vcpus: 1, design: noServer, perOp: 1, op: opUnclaimed})
	add(&Scenario{Name: "sim/pio/poll/null", Doc: "IN answered at once by a spinning responder, no dispatch", Ops: 50000, ShortOps: 300,
		Plot: panelPoll, vcpus: 1, design: nullPoll, vcpuSpin: vcpuSpin, perOp: 1, op: opPIO, Floor: "floor/cache-line"})
	add(&Scenario{Name: "sim/pio/block/null", Doc: "IN answered at once by a blocking responder, no dispatch", Ops: 20000, ShortOps: 200,
		Plot: panelBlock, vcpus: 1, design: nullBlock, perOp: 1, op: opPIO, Floor: "floor/eventfd"})

	// Single-vCPU round trips, polled (vCPU and godm spin) and blocking
	// (both sleep between requests, as Xen's vCPUs do).
	type workload struct {
		name, doc string
		ops       int
		op        func(r *rig, v *xensim.VCPU, vi, i int, check bool) error
		verify    func(r *rig) error
	}
	for _, w := range []workload{
		{"pio", "IN of a UART's line status register", 50000, opPIO, nil},
		{"mmio", "32-bit MMIO read of the test device's magic register", 50000, opMMIO, nil},
		{"pci", "PCI configuration read (0xcf8/0xcfc) of the test device's IDs", 50000, opPCI, nil},
		{"rep", "REP OUTSD of 4 KiB from guest RAM (data_is_ptr) to the test device", 10000, opRep, verifyRep},
	} {
		for _, m := range []string{modePoll, modeBlock} {
			spin, gd, floor, ops := vcpuSpin, godmPoll, "floor/cache-line", w.ops
			if m == modeBlock {
				spin, gd, floor, ops = 0, godmBlock, "floor/eventfd", w.ops/2
			}
			base := "rt/" + w.name + "/" + m + "/"
			sim, plot := "", ""
			if w.name == "pio" {
				sim, plot = "sim/pio/"+m+"/null", panelPoll
				if m == modeBlock {
					plot = panelBlock
				}
			}
			add(&Scenario{Name: base + "godm", Doc: w.doc, Ops: ops, ShortOps: 200, Floor: floor, Classic: base + "classic",
				Sim: sim, Plot: plot, vcpus: 1, design: gd, vcpuSpin: spin, perOp: 1, op: w.op, verify: w.verify})
			add(&Scenario{Name: base + "classic", Doc: w.doc + " (classic loop)", Ops: ops, ShortOps: 200, Floor: floor,
				Sim: sim, Plot: plot, vcpus: 1, design: classic, vcpuSpin: spin, perOp: 1, op: w.op, verify: w.verify})
		}
	}

	// A goroutine a handler readies, with no P to spare: it runs when a
	// thread lets go of its P (see backend).
	for _, m := range []string{modePoll, modeBlock} {
		spin, gd := vcpuSpin, godmPoll
		if m == modeBlock {
			spin, gd = 0, godmBlock
		}
		add(&Scenario{Name: "rt/backend/" + m + "/godm",
			Doc: "OUT to a device whose back-end goroutine completes it, then IN until it has; no P to spare",
			Ops: 4000, ShortOps: 40, vcpus: 1, design: gd, vcpuSpin: spin, perOp: 2, op: opBackend, noSpareP: true})
	}

	// A shared host: the round trip with no P to spare, a thread keeping
	// one core busy and a goroutine of the device model's own competing
	// for the Ps (see competitor). godm-held is the blocking worker keeping
	// its P while it sleeps (ioreq.WorkerConfig.KeepP).
	for _, m := range []string{modePoll, modeBlock} {
		spin, designs, floor := vcpuSpin, []design{godmPoll, classic}, "floor/cache-line"
		if m == modeBlock {
			spin, designs, floor = 0, []design{godmBlock, godmBlockHeld, classic}, "floor/eventfd"
		}
		base := "shared/pio/" + m + "/"
		for _, d := range designs {
			name, cl := "godm", base+"classic"
			switch d {
			case godmBlockHeld:
				name = "godm-held"
			case classic:
				name, cl = "classic", ""
			}
			add(&Scenario{Name: base + name, Doc: "IN of a UART's LSR on a shared host (a busy thread, a busy goroutine, no spare P)",
				Ops: 20000, ShortOps: 100, Floor: floor, Classic: cl, vcpus: 1, design: d, vcpuSpin: spin, perOp: 1, op: opPIO,
				compete: competeCPU | competeGo, Dist: true})
		}
	}

	// The same with the guest working between accesses (think), as the
	// box's guest does: a polling worker's window must span the gap to
	// catch the next access.
	for _, think := range []time.Duration{20 * time.Microsecond, 80 * time.Microsecond} {
		base := fmt.Sprintf("shared/pio/think%dus/", think/time.Microsecond)
		for _, d := range []design{godmPoll, godmPollWide, godmBlock, godmBlockHeld, classic} {
			name, cl := d.String(), base+"classic"
			if d == classic {
				cl = ""
			}
			add(&Scenario{Name: base + name, Doc: fmt.Sprintf("IN of a UART's LSR after %v of guest work, on a shared host", think),
				Ops: 10000, ShortOps: 50, Classic: cl, vcpus: 1, design: d, perOp: 1, op: opPIO,
				compete: competeCPU | competeGo, think: think, Dist: true})
		}
	}

	// Buffered burst: a full ring of writes, then a synchronous read that
	// Xen's ordering makes wait for the ring to drain.
	for _, d := range []design{godmPoll, godmBlock, classic} {
		add(&Scenario{Name: "burst/ring/" + d.String(), Doc: "511 buffered UART writes, then a read of the register",
			Ops: 1000, ShortOps: 10, Classic: classicOf(d, "burst/ring/classic"),
			vcpus: 1, design: d, perOp: burstWrites + 1, op: opBurst})
	}

	// Throughput: n vCPUs, each reading its own UART back to back, polled
	// (vCPUs and godm spin) and blocking (both sleep, as Xen's vCPUs do);
	// the classic loop is measured with the same vCPU client.
	for _, n := range []int{1, 2, 4, 8} {
		for _, m := range []string{modePoll, modeBlock} {
			spin, gd := vcpuSpin, godmPoll
			if m == modeBlock {
				spin, gd = 0, godmBlock
			}
			base := fmt.Sprintf("tput/%dvcpu/%s/", n, m)
			doc := fmt.Sprintf("%d vCPUs, each IN of its own UART back to back", n)
			add(&Scenario{Name: base + "godm", Doc: doc, Ops: 40000, ShortOps: 16 * n, Classic: base + "classic",
				vcpus: n, design: gd, vcpuSpin: spin, perOp: 1, op: opPIO})
			add(&Scenario{Name: base + "classic", Doc: doc + " (classic loop)", Ops: 40000, ShortOps: 16 * n,
				vcpus: n, design: classic, vcpuSpin: spin, perOp: 1, op: opPIO})
		}
	}
	return s
}

func classicOf(d design, name string) string {
	if d == classic {
		return ""
	}
	return name
}

func opUnclaimed(_ *rig, v *xensim.VCPU, _, _ int, _ bool) error {
	got, err := v.In(0x600, 1)
	if err == nil && got != 0xff {
		err = fmt.Errorf("unclaimed IN = %#x, want 0xff", got)
	}
	return err
}

func opPIO(_ *rig, v *xensim.VCPU, vi, _ int, check bool) error {
	got, err := v.In(uartBase(vi)+uartLSR, 1)
	// Transmitter idle and holding register empty: THRE | TEMT.
	if err == nil && check && got != 0x60 {
		err = fmt.Errorf("UART %d LSR = %#x, want 0x60", vi, got)
	}
	return err
}

func opMMIO(_ *rig, v *xensim.VCPU, _, _ int, check bool) error {
	got, err := v.MMIORead(testMMIO+testdev.RegMagic, 4)
	if err == nil && check && got != testdev.Magic {
		err = fmt.Errorf("test device magic = %#x, want %#x", got, testdev.Magic)
	}
	return err
}

func opPCI(_ *rig, v *xensim.VCPU, _, _ int, check bool) error {
	got, err := v.PCIConfigRead(uint32(devices.NewSBDF(0, 0, testSlot, 0)), 0, 4)
	if want := uint64(testdev.DeviceID)<<16 | testdev.VendorID; err == nil && check && got != want {
		err = fmt.Errorf("test device IDs = %#x, want %#x", got, want)
	}
	return err
}

func opRep(_ *rig, v *xensim.VCPU, _, _ int, _ bool) error {
	return v.RepOuts(testIO, 4, repCount, repBuf, false)
}

// verifyRep checks that the rep's elements reached the device in order:
// its scratch register holds the buffer's last dword.
func verifyRep(r *rig) error {
	want := uint64(binary.LittleEndian.Uint32(r.repLast[:]))
	if got := r.bus.PIO.Read(testIO, 4, 0); got != want {
		return fmt.Errorf("test device scratch after rep = %#x, want %#x", got, want)
	}
	return nil
}

func opBurst(_ *rig, v *xensim.VCPU, vi, i int, check bool) error {
	port := uint64(uartBase(vi) + uartSCR)
	for j := range burstWrites {
		if _, err := v.BufferedWrite(xenabi.IOREQ_TYPE_PIO, port, 1, uint64(i+j)); err != nil {
			return err
		}
	}
	got, err := v.In(uint16(port), 1)
	if want := uint64(byte(i + burstWrites - 1)); err == nil && check && got != want {
		err = fmt.Errorf("UART scratch after burst = %#x, want %#x (buffered writes lost or reordered)", got, want)
	}
	return err
}

// runRig measures n operations of s (split over its vCPUs) on a fresh rig.
func (s *Scenario) runRig(n int) (res Result, err error) {
	r, err := newRig(s.vcpus, s.design)
	if err != nil {
		return Result{}, fmt.Errorf("%s: %w", s.Name, err)
	}
	// The simulated vCPUs stand for a guest's execution contexts, which on
	// Xen are not the device model's threads: each gets a P of its own on
	// top of the device model's, so that a spinning vCPU never holds a P
	// a server thread needs. They still share the cores with the server,
	// through the OS scheduler, as Xen shares physical CPUs with dom0.
	procs := runtime.GOMAXPROCS(0)
	switch {
	case s.compete != 0:
		n := s.vcpus + r.serverThreads(s.vcpus)
		if s.compete&competeCPU != 0 {
			n++
		}
		runtime.GOMAXPROCS(n)
		c := startCompetitor(s.compete)
		defer c.close()
	case s.noSpareP:
		runtime.GOMAXPROCS(s.vcpus + r.serverThreads(s.vcpus))
	default:
		runtime.GOMAXPROCS(procs + s.vcpus)
	}
	defer runtime.GOMAXPROCS(procs)
	defer func() {
		if cerr := r.close(); cerr != nil && err == nil {
			err = fmt.Errorf("%s: %w", s.Name, cerr)
		}
	}()
	if err := r.fillRepBuffer(); err != nil {
		return Result{}, err
	}
	check := s.design != nullPoll && s.design != nullBlock && s.design != noServer
	per := max(1, n/s.vcpus)
	warm := min(max(per/10, 10), 1000)
	samples := make([][]time.Duration, s.vcpus)
	for i := range samples {
		samples[i] = make([]time.Duration, per)
	}
	var (
		warmed, done sync.WaitGroup
		start        = make(chan struct{})
		errs         = make([]error, s.vcpus)
	)
	warmed.Add(s.vcpus)
	done.Add(s.vcpus)
	for vi := range s.vcpus {
		go func() {
			defer done.Done()
			// Every vCPU runs on its own OS thread, as a real one is
			// its own execution context.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			v := r.dom.VCPU(vi)
			v.SetSpin(s.vcpuSpin)
			// On a shared host the competing goroutine must not take
			// the vCPU's P while it sleeps: a real vCPU is not one of
			// the device model's threads.
			v.SetHoldP(s.compete != 0)
			var err error
			for i := 0; i < warm && err == nil; i++ {
				spinFor(s.think)
				err = s.op(r, v, vi, i, check)
			}
			warmed.Done()
			<-start
			if err != nil {
				errs[vi] = err
				return
			}
			out := samples[vi]
			for i := range out {
				if s.think > 0 {
					spinFor(s.think)
				}
				t0 := time.Now()
				if err := s.op(r, v, vi, i, check); err != nil {
					errs[vi] = fmt.Errorf("vCPU %d op %d: %w", vi, i, err)
					return
				}
				out[i] = time.Since(t0)
			}
		}()
	}
	warmed.Wait()
	before := r.handled()
	stages0 := r.stages()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	t0 := time.Now()
	close(start)
	done.Wait()
	elapsed := time.Since(t0)
	runtime.ReadMemStats(&m1)
	for _, e := range errs {
		if e != nil {
			return Result{}, fmt.Errorf("%s: %w", s.Name, e)
		}
	}
	ops := per * s.vcpus
	res = Result{Name: s.Name, Ops: ops, Requests: ops * s.perOp, Elapsed: elapsed,
		AllocsPerReq: float64(m1.Mallocs-m0.Mallocs) / float64(ops*s.perOp)}
	for _, x := range samples {
		res.Samples = append(res.Samples, x...)
	}
	if stages0 != nil {
		res.Stages = r.stages().since(stages0)
	}
	if check {
		if got := r.handled() - before; got < uint64(ops) {
			return Result{}, fmt.Errorf("%s: the server counted %d requests for %d operations", s.Name, got, ops)
		}
		if s.verify != nil {
			if err := s.verify(r); err != nil {
				return Result{}, fmt.Errorf("%s: %w", s.Name, err)
			}
		}
	}
	return res, nil
}

// fillRepBuffer writes the rep scenario's source page and remembers its
// last dword.
func (r *rig) fillRepBuffer() error {
	buf := make([]byte, 4*repCount)
	for i := range repCount {
		binary.LittleEndian.PutUint32(buf[4*i:], uint32(0x1000+i))
	}
	copy(r.repLast[:], buf[len(buf)-4:])
	return r.dom.WriteRAM(repBuf, buf)
}

// busProbe times n samples of 1000 host-side accesses to one register
// through the bus (no hypervisor): the dispatch cost godm adds per access.
func busProbe(n int, kind string) (Result, error) {
	r := &rig{bus: devices.NewBus()}
	// The devices only: no Xen.
	r.uarts = nil
	if err := r.buildDevicesNoXen(); err != nil {
		return Result{}, err
	}
	defer r.closeDevices()
	const batch = 1000
	var read func() uint64
	var want uint64
	sbdf := r.sbdf
	switch kind {
	case "pio":
		read, want = func() uint64 { return r.bus.PIO.Read(uint64(uartBase(0)+uartLSR), 1, 0) }, 0x60
	case "mmio":
		read, want = func() uint64 { return r.bus.MMIO.Read(testMMIO, 4, 0) }, testdev.Magic
	case "pci":
		read, want = func() uint64 { return r.bus.PCI.Read(sbdf, 0, 4, 0) }, uint64(testdev.DeviceID)<<16|testdev.VendorID
	}
	if got := read(); got != want {
		return Result{}, fmt.Errorf("bus/%s: read %#x, want %#x", kind, got, want)
	}
	for range batch {
		read()
	}
	samples := make([]time.Duration, n)
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start := time.Now()
	for i := range samples {
		t0 := time.Now()
		for range batch {
			read()
		}
		samples[i] = time.Since(t0) / batch
	}
	elapsed := time.Since(start)
	runtime.ReadMemStats(&m1)
	return Result{Name: "bus/" + kind, Ops: n * batch, Requests: n * batch, Elapsed: elapsed, Samples: samples,
		AllocsPerReq: float64(m1.Mallocs-m0.Mallocs) / float64(n*batch)}, nil
}

func sysGetpid() { syscall.Syscall(syscall.SYS_GETPID, 0, 0, 0) }
func rawGetpid() { syscall.RawSyscall(syscall.SYS_GETPID, 0, 0, 0) }

// batchProbe times n samples of 1000 calls of f, per call.
func batchProbe(n int, f func()) Result {
	const batch = 1000
	for range batch {
		f()
	}
	samples := make([]time.Duration, n)
	start := time.Now()
	for i := range samples {
		t0 := time.Now()
		for range batch {
			f()
		}
		samples[i] = time.Since(t0) / batch
	}
	return Result{Ops: n * batch, Elapsed: time.Since(start), Samples: samples, AllocsPerReq: -1}
}

// goschedProbe times n yields of a goroutine, locked to its OS thread or not.
func goschedProbe(n int, locked bool) Result {
	res := make(chan Result)
	go func() {
		if locked {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
		}
		for range 100 {
			runtime.Gosched()
		}
		samples := make([]time.Duration, n)
		start := time.Now()
		for i := range samples {
			t0 := time.Now()
			runtime.Gosched()
			samples[i] = time.Since(t0)
		}
		res <- Result{Ops: n, Elapsed: time.Since(start), Samples: samples, AllocsPerReq: -1}
	}()
	return <-res
}

// chanProbe times n round trips of two goroutines, each locked to its OS
// thread, waking each other through channels: the Go runtime's part of
// xensim's blocking round trip (a blocked vCPU is woken through a channel).
func chanProbe(n int) Result {
	ping, pong := make(chan struct{}), make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		for range ping {
			pong <- struct{}{}
		}
	}()
	res := make(chan Result)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer close(ping)
		samples := make([]time.Duration, n)
		start := time.Now()
		for i := range samples {
			t0 := time.Now()
			ping <- struct{}{}
			<-pong
			samples[i] = time.Since(t0)
		}
		res <- Result{Ops: n, Elapsed: time.Since(start), Samples: samples, AllocsPerReq: -1}
	}()
	return <-res
}

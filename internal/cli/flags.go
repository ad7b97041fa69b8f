package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"godm/devices/chardev"
	"godm/internal/machine"
	"godm/ioreq"
)

// machineFlags are the flags that describe the machine, shared by serve and
// sim.
type machineFlags struct {
	vcpus    int
	memMB    uint64
	serial   stringList
	noPS2    bool
	noPlat   bool
	testSlot int
	bufioreq string
	workers  int
	spin     time.Duration
	verbose  bool
	restrict bool
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func (f *machineFlags) register(fs *flag.FlagSet, defaultVCPUs int) {
	fs.IntVar(&f.vcpus, "vcpus", defaultVCPUs, "vCPU slots to serve (0: ask Xen)")
	fs.Uint64Var(&f.memMB, "mem", 0, "guest RAM in MiB, as the host bridge reports it")
	fs.Var(&f.serial, "serial", "backend of the next COM port (repeat for COM1..COM4): stdio, null, file:PATH, pty, unix:PATH")
	fs.BoolVar(&f.noPS2, "no-ps2", false, "leave out the i8042 keyboard controller")
	fs.BoolVar(&f.noPlat, "no-platform-device", false, "leave out the Xen platform device (like xen_platform_pci=0)")
	fs.IntVar(&f.testSlot, "test-device", -1, "add godm's test device at this PCI slot (-1: none)")
	fs.StringVar(&f.bufioreq, "bufioreq", "atomic", "buffered ioreqs: atomic or off")
	fs.IntVar(&f.workers, "workers", 0, "ioreq worker goroutines (0: default for the vCPU count)")
	fs.DurationVar(&f.spin, "spin", 0, "how long a worker polls before blocking (0: default; negative: never poll)")
	fs.BoolVar(&f.verbose, "v", false, "log platform events")
	fs.BoolVar(&f.restrict, "restrict", false, "once set up, restrict the privcmd and event-channel handles to the guest domain (like QEMU's -xen-domid-restrict)")
}

// spec turns the flags into a machine description, opening the serial
// backends; the caller closes them with the returned function.
func (f *machineFlags) spec(log *slog.Logger, w io.Writer) (machine.Spec, func(), error) {
	s, opened, err := f.specBackends(log, w)
	return s, func() {
		for _, b := range opened {
			b.Close()
		}
	}, err
}

func (f *machineFlags) specBackends(log *slog.Logger, w io.Writer) (machine.Spec, []chardev.Backend, error) {
	s := machine.Spec{VCPUs: f.vcpus, MemBytes: f.memMB << 20, NoPS2: f.noPS2, NoPlatformDevice: f.noPlat,
		Workers: f.workers, Worker: ioreq.WorkerConfig{Spin: f.spin}, Log: log, Restrict: f.restrict}
	if f.vcpus < 0 || f.vcpus > ioreq.MaxVCPUs {
		return s, nil, fmt.Errorf("-vcpus %d: want 0..%d", f.vcpus, ioreq.MaxVCPUs)
	}
	if f.workers < 0 {
		return s, nil, fmt.Errorf("-workers %d: want 0 or more", f.workers)
	}
	switch f.bufioreq {
	case "atomic":
		s.BufIOReq = ioreq.BufAtomic
	case "off":
		s.BufIOReq = ioreq.BufOff
	default:
		return s, nil, fmt.Errorf("-bufioreq %q: want atomic or off", f.bufioreq)
	}
	if f.testSlot >= 0 {
		if f.testSlot < 2 || f.testSlot > 31 || f.testSlot == machine.PlatformSlot {
			return s, nil, fmt.Errorf("-test-device %d: want a free slot in 2..31 (slot %d is the platform device)", f.testSlot, machine.PlatformSlot)
		}
		s.TestDevice, s.TestSlot = true, uint8(f.testSlot)
	}
	if len(f.serial) > 4 {
		return s, nil, fmt.Errorf("-serial given %d times: at most 4 (COM1..COM4)", len(f.serial))
	}
	var opened []chardev.Backend
	for i, spec := range f.serial {
		be, desc, err := machine.OpenChardev(spec)
		if err != nil {
			for _, o := range opened {
				o.Close()
			}
			return s, nil, fmt.Errorf("-serial (COM%d): %w", i+1, err)
		}
		fmt.Fprintf(w, "godm: COM%d on %s\n", i+1, desc)
		opened = append(opened, be)
	}
	s.Serial = opened
	return s, opened, nil
}

func newLogger(w io.Writer, verbose bool) *slog.Logger {
	if !verbose {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

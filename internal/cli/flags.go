// Package cli holds what godm's commands share on the command line: the
// machine flags (turned into a machine.Spec with its serial backends) and
// the logger. It is linked into the product (cmd/godm) and the lab
// (cmd/godm-lab), so it imports no simulator.
package cli

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"godm/devices/chardev"
	"godm/internal/machine"
	"godm/ioreq"
	"godm/memory/layout"
)

// MachineFlags are the flags that describe the machine, shared by godm
// serve and godm-lab sim.
type MachineFlags struct {
	VCPUs    int
	MemMiB   uint64
	Below4G  Size
	Serial   StringList
	NoPS2    bool
	NoPlat   bool
	TestSlot int
	BufIOReq string
	Workers  int
	Spin     time.Duration
	KeepP    time.Duration
	Verbose  bool
	Restrict bool
}

// StringList is a repeatable string flag.
type StringList []string

func (s *StringList) String() string     { return strings.Join(*s, ",") }
func (s *StringList) Set(v string) error { *s = append(*s, v); return nil }

// Size is a byte count flag: a number (decimal, or 0x hex) with an
// optional binary suffix k, M, G or T, as QEMU's size options take it.
type Size uint64

func (s *Size) String() string { return strconv.FormatUint(uint64(*s), 10) }

func (s *Size) Set(v string) error {
	n, err := ParseSize(v)
	if err != nil {
		return err
	}
	*s = Size(n)
	return nil
}

// ParseSize parses a Size, refusing values that overflow 64 bits.
func ParseSize(v string) (uint64, error) {
	num, shift := v, uint(0)
	if n := len(v); n > 0 {
		switch v[n-1] {
		case 'k', 'K':
			shift = 10
		case 'm', 'M':
			shift = 20
		case 'g', 'G':
			shift = 30
		case 't', 'T':
			shift = 40
		}
		if shift != 0 {
			num = v[:n-1]
		}
	}
	n, err := strconv.ParseUint(num, 0, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: want a byte count with an optional k, M, G or T suffix", v)
	}
	if n > ^uint64(0)>>shift {
		return 0, fmt.Errorf("%q: too large", v)
	}
	return n << shift, nil
}

// Register adds the machine flags to fs.
func (f *MachineFlags) Register(fs *flag.FlagSet, defaultVCPUs int) {
	fs.IntVar(&f.VCPUs, "vcpus", defaultVCPUs, "vCPU slots to serve (0: ask Xen)")
	fs.Uint64Var(&f.MemMiB, "mem", 0, fmt.Sprintf("guest RAM in MiB (1..%d), as the toolstack gave the domain", uint64(layout.MaxRAM)>>20))
	fs.Var(&f.Below4G, "max-ram-below-4g", "where the PCI hole below 4 GiB starts, as QEMU's -machine xenfv,max-ram-below-4g= (libxl passes it for mmio_hole; 0: Xen's default 0xf0000000)")
	fs.Var(&f.Serial, "serial", "backend of the next COM port (repeat for COM1..COM4): stdio, null, file:PATH, pty, unix:PATH")
	fs.BoolVar(&f.NoPS2, "no-ps2", false, "leave out the i8042 keyboard controller")
	fs.BoolVar(&f.NoPlat, "no-platform-device", false, "leave out the Xen platform device (like xen_platform_pci=0)")
	fs.IntVar(&f.TestSlot, "test-device", -1, "add godm's test device at this PCI slot (-1: none)")
	fs.StringVar(&f.BufIOReq, "bufioreq", "atomic", "buffered ioreqs: atomic or off")
	fs.IntVar(&f.Workers, "workers", 0, "ioreq worker goroutines (0: default for the vCPU count)")
	fs.DurationVar(&f.Spin, "spin", 0, "how long a worker polls before blocking (0: default; negative: never poll)")
	fs.DurationVar(&f.KeepP, "keep-p", 0, "how long after its last request a blocked worker keeps its Go scheduler P (0: never; a measurement knob, see bench/README.md)")
	fs.BoolVar(&f.Verbose, "v", false, "log debug detail too (warnings and errors are always logged)")
	fs.BoolVar(&f.Restrict, "restrict", false, "once set up, restrict the privcmd and event-channel handles to the guest domain (like QEMU's -xen-domid-restrict)")
}

// Backends are the serial backends a Spec was given. Start commits them
// once the machine has started (a file: log is replaced only then); Close
// closes them.
type Backends []chardev.Backend

// Start tells the backends the machine has started: a file: backend's
// previous contents are replaced from now on (chardev.File.Commit).
func (b Backends) Start() error {
	for _, be := range b {
		if c, ok := be.(interface{ Commit() error }); ok {
			if err := c.Commit(); err != nil {
				return err
			}
		}
	}
	return nil
}

// Close closes every backend.
func (b Backends) Close() {
	for _, be := range b {
		be.Close()
	}
}

// Spec checks the flags and turns them into a machine description,
// opening the serial backends (each announced on w) only once every other
// flag is known good. The caller closes the returned Backends, and calls
// their Start once the machine has started. Every error is one line
// naming the flag.
func (f *MachineFlags) Spec(log *slog.Logger, w io.Writer) (machine.Spec, Backends, error) {
	s := machine.Spec{VCPUs: f.VCPUs, NoPS2: f.NoPS2, NoPlatformDevice: f.NoPlat,
		Workers: f.Workers, Worker: ioreq.WorkerConfig{Spin: f.Spin, KeepP: f.KeepP}, Log: log, Restrict: f.Restrict}
	if f.KeepP < 0 {
		return s, nil, fmt.Errorf("-keep-p %v: want 0 or more", f.KeepP)
	}
	if f.VCPUs < 0 || f.VCPUs > ioreq.MaxVCPUs {
		return s, nil, fmt.Errorf("-vcpus %d: want 0..%d", f.VCPUs, ioreq.MaxVCPUs)
	}
	if f.MemMiB > uint64(layout.MaxRAM)>>20 {
		return s, nil, fmt.Errorf("-mem %d: want 1..%d MiB (Xen's limit for x86 HVM guests is under 16 TiB)", f.MemMiB, uint64(layout.MaxRAM)>>20)
	}
	s.MemBytes, s.MaxRAMBelow4G = f.MemMiB<<20, uint64(f.Below4G)
	if _, err := s.Layout(); err != nil { // (-mem is in range: the hole start is not)
		return s, nil, fmt.Errorf("-max-ram-below-4g: %w", err)
	}
	if f.Workers < 0 {
		return s, nil, fmt.Errorf("-workers %d: want 0 or more", f.Workers)
	}
	switch f.BufIOReq {
	case "atomic":
		s.BufIOReq = ioreq.BufAtomic
	case "off":
		s.BufIOReq = ioreq.BufOff
	default:
		return s, nil, fmt.Errorf("-bufioreq %q: want atomic or off", f.BufIOReq)
	}
	if f.TestSlot >= 0 {
		if f.TestSlot < 2 || f.TestSlot > 31 || f.TestSlot == machine.PlatformSlot {
			return s, nil, fmt.Errorf("-test-device %d: want a free slot in 2..31 (slot %d is the platform device)", f.TestSlot, machine.PlatformSlot)
		}
		s.TestDevice, s.TestSlot = true, uint8(f.TestSlot)
	} else if f.TestSlot != -1 {
		return s, nil, fmt.Errorf("-test-device %d: want a slot in 2..31, or -1 for none", f.TestSlot)
	}
	if len(f.Serial) > 4 {
		return s, nil, fmt.Errorf("-serial given %d times: at most 4 (COM1..COM4)", len(f.Serial))
	}
	var opened Backends
	for i, spec := range f.Serial {
		be, desc, err := machine.OpenChardev(spec)
		if err != nil {
			opened.Close()
			return s, nil, fmt.Errorf("-serial (COM%d): %w", i+1, err)
		}
		fmt.Fprintf(w, "godm: COM%d on %s\n", i+1, desc)
		opened = append(opened, be)
	}
	s.Serial = opened
	return s, opened, nil
}

// NewLogger returns the commands' logger: structured lines (log/slog's
// text format) on w, warnings and errors always, and with verbose the
// informational and debug detail too.
func NewLogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

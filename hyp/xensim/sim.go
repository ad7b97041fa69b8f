package xensim

import (
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"time"

	"godm/hyp"
	"godm/hyp/kernel"

	"golang.org/x/sys/unix"
)

// Defaults for Config fields left zero.
const (
	DefaultIOReqTimeout  = 5 * time.Second
	DefaultEventCapacity = 1 << 14
)

// Config configures a Sim.
type Config struct {
	// IOReqTimeout bounds how long a vCPU waits for the device model to
	// answer one synchronous request before the access fails with an
	// error naming the vCPU and the access. Zero means DefaultIOReqTimeout.
	IOReqTimeout time.Duration
	// Spin is how many times a vCPU re-reads its ioreq slot before it
	// blocks on its event channel; a benchmark knob (Xen itself blocks at
	// once). Per-vCPU override: VCPU.SetSpin.
	Spin int
	// EventCapacity is how many recorded events are retained; older ones
	// are dropped. Zero means DefaultEventCapacity.
	EventCapacity int
	// XenMajor and XenMinor are the Xen release simulated; zero means
	// 4.17. xen_version reports it, and the domctl handler accepts that
	// release's interface version and layouts (4.15 to 4.22; any other
	// release accepts no domctl), see domctl_abi.go.
	XenMajor, XenMinor int
	// EventFDs makes privcmd offer IOCTL_PRIVCMD_IRQFD and
	// IOCTL_PRIVCMD_IOEVENTFD, as Linux >= 6.7 built with
	// CONFIG_XEN_PRIVCMD_EVENTFD does. Without it they fail with ENOTTY.
	EventFDs bool
}

// Opener opens a simulated device file for a process in domain caller. It
// lets other simulated services (xenstored) plug into a Sim's Kernel.
type Opener func(caller hyp.DomID, flags int) (kernel.File, error)

// Sim is a simulated dom0 kernel and Xen hypervisor. The zero value is not
// usable; create one with New.
type Sim struct {
	cfg Config

	// mu guards the hypervisor state: domains, their ioreq servers, p2m
	// and event-channel tables. Control operations take it exclusively;
	// the vCPU and notify hot paths take it shared.
	mu      sync.RWMutex
	domains map[hyp.DomID]*Domain
	nextDom hyp.DomID
	closed  bool
	devs    map[kernel.Device]Opener
	files   map[closer]struct{} // open simulated files, closed by Close

	events eventLog
	vmas   vmaTable
	efds   eventFDs

	assigned assignTable // PCI functions assigned to guests (assign_query.go)
}

type closer interface{ Close() error }

// New returns a Sim holding only dom0.
func New(cfg Config) *Sim {
	if cfg.IOReqTimeout <= 0 {
		cfg.IOReqTimeout = DefaultIOReqTimeout
	}
	if cfg.EventCapacity <= 0 {
		cfg.EventCapacity = DefaultEventCapacity
	}
	if cfg.XenMajor == 0 && cfg.XenMinor == 0 {
		cfg.XenMajor, cfg.XenMinor = 4, 17
	}
	s := &Sim{
		cfg:     cfg,
		domains: make(map[hyp.DomID]*Domain),
		nextDom: 1,
		devs:    make(map[kernel.Device]Opener),
		files:   make(map[closer]struct{}),
	}
	s.events.init(cfg.EventCapacity)
	s.vmas.init()
	s.domains[0] = newDomain(s, 0, nil)
	return s
}

// SetDevice installs the opener for a device file (e.g. kernel.Xenbus for
// a simulated xenstored). It replaces any previous opener.
func (s *Sim) SetDevice(dev kernel.Device, open Opener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.devs[dev] = open
}

// Kernel returns the device files as a process in domain caller sees them.
// Opening fails with ENXIO while caller names no domain of the Sim.
func (s *Sim) Kernel(caller hyp.DomID) kernel.Kernel { return simKernel{s: s, caller: caller} }

type simKernel struct {
	s      *Sim
	caller hyp.DomID
}

// Open implements kernel.Kernel.
func (k simKernel) Open(dev kernel.Device, flags int) (kernel.File, error) {
	s := k.s
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, fmt.Errorf("xensim: open %v: %w", dev, unix.ENXIO)
	}
	if _, ok := s.domains[k.caller]; !ok {
		s.mu.Unlock()
		return nil, fmt.Errorf("xensim: open %v from %v: no such domain: %w", dev, k.caller, unix.ENXIO)
	}
	open := s.devs[dev]
	s.mu.Unlock()
	var (
		f   kernel.File
		err error
	)
	switch {
	case open != nil:
		f, err = open(k.caller, flags)
	case dev == kernel.Privcmd:
		f = s.newPrivcmd(k.caller)
	case dev == kernel.Hypercall:
		f = &hcallFile{}
	case dev == kernel.Evtchn:
		f, err = s.newEvtchnFile(k.caller, flags)
	default:
		err = fmt.Errorf("xensim: open %v: %w", dev, fs.ErrNotExist)
	}
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		f.Close()
		return nil, fmt.Errorf("xensim: open %v: %w", dev, unix.ENXIO)
	}
	s.files[f] = struct{}{}
	return f, nil
}

func (s *Sim) forgetFile(f closer) {
	s.mu.Lock()
	delete(s.files, f)
	s.mu.Unlock()
}

// Close destroys every domain and closes every file opened through the
// Sim's kernels, releasing all fds and guest memory. Mappings made
// through privcmd and the hypercall device lose their contents (they read
// as zeros) but stay reserved until their owner unmaps them, so a device
// model that is still shutting down does not fault. It is idempotent.
func (s *Sim) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	files := make([]closer, 0, len(s.files))
	for f := range s.files {
		files = append(files, f)
	}
	s.mu.Unlock()
	var errs []error
	for _, f := range files {
		if err := f.Close(); err != nil {
			errs = append(errs, err)
		}
		if r, ok := f.(interface{ release() }); ok {
			r.release()
		}
	}
	s.mu.Lock()
	doms := make([]*Domain, 0, len(s.domains))
	for _, d := range s.domains {
		doms = append(doms, d)
	}
	s.mu.Unlock()
	for _, d := range doms {
		if err := d.destroy(); err != nil {
			errs = append(errs, err)
		}
	}
	s.closeEventFDs()
	s.vmas.closeAll()
	s.events.close()
	return errors.Join(errs...)
}

// Domain returns the domain with id, or nil.
func (s *Sim) Domain(id hyp.DomID) *Domain {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.domains[id]
}

package passthrough

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"godm/devices"
	"godm/hyp"
	"godm/hyp/dm"
	"godm/hyp/domctl"
	"godm/hyp/hcall"
	"godm/hyp/kernel"
	"godm/hyp/privcmd"
	"godm/ioreq"
)

// Assignments says which host functions the toolstack assigned to a
// domain; Standalone refuses a function the domain was not granted.
type Assignments interface {
	Assigned(ctx context.Context, dom hyp.DomID, host devices.SBDF) error
}

// XenstoreReader is the part of a xenstore client XenstoreAssignments
// needs (hyp/xenstore.Client implements it).
type XenstoreReader interface {
	Directory(ctx context.Context, path string) ([]string, error)
	Read(ctx context.Context, path string) ([]byte, error)
}

// XenstoreAssignments reads the assignments libxl records in xenstore
// (tools/libs/light/libxl_pci.c, Xen 4.15 to 4.22): before it asks the
// device model to add a function it writes the guest's id to
// /libxl/pci/SSSS-BB-DD-F/domid; after the device model is done it grants
// the I/O memory, port and IRQ permissions and lists the function under
// /local/domain/0/backend/pci/<dom>/0/dev-<n> as "SSSS:BB:DD.F". Either
// record counts.
type XenstoreAssignments struct{ XS XenstoreReader }

// Assigned implements Assignments.
func (a XenstoreAssignments) Assigned(ctx context.Context, dom hyp.DomID, host devices.SBDF) error {
	info := fmt.Sprintf("/libxl/pci/%04x-%02x-%02x-%01x/domid", host.Seg(), host.Bus(), host.Dev(), host.Fn())
	if v, err := a.XS.Read(ctx, info); err == nil {
		if id, err := strconv.ParseUint(strings.TrimSpace(string(v)), 10, 16); err == nil && hyp.DomID(id) == dom {
			return nil
		}
	}
	dir := fmt.Sprintf("/local/domain/0/backend/pci/%d/0", dom)
	names, err := a.XS.Directory(ctx, dir)
	if err != nil {
		names = nil
	}
	for _, n := range names {
		if !strings.HasPrefix(n, "dev-") {
			continue
		}
		v, err := a.XS.Read(ctx, dir+"/"+n)
		if err != nil {
			continue
		}
		if s, err := ParseSBDF(strings.TrimSpace(string(v))); err == nil && s == host {
			return nil
		}
	}
	return fmt.Errorf("passthrough: %v is not assigned to domain %d (neither %s nor %s names it; "+
		"assign it with xl pci-attach or pci=[...] in the guest's configuration): %w", host, dom, info, dir, ErrNotGranted)
}

// StandaloneConfig configures Standalone.
type StandaloneConfig struct {
	// Dom is the guest.
	Dom hyp.DomID
	// Host is the host function.
	Host devices.SBDF
	// Slot is the guest device number on bus 0.
	Slot uint8
	// Permissive, see Config.
	Permissive bool
	// MSIXAllWrites, see Config. When false, Standalone asks the
	// hypervisor (DetectMSIXAllWrites).
	MSIXAllWrites bool
	// HostOptions locate the function in sysfs.
	HostOptions HostOptions
	// Assignments, if set, is checked before anything is mapped: it says
	// whether the toolstack assigned the function to this domain.
	Assignments Assignments
	// RequireAssigned refuses up front a function Xen has in no guest's
	// IOMMU context (CheckAssigned). Whether or not it is set, nothing is
	// mapped or bound before Xen confirms the assignment (Config.Assign).
	RequireAssigned bool
	// Grant does the toolstack's part itself (Grant): permissions and
	// IOMMU assignment, undone on exit. For a function no toolstack
	// assigns (libxl assigns only what its device model added through
	// QMP).
	Grant bool
	// GrantFlags are the assign_device flags (0, or domctl.RDMRelaxed).
	GrantFlags uint32
	// Log receives control-path messages; nil discards them.
	Log *slog.Logger
	// Ready, if set, is called with the device and its ioreq server's id
	// once the device is plugged and the server runs (beside a main
	// device model on the same domain, the ids differ: Xen gives each
	// server of a domain its own).
	Ready func(*Device, dm.ServerID)

	// toolstack, if set, wraps the Toolstack Grant uses (tests).
	toolstack func(Toolstack) Toolstack
	// assign, if set, wraps the AssignQuery (tests).
	assign func(AssignQuery) AssignQuery
	// afterPlug, if set, runs once the device is plugged, before serving;
	// an error ends Standalone (tests of the exit paths).
	afterPlug func() error
}

// Standalone passes one host function through to a domain with an ioreq
// server of its own that claims only that function's configuration space
// and its trapped MSI-X pages, beside another device model or alone. It
// serves until ctx ends (returning nil) or the server fails, and undoes
// everything in the hypervisor on every way out.
func Standalone(ctx context.Context, k kernel.Kernel, cfg StandaloneConfig) (err error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Assignments != nil {
		if err := cfg.Assignments.Assigned(ctx, cfg.Dom, cfg.Host); err != nil {
			return err
		}
	}
	host, err := OpenHost(cfg.HostOptions, cfg.Host)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, host.Close()) }()
	p, err := privcmd.Open(k)
	if err != nil {
		return fmt.Errorf("passthrough: %w", err)
	}
	defer func() { err = errors.Join(err, p.Close()) }()
	c := hcall.New(p)
	dc, err := domctl.Open(c)
	if err != nil {
		return fmt.Errorf("passthrough: %w", err)
	}
	x := NewXen(c, dc)
	var aq AssignQuery = dc
	if cfg.assign != nil {
		aq = cfg.assign(aq)
	}
	if cfg.Grant {
		var ts Toolstack = dc
		if cfg.toolstack != nil {
			ts = cfg.toolstack(ts)
		}
		revoke, err := Grant(ts, x, cfg.Dom, host, cfg.GrantFlags)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, revoke()) }()
	}
	if cfg.RequireAssigned {
		if err := CheckAssigned(aq, cfg.Dom, cfg.Host); err != nil {
			return err
		}
	}
	if !cfg.MSIXAllWrites {
		all, err := DetectMSIXAllWrites(p)
		if err != nil {
			log.Warn("passthrough: cannot read Xen's features; assuming no XENFEAT_dm_msix_all_writes", "err", err)
		}
		cfg.MSIXAllWrites = all
	}
	dev, err := New(Config{Dom: cfg.Dom, Host: host, Xen: x, Slot: cfg.Slot,
		Permissive: cfg.Permissive, MSIXAllWrites: cfg.MSIXAllWrites, Assign: aq, Log: log})
	if err != nil {
		return err
	}
	bus := devices.NewBus()
	srv, err := ioreq.NewServer(p, k, ioreq.Config{Dom: cfg.Dom, Bus: bus})
	if err != nil {
		return fmt.Errorf("passthrough: ioreq server: %w", err)
	}
	defer func() { err = errors.Join(err, srv.Close()) }()
	if err := dev.Plug(bus); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, dev.Unplug()) }()
	log.Info("passthrough: serving", "host", cfg.Host, "guest", dev.SBDF(), "dom", cfg.Dom, "ioreq_server", srv.ID(),
		"domctl", fmt.Sprintf("%#x", dc.InterfaceVersion()))
	if cfg.afterPlug != nil {
		if err := cfg.afterPlug(); err != nil {
			return err
		}
	}
	if cfg.Ready != nil {
		cfg.Ready(dev, srv.ID())
	}
	return srv.Serve(ctx)
}

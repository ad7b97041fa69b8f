package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"godm/hyp"
	"godm/hyp/domctl"
	"godm/hyp/hcall"
	"godm/hyp/kernel"
	"godm/internal/machine"
	"godm/passthrough"
)

// cmdServe serves one domain on a real Xen host until interrupted.
func cmdServe(ctx context.Context, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(w)
	var mf machineFlags
	mf.register(fs, 0)
	domid := fs.Int("domid", -1, "the HVM domain to serve (required)")
	var ptDevs stringList
	fs.Var(&ptDevs, "device", "a device to add (repeatable); supported: xen-pci-passthrough,hostaddr=SSSS:BB:DD.F[,addr=S.F][,permissive=on][,id=ID]")
	sysfs := fs.String("sysfs", "/sys", "sysfs mount point (host PCI functions for passthrough)")
	devDir := fs.String("xen-dev", kernel.DefaultDevDir, "directory of the Xen device files")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	if *domid <= 0 || *domid >= 0x7ff0 {
		return fmt.Errorf("serve: -domid %d: want a guest domain id in 1..32751", *domid)
	}
	var pts []passthrough.DeviceSpec
	for _, d := range ptDevs {
		spec, err := passthrough.ParseDeviceOption(d)
		if err != nil {
			return fmt.Errorf("serve: -device %q: %w", d, err)
		}
		pts = append(pts, spec)
	}
	// Every flag is checked (and the serial backends opened) before
	// looking for Xen, so that a bad command line is reported as such.
	log := newLogger(w, mf.verbose)
	spec, closeBackends, err := mf.spec(log, w)
	if err != nil {
		return err
	}
	defer closeBackends()
	host := kernel.Host{DevDir: *devDir}
	if !host.Available(kernel.Privcmd) {
		return errors.New("no Xen found (" + *devDir + "/privcmd is missing or not accessible); try the simulated mode: godm sim")
	}
	spec.Dom = hyp.DomID(*domid)
	m, err := machine.New(host, spec)
	if err != nil {
		return fmt.Errorf("serve %v: %w", spec.Dom, err)
	}
	defer m.Close()
	if len(pts) > 0 {
		mgr, err := passthroughManager(m, *sysfs, log)
		if err != nil {
			return fmt.Errorf("serve %v: passthrough: %w", spec.Dom, err)
		}
		defer mgr.Close() // before the machine: unbind and unmap first
		for _, p := range pts {
			// Named on the command line: the toolstack assigned it already.
			pl, err := mgr.AddWith(p, passthrough.AddOptions{RequireAssigned: true})
			if err != nil {
				return fmt.Errorf("serve %v: passthrough %v: %w", spec.Dom, p.HostAddr, err)
			}
			fmt.Fprintf(w, "godm: passing %v through as %v (id %s)\n", p.HostAddr, pl.SBDF, pl.ID)
		}
	}
	fmt.Fprintf(w, "godm: serving %v as ioreq server %d\n", spec.Dom, m.Server.ID())
	if err := m.Serve(ctx); errors.Is(err, machine.ErrDomainGone) {
		// Not a failure: the guest is gone, and with it the work.
		fmt.Fprintf(w, "godm: %v was destroyed; exiting\n", spec.Dom)
	} else if err != nil {
		return err
	}
	return m.Close()
}

// passthroughManager composes PCI passthrough on top of the machine: a
// Manager adding xen-pci-passthrough functions to the machine's bus (its
// ioreq server claims them) in slots it reserves on the machine's PCI
// registry, through the machine's privcmd handle; the guest's ACPI eject
// of such a slot removes the function.
func passthroughManager(m *machine.Machine, sysfs string, log *slog.Logger) (*passthrough.Manager, error) {
	c := hcall.New(m.Privcmd())
	dc, err := domctl.Open(c)
	if err != nil {
		return nil, err
	}
	all, err := passthrough.DetectMSIXAllWrites(m.Privcmd())
	if err != nil {
		log.Warn("cannot read Xen's features; assuming no XENFEAT_dm_msix_all_writes", "err", err)
	}
	mgr := passthrough.NewManager(passthrough.ManagerConfig{
		Dom:           m.Spec.Dom,
		Bus:           m.Spaces,
		Xen:           passthrough.NewXen(c, dc),
		HostOptions:   passthrough.HostOptions{SysfsRoot: sysfs},
		MSIXAllWrites: all,
		Assign:        passthrough.NewAssignQuery(c, dc),
		Slots:         m.PCI,
		Log:           log,
	})
	m.SetEjectHook(mgr.RemoveSlot)
	return mgr, nil
}

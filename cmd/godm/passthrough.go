package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"godm/hyp"
	"godm/hyp/dm"
	"godm/hyp/domctl"
	"godm/hyp/kernel"
	"godm/hyp/xenstore"
	"godm/internal/cli"
	"godm/passthrough"
)

// cmdPassthrough passes one host PCI function through to a domain with an
// ioreq server of its own, until interrupted.
func cmdPassthrough(ctx context.Context, args []string, out, w io.Writer) error {
	fs := flag.NewFlagSet("passthrough", flag.ContinueOnError)
	fs.SetOutput(w)
	domid := fs.Int("domid", -1, "the HVM domain (required)")
	bdf := fs.String("bdf", "", "the host function, SSSS:BB:DD.F (required; bound to pciback: xl pci-assignable-add)")
	slot := fs.Int("guest-slot", -1, "guest device number on bus 0 (default: the host's device number)")
	permissive := fs.Bool("permissive", false, "let guest writes to registers godm does not virtualise reach the device")
	msixAll := fs.Bool("msix-all-writes", false, "Xen advertises XENFEAT_dm_msix_all_writes (it forwards every MSI-X vector-control write, masking ones included; normally asked of Xen)")
	sysfs := fs.String("sysfs", "/sys", "sysfs mount point")
	stubs := fs.String("stub-driver", passthrough.DefaultStubDriver, "comma-separated drivers a passed-through function may be bound to")
	noCheck := fs.Bool("no-assign-check", false, "do not check up front (in xenstore and with Xen's test_assign_device) that the toolstack assigned the function to the domain; Xen's confirmation is still awaited before anything is mapped")
	grant := fs.Bool("grant", false, "do the toolstack's part too: grant the function's memory, ports and IRQ and assign it in the IOMMU (undone on exit); implies -no-assign-check")
	rdmRelaxed := fs.Bool("rdm-relaxed", false, "with -grant: assign even if the function's reserved device memory conflicts (XEN_DOMCTL_DEV_RDM_RELAXED)")
	devDir := fs.String("xen-dev", kernel.DefaultDevDir, "directory of the Xen device files")
	verbose := fs.Bool("v", false, "log debug detail too (warnings and errors are always logged)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("passthrough: unexpected argument %q", fs.Arg(0))
	}
	if *domid <= 0 || *domid >= 0x7ff0 {
		return fmt.Errorf("passthrough: -domid %d: want a guest domain id in 1..32751", *domid)
	}
	addr, err := passthrough.ParseSBDF(*bdf)
	if err != nil {
		return fmt.Errorf("-bdf: %w", err)
	}
	if *rdmRelaxed && !*grant {
		return errors.New("passthrough: -rdm-relaxed only applies with -grant (it is a flag of the IOMMU assignment -grant does)")
	}
	s := *slot
	if s < 0 {
		s = int(addr.Dev())
	}
	if s < 1 || s > 31 {
		return fmt.Errorf("passthrough: guest slot %d: want 1..31 (-guest-slot; pick one the guest's other device model leaves free)", s)
	}
	host := kernel.Host{DevDir: *devDir}
	if !host.Available(kernel.Privcmd) {
		return errors.New("passthrough: no Xen found (" + *devDir + "/privcmd is missing or not accessible)")
	}
	log := cli.NewLogger(w, *verbose)
	cfg := passthrough.StandaloneConfig{
		Dom: hyp.DomID(*domid), Host: addr, Slot: uint8(s), Permissive: *permissive, MSIXAllWrites: *msixAll,
		HostOptions:     passthrough.HostOptions{SysfsRoot: *sysfs, StubDrivers: strings.Split(*stubs, ",")},
		Grant:           *grant,
		RequireAssigned: !*noCheck && !*grant,
		Log:             log,
		Ready: func(d *passthrough.Device, srv dm.ServerID) {
			fmt.Fprintf(out, "godm: %v passed through to %v as %v (ioreq server %d)\n", addr, hyp.DomID(*domid), d.SBDF(), srv)
		},
	}
	if *rdmRelaxed {
		cfg.GrantFlags = domctl.RDMRelaxed
	}
	if !*noCheck && !*grant {
		xs, err := xenstore.Open(ctx, xenstore.Config{Getenv: os.Getenv, Kernel: host})
		if err != nil {
			return fmt.Errorf("passthrough: xenstore (for the assignment check; -no-assign-check skips it): %w", err)
		}
		defer xs.Close()
		cfg.Assignments = passthrough.XenstoreAssignments{XS: xs}
	}
	return passthrough.Standalone(ctx, host, cfg)
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"godm/hyp"
	"godm/hyp/kernel"
	"godm/internal/machine"
)

// cmdServe serves one domain on a real Xen host until interrupted.
func cmdServe(ctx context.Context, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(w)
	var mf machineFlags
	mf.register(fs, 0)
	domid := fs.Int("domid", -1, "the HVM domain to serve (required)")
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
	host := kernel.Host{DevDir: *devDir}
	if !host.Available(kernel.Privcmd) {
		return errors.New("no Xen found (" + *devDir + "/privcmd is missing or not accessible); try the simulated mode: godm sim")
	}
	log := newLogger(w, mf.verbose)
	spec, backends, err := mf.spec(log, w)
	if err != nil {
		return err
	}
	defer func() {
		for _, b := range backends {
			b.Close()
		}
	}()
	spec.Dom = hyp.DomID(*domid)
	m, err := machine.New(host, spec)
	if err != nil {
		return fmt.Errorf("serve %v: %w", spec.Dom, err)
	}
	defer m.Close()
	fmt.Fprintf(w, "godm: serving %v as ioreq server %d\n", spec.Dom, m.Server.ID())
	if err := m.Serve(ctx); err != nil {
		return err
	}
	return m.Close()
}

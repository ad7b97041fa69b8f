package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"godm/devices"
	"godm/hyp"
	"godm/hyp/domctl"
	"godm/hyp/hcall"
	"godm/hyp/kernel"
	"godm/hyp/xenstore"
	"godm/internal/board"
	"godm/internal/board/ptdriver"
	"godm/internal/cli"
	"godm/internal/machine"
	"godm/internal/metrics"
	"godm/internal/sandbox"
	"godm/passthrough"
)

// serveEnv is what godm serve takes from the process; tests substitute a
// simulated Xen.
type serveEnv struct {
	// Kernel is the Xen host; nil: the device files under -xen-dev.
	Kernel kernel.Kernel
	// Sandbox deprivileges the process once it is set up (sandbox.Apply).
	Sandbox func(sandbox.Config) (sandbox.Report, error)
	// Ready, if set, is called once the domain is served (tests).
	Ready func()
}

// cmdServe serves one domain on a real Xen host until interrupted.
func cmdServe(ctx context.Context, args []string, w io.Writer, env serveEnv) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(w)
	var mf cli.MachineFlags
	mf.Register(fs, 0)
	domid := fs.Int("domid", -1, "the HVM domain to serve (required)")
	var ptDevs cli.StringList
	fs.Var(&ptDevs, "device", "a device to add (repeatable); supported: xen-pci-passthrough,hostaddr=SSSS:BB:DD.F[,addr=S.F][,permissive=on][,id=ID]")
	sysfs := fs.String("sysfs", "/sys", "sysfs mount point (host PCI functions for passthrough)")
	ptGrant := fs.Bool("pt-grant", false, "for -device xen-pci-passthrough: do the toolstack's part too (grant the functions' memory, ports and IRQ, assign them in the IOMMU), undone on exit")
	devDir := fs.String("xen-dev", kernel.DefaultDevDir, "directory of the Xen device files")
	metricsAddr := fs.String("metrics", "", "serve the Prometheus metrics at unix:PATH or a loopback HOST:PORT (default: the "+MetricsEnv+" environment variable; none if unset)")
	sbMode := fs.String("sandbox", "on", "deprivilege once set up: on (Xen handles restricted to the domain, chroot, unprivileged user, no_new_privs, rlimits, seccomp allow-list), log (the same, but a system call outside the allow-list is only logged by the kernel), off (keep every privilege; logs a warning)")
	runas := fs.String("runas", "", "with -sandbox: the user to run as, a name or UID:GID (default: the domain's own, xen-qemuuser-range-base's uid + domid if that user exists, else "+fmt.Sprint(sandbox.DefaultUIDBase)+" + domid)")
	chroot := fs.String("chroot", "", "with -sandbox: the directory to chroot into (default: a fresh empty directory, removed before godm enters it)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	if *metricsAddr == "" {
		*metricsAddr = os.Getenv(MetricsEnv)
	}
	var metricsLn net.Listener
	if *metricsAddr != "" {
		a := strings.ReplaceAll(*metricsAddr, "%d", strconv.Itoa(*domid))
		ln, err := metrics.Listen(a)
		if err != nil {
			return fmt.Errorf("serve: -metrics %s: %w", a, err)
		}
		metricsLn = ln
		defer func() {
			if metricsLn != nil {
				metricsLn.Close()
			}
		}()
	}
	if *domid <= 0 || *domid >= 0x7ff0 {
		return fmt.Errorf("serve: -domid %d: want a guest domain id in 1..32751", *domid)
	}
	var pts []passthrough.DeviceSpec
	for _, d := range ptDevs {
		spec, err := passthrough.ParseDeviceOption(d)
		if err != nil {
			return fmt.Errorf("serve: %w", err) // it names -device and the key
		}
		pts = append(pts, spec)
	}
	if *ptGrant && len(pts) == 0 {
		return errors.New("serve: -pt-grant needs a -device xen-pci-passthrough")
	}
	if len(pts) == 0 && flagSet(fs, "sysfs") {
		return errors.New("serve: -sysfs is only used by -device xen-pci-passthrough")
	}
	mode, err := sandbox.ParseMode(*sbMode)
	if err != nil {
		return fmt.Errorf("serve: -sandbox %w", err)
	}
	if mode == sandbox.Off && (*runas != "" || *chroot != "") {
		return errors.New("serve: -runas and -chroot are part of the sandbox: not with -sandbox off")
	}
	if mode != sandbox.Off && len(pts) > 0 {
		// Passthrough issues domctls and physdev ops (MSI binding, BAR
		// moves) while serving: a restricted handle may not (XEN-FACTS
		// §2.9), as with libxl's dm_restrict.
		return errors.New("serve: -device xen-pci-passthrough needs -sandbox off (passthrough issues hypercalls a restricted handle may not)")
	}
	if mode != sandbox.Off && env.Sandbox == nil {
		return errors.New("serve: godm cannot deprivilege itself here: use -sandbox off")
	}
	// Every flag is checked (and the serial backends opened) before
	// looking for Xen, so that a bad command line is reported as such.
	log := cli.NewLogger(w, mf.Verbose)
	spec, backends, err := mf.Spec(log, w)
	if err != nil {
		return err
	}
	defer backends.Close()
	k := env.Kernel
	if k == nil {
		host := kernel.Host{DevDir: *devDir}
		if !host.Available(kernel.Privcmd) {
			return errors.New("no Xen found (" + *devDir + "/privcmd is missing or not accessible); the simulated-Xen demo is godm-lab sim")
		}
		k = host
	}
	spec.Dom = hyp.DomID(*domid)
	l, _ := spec.Layout() // checked by mf.Spec
	log.Debug("guest RAM layout", "dom", spec.Dom, "layout", l)
	if mode != sandbox.Off {
		// No xenstore (xentoolcore_restrict_all closes it): the machine
		// notices the domain's death by polling its ioreq server.
		spec.Restrict = true
	} else {
		log.Warn("sandbox off (-sandbox off): godm keeps its privileges and unrestricted Xen handles while it parses the guest's input")
		hint, stopHint := releaseDomainHint(ctx, k, log)
		defer stopHint()
		spec.DeathHint = hint
	}
	m, err := machine.New(k, spec)
	if err != nil {
		return fmt.Errorf("serve %v: %w", spec.Dom, err)
	}
	defer m.Close()
	closePT := func() {}
	defer func() { closePT() }()
	if len(pts) > 0 {
		c, err := addPassthrough(m, pts, *sysfs, *ptGrant, log, w)
		if err != nil {
			return fmt.Errorf("serve %v: %w", spec.Dom, err)
		}
		closePT = c
	}
	// Started: from here on a file: serial log is this run's.
	if err := backends.Start(); err != nil {
		return fmt.Errorf("serve %v: %w", spec.Dom, err)
	}
	if metricsLn != nil {
		ms := metrics.Serve(metricsLn, m.Metrics)
		metricsLn = nil
		defer ms.Close()
		fmt.Fprintf(w, "godm: metrics at %s\n", ms.Addr())
	}
	if mode != sandbox.Off {
		writes := false
		for _, s := range mf.Serial {
			writes = writes || strings.HasPrefix(s, "file:")
		}
		rep, err := env.Sandbox(sandbox.Config{Mode: mode, Dom: *domid, Chroot: *chroot, User: *runas, WritesFiles: writes})
		if err != nil {
			return fmt.Errorf("serve %v: sandbox: %w", spec.Dom, err)
		}
		logSandbox(log, mode, rep)
	}
	fmt.Fprintf(w, "godm: serving %v as ioreq server %d\n", spec.Dom, m.Server.ID())
	if env.Ready != nil {
		env.Ready()
	}
	if err := m.Serve(ctx); errors.Is(err, machine.ErrDomainGone) {
		// Not a failure: the guest is gone, and with it the work.
		fmt.Fprintf(w, "godm: %v was destroyed; exiting\n", spec.Dom)
	} else if err != nil {
		return err
	}
	closePT() // while the machine's privcmd handle is still open
	return m.Close()
}

// releaseDomainHint watches xenstore's @releaseDomain (fired when a
// domain dies or is destroyed; QEMU watches it too) so that the machine
// checks its domain at once instead of at its next poll. Without a
// xenstore (none running, no permission) it returns a nil channel: the
// poll alone notices, within machine.DefaultDeathPoll.
func releaseDomainHint(ctx context.Context, host kernel.Kernel, log *slog.Logger) (<-chan struct{}, func()) {
	octx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := xenstore.Open(octx, xenstore.Config{Getenv: os.Getenv, Kernel: host})
	if err != nil {
		log.Debug("no xenstore; the domain's death is noticed by polling", "err", err)
		return nil, func() {}
	}
	w, err := c.Watch(octx, "@releaseDomain", "")
	if err != nil {
		c.Close()
		log.Debug("no @releaseDomain watch; the domain's death is noticed by polling", "err", err)
		return nil, func() {}
	}
	hint := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range w.Events() {
			select {
			case hint <- struct{}{}:
			default:
			}
		}
	}()
	return hint, func() { c.Close(); <-done }
}

// addPassthrough passes the -device functions through on the machine:
// the board's xen-pci-passthrough driver over a passthrough Manager
// (passthroughManager), as for libxl's device_add, each checked to be
// assigned to the domain (with grant, after doing the toolstack's part
// itself). The returned close, to be called before the machine closes
// (its privcmd handle carries the hypercalls), unplugs them from the
// board, then revokes what grant granted: Xen refuses to unmap memory the
// domain may no longer map. On error, everything done is undone.
func addPassthrough(m *machine.Machine, pts []passthrough.DeviceSpec, sysfs string, grant bool,
	log *slog.Logger, w io.Writer) (func(), error) {
	mgr, pt, err := passthroughManager(m, sysfs, log)
	if err != nil {
		return nil, fmt.Errorf("passthrough: %w", err)
	}
	m.Board.SetPassthrough(func() (board.PCIPassthrough, error) { return ptdriver.Adapter{M: mgr}, nil })
	var revokes []func() error
	var plugged []string
	closed := false
	closePT := func() {
		if closed {
			return
		}
		closed = true
		for i := len(plugged) - 1; i >= 0; i-- {
			// One the guest ejected is gone from the board already.
			if m.Board.Device(plugged[i]) == nil {
				continue
			}
			if err := m.Board.Unplug(plugged[i]); err != nil {
				log.Error("passthrough: removing devices", "id", plugged[i], "err", err)
			}
		}
		if err := mgr.Close(); err != nil {
			log.Error("passthrough: removing devices", "err", err)
		}
		for i := len(revokes) - 1; i >= 0; i-- {
			if err := revokes[i](); err != nil {
				log.Error("passthrough: revoking grants", "err", err)
			}
		}
	}
	var entries []board.Entry
	for _, p := range pts {
		if grant {
			revoke, err := pt.grant(m.Spec.Dom, p.HostAddr)
			if err != nil {
				closePT()
				return nil, fmt.Errorf("passthrough %v: %w", p.HostAddr, err)
			}
			revokes = append(revokes, revoke)
		}
		props := map[string]string{"id": p.ID, "hostaddr": p.HostAddr.String(), "permissive": "off"}
		if p.Permissive {
			props["permissive"] = "on"
		}
		if p.Slot >= 0 {
			props["addr"] = fmt.Sprintf("%x", p.Slot)
		}
		entries = append(entries, board.Entry{Driver: board.PassthroughDriver, Props: props})
	}
	// Named on the command line: plugged as the board's own list, so
	// the toolstack must have assigned each already.
	if err := m.Board.Build(entries); err != nil {
		closePT()
		return nil, fmt.Errorf("passthrough: %w", err)
	}
	for _, p := range pts {
		plugged = append(plugged, p.ID)
		if d := m.Board.Device(p.ID); d != nil {
			fmt.Fprintf(w, "godm: passing %v through as %v (id %s)\n", p.HostAddr, d.Dev.(*board.Passthrough).Guest, p.ID)
		}
	}
	return closePT, nil
}

// ptHost is what the passthrough composition uses of the hypervisor.
type ptHost struct {
	xen   passthrough.Xen
	dc    *domctl.Domctl
	sysfs passthrough.HostOptions
}

// grant does the toolstack's part for host (passthrough.Grant) and
// returns its undo.
func (p ptHost) grant(dom hyp.DomID, host devices.SBDF) (func() error, error) {
	h, err := passthrough.OpenHost(p.sysfs, host)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	return passthrough.Grant(p.dc, p.xen, dom, h, 0)
}

// passthroughManager composes PCI passthrough on top of the machine: a
// Manager adding xen-pci-passthrough functions to the machine's bus (its
// ioreq server claims them) in slots it reserves on the machine's PCI
// registry, through the machine's privcmd handle. The board's
// xen-pci-passthrough driver plugs through it (ptdriver.Adapter); the
// guest's ACPI eject of such a slot unplugs the board's device.
func passthroughManager(m *machine.Machine, sysfs string, log *slog.Logger) (*passthrough.Manager, ptHost, error) {
	c := hcall.New(m.Privcmd())
	dc, err := domctl.Open(c)
	if err != nil {
		return nil, ptHost{}, err
	}
	pt := ptHost{xen: passthrough.NewXen(c, dc), dc: dc, sysfs: passthrough.HostOptions{SysfsRoot: sysfs}}
	all, err := passthrough.DetectMSIXAllWrites(m.Privcmd())
	if err != nil {
		log.Warn("cannot read Xen's features; assuming no XENFEAT_dm_msix_all_writes", "err", err)
	}
	mgr := passthrough.NewManager(passthrough.ManagerConfig{
		Dom:           m.Spec.Dom,
		Bus:           m.Spaces,
		Xen:           pt.xen,
		HostOptions:   pt.sysfs,
		MSIXAllWrites: all,
		Assign:        dc,
		Slots:         m.PCI,
		Log:           log,
	})
	return mgr, pt, nil
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

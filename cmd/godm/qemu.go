package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"godm/devices/chardev"
	"godm/hyp"
	"godm/hyp/kernel"
	"godm/hyp/xenstore"
	"godm/internal/board"
	"godm/internal/board/ptdriver"
	"godm/internal/cli"
	"godm/internal/dmcontract"
	"godm/internal/machine"
	"godm/internal/qemuopts"
	"godm/internal/qmp"
	"godm/internal/sandbox"
	"godm/internal/unixsock"
	"godm/passthrough"
)

// qemuEnv is what the qemu-xen entry point takes from the process; tests
// substitute a simulated Xen and xenstore.
type qemuEnv struct {
	// Kernel is the Xen host (kernel.Host on a dom0).
	Kernel kernel.Kernel
	// Getenv reads the environment (XEN_DOMAIN_ID, XENSTORED_PATH).
	Getenv func(string) string
	// DropPrivileges does -chroot/-runas once every handle is open; nil
	// when godm cannot (query-command-line-options then leaves run-with
	// out, and such a command line is refused).
	DropPrivileges func(chroot, user string) error
	// Sandbox deprivileges the process once it is set up
	// (sandbox.Apply); nil when godm cannot, and then only
	// -godm-sandbox off is served.
	Sandbox func(sandbox.Config) (sandbox.Report, error)
	// Stdout receives what QEMU prints on its standard output (-version,
	// -device help); nil: the log writer.
	Stdout io.Writer
}

// cmdQEMU serves a domain as libxl's device model, from the qemu-xen
// command line libxl writes (dmcontract.Parse): it builds the machine,
// serves QMP on the monitors libxl named, reports readiness (xenstore
// device-model/<domid>/state, or query-status "prelaunch" with -S),
// drops privileges if asked, and serves until libxl signals it, QMP's
// quit, or the domain dies.
func cmdQEMU(ctx context.Context, args []string, w io.Writer, env qemuEnv) error {
	cfg, err := dmcontract.Parse(args, env.Getenv)
	if err != nil {
		return err
	}
	stdout := env.Stdout
	if stdout == nil {
		stdout = w
	}
	if cfg.Version {
		v := qmp.DefaultVersion
		fmt.Fprintf(stdout, "godm: a Xen device model speaking qemu-xen's command line and QMP (reported as QEMU %d.%d.%d)\n", v.Major, v.Minor, v.Micro)
		return nil
	}
	if cfg.DeviceHelp {
		if cfg.HelpDriver == "" {
			return board.Help(stdout)
		}
		return board.DriverHelp(stdout, cfg.HelpDriver)
	}
	if (cfg.Chroot != "" || cfg.User != "") && env.DropPrivileges == nil {
		return errors.New("-chroot/-runas/-run-with: godm cannot drop privileges here: remove dm_restrict=1 and device_model_user=")
	}
	mode, err := sandbox.ParseMode(cfg.Sandbox)
	if err != nil {
		return fmt.Errorf("-godm-sandbox %w", err)
	}
	if cfg.Probe {
		mode = sandbox.Off // no domain: the probe only answers QMP
	} else if mode != sandbox.Off && env.Sandbox == nil {
		return errors.New("godm cannot deprivilege itself here: add -godm-sandbox off (xl.cfg device_model_args_hvm)")
	}
	// The sandbox restricts the Xen handles as -xen-domid-restrict does;
	// only an explicit -xen-domid-restrict also means libxl expects no
	// xenstore state (readiness goes through QMP).
	restrict := cfg.Restrict || mode != sandbox.Off
	log := cli.NewLogger(w, env.Getenv("GODM_VERBOSE") != "")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Monitors first: libxl connects as soon as the process runs.
	var chardevs []dmcontract.Chardev
	type mon struct {
		id string
		ln *net.UnixListener
	}
	var mons []mon
	defer func() {
		for _, m := range mons {
			m.ln.Close()
		}
	}()
	for _, m := range cfg.Monitors {
		var ln *net.UnixListener
		var err error
		name := "unix:" + m.Path + ",server=on"
		if m.FD >= 0 {
			ln, err = unixsock.FromFD(m.FD)
			name = "fd:" + strconv.Itoa(m.FD) + ",server=on"
		} else {
			ln, err = unixsock.Listen(m.Path)
		}
		if err != nil {
			return fmt.Errorf("-chardev id=%s: %w", m.ID, err)
		}
		mons = append(mons, mon{m.ID, ln})
		chardevs = append(chardevs, dmcontract.Chardev{Label: m.ID, Filename: name})
	}

	var deathHint <-chan struct{}
	var xs *xenstore.Client
	if !cfg.Probe && !cfg.Restrict {
		// Under -xen-domid-restrict QEMU's xenstore handle is closed
		// (xentoolcore_restrict_all), and libxl asks query-status
		// instead; so godm opens none.
		xctx, xcancel := context.WithTimeout(ctx, 10*time.Second)
		xs, err = xenstore.Open(xctx, xenstore.Config{Getenv: env.Getenv, Kernel: env.Kernel})
		xcancel()
		if err != nil {
			// One line (Open joins the socket's and the device's errors).
			return fmt.Errorf("xenstore (for device-model/%d/state): %s", cfg.Dom, strings.ReplaceAll(err.Error(), "\n", "; "))
		}
		defer xs.Close()
		// QEMU watches @releaseDomain to notice the domain's death at
		// once (xen_be_init); the machine's poll stays the fallback.
		w, err := xs.Watch(ctx, "@releaseDomain", "godm")
		if err != nil {
			return fmt.Errorf("xenstore: watch @releaseDomain: %w", err)
		}
		hint := make(chan struct{}, 1)
		go func() {
			for range w.Events() {
				select {
				case hint <- struct{}{}:
				default:
				}
			}
		}()
		deathHint = hint
	}

	var host *machineHost
	var backends cli.Backends
	defer func() { backends.Close() }()
	var m *machine.Machine
	if !cfg.Probe {
		spec := machine.Spec{Dom: hyp.DomID(cfg.Dom), VCPUs: cfg.VCPUs, MemBytes: cfg.MemMiB << 20,
			MaxRAMBelow4G: cfg.Below4G, NoPlatformDevice: cfg.NoPlatform, Restrict: restrict, Log: log,
			DeathHint: deathHint}
		if _, err := spec.Layout(); err != nil {
			return fmt.Errorf("-m/-machine max-ram-below-4g: %w", err)
		}
		for i, s := range cfg.Serial {
			be, desc, err := machine.OpenChardev(s)
			if err != nil {
				return fmt.Errorf("-serial %s: %w", s, err)
			}
			backends = append(backends, be)
			spec.Serial = append(spec.Serial, be)
			// QEMU's label is serialN (vl.c serial_parse); a pty's
			// filename is "pty:<slave>" (chardev/char-pty.c), which libxl
			// copies to serial/N/tty.
			fn := s
			if p, ok := be.(*chardev.PTY); ok {
				fn = "pty:" + p.Path()
			}
			chardevs = append(chardevs, dmcontract.Chardev{Label: fmt.Sprintf("serial%d", i), Filename: fn})
			log.Info("serial port", "com", i+1, "backend", desc)
		}
		spec.Devices = qemuLayout(spec, cfg.TestSlots)
		m, err = machine.New(env.Kernel, spec)
		if err != nil {
			return fmt.Errorf("serve %v: %w", spec.Dom, err)
		}
		defer m.Close()
		if cfg.Prelaunch {
			// QEMU-xen keeps its ioreq server off until the VM runs
			// (xen_hvm_change_state_handler); godm holds its devices.
			m.Board.Pause()
		}
		host = &machineHost{m: m}
		switch {
		case restrict && !cfg.Restrict:
			m.Board.Env().Passthrough = func() (board.PCIPassthrough, error) {
				return nil, errors.New("PCI passthrough needs hypercalls godm's sandbox restricts: start the device model with -godm-sandbox off (xl.cfg device_model_args_hvm)")
			}
		case !restrict:
			// xl pci-attach: libxl's device_add xen-pci-passthrough goes
			// through the board to the passthrough Manager, made on first
			// use. (Under -xen-domid-restrict the handles may not issue
			// the domctls passthrough needs: libxl documents passthrough
			// with dm_restrict as unsupported, and the driver then
			// fails the device_add.)
			var mgr *passthrough.Manager
			m.Board.Env().Passthrough = func() (board.PCIPassthrough, error) {
				if mgr == nil {
					mg, _, err := passthroughManager(m, "/sys", log)
					if err != nil {
						return nil, err
					}
					mgr = mg
				}
				return ptdriver.Adapter{M: mgr}, nil
			}
		}
	}

	quit := make(chan struct{})
	var quitOnce sync.Once
	var st *dmcontract.State
	var srv *qmp.Server
	stCfg := dmcontract.StateConfig{
		Prelaunch:      cfg.Prelaunch,
		Emit:           func(ev string, data any) { srv.Emit(ev, data) },
		Quit:           func() { quitOnce.Do(func() { close(quit) }) },
		Chardevs:       chardevs,
		VCPUs:          cfg.VCPUs,
		DropPrivileges: env.DropPrivileges != nil,
	}
	if host != nil {
		stCfg.Host = host
		// QEMU lists the vCPUs present (-smp's cpus), not the slots.
		stCfg.VCPUs = cfg.OnlineVCPUs
		if stCfg.VCPUs == 0 {
			// No -smp: libxl writes none for one vCPU (libxl_dm.c), and
			// QEMU's default is one.
			stCfg.VCPUs = 1
		}
	}
	st = dmcontract.NewState(stCfg)
	srv, err = qmp.NewServer(qmp.Config{Commands: st.Commands(), Log: log})
	if err != nil {
		return err
	}
	defer srv.Close()

	// Every handle is open: drop privileges before serving anything.
	switch {
	case mode != sandbox.Off:
		writes := false
		for _, s := range cfg.Serial {
			writes = writes || strings.HasPrefix(s, "file:")
		}
		rep, err := env.Sandbox(sandbox.Config{Mode: mode, Dom: cfg.Dom, Chroot: cfg.Chroot, User: cfg.User, WritesFiles: writes})
		if err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
		logSandbox(log, mode, rep)
	case cfg.Probe:
		if cfg.Chroot != "" || cfg.User != "" {
			if err := env.DropPrivileges(cfg.Chroot, cfg.User); err != nil {
				return err
			}
		}
	default:
		log.Warn("sandbox off (-godm-sandbox off): godm keeps its privileges and unrestricted Xen handles while it parses the guest's input")
		if cfg.Chroot != "" || cfg.User != "" {
			if err := env.DropPrivileges(cfg.Chroot, cfg.User); err != nil {
				return err
			}
		}
	}
	for _, mo := range mons {
		if err := srv.Serve(mo.id, mo.ln); err != nil {
			return err
		}
	}
	mons = nil // the server owns them now

	if cfg.Probe {
		select {
		case <-quit:
		case <-ctx.Done():
		}
		return nil
	}
	if err := backends.Start(); err != nil {
		return fmt.Errorf("serve %v: %w", m.Spec.Dom, err)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- m.Serve(ctx) }()
	fmt.Fprintf(w, "godm: serving %v as ioreq server %d (%s)\n", m.Spec.Dom, m.Server.ID(), st.Status())

	// Readiness: QEMU records "running" once the VM runs. If it cannot,
	// libxl would wait out its timeout: godm gives up at once instead.
	readyErr := make(chan error, 1)
	go func() {
		select {
		case <-st.Started():
		case <-ctx.Done():
			return
		}
		if xs == nil {
			return
		}
		p := fmt.Sprintf("/local/domain/0/device-model/%d/state", cfg.Dom)
		if err := xs.Write(ctx, p, []byte("running")); err != nil && ctx.Err() == nil {
			readyErr <- fmt.Errorf("reporting readiness at %s: %w", p, err)
			cancel()
			return
		}
		if mode != sandbox.Off {
			// Set up: the sandbox keeps no xenstore connection
			// (xentoolcore_restrict_all closes it); libxl kills the
			// device model when the domain goes.
			xs.Close()
			log.Debug("xenstore connection closed (sandbox)")
		}
	}()
	select {
	case <-quit:
		cancel()
		<-serveErr
		fmt.Fprintf(w, "godm: quit\n")
	case err := <-readyErr:
		<-serveErr
		return err
	case err := <-serveErr:
		switch {
		case errors.Is(err, machine.ErrDomainGone):
			fmt.Fprintf(w, "godm: %v was destroyed; exiting\n", m.Spec.Dom)
		case err != nil:
			return err
		case ctx.Err() != nil && len(readyErr) == 0:
			// libxl's SIGHUP/SIGTERM at xl destroy.
			fmt.Fprintf(w, "godm: signalled; exiting\n")
		}
	}
	select {
	case err := <-readyErr: // Serve ended because readiness failed
		return err
	default:
	}
	srv.Close()
	return m.Close()
}

// machineHost is the machine as the QMP commands drive it.
type machineHost struct{ m *machine.Machine }

func (h *machineHost) Pause()  { h.m.Board.Pause() }
func (h *machineHost) Resume() { h.m.Board.Resume() }
func (h *machineHost) Reset()  { h.m.Board.Reset() }

func (h *machineHost) SetDirtyLog(on bool) error {
	l := h.m.Dirty()
	if l == nil {
		return qmp.Errorf("dirty logging needs the guest's RAM size (-m)")
	}
	l.SetEnabled(on)
	return nil
}

// builtin are the xenfv machine's own functions, which QEMU lists in
// query-pci without a qdev id.
var builtin = map[string]bool{"i440FX": true, "PIIX3": true, "piix4-pm": true, "xen-platform": true}

func (h *machineHost) PCI() []dmcontract.PCIFunction {
	var out []dmcontract.PCIFunction
	for _, p := range h.m.Board.Devices() {
		if p.PCI == nil {
			continue
		}
		id := p.ID
		if builtin[p.Driver] {
			id = ""
		}
		out = append(out, dmcontract.PCIFunction{QdevID: id, Dev: p.PCI})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Dev.SBDF() < out[j].Dev.SBDF() })
	return out
}

// DeviceAdd plugs a hot-pluggable driver of the board from device_add's
// dictionary (QEMU qdev_device_add: driver and id, the rest properties).
func (h *machineHost) DeviceAdd(args map[string]any) error {
	o, err := qemuopts.FromJSON("device_add", args)
	if err != nil {
		return qmp.Errorf("%v", err)
	}
	drv := o.String("driver", "")
	d := board.LookupDriver(drv)
	if d == nil {
		// QEMU 7.2 qdev_get_device_class.
		return qmp.Errorf("'%s' is not a valid device model name", drv)
	}
	if !d.Hotpluggable {
		return qmp.Errorf("Device '%s' can not be hotplugged on this machine", drv)
	}
	id := o.ID()
	if id != "" && h.m.Board.Device(id) != nil {
		return qmp.Errorf("Duplicate device ID '%s'", id)
	}
	props := map[string]string{}
	for _, k := range o.Keys() {
		if k == "driver" || k == "id" {
			continue
		}
		props[k] = o.String(k, "")
	}
	if _, err := h.m.Board.Plug(drv, id, board.NewProps(props)); err != nil {
		return qmp.Errorf("%v", err)
	}
	return nil
}

func (h *machineHost) DeviceDel(id string) error {
	if h.m.Board.Device(id) == nil {
		return qmp.NewError(qmp.ClassDeviceNotFound, "Device '%s' not found", id)
	}
	if err := h.m.Board.Unplug(id); err != nil {
		return qmp.Errorf("%v", err)
	}
	return nil
}

// qemuLayout is the board for a qemu-xen command line: the machine's
// devices where QEMU-xen puts them for the same argv (spec.Entries: the
// Xen platform device at machine.PlatformSlot, 00:02.0), then godm's test
// devices.
func qemuLayout(spec machine.Spec, testSlots []int) []board.Entry {
	e := spec.Entries()
	for _, slot := range testSlots {
		e = append(e, board.Entry{Driver: board.TestDevice, Props: map[string]string{"addr": fmt.Sprintf("%02x.0", slot)}})
	}
	return e
}

// logSandbox says what the sandbox did, in one line.
func logSandbox(log *slog.Logger, mode sandbox.Mode, rep sandbox.Report) {
	args := []any{"mode", mode.String(), "seccomp", rep.Seccomp}
	if rep.UID >= 0 {
		args = append(args, "uid", rep.UID, "gid", rep.GID)
	}
	if rep.Root != "" {
		args = append(args, "root", rep.Root)
	}
	log.Info("sandboxed: Xen handles restricted to the domain, no_new_privs, rlimits", args...)
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"godm/block"
	"godm/devices/chardev"
	"godm/devices/ide"
	"godm/devices/uhci"
	"godm/devices/vga"
	"godm/display"
	"godm/display/vnc"
	"godm/hyp"
	"godm/hyp/kernel"
	"godm/hyp/xenstore"
	"godm/internal/board"
	"godm/internal/board/ptdriver"
	"godm/internal/cli"
	"godm/internal/dmcontract"
	"godm/internal/machine"
	"godm/internal/metrics"
	"godm/internal/qemuopts"
	"godm/internal/qmp"
	"godm/internal/qmpdisplay"
	"godm/internal/sandbox"
	"godm/internal/unixsock"
	"godm/ioreq"
	"godm/netback"
	"godm/netback/netdev"
	"godm/netback/userproc"
	"godm/passthrough"
)

// MetricsEnv names the environment variable that opens godm's Prometheus
// endpoint: "unix:PATH" or a loopback "HOST:PORT" ("%d" in it becomes the
// domain id). Unset: no endpoint (the default).
const MetricsEnv = "GODM_METRICS"

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
	// Sysfs is where sysfs is mounted, for passed-through functions
	// ("": /sys).
	Sysfs string
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

	// The opt-in metrics endpoint (GODM_METRICS: unix:PATH or a loopback
	// HOST:PORT), opened with the monitors, before privileges drop.
	var metricsLn net.Listener
	if a := env.Getenv(MetricsEnv); a != "" && !cfg.Probe {
		a = strings.ReplaceAll(a, "%d", strconv.Itoa(cfg.Dom))
		if metricsLn, err = metrics.Listen(a); err != nil {
			return fmt.Errorf("%s=%s: %w", MetricsEnv, a, err)
		}
		defer func() {
			if metricsLn != nil {
				metricsLn.Close()
			}
		}()
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
		spec := machine.Spec{Dom: hyp.DomID(cfg.Dom), VCPUs: cfg.VCPUs, OnlineVCPUs: cfg.OnlineVCPUs, MemBytes: cfg.MemMiB << 20,
			MaxRAMBelow4G: cfg.Below4G, NoPlatformDevice: cfg.NoPlatform, Restrict: restrict, Log: log,
			DeathHint: deathHint, Worker: ioreq.WorkerConfig{Spin: cfg.Spin}, Incoming: cfg.Incoming != nil}
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
		if len(cfg.Netdevs) > 0 {
			spec.Netdevs = map[string]netback.Backend{}
		}
		ndDefaults, err := netdev.DefaultsFromEnv(env.Getenv)
		if err != nil {
			return err
		}
		for _, nd := range cfg.Netdevs {
			o, err := netdev.Parse(nd.Arg)
			if err != nil {
				return err
			}
			d := ndDefaults
			arg := nd.Arg
			// User-mode networking runs in the child godm-usernet
			// (netback/userproc): godm links no netstack.
			d.User = func(o *qemuopts.Opts) (netback.Backend, error) {
				path, err := userproc.Find(env.Getenv)
				if err != nil {
					return nil, o.Errorf("%v", err)
				}
				return userproc.Start(path, arg, o.ID(), w)
			}
			be, err := netdev.OpenWith(o, d)
			if err != nil {
				return err
			}
			defer be.Close() // after the machine, whose NICs hold it
			spec.Netdevs[nd.ID] = be
			log.Info("netdev", "id", nd.ID, "type", nd.Type)
			if f := be.AntiSpoof(); f != nil {
				log.Info("netdev anti-spoofing on", "id", nd.ID, "attach", f.Mode())
			}
		}
		var sata []board.Entry
		if spec.Drives, spec.Storage, sata, err = openDrives(cfg); err != nil {
			return err
		}
		spec.Devices = append(qemuLayout(spec, cfg.VGA, cfg.VGAMemMB, cfg.VRAMP2M, cfg.TestSlots, cfg.NICs, cfg.USBController, cfg.USB), sata...)
		m, err = machine.New(env.Kernel, spec) // owns the drives from here
		if err != nil {
			return fmt.Errorf("serve %v: %w", spec.Dom, err)
		}
		defer m.Close()
		if cfg.Prelaunch {
			// QEMU-xen keeps its ioreq server off until the VM runs
			// (xen_hvm_change_state_handler); godm holds its devices.
			m.Board.Pause()
		}
		host = &machineHost{m: m, out: w}
		if in := cfg.Incoming; in != nil {
			// xl restore / migrate: the devices' state libxl saved
			// (xen-save-devices-state) comes back before anything is
			// served; a stream for another machine ends godm with one
			// line, which libxl shows from the device model's log.
			if err := loadIncoming(m, in); err != nil {
				return err
			}
			// The images were opened inactive: a live migration's
			// source may have written them up to its save. QEMU
			// activates them when the incoming state is loaded
			// (process_incoming_migration_bh, late-block-activate off).
			if err := m.Board.ActivateDrives(); err != nil {
				return fmt.Errorf("-incoming %s: %w", incomingName(in), err)
			}
			fmt.Fprintf(w, "godm: device state restored from %s\n", incomingName(in))
		}
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
					sysfs := env.Sysfs
					if sysfs == "" {
						sysfs = "/sys"
					}
					mg, _, err := passthroughManager(m, sysfs, log)
					if err != nil {
						return nil, err
					}
					mgr = mg
				}
				return ptdriver.Adapter{M: mgr}, nil
			}
		}
	}

	// The display: the VGA's picture (or, with VNC and no VGA, a black
	// screen, as QEMU shows), served over VNC with the i8042 as input.
	var vncSrv *vnc.Server
	var screen display.Source
	if m != nil {
		if p := m.Board.First("VGA"); p != nil {
			screen = p.Dev.(*vga.Device).Source()
		} else if p := m.Board.First("cirrus-vga"); p != nil {
			screen = p.Dev.(*vga.Cirrus).Source()
		}
	}
	if m != nil && cfg.VNC.Enabled {
		src := screen
		if src == nil {
			buf, err := display.NewBuffer(640, 480, display.XRGB8888)
			if err != nil {
				return err
			}
			src = buf
		}
		km, err := display.LookupKeymap(cfg.Keymap)
		if err != nil {
			return fmt.Errorf("-k %s: %w", cfg.Keymap, err)
		}
		vc := vnc.Config{Source: src, Keymap: km, Name: cfg.Name, Log: log}
		if ps2 := m.PS2; ps2 != nil {
			vc.Input = &display.PS2Input{Keyboard: ps2, Mouse: ps2}
		}
		if p := m.Board.First(board.TabletDriver); p != nil {
			// With a tablet, pointer events go to it as absolute
			// positions (QEMU routes absolute events to the tablet, the
			// PS/2 mouse takes relative ones only); keys stay on PS/2.
			vc.Input = display.SplitInput{Keys: vc.Input, Pointer: p.Dev.(*board.USBTablet)}
		}
		if cfg.VNC.Password {
			vc.Auth = vnc.AuthVNC
		}
		if vncSrv, err = vnc.New(vc); err != nil {
			return err
		}
		defer vncSrv.Close()
		ln, err := cfg.VNC.Listen()
		if err != nil {
			return fmt.Errorf("-vnc: %w", err)
		}
		vncSrv.Go(ln) // listening before query-vnc can ask
		log.Info("VNC server", "addr", ln.Addr().String(), "password", cfg.VNC.Password)
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
		Restored:       cfg.Incoming != nil,
	}
	if screen != nil {
		stCfg.Screendump = func(name string) error {
			f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o666)
			if err != nil {
				return err
			}
			err = display.WritePPM(f, screen)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			return err
		}
	}
	if host != nil {
		stCfg.Host = host
		// QEMU lists the vCPUs present (-smp's cpus) in query-cpus-fast
		// and the slots (maxcpus) in query-hotpluggable-cpus.
		stCfg.VCPUs, stCfg.MaxVCPUs = cfg.OnlineVCPUs, cfg.VCPUs
		if stCfg.VCPUs == 0 {
			// No -smp: libxl writes none for one vCPU (libxl_dm.c), and
			// QEMU's default is one.
			stCfg.VCPUs = 1
		}
	}
	st = dmcontract.NewState(stCfg)
	defer st.Close()
	cmds := st.Commands()
	if !cfg.Probe {
		for name, h := range qmpdisplay.Commands(vncSrv, screen) {
			cmds[name] = h
		}
	}
	srv, err = qmp.NewServer(qmp.Config{Commands: cmds, Log: log, OnDisconnect: st.ClientGone})
	if err != nil {
		return err
	}
	defer st.FDSets().Close()
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
	if metricsLn != nil {
		ms := metrics.Serve(metricsLn, m.Metrics)
		metricsLn = nil // the server owns it now
		defer ms.Close()
		log.Info("metrics endpoint", "addr", ms.Addr().String())
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
type machineHost struct {
	m *machine.Machine
	// out is the device model's log as libxl keeps it
	// (qemu-dm-NAME.log): save, restore and log-dirty are noted there.
	out io.Writer
}

func (h *machineHost) Pause()  { h.m.Board.Pause() }
func (h *machineHost) Resume() { h.m.Board.Resume() }
func (h *machineHost) Reset()  { h.m.Board.Reset() }

func (h *machineHost) Metrics() []metrics.Family { return h.m.Metrics() }

func (h *machineHost) SetDirtyLog(on bool) error {
	if h.m.Dirty() == nil {
		return qmp.Errorf("dirty logging needs the guest's RAM size (-m)")
	}
	if err := h.m.SetDirtyLog(on); err != nil {
		return qmp.Errorf("%v", err)
	}
	fmt.Fprintf(h.out, "godm: log-dirty %s\n", map[bool]string{true: "on", false: "off"}[on])
	return nil
}

// SaveState and LoadState are xen-save-devices-state's and
// xen-load-devices-state's.
func (h *machineHost) SaveState(w io.Writer) error {
	cw := &countingWriter{w: w}
	if err := h.m.SaveState(cw); err != nil {
		return err
	}
	fmt.Fprintf(h.out, "godm: device state saved (%d bytes)\n", cw.n)
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
func (h *machineHost) LoadState(r io.Reader) error { return h.m.LoadState(r) }

// ReleaseImages and ActivateImages hand the disk images over at the end
// of a live migration's save, and take them back at cont (see block's
// migrate.go).
func (h *machineHost) ReleaseImages() error  { return h.m.Board.InactivateDrives() }
func (h *machineHost) ActivateImages() error { return h.m.Board.ActivateDrives() }

func incomingName(in *dmcontract.Incoming) string {
	if in.Path != "" {
		return "file:" + in.Path
	}
	return "fd:" + strconv.Itoa(in.FD)
}

// loadIncoming restores the machine's devices from -incoming's source
// and closes it.
func loadIncoming(m *machine.Machine, in *dmcontract.Incoming) error {
	var f *os.File
	if in.Path != "" {
		var err error
		if f, err = os.Open(in.Path); err != nil {
			return fmt.Errorf("-incoming %s: %w", incomingName(in), err)
		}
	} else if f = os.NewFile(uintptr(in.FD), "incoming"); f == nil {
		return fmt.Errorf("-incoming %s: not an open descriptor", incomingName(in))
	}
	defer f.Close()
	if err := m.LoadState(f); err != nil {
		return fmt.Errorf("-incoming %s: %w", incomingName(in), err)
	}
	return nil
}

// builtin are the xenfv machine's own functions, which QEMU lists in
// query-pci without a qdev id.
var builtin = map[string]bool{"i440FX": true, "PIIX3": true, "piix4-pm": true, "xen-platform": true}

func (h *machineHost) PCI() []dmcontract.PCIFunction {
	var out []dmcontract.PCIFunction
	for _, p := range h.m.Board.Devices() {
		var view dmcontract.PCIView
		switch {
		case p.PCI != nil:
			view = p.PCI
		default:
			// A passed-through function (libxl's xl pci-attach polls
			// query-pci for its qdev_id, slot and function).
			if pt, ok := p.Dev.(*board.Passthrough); ok && pt.View != nil {
				view = pt.View
			}
		}
		if view == nil {
			continue
		}
		id := p.ID
		if builtin[p.Driver] {
			id = ""
		}
		out = append(out, dmcontract.PCIFunction{QdevID: id, Dev: view})
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

func (h *machineHost) HasDevice(id string) bool { return h.m.Board.Device(id) != nil }

// PlugCPU sets the slot's bit in the PIIX4 processor bitmap (PRST), which
// raises GPE0 bit 2: the DSDT's PRSC method then marks the processor
// enabled and notifies the guest's OS (tools/libacpi/mk_dsdt.c).
func (h *machineHost) PlugCPU(slot int) error {
	if h.m.PM == nil {
		return qmp.Errorf("CPU hotplug needs the machine's ACPI function (piix4-pm)")
	}
	h.m.PM.SetCPUPresent(slot, true)
	return nil
}

func (h *machineHost) SetLink(name string, up bool) error {
	if !h.m.Board.SetLink(name, up) {
		return qmp.NewError(qmp.ClassDeviceNotFound, "Device '%s' not found", name)
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

// openDrives opens the -drive images (before privileges are dropped) and
// returns them by id with the disk devices that place them: those on the
// IDE controller, and the AHCI controller with its disks, then the nvme
// and virtio-blk-pci devices (libxl writes
// -device ahci after the NICs, so QEMU gives it the slot after theirs). A
// drive without an id gets QEMU's name (ide<bus>-hd<unit> or -cd<unit>,
// vl.c drive_new), which query-block shows. On error nothing stays open.
func openDrives(cfg *dmcontract.Config) (map[string]*board.Drive, []board.Entry, []board.Entry, error) {
	drives := map[string]*board.Drive{}
	var entries, sata []board.Entry
	fail := func(err error) (map[string]*board.Drive, []board.Entry, []board.Entry, error) {
		for _, d := range drives {
			d.Close()
		}
		return nil, nil, nil, err
	}
	for _, h := range cfg.AHCI {
		p := map[string]string{"id": h.ID}
		if h.Addr != "" {
			p["addr"] = h.Addr
		}
		sata = append(sata, board.Entry{Driver: "ahci", Props: p})
	}
	for _, d := range cfg.Drives {
		id := d.ID
		if id == "" {
			kind := "-hd"
			if d.Media == "cdrom" {
				kind = "-cd"
			}
			id = fmt.Sprintf("ide%d%s%d", d.Index/2, kind, d.Index%2)
		}
		cache, err := block.ParseCache(d.Cache)
		if err != nil {
			return fail(fmt.Errorf("-drive id=%s: %w", id, err))
		}
		drv, err := board.OpenDrive(board.DriveOptions{ID: id, File: d.File, Format: d.Format, ReadOnly: d.ReadOnly,
			Cache: cache, Media: d.Media, Discard: d.Discard, Inactive: cfg.Incoming != nil})
		if err != nil {
			return fail(fmt.Errorf("-drive %s: %w", id, err))
		}
		drives[id] = drv
		if d.Index >= 0 {
			e, err := board.IDEIndexEntry(d.Index, d.Media, id)
			if err != nil {
				return fail(err)
			}
			entries = append(entries, e)
		}
	}
	for _, dev := range cfg.IDEDevices {
		p := map[string]string{"bus": fmt.Sprintf("ide.%d", dev.Bus), "unit": fmt.Sprint(dev.Unit)}
		if dev.AHCI != "" {
			p["bus"] = fmt.Sprintf("%s.%d", dev.AHCI, dev.Bus)
		}
		if dev.ID != "" {
			p["id"] = dev.ID
		}
		if dev.Drive != "" {
			p["drive"] = dev.Drive
		}
		if dev.AHCI != "" {
			sata = append(sata, board.Entry{Driver: dev.Driver, Props: p})
			continue
		}
		entries = append(entries, board.Entry{Driver: dev.Driver, Props: p})
	}
	// nvme and virtio-blk-pci (device_model_args_hvm, which libxl writes
	// last): after the AHCI controller, at addr= or the first free slot.
	for _, dev := range cfg.PCIDisks {
		p := map[string]string{"drive": dev.Drive}
		for k, v := range map[string]string{"id": dev.ID, "serial": dev.Serial, "addr": dev.Addr} {
			if v != "" {
				p[k] = v
			}
		}
		sata = append(sata, board.Entry{Driver: dev.Driver, Props: p})
	}
	return drives, entries, sata, nil
}

// qemuLayout is the board for a qemu-xen command line: the machine's
// devices where QEMU-xen puts them for the same argv (spec.Entries: the
// Xen platform device at machine.PlatformSlot, 00:02.0), then the VGA
// (vgaMB non-zero: the first free slot, 00:03.0, as QEMU-xen's -device
// VGA), then godm's test devices (at the slots given), then the NICs in
// command-line order at the lowest free slots (libxl gives them no addr=;
// QEMU-xen puts them behind the platform device and the VGA). -usb's
// controller is at 01.2 (QEMU pc_piix.c: the PIIX3's devfn + 2); the
// USB -device entries follow the VGA in their command-line order (libxl
// writes them between the VGA and the NICs).
func qemuLayout(spec machine.Spec, vgaDriver string, vgaMB uint64, vramP2M map[string]string, testSlots []int, nics []dmcontract.NIC, usbCtl bool, usb []dmcontract.USBDevice) []board.Entry {
	e := spec.Entries() // with spec.Storage after the IDE controller
	if usbCtl {
		e = append(e, board.Entry{Driver: board.UHCIDriver, Props: map[string]string{"addr": fmt.Sprintf("%02x.%x", uhci.Slot, uhci.Function)}})
	}
	if vgaDriver != "" {
		props := map[string]string{"vgamem_mb": strconv.FormatUint(vgaMB, 10)}
		if v := vramP2M[vgaDriver]; v != "" {
			props[dmcontract.VRAMP2MProp] = v
		}
		e = append(e, board.Entry{Driver: vgaDriver, Props: props})
	}
	for _, u := range usb {
		e = append(e, board.Entry{Driver: u.Driver, Props: maps.Clone(u.Props)})
	}
	for _, slot := range testSlots {
		e = append(e, board.Entry{Driver: board.TestDevice, Props: map[string]string{"addr": fmt.Sprintf("%02x.0", slot)}})
	}
	for _, n := range nics {
		p := map[string]string{}
		for k, v := range map[string]string{"id": n.ID, "netdev": n.Netdev, "mac": n.MAC} {
			if v != "" {
				p[k] = v
			}
		}
		drv := board.NICDriver
		if n.Model == board.E1000Driver || n.Model == board.VirtioNetDriver {
			drv = n.Model
		}
		e = append(e, board.Entry{Driver: drv, Props: p})
	}
	return e
}

// Blocks implements dmcontract.BlockHost: the board's IDE drives.
func (h *machineHost) Blocks() []dmcontract.BlockInfo {
	var out []dmcontract.BlockInfo
	for _, b := range h.m.Board.Blocks() {
		bi := dmcontract.BlockInfo{Device: b.Device, QdevID: b.QdevID, Removable: b.Kind == ide.CD,
			Locked: b.Locked, TrayOpen: b.Tray}
		if blk := b.Drive.Block(); blk != nil {
			o := b.Drive.Opts
			bi.Inserted = &dmcontract.BlockMedium{File: o.File, Format: o.Format, ReadOnly: o.ReadOnly,
				VirtualSize: blk.Info().Size, Cache: o.Cache.String()}
		}
		out = append(out, bi)
	}
	return out
}

// Eject implements dmcontract.BlockHost (xl cd-eject).
func (h *machineHost) Eject(id string, force bool) (bool, error) {
	return h.m.Board.OpenTray(id, force)
}

// ChangeMedium implements dmcontract.BlockHost (xl cd-insert). The
// image opens with the CD-ROM drive's cache mode.
func (h *machineHost) ChangeMedium(id, file, format string) (bool, error) {
	cache := block.CacheWriteback
	for _, b := range h.m.Board.Blocks() {
		if b.QdevID == id || b.Device == id {
			cache = b.Drive.Opts.Cache
		}
	}
	return h.m.Board.ChangeMedium(id, board.DriveOptions{ID: id, File: file, Format: format, Cache: cache})
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

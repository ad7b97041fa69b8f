package dmcontract

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"godm/internal/qmp"
	"godm/pci"
)

// Run states as QEMU's query-status names them (qapi/run-state.json).
const (
	StatusPrelaunch = "prelaunch" // -S, before the first cont
	StatusRunning   = "running"
	StatusPaused    = "paused" // after stop
)

// Host is what the QMP commands drive: the machine serving the domain.
// Its methods are called one at a time (the QMP server runs one command
// at a time).
type Host interface {
	// Pause stops the devices (no request served, no DMA, no interrupt
	// until Resume); Resume undoes it.
	Pause()
	Resume()
	// Reset returns every device to its power-on state (system_reset).
	Reset()
	// PCI lists the functions on bus 0, in slot and function order.
	PCI() []PCIFunction
	// DeviceAdd plugs a device from a device_add dictionary, DeviceDel
	// unplugs one by id. Either may fail with a *qmp.Error.
	DeviceAdd(args map[string]any) error
	DeviceDel(id string) error
	// SetDirtyLog switches the log of the guest pages the devices write
	// on or off (log-dirty); it fails with a *qmp.Error when the machine
	// keeps no log.
	SetDirtyLog(enable bool) error
}

// PCIFunction is one function of query-pci.
type PCIFunction struct {
	QdevID string // "" for the machine's built-in functions, as QEMU
	Dev    *pci.Device
}

// Chardev is one line of query-chardev.
type Chardev struct {
	Label    string // "serial0", "libxl-cmd"
	Filename string // "pty:/dev/pts/3", "unix:/var/run/xen/qmp-libxl-7,server=on"
}

// State is the device model's run state and QMP commands. It is safe for
// concurrent use.
type State struct {
	mu       sync.Mutex
	status   string
	host     Host // nil for the probe
	emit     func(event string, data any)
	quit     func()
	chardevs []Chardev
	vcpus    int
	started  chan struct{} // closed on the first transition to running
	dropPriv bool
	// screendump is StateConfig.Screendump.
	screendump func(filename string) error
}

// StateConfig configures a State.
type StateConfig struct {
	// Prelaunch starts in "prelaunch" (-S) rather than "running".
	Prelaunch bool
	// Host is the machine; nil for libxl's probe (-machine none).
	Host Host
	// Emit sends a QMP event to every client (qmp.Server.Emit); nil
	// drops events.
	Emit func(event string, data any)
	// Quit ends the device model once quit's reply is sent.
	Quit func()
	// Chardevs are query-chardev's answer.
	Chardevs []Chardev
	// VCPUs is how many vCPUs are online (query-cpus-fast).
	VCPUs int
	// DropPrivileges says godm implements -run-with chroot= and user=
	// (query-command-line-options reports them then, so that libxl
	// 4.19+ passes -run-with; older libxl passes -chroot/-runas).
	DropPrivileges bool
	// Screendump writes the display to a file as PPM (HMP's screendump,
	// for xl qemu-monitor-command); nil: no display.
	Screendump func(filename string) error
}

// NewState returns the run state for cfg.
func NewState(cfg StateConfig) *State {
	s := &State{status: StatusRunning, host: cfg.Host, emit: cfg.Emit, quit: cfg.Quit,
		chardevs: cfg.Chardevs, vcpus: cfg.VCPUs, started: make(chan struct{}), dropPriv: cfg.DropPrivileges,
		screendump: cfg.Screendump}
	if cfg.Prelaunch {
		s.status = StatusPrelaunch
	} else {
		close(s.started)
	}
	if s.emit == nil {
		s.emit = func(string, any) {}
	}
	if s.quit == nil {
		s.quit = func() {}
	}
	return s
}

// Status returns the current run state.
func (s *State) Status() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// Started is closed once the guest runs: at once without -S, on the
// first cont with it.
func (s *State) Started() <-chan struct{} { return s.started }

// Cont leaves prelaunch or paused for running (QEMU qmp_cont): the
// devices resume and RESUME is sent. Running already, it does nothing.
func (s *State) Cont() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status == StatusRunning {
		return
	}
	if s.host != nil {
		s.host.Resume()
	}
	if s.status == StatusPrelaunch {
		close(s.started)
	}
	s.status = StatusRunning
	s.emit("RESUME", nil)
}

// Stop pauses a running machine and sends STOP (QEMU do_vm_stop acts
// only on a running VM: stop in prelaunch leaves it in prelaunch).
func (s *State) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status != StatusRunning {
		return
	}
	if s.host != nil {
		s.host.Pause()
	}
	s.status = StatusPaused
	s.emit("STOP", nil)
}

// noArgs refuses arguments to a command that takes none, with QEMU's
// message.
func noArgs(r *qmp.Request) error { return qmp.ArgsOf(r.Args).Check() }

func (s *State) needHost(r *qmp.Request) error {
	if s.host == nil {
		// The probe's machine "none" has no devices.
		return qmp.Errorf("'%s' is not available: the machine is 'none'", r.Command)
	}
	return nil
}

// Commands returns the QMP command table (qmp_capabilities is the
// server's). Commands libxl sends that godm does not implement are
// absent, so the server answers them with CommandNotFound, as a QEMU
// built without the feature does.
func (s *State) Commands() map[string]qmp.Handler {
	return map[string]qmp.Handler{
		"query-status": func(r *qmp.Request) (any, error) {
			if err := noArgs(r); err != nil {
				return nil, err
			}
			st := s.Status()
			// QEMU 7.2 StatusInfo: running, singlestep, status.
			return map[string]any{"running": st == StatusRunning, "singlestep": false, "status": st}, nil
		},
		"cont": func(r *qmp.Request) (any, error) {
			if err := noArgs(r); err != nil {
				return nil, err
			}
			s.Cont()
			return nil, nil
		},
		"stop": func(r *qmp.Request) (any, error) {
			if err := noArgs(r); err != nil {
				return nil, err
			}
			s.Stop()
			return nil, nil
		},
		"quit": func(r *qmp.Request) (any, error) {
			if err := noArgs(r); err != nil {
				return nil, err
			}
			// QEMU 7.2 sends SHUTDOWN with reason host-qmp-quit, then exits.
			s.emit("SHUTDOWN", map[string]any{"guest": false, "reason": "host-qmp-quit"})
			r.AfterReply(s.quit)
			return nil, nil
		},
		"system_reset": func(r *qmp.Request) (any, error) {
			if err := noArgs(r); err != nil {
				return nil, err
			}
			if err := s.needHost(r); err != nil {
				return nil, err
			}
			s.host.Reset()
			s.emit("RESET", map[string]any{"guest": false, "reason": "host-qmp-system-reset"})
			return nil, nil
		},
		"query-version": func(r *qmp.Request) (any, error) {
			if err := noArgs(r); err != nil {
				return nil, err
			}
			v := qmp.DefaultVersion
			return map[string]any{"qemu": map[string]int{"major": v.Major, "minor": v.Minor, "micro": v.Micro}, "package": v.Package}, nil
		},
		"query-chardev": func(r *qmp.Request) (any, error) {
			if err := noArgs(r); err != nil {
				return nil, err
			}
			out := make([]map[string]any, 0, len(s.chardevs))
			for _, c := range s.chardevs {
				out = append(out, map[string]any{"label": c.Label, "filename": c.Filename, "frontend-open": true})
			}
			return out, nil
		},
		"query-command-line-options": func(r *qmp.Request) (any, error) {
			a := qmp.ArgsOf(r.Args)
			opt, err := a.OptString("option", "")
			if err != nil {
				return nil, err
			}
			if err := a.Check(); err != nil {
				return nil, err
			}
			return s.commandLineOptions(opt)
		},
		"query-vnc": func(r *qmp.Request) (any, error) {
			if err := noArgs(r); err != nil {
				return nil, err
			}
			return map[string]any{"enabled": false}, nil
		},
		"query-cpus-fast": func(r *qmp.Request) (any, error) {
			if err := noArgs(r); err != nil {
				return nil, err
			}
			out := make([]map[string]any, 0, s.vcpus)
			for i := 0; i < s.vcpus; i++ {
				// QEMU 7.2 CpuInfoFast; godm runs no vCPU threads (Xen
				// does), so thread-id is 0.
				out = append(out, map[string]any{"cpu-index": i, "qom-path": fmt.Sprintf("/machine/unattached/device[%d]", i),
					"thread-id": 0, "target": "x86_64",
					"props": map[string]any{"core-id": 0, "thread-id": 0, "socket-id": i}})
			}
			return out, nil
		},
		"query-pci": func(r *qmp.Request) (any, error) {
			if err := noArgs(r); err != nil {
				return nil, err
			}
			if err := s.needHost(r); err != nil {
				return nil, err
			}
			devs := make([]map[string]any, 0)
			for _, f := range s.host.PCI() {
				devs = append(devs, pciInfo(f))
			}
			return []map[string]any{{"bus": 0, "devices": devs}}, nil
		},
		"device_add": func(r *qmp.Request) (any, error) {
			if err := s.needHost(r); err != nil {
				return nil, err
			}
			return nil, s.host.DeviceAdd(r.Args)
		},
		"device_del": func(r *qmp.Request) (any, error) {
			a := qmp.ArgsOf(r.Args)
			id, err := a.String("id")
			if err != nil {
				return nil, err
			}
			if err := a.Check(); err != nil {
				return nil, err
			}
			if err := s.needHost(r); err != nil {
				return nil, err
			}
			if err := s.host.DeviceDel(id); err != nil {
				return nil, err
			}
			// The removal is done when device_del returns (no guest
			// handshake: libxl polls query-pci anyway).
			s.emit("DEVICE_DELETED", map[string]any{"device": id, "path": "/machine/peripheral/" + id})
			return nil, nil
		},
		"xen-set-global-dirty-log": func(r *qmp.Request) (any, error) {
			a := qmp.ArgsOf(r.Args)
			on, err := a.Bool("enable")
			if err != nil {
				return nil, err
			}
			if err := a.Check(); err != nil {
				return nil, err
			}
			if err := s.needHost(r); err != nil {
				return nil, err
			}
			// QEMU hw/xen: qmp_xen_set_global_dirty_log starts or stops
			// the global dirty log of guest memory; godm's is the
			// machine's memory.DirtyLog.
			return nil, s.host.SetDirtyLog(on)
		},
		"human-monitor-command": func(r *qmp.Request) (any, error) {
			a := qmp.ArgsOf(r.Args)
			line, err := a.String("command-line")
			if err != nil {
				return nil, err
			}
			if _, err := a.OptInt("cpu-index", 0, 0, 1<<31-1); err != nil {
				return nil, err
			}
			if err := a.Check(); err != nil {
				return nil, err
			}
			return s.hmp(line), nil
		},
	}
}

// commandLineOptions answers query-command-line-options: the QemuOpts
// options godm parses, with the parameters it takes. libxl's probe looks
// for run-with's chroot and user.
func (s *State) commandLineOptions(only string) (any, error) {
	type param struct {
		Name string `json:"name"`
		Type string `json:"type"`
	}
	opts := map[string][]param{
		"machine": {{"type", "string"}, {"accel", "string"}, {"suppress-vmdesc", "boolean"}, {"max-ram-below-4g", "size"}},
		"smp":     {{"cpus", "number"}, {"maxcpus", "number"}},
		"boot":    {{"order", "string"}},
		"name":    {{"guest", "string"}},
		"mon":     {{"chardev", "string"}, {"mode", "string"}, {"pretty", "boolean"}},
		"chardev": {{"backend", "string"}, {"id", "string"}, {"path", "string"}, {"fd", "string"}, {"server", "boolean"}, {"wait", "boolean"}},
	}
	if s.dropPriv {
		opts["run-with"] = []param{{"chroot", "string"}, {"user", "string"}}
	}
	names := make([]string, 0, len(opts))
	for n := range opts {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]map[string]any, 0, len(opts))
	for _, n := range names {
		if only != "" && n != only {
			continue
		}
		out = append(out, map[string]any{"option": n, "parameters": opts[n]})
	}
	if only != "" && len(out) == 0 {
		// QEMU 7.2 qmp_query_command_line_options.
		return nil, qmp.Errorf("Invalid parameter 'option'")
	}
	return out, nil
}

// hmp answers the few human-monitor commands an admin uses through
// xl qemu-monitor-command... and libxl's debug paths.
func (s *State) hmp(line string) string {
	switch strings.Join(strings.Fields(line), " ") {
	case "info status":
		st := s.Status()
		if st == StatusPrelaunch {
			return "VM status: paused (prelaunch)\r\n"
		}
		return "VM status: " + st + "\r\n"
	case "info version":
		v := qmp.DefaultVersion
		return fmt.Sprintf("%d.%d.%d (%s)\r\n", v.Major, v.Minor, v.Micro, v.Package)
	case "info chardev":
		var b strings.Builder
		for _, c := range s.chardevs {
			fmt.Fprintf(&b, "%s: filename=%s\r\n", c.Label, c.Filename)
		}
		return b.String()
	case "info pci":
		if s.host == nil {
			return ""
		}
		var b strings.Builder
		for _, f := range s.host.PCI() {
			h := f.Dev.Header()
			sbdf := f.Dev.SBDF()
			fmt.Fprintf(&b, "  Bus  0, device %3d, function %d:\r\n    class %04x: PCI device %04x:%04x\r\n",
				sbdf.Dev(), sbdf.Fn(), h.Class>>8, h.VendorID, h.DeviceID)
			if f.QdevID != "" {
				fmt.Fprintf(&b, "      id %q\r\n", f.QdevID)
			}
		}
		return b.String()
	}
	cmd, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
	if cmd == "screendump" {
		// HMP "screendump FILENAME" (PPM), QEMU's hmp_screendump.
		arg = strings.TrimSpace(arg)
		switch {
		case arg == "" || strings.ContainsAny(arg, " \t"):
			return "screendump: want one file name\r\n"
		case s.screendump == nil:
			return "screendump: this machine has no display device\r\n"
		}
		if err := s.screendump(arg); err != nil {
			return fmt.Sprintf("screendump: %v\r\n", err)
		}
		return ""
	}
	return fmt.Sprintf("unknown command: '%s'\r\n", cmd)
}

// pciInfo is one PciDeviceInfo of query-pci (QEMU 7.2 qapi/pci.json).
func pciInfo(f PCIFunction) map[string]any {
	h := f.Dev.Header()
	sbdf := f.Dev.SBDF()
	// regions stay empty: PciMemoryRegion needs each BAR's size, which
	// the pci package does not expose yet (libxl reads slot and
	// function only).
	regions := make([]map[string]any, 0)
	info := map[string]any{
		"bus": 0, "slot": int(sbdf.Dev()), "function": int(sbdf.Fn()),
		"class_info": map[string]any{"class": int(h.Class >> 8)},
		"id": map[string]any{"vendor": int(h.VendorID), "device": int(h.DeviceID),
			"subsystem-vendor": int(h.SubsystemVendorID), "subsystem": int(h.SubsystemID)},
		"qdev_id": f.QdevID,
		"regions": regions,
		// QEMU 7.2 hw/pci/pci.c qmp_query_pci_device: irq_pin always,
		// irq (the line register) when there is a pin.
		"irq_pin": int(h.InterruptPin),
	}
	if h.InterruptPin != 0 {
		info["irq"] = int(f.Dev.ConfigRead(0x3c, 1))
	}
	return info
}

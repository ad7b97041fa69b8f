package dmcontract

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"

	"godm/devices"
	"godm/internal/metrics"
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
	// HasDevice reports whether a device with this id is plugged.
	HasDevice(id string) bool
	// PlugCPU marks vCPU slot present (the PIIX4 processor bitmap) and
	// raises the guest's CPU hotplug event; Xen runs the vCPU once the
	// guest brings it up.
	PlugCPU(slot int) error
	// SetDirtyLog switches the log of the guest pages the devices write
	// on or off (log-dirty); it fails with a *qmp.Error when the machine
	// keeps no log.
	SetDirtyLog(enable bool) error
	// Metrics gathers the machine's counters (x-godm-query-stats).
	Metrics() []metrics.Family
	// SetLink sets the link of the NIC or netdev called name up or down
	// (QMP set_link; it fails with a *qmp.Error for an unknown name).
	SetLink(name string, up bool) error
}

// PCIFunction is one function of query-pci.
type PCIFunction struct {
	QdevID string // "" for the machine's built-in functions, as QEMU
	Dev    PCIView
}

// PCIView is a function as the guest sees it: an emulated *pci.Device or
// a passed-through function.
type PCIView interface {
	SBDF() devices.SBDF
	ConfigRead(off uint32, size uint8) uint32
	Regions() []pci.Region
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
	cpus     cpuState // guarded by mu
	fds      *FDSets
	started  chan struct{} // closed on the first transition to running
	running  bool          // started is closed
	dropPriv bool
	openFile OpenFunc
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
	// VCPUs is how many vCPUs are online at start (-smp's cpus; slots
	// 0..VCPUs-1), MaxVCPUs how many slots there are (-smp's maxcpus; 0:
	// VCPUs), at most MaxCPUs. query-cpus-fast lists the online ones,
	// query-hotpluggable-cpus the slots; device_add fills a slot.
	VCPUs, MaxVCPUs int
	// DropPrivileges says godm implements -run-with chroot= and user=
	// (query-command-line-options reports them then, so that libxl
	// 4.19+ passes -run-with; older libxl passes -chroot/-runas).
	DropPrivileges bool
	// Restored says the devices' state was loaded from -incoming: with
	// Prelaunch the run state is then "paused" rather than "prelaunch"
	// (QEMU after an incoming migration without autostart), which is
	// what libxl's restore asks query-status for.
	Restored bool
	// OpenFile opens the files QMP commands name (xen-save-devices-state's
	// filename, "/dev/fdset/N" included); nil: os.OpenFile.
	OpenFile OpenFunc
	// Screendump writes the display to a file as PPM (HMP's screendump,
	// for xl qemu-monitor-command); nil: no display.
	Screendump func(filename string) error
}

// NewState returns the run state for cfg.
func NewState(cfg StateConfig) *State {
	s := &State{status: StatusRunning, host: cfg.Host, emit: cfg.Emit, quit: cfg.Quit,
		chardevs: cfg.Chardevs, cpus: newCPUState(cfg.VCPUs, cfg.MaxVCPUs), fds: NewFDSets(), started: make(chan struct{}), dropPriv: cfg.DropPrivileges,
		openFile: cfg.OpenFile, screendump: cfg.Screendump}
	switch {
	case cfg.Prelaunch && cfg.Restored:
		s.status = StatusPaused
	case cfg.Prelaunch:
		s.status = StatusPrelaunch
	default:
		close(s.started)
		s.running = true
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
	if !s.running {
		close(s.started)
		s.running = true
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

// StatsCommand is godm's QMP query of its counters.
const StatsCommand = "x-godm-query-stats"

// Commands returns the QMP command table (qmp_capabilities is the
// server's). Commands libxl sends that godm does not implement are
// absent, so the server answers them with CommandNotFound, as a QEMU
// built without the feature does.
func (s *State) Commands() map[string]qmp.Handler {
	cmds := s.commands()
	s.fdCommands(cmds)
	s.stateCommands(cmds)
	s.blockCommands(cmds)
	return cmds
}

// FDSets are the descriptors QMP clients passed (add-fd, getfd).
func (s *State) FDSets() *FDSets { return s.fds }

// ClientGone is qmp.Config.OnDisconnect: once no client is left on any
// monitor, the fdsets' descriptors are closed, as QEMU does.
func (s *State) ClientGone(monitor string, remaining int) {
	if remaining == 0 {
		s.fds.ClientsGone()
	}
}

func (s *State) commands() map[string]qmp.Handler {
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
			if act, ok := s.host.(ImageActivator); ok && s.Status() != StatusRunning {
				if err := act.ActivateImages(); err != nil {
					return nil, qmp.Errorf("%v", err)
				}
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
			return s.cpusFast(), nil
		},
		"query-hotpluggable-cpus": func(r *qmp.Request) (any, error) {
			if err := noArgs(r); err != nil {
				return nil, err
			}
			if err := s.needHost(r); err != nil {
				return nil, err
			}
			return s.hotpluggableCPUs(), nil
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
			// xl vcpu-set: device_add {id: "cpu-N", driver: <the type
			// query-hotpluggable-cpus gave>, socket-id: N, core-id: 0,
			// thread-id: 0} (libxl_domain.c).
			if drv, _ := r.Args["driver"].(string); isCPUDriver(drv) {
				return nil, s.cpuAdd(r.Args)
			}
			if id, _ := r.Args["id"].(string); id != "" && s.cpuID(id) {
				return nil, qmp.Errorf("Duplicate device ID '%s'", id)
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
			if s.cpuID(id) {
				// The PIIX4's legacy CPU hotplug (the only kind hvmloader's
				// DSDT drives) cannot unplug (QEMU 7.2 hw/acpi/piix4.c
				// piix4_device_unplug_request_cb); libxl never asks.
				return nil, qmp.Errorf("acpi: device unplug request for not supported device type: %s", CPUType)
			}
			if err := s.host.DeviceDel(id); err != nil {
				return nil, err
			}
			// The removal is done when device_del returns (no guest
			// handshake: libxl polls query-pci anyway).
			s.emit("DEVICE_DELETED", map[string]any{"device": id, "path": "/machine/peripheral/" + id})
			return nil, nil
		},
		"set_link": func(r *qmp.Request) (any, error) {
			// QEMU net/net.c qmp_set_link: a NIC's id or a netdev's; the
			// NIC reports the change (rtl8139: BMSR link bit, LinkChg;
			// e1000: STATUS.LU and the PHY, LSC).
			a := qmp.ArgsOf(r.Args)
			name, err := a.String("name")
			if err != nil {
				return nil, err
			}
			up, err := a.Bool("up")
			if err != nil {
				return nil, err
			}
			if err := a.Check(); err != nil {
				return nil, err
			}
			if err := s.needHost(r); err != nil {
				return nil, err
			}
			return nil, s.host.SetLink(name, up)
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
		// godm's own (QMP's x- prefix: not QEMU's, not stable): the
		// counters the Prometheus endpoint serves, as JSON (docs/xl.md).
		StatsCommand: func(r *qmp.Request) (any, error) {
			if err := noArgs(r); err != nil {
				return nil, err
			}
			if err := s.needHost(r); err != nil {
				return nil, err
			}
			return map[string]any{"metrics": metrics.JSON(s.host.Metrics())}, nil
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
	case "info cpus":
		// QEMU 7.2 hmp_info_cpus; the monitor's current CPU is the first.
		var b strings.Builder
		for i, c := range s.cpusFast() {
			mark := ' '
			if i == 0 {
				mark = '*'
			}
			fmt.Fprintf(&b, "%c CPU #%d: thread_id=%d\r\n", mark, c["cpu-index"], c["thread-id"])
		}
		return b.String()
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
			h := readHeader(f.Dev)
			sbdf := f.Dev.SBDF()
			fmt.Fprintf(&b, "  Bus  0, device %3d, function %d:\r\n    class %04x: PCI device %04x:%04x\r\n",
				sbdf.Dev(), sbdf.Fn(), h.class, h.vendor, h.device)
			if f.QdevID != "" {
				fmt.Fprintf(&b, "      id %q\r\n", f.QdevID)
			}
		}
		return b.String()
	}
	if strings.Join(strings.Fields(line), " ") == "info ioreq" {
		// godm's own (QEMU has none): the ioreq workers' sampled stage
		// histograms, for xl qemu-monitor-command.
		if s.host == nil {
			return ""
		}
		return IoreqStagesText(s.host.Metrics())
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

// pciHeader is the identity query-pci and info pci show, read from the
// configuration space as the guest sees it (QEMU 7.2 hw/pci/pci-qmp-cmds.c
// reads its config the same way).
type pciHeader struct {
	vendor, device, subVendor, sub uint16
	class                          uint16 // base class and subclass
	pin, line                      uint8
}

func readHeader(d PCIView) pciHeader {
	return pciHeader{
		vendor: uint16(d.ConfigRead(0x00, 2)), device: uint16(d.ConfigRead(0x02, 2)),
		class:     uint16(d.ConfigRead(0x0a, 2)),
		subVendor: uint16(d.ConfigRead(0x2c, 2)), sub: uint16(d.ConfigRead(0x2e, 2)),
		line: uint8(d.ConfigRead(0x3c, 1)), pin: uint8(d.ConfigRead(0x3d, 1)),
	}
}

// pciClassDesc are QEMU's names of the classes (hw/pci/pci.c
// pci_class_descriptions) that godm's machines carry or can pass through
// commonly; query-pci leaves "desc" out for the others, as QEMU does for
// classes its table lacks.
var pciClassDesc = map[uint16]string{
	0x0100: "SCSI controller", 0x0101: "IDE controller", 0x0104: "RAID controller", 0x0106: "SATA controller",
	0x0200: "Ethernet controller", 0x0300: "VGA controller", 0x0403: "Audio controller",
	0x0600: "Host bridge", 0x0601: "ISA bridge", 0x0604: "PCI bridge", 0x0680: "Bridge",
	0x0700: "Serial port", 0x0c03: "USB controller",
}

// pciInfo is one PciDeviceInfo of query-pci (QEMU 7.2 qapi/pci.json).
func pciInfo(f PCIFunction) map[string]any {
	h := readHeader(f.Dev)
	sbdf := f.Dev.SBDF()
	class := map[string]any{"class": int(h.class)}
	if d, ok := pciClassDesc[h.class]; ok {
		class["desc"] = d
	}
	regions := make([]map[string]any, 0, 7)
	for _, r := range f.Dev.Regions() {
		// PciMemoryRegion: address -1 while the BAR does not decode
		// (QEMU's PCI_BAR_UNMAPPED), as QEMU 7.2 answers before the
		// firmware places the BARs.
		addr := int64(-1)
		if r.Mapped {
			addr = int64(r.Address)
		}
		e := map[string]any{"bar": r.BAR, "address": addr, "size": r.Size}
		if r.IO {
			e["type"] = "io"
		} else {
			e["type"] = "memory"
			e["prefetch"] = r.Prefetch
			e["mem_type_64"] = r.Mem64
		}
		regions = append(regions, e)
	}
	info := map[string]any{
		"bus": 0, "slot": int(sbdf.Dev()), "function": int(sbdf.Fn()),
		"class_info": class,
		"id": map[string]any{"vendor": int(h.vendor), "device": int(h.device),
			"subsystem-vendor": int(h.subVendor), "subsystem": int(h.sub)},
		"qdev_id": f.QdevID,
		"regions": regions,
		// QEMU 7.2 qmp_query_pci_device: irq_pin always, irq (the line
		// register) when there is a pin.
		"irq_pin": int(h.pin),
	}
	if h.pin != 0 {
		info["irq"] = int(h.line)
	}
	return info
}

// IoreqStagesText is HMP "info ioreq": one line per histogram of the
// ioreq workers' sampled requests — the service time
// (godm_ioreq_latency_seconds) and each stage by path
// (godm_ioreq_stage_seconds) — as "ioreq-stage path=P stage=S n=N
// mean_ns=M p50_ns= p90_ns= p99_ns=" (quantiles are the upper bounds of
// power-of-two buckets; -1 for the overflow bucket).
func IoreqStagesText(fams []metrics.Family) string {
	var b strings.Builder
	line := func(labels string, h *metrics.HistSummary) {
		mean := 0.0
		if h.Count > 0 {
			mean = h.Sum / h.Count * 1e9
		}
		ns := func(q float64) int64 {
			v := h.Quantile(q)
			if math.IsInf(v, 1) {
				return -1
			}
			return int64(math.Round(v * 1e9))
		}
		fmt.Fprintf(&b, "ioreq-stage %s n=%.0f mean_ns=%.0f p50_ns=%d p90_ns=%d p99_ns=%d\r\n",
			labels, h.Count, mean, ns(0.5), ns(0.9), ns(0.99))
	}
	for _, h := range metrics.Histograms(fams, "godm_ioreq_latency_seconds") {
		line("path=all stage=service", &h)
	}
	for _, h := range metrics.Histograms(fams, "godm_ioreq_stage_seconds") {
		var ls []string
		for _, l := range h.Labels {
			ls = append(ls, l.Name+"="+l.Value)
		}
		line(strings.Join(ls, " "), &h)
	}
	// Where the time of each total bucket's requests went (mean ns per
	// request and stage): "ioreq-split path=P total_le_ns=T n=N STAGE_ns=M...".
	type group struct {
		path, le string
		n        float64
		stages   []string
	}
	var groups []*group
	byKey := map[string]*group{}
	label := func(ls []metrics.Label, name string) string {
		for _, l := range ls {
			if l.Name == name {
				return l.Value
			}
		}
		return ""
	}
	for _, f := range fams {
		if f.Name != "godm_ioreq_stage_split_requests_total" {
			continue
		}
		for _, smp := range f.Samples {
			g := &group{path: label(smp.Labels, "path"), le: label(smp.Labels, "total_le"), n: smp.Value}
			groups = append(groups, g)
			byKey[g.path+" "+g.le] = g
		}
	}
	for _, f := range fams {
		if f.Name != "godm_ioreq_stage_split_seconds_total" {
			continue
		}
		for _, smp := range f.Samples {
			g := byKey[label(smp.Labels, "path")+" "+label(smp.Labels, "total_le")]
			if g == nil || g.n == 0 {
				continue
			}
			g.stages = append(g.stages, fmt.Sprintf("%s_ns=%.0f", label(smp.Labels, "stage"), smp.Value/g.n*1e9))
		}
	}
	for _, g := range groups {
		le := "-1"
		if v, err := strconv.ParseFloat(g.le, 64); err == nil && !math.IsInf(v, 0) {
			le = strconv.FormatInt(int64(math.Round(v*1e9)), 10)
		}
		fmt.Fprintf(&b, "ioreq-split path=%s total_le_ns=%s n=%.0f %s\r\n", g.path, le, g.n, strings.Join(g.stages, " "))
	}
	if b.Len() == 0 {
		return "no ioreq histograms\r\n"
	}
	return b.String()
}

package passthrough

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"

	"godm/devices"
	"godm/hyp"
	"godm/internal/qemuopts"
)

// DriverName is the QEMU device name libxl asks for.
const DriverName = "xen-pci-passthrough"

// DeviceSpec is a xen-pci-passthrough device as libxl describes it to the
// device model: QMP device_add {driver: "xen-pci-passthrough", id:
// "pci-pt-BB_DD.F", hostaddr: "SSSS:BB:DD.F", [addr: "S.F"],
// [permissive: true]} (tools/libs/light/libxl_pci.c), or the same as a
// -device option string.
type DeviceSpec struct {
	ID         string
	HostAddr   devices.SBDF
	Slot       int // guest device number; -1 picks the lowest free one
	Permissive bool
}

// ParseDeviceOption parses "xen-pci-passthrough,id=...,hostaddr=...,
// addr=S[.F],permissive=on|off" (the driver name first, as in -device)
// with QEMU's option syntax (internal/qemuopts: ",," escapes a comma; a
// repeated or unknown key is refused, naming -device and the key).
func ParseDeviceOption(s string) (DeviceSpec, error) {
	o, err := qemuopts.Parse("-device", s, "driver")
	if err != nil {
		return DeviceSpec{}, err
	}
	if o.Help {
		return DeviceSpec{}, fmt.Errorf("-device %s: godm -device %s,help lists its properties", s, DriverName)
	}
	drv := o.String("driver", "")
	if drv != DriverName {
		return DeviceSpec{}, fmt.Errorf("-device %s: driver %q, want %s", o.Label(), drv, DriverName)
	}
	args := map[string]any{"driver": drv}
	for _, k := range []string{"id", "hostaddr", "addr"} {
		if o.Has(k) {
			args[k] = o.String(k, "")
		}
	}
	if o.Has("permissive") {
		p, err := o.Bool("permissive", false)
		if err != nil {
			return DeviceSpec{}, err
		}
		args["permissive"] = p
	}
	if err := o.CheckUnused(); err != nil {
		return DeviceSpec{}, err
	}
	spec, err := DeviceSpecFromArgs(args)
	if err != nil {
		return spec, fmt.Errorf("-device %s: %w", s, err)
	}
	return spec, nil
}

// DeviceSpecFromArgs reads the arguments of a QMP device_add.
func DeviceSpecFromArgs(args map[string]any) (DeviceSpec, error) {
	spec := DeviceSpec{Slot: -1}
	str := func(k string) (string, error) {
		v, ok := args[k]
		if !ok {
			return "", nil
		}
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("passthrough: device_add %s: want a string, have %T", k, v)
		}
		return s, nil
	}
	if d, err := str("driver"); err != nil || d != DriverName {
		return spec, errors.Join(err, fmt.Errorf("passthrough: driver %q, want %s", d, DriverName))
	}
	var err error
	if spec.ID, err = str("id"); err != nil {
		return spec, err
	}
	h, err := str("hostaddr")
	if err != nil {
		return spec, err
	}
	if h == "" {
		return spec, errors.New("passthrough: device_add needs hostaddr")
	}
	if spec.HostAddr, err = ParseSBDF(h); err != nil {
		return spec, err
	}
	if spec.ID == "" {
		spec.ID = fmt.Sprintf("pci-pt-%02x_%02x.%d", spec.HostAddr.Bus(), spec.HostAddr.Dev(), spec.HostAddr.Fn())
	}
	a, err := str("addr")
	if err != nil {
		return spec, err
	}
	if a != "" {
		slot, fn, _ := strings.Cut(a, ".")
		n, err := strconv.ParseUint(slot, 16, 8)
		if err != nil || n > 31 || (fn != "" && fn != "0") {
			return spec, fmt.Errorf("passthrough: addr %q: want a slot 0..1f with function 0", a)
		}
		spec.Slot = int(n)
	}
	switch v := args["permissive"].(type) {
	case nil:
	case bool:
		spec.Permissive = v
	case string:
		switch v {
		case "on", "true", "yes":
			spec.Permissive = true
		case "off", "false", "no":
		default:
			return spec, fmt.Errorf("passthrough: permissive=%q, want on or off", v)
		}
	default:
		return spec, fmt.Errorf("passthrough: permissive: want a boolean, have %T", v)
	}
	return spec, nil
}

// ManagerConfig wires a Manager into a device model.
type ManagerConfig struct {
	Dom           hyp.DomID
	Bus           *devices.Bus // the machine's bus (its ioreq server listens)
	Xen           Xen
	HostOptions   HostOptions
	MSIXAllWrites bool
	// Assign, if set, is Config.Assign of every device: Xen must confirm
	// the function is in a guest's IOMMU context before the guest's
	// first use maps or binds anything (a *domctl.Domctl).
	Assign AssignQuery
	// Slots, if set, is the guest bus's slot registry (a *pci.Bus): a
	// passed-through function's slot is reserved there, so that emulated
	// devices placed automatically never take it, and released on
	// removal. Without it, slots are found free in Bus.PCI only.
	Slots SlotRegistry
	Log   *slog.Logger
}

// SlotRegistry is the guest PCI bus's slot bookkeeping (pci.Bus
// implements it): Reserve claims function 0 of slot dev for a function
// registered outside the registry; ReserveAuto claims the lowest free slot
// from 1; Release frees it.
type SlotRegistry interface {
	Reserve(dev uint8) error
	ReserveAuto() (uint8, error)
	Release(dev uint8) error
}

// AddOptions modify one Add.
type AddOptions struct {
	// RequireAssigned refuses, before anything is mapped, a function Xen
	// does not have in a guest's IOMMU context (CheckAssigned with
	// ManagerConfig.Assign): for functions named on the command line,
	// which the toolstack must have assigned already. Never for libxl's
	// QMP device_add, after which libxl assigns.
	RequireAssigned bool
}

// Manager adds and removes passed-through functions of one domain at run
// time, as QMP device_add / device_del / query-pci need. It is safe for
// concurrent use.
type Manager struct {
	cfg  ManagerConfig
	mu   sync.Mutex
	devs map[string]*managed
}

type managed struct {
	spec DeviceSpec
	host *HostDevice
	dev  *Device
}

// Plugged describes a function the Manager passed through.
type Plugged struct {
	ID   string
	Host devices.SBDF
	SBDF devices.SBDF // guest address
	Dev  *Device      // the function as the guest sees it
}

// NewManager returns an empty Manager.
func NewManager(cfg ManagerConfig) *Manager {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Manager{cfg: cfg, devs: make(map[string]*managed)}
}

// Add opens the host function, checks it and plugs it at the wanted or
// the lowest free guest slot. On error nothing is left plugged or mapped.
func (m *Manager) Add(spec DeviceSpec) (Plugged, error) { return m.AddWith(spec, AddOptions{}) }

// AddWith is Add with options.
func (m *Manager) AddWith(spec DeviceSpec, opts AddOptions) (_ Plugged, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.devs[spec.ID]; dup {
		return Plugged{}, fmt.Errorf("passthrough: device id %q already in use", spec.ID)
	}
	for _, d := range m.devs {
		if d.spec.HostAddr == spec.HostAddr {
			return Plugged{}, fmt.Errorf("passthrough: %v already passed through as %q", spec.HostAddr, d.spec.ID)
		}
	}
	host, err := OpenHost(m.cfg.HostOptions, spec.HostAddr)
	if err != nil {
		return Plugged{}, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, host.Close())
		}
	}()
	if opts.RequireAssigned {
		if m.cfg.Assign == nil {
			return Plugged{}, errors.New("passthrough: RequireAssigned needs ManagerConfig.Assign")
		}
		if err := CheckAssigned(m.cfg.Assign, m.cfg.Dom, spec.HostAddr); err != nil {
			return Plugged{}, err
		}
	}
	slot, err := m.reserveSlot(spec.Slot)
	if err != nil {
		return Plugged{}, err
	}
	dev, err := New(Config{Dom: m.cfg.Dom, Host: host, Xen: m.cfg.Xen, Slot: uint8(slot),
		Permissive: spec.Permissive, MSIXAllWrites: m.cfg.MSIXAllWrites, Assign: m.cfg.Assign, Log: m.cfg.Log})
	if err == nil {
		err = dev.Plug(m.cfg.Bus)
	}
	if err != nil {
		return Plugged{}, errors.Join(err, m.releaseSlot(slot))
	}
	spec.Slot = slot
	m.devs[spec.ID] = &managed{spec: spec, host: host, dev: dev}
	return Plugged{ID: spec.ID, Host: spec.HostAddr, SBDF: dev.SBDF(), Dev: dev}, nil
}

// reserveSlot claims slot (or, if negative, the lowest free one).
func (m *Manager) reserveSlot(slot int) (int, error) {
	if m.cfg.Slots != nil {
		if slot < 0 {
			s, err := m.cfg.Slots.ReserveAuto()
			if err != nil {
				return -1, fmt.Errorf("passthrough: no free guest PCI slot: %w", err)
			}
			return int(s), nil
		}
		if err := m.cfg.Slots.Reserve(uint8(slot)); err != nil {
			return -1, fmt.Errorf("passthrough: guest slot %d: %w", slot, err)
		}
		return slot, nil
	}
	if slot < 0 {
		if slot = m.freeSlot(); slot < 0 {
			return -1, errors.New("passthrough: no free guest PCI slot")
		}
	}
	return slot, nil
}

func (m *Manager) releaseSlot(slot int) error {
	if m.cfg.Slots == nil {
		return nil
	}
	return m.cfg.Slots.Release(uint8(slot))
}

// freeSlot returns the lowest guest slot from 1 with no function
// registered.
func (m *Manager) freeSlot() int {
	used := m.cfg.Bus.PCI.Functions()
	for s := 1; s < 32; s++ {
		if !slices.ContainsFunc(used, func(f devices.SBDF) bool { return f.Seg() == 0 && f.Bus() == 0 && int(f.Dev()) == s }) {
			return s
		}
	}
	return -1
}

// Remove unplugs the device id, undoing everything in the hypervisor.
func (m *Manager) Remove(id string) error {
	m.mu.Lock()
	d, ok := m.devs[id]
	delete(m.devs, id)
	m.mu.Unlock()
	if !ok {
		return fmt.Errorf("passthrough: no device %q", id)
	}
	return errors.Join(d.dev.Unplug(), m.releaseSlot(d.spec.Slot), d.host.Close())
}

// RemoveSlot removes the device at guest slot dev, if the Manager has
// one there (the guest's ACPI eject of that slot); ok reports whether it
// had.
func (m *Manager) RemoveSlot(dev uint8) (ok bool, err error) {
	m.mu.Lock()
	id := ""
	for k, d := range m.devs {
		if d.spec.Slot == int(dev) {
			id = k
		}
	}
	m.mu.Unlock()
	if id == "" {
		return false, nil
	}
	return true, m.Remove(id)
}

// List returns the plugged devices, ordered by guest address.
func (m *Manager) List() []Plugged {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Plugged
	for _, d := range m.devs {
		out = append(out, Plugged{ID: d.spec.ID, Host: d.spec.HostAddr, SBDF: d.dev.SBDF(), Dev: d.dev})
	}
	slices.SortFunc(out, func(a, b Plugged) int { return int(a.SBDF) - int(b.SBDF) })
	return out
}

// Close removes every device. Idempotent.
func (m *Manager) Close() error {
	m.mu.Lock()
	ids := make([]string, 0, len(m.devs))
	for id := range m.devs {
		ids = append(ids, id)
	}
	m.mu.Unlock()
	var errs []error
	for _, id := range ids {
		errs = append(errs, m.Remove(id))
	}
	return errors.Join(errs...)
}

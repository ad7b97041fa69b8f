package dmcontract

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"godm/internal/qemuopts"
	"godm/internal/qmp"
)

// CPUType is the QOM type of the xenfv machine's vCPUs: the pc machines'
// default model qemu64 (QEMU 7.2 hw/i386/pc.c, TARGET_DEFAULT_CPU_TYPE).
// query-hotpluggable-cpus reports it and libxl passes it back as
// device_add's driver (libxl_domain.c set_vcpuonline_qmp_device_add_cpu).
const CPUType = "qemu64-x86_64-cpu"

// MaxCPUs bounds the vCPU slots: the PIIX4 processor-presence bitmap
// (PRST, 32 bytes) the DSDT reads (tools/libacpi/mk_dsdt.c).
const MaxCPUs = 256

// The vCPU topology is one core of one thread per socket: xenfv is a
// pc-i440fx-4.2-era machine, whose -smp prefers sockets (QEMU 7.2
// hw/i386/pc_piix.c, smp_props.prefer_sockets up to 6.1), so slot i is
// socket-id i, core-id 0, thread-id 0 and APIC ID i; libxl relies on it
// ("socket-id correspond the cpu index", libxl_domain.c).

// cpuState is the vCPU slots: which are present, under which QOM path
// and device id, in plug order.
type cpuState struct {
	path  []string       // by slot; "" while absent
	order []int          // present slots in plug order (query-cpus-fast)
	ids   map[string]int // device_add ids of hot-plugged vCPUs
	anon  int            // next /machine/peripheral-anon/device[N]
}

func newCPUState(online, slots int) cpuState {
	slots = min(max(slots, online, 1), MaxCPUs)
	online = min(max(online, 1), slots)
	c := cpuState{path: make([]string, slots), ids: map[string]int{}}
	for i := range online {
		// Cold-plugged CPUs are the machine's first unattached objects
		// (QEMU 7.2: query-cpus-fast on pc says device[0] for CPU 0).
		c.path[i] = fmt.Sprintf("/machine/unattached/device[%d]", i)
		c.order = append(c.order, i)
	}
	return c
}

func cpuProps(slot int) map[string]any {
	return map[string]any{"socket-id": slot, "core-id": 0, "thread-id": 0}
}

// hotpluggableCPUs answers query-hotpluggable-cpus: every slot, the last
// first (QEMU 7.2 machine_query_hotpluggable_cpus prepends), qom-path
// only for a present vCPU.
func (s *State) hotpluggableCPUs() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]map[string]any, 0, len(s.cpus.path))
	for i := len(s.cpus.path) - 1; i >= 0; i-- {
		e := map[string]any{"type": CPUType, "vcpus-count": 1, "props": cpuProps(i)}
		if p := s.cpus.path[i]; p != "" {
			e["qom-path"] = p
		}
		out = append(out, e)
	}
	return out
}

// cpusFast answers query-cpus-fast: the present vCPUs in plug order
// (QEMU 7.2 CpuInfoFast). godm runs no vCPU threads (Xen does), so
// thread-id is 0.
func (s *State) cpusFast() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]map[string]any, 0, len(s.cpus.order))
	for _, i := range s.cpus.order {
		out = append(out, map[string]any{"cpu-index": i, "qom-path": s.cpus.path[i],
			"thread-id": 0, "target": "x86_64", "props": cpuProps(i)})
	}
	return out
}

// OnlineCPUs returns the present vCPU slots in plug order.
func (s *State) OnlineCPUs() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.cpus.order...)
}

// isCPUDriver reports whether a device_add driver names an x86 CPU model.
func isCPUDriver(drv string) bool { return strings.HasSuffix(drv, "-x86_64-cpu") }

// cpuID reports whether id names a hot-plugged vCPU.
func (s *State) cpuID(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.cpus.ids[id]
	return ok
}

// cpuAdd plugs a vCPU from device_add's dictionary, with QEMU 7.2's checks
// and messages in its order (qdev_device_add: id, properties; then
// hw/i386/x86.c x86_cpu_pre_plug: type, socket, die, core, thread,
// occupancy), then marks it present in the PIIX4 bitmap and raises the
// guest's CPU hotplug GPE (Host.PlugCPU).
func (s *State) cpuAdd(args map[string]any) error {
	drv, _ := args["driver"].(string)
	id := ""
	if v, ok := args["id"]; ok {
		str, ok := v.(string)
		if !ok {
			return qmp.Errorf("Parameter 'id' expects string")
		}
		if !qemuopts.WellFormedID(str) {
			return qmp.Errorf("Parameter 'id' expects an identifier")
		}
		id = str
		if s.cpuID(id) || s.host.HasDevice(id) {
			return qmp.Errorf("Duplicate device ID '%s'", id)
		}
	}
	keys := make([]string, 0, len(args))
	for k := range args {
		if k != "driver" && k != "id" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	props := map[string]int64{"socket-id": -1, "die-id": -1, "core-id": -1, "thread-id": -1, "node-id": -1}
	for _, k := range keys {
		if _, ok := props[k]; !ok {
			return qmp.Errorf("Property '%s.%s' not found", drv, k)
		}
		n, err := int32Prop(k, args[k])
		if err != nil {
			return err
		}
		if n < 0 {
			n = -1 // QEMU's "unset" (CPU_UNSET_NUMA_NODE_ID and the topology ids are -1)
		}
		props[k] = n
	}
	if drv != CPUType {
		return qmp.Errorf("Invalid CPU type, expected cpu type: '%s'", CPUType)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	slots := int64(len(s.cpus.path))
	sock := props["socket-id"]
	switch {
	case sock < 0:
		return qmp.Errorf("CPU socket-id is not set")
	case sock >= slots:
		return qmp.Errorf("Invalid CPU socket-id: %d must be in range 0:%d", sock, slots-1)
	case props["die-id"] > 0:
		return qmp.Errorf("Invalid CPU die-id: %d must be in range 0:0", props["die-id"])
	case props["core-id"] < 0:
		return qmp.Errorf("CPU core-id is not set")
	case props["core-id"] > 0:
		return qmp.Errorf("Invalid CPU core-id: %d must be in range 0:0", props["core-id"])
	case props["thread-id"] < 0:
		return qmp.Errorf("CPU thread-id is not set")
	case props["thread-id"] > 0:
		return qmp.Errorf("Invalid CPU thread-id: %d must be in range 0:0", props["thread-id"])
	case props["node-id"] > 0:
		// No -numa: every slot is on node 0 (QEMU numa_cpu_pre_plug).
		return qmp.Errorf("node-id=%d must match numa node specified with -numa option", props["node-id"])
	}
	slot := int(sock)
	if s.cpus.path[slot] != "" {
		return qmp.Errorf("CPU[%d] with APIC ID %d exists", slot, slot)
	}
	if err := s.host.PlugCPU(slot); err != nil {
		return err
	}
	if id != "" {
		s.cpus.path[slot] = "/machine/peripheral/" + id
		s.cpus.ids[id] = slot
	} else {
		s.cpus.path[slot] = fmt.Sprintf("/machine/peripheral-anon/device[%d]", s.cpus.anon)
		s.cpus.anon++
	}
	s.cpus.order = append(s.cpus.order, slot)
	return nil
}

// int32Prop reads a CPU property as QEMU's QObject input visitor does:
// a JSON integer or an integer in a string, within int32.
func int32Prop(name string, v any) (int64, error) {
	var txt string
	switch x := v.(type) {
	case json.Number:
		txt = string(x)
	case string:
		txt = x
	case int:
		txt = strconv.Itoa(x)
	case int64:
		txt = strconv.FormatInt(x, 10)
	default:
		return 0, qmp.Errorf("Parameter '%s' expects integer", name)
	}
	n, err := strconv.ParseInt(txt, 10, 64)
	if err != nil {
		if isDigits(strings.TrimPrefix(txt, "-")) {
			return 0, qmp.Errorf("Parameter '%s' expects int32_t", name)
		}
		return 0, qmp.Errorf("Parameter '%s' expects integer", name)
	}
	if n < -1<<31 || n > 1<<31-1 {
		return 0, qmp.Errorf("Parameter '%s' expects int32_t", name)
	}
	return n, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

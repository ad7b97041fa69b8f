package xenabi

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// layout is testdata/layout.json, printed by tools/xencapture/layout.c from
// the installed C headers and kept current by tools/xencapture/regen.sh.
type layout struct {
	Xen     string `json:"xen"`
	Structs map[string]struct {
		Size   uintptr               `json:"size"`
		Align  uintptr               `json:"align"`
		Fields map[string][2]uintptr `json:"fields"` // offset, size
	} `json:"structs"`
	Bits   map[string][2]int `json:"bits"` // first bit, width
	Consts map[string]uint64 `json:"consts"`
}

func loadLayout(t *testing.T) *layout {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "layout.json"))
	if err != nil {
		t.Fatalf("reading layout (regenerate with tools/xencapture/regen.sh): %v", err)
	}
	var l layout
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatal(err)
	}
	return &l
}

// mirror maps a Go mirror to its C struct: fields maps Go field names to C
// member names. Every named Go field must be mapped; a C member may be
// left out only when listed in skip (bitfields, checked through bits).
// base, when set, is a C member (a union arm) the Go struct is laid over;
// the Go struct must then fit inside it.
type mirror struct {
	goType any
	c      string
	base   string
	fields map[string]string
	skip   []string
}

var mirrors = []mirror{
	{Ioreq{}, "ioreq", "", map[string]string{"Addr": "addr", "Data": "data", "Count": "count",
		"Size": "size", "VPEport": "vp_eport", "Pad0": "_pad0", "Type": "type", "Flags": ""}, nil},
	{BufIoreq{}, "buf_ioreq", "", map[string]string{"Word0": "", "Data": "data"}, []string{"type"}},
	{BufferedIopage{}, "buffered_iopage", "", map[string]string{"ReadPointer": "", "WritePointer": "",
		"BufIoreq": "buf_ioreq"}, nil},

	{PrivcmdHypercall{}, "privcmd_hypercall", "", map[string]string{"Op": "op", "Arg": "arg"}, nil},
	{PrivcmdMmapbatchV2{}, "privcmd_mmapbatch_v2", "", map[string]string{"Num": "num", "Dom": "dom",
		"Addr": "addr", "Arr": "arr", "Err": "err"}, nil},
	{PrivcmdDMOpBuf{}, "privcmd_dm_op_buf", "", map[string]string{"Uptr": "uptr", "Size": "size"}, nil},
	{PrivcmdDMOp{}, "privcmd_dm_op", "", map[string]string{"Dom": "dom", "Num": "num", "Ubufs": "ubufs"}, nil},
	{PrivcmdMmapResource{}, "privcmd_mmap_resource", "", map[string]string{"Dom": "dom", "Type": "type",
		"ID": "id", "Idx": "idx", "Num": "num", "Addr": "addr"}, nil},

	{IoctlEvtchnBindInterdomain{}, "ioctl_evtchn_bind_interdomain", "", map[string]string{
		"RemoteDomain": "remote_domain", "RemotePort": "remote_port"}, nil},
	{IoctlEvtchnBindUnboundPort{}, "ioctl_evtchn_bind_unbound_port", "", map[string]string{
		"RemoteDomain": "remote_domain"}, nil},
	{IoctlEvtchnUnbind{}, "ioctl_evtchn_unbind", "", map[string]string{"Port": "port"}, nil},
	{IoctlEvtchnNotify{}, "ioctl_evtchn_notify", "", map[string]string{"Port": "port"}, nil},
	{IoctlEvtchnRestrictDomid{}, "ioctl_evtchn_restrict_domid", "", map[string]string{"Domid": "domid"}, nil},

	{XenDMOp{}, "xen_dm_op", "", map[string]string{"Op": "op", "Pad": "pad", "U": "u"}, nil},
	{XenDMOpBuf{}, "xen_dm_op_buf", "", map[string]string{"H": "h", "Size": "size"}, nil},
	{XenDMOpCreateIoreqServer{}, "xen_dm_op_create_ioreq_server", "", map[string]string{
		"HandleBufioreq": "handle_bufioreq", "Pad": "pad", "ID": "id"}, nil},
	{XenDMOpGetIoreqServerInfo{}, "xen_dm_op_get_ioreq_server_info", "", map[string]string{
		"ID": "id", "Flags": "flags", "BufioreqPort": "bufioreq_port", "IoreqGFN": "ioreq_gfn",
		"BufioreqGFN": "bufioreq_gfn"}, nil},
	{XenDMOpIoreqServerRange{}, "xen_dm_op_ioreq_server_range", "", map[string]string{
		"ID": "id", "Pad": "pad", "Type": "type", "Start": "start", "End": "end"}, nil},
	{XenDMOpSetIoreqServerState{}, "xen_dm_op_set_ioreq_server_state", "", map[string]string{
		"ID": "id", "Enabled": "enabled", "Pad": "pad"}, nil},
	{XenDMOpDestroyIoreqServer{}, "xen_dm_op_destroy_ioreq_server", "", map[string]string{
		"ID": "id", "Pad": "pad"}, nil},
	{XenDMOpTrackDirtyVRAM{}, "xen_dm_op_track_dirty_vram", "", map[string]string{
		"Nr": "nr", "Pad": "pad", "FirstPFN": "first_pfn"}, nil},
	{XenDMOpSetPCIIntxLevel{}, "xen_dm_op_set_pci_intx_level", "", map[string]string{
		"Domain": "domain", "Bus": "bus", "Device": "device", "Intx": "intx", "Level": "level"}, nil},
	{XenDMOpSetISAIRQLevel{}, "xen_dm_op_set_isa_irq_level", "", map[string]string{
		"ISAIRQ": "isa_irq", "Level": "level"}, nil},
	{XenDMOpSetPCILinkRoute{}, "xen_dm_op_set_pci_link_route", "", map[string]string{
		"Link": "link", "ISAIRQ": "isa_irq"}, nil},
	{XenDMOpModifiedMemory{}, "xen_dm_op_modified_memory", "", map[string]string{
		"NrExtents": "nr_extents", "Opaque": "opaque"}, nil},
	{XenDMOpModifiedMemoryExtent{}, "xen_dm_op_modified_memory_extent", "", map[string]string{
		"Nr": "nr", "Pad": "pad", "FirstPFN": "first_pfn"}, nil},
	{XenDMOpSetMemType{}, "xen_dm_op_set_mem_type", "", map[string]string{
		"Nr": "nr", "MemType": "mem_type", "Pad": "pad", "FirstPFN": "first_pfn"}, nil},
	{XenDMOpInjectEvent{}, "xen_dm_op_inject_event", "", map[string]string{
		"VCPUID": "vcpuid", "Vector": "vector", "Type": "type", "InsnLen": "insn_len", "Pad0": "pad0",
		"ErrorCode": "error_code", "Pad1": "pad1", "CR2": "cr2"}, nil},
	{XenDMOpInjectMSI{}, "xen_dm_op_inject_msi", "", map[string]string{
		"Data": "data", "Pad": "pad", "Addr": "addr"}, nil},
	{XenDMOpMapMemTypeToIoreqServer{}, "xen_dm_op_map_mem_type_to_ioreq_server", "", map[string]string{
		"ID": "id", "Type": "type", "Flags": "flags", "Opaque": "opaque"}, nil},
	{XenDMOpRemoteShutdown{}, "xen_dm_op_remote_shutdown", "", map[string]string{"Reason": "reason"}, nil},
	{XenDMOpRelocateMemory{}, "xen_dm_op_relocate_memory", "", map[string]string{
		"Size": "size", "Pad": "pad", "SrcGFN": "src_gfn", "DstGFN": "dst_gfn"}, nil},
	{XenDMOpPinMemoryCacheattr{}, "xen_dm_op_pin_memory_cacheattr", "", map[string]string{
		"Start": "start", "End": "end", "Type": "type", "Pad": "pad"}, nil},
	{XenDMOpSetIRQLevel{}, "xen_dm_op_set_irq_level", "", map[string]string{
		"IRQ": "irq", "Level": "level", "Pad": "pad"}, nil},
	{XenDMOpNrVCPUs{}, "xen_dm_op_nr_vcpus", "", map[string]string{"VCPUs": "vcpus"}, nil},

	{XenDomctl{}, "xen_domctl", "", map[string]string{"Cmd": "cmd", "InterfaceVersion": "interface_version",
		"Domain": "domain", "Pad": "_pad", "U": "u"}, nil},
	{XenArchDomainconfig{}, "xen_arch_domainconfig", "", map[string]string{
		"EmulationFlags": "emulation_flags", "MiscFlags": "misc_flags"}, nil},
	{XenDomctlGetDomainInfo{}, "xen_domctl_getdomaininfo", "", map[string]string{
		"Domain": "domain", "Pad1": "pad1", "Flags": "flags", "TotPages": "tot_pages",
		"MaxPages": "max_pages", "OutstandingPages": "outstanding_pages", "ShrPages": "shr_pages",
		"PagedPages": "paged_pages", "SharedInfoFrame": "shared_info_frame", "CPUTime": "cpu_time",
		"NrOnlineVCPUs": "nr_online_vcpus", "MaxVCPUID": "max_vcpu_id", "SSIDRef": "ssidref",
		"Handle": "handle", "CPUPool": "cpupool", "GPAddrBits": "gpaddr_bits", "Pad2": "pad2",
		"ArchConfig": "arch_config"}, nil},
	{XenDomctlBindPtIRQ{}, "xen_domctl_bind_pt_irq", "", map[string]string{
		"MachineIRQ": "machine_irq", "IRQType": "irq_type", "U": "u"},
		[]string{"u.isa.isa_irq", "u.pci.bus", "u.pci.device", "u.pci.intx", "u.msi.gvec",
			"u.msi.gflags", "u.msi.gtable", "u.spi.spi"}},
	{XenDomctlBindPtIRQISA{}, "xen_domctl_bind_pt_irq", "u", map[string]string{"ISAIRQ": "u.isa.isa_irq"}, nil},
	{XenDomctlBindPtIRQPCI{}, "xen_domctl_bind_pt_irq", "u", map[string]string{
		"Bus": "u.pci.bus", "Device": "u.pci.device", "Intx": "u.pci.intx"}, nil},
	{XenDomctlBindPtIRQMSI{}, "xen_domctl_bind_pt_irq", "u", map[string]string{
		"GVec": "u.msi.gvec", "GFlags": "u.msi.gflags", "GTable": "u.msi.gtable"}, nil},
	{XenDomctlMemoryMapping{}, "xen_domctl_memory_mapping", "", map[string]string{
		"FirstGFN": "first_gfn", "FirstMFN": "first_mfn", "NrMFNs": "nr_mfns",
		"AddMapping": "add_mapping", "Padding": "padding"}, nil},
	{XenDomctlIoportMapping{}, "xen_domctl_ioport_mapping", "", map[string]string{
		"FirstGport": "first_gport", "FirstMport": "first_mport", "NrPorts": "nr_ports",
		"AddMapping": "add_mapping"}, nil},
	{XenDomctlIomemPermission{}, "xen_domctl_iomem_permission", "", map[string]string{
		"FirstMFN": "first_mfn", "NrMFNs": "nr_mfns", "AllowAccess": "allow_access"}, nil},
	{XenDomctlIoportPermission{}, "xen_domctl_ioport_permission", "", map[string]string{
		"FirstPort": "first_port", "NrPorts": "nr_ports", "AllowAccess": "allow_access"}, nil},
	{XenDomctlIRQPermission{}, "xen_domctl_irq_permission", "", map[string]string{
		"PIRQ": "pirq", "AllowAccess": "allow_access", "Pad": "pad"}, nil},

	{PhysdevMapPIRQ{}, "physdev_map_pirq", "", map[string]string{"Domid": "domid", "Type": "type",
		"Index": "index", "PIRQ": "pirq", "Bus": "bus", "Devfn": "devfn", "EntryNr": "entry_nr",
		"TableBase": "table_base"}, nil},
	{PhysdevUnmapPIRQ{}, "physdev_unmap_pirq", "", map[string]string{"Domid": "domid", "PIRQ": "pirq"}, nil},
	{XenMemoryReservation{}, "xen_memory_reservation", "", map[string]string{
		"ExtentStart": "extent_start", "NrExtents": "nr_extents", "ExtentOrder": "extent_order",
		"MemFlags": "mem_flags", "Domid": "domid"}, nil},
	{XenAddToPhysmap{}, "xen_add_to_physmap", "", map[string]string{"Domid": "domid", "Size": "size",
		"Space": "space", "Idx": "idx", "GPFN": "gpfn"}, nil},
	{XenHVMParam{}, "xen_hvm_param", "", map[string]string{"Domid": "domid", "Pad": "pad",
		"Index": "index", "Value": "value"}, nil},
	{MulticallEntry{}, "multicall_entry", "", map[string]string{"Op": "op", "Result": "result",
		"Args": "args"}, nil},
}

func TestLayout(t *testing.T) {
	l := loadLayout(t)
	for _, m := range mirrors {
		typ := reflect.TypeOf(m.goType)
		t.Run(typ.Name(), func(t *testing.T) {
			cs, ok := l.Structs[m.c]
			if !ok {
				t.Fatalf("C struct %s missing from layout.json", m.c)
			}
			var base uintptr
			if m.base != "" {
				arm, ok := cs.Fields[m.base]
				if !ok {
					t.Fatalf("C member %s.%s missing", m.c, m.base)
				}
				base = arm[0]
				if typ.Size() > arm[1] {
					t.Errorf("size %d does not fit %s.%s (%d bytes)", typ.Size(), m.c, m.base, arm[1])
				}
			} else {
				if got, want := typ.Size(), cs.Size; got != want {
					t.Errorf("size = %d, want %d (sizeof(struct %s))", got, want, m.c)
				}
				if got, want := uintptr(typ.Align()), cs.Align; got > want {
					t.Errorf("align = %d, more than C's %d", got, want)
				}
			}
			mapped := map[string]bool{}
			for i := 0; i < typ.NumField(); i++ {
				f := typ.Field(i)
				if f.Name == "_" {
					continue
				}
				cname, ok := m.fields[f.Name]
				if !ok {
					t.Errorf("Go field %s has no C counterpart in the test table", f.Name)
					continue
				}
				if cname == "" {
					continue // bitfield word or __XEN__-only member, checked elsewhere
				}
				mapped[cname] = true
				cf, ok := cs.Fields[cname]
				if !ok {
					t.Errorf("C member %s.%s missing from layout.json", m.c, cname)
					continue
				}
				if got, want := base+f.Offset, cf[0]; got != want {
					t.Errorf("%s offset = %d, want %d (offsetof(%s, %s))", f.Name, got, want, m.c, cname)
				}
				if got, want := f.Type.Size(), cf[1]; got != want {
					t.Errorf("%s size = %d, want %d (sizeof %s.%s)", f.Name, got, want, m.c, cname)
				}
			}
			if m.base != "" {
				return
			}
			skip := map[string]bool{}
			for _, s := range m.skip {
				skip[s] = true
			}
			for cname := range cs.Fields {
				if !mapped[cname] && !skip[cname] {
					t.Errorf("C member %s.%s has no Go field", m.c, cname)
				}
			}
		})
	}
}

// TestBitfields checks the bit positions the Go code assumes for the
// bitfields of struct ioreq (flags byte at offset 30) and struct buf_ioreq
// (first 32-bit word) against GCC's layout.
func TestBitfields(t *testing.T) {
	l := loadLayout(t)
	tests := []struct {
		c         string
		wantFirst int
		wantWidth int
	}{
		{"ioreq.state", IoreqFlagsOffset * 8, 4},
		{"ioreq.data_is_ptr", IoreqFlagsOffset*8 + bitIndex(IoreqDataIsPtrBit), 1},
		{"ioreq.dir", IoreqFlagsOffset*8 + bitIndex(IoreqDirBit), 1},
		{"ioreq.df", IoreqFlagsOffset*8 + bitIndex(IoreqDFBit), 1},
		{"buf_ioreq.type", 0, bitWidth(BufIoreqTypeMask)},
		{"buf_ioreq.dir", BufIoreqDirShift, 1},
		{"buf_ioreq.size", BufIoreqSizeShift, bitWidth(BufIoreqSizeMask)},
		{"buf_ioreq.addr", BufIoreqAddrShift, bitWidth(BufIoreqAddrMask)},
	}
	if got := bitWidth(IoreqStateMask); got != 4 {
		t.Errorf("IoreqStateMask width = %d, want 4", got)
	}
	for _, tt := range tests {
		got, ok := l.Bits[tt.c]
		if !ok {
			t.Errorf("%s missing from layout.json", tt.c)
			continue
		}
		if got != [2]int{tt.wantFirst, tt.wantWidth} {
			t.Errorf("%s: C has bits %d+%d, Go assumes %d+%d", tt.c, got[0], got[1], tt.wantFirst, tt.wantWidth)
		}
	}
}

func bitIndex(v uint) int {
	for i := 0; i < 64; i++ {
		if v == 1<<i {
			return i
		}
	}
	return -1
}

func bitWidth(mask uint) int {
	n := 0
	for ; mask&1 == 1; mask >>= 1 {
		n++
	}
	return n
}

// TestConstants checks the Go copies of C constants against the headers.
func TestConstants(t *testing.T) {
	l := loadLayout(t)
	goConsts := map[string]uint64{
		"IOCTL_PRIVCMD_HYPERCALL":        IOCTL_PRIVCMD_HYPERCALL,
		"IOCTL_PRIVCMD_MMAPBATCH_V2":     IOCTL_PRIVCMD_MMAPBATCH_V2,
		"IOCTL_PRIVCMD_DM_OP":            IOCTL_PRIVCMD_DM_OP,
		"IOCTL_PRIVCMD_RESTRICT":         IOCTL_PRIVCMD_RESTRICT,
		"IOCTL_PRIVCMD_MMAP_RESOURCE":    IOCTL_PRIVCMD_MMAP_RESOURCE,
		"IOCTL_EVTCHN_BIND_VIRQ":         IOCTL_EVTCHN_BIND_VIRQ,
		"IOCTL_EVTCHN_BIND_INTERDOMAIN":  IOCTL_EVTCHN_BIND_INTERDOMAIN,
		"IOCTL_EVTCHN_BIND_UNBOUND_PORT": IOCTL_EVTCHN_BIND_UNBOUND_PORT,
		"IOCTL_EVTCHN_UNBIND":            IOCTL_EVTCHN_UNBIND,
		"IOCTL_EVTCHN_NOTIFY":            IOCTL_EVTCHN_NOTIFY,
		"IOCTL_EVTCHN_RESET":             IOCTL_EVTCHN_RESET,
		"IOCTL_EVTCHN_RESTRICT_DOMID":    IOCTL_EVTCHN_RESTRICT_DOMID,
		"IOREQ_BUFFER_SLOT_NUM":          IOREQ_BUFFER_SLOT_NUM,
		"DOMID_SELF":                     DOMID_SELF,
		"DOMID_IO":                       DOMID_IO,
		"DOMID_XEN":                      DOMID_XEN,
		"DOMID_INVALID":                  DOMID_INVALID,

		"__HYPERVISOR_memory_op":        HYPERVISOR_memory_op,
		"__HYPERVISOR_multicall":        HYPERVISOR_multicall,
		"__HYPERVISOR_xen_version":      HYPERVISOR_xen_version,
		"__HYPERVISOR_grant_table_op":   HYPERVISOR_grant_table_op,
		"__HYPERVISOR_sched_op":         HYPERVISOR_sched_op,
		"__HYPERVISOR_event_channel_op": HYPERVISOR_event_channel_op,
		"__HYPERVISOR_physdev_op":       HYPERVISOR_physdev_op,
		"__HYPERVISOR_hvm_op":           HYPERVISOR_hvm_op,
		"__HYPERVISOR_sysctl":           HYPERVISOR_sysctl,
		"__HYPERVISOR_domctl":           HYPERVISOR_domctl,
		"__HYPERVISOR_dm_op":            HYPERVISOR_dm_op,

		"XEN_DMOP_create_ioreq_server":                XEN_DMOP_create_ioreq_server,
		"XEN_DMOP_get_ioreq_server_info":              XEN_DMOP_get_ioreq_server_info,
		"XEN_DMOP_map_io_range_to_ioreq_server":       XEN_DMOP_map_io_range_to_ioreq_server,
		"XEN_DMOP_unmap_io_range_from_ioreq_server":   XEN_DMOP_unmap_io_range_from_ioreq_server,
		"XEN_DMOP_set_ioreq_server_state":             XEN_DMOP_set_ioreq_server_state,
		"XEN_DMOP_destroy_ioreq_server":               XEN_DMOP_destroy_ioreq_server,
		"XEN_DMOP_track_dirty_vram":                   XEN_DMOP_track_dirty_vram,
		"XEN_DMOP_set_pci_intx_level":                 XEN_DMOP_set_pci_intx_level,
		"XEN_DMOP_set_isa_irq_level":                  XEN_DMOP_set_isa_irq_level,
		"XEN_DMOP_set_pci_link_route":                 XEN_DMOP_set_pci_link_route,
		"XEN_DMOP_modified_memory":                    XEN_DMOP_modified_memory,
		"XEN_DMOP_set_mem_type":                       XEN_DMOP_set_mem_type,
		"XEN_DMOP_inject_event":                       XEN_DMOP_inject_event,
		"XEN_DMOP_inject_msi":                         XEN_DMOP_inject_msi,
		"XEN_DMOP_map_mem_type_to_ioreq_server":       XEN_DMOP_map_mem_type_to_ioreq_server,
		"XEN_DMOP_remote_shutdown":                    XEN_DMOP_remote_shutdown,
		"XEN_DMOP_relocate_memory":                    XEN_DMOP_relocate_memory,
		"XEN_DMOP_pin_memory_cacheattr":               XEN_DMOP_pin_memory_cacheattr,
		"XEN_DMOP_set_irq_level":                      XEN_DMOP_set_irq_level,
		"XEN_DMOP_nr_vcpus":                           XEN_DMOP_nr_vcpus,
		"XEN_DMOP_no_gfns":                            XEN_DMOP_no_gfns,
		"XEN_DMOP_IO_RANGE_PORT":                      XEN_DMOP_IO_RANGE_PORT,
		"XEN_DMOP_IO_RANGE_MEMORY":                    XEN_DMOP_IO_RANGE_MEMORY,
		"XEN_DMOP_IO_RANGE_PCI":                       XEN_DMOP_IO_RANGE_PCI,
		"HVM_IOREQSRV_BUFIOREQ_OFF":                   HVM_IOREQSRV_BUFIOREQ_OFF,
		"HVM_IOREQSRV_BUFIOREQ_LEGACY":                HVM_IOREQSRV_BUFIOREQ_LEGACY,
		"HVM_IOREQSRV_BUFIOREQ_ATOMIC":                HVM_IOREQSRV_BUFIOREQ_ATOMIC,
		"XENMEM_resource_ioreq_server":                XENMEM_resource_ioreq_server,
		"XENMEM_resource_grant_table":                 XENMEM_resource_grant_table,
		"XENMEM_resource_ioreq_server_frame_bufioreq": XENMEM_resource_ioreq_server_frame_bufioreq,
		"XENMEM_resource_ioreq_server_frame_ioreq(0)": XENMEM_resource_ioreq_server_frame_ioreq0,

		"XEN_DOMCTL_INTERFACE_VERSION":     XEN_DOMCTL_INTERFACE_VERSION_4_17,
		"XEN_DOMCTL_getdomaininfo":         XEN_DOMCTL_getdomaininfo,
		"XEN_DOMCTL_irq_permission":        XEN_DOMCTL_irq_permission,
		"XEN_DOMCTL_iomem_permission":      XEN_DOMCTL_iomem_permission,
		"XEN_DOMCTL_ioport_permission":     XEN_DOMCTL_ioport_permission,
		"XEN_DOMCTL_bind_pt_irq":           XEN_DOMCTL_bind_pt_irq,
		"XEN_DOMCTL_memory_mapping":        XEN_DOMCTL_memory_mapping,
		"XEN_DOMCTL_ioport_mapping":        XEN_DOMCTL_ioport_mapping,
		"XEN_DOMCTL_unbind_pt_irq":         XEN_DOMCTL_unbind_pt_irq,
		"XEN_DOMINF_dying":                 XEN_DOMINF_dying,
		"XEN_DOMINF_hvm_guest":             XEN_DOMINF_hvm_guest,
		"XEN_DOMINF_shutdown":              XEN_DOMINF_shutdown,
		"XEN_DOMINF_paused":                XEN_DOMINF_paused,
		"XEN_DOMINF_blocked":               XEN_DOMINF_blocked,
		"XEN_DOMINF_running":               XEN_DOMINF_running,
		"XEN_DOMINF_debugged":              XEN_DOMINF_debugged,
		"XEN_DOMINF_xs_domain":             XEN_DOMINF_xs_domain,
		"XEN_DOMINF_hap":                   XEN_DOMINF_hap,
		"XEN_DOMINF_shutdownmask":          XEN_DOMINF_shutdownmask,
		"XEN_DOMINF_shutdownshift":         XEN_DOMINF_shutdownshift,
		"PT_IRQ_TYPE_PCI":                  PT_IRQ_TYPE_PCI,
		"PT_IRQ_TYPE_ISA":                  PT_IRQ_TYPE_ISA,
		"PT_IRQ_TYPE_MSI":                  PT_IRQ_TYPE_MSI,
		"PT_IRQ_TYPE_MSI_TRANSLATE":        PT_IRQ_TYPE_MSI_TRANSLATE,
		"PT_IRQ_TYPE_SPI":                  PT_IRQ_TYPE_SPI,
		"DPCI_ADD_MAPPING":                 DPCI_ADD_MAPPING,
		"DPCI_REMOVE_MAPPING":              DPCI_REMOVE_MAPPING,
		"XEN_DOMCTL_VMSI_X86_DEST_ID_MASK": XEN_DOMCTL_VMSI_X86_DEST_ID_MASK,
		"XEN_DOMCTL_VMSI_X86_RH_MASK":      XEN_DOMCTL_VMSI_X86_RH_MASK,
		"XEN_DOMCTL_VMSI_X86_DM_MASK":      XEN_DOMCTL_VMSI_X86_DM_MASK,
		"XEN_DOMCTL_VMSI_X86_DELIV_MASK":   XEN_DOMCTL_VMSI_X86_DELIV_MASK,
		"XEN_DOMCTL_VMSI_X86_TRIG_MASK":    XEN_DOMCTL_VMSI_X86_TRIG_MASK,
		"XEN_DOMCTL_VMSI_X86_UNMASKED":     XEN_DOMCTL_VMSI_X86_UNMASKED,

		"PHYSDEVOP_map_pirq":      PHYSDEVOP_map_pirq,
		"PHYSDEVOP_unmap_pirq":    PHYSDEVOP_unmap_pirq,
		"MAP_PIRQ_TYPE_MSI":       MAP_PIRQ_TYPE_MSI,
		"MAP_PIRQ_TYPE_GSI":       MAP_PIRQ_TYPE_GSI,
		"MAP_PIRQ_TYPE_UNKNOWN":   MAP_PIRQ_TYPE_UNKNOWN,
		"MAP_PIRQ_TYPE_MSI_SEG":   MAP_PIRQ_TYPE_MSI_SEG,
		"MAP_PIRQ_TYPE_MULTI_MSI": MAP_PIRQ_TYPE_MULTI_MSI,

		"XENMEM_increase_reservation": XENMEM_increase_reservation,
		"XENMEM_decrease_reservation": XENMEM_decrease_reservation,
		"XENMEM_populate_physmap":     XENMEM_populate_physmap,
		"XENMEM_add_to_physmap":       XENMEM_add_to_physmap,
		"XENMAPSPACE_shared_info":     XENMAPSPACE_shared_info,
		"XENMAPSPACE_grant_table":     XENMAPSPACE_grant_table,
		"XENMAPSPACE_gmfn":            XENMAPSPACE_gmfn,
		"XENMAPSPACE_gmfn_range":      XENMAPSPACE_gmfn_range,
		"XENMAPSPACE_gmfn_foreign":    XENMAPSPACE_gmfn_foreign,
		"XENMAPSPACE_dev_mmio":        XENMAPSPACE_dev_mmio,

		"HVMOP_set_param":                 HVMOP_set_param,
		"HVMOP_get_param":                 HVMOP_get_param,
		"HVM_PARAM_CALLBACK_IRQ":          HVM_PARAM_CALLBACK_IRQ,
		"HVM_PARAM_STORE_PFN":             HVM_PARAM_STORE_PFN,
		"HVM_PARAM_STORE_EVTCHN":          HVM_PARAM_STORE_EVTCHN,
		"HVM_PARAM_PAE_ENABLED":           HVM_PARAM_PAE_ENABLED,
		"HVM_PARAM_IOREQ_PFN":             HVM_PARAM_IOREQ_PFN,
		"HVM_PARAM_BUFIOREQ_PFN":          HVM_PARAM_BUFIOREQ_PFN,
		"HVM_PARAM_VIRIDIAN":              HVM_PARAM_VIRIDIAN,
		"HVM_PARAM_TIMER_MODE":            HVM_PARAM_TIMER_MODE,
		"HVM_PARAM_HPET_ENABLED":          HVM_PARAM_HPET_ENABLED,
		"HVM_PARAM_IDENT_PT":              HVM_PARAM_IDENT_PT,
		"HVM_PARAM_DM_DOMAIN":             HVM_PARAM_DM_DOMAIN,
		"HVM_PARAM_ACPI_S_STATE":          HVM_PARAM_ACPI_S_STATE,
		"HVM_PARAM_VM86_TSS":              HVM_PARAM_VM86_TSS,
		"HVM_PARAM_VPT_ALIGN":             HVM_PARAM_VPT_ALIGN,
		"HVM_PARAM_CONSOLE_PFN":           HVM_PARAM_CONSOLE_PFN,
		"HVM_PARAM_CONSOLE_EVTCHN":        HVM_PARAM_CONSOLE_EVTCHN,
		"HVM_PARAM_ACPI_IOPORTS_LOCATION": HVM_PARAM_ACPI_IOPORTS_LOCATION,
		"HVM_PARAM_NESTEDHVM":             HVM_PARAM_NESTEDHVM,
		"HVM_PARAM_BUFIOREQ_EVTCHN":       HVM_PARAM_BUFIOREQ_EVTCHN,
		"HVM_PARAM_PAGING_RING_PFN":       HVM_PARAM_PAGING_RING_PFN,
		"HVM_PARAM_MONITOR_RING_PFN":      HVM_PARAM_MONITOR_RING_PFN,
		"HVM_PARAM_SHARING_RING_PFN":      HVM_PARAM_SHARING_RING_PFN,
		"HVM_PARAM_TRIPLE_FAULT_REASON":   HVM_PARAM_TRIPLE_FAULT_REASON,
		"HVM_PARAM_IOREQ_SERVER_PFN":      HVM_PARAM_IOREQ_SERVER_PFN,
		"HVM_PARAM_NR_IOREQ_SERVER_PAGES": HVM_PARAM_NR_IOREQ_SERVER_PAGES,
		"HVM_PARAM_VM_GENERATION_ID_ADDR": HVM_PARAM_VM_GENERATION_ID_ADDR,
		"HVM_PARAM_ALTP2M":                HVM_PARAM_ALTP2M,
		"HVM_PARAM_X87_FIP_WIDTH":         HVM_PARAM_X87_FIP_WIDTH,
		"HVM_PARAM_VM86_TSS_SIZED":        HVM_PARAM_VM86_TSS_SIZED,
		"HVM_PARAM_MCA_CAP":               HVM_PARAM_MCA_CAP,
		"HVM_NR_PARAMS":                   HVM_NR_PARAMS,

		"XENVER_version":             XENVER_version,
		"XENVER_extraversion":        XENVER_extraversion,
		"XENVER_compile_info":        XENVER_compile_info,
		"XENVER_capabilities":        XENVER_capabilities,
		"XENVER_changeset":           XENVER_changeset,
		"XENVER_platform_parameters": XENVER_platform_parameters,
		"XENVER_get_features":        XENVER_get_features,
		"XENVER_pagesize":            XENVER_pagesize,
		"XENVER_guest_handle":        XENVER_guest_handle,
		"XENVER_commandline":         XENVER_commandline,
		"XENVER_build_id":            XENVER_build_id,
	}
	for name, want := range l.Consts {
		got, ok := goConsts[name]
		if !ok {
			t.Errorf("C constant %s has no Go counterpart in the test table", name)
			continue
		}
		if got != want {
			t.Errorf("%s = %#x, want %#x", name, got, want)
		}
	}
	for name := range goConsts {
		if _, ok := l.Consts[name]; !ok {
			t.Errorf("%s missing from layout.json", name)
		}
	}
	if got, want := l.Structs["ioreq"].Size, uintptr(IoreqSize); got != want {
		t.Errorf("IoreqSize = %d, want %d", want, got)
	}
	if got, want := l.Structs["ioreq"].Fields["_pad0"][0], uintptr(IoreqStateWordOffs); got != want {
		t.Errorf("IoreqStateWordOffs = %d, want %d (offsetof(struct ioreq, _pad0))", want, got)
	}
	if got, want := l.Structs["ioreq"].Fields["type"][0], uintptr(IoreqFlagsOffset+1); got != want {
		t.Errorf("IoreqFlagsOffset+1 = %d, want offsetof(struct ioreq, type) = %d", want, got)
	}
	if got, want := l.Structs["xen_domctl"].Size, uintptr(XenDomctlSize); got != want {
		t.Errorf("XenDomctlSize = %d, want %d", want, got)
	}
	if got, want := l.Structs["xen_extraversion_t"].Size, uintptr(XenExtraversionLen); got != want {
		t.Errorf("XenExtraversionLen = %d, want %d", want, got)
	}
	if got, want := l.Structs["xen_capabilities_info_t"].Size, uintptr(XenCapabilitiesLen); got != want {
		t.Errorf("XenCapabilitiesLen = %d, want %d", want, got)
	}
}

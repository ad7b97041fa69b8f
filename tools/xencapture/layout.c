/*
 * layout prints, as JSON, the size and member offsets of every C struct
 * godm mirrors in hyp/xenabi, the bit positions of the bitfields, and the
 * values of the constants it copies, all taken from the installed headers
 * (Debian libxen-dev, Xen 4.17). regen.sh writes the output to
 * hyp/xenabi/testdata/layout.json; the layout test in hyp/xenabi compares
 * the Go mirrors against it.
 */
#define _GNU_SOURCE
#define __XEN_TOOLS__ 1
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include <xenctrl.h>
#include <xen/xen.h>
#include <xen/domctl.h>
#include <xen/memory.h>
#include <xen/physdev.h>
#include <xen/version.h>
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/params.h>
#include <xen/hvm/ioreq.h>
#include <xen/hvm/dm_op.h>
#include <xen/sys/privcmd.h>
#include <xen/sys/evtchn.h>

static int first_struct = 1, first_field;

static void struct_begin(const char *name, size_t size, size_t align)
{
    printf("%s\n    \"%s\": {\"size\": %zu, \"align\": %zu, \"fields\": {", first_struct ? "" : ",",
           name, size, align);
    first_struct = 0;
    first_field = 1;
}

static void field(const char *name, size_t off, size_t size)
{
    printf("%s\"%s\": [%zu, %zu]", first_field ? "" : ", ", name, off, size);
    first_field = 0;
}

static void struct_end(void) { printf("}}"); }

#define S(name, type) struct_begin(name, sizeof(type), _Alignof(type))
#define F(type, f) field(#f, offsetof(type, f), sizeof(((type *)0)->f))
#define E() struct_end()

/* bits reports the bit offset and width of a bitfield from probing. */
static int first_bits = 1;
static void bits(const char *name, const void *zero, const void *set, size_t len)
{
    const unsigned char *z = zero, *s = set;
    int lo = -1, hi = -1;
    for (size_t i = 0; i < len * 8; i++) {
        int bz = (z[i / 8] >> (i % 8)) & 1, bs = (s[i / 8] >> (i % 8)) & 1;
        if (bz != bs) {
            if (lo < 0)
                lo = (int)i;
            hi = (int)i;
        }
    }
    printf("%s\n    \"%s\": [%d, %d]", first_bits ? "" : ",", name, lo, hi - lo + 1);
    first_bits = 0;
}

#define BITS(name, type, f)                                                                            \
    do {                                                                                           \
        type z_, s_;                                                                               \
        memset(&z_, 0, sizeof(z_));                                                                \
        memset(&s_, 0, sizeof(s_));                                                                \
        s_.f = -1;                                                                                 \
        bits(name "." #f, &z_, &s_, sizeof(type));                                                  \
    } while (0)

static int first_const = 1;
static void constant(const char *name, unsigned long long v)
{
    printf("%s\n    \"%s\": %llu", first_const ? "" : ",", name, v);
    first_const = 0;
}
#define C(x) constant(#x, (unsigned long long)(x))

int main(void)
{
    printf("{\n  \"xen\": \"4.17\",\n  \"structs\": {");

    S("ioreq", struct ioreq);
    F(struct ioreq, addr); F(struct ioreq, data); F(struct ioreq, count); F(struct ioreq, size);
    F(struct ioreq, vp_eport); F(struct ioreq, _pad0); F(struct ioreq, type);
    E();
    S("buf_ioreq", struct buf_ioreq);
    F(struct buf_ioreq, type); F(struct buf_ioreq, data);
    E();
    S("buffered_iopage", struct buffered_iopage);
    F(struct buffered_iopage, buf_ioreq);
    E();

    S("privcmd_hypercall", privcmd_hypercall_t);
    F(privcmd_hypercall_t, op); F(privcmd_hypercall_t, arg);
    E();
    S("privcmd_mmapbatch_v2", privcmd_mmapbatch_v2_t);
    F(privcmd_mmapbatch_v2_t, num); F(privcmd_mmapbatch_v2_t, dom); F(privcmd_mmapbatch_v2_t, addr);
    F(privcmd_mmapbatch_v2_t, arr); F(privcmd_mmapbatch_v2_t, err);
    E();
    S("privcmd_dm_op_buf", privcmd_dm_op_buf_t);
    F(privcmd_dm_op_buf_t, uptr); F(privcmd_dm_op_buf_t, size);
    E();
    S("privcmd_dm_op", privcmd_dm_op_t);
    F(privcmd_dm_op_t, dom); F(privcmd_dm_op_t, num); F(privcmd_dm_op_t, ubufs);
    E();
    S("privcmd_mmap_resource", privcmd_mmap_resource_t);
    F(privcmd_mmap_resource_t, dom); F(privcmd_mmap_resource_t, type);
    F(privcmd_mmap_resource_t, id); F(privcmd_mmap_resource_t, idx);
    F(privcmd_mmap_resource_t, num); F(privcmd_mmap_resource_t, addr);
    E();

    S("ioctl_evtchn_bind_interdomain", struct ioctl_evtchn_bind_interdomain);
    F(struct ioctl_evtchn_bind_interdomain, remote_domain);
    F(struct ioctl_evtchn_bind_interdomain, remote_port);
    E();
    S("ioctl_evtchn_bind_unbound_port", struct ioctl_evtchn_bind_unbound_port);
    F(struct ioctl_evtchn_bind_unbound_port, remote_domain);
    E();
    S("ioctl_evtchn_unbind", struct ioctl_evtchn_unbind);
    F(struct ioctl_evtchn_unbind, port);
    E();
    S("ioctl_evtchn_notify", struct ioctl_evtchn_notify);
    F(struct ioctl_evtchn_notify, port);
    E();
    S("ioctl_evtchn_restrict_domid", struct ioctl_evtchn_restrict_domid);
    F(struct ioctl_evtchn_restrict_domid, domid);
    E();

    S("xen_dm_op", struct xen_dm_op);
    F(struct xen_dm_op, op); F(struct xen_dm_op, pad); F(struct xen_dm_op, u);
    E();
    S("xen_dm_op_buf", struct xen_dm_op_buf);
    F(struct xen_dm_op_buf, h); F(struct xen_dm_op_buf, size);
    E();
#define T struct xen_dm_op_create_ioreq_server
    S("xen_dm_op_create_ioreq_server", T);
    F(T, handle_bufioreq); F(T, pad); F(T, id);
    E();
#undef T
#define T struct xen_dm_op_get_ioreq_server_info
    S("xen_dm_op_get_ioreq_server_info", T);
    F(T, id); F(T, flags); F(T, bufioreq_port); F(T, ioreq_gfn); F(T, bufioreq_gfn);
    E();
#undef T
#define T struct xen_dm_op_ioreq_server_range
    S("xen_dm_op_ioreq_server_range", T);
    F(T, id); F(T, pad); F(T, type); F(T, start); F(T, end);
    E();
#undef T
#define T struct xen_dm_op_set_ioreq_server_state
    S("xen_dm_op_set_ioreq_server_state", T);
    F(T, id); F(T, enabled); F(T, pad);
    E();
#undef T
#define T struct xen_dm_op_destroy_ioreq_server
    S("xen_dm_op_destroy_ioreq_server", T);
    F(T, id); F(T, pad);
    E();
#undef T
#define T struct xen_dm_op_track_dirty_vram
    S("xen_dm_op_track_dirty_vram", T);
    F(T, nr); F(T, pad); F(T, first_pfn);
    E();
#undef T
#define T struct xen_dm_op_set_pci_intx_level
    S("xen_dm_op_set_pci_intx_level", T);
    F(T, domain); F(T, bus); F(T, device); F(T, intx); F(T, level);
    E();
#undef T
#define T struct xen_dm_op_set_isa_irq_level
    S("xen_dm_op_set_isa_irq_level", T);
    F(T, isa_irq); F(T, level);
    E();
#undef T
#define T struct xen_dm_op_set_pci_link_route
    S("xen_dm_op_set_pci_link_route", T);
    F(T, link); F(T, isa_irq);
    E();
#undef T
#define T struct xen_dm_op_modified_memory
    S("xen_dm_op_modified_memory", T);
    F(T, nr_extents); F(T, opaque);
    E();
#undef T
#define T struct xen_dm_op_modified_memory_extent
    S("xen_dm_op_modified_memory_extent", T);
    F(T, nr); F(T, pad); F(T, first_pfn);
    E();
#undef T
#define T struct xen_dm_op_set_mem_type
    S("xen_dm_op_set_mem_type", T);
    F(T, nr); F(T, mem_type); F(T, pad); F(T, first_pfn);
    E();
#undef T
#define T struct xen_dm_op_inject_event
    S("xen_dm_op_inject_event", T);
    F(T, vcpuid); F(T, vector); F(T, type); F(T, insn_len); F(T, pad0); F(T, error_code);
    F(T, pad1); F(T, cr2);
    E();
#undef T
#define T struct xen_dm_op_inject_msi
    S("xen_dm_op_inject_msi", T);
    F(T, data); F(T, pad); F(T, addr);
    E();
#undef T
#define T struct xen_dm_op_map_mem_type_to_ioreq_server
    S("xen_dm_op_map_mem_type_to_ioreq_server", T);
    F(T, id); F(T, type); F(T, flags); F(T, opaque);
    E();
#undef T
#define T struct xen_dm_op_remote_shutdown
    S("xen_dm_op_remote_shutdown", T);
    F(T, reason);
    E();
#undef T
#define T struct xen_dm_op_relocate_memory
    S("xen_dm_op_relocate_memory", T);
    F(T, size); F(T, pad); F(T, src_gfn); F(T, dst_gfn);
    E();
#undef T
#define T struct xen_dm_op_pin_memory_cacheattr
    S("xen_dm_op_pin_memory_cacheattr", T);
    F(T, start); F(T, end); F(T, type); F(T, pad);
    E();
#undef T
#define T struct xen_dm_op_set_irq_level
    S("xen_dm_op_set_irq_level", T);
    F(T, irq); F(T, level); F(T, pad);
    E();
#undef T
#define T struct xen_dm_op_nr_vcpus
    S("xen_dm_op_nr_vcpus", T);
    F(T, vcpus);
    E();
#undef T

    /* domctl (XEN_DOMCTL_INTERFACE_VERSION 0x15) */
#define T struct xen_domctl
    S("xen_domctl", T);
    F(T, cmd); F(T, interface_version); F(T, domain); F(T, _pad); F(T, u);
    E();
#undef T
#define T struct xen_domctl_getdomaininfo
    S("xen_domctl_getdomaininfo", T);
    F(T, domain); F(T, pad1); F(T, flags); F(T, tot_pages); F(T, max_pages);
    F(T, outstanding_pages); F(T, shr_pages); F(T, paged_pages); F(T, shared_info_frame);
    F(T, cpu_time); F(T, nr_online_vcpus); F(T, max_vcpu_id); F(T, ssidref); F(T, handle);
    F(T, cpupool); F(T, gpaddr_bits); F(T, pad2); F(T, arch_config);
    E();
#undef T
#define T struct xen_arch_domainconfig
    S("xen_arch_domainconfig", T);
    F(T, emulation_flags); F(T, misc_flags);
    E();
#undef T
#define T struct xen_domctl_bind_pt_irq
    S("xen_domctl_bind_pt_irq", T);
    F(T, machine_irq); F(T, irq_type); F(T, u); F(T, u.isa.isa_irq); F(T, u.pci.bus);
    F(T, u.pci.device); F(T, u.pci.intx); F(T, u.msi.gvec); F(T, u.msi.gflags);
    F(T, u.msi.gtable); F(T, u.spi.spi);
    E();
#undef T
#define T struct xen_domctl_memory_mapping
    S("xen_domctl_memory_mapping", T);
    F(T, first_gfn); F(T, first_mfn); F(T, nr_mfns); F(T, add_mapping); F(T, padding);
    E();
#undef T
#define T struct xen_domctl_ioport_mapping
    S("xen_domctl_ioport_mapping", T);
    F(T, first_gport); F(T, first_mport); F(T, nr_ports); F(T, add_mapping);
    E();
#undef T
#define T struct xen_domctl_iomem_permission
    S("xen_domctl_iomem_permission", T);
    F(T, first_mfn); F(T, nr_mfns); F(T, allow_access);
    E();
#undef T
#define T struct xen_domctl_ioport_permission
    S("xen_domctl_ioport_permission", T);
    F(T, first_port); F(T, nr_ports); F(T, allow_access);
    E();
#undef T
#define T struct xen_domctl_irq_permission
    S("xen_domctl_irq_permission", T);
    F(T, pirq); F(T, allow_access); F(T, pad);
    E();
#undef T

    /* physdev, memory_op, hvm_op, multicall, xen_version */
#define T struct physdev_map_pirq
    S("physdev_map_pirq", T);
    F(T, domid); F(T, type); F(T, index); F(T, pirq); F(T, bus); F(T, devfn); F(T, entry_nr);
    F(T, table_base);
    E();
#undef T
#define T struct physdev_unmap_pirq
    S("physdev_unmap_pirq", T);
    F(T, domid); F(T, pirq);
    E();
#undef T
#define T struct xen_memory_reservation
    S("xen_memory_reservation", T);
    F(T, extent_start); F(T, nr_extents); F(T, extent_order); F(T, mem_flags); F(T, domid);
    E();
#undef T
#define T struct xen_add_to_physmap
    S("xen_add_to_physmap", T);
    F(T, domid); F(T, size); F(T, space); F(T, idx); F(T, gpfn);
    E();
#undef T
#define T struct xen_hvm_param
    S("xen_hvm_param", T);
    F(T, domid); F(T, pad); F(T, index); F(T, value);
    E();
#undef T
#define T struct multicall_entry
    S("multicall_entry", T);
    F(T, op); F(T, result); F(T, args);
    E();
#undef T
    S("xen_extraversion_t", xen_extraversion_t);
    E();
    S("xen_capabilities_info_t", xen_capabilities_info_t);
    E();
    printf("\n  },\n  \"bits\": {");

    BITS("ioreq", struct ioreq, state);
    BITS("ioreq", struct ioreq, data_is_ptr);
    BITS("ioreq", struct ioreq, dir);
    BITS("ioreq", struct ioreq, df);
    BITS("buf_ioreq", struct buf_ioreq, type);
    BITS("buf_ioreq", struct buf_ioreq, dir);
    BITS("buf_ioreq", struct buf_ioreq, size);
    BITS("buf_ioreq", struct buf_ioreq, addr);
    printf("\n  },\n  \"consts\": {");

    C(IOCTL_PRIVCMD_HYPERCALL); C(IOCTL_PRIVCMD_MMAPBATCH_V2); C(IOCTL_PRIVCMD_DM_OP);
    C(IOCTL_PRIVCMD_RESTRICT); C(IOCTL_PRIVCMD_MMAP_RESOURCE);
    C(IOCTL_EVTCHN_BIND_VIRQ); C(IOCTL_EVTCHN_BIND_INTERDOMAIN); C(IOCTL_EVTCHN_BIND_UNBOUND_PORT);
    C(IOCTL_EVTCHN_UNBIND); C(IOCTL_EVTCHN_NOTIFY); C(IOCTL_EVTCHN_RESET);
    C(IOCTL_EVTCHN_RESTRICT_DOMID);
    C(IOREQ_BUFFER_SLOT_NUM);
    C(DOMID_SELF); C(DOMID_IO); C(DOMID_XEN); C(DOMID_INVALID);
    C(__HYPERVISOR_memory_op); C(__HYPERVISOR_multicall); C(__HYPERVISOR_xen_version);
    C(__HYPERVISOR_grant_table_op); C(__HYPERVISOR_sched_op); C(__HYPERVISOR_event_channel_op);
    C(__HYPERVISOR_physdev_op); C(__HYPERVISOR_hvm_op); C(__HYPERVISOR_sysctl);
    C(__HYPERVISOR_domctl); C(__HYPERVISOR_dm_op);
    C(XEN_DMOP_create_ioreq_server); C(XEN_DMOP_get_ioreq_server_info);
    C(XEN_DMOP_map_io_range_to_ioreq_server); C(XEN_DMOP_unmap_io_range_from_ioreq_server);
    C(XEN_DMOP_set_ioreq_server_state); C(XEN_DMOP_destroy_ioreq_server);
    C(XEN_DMOP_track_dirty_vram); C(XEN_DMOP_set_pci_intx_level); C(XEN_DMOP_set_isa_irq_level);
    C(XEN_DMOP_set_pci_link_route); C(XEN_DMOP_modified_memory); C(XEN_DMOP_set_mem_type);
    C(XEN_DMOP_inject_event); C(XEN_DMOP_inject_msi); C(XEN_DMOP_map_mem_type_to_ioreq_server);
    C(XEN_DMOP_remote_shutdown); C(XEN_DMOP_relocate_memory); C(XEN_DMOP_pin_memory_cacheattr);
    C(XEN_DMOP_set_irq_level); C(XEN_DMOP_nr_vcpus); C(XEN_DMOP_no_gfns);
    C(XEN_DMOP_IO_RANGE_PORT); C(XEN_DMOP_IO_RANGE_MEMORY); C(XEN_DMOP_IO_RANGE_PCI);
    C(HVM_IOREQSRV_BUFIOREQ_OFF); C(HVM_IOREQSRV_BUFIOREQ_LEGACY); C(HVM_IOREQSRV_BUFIOREQ_ATOMIC);
    C(XENMEM_resource_ioreq_server); C(XENMEM_resource_grant_table);
    C(XENMEM_resource_ioreq_server_frame_bufioreq);
    C(XENMEM_resource_ioreq_server_frame_ioreq(0));

    C(XEN_DOMCTL_INTERFACE_VERSION);
    C(XEN_DOMCTL_getdomaininfo); C(XEN_DOMCTL_irq_permission); C(XEN_DOMCTL_iomem_permission);
    C(XEN_DOMCTL_ioport_permission); C(XEN_DOMCTL_bind_pt_irq); C(XEN_DOMCTL_memory_mapping);
    C(XEN_DOMCTL_ioport_mapping); C(XEN_DOMCTL_unbind_pt_irq);
    C(XEN_DOMINF_dying); C(XEN_DOMINF_hvm_guest); C(XEN_DOMINF_shutdown); C(XEN_DOMINF_paused);
    C(XEN_DOMINF_blocked); C(XEN_DOMINF_running); C(XEN_DOMINF_debugged);
    C(XEN_DOMINF_xs_domain); C(XEN_DOMINF_hap); C(XEN_DOMINF_shutdownmask);
    C(XEN_DOMINF_shutdownshift);
    C(PT_IRQ_TYPE_PCI); C(PT_IRQ_TYPE_ISA); C(PT_IRQ_TYPE_MSI); C(PT_IRQ_TYPE_MSI_TRANSLATE);
    C(PT_IRQ_TYPE_SPI);
    C(DPCI_ADD_MAPPING); C(DPCI_REMOVE_MAPPING);
    C(XEN_DOMCTL_VMSI_X86_DEST_ID_MASK); C(XEN_DOMCTL_VMSI_X86_RH_MASK);
    C(XEN_DOMCTL_VMSI_X86_DM_MASK); C(XEN_DOMCTL_VMSI_X86_DELIV_MASK);
    C(XEN_DOMCTL_VMSI_X86_TRIG_MASK); C(XEN_DOMCTL_VMSI_X86_UNMASKED);

    C(PHYSDEVOP_map_pirq); C(PHYSDEVOP_unmap_pirq);
    C(MAP_PIRQ_TYPE_MSI); C(MAP_PIRQ_TYPE_GSI); C(MAP_PIRQ_TYPE_UNKNOWN);
    C(MAP_PIRQ_TYPE_MSI_SEG); C(MAP_PIRQ_TYPE_MULTI_MSI);

    C(XENMEM_increase_reservation); C(XENMEM_decrease_reservation); C(XENMEM_populate_physmap);
    C(XENMEM_add_to_physmap); C(XENMAPSPACE_shared_info); C(XENMAPSPACE_grant_table);
    C(XENMAPSPACE_gmfn); C(XENMAPSPACE_gmfn_range); C(XENMAPSPACE_gmfn_foreign);
    C(XENMAPSPACE_dev_mmio);

    C(HVMOP_set_param); C(HVMOP_get_param);
    C(HVM_PARAM_CALLBACK_IRQ); C(HVM_PARAM_STORE_PFN); C(HVM_PARAM_STORE_EVTCHN);
    C(HVM_PARAM_PAE_ENABLED); C(HVM_PARAM_IOREQ_PFN); C(HVM_PARAM_BUFIOREQ_PFN);
    C(HVM_PARAM_VIRIDIAN); C(HVM_PARAM_TIMER_MODE); C(HVM_PARAM_HPET_ENABLED);
    C(HVM_PARAM_IDENT_PT); C(HVM_PARAM_DM_DOMAIN); C(HVM_PARAM_ACPI_S_STATE);
    C(HVM_PARAM_VM86_TSS); C(HVM_PARAM_VPT_ALIGN); C(HVM_PARAM_CONSOLE_PFN);
    C(HVM_PARAM_CONSOLE_EVTCHN); C(HVM_PARAM_ACPI_IOPORTS_LOCATION); C(HVM_PARAM_NESTEDHVM);
    C(HVM_PARAM_BUFIOREQ_EVTCHN); C(HVM_PARAM_PAGING_RING_PFN); C(HVM_PARAM_MONITOR_RING_PFN);
    C(HVM_PARAM_SHARING_RING_PFN); C(HVM_PARAM_TRIPLE_FAULT_REASON);
    C(HVM_PARAM_IOREQ_SERVER_PFN); C(HVM_PARAM_NR_IOREQ_SERVER_PAGES);
    C(HVM_PARAM_VM_GENERATION_ID_ADDR); C(HVM_PARAM_ALTP2M); C(HVM_PARAM_X87_FIP_WIDTH);
    C(HVM_PARAM_VM86_TSS_SIZED); C(HVM_PARAM_MCA_CAP); C(HVM_NR_PARAMS);

    C(XENVER_version); C(XENVER_extraversion); C(XENVER_compile_info); C(XENVER_capabilities);
    C(XENVER_changeset); C(XENVER_platform_parameters); C(XENVER_get_features);
    C(XENVER_pagesize); C(XENVER_guest_handle); C(XENVER_commandline); C(XENVER_build_id);
    printf("\n  }\n}\n");
    return 0;
}

/*
 * xencapture driver: calls the reference Xen libraries once per golden
 * fixture, each call bracketed by xencapture_begin/xencapture_end of the
 * preloaded capture library (capture.c). Run it with
 * LD_PRELOAD=libxencapture.so XENCAPTURE_OUT=DIR.
 *
 * Arguments are fixed, distinctive values so that every field of every
 * encoding shows up in the bytes. Domain 7 is the guest throughout.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <xenctrl.h>
#include <xendevicemodel.h>
#include <xenevtchn.h>
#include <xenforeignmemory.h>
#include <xen/hvm/params.h>

#define DOM 7

static void (*cap_begin)(const char *, const char *);
static int poison_byte;

/*
 * poison fills the stack below the caller with poison_byte, so that bytes
 * a library leaves uninitialised differ between the two capture passes
 * (heap memory is poisoned with mallopt(M_PERTURB)).
 */
static __attribute__((noinline)) void poison(void)
{
    volatile unsigned char area[256 * 1024];
    memset((unsigned char *)area, poison_byte, sizeof(area));
    __asm__ volatile("" : : "r"(area) : "memory");
}
static void (*cap_end)(const char *);
static char result[256];

#define CAPTURE(name, expr, ...)                                                                   \
    do {                                                                                           \
        poison();                                                                                  \
        cap_begin(name, #expr);                                                                    \
        long rc_ = (long)(expr);                                                                   \
        int n_ = snprintf(result, sizeof(result), "rc=%ld", rc_);                                  \
        snprintf(result + n_, sizeof(result) - n_, "" __VA_ARGS__);                                \
        cap_end(result);                                                                           \
    } while (0)

/* CAPTURE_PTR is CAPTURE for calls returning a pointer or handle. */
#define CAPTURE_PTR(name, var, expr)                                                               \
    do {                                                                                           \
        poison();                                                                                  \
        cap_begin(name, #var " = " #expr);                                                         \
        var = (expr);                                                                              \
        cap_end(var ? "ok" : "NULL");                                                              \
        if (!var) {                                                                                \
            fprintf(stderr, "%s failed\n", name);                                                  \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static void devicemodel(void)
{
    xendevicemodel_handle *dm;
    ioservid_t id = 0;
    xen_pfn_t ioreq_gfn = 0, bufioreq_gfn = 0;
    evtchn_port_t port = 0;
    unsigned int vcpus = 0;
    unsigned long dirty[2] = {0, 0};
    struct xen_dm_op_modified_memory_extent ext[2] = {
        {.nr = 16, .first_pfn = 0x1000},
        {.nr = 2, .first_pfn = 0x8000},
    };

    CAPTURE_PTR("dm_open", dm, xendevicemodel_open(NULL, 0));
    CAPTURE("dm_create_ioreq_server",
            xendevicemodel_create_ioreq_server(dm, DOM, HVM_IOREQSRV_BUFIOREQ_ATOMIC, &id),
            " id=%u", id);
    CAPTURE("dm_create_ioreq_server_off",
            xendevicemodel_create_ioreq_server(dm, DOM, HVM_IOREQSRV_BUFIOREQ_OFF, &id),
            " id=%u", id);
    CAPTURE("dm_get_ioreq_server_info",
            xendevicemodel_get_ioreq_server_info(dm, DOM, 1, &ioreq_gfn, &bufioreq_gfn, &port),
            " ioreq_gfn=%#lx bufioreq_gfn=%#lx port=%u", (unsigned long)ioreq_gfn,
            (unsigned long)bufioreq_gfn, port);
    CAPTURE("dm_get_ioreq_server_info_nogfns",
            xendevicemodel_get_ioreq_server_info(dm, DOM, 1, NULL, NULL, &port), " port=%u",
            port);
    CAPTURE("dm_map_io_range_port",
            xendevicemodel_map_io_range_to_ioreq_server(dm, DOM, 1, 0, 0x3f8, 0x3ff));
    CAPTURE("dm_map_io_range_mmio",
            xendevicemodel_map_io_range_to_ioreq_server(dm, DOM, 1, 1, 0xfebf0000, 0xfebf0fff));
    CAPTURE("dm_unmap_io_range_port",
            xendevicemodel_unmap_io_range_from_ioreq_server(dm, DOM, 1, 0, 0x3f8, 0x3ff));
    CAPTURE("dm_unmap_io_range_mmio",
            xendevicemodel_unmap_io_range_from_ioreq_server(dm, DOM, 1, 1, 0xfebf0000,
                                                            0xfebf0fff));
    CAPTURE("dm_map_pcidev",
            xendevicemodel_map_pcidev_to_ioreq_server(dm, DOM, 1, 0x0001, 0x02, 0x03, 0x4));
    CAPTURE("dm_unmap_pcidev",
            xendevicemodel_unmap_pcidev_from_ioreq_server(dm, DOM, 1, 0x0001, 0x02, 0x03, 0x4));
    CAPTURE("dm_set_ioreq_server_state_on", xendevicemodel_set_ioreq_server_state(dm, DOM, 1, 1));
    CAPTURE("dm_set_ioreq_server_state_off",
            xendevicemodel_set_ioreq_server_state(dm, DOM, 1, 0));
    CAPTURE("dm_destroy_ioreq_server", xendevicemodel_destroy_ioreq_server(dm, DOM, 1));
    CAPTURE("dm_track_dirty_vram", xendevicemodel_track_dirty_vram(dm, DOM, 0xf0000, 100, dirty),
            " dirty=%#lx,%#lx", dirty[0], dirty[1]);
    CAPTURE("dm_set_pci_intx_level",
            xendevicemodel_set_pci_intx_level(dm, DOM, 0x0001, 0x02, 0x03, 2, 1));
    CAPTURE("dm_set_pci_intx_level_low",
            xendevicemodel_set_pci_intx_level(dm, DOM, 0, 0, 5, 0, 0));
    CAPTURE("dm_set_isa_irq_level", xendevicemodel_set_isa_irq_level(dm, DOM, 4, 1));
    CAPTURE("dm_set_isa_irq_level_low", xendevicemodel_set_isa_irq_level(dm, DOM, 12, 0));
    CAPTURE("dm_set_irq_level", xendevicemodel_set_irq_level(dm, DOM, 40, 1));
    CAPTURE("dm_set_pci_link_route", xendevicemodel_set_pci_link_route(dm, DOM, 2, 10));
    CAPTURE("dm_modified_memory", xendevicemodel_modified_memory(dm, DOM, 0x1000, 16));
    CAPTURE("dm_modified_memory_bulk", xendevicemodel_modified_memory_bulk(dm, DOM, ext, 2));
    CAPTURE("dm_set_mem_type", xendevicemodel_set_mem_type(dm, DOM, HVMMEM_ram_ro, 0x2000, 4));
    CAPTURE("dm_inject_event",
            xendevicemodel_inject_event(dm, DOM, 1, 14, XEN_DMOP_EVENT_hw_exc, 0x2, 0,
                                        0xdeadb000));
    CAPTURE("dm_inject_msi", xendevicemodel_inject_msi(dm, DOM, 0xfee01000, 0x4041));
    CAPTURE("dm_map_mem_type_to_ioreq_server",
            xendevicemodel_map_mem_type_to_ioreq_server(dm, DOM, 1, HVMMEM_ioreq_server,
                                                        XEN_DMOP_IOREQ_MEM_ACCESS_WRITE));
    CAPTURE("dm_remote_shutdown", xendevicemodel_shutdown(dm, DOM, SHUTDOWN_reboot));
    CAPTURE("dm_relocate_memory", xendevicemodel_relocate_memory(dm, DOM, 8, 0x100, 0x200));
    CAPTURE("dm_pin_memory_cacheattr",
            xendevicemodel_pin_memory_cacheattr(dm, DOM, 0xf0000, 0xf00ff,
                                                XEN_DMOP_MEM_CACHEATTR_WC));
    CAPTURE("dm_nr_vcpus", xendevicemodel_nr_vcpus(dm, DOM, &vcpus), " vcpus=%u", vcpus);
    CAPTURE("dm_restrict", xendevicemodel_restrict(dm, DOM));
    CAPTURE("dm_close", xendevicemodel_close(dm));
}

static void foreignmemory(void)
{
    xenforeignmemory_handle *fm;
    xenforeignmemory_resource_handle *res;
    xen_pfn_t gfns[3] = {0x100, 0xdead, 0x102};
    int err[3] = {1, 1, 1};
    void *addr = NULL;

    CAPTURE_PTR("fmem_open", fm, xenforeignmemory_open(NULL, 0));
    poison();
    cap_begin("fmem_map", "xenforeignmemory_map(fm, 7, PROT_READ|PROT_WRITE, 3, "
                          "{0x100, 0xdead, 0x102}, err)");
    addr = xenforeignmemory_map(fm, DOM, PROT_READ | PROT_WRITE, 3, gfns, err);
    snprintf(result, sizeof(result), "%s err=%d,%d,%d", addr ? "ok" : "NULL", err[0], err[1],
             err[2]);
    cap_end(result);
    CAPTURE("fmem_unmap", xenforeignmemory_unmap(fm, addr, 3));

    gfns[0] = 0xfeff0;
    poison();
    cap_begin("fmem_map_ro", "xenforeignmemory_map(fm, 7, PROT_READ, 1, {0xfeff0}, err)");
    addr = xenforeignmemory_map(fm, DOM, PROT_READ, 1, gfns, err);
    snprintf(result, sizeof(result), "%s err=%d", addr ? "ok" : "NULL", err[0]);
    cap_end(result);
    xenforeignmemory_unmap(fm, addr, 1);

    addr = NULL;
    CAPTURE_PTR("fmem_map_resource", res,
                xenforeignmemory_map_resource(fm, DOM, XENMEM_resource_ioreq_server, 1,
                                              XENMEM_resource_ioreq_server_frame_ioreq(0), 2,
                                              &addr, PROT_READ | PROT_WRITE, 0));
    CAPTURE("fmem_unmap_resource", xenforeignmemory_unmap_resource(fm, res));
    CAPTURE("fmem_restrict", xenforeignmemory_restrict(fm, DOM));
    xenforeignmemory_close(fm);
}

static void evtchn(void)
{
    xenevtchn_handle *ev;

    CAPTURE_PTR("evtchn_open", ev, xenevtchn_open(NULL, 0));
    CAPTURE("evtchn_bind_interdomain", xenevtchn_bind_interdomain(ev, DOM, 3));
    CAPTURE("evtchn_bind_unbound_port", xenevtchn_bind_unbound_port(ev, DOM));
    CAPTURE("evtchn_bind_virq", xenevtchn_bind_virq(ev, 2));
    CAPTURE("evtchn_notify", xenevtchn_notify(ev, 17));
    CAPTURE("evtchn_pending", xenevtchn_pending(ev));
    CAPTURE("evtchn_unmask", xenevtchn_unmask(ev, 17));
    CAPTURE("evtchn_unbind", xenevtchn_unbind(ev, 17));
    CAPTURE("evtchn_restrict", xenevtchn_restrict(ev, DOM));
    CAPTURE("evtchn_close", xenevtchn_close(ev));
}

static void ctrl(void)
{
    xc_interface *xch;
    xen_extraversion_t extra;
    uint64_t value = 0;
    xen_pfn_t extents[2] = {0x3000, 0x3001};
    int pirq = -1;
    xc_dominfo_t info;

    CAPTURE_PTR("xc_open", xch, xc_interface_open(NULL, NULL, 0));
    CAPTURE("xc_version", xc_version(xch, XENVER_version, NULL));
    memset(extra, 0, sizeof(extra));
    CAPTURE("xc_version_extraversion", xc_version(xch, XENVER_extraversion, &extra),
            " extra=%s", extra);
    {
        xen_capabilities_info_t caps;
        memset(caps, 0, sizeof(caps));
        CAPTURE("xc_version_capabilities", xc_version(xch, XENVER_capabilities, &caps), " caps=%.100s",
                caps);
    }
    CAPTURE("xc_hvm_param_get", xc_hvm_param_get(xch, DOM, HVM_PARAM_STORE_EVTCHN, &value),
            " value=%#llx", (unsigned long long)value);
    CAPTURE("xc_hvm_param_set",
            xc_hvm_param_set(xch, DOM, HVM_PARAM_PAE_ENABLED, 0x0123456789abcdefULL));
    CAPTURE("xc_populate_physmap", xc_domain_populate_physmap_exact(xch, DOM, 2, 0, 0, extents));
    CAPTURE("xc_populate_physmap_order9",
            xc_domain_populate_physmap_exact(xch, DOM, 1, 9, 0, extents));
    CAPTURE("xc_add_to_physmap",
            xc_domain_add_to_physmap(xch, DOM, XENMAPSPACE_gmfn, 0x4000, 0x5000));
    CAPTURE("xc_decrease_reservation",
            xc_domain_decrease_reservation_exact(xch, DOM, 2, 0, extents));
    CAPTURE("xc_physdev_map_pirq", xc_physdev_map_pirq(xch, DOM, 16, &pirq), " pirq=%d", pirq);
    pirq = -1;
    CAPTURE("xc_physdev_map_pirq_msi",
            xc_physdev_map_pirq_msi(xch, DOM, -1, &pirq, 0, 0x0310, 1, 0xfe001000),
            " pirq=%d", pirq);
    CAPTURE("xc_physdev_unmap_pirq", xc_physdev_unmap_pirq(xch, DOM, 55));
    CAPTURE("xc_bind_pt_pci_irq", xc_domain_bind_pt_pci_irq(xch, DOM, 55, 0, 3, 0));
    CAPTURE("xc_bind_pt_isa_irq", xc_domain_bind_pt_isa_irq(xch, DOM, 9));
    CAPTURE("xc_unbind_pt_irq",
            xc_domain_unbind_pt_irq(xch, DOM, 55, PT_IRQ_TYPE_PCI, 0, 3, 0, 0));
    CAPTURE("xc_update_msi_irq",
            xc_domain_update_msi_irq(xch, DOM, 0x41, 55, 0x5000, 0xfe002000));
    CAPTURE("xc_unbind_msi_irq", xc_domain_unbind_msi_irq(xch, DOM, 0x41, 55, 0x5000));
    CAPTURE("xc_memory_mapping_add",
            xc_domain_memory_mapping(xch, DOM, 0xf0000, 0xfe000, 16, DPCI_ADD_MAPPING));
    CAPTURE("xc_memory_mapping_remove",
            xc_domain_memory_mapping(xch, DOM, 0xf0000, 0xfe000, 16, DPCI_REMOVE_MAPPING));
    CAPTURE("xc_ioport_mapping_add",
            xc_domain_ioport_mapping(xch, DOM, 0xc000, 0xe000, 0x40, DPCI_ADD_MAPPING));
    CAPTURE("xc_iomem_permission", xc_domain_iomem_permission(xch, DOM, 0xfe000, 16, 1));
    CAPTURE("xc_ioport_permission", xc_domain_ioport_permission(xch, DOM, 0xe000, 0x40, 1));
    CAPTURE("xc_irq_permission", xc_domain_irq_permission(xch, DOM, 55, 1));
    memset(&info, 0, sizeof(info));
    CAPTURE("xc_getdomaininfo", xc_domain_getinfo(xch, DOM, 1, &info),
            " domid=%u hvm=%u vcpus=%u max_vcpu_id=%u", info.domid, info.hvm, info.nr_online_vcpus,
            info.max_vcpu_id);
    xc_interface_close(xch);
}

int main(void)
{
    cap_begin = (void (*)(const char *, const char *))dlsym(RTLD_DEFAULT, "xencapture_begin");
    cap_end = (void (*)(const char *))dlsym(RTLD_DEFAULT, "xencapture_end");
    if (!cap_begin || !cap_end) {
        fprintf(stderr, "xencapture driver: run with LD_PRELOAD=libxencapture.so\n");
        return 2;
    }
    const char *p = getenv("XENCAPTURE_POISON");
    poison_byte = p ? (int)strtol(p, NULL, 0) : 0;
    if (poison_byte)
        mallopt(M_PERTURB, poison_byte);
    devicemodel();
    foreignmemory();
    evtchn();
    ctrl();
    return 0;
}

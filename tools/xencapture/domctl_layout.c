/*
 * domctl_layout prints, as JSON, the layout of every domctl structure godm
 * issues (hyp/domctl) in the public headers it is compiled against: sizes,
 * member offsets and sizes, and the command numbers and constants godm
 * sends. It needs nothing but a Xen public header tree (no libxenctrl),
 * so it can be built against any release's headers:
 *
 *   cc -I DIR -o domctl_layout domctl_layout.c && ./domctl_layout 4.NN
 *
 * where DIR holds xen/domctl.h (a distribution's /usr/include, or a Xen
 * tree's xen/include/public copied to DIR/xen). domctl-layouts.sh writes
 * its output per release to hyp/domctl/testdata/layout/xen-4.NN.json; the
 * layout test in hyp/domctl checks every codec against those files.
 *
 * Members added by a release are printed only when the release has them
 * (selected by XEN_DOMCTL_INTERFACE_VERSION), so a missing member shows as
 * a missing key rather than a build failure.
 */
#define __XEN_TOOLS__ 1
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <xen/domctl.h>

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

#define S(name, type) struct_begin(name, sizeof(type), _Alignof(type))
#define F(type, f) field(#f, offsetof(type, f), sizeof(((type *)0)->f))
#define E() printf("}}")

static int first_const = 1;
static void constant(const char *name, unsigned long long v)
{
    printf("%s\n    \"%s\": %llu", first_const ? "" : ",", name, v);
    first_const = 0;
}
#define C(x) constant(#x, (unsigned long long)(x))

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: domctl_layout RELEASE (the Xen release of the headers, e.g. 4.20)\n");
        return 2;
    }
    printf("{\n  \"xen\": \"%s\",\n  \"interface_version\": %u,\n  \"structs\": {", argv[1],
           (unsigned)XEN_DOMCTL_INTERFACE_VERSION);

#define T struct xen_domctl
    S("xen_domctl", T);
    F(T, cmd); F(T, interface_version); F(T, domain); F(T, u);
#if XEN_DOMCTL_INTERFACE_VERSION >= 0x14
    F(T, _pad);
#endif
    E();
#undef T

#define T struct xen_domctl_getdomaininfo
    S("xen_domctl_getdomaininfo", T);
    F(T, domain); F(T, flags); F(T, tot_pages); F(T, max_pages); F(T, outstanding_pages);
    F(T, shr_pages); F(T, paged_pages); F(T, shared_info_frame); F(T, cpu_time);
    F(T, nr_online_vcpus); F(T, max_vcpu_id); F(T, ssidref); F(T, handle); F(T, cpupool);
    F(T, arch_config);
#if XEN_DOMCTL_INTERFACE_VERSION >= 0x14
    F(T, pad1); F(T, gpaddr_bits); F(T, pad2);
#endif
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
    F(T, pirq); F(T, allow_access);
#if XEN_DOMCTL_INTERFACE_VERSION >= 0x14
    F(T, pad);
#endif
    E();
#undef T

#define T struct xen_domctl_assign_device
    S("xen_domctl_assign_device", T);
    F(T, dev); F(T, flags); F(T, u); F(T, u.pci.machine_sbdf); F(T, u.dt.size); F(T, u.dt.path);
    E();
#undef T

    printf("\n  },\n  \"constants\": {");
    C(XEN_DOMCTL_INTERFACE_VERSION);
    C(XEN_DOMCTL_getdomaininfo); C(XEN_DOMCTL_irq_permission); C(XEN_DOMCTL_iomem_permission);
    C(XEN_DOMCTL_ioport_permission); C(XEN_DOMCTL_assign_device); C(XEN_DOMCTL_bind_pt_irq);
    C(XEN_DOMCTL_memory_mapping); C(XEN_DOMCTL_ioport_mapping); C(XEN_DOMCTL_test_assign_device);
    C(XEN_DOMCTL_deassign_device); C(XEN_DOMCTL_unbind_pt_irq);
    C(XEN_DOMCTL_DEV_PCI); C(XEN_DOMCTL_DEV_RDM_RELAXED);
    C(DPCI_ADD_MAPPING); C(DPCI_REMOVE_MAPPING);
    C(PT_IRQ_TYPE_PCI); C(PT_IRQ_TYPE_ISA); C(PT_IRQ_TYPE_MSI); C(PT_IRQ_TYPE_MSI_TRANSLATE);
    C(XEN_DOMINF_dying); C(XEN_DOMINF_hvm_guest); C(XEN_DOMINF_shutdown); C(XEN_DOMINF_paused);
    C(XEN_DOMINF_blocked); C(XEN_DOMINF_running); C(XEN_DOMINF_debugged); C(XEN_DOMINF_xs_domain);
    C(XEN_DOMINF_hap); C(XEN_DOMINF_shutdownmask); C(XEN_DOMINF_shutdownshift);
    C(XEN_DOMCTL_VMSI_X86_DEST_ID_MASK); C(XEN_DOMCTL_VMSI_X86_RH_MASK);
    C(XEN_DOMCTL_VMSI_X86_DM_MASK); C(XEN_DOMCTL_VMSI_X86_DELIV_MASK);
    C(XEN_DOMCTL_VMSI_X86_TRIG_MASK); C(XEN_DOMCTL_VMSI_X86_UNMASKED);
    printf("\n  }\n}\n");
    return 0;
}

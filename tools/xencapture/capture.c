/*
 * xencapture: an LD_PRELOAD library that stands in for the dom0 kernel's
 * Xen device files (/dev/xen/privcmd, hypercall, evtchn, xenbus) and
 * records, as golden JSON fixtures, every device-file event the reference
 * C libraries (libxendevicemodel, libxenforeignmemory, libxenevtchn,
 * libxencall, libxenctrl) produce for one library call.
 *
 * open of /dev/xen/<dev> hands back a memfd; ioctl, mmap, munmap, read,
 * write and close on those fds are recorded (while a capture is active) and
 * answered plausibly so the libraries proceed. A driver program brackets
 * each library call with xencapture_begin(name, call) and
 * xencapture_end(result) (found with dlsym), which writes
 * $XENCAPTURE_OUT/<name>.json. The format is documented in
 * hyp/internal/golden/doc.go. Pointer values never appear in the output:
 * pointer fields are zeroed and described symbolically.
 *
 * Layouts and numbers come from the installed headers (Debian libxen-dev,
 * Xen 4.17) and Linux's include/uapi/xen/privcmd.h and evtchn.h.
 */
#define _GNU_SOURCE
#define __XEN_TOOLS__ 1
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <xenctrl.h>
#include <xen/xen.h>
#include <xen/domctl.h>
#include <xen/sysctl.h>
#include <xen/memory.h>
#include <xen/physdev.h>
#include <xen/version.h>
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/params.h>
#include <xen/hvm/dm_op.h>
#include <xen/sys/privcmd.h>
#include <xen/sys/evtchn.h>

#define EXPORT __attribute__((visibility("default")))

/* The low bits of a memory_op command select the sub-op; the rest carry a
 * continuation extent (xen/common/memory.c, MEMOP_EXTENT_SHIFT). */
#define MEMOP_CMD_MASK 0x3f

/* ---- real functions ---------------------------------------------------- */

static int (*real_open)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_ioctl)(int, unsigned long, ...);
static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
static int (*real_munmap)(void *, size_t);
static ssize_t (*real_read)(int, void *, size_t);
static ssize_t (*real_write)(int, const void *, size_t);
static int (*real_close)(int);

static void resolve(void)
{
    if (real_open)
        return;
    real_openat = dlsym(RTLD_NEXT, "openat");
    real_ioctl = dlsym(RTLD_NEXT, "ioctl");
    real_mmap = dlsym(RTLD_NEXT, "mmap");
    real_munmap = dlsym(RTLD_NEXT, "munmap");
    real_read = dlsym(RTLD_NEXT, "read");
    real_write = dlsym(RTLD_NEXT, "write");
    real_close = dlsym(RTLD_NEXT, "close");
    real_open = dlsym(RTLD_NEXT, "open");
}

/* ---- device fds and mappings ------------------------------------------- */

#define MAXFD 1024
static const char *fd_dev[MAXFD]; /* device name, or NULL */

struct region {
    uintptr_t base;
    size_t len;
    const char *dev;
    off_t off;
};
#define MAXREG 256
static struct region regions[MAXREG];

static const char *dev_of(int fd)
{
    return (fd >= 0 && fd < MAXFD) ? fd_dev[fd] : NULL;
}

static const char *dev_name(const char *path)
{
    static const char *const devs[] = {"privcmd", "hypercall", "evtchn", "xenbus"};
    const char *pfx = "/dev/xen/";
    if (!path || strncmp(path, pfx, strlen(pfx)) != 0)
        return NULL;
    for (size_t i = 0; i < sizeof(devs) / sizeof(devs[0]); i++)
        if (strcmp(path + strlen(pfx), devs[i]) == 0)
            return devs[i];
    return NULL;
}

/* ---- the event log ------------------------------------------------------ */

static int active;
static char *out;
static size_t outlen, outcap;
static int nevents;

static void emit(const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(out + outlen, outcap - outlen, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < outcap - outlen) {
            outlen += n;
            return;
        }
        outcap = outcap ? outcap * 2 : 65536;
        out = realloc(out, outcap);
        if (!out)
            abort();
    }
}

static void emit_str(const char *s)
{
    emit("\"");
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            emit("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            emit("\\u%04x", *s);
        else
            emit("%c", *s);
    }
    emit("\"");
}

static void emit_hex(const unsigned char *b, size_t n)
{
    emit("\"");
    for (size_t i = 0; i < n; i++) {
        if (i && i % 4 == 0)
            emit(" ");
        emit("%02x", b[i]);
    }
    emit("\"");
}

static void event_start(const char *kind, const char *dev)
{
    emit("%s\n    {\"kind\": \"%s\", \"dev\": \"%s\"", nevents ? "," : "", kind, dev);
    nevents++;
}

/* ---- buffers reachable from an ioctl argument -------------------------- */

struct ptr {
    size_t off;
    int buf;
    const char *region;
    long long region_off;
};

struct buf {
    char name[96];
    unsigned char *addr; /* live memory */
    size_t len;
    unsigned char *in;    /* copy before the call, NULL: output only */
    unsigned char *undef; /* per byte: nonzero if undefined */
    int nptrs;
    struct ptr ptrs[16];
};

#define MAXBUF 64
static struct buf bufs[MAXBUF + 1]; /* [0] is the argument struct */
static int nbufs;                   /* buffers after the argument */

static struct buf *add_buf(const char *name, void *addr, size_t len, int record_in)
{
    if (nbufs >= MAXBUF)
        abort();
    struct buf *b = &bufs[1 + nbufs++];
    memset(b, 0, sizeof(*b));
    snprintf(b->name, sizeof(b->name), "%s", name);
    b->addr = addr;
    b->len = addr ? len : 0;
    b->undef = calloc(b->len + 1, 1);
    if (record_in && b->len) {
        b->in = malloc(b->len);
        memcpy(b->in, addr, b->len);
    }
    return b;
}

static void add_undef(struct buf *b, size_t off, size_t len)
{
    if (off + len <= b->len)
        memset(b->undef + off, 1, len);
}

/*
 * Two passes find the bytes a library leaves uninitialised (struct padding,
 * unused union space): the driver runs twice with different stack and heap
 * poison (XENCAPTURE_PASS=1, then 2). Pass 1 writes every buffer's bytes to
 * <name>.bin; pass 2 compares with them and marks differing bytes undefined.
 */
static int pass, failed;
static char cur_name[128];
static unsigned char *side;
static size_t sidelen, sidecap, sidepos;

static void side_put(const void *p, size_t n)
{
    while (sidelen + n > sidecap) {
        sidecap = sidecap ? sidecap * 2 : 65536;
        side = realloc(side, sidecap);
        if (!side)
            abort();
    }
    if (p)
        memcpy(side + sidelen, p, n);
    else
        memset(side + sidelen, 0, n);
    sidelen += n;
}

static const unsigned char *side_get(size_t n)
{
    if (sidepos + n > sidelen) {
        fprintf(stderr, "xencapture: pass 2 diverged from pass 1\n");
        exit(1);
    }
    sidepos += n;
    return side + sidepos - n;
}

/* compare_pass records (pass 1) or compares (pass 2) a buffer's bytes. */
static void compare_pass(struct buf *b)
{
    uint32_t n = (uint32_t)b->len;
    if (pass == 1) {
        side_put(&n, 4);
        side_put(b->in, n);
        side_put(b->addr, n);
    } else if (pass == 2) {
        uint32_t m;
        memcpy(&m, side_get(4), 4);
        if (m != n) {
            fprintf(stderr, "xencapture: %s: %u bytes in pass 1, %u in pass 2\n", b->name, m, n);
            exit(1);
        }
        const unsigned char *in = side_get(n), *now = side_get(n);
        unsigned char *isptr = calloc(n + 1, 1);
        for (int i = 0; i < b->nptrs; i++)
            memset(isptr + b->ptrs[i].off, 1, 8);
        for (size_t i = 0; i < n; i++) {
            if (isptr[i] || b->undef[i])
                continue;
            if ((b->in && b->in[i] != in[i]) || b->addr[i] != now[i]) {
                fprintf(stderr,
                        "xencapture: %s: %s byte %zu differs between passes but is not "
                        "declared undefined\n",
                        cur_name, b->name, i);
                failed = 1;
            }
        }
        free(isptr);
    }
}

/* classify fills region and region_off for pointer value v. */
static void classify(struct ptr *p, uintptr_t v)
{
    p->region_off = 0;
    if (!v) {
        p->region = "null";
        return;
    }
    for (int i = 0; i < MAXREG; i++) {
        struct region *r = &regions[i];
        if (r->len && v >= r->base && v < r->base + r->len) {
            if (strcmp(r->dev, "hypercall") == 0) {
                p->region = "hypercall";
                p->region_off = (long long)(v - r->base);
            } else {
                p->region = "mmap";
                p->region_off = (long long)(v - r->base);
            }
            return;
        }
    }
    p->region = "user";
}

/*
 * add_ptr records the pointer field at off in b (the live struct), and
 * returns the target address. The target buffer index is set by the caller
 * through set_target (or stays -1).
 */
static struct ptr *add_ptr(struct buf *b, size_t off)
{
    if (b->nptrs >= 16 || off + 8 > b->len)
        abort();
    struct ptr *p = &b->ptrs[b->nptrs++];
    uint64_t v;
    memcpy(&v, b->addr + off, 8);
    p->off = off;
    p->buf = -1;
    classify(p, (uintptr_t)v);
    return p;
}

static void *ptr_val(struct buf *b, size_t off)
{
    uint64_t v;
    memcpy(&v, b->addr + off, 8);
    return (void *)(uintptr_t)v;
}

/* follow records that b's pointer at off points to len bytes named name. */
static struct buf *follow(struct buf *b, size_t off, const char *name, size_t len, int record_in)
{
    struct ptr *p = add_ptr(b, off);
    void *t = ptr_val(b, off);
    if (!t)
        return NULL;
    int idx = nbufs;
    struct buf *nb = add_buf(name, t, len, record_in);
    p->buf = idx;
    return nb;
}

/* masked copies src to dst with pointer fields and undefined bytes zeroed. */
static void masked(const struct buf *b, const unsigned char *src, unsigned char *dst)
{
    memcpy(dst, src, b->len);
    for (int i = 0; i < b->nptrs; i++)
        memset(dst + b->ptrs[i].off, 0, 8);
    for (size_t i = 0; i < b->len; i++)
        if (b->undef[i])
            dst[i] = 0;
}

static void emit_buf(struct buf *b)
{
    compare_pass(b);
    unsigned char *tmp = malloc(b->len + 1);
    unsigned char *in = malloc(b->len + 1);
    emit("{\"name\": ");
    emit_str(b->name);
    if (b->in && b->len) {
        masked(b, b->in, in);
        emit(", \"hex\": ");
        emit_hex(in, b->len);
    }
    emit(", \"len\": %zu", b->len);
    if (b->len) {
        masked(b, b->addr, tmp);
        if (!b->in || memcmp(in, tmp, b->len) != 0) {
            emit(", \"out\": ");
            emit_hex(tmp, b->len);
        }
    }
    int first = 1;
    for (size_t i = 0; i < b->len;) {
        if (!b->undef[i]) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < b->len && b->undef[j])
            j++;
        emit("%s[%zu, %zu]", first ? ", \"undef\": [" : ", ", i, j - i);
        first = 0;
        i = j;
    }
    if (!first)
        emit("]");
    if (b->nptrs) {
        emit(", \"ptrs\": [");
        for (int i = 0; i < b->nptrs; i++) {
            const struct ptr *p = &b->ptrs[i];
            emit("%s{\"off\": %zu, \"buf\": %d, \"region\": \"%s\"", i ? ", " : "", p->off, p->buf,
                 p->region);
            if (p->region_off)
                emit(", \"region_off\": %lld", p->region_off);
            emit("}");
        }
        emit("]");
    }
    emit("}");
    free(tmp);
    free(in);
}

static void free_bufs(void)
{
    for (int i = 0; i <= nbufs; i++) {
        free(bufs[i].in);
        free(bufs[i].undef);
        bufs[i].in = NULL;
        bufs[i].undef = NULL;
    }
    nbufs = 0;
}

/* ---- hypercall argument shapes ----------------------------------------- */

/* ---- bytes the libraries leave undefined --------------------------------- */

/*
 * A field list: offset and size of each member a struct defines. Bytes of a
 * struct outside every listed member are compiler padding (or, for the
 * members named in comments, reserved fields the library does not
 * initialise and Xen ignores): mark_gaps marks them undefined, so that
 * fixtures are deterministic and comparisons ignore them. Pass 2 checks
 * that every byte differing between the poisoned passes is covered.
 */
struct span {
    size_t off, size;
};
#define FLD(type, f) {offsetof(type, f), sizeof(((type *)0)->f)}
#define END {0, 0}

static void mark_gaps(struct buf *b, size_t base, size_t total, const struct span *f)
{
    if (!b || base + total > b->len)
        return;
    unsigned char *cov = calloc(total + 1, 1);
    for (; f->size; f++)
        if (f->off + f->size <= total)
            memset(cov + f->off, 1, f->size);
    for (size_t i = 0; i < total; i++)
        if (!cov[i])
            b->undef[base + i] = 1;
    free(cov);
}

#define GAPS(b, base, type, ...)                                                                   \
    do {                                                                                           \
        static const struct span f_[] = {__VA_ARGS__, END};                                        \
        mark_gaps(b, base, sizeof(type), f_);                                                      \
    } while (0)

/* dm_op_gaps marks the unused bytes of a struct xen_dm_op. */
static void dm_op_gaps(struct buf *b)
{
    typedef struct xen_dm_op D;
    if (!b || b->len < sizeof(D))
        return;
    D *d = (void *)b->addr;
    size_t u = offsetof(D, u);
    static const struct span hdr[] = {FLD(D, op), FLD(D, pad), {offsetof(D, u), sizeof(d->u)}, END};
    mark_gaps(b, 0, sizeof(D), hdr);
#define SUB(member, type, ...)                                                                     \
    do {                                                                                           \
        static const struct span f_[] = {__VA_ARGS__, END};                                        \
        (void)sizeof(d->u.member);                                                                 \
        mark_gaps(b, u, sizeof(type), f_);                                                         \
        if (sizeof(type) < sizeof(d->u))                                                           \
            add_undef(b, u + sizeof(type), sizeof(d->u) - sizeof(type));                           \
    } while (0)
    switch (d->op) {
    case XEN_DMOP_create_ioreq_server: {
        typedef struct xen_dm_op_create_ioreq_server T;
        SUB(create_ioreq_server, T, FLD(T, handle_bufioreq), FLD(T, pad), FLD(T, id));
        break;
    }
    case XEN_DMOP_get_ioreq_server_info: {
        typedef struct xen_dm_op_get_ioreq_server_info T;
        SUB(get_ioreq_server_info, T, FLD(T, id), FLD(T, flags), FLD(T, bufioreq_port),
            FLD(T, ioreq_gfn), FLD(T, bufioreq_gfn));
        break;
    }
    case XEN_DMOP_map_io_range_to_ioreq_server:
    case XEN_DMOP_unmap_io_range_from_ioreq_server: {
        typedef struct xen_dm_op_ioreq_server_range T;
        SUB(map_io_range_to_ioreq_server, T, FLD(T, id), FLD(T, pad), FLD(T, type),
            FLD(T, start), FLD(T, end));
        break;
    }
    case XEN_DMOP_set_ioreq_server_state: {
        typedef struct xen_dm_op_set_ioreq_server_state T;
        SUB(set_ioreq_server_state, T, FLD(T, id), FLD(T, enabled), FLD(T, pad));
        break;
    }
    case XEN_DMOP_destroy_ioreq_server: {
        typedef struct xen_dm_op_destroy_ioreq_server T;
        SUB(destroy_ioreq_server, T, FLD(T, id), FLD(T, pad));
        break;
    }
    case XEN_DMOP_track_dirty_vram: {
        typedef struct xen_dm_op_track_dirty_vram T;
        SUB(track_dirty_vram, T, FLD(T, nr), FLD(T, pad), FLD(T, first_pfn));
        break;
    }
    case XEN_DMOP_set_pci_intx_level: {
        typedef struct xen_dm_op_set_pci_intx_level T;
        SUB(set_pci_intx_level, T, FLD(T, domain), FLD(T, bus), FLD(T, device), FLD(T, intx),
            FLD(T, level));
        break;
    }
    case XEN_DMOP_set_isa_irq_level: {
        typedef struct xen_dm_op_set_isa_irq_level T;
        SUB(set_isa_irq_level, T, FLD(T, isa_irq), FLD(T, level));
        break;
    }
    case XEN_DMOP_set_pci_link_route: {
        typedef struct xen_dm_op_set_pci_link_route T;
        SUB(set_pci_link_route, T, FLD(T, link), FLD(T, isa_irq));
        break;
    }
    case XEN_DMOP_modified_memory: {
        typedef struct xen_dm_op_modified_memory T;
        SUB(modified_memory, T, FLD(T, nr_extents), FLD(T, opaque));
        break;
    }
    case XEN_DMOP_set_mem_type: {
        typedef struct xen_dm_op_set_mem_type T;
        SUB(set_mem_type, T, FLD(T, nr), FLD(T, mem_type), FLD(T, pad), FLD(T, first_pfn));
        break;
    }
    case XEN_DMOP_inject_event: {
        typedef struct xen_dm_op_inject_event T;
        SUB(inject_event, T, FLD(T, vcpuid), FLD(T, vector), FLD(T, type), FLD(T, insn_len),
            FLD(T, pad0), FLD(T, error_code), FLD(T, pad1), FLD(T, cr2));
        break;
    }
    case XEN_DMOP_inject_msi: {
        typedef struct xen_dm_op_inject_msi T;
        SUB(inject_msi, T, FLD(T, data), FLD(T, pad), FLD(T, addr));
        break;
    }
    case XEN_DMOP_map_mem_type_to_ioreq_server: {
        typedef struct xen_dm_op_map_mem_type_to_ioreq_server T;
        SUB(map_mem_type_to_ioreq_server, T, FLD(T, id), FLD(T, type), FLD(T, flags),
            FLD(T, opaque));
        break;
    }
    case XEN_DMOP_remote_shutdown: {
        typedef struct xen_dm_op_remote_shutdown T;
        SUB(remote_shutdown, T, FLD(T, reason));
        break;
    }
    case XEN_DMOP_relocate_memory: {
        typedef struct xen_dm_op_relocate_memory T;
        SUB(relocate_memory, T, FLD(T, size), FLD(T, pad), FLD(T, src_gfn), FLD(T, dst_gfn));
        break;
    }
    case XEN_DMOP_pin_memory_cacheattr: {
        typedef struct xen_dm_op_pin_memory_cacheattr T;
        SUB(pin_memory_cacheattr, T, FLD(T, start), FLD(T, end), FLD(T, type), FLD(T, pad));
        break;
    }
    case XEN_DMOP_set_irq_level: {
        typedef struct xen_dm_op_set_irq_level T;
        SUB(set_irq_level, T, FLD(T, irq), FLD(T, level), FLD(T, pad));
        break;
    }
    case XEN_DMOP_nr_vcpus: {
        typedef struct xen_dm_op_nr_vcpus T;
        SUB(nr_vcpus, T, FLD(T, vcpus));
        break;
    }
    }
#undef SUB
}

/* domctl_gaps marks the unused bytes of a struct xen_domctl. */
static void domctl_gaps(struct buf *b)
{
    typedef struct xen_domctl D;
    if (!b || b->len < sizeof(D))
        return;
    D *d = (void *)b->addr;
    size_t u = offsetof(D, u);
    /* _pad is left uninitialised by libxenctrl's DECLARE_DOMCTL; Xen ignores it. */
    static const struct span hdr[] = {FLD(D, cmd), FLD(D, interface_version), FLD(D, domain),
                                      {offsetof(D, u), sizeof(d->u)}, END};
    mark_gaps(b, 0, sizeof(D), hdr);
    size_t used = sizeof(d->u); /* unknown command: assume all defined */
#define SUB(type, ...)                                                                             \
    do {                                                                                           \
        static const struct span f_[] = {__VA_ARGS__, END};                                        \
        mark_gaps(b, u, sizeof(type), f_);                                                         \
        used = sizeof(type);                                                                       \
    } while (0)
    switch (d->cmd) {
    case XEN_DOMCTL_getdomaininfo:
        /* All OUT: the library passes whatever was on its stack. */
        used = 0;
        break;
    case XEN_DOMCTL_irq_permission: {
        typedef struct xen_domctl_irq_permission T;
        SUB(T, FLD(T, pirq), FLD(T, allow_access));
        break;
    }
    case XEN_DOMCTL_iomem_permission: {
        typedef struct xen_domctl_iomem_permission T;
        SUB(T, FLD(T, first_mfn), FLD(T, nr_mfns), FLD(T, allow_access));
        break;
    }
    case XEN_DOMCTL_ioport_permission: {
        typedef struct xen_domctl_ioport_permission T;
        SUB(T, FLD(T, first_port), FLD(T, nr_ports), FLD(T, allow_access));
        break;
    }
    case XEN_DOMCTL_memory_mapping: {
        typedef struct xen_domctl_memory_mapping T;
        /* padding is not always initialised by libxenctrl; Xen ignores it. */
        SUB(T, FLD(T, first_gfn), FLD(T, first_mfn), FLD(T, nr_mfns), FLD(T, add_mapping));
        break;
    }
    case XEN_DOMCTL_ioport_mapping: {
        typedef struct xen_domctl_ioport_mapping T;
        SUB(T, FLD(T, first_gport), FLD(T, first_mport), FLD(T, nr_ports), FLD(T, add_mapping));
        break;
    }
    case XEN_DOMCTL_bind_pt_irq:
    case XEN_DOMCTL_unbind_pt_irq: {
        typedef struct xen_domctl_bind_pt_irq T;
        T *t = &d->u.bind_pt_irq;
        switch (t->irq_type) {
        case PT_IRQ_TYPE_ISA:
            SUB(T, FLD(T, machine_irq), FLD(T, irq_type), FLD(T, u.isa.isa_irq));
            break;
        case PT_IRQ_TYPE_PCI:
        case PT_IRQ_TYPE_MSI_TRANSLATE:
            SUB(T, FLD(T, machine_irq), FLD(T, irq_type), FLD(T, u.pci.bus), FLD(T, u.pci.device),
                FLD(T, u.pci.intx));
            break;
        case PT_IRQ_TYPE_MSI:
            SUB(T, FLD(T, machine_irq), FLD(T, irq_type), FLD(T, u.msi.gvec), FLD(T, u.msi.gflags),
                FLD(T, u.msi.gtable));
            break;
        default:
            SUB(T, FLD(T, machine_irq), FLD(T, irq_type), FLD(T, u));
        }
        break;
    }
    }
#undef SUB
    if (used < sizeof(d->u))
        add_undef(b, u + used, sizeof(d->u) - used);
}

static size_t xen_version_len(uint64_t cmd)
{
    switch (cmd) {
    case XENVER_extraversion: return sizeof(xen_extraversion_t);
    case XENVER_compile_info: return sizeof(xen_compile_info_t);
    case XENVER_capabilities: return sizeof(xen_capabilities_info_t);
    case XENVER_changeset: return sizeof(xen_changeset_info_t);
    case XENVER_platform_parameters: return sizeof(xen_platform_parameters_t);
    case XENVER_get_features: return sizeof(xen_feature_info_t);
    case XENVER_guest_handle: return sizeof(xen_domain_handle_t);
    case XENVER_commandline: return sizeof(xen_commandline_t);
    }
    return 0;
}

static void shape_call(struct buf *a, size_t opoff, size_t argoff, const char *pfx);

/*
 * shape_hcall records the pointer arguments of one hypercall whose op is
 * at opoff of a and whose 8-byte arguments start at argoff (a
 * privcmd_hypercall or a multicall_entry).
 */
static void shape_hcall(struct buf *a, size_t opoff, size_t argoff, const char *pfx)
{
    uint64_t op, arg[6];
    struct buf *b;
    char name[96];
    memcpy(&op, a->addr + opoff, 8);
    memcpy(arg, a->addr + argoff, sizeof(arg));
#define A(i) (argoff + 8 * (i))
#define NAME(s) (snprintf(name, sizeof(name), "%s%s", pfx, s), name)
    switch (op) {
    case __HYPERVISOR_xen_version:
        follow(a, A(1), NAME("xen_version arg"), xen_version_len(arg[0]), 1);
        break;
    case __HYPERVISOR_memory_op:
        switch (arg[0] & MEMOP_CMD_MASK) {
        case XENMEM_increase_reservation:
        case XENMEM_decrease_reservation:
        case XENMEM_populate_physmap:
            b = follow(a, A(1), NAME("xen_memory_reservation"),
                       sizeof(struct xen_memory_reservation), 1);
            GAPS(b, 0, struct xen_memory_reservation,
                 FLD(struct xen_memory_reservation, extent_start),
                 FLD(struct xen_memory_reservation, nr_extents),
                 FLD(struct xen_memory_reservation, extent_order),
                 FLD(struct xen_memory_reservation, mem_flags),
                 FLD(struct xen_memory_reservation, domid));
            if (b) {
                struct xen_memory_reservation *r = (void *)b->addr;
                follow(b, offsetof(struct xen_memory_reservation, extent_start),
                       NAME("extent_start"), r->nr_extents * sizeof(xen_pfn_t), 1);
            }
            break;
        case XENMEM_add_to_physmap:
            follow(a, A(1), NAME("xen_add_to_physmap"), sizeof(struct xen_add_to_physmap), 1);
            break;
        default:
            follow(a, A(1), NAME("memory_op arg (length unknown)"), 0, 1);
        }
        break;
    case __HYPERVISOR_hvm_op:
        switch (arg[0]) {
        case HVMOP_set_param:
        case HVMOP_get_param:
            follow(a, A(1), NAME("xen_hvm_param"), sizeof(struct xen_hvm_param), 1);
            break;
        default:
            follow(a, A(1), NAME("hvm_op arg (length unknown)"), 0, 1);
        }
        break;
    case __HYPERVISOR_physdev_op:
        switch (arg[0]) {
        case PHYSDEVOP_map_pirq:
            b = follow(a, A(1), NAME("physdev_map_pirq"), sizeof(struct physdev_map_pirq), 1);
            GAPS(b, 0, struct physdev_map_pirq, FLD(struct physdev_map_pirq, domid),
                 FLD(struct physdev_map_pirq, type), FLD(struct physdev_map_pirq, index),
                 FLD(struct physdev_map_pirq, pirq), FLD(struct physdev_map_pirq, bus),
                 FLD(struct physdev_map_pirq, devfn), FLD(struct physdev_map_pirq, entry_nr),
                 FLD(struct physdev_map_pirq, table_base));
            break;
        case PHYSDEVOP_unmap_pirq:
            b = follow(a, A(1), NAME("physdev_unmap_pirq"), sizeof(struct physdev_unmap_pirq), 1);
            GAPS(b, 0, struct physdev_unmap_pirq, FLD(struct physdev_unmap_pirq, domid),
                 FLD(struct physdev_unmap_pirq, pirq));
            break;
        default:
            follow(a, A(1), NAME("physdev_op arg (length unknown)"), 0, 1);
        }
        break;
    case __HYPERVISOR_domctl:
        domctl_gaps(follow(a, A(0), NAME("xen_domctl"), sizeof(struct xen_domctl), 1));
        break;
    case __HYPERVISOR_sysctl:
        follow(a, A(0), NAME("xen_sysctl"), sizeof(struct xen_sysctl), 1);
        break;
    case __HYPERVISOR_dm_op:
        b = follow(a, A(2), NAME("xen_dm_op_buf array"), arg[1] * sizeof(struct xen_dm_op_buf), 1);
        for (uint64_t i = 0; b && i < arg[1]; i++) {
            struct xen_dm_op_buf *d = (void *)(b->addr + i * sizeof(*d));
            snprintf(name, sizeof(name), "%sdm_op_buf[%llu]", pfx, (unsigned long long)i);
            follow(b, i * sizeof(*d), name, d->size, 1);
        }
        break;
    case __HYPERVISOR_multicall:
        b = follow(a, A(0), NAME("multicall_entry array"), arg[1] * sizeof(multicall_entry_t), 1);
        for (uint64_t i = 0; b && i < arg[1]; i++) {
            char sub[64];
            snprintf(sub, sizeof(sub), "%smulticall[%llu] ", pfx, (unsigned long long)i);
            shape_call(b, i * sizeof(multicall_entry_t), i * sizeof(multicall_entry_t) + 16, sub);
        }
        break;
    }
#undef A
#undef NAME
}

static void shape_call(struct buf *a, size_t opoff, size_t argoff, const char *pfx)
{
    shape_hcall(a, opoff, argoff, pfx);
}

/* ---- fake kernel answers ----------------------------------------------- */

#define FAKE_PORT_INTERDOMAIN 17
#define FAKE_PORT_UNBOUND 18
#define FAKE_SERVER_ID 1
#define FAKE_PIRQ 55

static long answer_dm_op(privcmd_dm_op_t *op)
{
    if (op->num == 0)
        return 0;
    privcmd_dm_op_buf_t *ub = (privcmd_dm_op_buf_t *)op->ubufs;
    if (ub[0].size < 8)
        return -EINVAL;
    struct xen_dm_op *dm = ub[0].uptr;
    switch (dm->op) {
    case XEN_DMOP_create_ioreq_server:
        dm->u.create_ioreq_server.id = FAKE_SERVER_ID;
        break;
    case XEN_DMOP_get_ioreq_server_info:
        dm->u.get_ioreq_server_info.bufioreq_port = 33;
        if (!(dm->u.get_ioreq_server_info.flags & XEN_DMOP_no_gfns)) {
            dm->u.get_ioreq_server_info.ioreq_gfn = 0xfeff0;
            dm->u.get_ioreq_server_info.bufioreq_gfn = 0xfeff1;
        }
        break;
    case XEN_DMOP_nr_vcpus:
        dm->u.nr_vcpus.vcpus = 4;
        break;
    case XEN_DMOP_track_dirty_vram:
        if (op->num > 1)
            memset(ub[1].uptr, 0xa5, ub[1].size);
        break;
    }
    return 0;
}

static long answer_hcall(uint64_t op, const unsigned long long *arg)
{
    void *p1 = (void *)(uintptr_t)arg[1];
    switch (op) {
    case __HYPERVISOR_xen_version:
        switch (arg[0]) {
        case XENVER_version:
            return 4 << 16 | 17;
        case XENVER_extraversion:
            if (p1)
                strcpy(p1, ".7");
            return 0;
        case XENVER_capabilities:
            if (p1)
                strcpy(p1, "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64");
            return 0;
        }
        return 0;
    case __HYPERVISOR_memory_op:
        switch (arg[0] & MEMOP_CMD_MASK) {
        case XENMEM_increase_reservation:
        case XENMEM_decrease_reservation:
        case XENMEM_populate_physmap:
            return ((struct xen_memory_reservation *)p1)->nr_extents;
        }
        return 0;
    case __HYPERVISOR_hvm_op:
        if (arg[0] == HVMOP_get_param) {
            struct xen_hvm_param *hp = p1;
            hp->value = 0x10000 + hp->index;
        }
        return 0;
    case __HYPERVISOR_physdev_op:
        if (arg[0] == PHYSDEVOP_map_pirq) {
            struct physdev_map_pirq *m = p1;
            if (m->pirq < 0)
                m->pirq = FAKE_PIRQ;
        }
        return 0;
    case __HYPERVISOR_domctl: {
        struct xen_domctl *d = (void *)(uintptr_t)arg[0];
        if (d->interface_version != XEN_DOMCTL_INTERFACE_VERSION)
            return -EACCES;
        if (d->cmd == XEN_DOMCTL_getdomaininfo) {
            struct xen_domctl_getdomaininfo *gi = &d->u.getdomaininfo;
            memset(gi, 0, sizeof(*gi));
            gi->domain = d->domain;
            gi->flags = XEN_DOMINF_hvm_guest | XEN_DOMINF_hap;
            gi->tot_pages = 0x10000;
            gi->max_pages = 0x10100;
            gi->shared_info_frame = 0xfeffe;
            gi->nr_online_vcpus = 4;
            gi->max_vcpu_id = 3;
        }
        return 0;
    }
    case __HYPERVISOR_multicall: {
        multicall_entry_t *mc = (void *)(uintptr_t)arg[0];
        for (uint64_t i = 0; i < arg[1]; i++)
            mc[i].result = (xen_ulong_t)answer_hcall(mc[i].op, (const unsigned long long *)mc[i].args);
        return 0;
    }
    }
    return 0;
}

static long answer_hypercall(privcmd_hypercall_t *h)
{
    return answer_hcall(h->op, h->arg);
}

/* ---- ioctl -------------------------------------------------------------- */

static const char *req_name(unsigned long req)
{
    switch (req) {
    case IOCTL_PRIVCMD_HYPERCALL: return "IOCTL_PRIVCMD_HYPERCALL";
    case IOCTL_PRIVCMD_MMAPBATCH_V2: return "IOCTL_PRIVCMD_MMAPBATCH_V2";
    case IOCTL_PRIVCMD_DM_OP: return "IOCTL_PRIVCMD_DM_OP";
    case IOCTL_PRIVCMD_RESTRICT: return "IOCTL_PRIVCMD_RESTRICT";
    case IOCTL_PRIVCMD_MMAP_RESOURCE: return "IOCTL_PRIVCMD_MMAP_RESOURCE";
    case IOCTL_PRIVCMD_UNIMPLEMENTED: return "IOCTL_PRIVCMD_UNIMPLEMENTED";
    case IOCTL_EVTCHN_BIND_VIRQ: return "IOCTL_EVTCHN_BIND_VIRQ";
    case IOCTL_EVTCHN_BIND_INTERDOMAIN: return "IOCTL_EVTCHN_BIND_INTERDOMAIN";
    case IOCTL_EVTCHN_BIND_UNBOUND_PORT: return "IOCTL_EVTCHN_BIND_UNBOUND_PORT";
    case IOCTL_EVTCHN_UNBIND: return "IOCTL_EVTCHN_UNBIND";
    case IOCTL_EVTCHN_NOTIFY: return "IOCTL_EVTCHN_NOTIFY";
    case IOCTL_EVTCHN_RESET: return "IOCTL_EVTCHN_RESET";
    case IOCTL_EVTCHN_RESTRICT_DOMID: return "IOCTL_EVTCHN_RESTRICT_DOMID";
    }
    return "unknown";
}

static size_t arg_len(unsigned long req)
{
    switch (req) {
    case IOCTL_PRIVCMD_HYPERCALL: return sizeof(privcmd_hypercall_t);
    case IOCTL_PRIVCMD_MMAPBATCH_V2: return sizeof(privcmd_mmapbatch_v2_t);
    case IOCTL_PRIVCMD_DM_OP: return sizeof(privcmd_dm_op_t);
    case IOCTL_PRIVCMD_RESTRICT: return sizeof(domid_t);
    case IOCTL_PRIVCMD_MMAP_RESOURCE: return sizeof(privcmd_mmap_resource_t);
    case IOCTL_EVTCHN_BIND_VIRQ: return sizeof(struct ioctl_evtchn_bind_virq);
    case IOCTL_EVTCHN_BIND_INTERDOMAIN: return sizeof(struct ioctl_evtchn_bind_interdomain);
    case IOCTL_EVTCHN_BIND_UNBOUND_PORT: return sizeof(struct ioctl_evtchn_bind_unbound_port);
    case IOCTL_EVTCHN_UNBIND: return sizeof(struct ioctl_evtchn_unbind);
    case IOCTL_EVTCHN_NOTIFY: return sizeof(struct ioctl_evtchn_notify);
    case IOCTL_EVTCHN_RESTRICT_DOMID: return sizeof(struct ioctl_evtchn_restrict_domid);
    }
    return 0;
}

/* shape records the buffers reachable from the argument struct a. */
static void shape(unsigned long req, struct buf *a)
{
    char name[64];
    switch (req) {
    case IOCTL_PRIVCMD_HYPERCALL:
        shape_hcall(a, 0, 8, "");
        break;
    case IOCTL_PRIVCMD_DM_OP: {
        privcmd_dm_op_t *op = (void *)a->addr;
        snprintf(name, sizeof(name), "privcmd_dm_op_buf[%u]", op->num);
        struct buf *arr = follow(a, offsetof(privcmd_dm_op_t, ubufs), name,
                                 op->num * sizeof(privcmd_dm_op_buf_t), 1);
        for (unsigned i = 0; arr && i < op->num; i++) {
            privcmd_dm_op_buf_t *ub = (void *)(arr->addr + i * sizeof(*ub));
            snprintf(name, sizeof(name), "dm_op_buf[%u]", i);
            struct buf *d = follow(arr, i * sizeof(*ub), name, ub->size, 1);
            if (i == 0)
                dm_op_gaps(d);
        }
        GAPS(a, 0, privcmd_dm_op_t, FLD(privcmd_dm_op_t, dom), FLD(privcmd_dm_op_t, num),
             FLD(privcmd_dm_op_t, ubufs));
        break;
    }
    case IOCTL_PRIVCMD_MMAPBATCH_V2: {
        privcmd_mmapbatch_v2_t *mb = (void *)a->addr;
        add_ptr(a, offsetof(privcmd_mmapbatch_v2_t, addr));
        GAPS(a, 0, privcmd_mmapbatch_v2_t, FLD(privcmd_mmapbatch_v2_t, num),
             FLD(privcmd_mmapbatch_v2_t, dom), FLD(privcmd_mmapbatch_v2_t, addr),
             FLD(privcmd_mmapbatch_v2_t, arr), FLD(privcmd_mmapbatch_v2_t, err));
        follow(a, offsetof(privcmd_mmapbatch_v2_t, arr), "gfn array", mb->num * sizeof(xen_pfn_t), 1);
        follow(a, offsetof(privcmd_mmapbatch_v2_t, err), "err array", mb->num * sizeof(int), 0);
        break;
    }
    case IOCTL_PRIVCMD_MMAP_RESOURCE:
        add_ptr(a, offsetof(privcmd_mmap_resource_t, addr));
        GAPS(a, 0, privcmd_mmap_resource_t, FLD(privcmd_mmap_resource_t, dom),
             FLD(privcmd_mmap_resource_t, type), FLD(privcmd_mmap_resource_t, id),
             FLD(privcmd_mmap_resource_t, idx), FLD(privcmd_mmap_resource_t, num),
             FLD(privcmd_mmap_resource_t, addr));
        break;
    }
}

static long answer(int fd, unsigned long req, void *arg)
{
    (void)fd;
    switch (req) {
    case IOCTL_PRIVCMD_HYPERCALL:
        return answer_hypercall(arg);
    case IOCTL_PRIVCMD_DM_OP:
        return answer_dm_op(arg);
    case IOCTL_PRIVCMD_MMAPBATCH_V2: {
        privcmd_mmapbatch_v2_t *mb = arg;
        /* Frames numbered 0xdead are holes: a per-frame error, as Linux
         * reports them (the ioctl itself succeeds). */
        for (unsigned i = 0; i < mb->num; i++)
            mb->err[i] = (mb->arr[i] == 0xdead) ? -EINVAL : 0;
        return 0;
    }
    case IOCTL_PRIVCMD_MMAP_RESOURCE:
    case IOCTL_PRIVCMD_RESTRICT:
    case IOCTL_EVTCHN_UNBIND:
    case IOCTL_EVTCHN_NOTIFY:
    case IOCTL_EVTCHN_RESET:
    case IOCTL_EVTCHN_RESTRICT_DOMID:
        return 0;
    case IOCTL_EVTCHN_BIND_INTERDOMAIN:
        return FAKE_PORT_INTERDOMAIN;
    case IOCTL_EVTCHN_BIND_UNBOUND_PORT:
    case IOCTL_EVTCHN_BIND_VIRQ:
        return FAKE_PORT_UNBOUND;
    }
    return -ENOTTY;
}

EXPORT int ioctl(int fd, unsigned long req, ...)
{
    resolve();
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    const char *dev = dev_of(fd);
    if (!dev)
        return real_ioctl(fd, req, arg);

    if (active) {
        nbufs = 0;
        struct buf *a = &bufs[0];
        memset(a, 0, sizeof(*a));
        snprintf(a->name, sizeof(a->name), "arg");
        a->addr = arg;
        a->len = arg ? arg_len(req) : 0;
        a->undef = calloc(a->len + 1, 1);
        if (a->len) {
            a->in = malloc(a->len);
            memcpy(a->in, arg, a->len);
            shape(req, a);
        }
    }
    long r = answer(fd, req, arg);
    if (active) {
        event_start("ioctl", dev);
        emit(", \"req\": %lu, \"req_name\": \"%s\"", req, req_name(req));
        if (bufs[0].len) {
            emit(",\n     \"arg\": ");
            emit_buf(&bufs[0]);
        }
        if (nbufs) {
            emit(",\n     \"buffers\": [");
            for (int i = 1; i <= nbufs; i++) {
                emit("%s\n       ", i > 1 ? "," : "");
                emit_buf(&bufs[i]);
            }
            emit("]");
        }
        if (r)
            emit(", \"ret\": %ld", r);
        emit("}");
        free_bufs();
    }
    if (r < 0) {
        errno = (int)-r;
        return -1;
    }
    return (int)r;
}

/* ---- open/close --------------------------------------------------------- */

static int fake_open(const char *dev, int flags)
{
    unsigned mflags = (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0;
    char name[32];
    snprintf(name, sizeof(name), "xen-%s", dev);
    int fd = (int)syscall(SYS_memfd_create, name, mflags);
    if (fd < 0)
        return -1;
    if (fd >= MAXFD) {
        real_close(fd);
        errno = EMFILE;
        return -1;
    }
    fd_dev[fd] = dev;
    if (active) {
        event_start("open", dev);
        emit(", \"flags\": %d}", flags & (O_ACCMODE | O_NONBLOCK | O_CLOEXEC));
    }
    return fd;
}

static int mode_arg(int flags, va_list ap)
{
    return (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, int) : 0;
}

EXPORT int open(const char *path, int flags, ...)
{
    resolve();
    va_list ap;
    va_start(ap, flags);
    int mode = mode_arg(flags, ap);
    va_end(ap);
    const char *dev = dev_name(path);
    if (dev)
        return fake_open(dev, flags);
    return real_open(path, flags, mode);
}

EXPORT int open64(const char *path, int flags, ...)
{
    resolve();
    va_list ap;
    va_start(ap, flags);
    int mode = mode_arg(flags, ap);
    va_end(ap);
    const char *dev = dev_name(path);
    if (dev)
        return fake_open(dev, flags);
    return real_open(path, flags | O_LARGEFILE, mode);
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
    resolve();
    va_list ap;
    va_start(ap, flags);
    int mode = mode_arg(flags, ap);
    va_end(ap);
    const char *dev = dev_name(path);
    if (dev)
        return fake_open(dev, flags);
    return real_openat(dirfd, path, flags, mode);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
    resolve();
    va_list ap;
    va_start(ap, flags);
    int mode = mode_arg(flags, ap);
    va_end(ap);
    const char *dev = dev_name(path);
    if (dev)
        return fake_open(dev, flags);
    return real_openat(dirfd, path, flags | O_LARGEFILE, mode);
}

EXPORT int __open_2(const char *path, int flags)
{
    return open(path, flags);
}

EXPORT int __open64_2(const char *path, int flags)
{
    return open64(path, flags);
}

EXPORT int close(int fd)
{
    resolve();
    const char *dev = dev_of(fd);
    if (dev) {
        fd_dev[fd] = NULL;
        if (active) {
            event_start("close", dev);
            emit("}");
        }
    }
    return real_close(fd);
}

/* ---- mmap/munmap -------------------------------------------------------- */

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    resolve();
    const char *dev = dev_of(fd);
    if (!dev)
        return real_mmap(addr, len, prot, flags, fd, off);
    /* Device memory is anonymous memory here: the hypercall buffers, the
     * foreign mappings and resource mappings all just need to exist. */
    int aflags = (flags & MAP_FIXED) | MAP_SHARED | MAP_ANONYMOUS;
    void *p = real_mmap(addr, len, prot, aflags, -1, 0);
    if (p == MAP_FAILED)
        return p;
    for (int i = 0; i < MAXREG; i++) {
        if (regions[i].len == 0) {
            regions[i] = (struct region){(uintptr_t)p, len, dev, off};
            break;
        }
    }
    if (active) {
        event_start("mmap", dev);
        emit(", \"flags\": %d, \"offset\": %lld, \"length\": %zu, \"prot\": %d}",
             flags & (MAP_SHARED | MAP_PRIVATE | MAP_FIXED), (long long)off, len, prot);
    }
    return p;
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    return mmap(addr, len, prot, flags, fd, off);
}

EXPORT int munmap(void *addr, size_t len)
{
    resolve();
    uintptr_t a = (uintptr_t)addr;
    for (int i = 0; i < MAXREG; i++) {
        struct region *r = &regions[i];
        if (r->len && a == r->base) {
            if (active) {
                event_start("munmap", r->dev);
                emit(", \"length\": %zu}", len);
            }
            if (len >= r->len)
                r->len = 0;
            else {
                r->base += len;
                r->len -= len;
            }
            break;
        }
    }
    return real_munmap(addr, len);
}

/* ---- read/write --------------------------------------------------------- */

EXPORT ssize_t read(int fd, void *p, size_t n)
{
    resolve();
    const char *dev = dev_of(fd);
    if (!dev)
        return real_read(fd, p, n);
    ssize_t r;
    if (strcmp(dev, "evtchn") == 0 && n >= sizeof(evtchn_port_t)) {
        evtchn_port_t port = FAKE_PORT_INTERDOMAIN;
        memcpy(p, &port, sizeof(port));
        r = sizeof(port);
    } else {
        errno = EAGAIN;
        r = -1;
    }
    if (active) {
        event_start("read", dev);
        emit(", \"length\": %zu", n);
        if (r > 0) {
            emit(", \"data\": ");
            emit_hex(p, (size_t)r);
        }
        emit("}");
    }
    return r;
}

EXPORT ssize_t write(int fd, const void *p, size_t n)
{
    resolve();
    const char *dev = dev_of(fd);
    if (!dev)
        return real_write(fd, p, n);
    if (active) {
        event_start("write", dev);
        emit(", \"data\": ");
        emit_hex(p, n);
        emit("}");
    }
    return (ssize_t)n;
}

/* ---- capture control ---------------------------------------------------- */

static char *cur_call;

EXPORT void xencapture_begin(const char *name, const char *call)
{
    resolve();
    snprintf(cur_name, sizeof(cur_name), "%s", name);
    free(cur_call);
    cur_call = strdup(call);
    outlen = 0;
    nevents = 0;
    emit("");
    const char *ps = getenv("XENCAPTURE_PASS");
    pass = ps ? atoi(ps) : 0;
    sidelen = sidepos = 0;
    if (pass == 2) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s.bin", getenv("XENCAPTURE_OUT") ?: ".", cur_name);
        FILE *f = fopen(path, "rb");
        if (!f) {
            fprintf(stderr, "xencapture: pass 2 needs %s\n", path);
            exit(1);
        }
        unsigned char chunk[65536];
        size_t n;
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
            side_put(chunk, n);
        fclose(f);
    }
    active = 1;
}

EXPORT void xencapture_end(const char *result)
{
    active = 0;
    char *events = strndup(out, outlen);
    outlen = 0;
    emit("{\n  \"name\": ");
    emit_str(cur_name);
    emit(",\n  \"call\": ");
    emit_str(cur_call);
    emit(",\n  \"result\": ");
    emit_str(result);
    emit(",\n  \"events\": [%s%s]\n}\n", events, nevents ? "\n  " : "");
    free(events);

    const char *dir = getenv("XENCAPTURE_OUT");
    char path[4096];
    if (failed)
        exit(1);
    if (pass == 2 && sidepos != sidelen) {
        fprintf(stderr, "xencapture: %s: pass 2 recorded less than pass 1\n", cur_name);
        exit(1);
    }
    snprintf(path, sizeof(path), "%s/%s.%s", dir ? dir : ".", cur_name, pass == 1 ? "bin" : "json");
    FILE *f = fopen(path, "w");
    const void *data = pass == 1 ? (const void *)side : (const void *)out;
    size_t len = pass == 1 ? sidelen : outlen;
    if (!f || (len && fwrite(data, 1, len, f) != len) || fclose(f) != 0) {
        fprintf(stderr, "xencapture: writing %s failed\n", path);
        exit(1);
    }
}

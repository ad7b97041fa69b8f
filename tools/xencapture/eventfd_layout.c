/*
 * eventfd_layout prints, as JSON, the layout of the Linux privcmd structs
 * godm mirrors for IOCTL_PRIVCMD_IRQFD and IOCTL_PRIVCMD_IOEVENTFD (struct
 * privcmd_irqfd, struct privcmd_ioeventfd; Linux >= 6.7 uapi
 * <xen/privcmd.h>, from linux-libc-dev), with the request numbers and
 * flags. The Xen 4.17 libraries have no caller of these ioctls, so this is
 * their only C anchor. eventfd-layout.sh builds it against a header tree
 * that has them and writes or checks hyp/privcmd/testdata/eventfd_layout.json.
 */
#include <stddef.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <linux/types.h>
#include <xen/privcmd.h>

#ifndef IOCTL_PRIVCMD_IOEVENTFD
#error "this <xen/privcmd.h> predates Linux 6.7 (no IOCTL_PRIVCMD_IOEVENTFD)"
#endif

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

int main(void)
{
    printf("{\n  \"structs\": {");
    S("privcmd_irqfd", struct privcmd_irqfd);
    F(struct privcmd_irqfd, dm_op); F(struct privcmd_irqfd, size); F(struct privcmd_irqfd, fd);
    F(struct privcmd_irqfd, flags); F(struct privcmd_irqfd, dom); F(struct privcmd_irqfd, pad);
    E();
    S("privcmd_ioeventfd", struct privcmd_ioeventfd);
    F(struct privcmd_ioeventfd, ioreq); F(struct privcmd_ioeventfd, ports); F(struct privcmd_ioeventfd, addr);
    F(struct privcmd_ioeventfd, addr_len); F(struct privcmd_ioeventfd, event_fd);
    F(struct privcmd_ioeventfd, vcpus); F(struct privcmd_ioeventfd, vq); F(struct privcmd_ioeventfd, flags);
    F(struct privcmd_ioeventfd, dom); F(struct privcmd_ioeventfd, pad);
    E();
    printf("\n  },\n  \"constants\": {");
    C(IOCTL_PRIVCMD_IRQFD);
    C(IOCTL_PRIVCMD_IOEVENTFD);
    C(PRIVCMD_IRQFD_FLAG_DEASSIGN);
    C(PRIVCMD_IOEVENTFD_FLAG_DEASSIGN);
    printf("\n  }\n}\n");
    return 0;
}

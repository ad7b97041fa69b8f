// Package xensim is a simulated dom0 kernel and Xen hypervisor behind the
// kernel seam (package hyp/kernel), so that godm's real Xen code — DM-op
// encoding, foreign and resource mapping, event channels, the ioreq loop —
// runs unchanged in tests, benchmarks and the demo.
//
// # What is simulated
//
// The hypervisor side follows Xen 4.17 (xen/common/ioreq.c,
// xen/arch/x86/hvm/{dm,ioreq,io}.c, xen/common/event_channel.c; see
// XEN-FACTS.md §0):
//
//   - HVM domains with memfd-backed RAM regions (holes allowed) and a p2m
//     with HVMMEM types, relocation, pinned cache attributes and VRAM
//     dirty tracking.
//   - Up to eight ioreq servers per domain with Xen's checks and errnos:
//     only the creating domain may use or map a server (EPERM); frame 0 is
//     the buffered page, frame 1 the ioreq page (one page, <= 128 vCPUs);
//     per-vCPU event channels consumed by Xen, whose ports appear in
//     vp_eport when the server is enabled; a buffered-io port; PORT,
//     MEMORY and PCI rangesets (overlap EEXIST, unmapping what is not
//     mapped ENOENT); the legacy gfn path of get_ioreq_server_info, with
//     the pages in the guest p2m only while the server is disabled.
//   - Routing as Xen does it: newest enabled server first; 0xcf8 dword
//     writes are latched per domain (and still forwarded); 0xcfc-0xcff
//     data cycles with the enable bit become IOREQ_TYPE_PCI_CONFIG with
//     SBDF<<32 | (reg + (port&3)) to the server claiming the SBDF;
//     unclaimed reads return all-ones and writes are dropped; writes to
//     p2m_ioreq_server pages go to the server that claimed the type.
//   - The buffered ring (eligibility as hvm_send_buffered_ioreq, 8-byte
//     writes in two slots, 64-bit cmpxchg pointer canonicalisation in
//     ATOMIC mode, synchronous fallback when full), TIMEOFFSET through the
//     ring, and the synchronous INVALIDATE broadcast.
//   - Simulated vCPUs (VCPU) that fill their slot, publish
//     STATE_IOREQ_READY last, notify the server's port and block (or spin,
//     VCPU.SetSpin) until the device model answers. A request left
//     unanswered for Config.IOReqTimeout fails with ErrTimeout, naming the
//     vCPU and the access.
//
// The guest side is driven from tests: VCPU accesses (port and MMIO I/O,
// REP string I/O with data_is_ptr, PCI configuration through 0xcf8/0xcfc,
// buffered writes, map-cache invalidation), guest RAM (Domain.ReadRAM,
// WriteRAM, Memory, RAMFile) and guest event channels
// (Domain.AllocUnboundPort, BindInterdomain, Notify).
//
// The kernel side follows Linux's drivers/xen/privcmd.c and evtchn.c:
// privcmd (DM_OP with its buffer limits, HYPERCALL, MMAPBATCH_V2 with
// per-page errors, MMAP_RESOURCE including the size query, RESTRICT), the
// hypercall-buffer device, and evtchn (ports delivered once and masked
// until written back, the pending bit re-delivering on unmask, a real
// eventfd readable exactly while the pending queue is non-empty, EAGAIN
// for empty non-blocking reads, RESTRICT_DOMID).
//
// Hypercalls decoded: dm_op, xen_version, hvm_op get/set_param,
// memory_op (populate_physmap, decrease_reservation with the map-cache
// invalidation it owes, add_to_physmap gmfn/gmfn_range), multicall,
// physdev_op map/unmap_pirq, and the domctls a device model and its
// toolstack use for passthrough (getdomaininfo, bind/unbind_pt_irq,
// memory_mapping, ioport_mapping, irq/iomem/ioport_permission,
// assign/deassign/test_assign_device) in the interface version and layouts
// of the Xen release Config names (4.15 to 4.22; any other version is
// EACCES, see domctl_abi.go). Passed-through ports and frames no
// longer reach ioreq servers; the simulator has no physical device behind
// them, so they read all-ones. As in Xen, memory_mapping over guest RAM is
// not refused: the RAM pages leave the p2m. Other hypercalls answer
// ENOSYS.
//
// Foreign pages that are holes fail with -EINVAL per page, as Xen's
// get_page_from_gfn path does (xen/arch/x86/mm.c:mod_l1_entry); the
// simulator never pages memory out, so it never reports -ENOENT.
//
// IOCTL_PRIVCMD_IRQFD and IOEVENTFD follow Linux >= 6.7 when
// Config.EventFDs is set (otherwise ENOTTY, as older kernels): an irqfd
// issues its stored DM op whenever its eventfd is signalled; an
// ioeventfd completes matching virtio-mmio QueueNotify writes in the
// "kernel" (before the port is queued to user space, where Linux runs
// both handlers of the shared interrupt in turn).
//
// Not simulated (they answer like a kernel or Xen without them):
// event-channel VIRQs (ENOSYS) and grant-table resources (EOPNOTSUPP).
// Hypercall continuations are not modelled: ops run to completion (very
// large requests are refused instead).
//
// # Observing the guest side
//
// DM-op side effects (INTx levels, link routes, ISA IRQs, MSIs, shutdown,
// dirty VRAM, modified memory, mem types, inject_event, ...), ioreq
// server lifecycle, notifications to plain guest ports and protocol
// violations by the device model are recorded as Events, in order, in a
// fixed-size ring (recording allocates nothing). Sim.WaitEvent waits,
// bounded, for a matching event.
//
// # Lifecycle
//
// New creates a Sim holding dom0. CreateDomain adds HVM guests;
// Kernel(caller) returns the device files as a process in domain caller
// sees them; SetDevice plugs in other simulated devices (xenstored).
// Domain.Close destroys a guest; Sim.Close closes every file, destroys
// every domain and releases every fd and all guest memory (device-model
// views made through privcmd read as zeros until their owner unmaps
// them). Both are idempotent.
//
// # Threading
//
// A Sim is safe for concurrent use. Control operations (DM ops, binds,
// mappings) are serialised by one lock; a vCPU access takes it shared
// while it routes and fills its slot and waits for the device model
// without holding it. Each VCPU must be driven by one goroutine at a time
// (a second concurrent access fails with ErrBusy), like a real vCPU.
package xensim

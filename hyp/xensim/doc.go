// Package xensim is a simulated dom0 kernel and Xen hypervisor behind the
// kernel seam (package hyp/kernel), so that godm's real Xen code — DM-op
// encoding, foreign and resource mapping, event channels, the ioreq loop —
// runs unchanged in tests, benchmarks and the demo.
//
// The simulation follows Xen 4.17 and Linux's privcmd/evtchn drivers (see
// XEN-FACTS.md §0): HVM domains with memfd-backed RAM and a p2m, up to
// eight ioreq servers per domain with their shared ioreq and buffered
// pages, PORT/MEMORY/PCI rangesets, the 0xcf8 latch and PCI-config routing,
// the buffered ring, event channels (with the Linux evtchn device's
// masking), and simulated vCPUs that issue accesses and block until the
// device model answers. Interrupt injection and other DM-op side effects
// are recorded as Events for tests to assert on.
//
// Lifecycle: New creates a Sim holding dom0. CreateDomain adds HVM guests;
// Kernel(caller) returns the device files as a process in domain caller
// sees them. Domain.Close destroys a guest; Sim.Close destroys everything
// and releases every fd and mapping. Both are idempotent.
//
// Threading: a Sim is safe for concurrent use. Control operations (DM ops,
// binds) are serialised by one lock; a vCPU access takes it shared only
// while it routes and fills its slot, and waits for the device model
// without holding it. Each VCPU must be driven by one goroutine at a time,
// like a real vCPU.
package xensim

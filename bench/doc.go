// Package bench measures godm's ioreq path on the simulated Xen (package
// hyp/xensim) against the machine's physical limits and against a classic,
// QEMU-style device-model loop, all in one run, so that the report is made
// of ratios measured side by side rather than absolute figures. It backs
// "godm-lab bench" and the Go benchmarks of this package.
//
// # What is measured
//
//   - Floors: two OS threads ping-ponging one cache line (the least a polled
//     request/response can cost) and two threads ping-ponging through
//     eventfds (the least a wake-up round trip can cost).
//   - Bus dispatch: host-side Space/ConfigSpace reads of real device
//     registers, no hypervisor.
//   - Go runtime costs the designs pay: a yield on an unlocked and on a
//     locked goroutine, and a channel ping-pong between locked goroutines.
//   - The simulator's own cost: an access no server claims, and round trips
//     answered by responders that do not dispatch (sim/...).
//   - Round trips of one vCPU (rt/...): a UART register IN, an MMIO read and a
//     PCI configuration read of godm's test device, a 4 KiB REP OUTSD with
//     data_is_ptr; each polled (vCPU and server spin) and blocking (both
//     sleep between requests), each against godm's ioreq.Server and the
//     classic loop.
//   - A goroutine a handler readies (a device back end), with no P to
//     spare: how long it waits for a thread to let go of its P.
//   - A buffered-ring burst: a full ring of writes followed by a read that
//     Xen's ordering makes wait for the drain.
//   - Throughput with 1, 2, 4 and 8 vCPUs, each reading its own UART back to
//     back, polled and blocking, against godm and the classic loop.
//
// The classic loop (see loop) is the design QEMU uses — one thread blocked
// on the event-channel fd, one port per wake-up, unmask, global lock,
// claim, drain the buffered ring, handle, notify — built from godm's own slots, dispatcher, bus and devices,
// so that only the design differs.
//
// # Method
//
// Iteration counts are fixed per scenario (Scenario.Ops, ShortOps for CI).
// Every trial runs each selected scenario once, in order, on a fresh
// simulated guest, after a warm-up; trials are pooled for the percentiles,
// and the spread of the per-trial medians is reported. Every operation is
// timed on its vCPU's thread. Every simulated vCPU runs on its own locked
// OS thread, and GOMAXPROCS is raised by the number of vCPUs while a
// scenario runs: the vCPUs stand for the guest's CPUs, which are not the
// device model's threads, so they must not take its Ps; they share the
// cores with it through the OS scheduler, as Xen's vCPUs share physical
// CPUs with dom0. Allocations are runtime.MemStats deltas over
// the measured part: process-wide, simulator included. The scenarios check
// every answer the guest gets, so a smoke run also tests the path.
//
// # Threading
//
// Run and Scenario.Run must not run concurrently with each other (they
// measure the whole process). Every vCPU and every server runs on its own
// locked OS thread (see runRig).
// Nothing in the product imports this package.
package bench

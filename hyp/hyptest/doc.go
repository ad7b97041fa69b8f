// Package hyptest is a conformance suite for godm's dom0 interface (hyp/...):
// the control-path operations a device model performs, checked against
// what Xen answers. It runs against the simulated Xen in every test run
// (Simulated), and against a real Xen host when one is there (RealXen), so
// the simulator and the real hypervisor are held to the same expectations.
//
// Run checks, in order: nr_vcpus; xen_version (release, extra version,
// capabilities); an HVM parameter read (HVM_PARAM_STORE_EVTCHN) and
// hvm_op's errors; XEN_DOMCTL_getdomaininfo of the test domain with the
// layout picked for the running Xen; guest-memory mapping with
// MMAPBATCH_V2 (a RAM frame, a batch with the VGA hole as a per-page
// EINVAL); event channels, first between two handles of this process's
// own domain (DOMID_SELF; needs no peer), then with the guest (bind marks
// the new port pending, notify reaches the guest, the guest's notify makes
// the port readable, unmask, unbind); a xenstore read of the guest's name; the
// life of an ioreq server (create, map its pages, bind its vCPU channels,
// claim and release ranges and a PCI function, destroy); handles
// restricted to the test domain and what they refuse; the irqfd and
// ioeventfd support probes (offered or not, nothing else); error answers.
//
// Safety on a real, live test domain (GODM_XEN_TEST_DOMID): the suite only
// reads the guest's memory (read-only mappings of frame 0, 1 and the VGA
// hole), reads its HVM parameter, domain info and xenstore name, and
// creates one ioreq server of its own (Xen allows eight per domain) that
// claims a port range and a PCI function nobody uses; it destroys the
// server, its mappings and its bindings before returning. It never writes
// guest memory, injects interrupts or writes xenstore there. The sub-tests
// that need the guest's cooperation (writing guest RAM and checking both
// sides, the event-channel round trip) run only where Target.Guest can
// play the guest (the simulator) and are skipped on real Xen with that
// reason; the xenstore read is skipped with the reason when no xenstore
// answers.
//
// Threading: Run is called from one test goroutine; waits are bounded by
// Timeout.
package hyptest

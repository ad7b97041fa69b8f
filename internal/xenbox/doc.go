// Package xenbox is the real-Xen test harness: Debian's Xen 4.17
// (bookworm) and 4.20 (trixie; scripts/xenbox.sh 4.20, GODM_XENBOX_DIR_420)
// hypervisors, a Debian dom0 (its 6.1 kernel, xenstored, xl) and HVM
// guests nested in QEMU's software CPU (qemu-system-x86_64 -accel tcg
// -cpu qemu64,+svm,+npt: TCG emulates AMD SVM with nested paging), with
// godm as the guests' device model. It is the ground truth the simulated
// Xen (hyp/xensim) is held to.
//
// scripts/xenbox.sh fetches the packages with apt-get download (cached in
// .cache/xenbox, checksummed by apt) and unpacks them without installing
// anything; it prints the directory, which scripts/test.sh exports as
// GODM_XENBOX_DIR. Dom0 builds the dom0 initramfs (busybox, the Xen tools
// and firmware with their shared-library closure, the Xen kernel modules,
// static Go test binaries and an /init that starts xenstored,
// xen-init-dom0 and xenconsoled, then runs a list of Scenarios); Boot
// runs QEMU on it, streams every console line (the Xen console, dom0's
// console on it, and each guest's device-model output relayed by
// dmwrap) with its time to a log, and returns a Result per scenario from
// the marker lines /init prints. QEMU is killed on every exit path; the
// host is not touched beyond the caller's temporary directory.
//
// The scenarios of TestRealXen (one boot per release, the same godm
// binary in each; the QEMU ones where the box has qemu-system-xen, which
// both carry: bookworm's QEMU-xen 7.2): hyp/hyptest against real Xen;
// an HVM guest created by real xl whose device model is godm (through
// dmwrap, which does libxl's launch handshake) and whose firmware
// (firmware_override, built at test time from Probes) reads every xenfv
// device and powers off; the answers must equal godm's on xensim for the
// same accesses, and the platform's fixed facts; xl destroy while a godm
// started by hand serves: godm must exit and the domain must vanish; the
// same probe firmware under QEMU's own Xen device model (qemu-system-xen),
// whose answers must equal godm's but for the listed deviations, each
// with its reason (the platform device at 00:02.0 in both); a standalone
// `godm passthrough` ioreq server beside godm as libxl's device model on
// the same domain (PassthroughScenario). The pci-attach scenario runs in
// a second, short boot of each release, the IOMMU box (IOMMUConfig:
// QEMU's q35 with its emulated AMD IOMMU and an edu function for dom0,
// Xen's iommu=on): xl pci-attach and pci-detach with godm as libxl's
// device model, the guest reading the function's registers through the
// BAR Xen mapped. With
// GODM_XENBOX_BENCH set, the same boot also runs the timing firmware
// (BenchFirmwareSource) with godm and with QEMU-xen in alternation, both
// launched by libxl from the same config, and logs the "godm vs QEMU on
// real Xen" table (bench/README.md). GODM_XENBOX_ONLY=a,b runs only the
// named scenarios (a developer's shorter boot).
//
// A box whose console stays silent for Config.Stall (60 s) once the
// toolstack is up gets Xen's debug keys on its serial input ('d', 'q',
// 'r': every CPU's registers, every vCPU's state, the run queues), so a
// stall says in the log whether the box is stuck or merely waiting: the
// dump is how the "QEMU hangs the box" of the first benchmark runs was
// found to be a guest halted with its power-off write dropped.
//
// Facts: the design notes REAL-XEN.md (measured command lines,
// packages, -cpu choices) and XEN-FACTS.md §2 (libxl and the device
// model).
package xenbox

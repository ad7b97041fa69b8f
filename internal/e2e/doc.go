// Package e2e runs a real Linux guest against godm's full data path. QEMU
// (TCG) is the guest's CPU; each godm PCI function the guest sees is an
// x-pci-proxy-dev whose accesses become simulated-vCPU accesses on xensim:
//
//	guest driver ─► QEMU proxy ─► mpqemu ─► xensim vCPU ─► ioreq page + evtchn
//	  ─► godm ioreq.Server ─► devices.Bus ─► pci.Device ─► device
//
// The simulated domain's RAM is the guest's RAM (QEMU maps xensim's memfd),
// so godm's DMA through foreign mappings and its map cache lands in the
// guest. Interrupts godm raises through DM ops (set_pci_intx_level,
// inject_msi) are recorded by xensim and forwarded into QEMU through its
// qtest socket: INTx as the I/O APIC pin the guest programmed into the
// function's interrupt line register, MSI as a write of the message.
//
// The guest's power-off and reset land in QEMU's chipset (QEMU owns the
// fixed ports here); QEMU reports them on QMP and the harness relays each
// to godm as the write the guest makes under Xen (PM1a_CNT S5 at 0xb004,
// RST_CPU at 0xcf9) on a simulated vCPU of its own, so godm's PIIX4 PM or
// PIIX3 issues XEN_DMOP_remote_shutdown. After a power-off (or a reset
// under -no-reboot) the harness plays the toolstack: it destroys the
// domain, and godm's Serve ends by itself with machine.ErrDomainGone. With
// guest.Config.Reboot the guest instead reboots in place: QEMU sends
// DEVICE_RESET to every proxy, godm resets the function and its device,
// and the guest boots again on the same domain and godm (QEMU's reboot,
// not libxl's destroy and re-create). godm's log (machine.Spec.Log) and
// the harness's actions go to Machine.LogText.
//
// Lifecycle: NewMachine starts serving; Proxy hands out functions (each
// with its own vCPU; the last vCPU is the harness's); Run boots the guest
// once and tears the domain down when it stops; Close releases everything
// and is idempotent. Run boots one guest at a time; the other methods are
// safe for concurrent use.
//
// This package is test infrastructure; the product never imports it.
package e2e

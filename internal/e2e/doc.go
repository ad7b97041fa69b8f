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
// This package is test infrastructure; the product never imports it.
package e2e

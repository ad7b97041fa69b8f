// Package simtarget runs qtest scripts on a vCPU of a simulated Xen domain
// (hyp/xensim), so that a differential script reaches godm the way a
// guest's accesses do: a port step is the vCPU's IN or OUT, which xensim
// turns into an ioreq for the ioreq server that claimed the port (or, for
// a 0xcfc-0xcff data cycle after a dword write of an enabled address to
// 0xcf8, an IOREQ_TYPE_PCI_CONFIG request, as Xen does), and the
// interrupt edges are the level changes of the ISA IRQs the device model
// set through XEN_DMOP_set_isa_irq_level, which xensim records. They
// compare with QEMU's intercepted I/O APIC pins (qtest "IRQ raise N"):
// on both platforms ISA IRQ n is I/O APIC pin n for the legacy devices.
//
// Lifecycle: New with the simulator, the domain's vCPU and the watched
// IRQs (the levels are taken from the domain at that time); Run per step.
// The device model serving the domain must be running (Machine.Serve).
//
// Threading: a Target is used by one goroutine at a time, like the vCPU
// it drives.
//
// This package is for tests only.
package simtarget

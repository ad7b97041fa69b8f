// Package machine turns a machine description (Spec) into a running godm:
// the xenfv base platform (i440FX host bridge, PIIX3 with interrupt link
// routing and the 0xcf9 reset register, the PIIX4 power-management
// function, the Xen platform device, 16550 COM ports, the i8042), wired to
// Xen through an ioreq server, DM ops and hypercalls on a kernel.Kernel —
// the real dom0 kernel or the simulated Xen.
//
// It is the wiring layer shared by cmd/godm, the benchmarks and tests: the
// one place (with cmd/godm) that knows every concrete device type.
//
// Components composed on top of the machine (PCI passthrough's Manager,
// in cmd/godm, behind the board's xen-pci-passthrough driver) register
// their own configuration-space handlers: they reserve their slots on PCI
// (pci.Bus.Reserve). The guest's ACPI eject of a slot unplugs the board's
// devices there; a component placing functions outside the board handles
// it through SetEjectHook.
//
// Lifecycle: New builds everything and registers it with Xen; Serve runs
// the ioreq server until the context ends; Close tears everything down
// (idempotent), leaving nothing in the hypervisor.
package machine

// Package dmcontract is the contract between libxl and godm as its device
// model: the qemu-xen command line libxl writes (Parse: every option
// served or refused with one line naming the xl.cfg setting behind it),
// the QMP commands libxl sends (Commands, over internal/qmp), and the run
// state the readiness handshake reports (prelaunch with -S until cont,
// running, paused). It knows no Xen: cmd/godm composes it with the machine,
// xenstore and the process set-up (chroot, user switch).
package dmcontract

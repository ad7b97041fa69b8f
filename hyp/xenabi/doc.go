// Package xenabi mirrors the raw Xen and Linux dom0 ABI that godm speaks:
// the ioreq shared pages, the privcmd and evtchn ioctls, the DM-op
// structures, and (in later files) domctl, physdev and memory_op.
//
// Constants keep their C spelling so they stay greppable against the
// headers; every struct names the header it mirrors. Layouts are those of
// x86_64 Linux and are checked by the layout tests against values generated
// from the installed C headers (Debian libxen-dev, Xen 4.17).
//
// This package holds data only: no system calls, no state, no goroutines.
package xenabi

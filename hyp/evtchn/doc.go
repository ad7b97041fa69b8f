// Package evtchn is godm's handle on the dom0 kernel's event-channel
// device (/dev/xen/evtchn, include/uapi/xen/evtchn.h): binding local ports
// to other domains' ports, notifying them, and receiving their events.
//
// Events arrive as pending port numbers read from the device; a port that
// fired is masked by the kernel until Unmask writes it back. The device is
// opened non-blocking: Pending never blocks, and Fd is for epoll.
//
// Lifecycle: Open, bind ports, Close (idempotent; closing unbinds every
// port bound through the handle). Operations on a closed Handle return an
// error wrapping hyp.ErrClosed.
//
// Threading: a Handle is safe for concurrent use. Notify and Unmask are on
// the ioreq fast path and allocate nothing: they use argument blocks
// preallocated per Handle and guarded by small mutexes.
package evtchn

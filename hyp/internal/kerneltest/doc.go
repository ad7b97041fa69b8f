// Package kerneltest is a recording fake of the kernel seam
// (kernel.Kernel) for unit tests of the packages under hyp.
//
// Every open, ioctl, mmap, munmap, read, write and close is recorded as an
// Event. An ioctl's Event holds the argument struct's bytes and every
// buffer the struct points to, found by following the ABI of each request
// number exactly as tools/xencapture does for the reference C libraries,
// so an Event converts (Event.Golden) to a golden.Event and compares with
// the committed fixtures of package hyp/internal/golden (CheckIoctl).
//
// Answers are scripted: Kernel.Script, when set, answers each ioctl (it
// may write OUT fields through the Call's slices, which alias the caller's
// memory); Default gives the same answers as xencapture's fake kernel
// (server id 1, bufioreq port 33, 4 vCPUs, ports 17 and 18, frame 0xdead a
// hole, unknown requests ENOTTY). Read and Write hooks script the evtchn
// device; Missing makes Open fail with fs.ErrNotExist.
//
// Quiet mode records nothing and allocates nothing per call, for
// testing.AllocsPerRun tests of fast paths; it only counts requests.
//
// A Kernel is safe for concurrent use. Hooks run without the Kernel's lock
// held, so they may call its methods.
package kerneltest

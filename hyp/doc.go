// Package hyp is godm's interface to Xen from dom0 (or a stub domain), in
// pure Go. The root package holds the vocabulary shared by its subpackages:
//
//   - hyp/xenabi: raw ABI mirrors (C spelling)
//   - hyp/kernel: the kernel seam (device files) and the real host kernel
//   - hyp/privcmd, hyp/dm, hyp/foreign: hypercalls, DM ops, foreign memory
//   - hyp/evtchn: event channels
//   - hyp/xenstore: the xenstore client
//   - hyp/hcall, hyp/domctl: other hypercalls; version-adapted domctls
//   - hyp/xensim: the simulated dom0 kernel and hypervisor
//
// Handles are owned objects with an idempotent Close. Errors from the
// kernel are wrapped with the operation and domain and stay errors.Is-able
// to their unix.Errno.
package hyp

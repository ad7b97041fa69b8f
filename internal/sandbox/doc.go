// Package sandbox deprivileges a godm process that serves a domain, once
// every handle it needs is open: resource limits, a chroot into an empty
// directory, an unprivileged user, no_new_privs, and a seccomp allow-list
// of the system calls godm makes while serving (every other call kills the
// process). The Xen handles themselves are restricted to the domain by
// their owners (machine.Spec.Restrict: IOCTL_PRIVCMD_RESTRICT,
// IOCTL_EVTCHN_RESTRICT_DOMID), and the xenstore connection is closed by
// the command that opened it; this package does the process-wide part of
// what QEMU's -xen-domid-restrict, -chroot and -runas do, plus what QEMU
// does not (rlimits, the allow-list).
//
// The filter is written in classic BPF by hand (no cgo, no library): it
// checks the architecture (AUDIT_ARCH_X86_64), refuses x32 numbers,
// allows clone only for threads (CLONE_THREAD), and allows the calls in
// the list that was measured by running godm's serving paths under
// strace (see allowed_amd64.go). It is installed with
// SECCOMP_FILTER_FLAG_TSYNC, so every thread of the Go runtime gets it
// (and no_new_privs, which TSYNC propagates).
package sandbox

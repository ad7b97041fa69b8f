package sandbox

import "golang.org/x/sys/unix"

const (
	auditArch = unix.AUDIT_ARCH_X86_64
	cloneNr   = unix.SYS_CLONE
)

// allowed is what godm calls once deprivileged, measured: the sandbox
// tests of cmd/godm (godm serve and libxl's argv on xensim, the guest
// served, SIGTERM, QMP quit) run the child under strace with
// GODM_TEST_SANDBOX_STRACE=DIR, and every call after the seccomp(2) call
// is listed here (one was found missing only on real Xen, in the xenbox
// libxl scenario: the file: serial log's truncation; the tests now serve
// a file: port too), for a CGO_ENABLED=0 build and for the race-enabled
// (cgo) test binary. xensim runs in godm's process, so the calls godm
// makes on the real /dev/xen files do not show there; those are added
// from hyp/kernel.Host, which is all that touches them (marked "Xen").
var allowed = []uint32{
	// Go runtime: scheduler, memory, signals, timers, GOMAXPROCS
	// refresh (sched_getaffinity, pread64 of the cgroup's cpu.max).
	unix.SYS_FUTEX, unix.SYS_NANOSLEEP, unix.SYS_SCHED_YIELD,
	unix.SYS_MMAP, unix.SYS_MUNMAP, unix.SYS_MADVISE,
	unix.SYS_RT_SIGPROCMASK, unix.SYS_RT_SIGRETURN, unix.SYS_SIGALTSTACK,
	unix.SYS_GETPID, unix.SYS_GETTID, unix.SYS_TGKILL,
	unix.SYS_SCHED_GETAFFINITY, unix.SYS_PREAD64,
	unix.SYS_CLOCK_GETTIME, // when the vDSO cannot (a Xen PV clock without it)
	unix.SYS_EXIT, unix.SYS_EXIT_GROUP,
	// glibc's thread start, in a cgo build (the race detector's too):
	// clone3 is answered ENOSYS below, so glibc falls back to clone.
	unix.SYS_MPROTECT, unix.SYS_RSEQ, unix.SYS_SET_ROBUST_LIST,
	// File descriptors already open: the Xen devices, evtchn and
	// eventfd, the ioreq waiter's epoll, serial back-ends.
	unix.SYS_READ, unix.SYS_WRITE, unix.SYS_CLOSE,
	unix.SYS_EPOLL_CREATE1, unix.SYS_EPOLL_CTL, unix.SYS_EPOLL_PWAIT,
	unix.SYS_EVENTFD2,
	unix.SYS_FTRUNCATE, unix.SYS_LSEEK, // a file: serial log replaced once the machine starts
	unix.SYS_IOCTL, // Xen: privcmd DM_OP, MMAPBATCH_V2, MMAP_RESOURCE; evtchn NOTIFY, BIND, UNBIND
	// QMP: connections on the listening sockets, add-fd's SCM_RIGHTS;
	// the socket files' removal at exit (ENOENT in the empty root).
	unix.SYS_ACCEPT4, unix.SYS_GETSOCKNAME, unix.SYS_RECVMSG,
	unix.SYS_UNLINKAT,
	// Added from the code rather than measured, for what the devices
	// merged after the measurement do once deprivileged (the box's
	// save-restore scenario died of SIGSYS without fcntl):
	// add-fd's descriptors (FDSets.Open: F_GETFL, F_DUPFD_CLOEXEC) and
	// the image locks (OFD locks); the block layer's I/O on images
	// opened before the drop (pwrite64, fdatasync, fallocate for
	// discard and write-zeroes, fstat for their size); the sockets
	// VNC and the metrics endpoint accept (Go sets TCP_NODELAY and
	// keep-alive on them; getpeername for query-vnc's clients); VNC
	// authentication's random challenge; and ending the user-mode
	// network child started before the drop (Go's os.Process: pidfd
	// signal and waitid, or kill and wait4).
	unix.SYS_FCNTL,
	unix.SYS_PWRITE64, unix.SYS_FDATASYNC, unix.SYS_FSYNC, unix.SYS_FALLOCATE, unix.SYS_FSTAT,
	unix.SYS_SETSOCKOPT, unix.SYS_GETSOCKOPT, unix.SYS_GETPEERNAME,
	unix.SYS_GETRANDOM,
	unix.SYS_PIDFD_SEND_SIGNAL, unix.SYS_WAITID, unix.SYS_KILL, unix.SYS_WAIT4,
}

// errnoCalls are answered with an error instead of killing: clone3,
// whose flags a filter cannot read (glibc then uses clone, whose flags it
// can), and openat, which glibc's allocator tries in a new thread
// (/sys/devices/system/cpu/online) and which has nothing to open in the
// empty root anyway.
var errnoCalls = []struct{ nr, errno uint32 }{
	{unix.SYS_CLONE3, uint32(unix.ENOSYS)},
	{unix.SYS_OPENAT, uint32(unix.EACCES)},
}

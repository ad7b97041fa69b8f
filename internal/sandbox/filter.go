package sandbox

import "golang.org/x/sys/unix"

// Offsets in struct seccomp_data (Linux include/uapi/linux/seccomp.h:
// int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]).
const (
	offNr    = 0
	offArch  = 4
	offArg0  = 16 // low 32 bits of args[0] on a little-endian machine
	x32Bit   = 0x40000000
	cloneThr = unix.CLONE_THREAD
)

func stmt(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }

func jump(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
}

// Program is the allow-list filter for arch (an AUDIT_ARCH_ value):
// allowed calls return SECCOMP_RET_ALLOW, clone only with CLONE_THREAD
// in its flags (threads, never a new process), the errnos answered with
// their error (SECCOMP_RET_ERRNO), everything else — and
// any call made under another ABI — returns deny (SECCOMP_RET_KILL_PROCESS,
// or SECCOMP_RET_LOG while debugging). Each allowed number is a
// compare-and-return pair, so no jump is longer than the 8-bit offsets
// allow however long the list.
func Program(arch uint32, allowed []uint32, errnos []struct{ nr, errno uint32 }, clone int, deny uint32) []unix.SockFilter {
	p := []unix.SockFilter{
		stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, offArch),
		jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, arch, 1, 0),
		stmt(unix.BPF_RET|unix.BPF_K, unix.SECCOMP_RET_KILL_PROCESS),
		stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, offNr),
		// x86-64's x32 ABI shares AUDIT_ARCH_X86_64 with these numbers.
		jump(unix.BPF_JMP|unix.BPF_JGE|unix.BPF_K, x32Bit, 0, 1),
		stmt(unix.BPF_RET|unix.BPF_K, unix.SECCOMP_RET_KILL_PROCESS),
	}
	for _, nr := range allowed {
		p = append(p,
			jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, nr, 0, 1),
			stmt(unix.BPF_RET|unix.BPF_K, unix.SECCOMP_RET_ALLOW))
	}
	for _, e := range errnos {
		p = append(p,
			jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, e.nr, 0, 1),
			stmt(unix.BPF_RET|unix.BPF_K, unix.SECCOMP_RET_ERRNO|e.errno&unix.SECCOMP_RET_DATA))
	}
	if clone >= 0 {
		p = append(p,
			jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, uint32(clone), 0, 3),
			stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, offArg0),
			jump(unix.BPF_JMP|unix.BPF_JSET|unix.BPF_K, cloneThr, 0, 1),
			stmt(unix.BPF_RET|unix.BPF_K, unix.SECCOMP_RET_ALLOW))
	}
	return append(p, stmt(unix.BPF_RET|unix.BPF_K, deny))
}

// Allowed lists the system calls the filter allows on this architecture
// (clone aside), by number; nil where there is no list.
func Allowed() []uint32 { return allowed }

package sandbox

import (
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"os/user"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// run interprets the classic-BPF subset Program emits over a
// struct seccomp_data (nr, arch, args[0]) and returns the action.
func run(t *testing.T, p []unix.SockFilter, arch, nr uint32, arg0 uint64) uint32 {
	t.Helper()
	var data [64]byte
	binary.LittleEndian.PutUint32(data[offNr:], nr)
	binary.LittleEndian.PutUint32(data[offArch:], arch)
	binary.LittleEndian.PutUint64(data[offArg0:], arg0)
	var a uint32
	for pc := 0; pc < len(p); pc++ {
		in := p[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			a = binary.LittleEndian.Uint32(data[in.K:])
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K, unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K:
			var ok bool
			switch in.Code &^ (unix.BPF_JMP | unix.BPF_K) {
			case unix.BPF_JEQ:
				ok = a == in.K
			case unix.BPF_JGE:
				ok = a >= in.K
			case unix.BPF_JSET:
				ok = a&in.K != 0
			}
			if ok {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case unix.BPF_RET | unix.BPF_K:
			return in.K
		default:
			t.Fatalf("instruction %d: unknown code %#x", pc, in.Code)
		}
	}
	t.Fatal("program ran off its end")
	return 0
}

func TestProgram(t *testing.T) {
	const arch = unix.AUDIT_ARCH_X86_64
	p := Program(arch, []uint32{0, 1, 300}, []struct{ nr, errno uint32 }{{435, uint32(unix.ENOSYS)}}, 56, unix.SECCOMP_RET_LOG)
	kill := uint32(unix.SECCOMP_RET_KILL_PROCESS)
	for _, tc := range []struct {
		name     string
		arch, nr uint32
		arg0     uint64
		want     uint32
	}{
		{"allowed", arch, 1, 0, unix.SECCOMP_RET_ALLOW},
		{"allowed, last", arch, 300, 0, unix.SECCOMP_RET_ALLOW},
		{"not allowed: deny action", arch, 59, 0, unix.SECCOMP_RET_LOG},
		{"other architecture", unix.AUDIT_ARCH_I386, 1, 0, kill},
		{"x32 number", arch, 0x40000000 | 1, 0, kill},
		{"errno", arch, 435, 0, unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
		{"thread", arch, 56, unix.CLONE_VM | unix.CLONE_THREAD | unix.CLONE_SIGHAND, unix.SECCOMP_RET_ALLOW},
		{"fork", arch, 56, uint64(syscall.SIGCHLD), unix.SECCOMP_RET_LOG},
		{"vfork-like", arch, 56, unix.CLONE_VM | unix.CLONE_VFORK, unix.SECCOMP_RET_LOG},
	} {
		if got := run(t, p, tc.arch, tc.nr, tc.arg0); got != tc.want {
			t.Errorf("%s: %#x, want %#x", tc.name, got, tc.want)
		}
	}
	// The real list is long: every jump still lands inside the program.
	p = Program(auditArch, allowed, errnoCalls, cloneNr, kill)
	for i, in := range p {
		if in.Code&0x07 == unix.BPF_JMP && (i+1+int(in.Jt) >= len(p) || i+1+int(in.Jf) >= len(p)) {
			t.Errorf("instruction %d jumps out of the program", i)
		}
	}
}

func TestParseModeAndIdentity(t *testing.T) {
	for s, want := range map[string]Mode{"on": On, "": On, "log": Log, "off": Off} {
		if m, err := ParseMode(s); err != nil || m != want {
			t.Errorf("ParseMode(%q) = %v, %v", s, m, err)
		}
	}
	if _, err := ParseMode("yes"); err == nil || err.Error() != `"yes": want on, log or off` {
		t.Errorf("ParseMode(yes) = %v", err)
	}
	none := func(string) (*user.User, error) { return nil, user.UnknownUserError("x") }
	if uid, gid, per, err := Identity("", 7, none); err != nil || uid != DefaultUIDBase+7 || gid != DefaultUIDBase+7 || !per {
		t.Errorf("default identity of dom 7 = %d:%d %v %v", uid, gid, per, err)
	}
	libxl := func(n string) (*user.User, error) {
		if n == "xen-qemuuser-range-base" {
			return &user.User{Uid: "131072", Gid: "130"}, nil
		}
		return nil, user.UnknownUserError(n)
	}
	if uid, gid, per, err := Identity("", 7, libxl); err != nil || uid != 131079 || gid != 130 || !per {
		t.Errorf("libxl-range identity of dom 7 = %d:%d %v %v", uid, gid, per, err)
	}
	if uid, gid, per, err := Identity("131079:0", 7, none); err != nil || uid != 131079 || gid != 0 || !per {
		t.Errorf("UID:GID = %d:%d %v %v", uid, gid, per, err)
	}
	for _, bad := range []string{"x:0", "1:-2", "-1:1", "4294967295:1"} {
		if _, _, _, err := Identity(bad, 7, none); err == nil || !strings.Contains(err.Error(), "want a user name or UID:GID") {
			t.Errorf("Identity(%q) = %v", bad, err)
		}
	}
	if _, _, _, err := Identity("nobody-godm", 7, none); err == nil || !strings.HasPrefix(err.Error(), "-runas nobody-godm:") {
		t.Errorf("unknown user: %v", err)
	}
}

const filterChildEnv = "GODM_TEST_SECCOMP_CHILD"

func TestMain(m *testing.M) {
	if what := os.Getenv(filterChildEnv); what != "" {
		os.Exit(filterChild(what))
	}
	os.Exit(m.Run())
}

// filterChild installs the filter (no root needed: no_new_privs) and
// makes one call: "read" (allowed: exits 0), "clone3" (ENOSYS: exits 0),
// "mount" or "fork" (forbidden: killed).
func filterChild(what string) int {
	if err := installFilter(false); err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		return 3
	}
	switch what {
	case "read":
		var b [1]byte
		if _, err := unix.Read(0, b[:]); err != nil && !errors.Is(err, unix.EAGAIN) {
			return 4
		}
		return 0
	case "clone3":
		if _, _, e := unix.RawSyscall(unix.SYS_CLONE3, 0, 0, 0); e != unix.ENOSYS {
			return 5
		}
		return 0
	case "mount":
		unix.RawSyscall(unix.SYS_MOUNT, 0, 0, 0)
	case "fork":
		unix.RawSyscall(unix.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0)
	}
	return 6
}

// TestFilterKills installs the real filter in a child process: allowed
// and errno calls return, a forbidden call and a fork kill the process
// with SIGSYS.
func TestFilterKills(t *testing.T) {
	if allowed == nil {
		t.Skip("no allow-list on this architecture")
	}
	for _, tc := range []struct {
		what   string
		killed bool
	}{{"read", false}, {"clone3", false}, {"mount", true}, {"fork", true}} {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), filterChildEnv+"="+tc.what)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		switch {
		case !tc.killed && err != nil:
			t.Errorf("%s: %v (%s), want a clean exit", tc.what, err, out)
		case tc.killed && !errors.As(err, &ee):
			t.Errorf("%s: %v, want killed by SIGSYS", tc.what, err)
		case tc.killed:
			if ws := ee.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGSYS {
				t.Errorf("%s: %v (%s), want killed by SIGSYS", tc.what, ws, out)
			}
		}
	}
}

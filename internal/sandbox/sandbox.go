package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Mode selects how much of the sandbox applies.
type Mode int

const (
	// On is the default: everything, and a call outside the allow-list
	// kills the process (SECCOMP_RET_KILL_PROCESS).
	On Mode = iota
	// Log is On, except that a call outside the allow-list is allowed and
	// logged by the kernel (SECCOMP_RET_LOG: the audit log or dmesg), to
	// find what a new path needs.
	Log
	// Off skips the sandbox (the caller logs a warning). Handles are not
	// restricted either.
	Off
)

// ParseMode reads on, log or off.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "on", "":
		return On, nil
	case "log":
		return Log, nil
	case "off":
		return Off, nil
	}
	return On, fmt.Errorf("%q: want on, log or off", s)
}

func (m Mode) String() string {
	switch m {
	case On:
		return "on"
	case Log:
		return "log"
	case Off:
		return "off"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// Config is what Apply does.
type Config struct {
	Mode Mode
	// Dom is the served domain: the default user is derived from it.
	Dom int
	// Chroot is the directory to chroot into; empty: a fresh empty
	// directory that is removed before godm enters it, so nothing is
	// left on the host and nothing can be created in it.
	Chroot string
	// User is the user to switch to: a name from the passwd file (its
	// primary group, no supplementary groups) or "UID:GID"; empty: the
	// per-domain user, libxl's convention (xen-qemuuser-range-base's uid
	// plus Dom, its gid) when that user exists, else DefaultUIDBase+Dom.
	// Only root switches users: a godm started unprivileged keeps its
	// user and its root directory unless they were asked for.
	User string
	// WritesFiles keeps RLIMIT_FSIZE (a file: serial log, a disk image);
	// otherwise it is 0: no write may grow a file. It is kept too when
	// the standard output or error is a regular file (libxl sends the
	// device model's to /var/log/xen/qemu-dm-NAME.log).
	WritesFiles bool
}

// DefaultUIDBase is the first uid of godm's own per-domain range, used
// when the host has no xen-qemuuser-range-base user: far above the
// ranges distributions and container runtimes hand out, below 2^31.
const DefaultUIDBase = 0x70000000

// libxlRangeBase is the user libxl derives its per-domain device-model
// users from (libxl_dm.c LIBXL_QEMU_USER_RANGE_BASE; xl.cfg(5)).
const libxlRangeBase = "xen-qemuuser-range-base"

// Limits applied (RLIMIT_NOFILE, RLIMIT_NPROC for a per-domain user).
const (
	MaxFiles   = 1024
	MaxThreads = 1024
)

// Report says what Apply did.
type Report struct {
	UID, GID int    // -1: unchanged
	Root     string // the chroot, "" unchanged
	Seccomp  bool
}

// Identity resolves a user as Config.User does; perDomain reports that
// the user is the domain's own (RLIMIT_NPROC counts only godm's threads).
func Identity(who string, dom int, lookup func(string) (*user.User, error)) (uid, gid int, perDomain bool, err error) {
	if who == "" {
		if u, err := lookup(libxlRangeBase); err == nil {
			uid, err1 := strconv.Atoi(u.Uid)
			gid, err2 := strconv.Atoi(u.Gid)
			if err1 != nil || err2 != nil {
				return -1, -1, false, fmt.Errorf("user %s: uid %q gid %q", libxlRangeBase, u.Uid, u.Gid)
			}
			return uid + dom, gid, true, nil
		}
		return DefaultUIDBase + dom, DefaultUIDBase + dom, true, nil
	}
	if u, g, ok := strings.Cut(who, ":"); ok {
		var err1, err2 error
		uid, err1 = strconv.Atoi(u)
		gid, err2 = strconv.Atoi(g)
		if err1 != nil || err2 != nil || uid < 0 || gid < 0 || uid >= 1<<32-1 || gid >= 1<<32-1 {
			return -1, -1, false, fmt.Errorf("-runas %s: want a user name or UID:GID", who)
		}
		// libxl's numeric form is its per-domain range.
		return uid, gid, true, nil
	}
	u, err := lookup(who)
	if err != nil {
		return -1, -1, false, fmt.Errorf("-runas %s: %w", who, err)
	}
	if uid, err = strconv.Atoi(u.Uid); err != nil {
		return -1, -1, false, fmt.Errorf("-runas %s: uid %q", who, u.Uid)
	}
	if gid, err = strconv.Atoi(u.Gid); err != nil {
		return -1, -1, false, fmt.Errorf("-runas %s: gid %q", who, u.Gid)
	}
	return uid, gid, false, nil
}

// Apply deprivileges the process; with Mode Off it does nothing. Every
// file, socket and mapping godm needs must be open already. On error the
// process may be half-deprivileged: the caller exits.
func Apply(cfg Config) (Report, error) {
	rep := Report{UID: -1, GID: -1}
	if cfg.Mode == Off {
		return rep, nil
	}
	root := os.Geteuid() == 0
	uid, gid, perDomain := -1, -1, false
	if root || cfg.User != "" {
		var err error
		// Resolved before the chroot hides /etc/passwd.
		if uid, gid, perDomain, err = Identity(cfg.User, cfg.Dom, user.Lookup); err != nil {
			return rep, err
		}
	}
	if err := limits(cfg.WritesFiles || stdioIsFile(), perDomain && uid != 0); err != nil {
		return rep, err
	}
	if root || cfg.Chroot != "" {
		dir, err := chroot(cfg.Chroot)
		if err != nil {
			return rep, err
		}
		rep.Root = dir
	}
	if uid >= 0 {
		// Go's Setuid and friends change every thread (Go >= 1.16).
		if err := syscall.Setgroups(nil); err != nil {
			return rep, fmt.Errorf("setgroups: %w", err)
		}
		if err := syscall.Setgid(gid); err != nil {
			return rep, fmt.Errorf("setgid %d: %w", gid, err)
		}
		if err := syscall.Setuid(uid); err != nil {
			return rep, fmt.Errorf("setuid %d: %w", uid, err)
		}
		rep.UID, rep.GID = uid, gid
	}
	if err := installFilter(cfg.Mode == Log); err != nil {
		return rep, err
	}
	rep.Seccomp = true
	return rep, nil
}

// limits sets the resource limits: at most MaxFiles descriptors, no core
// dump (guest memory is mapped), no file growth unless files are written,
// and, for a per-domain user, at most MaxThreads tasks (the Go runtime's
// threads count; a user shared with other processes would count theirs
// too, so it is left alone then).
func limits(writesFiles, nproc bool) error {
	set := func(name string, res int, v uint64) error {
		var cur unix.Rlimit
		if err := unix.Getrlimit(res, &cur); err != nil {
			return fmt.Errorf("getrlimit %s: %w", name, err)
		}
		l := unix.Rlimit{Cur: min(v, cur.Max), Max: min(v, cur.Max)}
		if err := unix.Setrlimit(res, &l); err != nil {
			return fmt.Errorf("setrlimit %s %d: %w", name, v, err)
		}
		return nil
	}
	if err := set("RLIMIT_CORE", unix.RLIMIT_CORE, 0); err != nil {
		return err
	}
	if err := set("RLIMIT_NOFILE", unix.RLIMIT_NOFILE, MaxFiles); err != nil {
		return err
	}
	if !writesFiles {
		if err := set("RLIMIT_FSIZE", unix.RLIMIT_FSIZE, 0); err != nil {
			return err
		}
	}
	if nproc {
		if err := set("RLIMIT_NPROC", unix.RLIMIT_NPROC, MaxThreads); err != nil {
			return err
		}
	}
	return nil
}

// chroot enters dir, or, when dir is empty, a fresh directory that is
// removed first (entered through the working directory, which may be an
// unlinked directory): an empty root in which nothing can be created.
// It returns the directory's name.
func chroot(dir string) (string, error) {
	if dir != "" {
		if err := syscall.Chroot(dir); err != nil {
			return "", fmt.Errorf("-chroot %s: %w", dir, err)
		}
		if err := syscall.Chdir("/"); err != nil {
			return "", fmt.Errorf("-chroot %s: chdir /: %w", dir, err)
		}
		return dir, nil
	}
	tmp, err := os.MkdirTemp("", "godm-root-")
	if err != nil {
		return "", fmt.Errorf("empty root: %w", err)
	}
	if err := os.Chmod(tmp, 0o555); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("empty root: %w", err)
	}
	if err := syscall.Chdir(tmp); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("empty root: %w", err)
	}
	if err := os.Remove(tmp); err != nil {
		return "", fmt.Errorf("empty root: %w", err)
	}
	if err := syscall.Chroot("."); err != nil {
		return "", fmt.Errorf("empty root: chroot %s: %w", tmp, err)
	}
	if err := syscall.Chdir("/"); err != nil {
		return "", fmt.Errorf("empty root: chdir /: %w", err)
	}
	return tmp + " (deleted)", nil
}

// ErrUnsupported is returned on architectures without an allow-list.
var ErrUnsupported = errors.New("seccomp: no allow-list for this architecture")

// stdioIsFile reports whether the standard output or error is a regular
// file, which RLIMIT_FSIZE 0 would stop growing.
func stdioIsFile() bool {
	for _, fd := range []int{1, 2} {
		var st unix.Stat_t
		if unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
			return true
		}
	}
	return false
}

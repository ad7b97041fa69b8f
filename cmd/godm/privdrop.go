package main

import (
	"fmt"
	"os/user"
	"strconv"
	"strings"
	"syscall"
)

// dropPrivileges does QEMU's -chroot DIR and -runas USER (os-posix.c
// os_setup_post: chroot and chdir("/"), then setgid, setgroups and
// setuid), once every handle godm needs is open. USER is a name looked up
// in the passwd file (its primary group, no supplementary groups), or
// libxl's "UID:GID" for the per-domain user range (libxl_dm.c). Go's
// syscall.Setuid and friends change every thread of the process (since
// Go 1.16), so no goroutine keeps root.
func dropPrivileges(chroot, who string) error {
	uid, gid := -1, -1
	if who != "" {
		// Resolve before the chroot hides /etc/passwd.
		if u, g, ok := strings.Cut(who, ":"); ok {
			var err1, err2 error
			uid, err1 = strconv.Atoi(u)
			gid, err2 = strconv.Atoi(g)
			if err1 != nil || err2 != nil || uid < 0 || gid < 0 {
				return fmt.Errorf("-runas %s: want a user name or UID:GID", who)
			}
		} else {
			u, err := user.Lookup(who)
			if err != nil {
				return fmt.Errorf("-runas %s: %w", who, err)
			}
			if uid, err = strconv.Atoi(u.Uid); err != nil {
				return fmt.Errorf("-runas %s: uid %q", who, u.Uid)
			}
			if gid, err = strconv.Atoi(u.Gid); err != nil {
				return fmt.Errorf("-runas %s: gid %q", who, u.Gid)
			}
		}
	}
	if chroot != "" {
		if err := syscall.Chroot(chroot); err != nil {
			return fmt.Errorf("-chroot %s: %w", chroot, err)
		}
		if err := syscall.Chdir("/"); err != nil {
			return fmt.Errorf("-chroot %s: chdir /: %w", chroot, err)
		}
	}
	if uid >= 0 {
		if err := syscall.Setgroups(nil); err != nil {
			return fmt.Errorf("-runas %s: setgroups: %w", who, err)
		}
		if err := syscall.Setgid(gid); err != nil {
			return fmt.Errorf("-runas %s: setgid: %w", who, err)
		}
		if err := syscall.Setuid(uid); err != nil {
			return fmt.Errorf("-runas %s: setuid: %w", who, err)
		}
	}
	return nil
}

package main

import (
	"strings"
	"testing"
)

// Bad -runas values are refused before anything changes (no chroot, no
// uid switch: the test process keeps its identity).
func TestDropPrivilegesRefuses(t *testing.T) {
	for _, tc := range []struct{ chroot, user, want string }{
		{"", "x:0", "-runas x:0: want a user name or UID:GID"},
		{"", "1:-2", "-runas 1:-2: want a user name or UID:GID"},
		{"", "no-such-user-godm", "-runas no-such-user-godm:"},
		{"/nonexistent/godm-root", "", "-chroot /nonexistent/godm-root:"},
	} {
		err := dropPrivileges(tc.chroot, tc.user)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("dropPrivileges(%q, %q) = %v, want %q...", tc.chroot, tc.user, err, tc.want)
		}
	}
}

//go:build !amd64

package sandbox

var allowed []uint32

const (
	auditArch = 0
	cloneNr   = -1
)

var errnoCalls []struct{ nr, errno uint32 }

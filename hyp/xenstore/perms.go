package xenstore

import (
	"fmt"
	"strconv"

	"godm/hyp"
	"golang.org/x/sys/unix"
)

// Access is a node access right: the XS_PERM_READ and XS_PERM_WRITE bits
// of xenstore_lib.h.
type Access uint8

// The four access values and their letters on the wire.
const (
	AccessNone  Access = 0                        // 'n'
	AccessRead  Access = 1                        // 'r' (XS_PERM_READ)
	AccessWrite Access = 2                        // 'w' (XS_PERM_WRITE)
	AccessBoth  Access = AccessRead | AccessWrite // 'b'
)

// Letter returns the wire letter of a ('n', 'r', 'w' or 'b'); a value
// outside the four gives '?'.
func (a Access) Letter() byte {
	switch a {
	case AccessNone:
		return 'n'
	case AccessRead:
		return 'r'
	case AccessWrite:
		return 'w'
	case AccessBoth:
		return 'b'
	}
	return '?'
}

// Perm is one entry of a node's permission list. In a list, the first
// entry names the owner domain and the access of every domain not listed
// later; the following entries grant Access to Dom.
type Perm struct {
	Dom    hyp.DomID
	Access Access
}

// String returns the wire form, e.g. "r5" or "n0" (xenstore_perm_to_string).
func (p Perm) String() string {
	return string(p.Access.Letter()) + strconv.Itoa(int(p.Dom))
}

// ParsePerm parses a wire permission: one of the letters n, r, w, b
// followed by a decimal domain id. As in libxenstore (strtol of an empty
// string), a missing id means domain 0, so "w" is "w0". Anything else is
// an error wrapping unix.EINVAL.
func ParsePerm(s string) (Perm, error) {
	if s == "" {
		return Perm{}, fmt.Errorf("xenstore: empty permission: %w", unix.EINVAL)
	}
	var p Perm
	switch s[0] {
	case 'n':
		p.Access = AccessNone
	case 'r':
		p.Access = AccessRead
	case 'w':
		p.Access = AccessWrite
	case 'b':
		p.Access = AccessBoth
	default:
		return Perm{}, fmt.Errorf("xenstore: permission %q: bad access letter: %w", s, unix.EINVAL)
	}
	if len(s) > 1 {
		id, err := strconv.ParseUint(s[1:], 10, 16)
		if err != nil {
			return Perm{}, fmt.Errorf("xenstore: permission %q: bad domain id: %w", s, unix.EINVAL)
		}
		p.Dom = hyp.DomID(id)
	}
	return p, nil
}

// ParsePerms parses an XS_GET_PERMS reply payload.
func ParsePerms(payload []byte) ([]Perm, error) {
	strs, err := SplitStrings(payload)
	if err != nil {
		return nil, err
	}
	if len(strs) == 0 {
		return nil, fmt.Errorf("%w: empty permission list", ErrProtocol)
	}
	perms := make([]Perm, len(strs))
	for i, s := range strs {
		if perms[i], err = ParsePerm(s); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrProtocol, err)
		}
	}
	return perms, nil
}

// AppendPerms appends perms as nul-terminated wire strings to b.
func AppendPerms(b []byte, perms []Perm) []byte {
	for _, p := range perms {
		b = append(b, p.Access.Letter())
		b = strconv.AppendUint(b, uint64(p.Dom), 10)
		b = append(b, 0)
	}
	return b
}

package netback

import "fmt"

// ParseMAC reads a unicast MAC address as QEMU's MAC properties take it
// ("xx:xx:xx:xx:xx:xx", or '-' separators; hw/core/qdev-properties-system.c
// set_mac). The error is one line without the option's name.
func ParseMAC(s string) ([6]byte, error) {
	var m [6]byte
	bad := fmt.Errorf("'%s' is not a MAC address (xx:xx:xx:xx:xx:xx)", s)
	if len(s) != 17 {
		return m, bad
	}
	for i := range 6 {
		if i > 0 && s[3*i-1] != ':' && s[3*i-1] != '-' {
			return m, bad
		}
		var v byte
		for _, c := range []byte(s[3*i : 3*i+2]) {
			switch {
			case c >= '0' && c <= '9':
				v = v<<4 | (c - '0')
			case c >= 'a' && c <= 'f':
				v = v<<4 | (c - 'a' + 10)
			case c >= 'A' && c <= 'F':
				v = v<<4 | (c - 'A' + 10)
			default:
				return m, bad
			}
		}
		m[i] = v
	}
	if m[0]&1 != 0 {
		return m, fmt.Errorf("'%s' is a multicast address", s)
	}
	return m, nil
}

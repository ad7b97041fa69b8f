package vnc

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"godm/internal/qemuopts"
)

// BasePort is display 0's TCP port (RFC 6143 §1: 5900 + display number).
const BasePort = 5900

// Options is a parsed -vnc argument.
type Options struct {
	Enabled  bool   // false for "-vnc none"
	Host     string // listen address, "" for every address
	Display  int    // port = BasePort + Display
	To       int    // last display to try when Display's port is busy (to=)
	Password bool   // password=on: VNC Authentication, no login until a password is set
}

// ParseOption parses libxl's -vnc forms: "none", or
// "HOST:DISPLAY[,password=on][,to=N]" with HOST an IPv4 address, a name,
// "[IPv6]" or empty (QEMU's ui/vnc.c vnc_display_open; the "to" key is the
// highest display number to try, QEMU's qemu-options.hx). Other keys are
// refused by name.
func ParseOption(arg string) (Options, error) {
	o, err := qemuopts.Parse("vnc", arg, "vnc")
	if err != nil {
		return Options{}, err
	}
	addr, err := o.Require("vnc")
	if err != nil {
		return Options{}, err
	}
	if addr == "none" {
		if err := o.CheckUnused(); err != nil {
			return Options{}, err
		}
		return Options{}, nil
	}
	opts := Options{Enabled: true}
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return Options{}, fmt.Errorf("-vnc %s: want HOST:DISPLAY or none", addr)
	}
	host, disp := addr[:i], addr[i+1:]
	if strings.HasPrefix(host, "[") {
		if !strings.HasSuffix(host, "]") {
			return Options{}, fmt.Errorf("-vnc %s: unterminated [IPv6] address", addr)
		}
		host = host[1 : len(host)-1]
		if ip := net.ParseIP(host); ip == nil || ip.To4() != nil {
			return Options{}, fmt.Errorf("-vnc %s: %q is not an IPv6 address", addr, host)
		}
	} else if strings.ContainsAny(host, ":[]") {
		return Options{}, fmt.Errorf("-vnc %s: put an IPv6 address in brackets", addr)
	}
	n, err := strconv.Atoi(disp)
	if err != nil || n < 0 || n > 65535-BasePort {
		return Options{}, fmt.Errorf("-vnc %s: display %q is not a number from 0 to %d", addr, disp, 65535-BasePort)
	}
	opts.Host, opts.Display, opts.To = host, n, n
	if opts.Password, err = o.Bool("password", false); err != nil {
		return Options{}, err
	}
	if o.Has("to") {
		to, err := o.Uint("to", 0)
		if err != nil {
			return Options{}, err
		}
		if to < uint64(n) || to > 65535-BasePort {
			return Options{}, fmt.Errorf("-vnc %s: to=%d must be from the display number %d to %d", arg, to, n, 65535-BasePort)
		}
		opts.To = int(to)
	}
	if err := o.CheckUnused(); err != nil {
		return Options{}, err
	}
	return opts, nil
}

// ErrDisabled is returned by Listen for "-vnc none".
var ErrDisabled = errors.New("vnc: disabled")

// Listen opens the TCP listener: the display's port, or with to= the first
// free one up to BasePort+To (QEMU's behaviour).
func (o Options) Listen() (net.Listener, error) {
	if !o.Enabled {
		return nil, ErrDisabled
	}
	var last error
	for d := o.Display; d <= o.To; d++ {
		ln, err := net.Listen("tcp", net.JoinHostPort(o.Host, strconv.Itoa(BasePort+d)))
		if err == nil {
			return ln, nil
		}
		last = err
	}
	return nil, fmt.Errorf("vnc: no free display from %d to %d: %w", o.Display, o.To, last)
}

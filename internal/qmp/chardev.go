package qmp

import (
	"net"

	"godm/internal/qemuopts"
	"godm/internal/unixsock"
)

// ParseMon reads a "-mon" option as libxl writes it ("chardev=libxl-cmd,
// mode=control") and returns the chardev id the monitor serves on. Only
// QMP monitors are served: mode=readline (HMP) and pretty=on are refused.
func ParseMon(o *qemuopts.Opts) (chardev string, err error) {
	chardev, err = o.Require("chardev")
	if err != nil {
		return "", err
	}
	if mode := o.String("mode", "readline"); mode != "control" {
		return "", o.Errorf("mode=%s is not supported: godm serves QMP monitors only (mode=control)", mode)
	}
	pretty, err := o.Bool("pretty", false)
	if err != nil {
		return "", err
	}
	if pretty {
		return "", o.Errorf("pretty=on is not supported")
	}
	if err := o.CheckUnused(); err != nil {
		return "", err
	}
	return chardev, nil
}

// ListenChardev opens the listening socket a monitor's "-chardev" describes,
// in the two forms libxl writes: "socket,id=ID,path=PATH,server=on,wait=off"
// (a stale socket file is replaced, see unixsock.Listen) and
// "socket,id=ID,fd=N,server=on,wait=off" (the socket libxl pre-opened for
// dm_restrict). It returns the chardev's id. Every other form is refused
// with a message naming what is not supported.
func ListenChardev(o *qemuopts.Opts) (id string, ln *net.UnixListener, err error) {
	if b := o.String("backend", ""); b != "socket" {
		return "", nil, o.Errorf("a QMP monitor needs a socket chardev, not %q", b)
	}
	id, err = o.Require("id")
	if err != nil {
		return "", nil, err
	}
	server, err := o.Bool("server", false)
	if err != nil {
		return "", nil, err
	}
	if !server {
		return "", nil, o.Errorf("server=off (connecting out to a client) is not supported: use server=on")
	}
	// QEMU's default for a server is to wait for a client before starting.
	wait, err := o.Bool("wait", true)
	if err != nil {
		return "", nil, err
	}
	if wait {
		return "", nil, o.Errorf("wait=on (wait for a client before starting) is not supported: use wait=off")
	}
	hasPath, hasFD := o.Has("path"), o.Has("fd")
	switch {
	case hasPath && hasFD:
		return "", nil, o.Errorf("path and fd are exclusive")
	case !hasPath && !hasFD:
		return "", nil, o.Errorf("a unix socket needs path= or fd= (host/port TCP sockets are not supported)")
	}
	var fd uint64
	var path string
	if hasFD {
		fd, err = o.Uint("fd", 0)
		if err != nil {
			return "", nil, err
		}
		if fd > 1<<31-1 {
			return "", nil, o.Errorf("fd=%d is not a file descriptor", fd)
		}
	} else {
		path = o.String("path", "")
	}
	if err := o.CheckUnused(); err != nil {
		return "", nil, err
	}
	if hasFD {
		ln, err = unixsock.FromFD(int(fd))
	} else {
		ln, err = unixsock.Listen(path)
	}
	if err != nil {
		return "", nil, o.Errorf("%v", err)
	}
	return id, ln, nil
}

package xenstore

import (
	"context"
	"errors"
	"fmt"
	"net"

	"godm/hyp/kernel"
	"golang.org/x/sys/unix"
)

// DefaultRunDir is the xenstored run directory libxenstore uses when
// XENSTORED_RUNDIR is unset (XEN_RUN_STORED; Debian's libxenstore has
// /var/run/xenstored). The daemon's socket is "socket" in it.
const DefaultRunDir = "/var/run/xenstored"

// Environment variables libxenstore honours (tools/libs/store/xs.c,
// tools/include/xen-tools/xenstore-common.h).
const (
	// EnvPath overrides the daemon socket (and the xenbus device) path.
	EnvPath = "XENSTORED_PATH"
	// EnvRunDir overrides DefaultRunDir.
	EnvRunDir = "XENSTORED_RUNDIR"
)

// SocketPath returns the xenstored socket path libxenstore would try
// first: $XENSTORED_PATH, else $XENSTORED_RUNDIR/socket, else
// DefaultRunDir/socket. getenv looks variables up; nil means an empty
// environment.
func SocketPath(getenv func(string) string) string {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	if p := getenv(EnvPath); p != "" {
		return p
	}
	dir := getenv(EnvRunDir)
	if dir == "" {
		dir = DefaultRunDir
	}
	return dir + "/socket"
}

// Dial connects to xenstored's Unix socket at path.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("xenstore: dial %s: %w", path, err)
	}
	return New(conn), nil
}

// Config says where Open looks for xenstore.
type Config struct {
	// Getenv looks up environment variables (normally os.Getenv); nil
	// means an empty environment.
	Getenv func(string) string
	// Kernel opens the xenbus device when no socket answers; nil skips
	// the device.
	Kernel kernel.Kernel
}

// Open connects to xenstore the way libxenstore's xs_open does: first the
// daemon socket (SocketPath), then the xenbus device (kernel.Xenbus,
// /dev/xen/xenbus on a real dom0) through the kernel seam. Unlike
// libxenstore, a XENSTORED_PATH naming a device file rather than a socket
// is not opened directly; use the Kernel for devices.
func Open(ctx context.Context, cfg Config) (*Client, error) {
	path := SocketPath(cfg.Getenv)
	c, sockErr := Dial(ctx, path)
	if sockErr == nil {
		return c, nil
	}
	if cfg.Kernel == nil {
		return nil, sockErr
	}
	c, devErr := OpenXenbus(cfg.Kernel)
	if devErr == nil {
		return c, nil
	}
	return nil, errors.Join(sockErr, devErr)
}

// OpenXenbus opens the xenbus device (kernel.Xenbus) and returns a Client
// speaking the xenstore protocol over it. The file is opened non-blocking;
// the Client's reader waits for it with poll(2) on the file's Fd, so Close
// never hangs on a blocked read.
func OpenXenbus(k kernel.Kernel) (*Client, error) {
	f, err := k.Open(kernel.Xenbus, unix.O_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("xenstore: open xenbus: %w", err)
	}
	fc, err := newFileConn(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("xenstore: xenbus: %w", err)
	}
	return New(fc), nil
}

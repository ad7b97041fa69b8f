// Package userproc runs godm's user-mode networking (netback/usernet, on
// gVisor's netstack) in a child process, godm-usernet, and gives the
// device model an ordinary back-end for it: a SOCK_SEQPACKET socket pair
// whose every message is one Ethernet frame. The device model then links
// none of gVisor (measured: +2.6 MB of resident memory at start-up for
// the netstack's package initialisation alone), and the code that parses
// the network traffic of a guest's TCP/UDP flows runs in a process of its
// own (issue 18's direction).
//
// The child is started with the -netdev argument as its only argument
// and the socket as descriptor 3. Its first message is "OK" once its
// back-end runs, or "ERR <one line>" (a bad option, a host port already
// taken); after that, messages are frames both ways. It dies with its
// parent (Pdeathsig) and ends when the parent closes its end.
package userproc

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"godm/netback"

	"golang.org/x/sys/unix"
)

// Binary is the child's program name, looked up beside the running
// executable; EnvBinary overrides the path.
const (
	Binary    = "godm-usernet"
	EnvBinary = "GODM_USERNET"
)

// handshakeTimeout bounds the wait for the child's first message.
const handshakeTimeout = 30 * time.Second

// maxHandshake bounds the first message.
const maxHandshake = 4096

// Backend is the device model's side of a user-mode network in a child
// process.
type Backend struct {
	*netback.Tap
	cmd  *exec.Cmd
	once sync.Once
	err  error
}

var _ netback.Backend = (*Backend)(nil)

// Find returns the child's path: getenv(EnvBinary), else Binary beside
// the running executable.
func Find(getenv func(string) string) (string, error) {
	if p := getenv(EnvBinary); p != "" {
		return p, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding %s: %v", Binary, err)
	}
	p := filepath.Join(filepath.Dir(exe), Binary)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("user-mode networking runs in %s, which is not installed beside %s (or set %s)", Binary, exe, EnvBinary)
	}
	return p, nil
}

// Start runs the child at path for "-netdev ARG" and returns the
// back-end once the child reported its network running. id names it in
// errors. stderr receives the child's own output (nil: discarded).
func Start(path, arg, id string, stderr io.Writer) (*Backend, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("netdev %s: socketpair: %v", id, err)
	}
	child := os.NewFile(uintptr(fds[1]), "usernet-child")
	cmd := exec.Command(path, arg)
	cmd.ExtraFiles = []*os.File{child} // descriptor 3
	cmd.Stdout, cmd.Stderr = stderr, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		child.Close()
		unix.Close(fds[0])
		return nil, fmt.Errorf("netdev %s: starting %s: %v", id, path, err)
	}
	child.Close()
	fail := func(err error) (*Backend, error) {
		unix.Close(fds[0])
		cmd.Process.Kill()
		cmd.Wait()
		return nil, err
	}
	msg, err := readHandshake(fds[0])
	if err != nil {
		return fail(fmt.Errorf("netdev %s: %s gave no answer: %v", id, Binary, err))
	}
	switch {
	case msg == "OK":
	case strings.HasPrefix(msg, "ERR "):
		return fail(errors.New(strings.TrimPrefix(msg, "ERR ")))
	default:
		return fail(fmt.Errorf("netdev %s: %s answered %q", id, Binary, msg))
	}
	t, err := netback.OpenPacketFD(fds[0], "user:"+id, 0)
	if err != nil {
		return fail(err)
	}
	return &Backend{Tap: t, cmd: cmd}, nil
}

// readHandshake reads the child's first message, within handshakeTimeout.
func readHandshake(fd int) (string, error) {
	deadline := time.Now().Add(handshakeTimeout)
	buf := make([]byte, maxHandshake)
	for {
		ms := int(time.Until(deadline) / time.Millisecond)
		if ms <= 0 {
			return "", errors.New("timed out")
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, ms)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return "", err
		}
		if n == 0 {
			return "", errors.New("timed out")
		}
		n, err = unix.Read(fd, buf)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return "", err
		}
		if n == 0 {
			return "", errors.New("it exited")
		}
		return strings.TrimSpace(string(buf[:n])), nil
	}
}

// Close closes the socket, which ends the child, and reaps it.
func (b *Backend) Close() error {
	b.once.Do(func() {
		b.err = b.Tap.Close()
		done := make(chan struct{})
		go func() {
			b.cmd.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			b.cmd.Process.Kill()
			<-done
		}
	})
	return b.err
}

// Serve is the child's side: it reports err (nil: "OK") as its first
// message on the socket conn and, when err is nil, splices be to the
// socket until the parent closes its end. It returns be's Close error.
func Serve(conn int, be netback.Backend, err error) error {
	if err != nil {
		line := strings.ReplaceAll(err.Error(), "\n", "; ")
		unix.Write(conn, []byte("ERR "+line))
		unix.Close(conn)
		return err
	}
	if _, werr := unix.Write(conn, []byte("OK")); werr != nil {
		be.Close()
		return werr
	}
	peer, err := netback.OpenPacketFD(conn, "parent", 0)
	if err != nil {
		be.Close()
		return err
	}
	stop := netback.Splice(peer, be)
	<-peer.PeerClosed()
	stop()
	peer.Close()
	return be.Close()
}

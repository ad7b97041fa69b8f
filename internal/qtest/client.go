package qtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Options configure Start. The zero value starts "qemu-system-x86_64"
// from PATH with the base arguments only.
type Options struct {
	// Binary is the QEMU executable; empty means "qemu-system-x86_64"
	// looked up in PATH.
	Binary string
	// Args are appended to the base arguments, for example
	// []string{"-serial", "null"}.
	Args []string
	// Timeout bounds start-up and each command; zero means 10 s.
	Timeout time.Duration
	// Running starts the machine running (no -S) instead of stopped,
	// on a firmware that only halts its CPU (HaltFirmware): still no
	// guest code touches a device, but QEMU's run state is "running",
	// which its network layer needs to pass frames (net/net.c
	// qemu_can_send_packet). The virtual clock runs.
	Running bool
}

// BaseArgs returns the arguments every qtest QEMU gets before
// Options.Args: the i440FX "pc" machine under TCG, stopped (-S) so that no
// guest code runs and the virtual clock does not move, no display and no
// default devices.
func BaseArgs() []string {
	return []string{
		"-machine", "pc", "-accel", "tcg", "-S",
		"-qtest-log", "none", "-display", "none", "-nodefaults",
	}
}

// IRQEvent is one change of an intercepted interrupt input.
type IRQEvent struct {
	// Line is the input number (the I/O APIC pin for "ioapic").
	Line int
	// High is the new level.
	High bool
}

// String formats the event as QEMU does ("raise 4").
func (e IRQEvent) String() string {
	if e.High {
		return fmt.Sprintf("raise %d", e.Line)
	}
	return fmt.Sprintf("lower %d", e.Line)
}

// Reply is QEMU's answer to one command.
type Reply struct {
	// Words are the fields of the answer after "OK".
	Words []string
	// IRQs are the interrupt events that arrived before the answer.
	IRQs []IRQEvent
}

// Value parses the first answer word as a number ("0x0041").
func (r Reply) Value() (uint64, error) {
	if len(r.Words) == 0 {
		return 0, errors.New("qtest: answer has no value")
	}
	return strconv.ParseUint(r.Words[0], 0, 64)
}

// defaultTimeout bounds start-up and each command unless configured.
const defaultTimeout = 10 * time.Second

// SetTimeout sets the bound on each later command (zero: 10 s).
func (c *Client) SetTimeout(d time.Duration) {
	if d <= 0 {
		d = defaultTimeout
	}
	c.timeout = d
}

// ErrFailed is wrapped by errors for commands QEMU answered with FAIL.
var ErrFailed = errors.New("qtest: command failed")

// Client is a connection to one QEMU process.
type Client struct {
	cmd     *exec.Cmd
	dir     string
	ln      net.Listener
	conn    net.Conn
	r       *bufio.Reader
	timeout time.Duration
	stderr  *bytes.Buffer
	exited  chan struct{}
	waitErr error
}

// Find returns the path of the QEMU binary Start would use, or an error
// wrapping exec.ErrNotFound.
func Find(opt Options) (string, error) {
	bin := opt.Binary
	if bin == "" {
		bin = "qemu-system-x86_64"
	}
	return exec.LookPath(bin)
}

// HaltFirmware is a 64 KiB BIOS image whose reset vector (its last 16
// bytes, at 0xfffffff0) is "cli; hlt; jmp $-3": the CPU stops at once.
func HaltFirmware() []byte {
	b := make([]byte, 64<<10)
	copy(b[len(b)-16:], []byte{0xfa, 0xf4, 0xeb, 0xfd})
	return b
}

// Start launches QEMU and connects to its qtest socket.
func Start(opt Options) (c *Client, err error) {
	bin, err := Find(opt)
	if err != nil {
		return nil, fmt.Errorf("qtest: %w", err)
	}
	timeout := opt.Timeout
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	dir, err := os.MkdirTemp("", "qtest")
	if err != nil {
		return nil, fmt.Errorf("qtest: temp dir: %w", err)
	}
	c = &Client{dir: dir, timeout: timeout, stderr: &bytes.Buffer{}, exited: make(chan struct{})}
	started := c // the error returns below clear c
	defer func() {
		if err != nil {
			started.Close()
		}
	}()
	sock := filepath.Join(dir, "qtest.sock")
	if c.ln, err = net.Listen("unix", sock); err != nil {
		return nil, fmt.Errorf("qtest: listen %s: %w", sock, err)
	}
	base := BaseArgs()
	if opt.Running {
		fw := filepath.Join(dir, "halt.bin")
		if err = os.WriteFile(fw, HaltFirmware(), 0o600); err != nil {
			return nil, fmt.Errorf("qtest: %w", err)
		}
		base = []string{"-machine", "pc", "-accel", "tcg", "-bios", fw,
			"-qtest-log", "none", "-display", "none", "-nodefaults"}
	}
	args := append(base, "-qtest", "unix:"+sock)
	args = append(args, opt.Args...)
	c.cmd = exec.Command(bin, args...)
	c.cmd.Stderr = c.stderr
	c.cmd.Stdout = c.stderr
	if err = c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("qtest: start %s: %w", bin, err)
	}
	go func() {
		c.waitErr = c.cmd.Wait()
		close(c.exited)
	}()

	type accepted struct {
		conn net.Conn
		err  error
	}
	ch := make(chan accepted, 1)
	go func() {
		conn, err := c.ln.Accept()
		ch <- accepted{conn, err}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case a := <-ch:
		if a.err != nil {
			return nil, fmt.Errorf("qtest: accept: %w", a.err)
		}
		c.conn = a.conn
	case <-c.exited:
		return nil, fmt.Errorf("qtest: %s exited before connecting (%v): %s", bin, c.waitErr, c.stderr.String())
	case <-t.C:
		return nil, fmt.Errorf("qtest: %s did not connect within %v", bin, timeout)
	}
	c.r = bufio.NewReader(c.conn)
	return c, nil
}

// Command sends one command line and waits for its answer, collecting the
// interrupt events that precede it.
func (c *Client) Command(line string) (Reply, error) {
	var rep Reply
	deadline := time.Now().Add(c.timeout)
	if err := c.conn.SetDeadline(deadline); err != nil {
		return rep, fmt.Errorf("qtest: %w", err)
	}
	if _, err := c.conn.Write([]byte(line + "\n")); err != nil {
		return rep, fmt.Errorf("qtest: send %q: %w", line, err)
	}
	for {
		s, err := c.r.ReadString('\n')
		if err != nil {
			return rep, fmt.Errorf("qtest: answer to %q: %w (stderr: %s)", line, err, c.stderr.String())
		}
		f := strings.Fields(s)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "IRQ":
			if len(f) == 3 {
				n, err := strconv.Atoi(f[2])
				if err == nil {
					rep.IRQs = append(rep.IRQs, IRQEvent{Line: n, High: f[1] == "raise"})
				}
			}
		case "OK":
			rep.Words = f[1:]
			return rep, nil
		case "FAIL", "ERR":
			return rep, fmt.Errorf("%w: %q: %s", ErrFailed, line, strings.TrimSpace(s))
		}
	}
}

// InterceptIRQ redirects the named device's interrupt inputs to this
// client ("irq_intercept_in ioapic").
func (c *Client) InterceptIRQ(qomPath string) error {
	_, err := c.Command("irq_intercept_in " + qomPath)
	return err
}

// Out writes size bytes (1, 2 or 4) of v to port.
func (c *Client) Out(port uint16, size uint8, v uint64) ([]IRQEvent, error) {
	op, err := opName("out", size)
	if err != nil {
		return nil, err
	}
	rep, err := c.Command(fmt.Sprintf("%s %#x %#x", op, port, v))
	return rep.IRQs, err
}

// In reads size bytes (1, 2 or 4) from port.
func (c *Client) In(port uint16, size uint8) (uint64, []IRQEvent, error) {
	op, err := opName("in", size)
	if err != nil {
		return 0, nil, err
	}
	rep, err := c.Command(fmt.Sprintf("%s %#x", op, port))
	if err != nil {
		return 0, rep.IRQs, err
	}
	v, err := rep.Value()
	return v, rep.IRQs, err
}

func opName(prefix string, size uint8) (string, error) {
	switch size {
	case 1:
		return prefix + "b", nil
	case 2:
		return prefix + "w", nil
	case 4:
		return prefix + "l", nil
	}
	return "", fmt.Errorf("qtest: port access size %d", size)
}

// PID returns QEMU's process ID.
func (c *Client) PID() int {
	if c.cmd == nil || c.cmd.Process == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

// Close kills QEMU (it does not exit on EOF), reaps it and removes the
// socket directory. It is idempotent.
func (c *Client) Close() error {
	if c.conn != nil {
		c.conn.Close()
	}
	if c.ln != nil {
		c.ln.Close()
	}
	if c.cmd != nil && c.cmd.Process != nil {
		select {
		case <-c.exited:
		default:
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
	}
	if c.dir != "" {
		os.RemoveAll(c.dir)
		c.dir = ""
	}
	return nil
}

// ReadMem reads size bytes (1, 2, 4 or 8) of guest-physical memory or
// MMIO at addr ("readb/readw/readl/readq").
func (c *Client) ReadMem(addr uint64, size uint8) (uint64, []IRQEvent, error) {
	op, err := memOpName("read", size)
	if err != nil {
		return 0, nil, err
	}
	rep, err := c.Command(fmt.Sprintf("%s %#x", op, addr))
	if err != nil {
		return 0, rep.IRQs, err
	}
	v, err := rep.Value()
	return v, rep.IRQs, err
}

// WriteMem writes size bytes (1, 2, 4 or 8) of v to guest-physical memory
// or MMIO at addr ("writeb/writew/writel/writeq").
func (c *Client) WriteMem(addr uint64, size uint8, v uint64) ([]IRQEvent, error) {
	op, err := memOpName("write", size)
	if err != nil {
		return nil, err
	}
	rep, err := c.Command(fmt.Sprintf("%s %#x %#x", op, addr, v))
	return rep.IRQs, err
}

// SetIRQIn drives input n of the named GPIO list of a device
// ("set_irq_in ioapic unnamed-gpio-in 5 1").
func (c *Client) SetIRQIn(qomPath, name string, n int, high bool) ([]IRQEvent, error) {
	level := 0
	if high {
		level = 1
	}
	rep, err := c.Command(fmt.Sprintf("set_irq_in %s %s %d %d", qomPath, name, n, level))
	return rep.IRQs, err
}

func memOpName(prefix string, size uint8) (string, error) {
	switch size {
	case 1:
		return prefix + "b", nil
	case 2:
		return prefix + "w", nil
	case 4:
		return prefix + "l", nil
	case 8:
		return prefix + "q", nil
	}
	return "", fmt.Errorf("qtest: memory access size %d", size)
}

// Dial connects to the qtest socket of a QEMU started elsewhere (with
// "-qtest unix:PATH,server=on,wait=off"), retrying until timeout while the
// socket does not exist yet. timeout bounds only the connection; commands
// get the default 10 s (see SetTimeout). Close then only closes the
// connection.
func Dial(path string, timeout time.Duration) (*Client, error) {
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("unix", path, timeout)
		if err == nil {
			return &Client{conn: conn, r: bufio.NewReader(conn), timeout: defaultTimeout, stderr: &bytes.Buffer{}}, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("qtest: dial %s: %w", path, err)
		}
		// The socket appears when QEMU has parsed its options; poll.
		time.Sleep(20 * time.Millisecond)
	}
}

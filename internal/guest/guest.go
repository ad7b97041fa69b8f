package guest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"godm/internal/mpqemu"
)

// Assets locates the guest kernel and busybox.
type Assets struct {
	Kernel  string // uncompressed vmlinux (PVH boot)
	Busybox string // static busybox
}

// ErrNoAssets is returned by FindAssets when GODM_GUEST_DIR is unset or
// does not hold the assets.
var ErrNoAssets = errors.New("guest: assets not prepared (run scripts/guest-assets.sh and set GODM_GUEST_DIR)")

// FindAssets returns the assets in dir (usually os.Getenv("GODM_GUEST_DIR")).
func FindAssets(dir string) (Assets, error) {
	if dir == "" {
		return Assets{}, ErrNoAssets
	}
	a := Assets{Kernel: filepath.Join(dir, "vmlinux"), Busybox: filepath.Join(dir, "busybox")}
	for _, p := range []string{a.Kernel, a.Busybox} {
		if _, err := os.Stat(p); err != nil {
			return Assets{}, fmt.Errorf("%w: %v", ErrNoAssets, err)
		}
	}
	return a, nil
}

// Proxy is one PCI function the guest sees through x-pci-proxy-dev.
type Proxy struct {
	// Addr is the guest slot.function on bus 0, e.g. "5.0".
	Addr string
	// Dev serves the function's config and BAR accesses.
	Dev mpqemu.Device
}

// Config describes one guest run.
type Config struct {
	Assets Assets
	// Script is the shell script the guest runs as /test.sh.
	Script string
	// Files are extra files for the initramfs (path → contents).
	Files map[string][]byte
	// MemMB is the guest RAM size (default 256).
	MemMB int
	// RAM, if set, backs the guest's RAM (MemMB bytes at guest-physical 0,
	// file offset 0): QEMU maps it shared, so a simulated domain whose RAM
	// is this file sees the guest's memory. Otherwise QEMU creates a memfd.
	RAM *os.File
	// Proxies are the proxied PCI functions.
	Proxies []Proxy
	// Append is extra kernel command line.
	Append string
	// Timeout bounds the whole run (default 120 s).
	Timeout time.Duration
	// WorkDir holds the initramfs and sockets (default: a temp dir).
	WorkDir string
	// QEMU is the qemu-system-x86_64 binary (default from PATH).
	QEMU string
	// Reboot lets a guest reset reboot the guest in place: QEMU resets
	// its devices (each proxy gets DEVICE_RESET) and boots the same kernel
	// and initramfs again. By default QEMU runs with -no-reboot, and a
	// guest reset ends the run like a power-off (Result.Shutdown is then
	// "guest-reset").
	Reboot bool
	// BootFromDisk boots with no kernel: SeaBIOS boots from the disks it
	// finds (the proxied functions'); Script and Files are unused.
	BootFromDisk bool
	// Until, if set, ends the run as soon as the console shows it (QEMU
	// is stopped; Result.Until is set): for guests that never power off,
	// such as a boot sector that halts.
	Until string
	// OnEvent, if set, is called for each QMP event QEMU reports, in
	// order, from the goroutine that reads them; while it runs no further
	// event is read.
	OnEvent func(Event)
}

// Event is one QMP event QEMU reported (qapi/run-state.json).
type Event struct {
	// Name is the event, e.g. "SHUTDOWN", "RESET", "STOP".
	Name string
	// Guest is true when the guest caused it.
	Guest bool
	// Reason is the ShutdownCause, e.g. "guest-shutdown", "guest-reset",
	// "host-signal", "guest-panic".
	Reason string
}

// Result is what a run produced.
type Result struct {
	// Console is everything the guest printed on its serial console.
	Console string
	// ExitStatus is the test script's exit status (-1 if not reported).
	ExitStatus int
	// QTestSocket is the path of QEMU's qtest socket, for interrupts.
	QTestSocket string
	// Events are the QMP events QEMU reported, in order.
	Events []Event
	// Shutdown is the reason of QEMU's SHUTDOWN event ("guest-shutdown"
	// for a guest power-off), or "" if it reported none.
	Shutdown string
	// Resets counts the resets the guest caused (RESET events with
	// guest set): each rebooted the guest in place (Config.Reboot).
	Resets int
	// Boots counts the times the guest's init started.
	Boots int
	// Until reports that the console showed Config.Until.
	Until bool
	// PID is QEMU's process id; Process is its state once reaped (nil if
	// it never started).
	PID     int
	Process *os.ProcessState
}

// ErrTimeout is wrapped when the guest did not power off in time.
var ErrTimeout = errors.New("guest: timed out")

// Run boots the guest and waits until it powers off, the context ends or
// the timeout passes. The console output is returned in every case.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.MemMB == 0 {
		cfg.MemMB = 256
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 120 * time.Second
	}
	if cfg.QEMU == "" {
		cfg.QEMU = "qemu-system-x86_64"
	}
	dir := cfg.WorkDir
	if dir == "" {
		d, err := os.MkdirTemp("", "godm-guest-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	initrd, err := BuildInitramfs(cfg.Assets.Busybox, cfg.Script, cfg.Files)
	if err != nil {
		return nil, err
	}
	initrdPath := filepath.Join(dir, "initrd.gz")
	if err := os.WriteFile(initrdPath, initrd, 0o644); err != nil {
		return nil, err
	}

	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	// One socketpair per proxied function: QEMU inherits one end as fd 3+i.
	var (
		extra []*os.File
		conns []*net.UnixConn
	)
	defer func() {
		for _, f := range extra {
			if f != cfg.RAM {
				f.Close()
			}
		}
	}()
	args := []string{
		"-accel", "tcg", "-m", fmt.Sprint(cfg.MemMB), "-nodefaults", "-display", "none",
		"-serial", "stdio", "-monitor", "none",
		"-machine", "pc,memory-backend=mem",
	}
	if !cfg.BootFromDisk {
		args = append(args, "-kernel", cfg.Assets.Kernel, "-initrd", initrdPath,
			"-append", strings.TrimSpace("console=ttyS0 quiet panic=-1 "+cfg.Append))
	}
	for i, p := range cfg.Proxies {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		extra = append(extra, os.NewFile(uintptr(fds[1]), "qemu-proxy"))
		f := os.NewFile(uintptr(fds[0]), "godm-proxy")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			return nil, err
		}
		conns = append(conns, c.(*net.UnixConn))
		args = append(args, "-device", fmt.Sprintf("x-pci-proxy-dev,id=proxy%d,fd=%d,addr=%s", i, 3+i, p.Addr))
	}
	if cfg.RAM != nil {
		// QEMU reopens the file through its own fd table.
		args = append(args, "-object", fmt.Sprintf("memory-backend-file,id=mem,size=%dM,mem-path=/proc/self/fd/%d,share=on", cfg.MemMB, 3+len(extra)))
		extra = append(extra, cfg.RAM)
	} else {
		args = append(args, "-object", fmt.Sprintf("memory-backend-memfd,id=mem,size=%dM,share=on", cfg.MemMB))
	}
	if !cfg.Reboot {
		args = append(args, "-no-reboot")
	}
	// QMP on a socketpair QEMU inherits: its events say why the guest
	// stopped (a SHUTDOWN's reason) and when it reset.
	qfds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("guest: QMP socketpair: %w", err)
	}
	// Non-blocking, so the runtime poller serves it and Close ends a read.
	if err := unix.SetNonblock(qfds[0], true); err != nil {
		unix.Close(qfds[0])
		unix.Close(qfds[1])
		return nil, fmt.Errorf("guest: QMP socketpair: %w", err)
	}
	qmpFile := os.NewFile(uintptr(qfds[0]), "godm-qmp")
	defer qmpFile.Close()
	args = append(args, "-chardev", fmt.Sprintf("socket,id=qmp,fd=%d", 3+len(extra)), "-mon", "chardev=qmp,mode=control")
	extra = append(extra, os.NewFile(uintptr(qfds[1]), "qemu-qmp"))

	qtestSock := filepath.Join(dir, "qtest.sock")
	args = append(args, "-qtest", "unix:"+qtestSock+",server=on,wait=off", "-qtest-log", "none")

	// The device side must answer before QEMU realizes the proxies.
	var wg sync.WaitGroup
	serveErrs := make([]error, len(conns))
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveErrs[i] = mpqemu.Serve(ctx, c, cfg.Proxies[i].Dev)
		}()
	}
	defer wg.Wait()
	defer cancel()

	var (
		qmpEvents []Event
		qmpDone   = make(chan struct{})
	)
	go func() {
		defer close(qmpDone)
		qmpEvents = readQMP(qmpFile, cfg.OnEvent)
	}()
	defer func() { qmpFile.Close(); <-qmpDone }()

	console := &watchBuffer{until: cfg.Until, stop: cancel}
	cmd := exec.CommandContext(ctx, cfg.QEMU, args...)
	cmd.Stdout = console
	cmd.Stderr = console
	cmd.ExtraFiles = extra
	cmd.WaitDelay = 5 * time.Second
	runErr := cmd.Run()
	for _, f := range extra {
		if f != cfg.RAM {
			f.Close()
		}
	}
	extra = nil

	// QEMU has exited: its end of the QMP pair is closed, so the reader
	// sees EOF once it has read every event.
	<-qmpDone
	res := &Result{Console: console.String(), ExitStatus: -1, QTestSocket: qtestSock, Events: qmpEvents, Until: console.seen()}
	if cmd.Process != nil {
		res.PID, res.Process = cmd.Process.Pid, cmd.ProcessState
	}
	for _, e := range qmpEvents {
		switch {
		case e.Name == "SHUTDOWN":
			res.Shutdown = e.Reason
		case e.Name == "RESET" && e.Guest:
			res.Resets++
		}
	}
	res.Boots = strings.Count(res.Console, "GODM-GUEST-UP")
	if i := strings.LastIndex(res.Console, "GODM-GUEST-EXIT "); i >= 0 {
		fmt.Sscanf(res.Console[i+len("GODM-GUEST-EXIT "):], "%d", &res.ExitStatus)
	}
	if res.Until {
		cancel()
		wg.Wait()
		return res, nil
	}
	if ctx.Err() != nil && res.ExitStatus < 0 {
		return res, fmt.Errorf("%w after %v", ErrTimeout, cfg.Timeout)
	}
	if runErr != nil && res.ExitStatus < 0 {
		return res, fmt.Errorf("guest: qemu: %w", runErr)
	}
	cancel()
	wg.Wait()
	for i, err := range serveErrs {
		if err != nil {
			return res, fmt.Errorf("guest: proxy %s: %w", cfg.Proxies[i].Addr, err)
		}
	}
	return res, nil
}

// watchBuffer is the console: QEMU's output, and the stop once it shows
// until.
type watchBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	until string
	hit   bool
	stop  func()
}

func (w *watchBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if w.until != "" && !w.hit && bytes.Contains(w.buf.Bytes(), []byte(w.until)) {
		w.hit = true
		w.stop()
	}
	return len(p), nil
}

func (w *watchBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func (w *watchBuffer) seen() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.hit
}

// readQMP enters QMP's command mode and collects QEMU's events until the
// connection ends (QEMU exited or c was closed).
func readQMP(c *os.File, onEvent func(Event)) []Event {
	var events []Event
	dec := json.NewDecoder(c)
	var greeting map[string]any
	if err := dec.Decode(&greeting); err != nil {
		return nil
	}
	// Events are only sent once capabilities are negotiated.
	if _, err := io.WriteString(c, `{"execute":"qmp_capabilities"}`+"\n"); err != nil {
		return nil
	}
	for {
		var msg struct {
			Event string
			Data  struct {
				Guest  bool
				Reason string
			}
		}
		if err := dec.Decode(&msg); err != nil {
			return events
		}
		if msg.Event == "" {
			continue // a command's return
		}
		e := Event{Name: msg.Event, Guest: msg.Data.Guest, Reason: msg.Data.Reason}
		events = append(events, e)
		if onEvent != nil {
			onEvent(e)
		}
	}
}

package guest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
}

// Result is what a run produced.
type Result struct {
	// Console is everything the guest printed on its serial console.
	Console string
	// ExitStatus is the test script's exit status (-1 if not reported).
	ExitStatus int
	// QTestSocket is the path of QEMU's qtest socket, for interrupts.
	QTestSocket string
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
		"-serial", "stdio", "-no-reboot", "-monitor", "none",
		"-machine", "pc,memory-backend=mem",
		"-kernel", cfg.Assets.Kernel, "-initrd", initrdPath,
		"-append", strings.TrimSpace("console=ttyS0 quiet panic=-1 " + cfg.Append),
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

	var console bytes.Buffer
	cmd := exec.CommandContext(ctx, cfg.QEMU, args...)
	cmd.Stdout = &console
	cmd.Stderr = &console
	cmd.ExtraFiles = extra
	cmd.WaitDelay = 5 * time.Second
	runErr := cmd.Run()
	for _, f := range extra {
		if f != cfg.RAM {
			f.Close()
		}
	}
	extra = nil

	res := &Result{Console: console.String(), ExitStatus: -1, QTestSocket: qtestSock}
	if i := strings.LastIndex(res.Console, "GODM-GUEST-EXIT "); i >= 0 {
		fmt.Sscanf(res.Console[i+len("GODM-GUEST-EXIT "):], "%d", &res.ExitStatus)
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

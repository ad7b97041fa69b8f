package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"godm/hyp/kernel"
	"godm/internal/dmcontract"
	"godm/internal/sandbox"
)

// run dispatches the subcommand. Results go to out; usage text and logs go
// to w. It returns errors for bad usage.
func run(args []string, out, w io.Writer) error {
	if len(args) == 0 {
		usage(w)
		return errUsage
	}
	if dmcontract.IsQEMUArgv(args) {
		// libxl's device model: it ends it with SIGHUP or SIGTERM
		// (libxl__kill, libxl_dm.c kill_device_model).
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
		defer stop()
		return cmdQEMU(ctx, args, w, qemuEnv{
			Kernel:         kernel.Host{DevDir: kernel.DefaultDevDir},
			Getenv:         os.Getenv,
			DropPrivileges: dropPrivileges,
			Sandbox:        sandbox.Apply,
			Stdout:         out,
		})
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "help", "-h", "-help", "--help":
		usage(w)
		return nil
	case "serve":
		return cmdServe(ctx, args[1:], w, serveEnv{Sandbox: sandbox.Apply})
	case "passthrough":
		return cmdPassthrough(ctx, args[1:], out, w)
	}
	usage(w)
	return fmt.Errorf("unknown command %q", args[0])
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: godm <command> [flags]
       godm -xen-domid N ... (qemu-xen's command line: godm as libxl's device_model_override)

commands:
  serve   serve an HVM domain on this Xen host (godm serve --domid N)
  passthrough  pass a host PCI function through to a domain (godm passthrough --domid N --bdf SSSS:BB:DD.F)

Run 'godm <command> -h' for the command's flags. The simulated-Xen demo and
the benchmarks are in a separate command, godm-lab (go run ./cmd/godm-lab).
`)
}

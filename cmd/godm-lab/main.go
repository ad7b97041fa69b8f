// Command godm-lab is godm's laboratory: the xenfv machine served on the
// built-in simulated Xen with a guest workload (sim), a real Linux guest
// whose devices godm serves through it (sim -linux), and the benchmarks of
// the ioreq path (bench). It is not the product: the device model a
// toolstack runs is cmd/godm, which links none of this.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// errUsage reports a usage error whose explanation was already printed.
var errUsage = errors.New("usage")

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "godm-lab:", err)
		}
		os.Exit(2)
	}
}

// run dispatches the subcommand. Results go to out; usage text and logs go
// to w.
func run(args []string, out, w io.Writer) error {
	if len(args) == 0 {
		usage(w)
		return errUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "help", "-h", "-help", "--help":
		usage(w)
		return nil
	case "sim":
		return cmdSim(ctx, args[1:], out, w)
	case "bench":
		return cmdBench(ctx, args[1:], out, w)
	}
	usage(w)
	return fmt.Errorf("unknown command %q", args[0])
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: godm-lab <command> [flags]

commands:
  sim     run godm against the built-in simulated Xen with a guest workload;
          -linux boots a real Linux guest (QEMU TCG as its CPU) instead
  bench   measure godm's ioreq path on the simulated Xen against the machine's floors

Run 'godm-lab <command> -h' for the command's flags. The device model a
toolstack runs is godm (serve, passthrough).
`)
}

package main

import (
	"errors"
	"fmt"

	"godm/hyp/kernel"
)

func run(args []string) error {
	if len(args) == 0 {
		return usage()
	}
	switch args[0] {
	case "help", "-h", "--help":
		return usage()
	}
	if !(kernel.Host{}).Available(kernel.Privcmd) {
		return errors.New("no Xen found (/dev/xen/privcmd is missing); try the simulated mode: godm sim")
	}
	return fmt.Errorf("unknown command %q", args[0])
}

func usage() error {
	fmt.Println(`usage: godm <command> [flags]

commands:
  sim         run godm against the built-in simulated Xen`)
	return nil
}

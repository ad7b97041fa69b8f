package machine

import (
	"fmt"
	"os"
	"strings"

	"godm/devices/chardev"
)

// OpenChardev opens a character backend from a spec:
//
//	stdio        the process's standard input and output
//	null         discards output, never receives input
//	file:PATH    writes output to PATH, replacing its contents once started
//	             (chardev.File: a failed start leaves them)
//	pty          a new pseudo-terminal (its path is returned as desc)
//	unix:PATH    a Unix socket server at PATH (one client at a time;
//	             replaces a stale socket a dead process left there)
func OpenChardev(spec string) (be chardev.Backend, desc string, err error) {
	kind, arg, _ := strings.Cut(spec, ":")
	switch kind {
	case "stdio":
		if arg != "" {
			break
		}
		s, err := chardev.Stdio(os.Stdin, os.Stdout, chardev.Options{})
		return s, "stdio", err
	case "null":
		if arg != "" {
			break
		}
		return chardev.NewNull(), "null", nil
	case "file":
		if arg == "" {
			return nil, "", fmt.Errorf("chardev %q: file needs a path (file:PATH)", spec)
		}
		s, err := chardev.OpenFile(arg, chardev.Options{})
		return s, "file " + arg, err
	case "pty":
		if arg != "" {
			break
		}
		p, err := chardev.OpenPTY("/dev/ptmx", chardev.Options{})
		if err != nil {
			return nil, "", err
		}
		return p, "pty " + p.Path(), nil
	case "unix":
		if arg == "" {
			return nil, "", fmt.Errorf("chardev %q: unix needs a socket path (unix:PATH)", spec)
		}
		s, err := chardev.Listen(arg, chardev.Options{})
		return s, "unix socket " + arg, err
	}
	return nil, "", fmt.Errorf("chardev %q: want stdio, null, file:PATH, pty or unix:PATH", spec)
}

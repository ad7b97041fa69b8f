// Command dmwrap stands in for QEMU where libxl starts a device model
// (xl's device_model_override), until godm speaks libxl's protocol
// itself. It does libxl's side of the launch (XEN-FACTS §2): it listens
// on the QMP sockets named by -chardev ...,path=P, answers
// qmp_capabilities, query-status, query-chardev and cont (and an error
// for anything else), and writes /local/domain/0/device-model/<domid>/state
// = running once the device model is ready.
//
// Its own options come through xl's device_model_args:
//
//	-godm-mode=serve  run `godm serve -domid N -serial stdio` (the default);
//	                  ready when godm prints "godm: serving"
//	-godm-mode=idle   no device model: only the handshake (a domain for
//	                  tests that bring their own ioreq server)
//	-godm=PATH        the godm binary (default /xenbox/bin/godm)
//
// godm's output and its own are relayed line by line, prefixed
// "xenbox-dm[<domid>] ", to stdout (libxl's qemu-dm-<name>.log) and to
// /dev/console. SIGHUP or SIGTERM (libxl's kill on destroy) are passed on
// to godm. It is a test tool of internal/xenbox, not part of the product.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"godm/hyp/xenstore"

	"golang.org/x/sys/unix"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

type output struct {
	mu     sync.Mutex
	prefix string
	ws     []io.Writer
}

func (o *output) line(s string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	b := []byte(o.prefix + s + "\n")
	for _, w := range o.ws {
		w.Write(b)
	}
}

func run(args []string) int {
	domid := -1
	mode := "serve"
	godm := "/xenbox/bin/godm"
	var qmpPaths []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-xen-domid" && i+1 < len(args):
			i++
			domid, _ = strconv.Atoi(args[i])
		case a == "-chardev" && i+1 < len(args):
			i++
			for _, kv := range strings.Split(args[i], ",") {
				if p, ok := strings.CutPrefix(kv, "path="); ok {
					qmpPaths = append(qmpPaths, p)
				}
			}
		case strings.HasPrefix(a, "-godm-mode="):
			mode = strings.TrimPrefix(a, "-godm-mode=")
		case strings.HasPrefix(a, "-godm="):
			godm = strings.TrimPrefix(a, "-godm=")
		}
	}
	out := &output{prefix: fmt.Sprintf("xenbox-dm[%d] ", domid), ws: []io.Writer{os.Stdout}}
	if c, err := os.OpenFile("/dev/console", os.O_WRONLY|syscall.O_NOCTTY, 0); err == nil {
		out.ws = append(out.ws, c)
	}
	if domid <= 0 {
		// libxl's command-line probe (-machine none): not supported.
		out.line("no -xen-domid: " + strings.Join(args, " "))
		return 1
	}
	out.line("args: " + strings.Join(args, " "))
	for _, p := range qmpPaths {
		os.Remove(p)
		l, err := net.Listen("unix", p)
		if err != nil {
			out.line("qmp listen: " + err.Error())
			return 1
		}
		go serveQMP(l, out)
	}

	// SIGHUP arrives when the xl that created the domain exits (the DM
	// is in its session), long before any destroy, so it is logged and
	// otherwise ignored, by godm too (an ignored signal stays ignored
	// across exec, and Go keeps it so). godm ends by itself when the
	// domain is destroyed; in idle mode this program does.
	hups := make(chan os.Signal, 4)
	signal.Notify(hups, syscall.SIGHUP)
	go func() {
		for range hups {
			out.line("SIGHUP (ignored)")
		}
	}()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	ready := make(chan struct{})
	exited := make(chan int, 1)
	var cmd *exec.Cmd
	switch mode {
	case "idle":
		close(ready)
		go func() {
			waitGone(domid)
			out.line("the domain is gone")
			exited <- 0
		}()
	case "serve":
		cmd = exec.Command(godm, "serve", "-domid", strconv.Itoa(domid), "-serial", "stdio", "-v")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // not in xl's process group
		pr, pw, err := os.Pipe()
		if err != nil {
			out.line(err.Error())
			return 1
		}
		cmd.Stdout, cmd.Stderr = pw, pw
		if err := cmd.Start(); err != nil {
			out.line("start godm: " + err.Error())
			return 1
		}
		pw.Close()
		go func() {
			var once sync.Once
			sc := bufio.NewScanner(pr)
			sc.Buffer(make([]byte, 4096), 1<<20)
			for sc.Scan() {
				out.line(sc.Text())
				if strings.HasPrefix(sc.Text(), "godm: serving") {
					once.Do(func() { close(ready) })
				}
			}
		}()
		go func() {
			err := cmd.Wait()
			code := 0
			if err != nil {
				code = 1
				if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() > 0 {
					code = ee.ExitCode()
				}
			}
			out.line(fmt.Sprintf("godm exited: %v", err))
			exited <- code
		}()
	default:
		out.line("unknown -godm-mode=" + mode)
		return 1
	}

	select {
	case <-ready:
		if err := writeState(domid); err != nil {
			out.line("xenstore: " + err.Error())
			if cmd != nil {
				cmd.Process.Signal(syscall.SIGTERM)
			}
			return 1
		}
		out.line("device model ready; state = running")
	case code := <-exited:
		return code
	case s := <-sigs:
		out.line("signal before ready: " + s.String())
		return 1
	}
	select {
	case code := <-exited:
		return code
	case s := <-sigs:
		out.line("signal: " + s.String())
		if cmd == nil {
			return 0
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case code := <-exited:
			return code
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			return <-exited
		}
	}
}

// waitGone returns once xenstore no longer has the domain's directory
// (libxl removes it on destroy), checking every second.
func waitGone(domid int) {
	p := fmt.Sprintf("/local/domain/%d", domid)
	for {
		time.Sleep(time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := xenstore.Open(ctx, xenstore.Config{Getenv: os.Getenv})
		if err == nil {
			_, err = c.Read(ctx, p)
			c.Close()
			if errors.Is(err, unix.ENOENT) {
				cancel()
				return
			}
		}
		cancel()
	}
}

func writeState(domid int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := xenstore.Open(ctx, xenstore.Config{Getenv: os.Getenv})
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Write(ctx, fmt.Sprintf("/local/domain/0/device-model/%d/state", domid), []byte("running"))
}

// serveQMP answers libxl's QMP connections (one command at a time).
func serveQMP(l net.Listener, out *output) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			// QMP messages end with CRLF; libxl looks for it
			// (tools/libs/light/libxl_qmp.c).
			send := func(v any) error {
				b, err := json.Marshal(v)
				if err != nil {
					return err
				}
				_, err = c.Write(append(b, '\r', '\n'))
				return err
			}
			// libxl gates features on the version; report QEMU 7.2's
			// (Debian bookworm's qemu-system-xen).
			send(map[string]any{"QMP": map[string]any{
				"version":      map[string]any{"qemu": map[string]int{"major": 7, "minor": 2, "micro": 0}, "package": ""},
				"capabilities": []string{}}})
			dec := json.NewDecoder(io.LimitReader(c, 1<<20))
			for {
				var m struct {
					Execute string          `json:"execute"`
					ID      json.RawMessage `json:"id"`
				}
				if err := dec.Decode(&m); err != nil {
					return
				}
				out.line("qmp: " + m.Execute)
				resp := map[string]any{}
				switch m.Execute {
				case "qmp_capabilities", "cont", "stop":
					resp["return"] = map[string]any{}
				case "query-status":
					resp["return"] = map[string]any{"status": "running", "running": true, "singlestep": false}
				case "query-chardev":
					resp["return"] = []any{}
				case "quit":
					resp["return"] = map[string]any{}
				default:
					resp["error"] = map[string]string{"class": "CommandNotFound", "desc": "dmwrap: " + m.Execute + " not supported"}
				}
				if len(m.ID) > 0 {
					resp["id"] = m.ID
				}
				if send(resp) != nil {
					return
				}
			}
		}()
	}
}

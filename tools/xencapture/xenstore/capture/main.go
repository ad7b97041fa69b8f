// Command capture records the xenstore wire messages Debian's libxenstore
// exchanges for each call of the C driver (driver.c), served by godm's
// simulated xenstored, and writes one JSON fixture per call. It fails if
// the driver reports a wrong answer from the simulated daemon.
//
// Usage: capture -driver ./xsdriver -out hyp/xenstore/testdata/golden
//
// The driver announces each call with "OP <name>\t<call>" on stdout and
// waits for a line on stdin; messages traced until then belong to the
// previous call. regen.sh builds the driver and runs this.
package main

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"godm/hyp"
	"godm/hyp/xensim/xenstored"
	"godm/hyp/xenstore"
)

// Message is one recorded wire message.
type Message struct {
	Dir     string `json:"dir"` // "request" (library to daemon) or "reply" (daemon to library, including watch events)
	Type    string `json:"type"`
	ReqID   uint32 `json:"req_id"`
	TxID    uint32 `json:"tx_id"`
	Len     uint32 `json:"len"`
	Payload string `json:"payload"` // payload as text, nul as \0, other bytes as \xNN
	Hex     string `json:"hex"`     // whole message, header included
}

// Fixture is one library call.
type Fixture struct {
	Seq      int       `json:"seq"` // position in the driver's sequence, from 1
	Name     string    `json:"name"`
	Call     string    `json:"call"`
	Result   string    `json:"result"`
	Messages []Message `json:"messages"`
}

func text(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		switch {
		case c == 0:
			sb.WriteString(`\0`)
		case c == '\\':
			sb.WriteString(`\\`)
		case c >= 32 && c < 127:
			sb.WriteByte(c)
		default:
			fmt.Fprintf(&sb, `\x%02x`, c)
		}
	}
	return sb.String()
}

var verbose bool

func main() {
	driver := flag.String("driver", "", "path of the built C driver")
	out := flag.String("out", "", "directory for the fixtures")
	flag.BoolVar(&verbose, "v", false, "echo the driver's output")
	flag.Parse()
	if *driver == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*driver, *out); err != nil {
		fmt.Fprintln(os.Stderr, "capture:", err)
		os.Exit(1)
	}
}

func run(driver, out string) error {
	var (
		mu   sync.Mutex
		msgs []Message
	)
	srv := xenstored.New(xenstored.Config{Trace: func(_ hyp.DomID, in bool, raw []byte) {
		h, err := xenstore.DecodeHeader(raw)
		if err != nil {
			panic(err) // the server only traces messages it parsed or built
		}
		m := Message{Dir: "reply", Type: h.Type.String(), ReqID: h.ReqID, TxID: h.TxID, Len: h.Len,
			Payload: text(raw[xenstore.HeaderSize:]), Hex: hex.EncodeToString(raw)}
		if in {
			m.Dir = "request"
		}
		mu.Lock()
		msgs = append(msgs, m)
		mu.Unlock()
	}})
	defer srv.Close()
	dir, err := os.MkdirTemp("", "xscapture")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "socket")
	if err := srv.Listen(sock); err != nil {
		return err
	}

	cmd := exec.Command(driver)
	cmd.Env = []string{"XENSTORED_PATH=" + sock}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	take := func() []Message {
		mu.Lock()
		defer mu.Unlock()
		m := msgs
		msgs = nil
		return m
	}

	var fixtures []*Fixture
	var cur *Fixture
	done := false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		if verbose {
			fmt.Fprintln(os.Stderr, line)
		}
		switch {
		case strings.HasPrefix(line, "OP "):
			if cur != nil {
				cur.Messages = take()
			} else if m := take(); len(m) != 0 {
				return fmt.Errorf("%d messages before the first call", len(m))
			}
			name, call, _ := strings.Cut(strings.TrimPrefix(line, "OP "), "\t")
			cur = &Fixture{Seq: len(fixtures) + 1, Name: name, Call: call}
			fixtures = append(fixtures, cur)
			if _, err := io.WriteString(stdin, "go\n"); err != nil {
				return err
			}
		case strings.HasPrefix(line, "RESULT "):
			if cur == nil {
				return fmt.Errorf("result before any call: %q", line)
			}
			if cur.Result != "" {
				cur.Result += "; "
			}
			cur.Result += strings.TrimPrefix(line, "RESULT ")
		case line == "DONE":
			done = true
		default:
			return fmt.Errorf("unexpected driver output %q", line)
		}
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("driver: %w (the simulated xenstored answered wrongly, or the driver broke)", err)
	}
	if !done || cur == nil {
		return fmt.Errorf("driver stopped early")
	}
	cur.Messages = take()

	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for _, f := range fixtures {
		if len(f.Messages) == 0 {
			return fmt.Errorf("call %s sent nothing", f.Name)
		}
		b, err := json.MarshalIndent(f, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(out, f.Name+".json"), append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

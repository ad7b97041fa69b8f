// Command srload is the linux-sr scenario's workload, in two roles.
//
// "srload guest" runs in the Linux guest: record after record (package
// srrec) it writes the record to its sector of the disk's record area
// with O_DIRECT and reads it back, prints the record's serial line on
// stdout (the guest's ttyS0), and hands it to a sender that delivers it
// to dom0's sink over TCP, one record at a time, each acknowledged; a
// connection that fails or stays silent is dropped and the unacknowledged
// record sent again on a new one (a restored device model runs a new
// user-mode network, so the old connection's state is gone: expected).
// Every 64 records it reads the whole area back. It stops when the sink
// says STOP (or at -max), waits for the last acknowledgement, reads the
// area once more and prints "SR-END n=<records> disk=<sha256 of the
// area> bad=<differences seen> acked=<last acknowledged> reconnects=<n>".
//
// "srload sink" runs in dom0: it accepts the guest's connections,
// appends every line it receives to -out and answers "ACK <seq>", with
// " STOP" once the file -stop exists.
package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"godm/internal/xenbox/srrec"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: srload guest|sink [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "guest":
		err = guest(os.Args[2:])
	case "sink":
		err = sink(os.Args[2:])
	default:
		err = fmt.Errorf("unknown role %q (guest or sink)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "srload:", err)
		os.Exit(1)
	}
}

// say writes whole lines to stdout, one write each (the tty gets a line
// at a time from both goroutines).
var (
	outMu  sync.Mutex
	stdout io.Writer = os.Stdout
)

func say(format string, a ...any) {
	outMu.Lock()
	defer outMu.Unlock()
	io.WriteString(stdout, fmt.Sprintf(format, a...)+"\n")
}

type work struct {
	fd       int
	lba      int64
	buf, rd  []byte // page-aligned (O_DIRECT)
	bad      int
	produced atomic.Uint32
	acked    atomic.Uint32
	stop     atomic.Bool
	reconns  atomic.Uint32
}

func guest(args []string) error {
	fs := flag.NewFlagSet("guest", flag.ContinueOnError)
	disk := fs.String("disk", "/dev/sda", "the disk")
	lba := fs.Int64("lba", 0, "first sector of the record area")
	max := fs.Uint("max", 4096, "records at most (the area's size)")
	dst := fs.String("net", "none", "the sink's host:port, or none")
	pace := fs.Duration("pace", 100*time.Millisecond, "pause between records")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *lba <= 0 {
		return errors.New("-lba is required")
	}
	fd, err := unix.Open(*disk, unix.O_RDWR|unix.O_DIRECT, 0)
	if err != nil {
		return fmt.Errorf("open %s: %v", *disk, err)
	}
	defer unix.Close(fd)
	mem, err := unix.Mmap(-1, 0, 2<<16, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return err
	}
	w := &work{fd: fd, lba: *lba, buf: mem[:1<<16], rd: mem[1<<16:]}
	if *dst != "none" {
		go w.send(*dst)
	}
	say("SR-START lba=%d max=%d net=%s", *lba, *max, *dst)
	var n uint32
	for n < uint32(*max) && !w.stop.Load() {
		n++
		w.write(n)
		say("%s", srrec.SerialLine(n))
		w.produced.Store(n)
		if n%64 == 0 {
			w.verify(n)
			say("SR-VERIFY %d bad=%d", n, w.bad)
		}
		time.Sleep(*pace)
	}
	if *dst != "none" {
		// The sink's last acknowledgement, within 300 s.
		for i := 0; w.acked.Load() < n && i < 3000; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if err := unix.Fdatasync(fd); err != nil {
		say("%s fdatasync %v", srrec.BadTag, err)
		w.bad++
	}
	sum := w.verify(n)
	say("%s n=%d disk=%s bad=%d acked=%d reconnects=%d", srrec.EndTag, n, sum, w.bad, w.acked.Load(), w.reconns.Load())
	if w.bad > 0 {
		return fmt.Errorf("%d differences", w.bad)
	}
	return nil
}

// write puts record seq in its sector and reads it back.
func (w *work) write(seq uint32) {
	off := (w.lba + int64(seq) - 1) * srrec.Size
	copy(w.buf, srrec.Record(seq))
	if _, err := unix.Pwrite(w.fd, w.buf[:srrec.Size], off); err != nil {
		say("%s write %d: %v", srrec.BadTag, seq, err)
		w.bad++
		return
	}
	if _, err := unix.Pread(w.fd, w.rd[:srrec.Size], off); err != nil {
		say("%s read-back %d: %v", srrec.BadTag, seq, err)
		w.bad++
		return
	}
	if !srrec.Valid(w.rd[:srrec.Size], seq) {
		say("%s read-back %d differs: %q", srrec.BadTag, seq, w.rd[:24])
		w.bad++
	}
}

// verify reads records 1..n back, 64 KiB at a time, and returns the
// area's SHA-256.
func (w *work) verify(n uint32) string {
	h := sha256.New()
	per := uint32(len(w.rd) / srrec.Size)
	for s := uint32(1); s <= n; s += per {
		k := min(per, n-s+1)
		b := w.rd[:k*srrec.Size]
		if _, err := unix.Pread(w.fd, b, (w.lba+int64(s)-1)*srrec.Size); err != nil {
			say("%s verify at %d: %v", srrec.BadTag, s, err)
			w.bad++
			return ""
		}
		for i := range k {
			if r := b[i*srrec.Size : (i+1)*srrec.Size]; !srrec.Valid(r, s+i) {
				say("%s verify %d differs: %q", srrec.BadTag, s+i, r[:24])
				w.bad++
			}
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// send delivers the records to the sink in order, one at a time, each
// acknowledged; on any failure it drops the connection and sends the
// unacknowledged record again on a new one.
func (w *work) send(dst string) {
	var c net.Conn
	var rd *bufio.Reader
	drop := func(why string, err error) {
		if c != nil {
			c.Close()
			c = nil
			w.reconns.Add(1)
		}
		say("SR-NET %s after ack %d: %v", why, w.acked.Load(), err)
		time.Sleep(time.Second)
	}
	for {
		seq := w.acked.Load() + 1
		if seq > w.produced.Load() {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if c == nil {
			var err error
			if c, err = net.DialTimeout("tcp", dst, 5*time.Second); err != nil {
				c = nil
				drop("dial", err)
				continue
			}
			rd = bufio.NewReader(c)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte(srrec.NetLine(seq) + "\n")); err != nil {
			drop("write", err)
			continue
		}
		l, err := rd.ReadString('\n')
		if err != nil {
			drop("read", err)
			continue
		}
		f := strings.Fields(l)
		if len(f) < 2 || f[0] != srrec.AckTag || f[1] != strconv.FormatUint(uint64(seq), 10) {
			drop("answer", fmt.Errorf("%q for record %d", l, seq))
			continue
		}
		w.acked.Store(seq)
		if len(f) == 3 && f[2] == "STOP" {
			w.stop.Store(true)
		}
	}
}

func sink(args []string) error {
	fs := flag.NewFlagSet("sink", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:9000", "address")
	outPath := fs.String("out", "", "file the received lines are appended to")
	stopPath := fs.String("stop", "", "once this file exists, acknowledgements say STOP")
	if err := fs.Parse(args); err != nil {
		return err
	}
	f, err := os.OpenFile(*outPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "sink listening on %s\n", ln.Addr())
	var mu sync.Mutex
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			sc := bufio.NewScanner(c)
			sc.Buffer(nil, 4096)
			for sc.Scan() {
				l := sc.Bytes()
				mu.Lock()
				f.Write(append(bytes.Clone(l), '\n'))
				mu.Unlock()
				ans := "NAK"
				if fl := strings.Fields(string(l)); len(fl) >= 2 && fl[0] == srrec.NetTag {
					ans = srrec.AckTag + " " + fl[1]
					if _, err := os.Stat(*stopPath); err == nil {
						ans += " STOP"
					}
				}
				if _, err := c.Write([]byte(ans + "\n")); err != nil {
					return
				}
			}
		}()
	}
}

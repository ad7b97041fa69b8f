package main

import (
	"bufio"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"godm/internal/xenbox/srrec"
)

// TestGuestAndSink runs both roles on this host: the guest's records go
// to a file opened with O_DIRECT and, through a proxy that cuts the
// first connection after 20 records (what a restored device model's new
// user-mode network does to it), to the sink. The guest must end with
// every record on its "disk" and every record at the sink, in order,
// each at most twice in a row (resent after the cut).
func TestGuestAndSink(t *testing.T) {
	dir, err := os.MkdirTemp(".", "srload-test-") // O_DIRECT needs a disk file system, not tmpfs
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	disk := filepath.Join(dir, "disk")
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if fd, err := unix.Open(disk, unix.O_RDWR|unix.O_DIRECT, 0); err != nil {
		t.Skipf("O_DIRECT refused here (%v): the guest's disk needs it", err)
	} else {
		unix.Close(fd)
	}
	free := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}
	sinkAddr := free()
	netLog, stop := filepath.Join(dir, "net.log"), filepath.Join(dir, "stop")
	go sink([]string{"-listen", sinkAddr, "-out", netLog, "-stop", stop})
	// The proxy: the first connection dies after 20 acknowledgements.
	px, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	go func() {
		for first := true; ; first = false {
			c, err := px.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn, cut bool) {
				defer c.Close()
				s, err := net.Dial("tcp", sinkAddr)
				if err != nil {
					return
				}
				defer s.Close()
				in, back := bufio.NewReader(c), bufio.NewReader(s)
				for n := 0; ; n++ {
					l, err := in.ReadString('\n')
					if err != nil {
						return
					}
					s.Write([]byte(l))
					a, err := back.ReadString('\n')
					if err != nil {
						return
					}
					if cut && n == 20 {
						return // the record reached the sink, its ack is lost
					}
					if strings.Contains(l, "NET 150 ") {
						os.WriteFile(stop, nil, 0o644)
					}
					c.Write([]byte(a))
				}
			}(c, first)
		}
	}()
	out, err := os.CreateTemp(dir, "out")
	if err != nil {
		t.Fatal(err)
	}
	outMu.Lock()
	stdout = out // for good: the guest's sender goroutine outlives guest()
	outMu.Unlock()
	err = guest([]string{"-disk", disk, "-lba", "8", "-max", "1000", "-net", px.Addr().String(), "-pace", "0"})
	if err != nil {
		t.Fatal(err)
	}
	out.Seek(0, io.SeekStart)
	b, _ := io.ReadAll(out)
	var ser srrec.Stream
	end := ""
	for _, l := range strings.Split(string(b), "\n") {
		ser.Add(l, srrec.SerialTag)
		if strings.HasPrefix(l, srrec.EndTag) {
			end = l
		}
	}
	n := uint32(len(ser.Seqs))
	if err := ser.CheckExact(n); err != nil || n < 151 {
		t.Fatalf("serial: %d records: %v", n, err)
	}
	f := strings.Fields(end)
	if len(f) != 6 || f[2] != "disk="+srrec.AreaSum(n) || f[3] != "bad=0" || f[5] == "reconnects=0" {
		t.Errorf("end line %q; want the area's sum %s, no difference, a reconnection", end, srrec.AreaSum(n))
	}
	img, _ := os.ReadFile(disk)
	for s := uint32(1); s <= n; s++ {
		if !srrec.Valid(img[(7+s)*srrec.Size:(8+s)*srrec.Size], s) {
			t.Fatalf("record %d not in its sector", s)
		}
	}
	nl, err := os.ReadFile(netLog)
	if err != nil {
		t.Fatal(err)
	}
	var nets srrec.Stream
	for _, l := range strings.Split(string(nl), "\n") {
		nets.Add(l, srrec.NetTag)
	}
	dups, err := nets.CheckResent(n)
	if err != nil || dups != 1 {
		t.Errorf("sink: %d resent: %v", dups, err)
	}
}

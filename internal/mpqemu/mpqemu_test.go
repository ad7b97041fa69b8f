package mpqemu

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeDev records what it is asked and answers from fixed values.
type fakeDev struct {
	cfg     [256]byte
	bars    map[uint64]uint64
	resets  int
	regions []Region
}

func (d *fakeDev) ConfigRead(addr uint32, size int) uint32 {
	var v uint32
	for i := 0; i < size; i++ {
		v |= uint32(d.cfg[(int(addr)+i)&0xff]) << (8 * i)
	}
	return v
}

func (d *fakeDev) ConfigWrite(addr uint32, val uint32, size int) {
	for i := 0; i < size; i++ {
		d.cfg[(int(addr)+i)&0xff] = byte(val >> (8 * i))
	}
}

func (d *fakeDev) BARRead(addr uint64, size int, memory bool) uint64 { return d.bars[addr] }
func (d *fakeDev) BARWrite(addr uint64, val uint64, size int, memory bool) {
	d.bars[addr] = val
}
func (d *fakeDev) Reset() { d.resets++ }
func (d *fakeDev) SyncSysmem(r []Region) {
	for _, old := range d.regions {
		old.File.Close()
	}
	d.regions = r
}

// qemuSide plays QEMU's x-pci-proxy-dev end of the socket.
type qemuSide struct {
	t *testing.T
	c *net.UnixConn
}

func (q *qemuSide) send(cmd int32, payload []byte, fds ...int) {
	q.t.Helper()
	hdr := make([]byte, hdrSize)
	binary.LittleEndian.PutUint32(hdr[0:], uint32(cmd))
	binary.LittleEndian.PutUint64(hdr[8:], uint64(len(payload)))
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := q.c.WriteMsgUnix(hdr, oob, nil); err != nil {
		q.t.Fatal(err)
	}
	if len(payload) > 0 {
		if _, err := q.c.Write(payload); err != nil {
			q.t.Fatal(err)
		}
	}
}

func (q *qemuSide) ret() uint64 {
	q.t.Helper()
	b := make([]byte, hdrSize+8)
	if _, err := io.ReadFull(q.c, b); err != nil {
		q.t.Fatal(err)
	}
	if cmd := binary.LittleEndian.Uint32(b); cmd != CmdRet {
		q.t.Fatalf("reply cmd = %d, want RET", cmd)
	}
	if size := binary.LittleEndian.Uint64(b[8:]); size != 8 {
		q.t.Fatalf("reply size = %d, want 8", size)
	}
	return binary.LittleEndian.Uint64(b[16:])
}

func cfgMsg(addr, val uint32, n int32) []byte {
	p := make([]byte, cfgMsgSize)
	binary.LittleEndian.PutUint32(p[0:], addr)
	binary.LittleEndian.PutUint32(p[4:], val)
	binary.LittleEndian.PutUint32(p[8:], uint32(n))
	return p
}

func barMsg(addr, val uint64, n uint32, mem bool) []byte {
	p := make([]byte, barMsgSize)
	binary.LittleEndian.PutUint64(p[0:], addr)
	binary.LittleEndian.PutUint64(p[8:], val)
	binary.LittleEndian.PutUint32(p[16:], n)
	if mem {
		p[20] = 1
	}
	return p
}

func pair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conv := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "sp")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	return conv(fds[0]), conv(fds[1])
}

func startServe(t *testing.T, dev Device) (*qemuSide, chan error) {
	t.Helper()
	a, b := pair(t)
	done := make(chan error, 1)
	go func() { done <- Serve(context.Background(), b, dev) }()
	t.Cleanup(func() { a.Close() })
	return &qemuSide{t: t, c: a}, done
}

func TestServeConfigBARReset(t *testing.T) {
	dev := &fakeDev{bars: map[uint64]uint64{}}
	binary.LittleEndian.PutUint32(dev.cfg[0:], 0x00021b36)
	q, done := startServe(t, dev)

	q.send(CmdPCICfgRead, cfgMsg(0, 0, 4))
	if got, want := q.ret(), uint64(0x00021b36); got != want {
		t.Errorf("config read 0 = %#x, want %#x", got, want)
	}
	q.send(CmdPCICfgWrite, cfgMsg(0x10, 0xc001, 4))
	if got := q.ret(); got != 0 {
		t.Errorf("config write RET = %#x, want 0", got)
	}
	q.send(CmdPCICfgRead, cfgMsg(0x10, 0, 2))
	if got, want := q.ret(), uint64(0xc001); got != want {
		t.Errorf("config read 0x10/2 = %#x, want %#x", got, want)
	}
	q.send(CmdPCICfgRead, cfgMsg(0x10, 0, 3))
	if got, want := q.ret(), ^uint64(0); got != want {
		t.Errorf("config read of bad length = %#x, want all-ones", got)
	}
	q.send(CmdBARWrite, barMsg(0xfe000010, 0x1234, 4, true))
	q.ret()
	q.send(CmdBARRead, barMsg(0xfe000010, 0, 4, true))
	if got, want := q.ret(), uint64(0x1234); got != want {
		t.Errorf("BAR read = %#x, want %#x", got, want)
	}
	q.send(CmdDeviceReset, nil)
	q.ret()
	if dev.resets != 1 {
		t.Errorf("resets = %d, want 1", dev.resets)
	}
	q.c.Close()
	if err := <-done; err != nil {
		t.Errorf("Serve after QEMU closed = %v, want nil", err)
	}
}

func TestServeSyncSysmem(t *testing.T) {
	dev := &fakeDev{bars: map[uint64]uint64{}}
	q, done := startServe(t, dev)
	memfd, err := unix.MemfdCreate("ram", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(memfd)
	p := make([]byte, maxPayload)
	binary.LittleEndian.PutUint64(p[0:], 0x100000)   // gpas[0]
	binary.LittleEndian.PutUint64(p[64:], 0x200000)  // sizes[0]
	binary.LittleEndian.PutUint64(p[128:], 0x100000) // offsets[0]
	q.send(CmdSyncSysmem, p, memfd)
	// SYNC_SYSMEM has no reply: a following config read proves it was handled.
	q.send(CmdPCICfgRead, cfgMsg(0, 0, 1))
	q.ret()
	if len(dev.regions) != 1 {
		t.Fatalf("regions = %d, want 1", len(dev.regions))
	}
	if r := dev.regions[0]; r.GPA != 0x100000 || r.Size != 0x200000 || r.Offset != 0x100000 || r.File == nil {
		t.Errorf("region = %+v", r)
	}
	q.c.Close()
	<-done
	dev.regions[0].File.Close()
}

func TestServeRejectsBadMessages(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cmd     int32
		payload []byte
	}{
		{"unknown command", 42, nil},
		{"short config message", CmdPCICfgRead, make([]byte, 4)},
		{"short BAR message", CmdBARRead, make([]byte, 8)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, done := startServe(t, &fakeDev{bars: map[uint64]uint64{}})
			q.send(tc.cmd, tc.payload)
			if err := <-done; !errors.Is(err, ErrProtocol) {
				t.Errorf("Serve = %v, want ErrProtocol", err)
			}
		})
	}
	t.Run("oversized payload", func(t *testing.T) {
		q, done := startServe(t, &fakeDev{bars: map[uint64]uint64{}})
		hdr := make([]byte, hdrSize)
		binary.LittleEndian.PutUint32(hdr[0:], CmdSyncSysmem)
		binary.LittleEndian.PutUint64(hdr[8:], 1<<40)
		q.c.Write(hdr)
		if err := <-done; !errors.Is(err, ErrProtocol) {
			t.Errorf("Serve = %v, want ErrProtocol", err)
		}
	})
}

func TestServeStopsOnCancel(t *testing.T) {
	a, b := pair(t)
	defer a.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, b, &fakeDev{}) }()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve after cancel = %v, want nil", err)
	}
}

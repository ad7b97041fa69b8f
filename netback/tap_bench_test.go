package netback

import (
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"godm/internal/qemuopts"
	"godm/netback/antispoof"
)

const benchPayload = 1472 // a full 1500-byte IP packet

// udpSink counts datagrams a socket receives until stop.
func udpSink(s int, got *atomic.Int64, stop chan struct{}) {
	buf := make([]byte, 2048)
	for {
		select {
		case <-stop:
			return
		default:
		}
		if _, err := unix.Read(s, buf); err == nil { // (Recvfrom would allocate a Sockaddr)
			got.Add(1)
		}
	}
}

func udpSocket(b *testing.B, addr [4]byte, port int) int {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		b.Fatal(err)
	}
	unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
	unix.SetsockoptTimeval(s, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100000})
	if err := unix.Bind(s, &unix.SockaddrInet4{Port: port, Addr: addr}); err != nil {
		b.Fatal(err)
	}
	return s
}

func report(b *testing.B, got int64, start time.Time) {
	el := time.Since(start).Seconds()
	b.ReportMetric(float64(got)/el, "rxframes/s")
	b.ReportMetric(float64(got)*benchPayload/el/1e6, "rxMB/s")
	b.ReportMetric(float64(got)/float64(b.N), "delivered")
}

// BenchmarkTapUDPToNamespace: a guest's UDP datagrams through the tap
// back-end to a socket in a namespace the benchmark makes; one op is one
// frame transmitted (waiting for room: back-pressure, not loss, on the
// guest's side).
func BenchmarkTapUDPToNamespace(b *testing.B) { tapUDPBench(b, "", nil) }

// BenchmarkTapAntiSpoof: the same, without and with the anti-spoofing
// classifier on the tap's ingress (the guest's MAC bound, its address
// listed: every frame goes through the IPv4 checks and passes).
func BenchmarkTapAntiSpoof(b *testing.B) {
	b.Run("filter=off", func(b *testing.B) { tapUDPBench(b, "", nil) })
	b.Run("filter=on", func(b *testing.B) {
		tapUDPBench(b, ",x-godm-antispoof-ip=10.80.0.2", func(tap *Tap) bool {
			if err := antispoof.Supported(); err != nil {
				b.Skipf("the kernel refuses a BPF classifier: %v", err)
				return false
			}
			return tap.AntiSpoof().Bind([6]byte{0, 0x16, 0x3e, 0, 0, 9}) == nil
		})
	})
}

func tapUDPBench(b *testing.B, extra string, setup func(*Tap) bool) {
	inNetns(b, func() {
		o, _ := qemuopts.Parse("-netdev", "tap,id=n,ifname=tapbench,script=no,downscript=no"+extra, "type")
		c, _ := ParseTap(o)
		tap, err := OpenTap(c)
		if err != nil {
			b.Error(err)
			return
		}
		defer tap.Close()
		if setup != nil && !setup(tap) {
			return
		}
		l, _ := netlink.LinkByName("tapbench")
		addr, _ := netlink.ParseAddr("10.80.0.1/24")
		netlink.AddrAdd(l, addr)
		s := udpSocket(b, [4]byte{10, 80, 0, 1}, 7000)
		defer unix.Close(s)
		room := make(chan struct{}, 1)
		tap.SetNotify(nil, func() {
			select {
			case room <- struct{}{}:
			default:
			}
		})
		frame := udpFrame(l.Attrs().HardwareAddr, net.HardwareAddr{0, 0x16, 0x3e, 0, 0, 9}, net.IPv4(10, 80, 0, 2), net.IPv4(10, 80, 0, 1), 7001, 7000, make([]byte, benchPayload), false)
		var got atomic.Int64
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { udpSink(s, &got, stop); close(done) }()
		b.SetBytes(benchPayload)
		b.ReportAllocs()
		b.ResetTimer()
		start := time.Now()
		for i := 0; i < b.N; i++ {
			f := tap.TxFrame()
			for f == nil {
				<-room // the tx wake-up (TestPortWakeups)
				f = tap.TxFrame()
			}
			f.SetLen(copy(f.Buf(), frame))
			tap.Transmit(f)
		}
		for tap.TxQueue().Len() > 0 {
			time.Sleep(100 * time.Microsecond)
		}
		time.Sleep(20 * time.Millisecond)
		b.StopTimer()
		report(b, got.Load(), start)
		if f := tap.AntiSpoof(); f != nil {
			c, err := f.Counters()
			if err != nil || c.Dropped() != 0 || c[antispoof.Passed] == 0 {
				b.Errorf("filter counters %v %v: every frame should pass", c, err)
			}
		}
		close(stop)
		<-done
	})
}

// BenchmarkLoopbackUDP is the floor: the same datagrams between two
// sockets on a namespace's loopback.
func BenchmarkLoopbackUDP(b *testing.B) {
	inNetns(b, func() {
		lo, _ := netlink.LinkByName("lo")
		netlink.LinkSetUp(lo)
		s := udpSocket(b, [4]byte{127, 0, 0, 1}, 7000)
		defer unix.Close(s)
		c, _ := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
		defer unix.Close(c)
		to := &unix.SockaddrInet4{Port: 7000, Addr: [4]byte{127, 0, 0, 1}}
		payload := make([]byte, benchPayload)
		var got atomic.Int64
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { udpSink(s, &got, stop); close(done) }()
		b.SetBytes(benchPayload)
		b.ResetTimer()
		start := time.Now()
		for i := 0; i < b.N; i++ {
			unix.Sendto(c, payload, 0, to)
		}
		time.Sleep(20 * time.Millisecond)
		b.StopTimer()
		report(b, got.Load(), start)
		close(stop)
		<-done
	})
}

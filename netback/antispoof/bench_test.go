package antispoof

import (
	"net"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// BenchmarkClassifier: the classifier's own cost per frame, run by the
// kernel (BPF_PROG_TEST_RUN through cilium/ebpf's Program.Benchmark; b.N
// repetitions in the kernel, its mean reported as ns/frame), for a frame
// that passes each path and for a dropped one.
func BenchmarkClassifier(b *testing.B) {
	if err := Supported(); err != nil {
		b.Skipf("the kernel refuses a BPF classifier: %v", err)
	}
	cfg, err := newArrayMap("bench_cfg", cfgSize)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(cfg)
	ctr, err := newArrayMap("bench_ctr", 8*uint32(NumCounters))
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(ctr)
	pol := Policy{Prefixes: []netip.Prefix{netip.MustParsePrefix("10.80.0.5/32"), netip.MustParsePrefix("10.81.0.0/16"), netip.MustParsePrefix("fd00::5/128")}}
	fd, err := loadSchedCLS("bench", program(pol, cfg, ctr))
	if err != nil {
		b.Fatal(err)
	}
	p, err := ebpf.NewProgramFromFD(fd) // (owns fd)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	var v [cfgSize]byte
	copy(v[:], guestMAC)
	v[cfgBound] = 1
	if err := mapUpdate(cfg, v[:]); err != nil {
		b.Fatal(err)
	}
	host := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	for _, c := range []struct {
		name  string
		frame []byte
		ret   int32
	}{
		{"ipv4-pass", udp4(host, guestMAC, guestIP, hostIP, 7001, 7000, string(make([]byte, 1472))), actNext},
		{"ipv4-spoofed", udp4(host, guestMAC, spoofIP, hostIP, 7001, 7000, string(make([]byte, 1472))), actDrop},
		{"mac-spoofed", udp4(host, otherMAC, guestIP, hostIP, 7001, 7000, string(make([]byte, 1472))), actDrop},
		{"arp-pass", arpRequest(guestMAC, guestMAC, guestIP, hostIP), actNext},
		{"ipv6-pass", ipv6(guestMAC, "fd00::5"), actNext},
	} {
		b.Run(c.name, func(b *testing.B) {
			ret, d, err := p.Benchmark(c.frame, b.N, nil)
			if err != nil {
				b.Fatal(err)
			}
			if int32(ret) != c.ret {
				b.Fatalf("returned %d, want %d", int32(ret), c.ret)
			}
			b.ReportMetric(float64(d.Nanoseconds()), "ns/frame")
		})
	}
}

package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// forbidden are the package families the product binary must not link:
// the simulated Xen, the benchmark rig, the QEMU test harnesses and
// anything built for tests. A family is the package and everything under
// it.
var forbidden = []string{
	"godm/hyp/xensim",          // the simulated dom0 kernel and hypervisor (and xensim/xenstored)
	"godm/hyp/hyptest",         // the dom0-interface conformance suite
	"godm/hyp/internal/golden", // golden ABI fixtures
	"godm/hyp/internal/kerneltest",
	"godm/bench",              // the benchmark rig
	"godm/internal/qtest",     // QEMU qtest client, scripts, simtarget
	"godm/internal/mpqemu",    // QEMU's multi-process proxy protocol
	"godm/internal/guest",     // a Linux guest under QEMU TCG
	"godm/internal/e2e",       // the real-guest harness
	"godm/devices/devicetest", // device conformance suite
	"godm/pci/pcitest",        // configuration-space checker of the fuzz targets
	"godm/internal/testfake",  // the shared test fakes (clock, interrupt recorder, Xen fixture)
	"godm/cmd/godm-lab",       // the lab command itself
	"testing",                 // the standard test framework, and testing/*
	// gVisor's netstack: user-mode networking runs in the child
	// godm-usernet (netback/userproc), not in the device model.
	"gvisor.dev/gvisor",
	"godm/netback/usernet",
	// cilium/ebpf's loader side (BTF, ELF, links, feature probes): the
	// anti-spoofing filter is built with its asm package and loaded with
	// four bpf(2) calls of its own (netback/antispoof); the loader would
	// add 2 MB (measured: 11.3 -> 13.3 MB, against 12.1 MB with asm only).
	"github.com/cilium/ebpf/btf",
	"github.com/cilium/ebpf/link",
	"github.com/cilium/ebpf/features",
	"github.com/cilium/ebpf/perf",
	"github.com/cilium/ebpf/ringbuf",
}

// forbiddenExact are packages forbidden alone (their subpackages may be
// linked): cilium/ebpf's root package is its loader; its asm is allowed.
var forbiddenExact = []string{"github.com/cilium/ebpf"}

// allowed are linked packages whose path contains "sim" or "test", with
// the reason each belongs in the product.
var allowed = map[string]string{
	// A guest-visible PCI function the -test-device flag adds so that a
	// guest's own driver (tools/guestdrv) can exercise DMA, BARs and
	// MSI-X on a real Xen host: a device of the platform, not a harness.
	"godm/devices/testdev": "the -test-device PCI function",
	// The standard library's: package os imports internal/testlog (a
	// hook that only go test installs; inert otherwise), and sync and
	// time import internal/synctest (the runtime side of testing/synctest
	// bubbles, inert outside one). Every Go program links them.
	"internal/testlog":  "imported by os in every Go program",
	"internal/synctest": "imported by sync and time in every Go program",
	// cilium/ebpf's asm imports its internal/sys, which imports this
	// (a file-descriptor leak tracer its own tests switch on; inert
	// otherwise).
	"github.com/cilium/ebpf/internal/testutils/testmain": "imported by cilium/ebpf/asm's internals; inert outside its tests",
}

// TestProductLinksNoLab: godm, the binary a toolstack runs, links no
// simulator, benchmark rig or QEMU test harness (go list -deps on the
// command, as the linker sees it with CGO_ENABLED=0). Beyond the explicit
// list, any linked package whose import path contains "sim" or "test"
// fails the test unless it is on the allow-list above.
func TestProductLinksNoLab(t *testing.T) {
	// go test puts the toolchain running it first on PATH.
	gocmd, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to list the dependencies with: %v", err)
	}
	cmd := exec.Command(gocmd, "list", "-deps", ".")
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	b, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list -deps: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(b))
	if len(deps) < 10 || !slices.Contains(deps, "godm/cmd/godm") || !slices.Contains(deps, "godm/internal/machine") {
		t.Fatalf("go list -deps printed an implausible list:\n%s", b)
	}
	for _, p := range deps {
		for _, f := range forbidden {
			if p == f || strings.HasPrefix(p, f+"/") {
				t.Errorf("godm links %s (forbidden family %s)", p, f)
			}
		}
		if slices.Contains(forbiddenExact, p) {
			t.Errorf("godm links %s (forbidden)", p)
		}
		if _, ok := allowed[p]; !ok && (strings.Contains(p, "sim") || strings.Contains(p, "test")) {
			t.Errorf("godm links %s: its path names a simulator or a test; move it out of the product or allow it with a reason", p)
		}
	}
	for p := range allowed {
		// (The standard library's may come and go with the toolchain.)
		if strings.HasPrefix(p, "godm/") && !slices.Contains(deps, p) {
			t.Errorf("allow-list names %s, which godm no longer links: drop it", p)
		}
	}
}

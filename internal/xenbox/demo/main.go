// Command demo boots the real-Xen box (internal/xenbox) and shows an HVM
// guest served by godm: Xen 4.17 and a Debian dom0 under QEMU's TCG, the
// guest created by xl with godm as its device model. By default the guest
// is Debian's Linux: SeaBIOS boots it from godm's IDE disk, and its /init
// reads and writes that disk through Linux's ata_piix, printing on godm's
// COM1 (the linux-disk scenario). -firmware shows the quicker test
// firmware instead, probing the xenfv devices and powering off.
// scripts/run.sh -xen runs it after fetching the packages. Progress and
// the interesting console lines go to stdout; -all shows every console
// line.
//
// Usage: demo -assets DIR [-firmware] [-all] [-timeout D]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"godm/internal/xenbox"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "xenbox demo:", err)
		os.Exit(1)
	}
}

func run() error {
	assets := flag.String("assets", os.Getenv(xenbox.EnvDir), "the box's assets (scripts/xenbox.sh prints the directory)")
	all := flag.Bool("all", false, "show every console line")
	fw := flag.Bool("firmware", false, "show the test firmware instead of a Linux guest")
	timeout := flag.Duration("timeout", 20*time.Minute, "give up after this long (a loaded machine slows the box several times over)")
	flag.Parse()
	if *assets == "" {
		return fmt.Errorf("no -assets directory (run scripts/run.sh -xen, which fetches them)")
	}
	a := xenbox.Assets{Dir: *assets}
	if err := a.Check(); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "xenbox-demo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	step := func(s string) { fmt.Printf("xenbox: %s\n", s) }

	if !*fw && a.KernelDeb() == "" {
		return fmt.Errorf("the box's packages in %s hold no Linux kernel for the guest: run with -firmware", *assets)
	}
	step("building godm, the launch wrapper and the guest firmware")
	extra := map[string]string{}
	for _, b := range []struct{ dst, name, pkg string }{
		{xenbox.GodmPath, "godm", "godm/cmd/godm"},
		{xenbox.DMWrapPath, "dmwrap", "godm/internal/xenbox/dmwrap"},
	} {
		if extra[b.dst], err = xenbox.GoBinary(tmp, b.name, b.pkg, false); err != nil {
			return err
		}
	}
	scenario := xenbox.FirmwareScenario()
	if *fw {
		if extra[xenbox.ProbeFWPath], err = xenbox.BuildFirmware(tmp, "probe", xenbox.Probes(), false); err != nil {
			return err
		}
	} else {
		step("building the Linux guest's disk (Debian's kernel, an initramfs with ata_piix, our MBR loader)")
		d, err := xenbox.BuildLinuxGuest(a, tmp)
		if err != nil {
			return err
		}
		extra[xenbox.LinuxDiskPath], extra[xenbox.LinuxQcow2Path] = d.Path, d.Qcow2
		scenario = xenbox.LinuxDiskScenario(d)
	}
	step("building the dom0 initramfs (busybox, xl, xenstored, their libraries, godm)")
	img, err := xenbox.WriteDom0(a, tmp, extra, []xenbox.Scenario{scenario})
	if err != nil {
		return err
	}
	step("booting Xen 4.17 and dom0 under QEMU's software CPU (qemu64,+svm,+npt); this takes a minute or two")
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	start := time.Now()
	o, err := xenbox.Boot(ctx, xenbox.Config{Assets: a, Initramfs: img, Log: &filter{all: *all, w: os.Stdout}})
	if err != nil {
		return err
	}
	r, ok := o.Result(scenario.Name)
	if !ok || !r.Passed() {
		return fmt.Errorf("the guest did not run to its end (%v)", r.Fields)
	}
	step(fmt.Sprintf("done: toolstack up after %.1f s, guest served by godm to its end, %.1f s in all",
		o.Up.Seconds(), time.Since(start).Seconds()))
	return nil
}

// filter passes the lines worth seeing in a demo.
type filter struct {
	all  bool
	w    io.Writer
	part []byte
}

var keep = []string{"Xen version", "HVM: SVM enabled", "Hardware Assisted Paging", "Linux version",
	"XENBOX-", "xenbox-dm[", "[firmware]", "[linux-disk]", "Triple fault"}

func (f *filter) Write(p []byte) (int, error) {
	f.part = append(f.part, p...)
	for {
		i := strings.IndexByte(string(f.part), '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(f.part[:i+1])
		f.part = f.part[i+1:]
		show := f.all
		for _, k := range keep {
			show = show || strings.Contains(line, k)
		}
		if show {
			io.WriteString(f.w, line)
		}
	}
}

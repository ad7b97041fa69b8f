package main

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childEnv makes the test binary run godm's main instead of the tests:
// the signal tests start it as a separate process, so that a real signal
// goes through run's signal.NotifyContext.
const childEnv = "GODM_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Args = append([]string{"godm"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestSimSignalTeardown runs `godm sim` as its own process group, waits
// until it serves the simulated guest, sends the signal to the group (as
// a terminal's ^C or an init system's stop does) while the guest workload
// is still running, and checks that godm stops promptly with exit status
// 0, having torn the ioreq server down: its report, computed from the
// simulated hypervisor's record of server creations and destructions,
// says nothing is left.
func TestSimSignalTeardown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts godm processes")
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "sim", "-serial", "null")
			cmd.Env = append(os.Environ(), childEnv+"=1")
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			pipe, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			var out bytes.Buffer
			serving := make(chan struct{})
			go func() {
				sc := bufio.NewScanner(pipe)
				announced := false
				for sc.Scan() {
					out.WriteString(sc.Text() + "\n")
					if !announced && strings.HasPrefix(sc.Text(), "godm: serving simulated") {
						announced = true
						close(serving)
					}
				}
				_, _ = io.Copy(io.Discard, pipe)
				exited <- cmd.Wait()
			}()
			kill := func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
			select {
			case <-serving:
			case err := <-exited:
				t.Fatalf("godm sim exited before serving: %v\n%s", err, stderr.String())
			case <-time.After(30 * time.Second):
				kill()
				t.Fatal("godm sim did not start serving within 30s")
			}
			start := time.Now()
			if err := syscall.Kill(-cmd.Process.Pid, sig); err != nil {
				kill()
				t.Fatalf("kill(-%d, %v): %v", cmd.Process.Pid, sig, err)
			}
			var werr error
			select {
			case werr = <-exited:
			case <-time.After(30 * time.Second):
				kill()
				<-exited
				t.Fatalf("godm sim still running 30s after %v", sig)
			}
			took := time.Since(start)
			report := out.String()
			if werr != nil {
				t.Fatalf("godm sim after %v: %v (want exit status 0)\nstdout:\n%s\nstderr:\n%s", sig, werr, report, stderr.String())
			}
			// Well under xensim's 5 s request timeout: the pending guest
			// access was failed by the teardown, not timed out.
			if took > 4*time.Second {
				t.Errorf("godm sim took %v to stop after %v", took, sig)
			}
			for _, want := range []string{"godm: interrupted", "teardown: 1 ioreq server destroyed, nothing left in the hypervisor"} {
				if !strings.Contains(report, want) {
					t.Errorf("report lacks %q:\n%s", want, report)
				}
			}
			if strings.Contains(report, "ACPI S5") {
				t.Errorf("the workload ran to its end: the signal did not interrupt serving\n%s", report)
			}
		})
	}
}

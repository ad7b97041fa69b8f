package xenbox

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// HostLibDirs are where the host's libraries are looked up for the dom0
// initramfs (the host is Debian bookworm, like the packages).
var HostLibDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64"}

// GoBinary builds a static (CGO_ENABLED=0) binary of the Go package pkg
// into dir/name; with test, the package's test binary (go test -c). It
// runs the go command of PATH in the current module.
func GoBinary(dir, name, pkg string, test bool) (string, error) {
	out := filepath.Join(dir, name)
	args := []string{"build", "-o", out, pkg}
	if test {
		args = []string{"test", "-c", "-o", out, pkg}
	}
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("xenbox: go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return out, nil
}

// WriteDom0 builds the dom0 initramfs (Dom0) and writes it to
// dir/dom0.cpio, returning that path.
func WriteDom0(a Assets, dir string, extra map[string]string, scenarios []Scenario) (string, error) {
	fs, err := Dom0(a, extra, scenarios, HostLibDirs)
	if err != nil {
		return "", err
	}
	img := filepath.Join(dir, "dom0.cpio")
	w, err := os.Create(img)
	if err != nil {
		return "", err
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	err = fs.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	return img, err
}

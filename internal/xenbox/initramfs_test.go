package xenbox

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"
)

// The archive holds every entry with its parents first, keeps links as
// links, and pulls in a dynamic binary's loader and libraries.
func TestInitramfs(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "hello")
	if err := os.WriteFile(src, []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := NewInitramfs()
	f.File("a/b/hello", src, 0o600)
	f.Bytes("/init", []byte("#!/bin/sh\n"), 0o755)
	f.Symlink("var/run", "/run")
	f.Dir("empty/dir")
	var sh string
	for _, p := range []string{"/bin/sh", "/usr/bin/sh"} {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			sh = r
			break
		}
	}
	if sh == "" {
		t.Fatal("no /bin/sh on the host")
	}
	f.File("bin/sh", sh, 0o755)
	if err := f.AddLibraryClosure(HostLibDirs); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := f.Write(&buf); err != nil {
		t.Fatal(err)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(buf.Bytes())))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]cpio.Record{}
	for _, r := range recs {
		if r.Name == cpio.Trailer {
			continue
		}
		for d := filepath.Dir(r.Name); d != "."; d = filepath.Dir(d) {
			if _, ok := seen[d]; !ok {
				t.Errorf("%s comes before its directory %s", r.Name, d)
			}
		}
		seen[r.Name] = r
	}
	check := func(name string, mode uint64, content string) {
		t.Helper()
		r, ok := seen[name]
		if !ok {
			t.Errorf("%s missing", name)
			return
		}
		if r.Mode != mode {
			t.Errorf("%s: mode %#o, want %#o", name, r.Mode, mode)
		}
		if content != "" {
			b := make([]byte, r.FileSize)
			r.ReadAt(b, 0)
			if string(b) != content {
				t.Errorf("%s: %q, want %q", name, b, content)
			}
		}
	}
	check("a/b/hello", cpio.S_IFREG|0o600, "hi\n")
	check("init", cpio.S_IFREG|0o755, "#!/bin/sh\n")
	check("var/run", cpio.S_IFLNK|0o777, "/run")
	check("empty/dir", cpio.S_IFDIR|0o755, "")
	libc := false
	for name := range seen {
		libc = libc || strings.HasPrefix(filepath.Base(name), "libc.so")
	}
	if !libc {
		t.Errorf("the shell's libc is not in the archive")
	}
	if _, ok := seen["lib64/ld-linux-x86-64.so.2"]; !ok {
		t.Errorf("the shell's loader is not in the archive")
	}

	g := NewInitramfs()
	g.Bytes("bin/x", elfNeeding(t), 0o755)
	if err := g.AddLibraryClosure(HostLibDirs); err == nil || !strings.Contains(err.Error(), "libq.so.7") {
		t.Errorf("closure with a missing library = %v, want an error naming it", err)
	}
}

// elfNeeding returns a copy of the host's /bin/sh whose DT_NEEDED
// "libc.so.6" is renamed "libq.so.7" (same length, so the string table
// stays valid): a library no host has.
func elfNeeding(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte("libc.so.6\x00"))
	if i < 0 {
		t.Fatal("the host's /bin/sh does not name libc.so.6")
	}
	out := append([]byte(nil), b...)
	copy(out[i:], "libq.so.7")
	return out
}

func TestInitScript(t *testing.T) {
	s := InitScript("usr/lib/xen-4.17/bin", []Scenario{{Name: "one", Script: "echo XENBOX-FACT k=v; exit 3"}})
	for _, want := range []string{"xenstored", "xen-init-dom0", "xenconsoled", "echo XENBOX-UP",
		"XENBOX-BEGIN name=one", "XENBOX-RESULT name=one", "XENBOX-DONE", "insmod /lib/modules/$m.ko",
		"export PATH=/xenbox/bin:/usr/lib/xen-4.17/bin:"} {
		if !strings.Contains(s, want) {
			t.Errorf("init script lacks %q", want)
		}
	}
	if strings.Index(s, "XENBOX-UP") > strings.Index(s, "XENBOX-BEGIN") {
		t.Errorf("a scenario starts before the toolstack is up")
	}
}

func TestFields(t *testing.T) {
	f := fields("name=a status=pass rc=0 junk x=1=2")
	if f["name"] != "a" || f["status"] != "pass" || f["rc"] != "0" || f["x"] != "1=2" || len(f) != 4 {
		t.Errorf("fields = %v", f)
	}
}

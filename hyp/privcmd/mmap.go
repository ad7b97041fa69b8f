package privcmd

import (
	"errors"
	"fmt"
	"time"

	"godm/hyp"

	"golang.org/x/sys/unix"
)

// MaxBatch is the most pages one MmapBatch or MmapResource may map here:
// 4 GiB of guest memory, far beyond any single mapping godm makes, and
// within the ioctls' 32-bit counts.
const MaxBatch = 1 << 20

// Paged-out frames (ENOENT) are retried like libxenforeignmemory does
// (tools/libs/foreignmemory/linux.c), but a bounded number of times: the
// frames still paged out afterwards stay holes with ENOENT.
const (
	pagedRetries = 1000
	pagedDelay   = 100 * time.Microsecond
)

// MmapBatch maps the guest frames gfns of dom into region (a range mapped
// from File() with at least len(gfns) pages) with
// IOCTL_PRIVCMD_MMAPBATCH_V2. errs receives one entry per frame: 0, or the
// negated errno of a frame that could not be mapped (a hole). Frames that
// are paged out (ENOENT) are retried in batches of consecutive frames.
//
// A nil error means the ioctl ran: look at errs for holes. An error means
// nothing usable was mapped.
func (h *Handle) MmapBatch(dom hyp.DomID, region []byte, gfns []uint64, errs []int32) error {
	n := len(gfns)
	switch {
	case n == 0 || n > MaxBatch:
		return fmt.Errorf("privcmd: mmapbatch %v: %d frames: %w", dom, n, unix.EINVAL)
	case len(errs) < n || len(region)/PageSize < n:
		return fmt.Errorf("privcmd: mmapbatch %v: %d frames, %d error slots, %d-byte region: %w",
			dom, n, len(errs), len(region), unix.EINVAL)
	}
	if h.closed.Load() {
		return fmt.Errorf("privcmd: mmapbatch %v: %w", dom, hyp.ErrClosed)
	}
	for i := range errs[:n] {
		errs[i] = 0
	}
	err := ioctlMmapBatch(h.f, dom, region, gfns, errs[:n])
	if errors.Is(err, unix.ENOENT) {
		err = h.retryPaged(dom, region, gfns, errs[:n])
	}
	if err != nil {
		return fmt.Errorf("privcmd: mmapbatch %v (%d frames): %w", dom, n, notSupported(err))
	}
	return nil
}

// retryPaged retries the frames whose error is -ENOENT, batching runs of
// consecutive ones, until none is left or the retry budget is spent.
func (h *Handle) retryPaged(dom hyp.DomID, region []byte, gfns []uint64, errs []int32) error {
	const enoent = -int32(unix.ENOENT)
	for try := 0; try < pagedRetries; try++ {
		time.Sleep(pagedDelay)
		paged := 0
		for i := 0; i < len(gfns); {
			if errs[i] != enoent {
				i++
				continue
			}
			j := i + 1
			for j < len(gfns) && errs[j] == enoent {
				j++
			}
			paged++
			err := ioctlMmapBatch(h.f, dom, region[i*PageSize:j*PageSize], gfns[i:j], errs[i:j])
			if err != nil && !errors.Is(err, unix.ENOENT) {
				return err
			}
			i = j
		}
		if paged == 0 {
			return nil
		}
	}
	return nil
}

// ResourceSize returns the number of frames of resource typ/id of dom
// (XENMEM_acquire_resource through IOCTL_PRIVCMD_MMAP_RESOURCE with
// addr=0, num=0).
func (h *Handle) ResourceSize(dom hyp.DomID, typ, id uint32) (uint64, error) {
	if h.closed.Load() {
		return 0, fmt.Errorf("privcmd: resource size %v type %d id %d: %w", dom, typ, id, hyp.ErrClosed)
	}
	num, err := ioctlMmapResource(h.f, dom, typ, id, 0, nil)
	if err != nil {
		return 0, fmt.Errorf("privcmd: resource size %v type %d id %d: %w", dom, typ, id, notSupported(err))
	}
	return num, nil
}

// MmapResource maps len(region)/PageSize frames of resource typ/id of dom,
// starting at frame idx, into region (a range mapped from File()) with
// IOCTL_PRIVCMD_MMAP_RESOURCE. A kernel or Xen without resource mapping
// gives an error wrapping hyp.ErrNotSupported.
func (h *Handle) MmapResource(dom hyp.DomID, typ, id, idx uint32, region []byte) error {
	n := len(region) / PageSize
	if n == 0 || n > MaxBatch || len(region)%PageSize != 0 {
		return fmt.Errorf("privcmd: mmap resource %v type %d id %d: %d-byte region: %w",
			dom, typ, id, len(region), unix.EINVAL)
	}
	if h.closed.Load() {
		return fmt.Errorf("privcmd: mmap resource %v type %d id %d: %w", dom, typ, id, hyp.ErrClosed)
	}
	if _, err := ioctlMmapResource(h.f, dom, typ, id, idx, region); err != nil {
		return fmt.Errorf("privcmd: mmap resource %v type %d id %d frame %d+%d: %w",
			dom, typ, id, idx, n, notSupported(err))
	}
	return nil
}

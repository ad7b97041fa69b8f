package block

import "golang.org/x/sys/unix"

// rawImage is a raw file or block device: guest offset = file offset.
type rawImage struct {
	h    *hostFile
	size int64
}

func (r *rawImage) readAt(p []byte, off int64) error  { return r.h.readAt(p, off) }
func (r *rawImage) writeAt(p []byte, off int64) error { return r.h.writeAt(p, off) }
func (r *rawImage) flush() error                      { return r.h.flush() }
func (r *rawImage) close() error                      { return r.h.close() }
func (r *rawImage) virtualSize() int64                { return r.size }

// discard deallocates the range (advisory: the data reads back as zeros
// where the file system can punch holes, unchanged elsewhere).
func (r *rawImage) discard(off, n int64) error {
	err := r.h.fallocate(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	if err == errNotSupported {
		return nil
	}
	return err
}

// writeZeroes zeroes the range: a punched hole if unmap is allowed, else
// a zeroed (allocated) range, else ordinary writes of zeros.
func (r *rawImage) writeZeroes(off, n int64, unmap bool) error {
	if unmap {
		if err := r.h.fallocate(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n); err != errNotSupported {
			return err
		}
	}
	if err := r.h.fallocate(unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, off, n); err != errNotSupported {
		return err
	}
	return r.h.writeZeros(off, n)
}

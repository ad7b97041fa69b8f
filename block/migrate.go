package block

import "fmt"

// A live migration hands a disk image from the source's device model to
// the destination's on the same storage. The source flushes and lets go
// of its locks once the devices' state is saved (QEMU: bdrv_inactivate_all
// in qmp_xen_save_devices_state); the destination opened the image
// without locks (Options.Inactive) and takes them when the guest
// continues (QEMU: bdrv_activate_all at cont), re-reading the metadata
// the source may have changed since. If the migration fails, the source
// activates again and goes on. An inactive drive serves no request.

// chainFile is one file of the backing chain and whether it is opened
// for writing (which locks it takes).
type chainFile struct {
	h        *hostFile
	writable bool
}

// Active reports whether the drive serves I/O.
func (d *Drive) Active() bool { return !d.inactive.Load() }

// Inactivate makes completed writes durable and releases the chain's
// image locks; from then on requests fail with ErrInactive. It is a
// no-op on an inactive drive.
func (d *Drive) Inactivate() error {
	d.actMu.Lock()
	defer d.actMu.Unlock()
	if d.inactive.Load() {
		return nil
	}
	if !d.opts.ReadOnly {
		if err := d.img.flush(); err != nil {
			return fmt.Errorf("block: %s: flush before hand-over: %w", d.h.path, err)
		}
	}
	d.inactive.Store(true)
	if !d.opts.NoLock {
		for _, f := range d.files {
			unlockAll(f.h)
		}
	}
	return nil
}

// Activate takes the chain's image locks (failing, with the drive left
// inactive, while another process holds a conflicting one) and re-reads
// the image's metadata, then serves I/O again. It is a no-op on an
// active drive.
func (d *Drive) Activate() error {
	d.actMu.Lock()
	defer d.actMu.Unlock()
	if !d.inactive.Load() {
		return nil
	}
	if !d.opts.NoLock {
		for i, f := range d.files {
			if err := lockImage(f.h, f.writable); err != nil {
				for _, g := range d.files[:i] {
					unlockAll(g.h)
				}
				return err
			}
		}
	}
	if q, ok := d.img.(*qcow2Image); ok {
		if err := q.reload(); err != nil {
			if !d.opts.NoLock {
				for _, f := range d.files {
					unlockAll(f.h)
				}
			}
			return fmt.Errorf("block: %s: re-reading the image after hand-over: %w", d.h.path, err)
		}
	}
	d.inactive.Store(false)
	return nil
}

// reload re-reads the header, L1 and refcount tables and drops the
// table caches: another process may have written the image while this
// one held it inactive. The backing chain stays (read-only images the
// other process could not change); a header that now names another
// backing file or size is refused.
func (q *qcow2Image) reload() error {
	writable := q.rbc != nil
	n, err := openQcow2(q.h, writable, 0, func(string, string, int) (image, error) { return q.backing, nil })
	if err != nil {
		return err
	}
	if n.size != q.size || n.cbits != q.cbits || n.esz != q.esz || n.rbits != q.rbits ||
		n.hdr.backingName != q.hdr.backingName || (n.backing == nil) != (q.backing == nil) {
		return fmt.Errorf("the image's geometry or backing file changed while it was handed over")
	}
	q.mu.Lock()
	q.zmu.Lock()
	q.hdr, q.l1, q.rt, q.l2c, q.rbc, q.next = n.hdr, n.l1, n.rt, n.l2c, n.rbc, n.next
	q.cow, q.l2nb = n.cow, n.l2nb
	q.zkey = 0
	q.zmu.Unlock()
	q.mu.Unlock()
	return nil
}

package ide

import (
	"errors"
	"fmt"

	"godm/devices"
	"godm/devices/savestate"
)

// StateVersion is the version of the controller's snapshot record.
// Version 2 carries a unit's PIO buffer only while a transfer is pending
// (DRQ or BUSY; QEMU likewise saves io_buffer only in its pio_state
// subsection, when DRQ is up): version 1 carried all four 128 KiB
// buffers, 512 KiB of every save. Version 1 records are still read.
const StateVersion = 2

// RecordName names the controller's records.
const RecordName = "piix3-ide"

var (
	_ devices.Snapshotter = (*Controller)(nil)
	_ devices.Pauser      = (*Controller)(nil)
)

// ErrBusy is returned by Snapshot while DMA is in flight (pause first:
// Pause waits for it).
var ErrBusy = errors.New("ide: DMA in flight")

// Snapshot implements devices.Snapshotter: the PCI function, each
// channel's registers and bus-master state, and each drive position's
// task file, PIO buffer and ATAPI state. The media are not in it: the
// restoring machine opens the same images.
func (d *Controller) Snapshot() ([]byte, error) { return d.snapshot(StateVersion) }

// snapshot writes a record of version ver (1 or 2; tests write 1).
func (d *Controller) snapshot(ver uint32) ([]byte, error) {
	var w savestate.Writer
	d.fn.WriteState(&w)
	for i := range d.ch {
		ch := &d.ch[i]
		ch.mu.Lock()
		busy := ch.jobs[0].busy || ch.jobs[1].busy
		if !busy {
			ch.save(&w, ver)
		}
		ch.mu.Unlock()
		if busy {
			return nil, ErrBusy
		}
	}
	return savestate.Record(RecordName, ver, w.Out()), nil
}

func (ch *channel) save(w *savestate.Writer, ver uint32) {
	w.U8(uint8(ch.cur))
	w.U8(ch.cmd)
	w.Bool(ch.level)
	bm := &ch.bm
	w.U8(bm.cmd)
	w.U8(bm.status)
	w.U32(bm.addr)
	w.U32(bm.curAddr)
	w.Bool(bm.curPrdLast)
	w.U32(bm.curPrdAddr)
	w.U32(bm.curPrdLen)
	w.U8(uint8(bm.pending))
	w.U8(uint8(bm.pendUnit))
	w.Bool(bm.stopped)
	for n := range ch.u {
		u := &ch.u[n]
		w.Bool(u.has)
		w.U8(uint8(u.kd))
		w.Bool(u.wcache)
		for _, b := range []uint8{u.feature, u.errReg, u.sector, u.lcyl, u.hcyl, u.hobFeature, u.hobNsector,
			u.hobSector, u.hobLcyl, u.hobHcyl, u.sel, u.status, u.senseKey, u.asc, u.cdromChanged, uint8(u.end), uint8(u.dmaCmd)} {
			w.U8(b)
		}
		w.U32(u.nsector)
		for _, b := range []bool{u.lba48, u.identifySet, u.trayOpen, u.trayLocked, u.evNewMedia, u.evEjectReq, u.atapiDMA} {
			w.Bool(b)
		}
		w.U32(uint32(u.multSectors))
		w.U32(uint32(u.reqNbSectors))
		w.Bytes(u.identify[:])
		w.U32(uint32(u.dataPtr))
		w.U32(uint32(u.dataEnd))
		if ver < 2 || u.bufferLive() {
			w.Bytes(u.buf)
		} else {
			w.Bytes(nil)
		}
		w.U64(uint64(u.lba))
		w.U64(uint64(u.packetSize))
		w.U64(uint64(u.elemSize))
		w.U32(uint32(u.bufIndex))
		w.U32(uint32(u.ioBufSize))
		w.U32(uint32(u.cdSectorSize))
	}
}

// Restore implements devices.Snapshotter. The controller must have the
// same drive kinds at the same positions; a record that does not fit
// (another layout, a buffer index out of range) is refused before any
// state changes.
func (d *Controller) Restore(b []byte) error {
	ver, r, err := savestate.Open(b, RecordName, StateVersion)
	if err != nil {
		return err
	}
	if err := d.fn.ReadState(r); err != nil {
		return fmt.Errorf("ide: %w", err)
	}
	var chs [2]channel
	for i := range chs {
		if err := chs[i].load(r, &d.ch[i], ver); err != nil {
			r.Fail(err)
		}
	}
	if err := r.Done(); err != nil {
		return fmt.Errorf("ide: restore: %w", err)
	}
	for i := range d.ch {
		ch, src := &d.ch[i], &chs[i]
		ch.mu.Lock()
		ch.gen++
		ch.cur, ch.cmd, ch.bm = src.cur, src.cmd, src.bm
		ch.setLine(src.level)
		for n := range ch.u {
			u, s := &ch.u[n], &src.u[n]
			u.wcache = s.wcache
			u.feature, u.errReg, u.sector, u.lcyl, u.hcyl = s.feature, s.errReg, s.sector, s.lcyl, s.hcyl
			u.hobFeature, u.hobNsector, u.hobSector, u.hobLcyl, u.hobHcyl = s.hobFeature, s.hobNsector, s.hobSector, s.hobLcyl, s.hobHcyl
			u.sel, u.status, u.senseKey, u.asc, u.cdromChanged, u.end, u.dmaCmd = s.sel, s.status, s.senseKey, s.asc, s.cdromChanged, s.end, s.dmaCmd
			u.nsector = s.nsector
			u.lba48, u.identifySet, u.trayOpen, u.trayLocked = s.lba48, s.identifySet, s.trayOpen, s.trayLocked
			u.evNewMedia, u.evEjectReq, u.atapiDMA = s.evNewMedia, s.evEjectReq, s.atapiDMA
			u.multSectors, u.reqNbSectors = s.multSectors, s.reqNbSectors
			u.identify = s.identify
			u.dataPtr, u.dataEnd = s.dataPtr, s.dataEnd
			if len(s.buf) == 0 {
				clear(u.buf) // not live: nothing of it can be read
			} else {
				copy(u.buf, s.buf)
			}
			u.lba, u.packetSize, u.elemSize = s.lba, s.packetSize, s.elemSize
			u.bufIndex, u.ioBufSize, u.cdSectorSize = s.bufIndex, s.ioBufSize, s.cdSectorSize
		}
		ch.mu.Unlock()
	}
	return nil
}

// load reads one channel into ch (a scratch copy), checking it against
// the live channel's drives.
func (ch *channel) load(r *savestate.Reader, live *channel, ver uint32) error {
	bad := func(what string, v any) error { return fmt.Errorf("%s %v: %w", what, v, savestate.ErrFormat) }
	ch.cur = int(r.U8())
	ch.cmd = r.U8()
	ch.level = r.Bool()
	bm := &ch.bm
	bm.cmd, bm.status = r.U8(), r.U8()
	bm.addr, bm.curAddr = r.U32(), r.U32()
	bm.curPrdLast = r.Bool()
	bm.curPrdAddr, bm.curPrdLen = r.U32(), r.U32()
	bm.pending, bm.pendUnit = dmaKind(r.U8()), int(r.U8())
	bm.stopped = r.Bool()
	if ch.cur > 1 || bm.pendUnit > 1 || bm.pending > dmaTrim || bm.curPrdLen > 0x10000 {
		return bad("channel registers", ch.cur)
	}
	for n := range ch.u {
		u := &ch.u[n]
		u.has = r.Bool()
		u.kd = Kind(r.U8())
		if u.has != live.u[n].has || (u.has && u.kd != live.u[n].kd) {
			return fmt.Errorf("drive %d.%d is %v here, not in the snapshot: %w", live.idx, n, live.u[n].kd, savestate.ErrFormat)
		}
		u.wcache = r.Bool()
		for _, p := range []*uint8{&u.feature, &u.errReg, &u.sector, &u.lcyl, &u.hcyl, &u.hobFeature, &u.hobNsector,
			&u.hobSector, &u.hobLcyl, &u.hobHcyl, &u.sel, &u.status, &u.senseKey, &u.asc, &u.cdromChanged} {
			*p = r.U8()
		}
		u.end, u.dmaCmd = endFn(r.U8()), dmaKind(r.U8())
		u.nsector = r.U32()
		for _, p := range []*bool{&u.lba48, &u.identifySet, &u.trayOpen, &u.trayLocked, &u.evNewMedia, &u.evEjectReq, &u.atapiDMA} {
			*p = r.Bool()
		}
		u.multSectors, u.reqNbSectors = int(r.U32()), int(r.U32())
		r.Fixed(u.identify[:])
		u.dataPtr, u.dataEnd = int(r.U32()), int(r.U32())
		u.buf = r.Bytes(ioBufLen)
		u.lba = int64(r.U64())
		u.packetSize, u.elemSize = int64(r.U64()), int64(r.U64())
		u.bufIndex, u.ioBufSize, u.cdSectorSize = int(r.U32()), int(r.U32()), int(r.U32())
		if r.Err() != nil {
			return r.Err()
		}
		switch {
		case u.end >= numEnds || u.dmaCmd > dmaTrim:
			return bad("transfer state", u.end)
		case len(u.buf) != ioBufLen && (ver < 2 || len(u.buf) != 0 || u.bufferLive()):
			return bad("PIO buffer length", len(u.buf))
		case u.dataPtr < 0 || u.dataEnd < u.dataPtr || u.dataEnd > ioBufLen:
			return bad("PIO window", [2]int{u.dataPtr, u.dataEnd})
		case u.multSectors > maxMult || u.reqNbSectors > 256 || u.nsector > 65536:
			return bad("sector counts", u.nsector)
		case u.cdSectorSize != 0 && u.cdSectorSize != 2048 && u.cdSectorSize != 2352:
			return bad("CD sector size", u.cdSectorSize)
		case u.bufIndex < 0 || u.bufIndex > ioBufLen || u.ioBufSize < 0 || u.ioBufSize > ioBufLen:
			return bad("ATAPI buffer index", u.bufIndex)
		case u.cdSectorSize == 0 && u.lba != -1 && u.end == endAtapiReply:
			return bad("ATAPI read without a sector size", u.lba)
		}
	}
	return nil
}

// bufferLive reports whether the unit's buffer holds data a transfer
// still needs: data moves through the data port only under DRQ, and a
// pending DMA (BUSY) may carry an ATAPI reply in it.
func (u *unit) bufferLive() bool { return u.status&(stDRQ|stBUSY) != 0 }

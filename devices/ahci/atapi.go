package ahci

import (
	"errors"
	"fmt"

	"godm/block"
	"godm/devices/ide"
	"godm/memory"
)

// ATA commands a CD-ROM drive takes besides PACKET and IDENTIFY PACKET
// DEVICE (QEMU core.c ide_cmd_table entries with CD_OK).
const (
	ataDeviceReset = 0x08
	ataDiagnose    = 0x90
	ataReadSectors = 0x20
)

// ATAPI interrupt reason bits in the count register and the media-changed
// error bit (QEMU internal.h ATAPI_INT_REASON_*, MC_ERR).
const (
	reasonCD = 0x01
	reasonIO = 0x02
	errMC    = 0x20
	// acmdOff is the ATAPI command's offset in the command table
	// (AHCI 1.3 §4.2.3: ACMD, 16 bytes at 0x40).
	acmdOff = 0x40
	// packetLen is the ATAPI packet the PACKET command's first PIO
	// phase carries (ATAPI_PACKET_SIZE).
	packetLen = 12
)

// execCD runs ATA command cmd for a CD-ROM drive (QEMU ide_exec_cmd with
// the CD_OK entries): IDENTIFY DEVICE aborts with the ATAPI signature in
// the registers, which is how hosts tell a packet device.
func (p *port) execCD(slot int, hdrAddr uint64, cmd uint8) {
	p.tf.status = stREADY | stBUSY
	p.tf.err = 0
	dsc := false
	switch cmd {
	case ataPacket:
		p.packet(slot, hdrAddr)
		if p.running {
			return
		}
		p.cmdDone()
		return
	case ataIdentPacket:
		p.identify()
		p.tf.status = stREADY | stSEEK | stDRQ
		n, err := p.pioIn(hdrAddr, p.ident[:])
		if err != nil {
			p.abort()
			break
		}
		p.setPRDBC(hdrAddr, n)
		p.writePIO(n)
		p.tf.status = stREADY | stSEEK
		p.cmdDone()
		return
	case ataIdentify:
		p.tf.nsector, p.tf.sector, p.tf.lcyl, p.tf.hcyl = 1, 1, 0x14, 0xeb
		p.abort()
	case ataDeviceReset:
		// cmd_device_reset: ide_reset (the signature), status 0. QEMU
		// then leaves the slot without a D2H FIS; the FIS is written
		// here, as a device ends every command.
		p.cds.Reset()
		p.tf = taskfile{sel: 0xa0, nsector: 1, sector: 1, lcyl: 0x14, hcyl: 0xeb}
		p.cmdDone()
		return
	case ataDiagnose:
		p.tf.nsector, p.tf.sector, p.tf.lcyl, p.tf.hcyl = 1, 1, 0x14, 0xeb
		p.tf.err = 1
		p.tf.status = 0
		p.cmdDone()
		return
	case ataFlush:
		// A CD-ROM holds no dirty data (ide_flush_cache on a
		// read-only medium completes at once).
	case ataSetFeatures:
		dsc = true
		p.setFeatures()
	default:
		// READ SECTORS is CD_OK in QEMU only to abort with the
		// signature (cmd_read_pio on a CD).
		if cmd == ataReadSectors {
			p.tf.nsector, p.tf.sector, p.tf.lcyl, p.tf.hcyl = 1, 1, 0x14, 0xeb
		}
		p.abort()
	}
	p.tf.status &^= stBUSY
	if dsc && p.tf.err == 0 {
		p.tf.status |= stSEEK
	}
	p.cmdDone()
}

// packet is the PACKET command (QEMU cmd_packet, then ide_atapi_cmd with
// AHCI's PIO transfer): the packet is the command table's ACMD area; the
// packet phase writes a PIO setup FIS without the interrupt bit (SATA
// DPKT0); the data goes through the PRDT. A command that ends here
// leaves the task file for the caller's D2H FIS; a READ runs as a job.
func (p *port) packet(slot int, hdrAddr uint64) {
	if p.tf.feature&0x02 != 0 { // overlapped commands
		p.abort()
		return
	}
	p.atapiDMA = p.tf.feature&1 != 0
	p.tf.nsector = 1
	p.tf.status = stREADY | stSEEK | stDRQ
	p.writePIOFIS(packetLen, false)
	p.tf.status = stREADY | stSEEK
	h := decodeHeader(p.hdr[:])
	pk := p.buf[:ioReplyLen]
	clear(pk[:16])
	if h.atapi {
		copy(pk[:16], p.tbl[acmdOff:acmdOff+16])
	}
	bcl := int64(p.tf.lcyl) | int64(p.tf.hcyl)<<8
	r := p.cds.Exec(pk, p.atapiDMA, bcl == 0)
	switch r.Kind {
	case ide.ATAPIGood:
		p.atapiOK()
	case ide.ATAPICheck:
		p.atapiCheck()
	case ide.ATAPIUnitAttention:
		// ide_atapi_cmd_check_status. QEMU 7.2 sends no D2H FIS for it
		// on AHCI (no transfer stop); the caller writes one.
		p.tf.err = errMC | 6<<4
		p.tf.status = stERR
		p.tf.nsector = 0
	case ide.ATAPIAbort:
		p.abort()
	case ide.ATAPIReply:
		p.atapiReply(hdrAddr, r.N)
	case ide.ATAPIRead:
		p.atapiRead(slot, hdrAddr, r)
	}
}

// ioReplyLen is what a reply may fill of the port's buffer (the command
// layer needs at least 4 KiB).
const ioReplyLen = 8 << 10

func (p *port) atapiOK() {
	p.tf.err = 0
	p.tf.status = stREADY | stSEEK
	p.tf.nsector = p.tf.nsector&^7 | reasonIO | reasonCD
}

func (p *port) atapiCheck() {
	key, _ := p.cds.Sense()
	p.tf.err = key << 4
	p.tf.status = stREADY | stERR
	p.tf.nsector = p.tf.nsector&^7 | reasonIO | reasonCD
}

// writePIOFIS writes the PIO setup FIS for n bytes; irq sets its
// interrupt bit and raises PSS (QEMU 7.2 ahci_write_fis_pio with
// pio_fis_i).
func (p *port) writePIOFIS(n uint32, irq bool) {
	if !irq {
		if p.cmd&cmdFR == 0 || p.cmd&cmdFRE == 0 {
			return
		}
		f := &p.fis
		p.fisRegs(f[:], 0x5f)
		f[1] = 0
		f[15] = p.tf.status
		f[16], f[17] = byte(n), byte(n>>8)
		_ = p.c.mem.Write(memory.GPA(p.fbAddr()+fisPSFIS), f[:])
		p.tfd = uint32(p.tf.err)<<8 | uint32(p.tf.status)
		return
	}
	p.writePIO(n)
}

// pioBlocks is the PIO side of a transfer of total bytes under byte count
// limit bcl as ide_atapi_cmd_reply_end splits it (frame bytes per frame
// for a READ, 0 for a reply): the byte count the last block leaves in
// the cylinder registers and the last DRQ block's size. ok false for a
// limit that cannot move the data (1 with more than a byte to go: QEMU
// loops on empty blocks).
func pioBlocks(total, bcl int64, frame int) (regs, last int64, ok bool) {
	if bcl == 0xffff {
		bcl--
	}
	regs = total
	if total > bcl {
		even := bcl &^ 1
		if even == 0 {
			return 0, 0, false
		}
		k := (total - bcl + even - 1) / even
		regs = total - k*even
	}
	last = regs
	if frame > 0 {
		last = min(regs, int64(frame))
	}
	return regs, last, true
}

// atapiReply moves n bytes of the reply in the port's buffer to the
// PRDT (QEMU ide_atapi_cmd_reply: by DMA, or by PIO blocks of the byte
// count limit) and leaves the good status.
func (p *port) atapiReply(hdrAddr uint64, n int) {
	if !p.atapiDMA {
		regs, last, ok := pioBlocks(int64(n), int64(p.tf.lcyl)|int64(p.tf.hcyl)<<8, 0)
		if !ok {
			p.abort()
			return
		}
		if n > 0 {
			p.tf.lcyl, p.tf.hcyl = uint8(regs), uint8(regs>>8)
		}
		defer p.pioDone(uint32(last))
	}
	if err := p.toPRDT(hdrAddr, p.buf[:n], 0); err != nil {
		p.abort()
		return
	}
	p.setPRDBC(hdrAddr, uint32(n))
	p.atapiOK()
}

// pioDone writes the last PIO block's setup FIS (interrupt bit, PSS)
// with the data-in reason, unless the command failed.
func (p *port) pioDone(last uint32) {
	if p.tf.status&stERR != 0 || last == 0 {
		return
	}
	st, ns := p.tf.status, p.tf.nsector
	p.tf.status = stREADY | stSEEK | stDRQ
	p.tf.nsector = ns&^7 | reasonIO
	p.writePIOFIS(last, true)
	p.tf.status, p.tf.nsector = st, ns
}

// toPRDT copies b to the PRDT from byte off on; a table shorter than the
// data takes what fits (QEMU's sglist is cut to the table).
func (p *port) toPRDT(hdrAddr uint64, b []byte, off int64) error {
	h := decodeHeader(p.hdr[:])
	c := prdCursor{base: h.table + 0x80, n: h.prdtl}
	for off > 0 {
		_, n, err := c.next(p.c.mem, int(min(off, 1<<30)), &p.scratch)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		off -= int64(n)
	}
	_, err := p.walk(&c, b, true, true)
	return err
}

// atapiRead starts a READ of r.Count frames as a job: chunks of whole
// frames read into the port's buffer through its queue, then copied to
// the PRDT in order (ide_atapi_cmd_read_dma_cb's 128 KiB steps; PIO takes
// the same path, its byte count blocks folded into one PIO setup FIS).
func (p *port) atapiRead(slot int, hdrAddr uint64, r ide.ATAPIResult) {
	j := &p.job
	*j = job{slot: slot, tag: -1, hdrAddr: hdrAddr, atapi: true, frameSize: r.FrameSize,
		lba: uint64(r.LBA), frames: r.Count, total: r.Count * int64(r.FrameSize)}
	if !p.atapiDMA {
		if _, _, ok := pioBlocks(j.total, int64(p.tf.lcyl)|int64(p.tf.hcyl)<<8, r.FrameSize); !ok {
			p.abort()
			return
		}
	}
	p.tf.status = stREADY | stSEEK | stDRQ | stBUSY
	if err := p.submitFrames(); err != nil {
		p.cds.IOError(err)
		p.atapiCheck()
		return
	}
	p.running = true
}

// submitFrames queues the next chunk of frames (2048-byte frames on the
// medium; a raw READ CD widens them to 2352 bytes after the read).
func (p *port) submitFrames() error {
	j := &p.job
	n := min(j.frames, int64(dmaChunk/j.frameSize))
	j.n = int(n)
	p.bufs[0] = p.buf[:n*2048]
	p.req = block.Request{Op: block.OpRead, Off: int64(j.lba) * 2048, Bufs: p.bufs[:], Tag: p.gen, Done: p.ioDoneFn}
	return p.submit()
}

// atapiReadDone is a READ chunk's completion (the controller's lock
// held): the frames to the PRDT, then the next chunk or the end.
func (p *port) atapiReadDone(r *block.Request) {
	j := &p.job
	if r.Err != nil {
		p.atapiReadFailed(r.Err)
		return
	}
	b := p.buf[:j.n*j.frameSize]
	if j.frameSize == 2352 {
		ide.CDFramesToRaw(b, int64(j.lba), j.n)
	}
	if err := p.toPRDT(j.hdrAddr, b, int64(j.done)); err != nil {
		p.atapiReadFailed(nil)
		return
	}
	j.done += uint32(len(b))
	j.frames -= int64(j.n)
	j.lba += uint64(j.n)
	p.setPRDBC(j.hdrAddr, j.done)
	if j.frames > 0 {
		if err := p.submitFrames(); err != nil {
			p.atapiReadFailed(err)
		}
		return
	}
	p.running = false
	if !p.atapiDMA {
		regs, last, _ := pioBlocks(j.total, int64(p.tf.lcyl)|int64(p.tf.hcyl)<<8, j.frameSize)
		p.tf.lcyl, p.tf.hcyl = uint8(regs), uint8(regs>>8)
		p.atapiOK()
		p.pioDone(uint32(last))
	} else {
		p.atapiOK()
	}
	p.ci &^= 1 << j.slot
	p.busy = -1
	p.cmdDone()
	p.checkCmd()
}

// atapiReadFailed ends a READ with the sense of a failed read (err nil:
// a PRDT entry outside guest memory, ATA ABRT).
func (p *port) atapiReadFailed(err error) {
	j := &p.job
	p.running = false
	if err != nil {
		p.cds.IOError(err)
		p.atapiCheck()
	} else {
		p.abort()
	}
	p.ci &^= 1 << j.slot
	p.busy = -1
	p.cmdDone()
	p.checkCmd()
}

// --- media changes (QMP eject and blockdev-change-medium)

// ErrNotCD is returned for media operations on a port without a CD-ROM
// drive.
var ErrNotCD = errors.New("ahci: not a CD-ROM drive")

// ErrLocked is returned when the guest holds the tray locked (it got an
// eject request).
var ErrLocked = ide.ErrLocked

func (d *Controller) cdPort(n int) (*port, error) {
	if n < 0 || n >= Ports {
		return nil, fmt.Errorf("%w: %d", ErrPosition, n)
	}
	p := &d.p[n]
	if !p.present || !p.cd {
		return nil, ErrNotCD
	}
	return p, nil
}

// OpenTray opens port n's tray and removes the medium, returning it (nil
// if there was none); a READ in flight ends with NOT READY. With the tray
// locked and force false the guest gets an eject request and ErrLocked
// is returned, as QEMU's eject does. QEMU's AHCI raises no interrupt for
// a media change (its IDE bus interrupt is not wired): the guest finds
// out from its next command or event poll.
func (d *Controller) OpenTray(n int, force bool) (*block.Drive, error) {
	d.mu.Lock()
	p, err := d.cdPort(n)
	if err != nil {
		d.mu.Unlock()
		return nil, err
	}
	old, err := p.cds.OpenTray(force)
	if err != nil {
		d.mu.Unlock()
		return nil, err
	}
	q := p.q
	p.q, p.drv = nil, nil
	d.mu.Unlock()
	if q != nil {
		q.Close() // waits for a read in flight; its completion fails the command
	}
	return old, nil
}

// InsertMedium puts drv (nil: none) into port n's empty drive and closes
// the tray (blockdev-change-medium after the eject): the next commands see
// NOT READY, then UNIT ATTENTION, and GET EVENT STATUS NOTIFICATION a new
// medium.
func (d *Controller) InsertMedium(n int, drv *block.Drive) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, err := d.cdPort(n)
	if err != nil {
		return err
	}
	if p.inflight {
		return errors.New("ahci: the drive is still busy with the old medium")
	}
	if err := p.cds.Insert(drv); err != nil {
		return err
	}
	p.drv = drv
	if drv != nil {
		p.q = block.NewQueue(drv, 2, 1)
	}
	return nil
}

// TrayState reports port n's tray (query-block's tray_open and locked).
func (d *Controller) TrayState(n int) (open, locked bool, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, err := d.cdPort(n)
	if err != nil {
		return false, false, err
	}
	open, locked = p.cds.Tray()
	return open, locked, nil
}

package ahci

import (
	"encoding/binary"

	"godm/block"
	"godm/devices/ide"
	"godm/memory"
)

// taskfile is the device's ATA registers as the FISes carry them (QEMU
// keeps them in the port's IDEState).
type taskfile struct {
	feature, sector, lcyl, hcyl, sel        uint8
	hobFeature, hobSector, hobLcyl, hobHcyl uint8
	nsector                                 uint32
	status, err                             uint8
}

// port is one AHCI port with its (optional) disk (QEMU's AHCIDevice).
type port struct {
	c *Controller
	n int

	clb, clbu, fb, fbu   uint32
	is, ie, cmd          uint32
	tfd, sig             uint32
	sctl, serr, sact, ci uint32
	finished             uint32 // NCQ tags done, not yet reported
	srst                 bool   // the SRST state machine's STATE_RESET
	initD2H              bool
	busy                 int // the slot whose command runs; -1: none
	running              bool
	inflight             bool   // a request is queued (p.req and p.buf are taken)
	gen                  uint64 // bumped by resets: older completions are dropped
	tf                   taskfile
	job                  job
	req                  block.Request
	bufs                 [1][]byte

	present           bool // a disk or a CD-ROM drive (maybe empty) is attached
	cd                bool // the device is a CD-ROM drive (ATAPI)
	cds               ide.CDState
	atapiDMA          bool         // the PACKET command's data goes by DMA
	drv               *block.Drive // the medium (nil: a CD-ROM drive without one)
	q                 *block.Queue
	buf               []byte
	sectors           uint64
	wcache            bool
	serial            string
	cyls, heads, secs uint32
	ident             [512]byte
	identSet          bool
	hdr               [32]byte   // the command header being handled
	tbl               [0x80]byte // its command FIS and ATAPI command
	scratch           [16]byte
	fis               [20]byte // the FIS being written
	ioDoneFn          func(*block.Request)
}

func (p *port) clbAddr() uint64 { return uint64(p.clbu)<<32 | uint64(p.clb) }
func (p *port) fbAddr() uint64  { return uint64(p.fbu)<<32 | uint64(p.fb) }

// read is ahci_port_read.
func (p *port) read(off uint32) uint32 {
	switch off {
	case pCLB:
		return p.clb
	case pCLBU:
		return p.clbu
	case pFB:
		return p.fb
	case pFBU:
		return p.fbu
	case pIS:
		return p.is
	case pIE:
		return p.ie
	case pCMD:
		return p.cmd
	case pTFD:
		return p.tfd
	case pSIG:
		return p.sig
	case pSSTS:
		if p.present {
			return sstsPresent
		}
		return 0
	case pSCTL:
		return p.sctl
	case pSERR:
		return p.serr
	case pSACT:
		return p.sact
	case pCI:
		return p.ci
	}
	return 0
}

// write is ahci_port_write.
func (p *port) write(off, v uint32) {
	c := p.c
	switch off {
	case pCLB:
		p.clb = v
	case pCLBU:
		p.clbu = v
	case pFB:
		p.fb = v
	case pFBU:
		p.fbu = v
	case pIS:
		p.is &^= v
		c.checkIRQ()
	case pIE:
		p.ie = v & ieMask
		c.checkIRQ()
	case pCMD:
		p.cmd = p.cmd&cmdROMask | v&^(cmdROMask|cmdICCMask)
		p.condStartEngines()
		if p.cmd&cmdFR != 0 && !p.initD2H {
			p.sendInitD2H()
		}
		p.checkCmd()
	case pSCTL:
		if p.sctl&0xf == 1 && v&0xf == 0 {
			p.resetPort()
		}
		p.sctl = v
	case pSERR:
		p.serr &^= v
	case pSACT:
		p.sact |= v
	case pCI:
		p.ci |= v
		p.checkCmd()
	}
}

// inRAM reports whether n bytes at gpa are guest memory (QEMU maps them).
func (p *port) inRAM(gpa uint64, n int) bool {
	b := p.scratch[:1]
	return gpa+uint64(n) > gpa && p.c.mem.Read(memory.GPA(gpa), b) == nil &&
		p.c.mem.Read(memory.GPA(gpa+uint64(n)-1), b) == nil
}

// condStartEngines is ahci_cond_start_engines: ST starts the command list
// engine (CR) and FRE the FIS receive engine (FR) if their areas are in
// guest memory; clearing them stops the engines.
func (p *port) condStartEngines() {
	st, cr := p.cmd&cmdST != 0, p.cmd&cmdCR != 0
	switch {
	case st && !cr:
		if !p.inRAM(p.clbAddr(), clbLen) {
			p.cmd &^= cmdST | cmdCR
			return
		}
		p.cmd |= cmdCR
	case !st && cr:
		p.cmd &^= cmdCR
	}
	fre, fr := p.cmd&cmdFRE != 0, p.cmd&cmdFR != 0
	switch {
	case fre && !fr:
		if !p.inRAM(p.fbAddr(), fisLen) {
			p.cmd &^= cmdFRE | cmdFR
			return
		}
		p.cmd |= cmdFR
	case !fre && fr:
		p.cmd &^= cmdFR
	}
}

// resetPort is ahci_reset_port (with the IDE bus reset it starts with).
func (p *port) resetPort() {
	p.gen++
	p.running = false
	p.tf = taskfile{sel: 0xa0, status: stREADY | stSEEK}
	p.serr, p.sact = 0, 0
	p.tfd = 0x7f
	p.sig = 0xffffffff
	p.busy = -1
	p.initD2H = false
	p.srst = false
	if !p.present {
		return
	}
	if p.cd {
		// QEMU ahci_reset_port: the ATAPI signature (SATA_SIGNATURE_CDROM,
		// 0xeb140101) and SEEK | WRERR | READY; the bus reset before it
		// clears the drive's sense and tray state (ide_reset).
		p.cds.Reset()
		p.tf.nsector, p.tf.sector, p.tf.lcyl, p.tf.hcyl = 1, 1, 0x14, 0xeb
		p.tf.status = stSEEK | stDF | stREADY
		p.tf.err = 1
		p.sendInitD2H()
		return
	}
	// The disk's signature and status (SATA_SIGNATURE_DISK; QEMU sets
	// SEEK_STAT | WRERR_STAT and error 1 for a disk).
	p.tf.nsector, p.tf.sector, p.tf.lcyl, p.tf.hcyl = 1, 1, 0, 0
	p.tf.status = stSEEK | stDF
	p.tf.err = 1
	p.sendInitD2H()
}

// sendInitD2H is ahci_init_d2h: the device's first D2H FIS, and SIG.
func (p *port) sendInitD2H() {
	if p.initD2H {
		return
	}
	if p.writeD2H() {
		p.initD2H = true
		p.sig = uint32(p.tf.hcyl)<<24 | uint32(p.tf.lcyl)<<16 | uint32(p.tf.sector)<<8 | p.tf.nsector&0xff
	}
}

// fisRegs fills a D2H or PIO setup FIS's register bytes (QEMU 7.2
// ahci_write_fis_d2h / _pio: the interrupt bit always set).
func (p *port) fisRegs(f []byte, typ byte) {
	f[0] = typ
	f[1] = 1 << 6
	f[2], f[3] = p.tf.status, p.tf.err
	f[4], f[5], f[6], f[7] = p.tf.sector, p.tf.lcyl, p.tf.hcyl, p.tf.sel
	f[8], f[9], f[10], f[11] = p.tf.hobSector, p.tf.hobLcyl, p.tf.hobHcyl, 0
	f[12], f[13] = byte(p.tf.nsector), byte(p.tf.nsector>>8)
	clear(f[14:])
}

// writeD2H writes the D2H register FIS, updates TFD and raises DHRS
// (and TFES on an error); false if FIS receive is off.
func (p *port) writeD2H() bool { return p.d2h(true) }

// d2h is ahci_write_fis_d2h: irq false is the FIS QEMU sends when it takes
// a queued command (the interface ready again; SATA 3.5a §11.15
// DFPDMAQ2): the interrupt bit clear and no DHRS.
func (p *port) d2h(irq bool) bool {
	if p.cmd&cmdFR == 0 || p.cmd&cmdFRE == 0 {
		return false
	}
	f := &p.fis
	p.fisRegs(f[:], 0x34)
	if !irq {
		f[1] = 0
	}
	_ = p.c.mem.Write(memory.GPA(p.fbAddr()+fisRFIS), f[:])
	p.tfd = uint32(p.tf.err)<<8 | uint32(p.tf.status)
	if p.tf.status&stERR != 0 {
		p.trigger(isTFES)
	}
	if irq {
		p.trigger(isDHRS)
	}
	return true
}

// writePIO writes the PIO setup FIS for n bytes and raises PSS.
func (p *port) writePIO(n uint32) {
	if p.cmd&cmdFR == 0 || p.cmd&cmdFRE == 0 {
		return
	}
	f := &p.fis
	p.fisRegs(f[:], 0x5f)
	f[15] = p.tf.status
	f[16], f[17] = byte(n), byte(n>>8)
	_ = p.c.mem.Write(memory.GPA(p.fbAddr()+fisPSFIS), f[:])
	p.tfd = uint32(p.tf.err)<<8 | uint32(p.tf.status)
	if p.tf.status&stERR != 0 {
		p.trigger(isTFES)
	}
	p.trigger(isPSS)
}

// writeSDB is ahci_write_fis_sdb: the NCQ completion.
func (p *port) writeSDB() {
	if p.cmd&cmdFR == 0 || p.cmd&cmdFRE == 0 {
		return
	}
	f := p.fis[:8]
	f[0], f[1] = 0xa1, 0x40
	f[2], f[3] = p.tf.status&0x77, p.tf.err
	binary.LittleEndian.PutUint32(f[4:], p.finished)
	_ = p.c.mem.Write(memory.GPA(p.fbAddr()+fisSDB), f[:])
	p.tfd = uint32(p.tf.err)<<8 | uint32(p.tf.status&0x77) | p.tfd&0x88
	p.sact &^= p.finished
	p.finished = 0
	p.trigger(isSDBS)
}

func (p *port) trigger(bit uint32) {
	p.is |= bit
	p.c.checkIRQ()
}

// checkCmd is check_cmd: the issued slots in order while the engine runs
// and no command is in flight.
func (p *port) checkCmd() {
	for p.cmd&cmdST != 0 && p.ci != 0 && !p.running && !p.c.paused {
		progressed := false
		for slot := range Slots {
			if p.ci&(1<<slot) == 0 {
				continue
			}
			done, ok := p.handleCmd(slot)
			if !ok {
				return // not handled: it stays issued (QEMU retries it later)
			}
			if done {
				p.ci &^= 1 << slot
				progressed = true
			}
			if p.running {
				return
			}
		}
		if !progressed {
			return
		}
	}
}

// handleCmd is handle_cmd: ok false leaves the slot issued; done clears
// it (a command started asynchronously clears it at its completion).
func (p *port) handleCmd(slot int) (done, ok bool) {
	if p.tf.status&(stBUSY|stDRQ) != 0 || p.cmd&cmdCR == 0 || !p.present || p.inflight {
		return false, false
	}
	mem := p.c.mem
	hdrAddr := p.clbAddr() + uint64(slot)*32
	if mem.Read(memory.GPA(hdrAddr), p.hdr[:]) != nil {
		return false, false
	}
	tbl := le64(p.hdr[8:])
	if mem.Read(memory.GPA(tbl), p.tbl[:]) != nil {
		return false, false
	}
	f := p.tbl[:20]
	if f[0] != 0x27 || f[1]&0x0f != 0 || f[1]&0x70 != 0 {
		return true, true // not a register FIS to the device: ignored
	}
	if f[1]&0x80 == 0 {
		// A device control FIS: SRST set, then cleared, resets the port.
		if !p.srst {
			p.srst = f[15]&0x04 != 0
		} else if f[15]&0x04 == 0 {
			p.resetPort()
		}
		return true, true
	}
	if isNCQ(f[2]) && !p.cd {
		// QEMU clears a queued command's slot at once: PxSACT and the SDB
		// FIS report it.
		p.ncq(slot, f)
		p.d2h(false)
		return true, true
	}
	p.tf.feature, p.tf.sector, p.tf.lcyl, p.tf.hcyl, p.tf.sel = f[3], f[4], f[5], f[6], f[7]
	p.tf.hobSector, p.tf.hobLcyl, p.tf.hobHcyl, p.tf.hobFeature = f[8], f[9], f[10], f[11]
	p.tf.nsector = uint32(f[12]) | uint32(f[13])<<8
	p.tf.err = 0
	p.setPRDBC(hdrAddr, 0)
	if p.cd {
		p.execCD(slot, hdrAddr, f[2])
	} else {
		p.exec(slot, hdrAddr, f[2])
	}
	if p.running {
		p.busy = slot
		return false, true
	}
	return true, true
}

func (p *port) setPRDBC(hdrAddr uint64, n uint32) {
	binary.LittleEndian.PutUint32(p.scratch[:4], n)
	_ = p.c.mem.Write(memory.GPA(hdrAddr+4), p.scratch[:4])
}

func isNCQ(cmd uint8) bool {
	switch cmd {
	case 0x60, 0x61, 0x63, 0x64, 0x65: // SATA 3.2 §13.6.3.2
		return true
	}
	return false
}

// ATA commands (ATA8-ACS).
const (
	ataReadDMAExt   = 0x25
	ataWriteDMAExt  = 0x35
	ataVerify       = 0x40
	ataVerifyNR     = 0x41
	ataVerifyExt    = 0x42
	ataReadFPDMA    = 0x60
	ataWriteFPDMA   = 0x61
	ataReadDMA      = 0xc8
	ataReadDMANR    = 0xc9
	ataWriteDMA     = 0xca
	ataWriteDMANR   = 0xcb
	ataCheckPower   = 0xe5
	ataFlush        = 0xe7
	ataFlushExt     = 0xea
	ataIdentify     = 0xec
	ataSetFeatures  = 0xef
	ataIdentPacket  = 0xa1
	ataPacket       = 0xa0
	ataStandbyNow   = 0xe0
	ataIdleNow      = 0xe1
	ataStandby      = 0xe2
	ataIdle         = 0xe3
	ataSleep        = 0xe6
	ataSecurityFrze = 0xf5
)

// exec runs ATA command cmd for a disk (QEMU ide_exec_cmd with the
// command table's disk entries): synchronous commands complete here,
// DMA and FLUSH start a job and complete from its callback.
func (p *port) exec(slot int, hdrAddr uint64, cmd uint8) {
	p.tf.status = stREADY | stBUSY
	p.tf.err = 0
	dsc := false
	switch cmd {
	case ataIdentify:
		// QEMU 7.2 ahci_start_transfer: the block goes through the
		// PRDT and the PIO setup FIS (DRQ still set) is written, then
		// the transfer ends (status READY|SEEK) and cmd_done writes
		// the D2H FIS.
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
	case ataReadDMA, ataReadDMANR, ataReadDMAExt, ataWriteDMA, ataWriteDMANR, ataWriteDMAExt:
		lba48 := cmd == ataReadDMAExt || cmd == ataWriteDMAExt
		write := cmd == ataWriteDMA || cmd == ataWriteDMANR || cmd == ataWriteDMAExt
		p.startDMA(slot, hdrAddr, p.lba(lba48), p.count(lba48), write, lba48, -1)
		if p.running {
			return
		}
	case ataFlush, ataFlushExt:
		p.startFlush(slot, hdrAddr)
		if p.running {
			return
		}
	case ataSetFeatures:
		dsc = true
		p.setFeatures()
	case ataVerify, ataVerifyNR, ataVerifyExt:
		dsc = true
	case ataCheckPower:
		dsc = true
		p.tf.nsector = 0xff
	case ataStandbyNow, ataIdleNow, ataStandby, ataIdle, ataSleep, ataSecurityFrze:
	default:
		p.abort()
	}
	p.tf.status &^= stBUSY
	if dsc && p.tf.err == 0 {
		p.tf.status |= stSEEK
	}
	p.cmdDone()
}

// abort is ide_abort_command.
func (p *port) abort() {
	p.tf.status = stREADY | stERR
	p.tf.err = errABRT
}

// cmdDone is ahci_cmd_done: the D2H FIS (the slot is cleared by the
// caller, or by the completion for a command that ran in the background).
func (p *port) cmdDone() { p.writeD2H() }

// identify builds the IDENTIFY DEVICE page once (devices/ide's, as QEMU
// shares ide_identify); SET FEATURES edits it.
func (p *port) identify() {
	if p.identSet {
		return
	}
	if p.cd {
		ide.ATAPIIdentify(p.ident[:], p.serial, "QEMU DVD-ROM", Slots)
		p.identSet = true
		return
	}
	ide.ATAIdentify(p.ident[:], ide.Identity{
		Cyls: p.cyls, Heads: p.heads, Secs: p.secs, Sectors: p.sectors,
		Serial: p.serial, Model: "QEMU HARDDISK", MultSectors: 16, WriteCache: p.wcache,
		NCQQueues: Slots,
	})
	p.identSet = true
}

// setFeatures is cmd_set_features for a disk.
func (p *port) setFeatures() {
	p.identify()
	id := p.ident[:]
	put := func(w int, v uint16) { binary.LittleEndian.PutUint16(id[2*w:], v) }
	switch p.tf.feature {
	case 0x02:
		p.wcache = true
		put(85, 1<<14|1<<5|1)
	case 0x82:
		p.wcache = false
		put(85, 1<<14|1)
	case 0xcc, 0x66, 0xaa, 0x55, 0x05, 0x85, 0x69, 0x67, 0x96, 0x9a, 0x42, 0xc2:
	case 0x03:
		val := uint16(p.tf.nsector & 7)
		w62, w63, w88 := uint16(0x07), uint16(0x07), uint16(0x3f)
		switch p.tf.nsector >> 3 & 0x1f {
		case 0, 1:
		case 2:
			w62 |= 1 << (val + 8)
		case 4:
			w63 |= 1 << (val + 8)
		case 8:
			w88 |= 1 << (val + 8)
		default:
			p.abort()
			return
		}
		put(62, w62)
		put(63, w63)
		put(88, w88)
	default:
		p.abort()
	}
}

// lba is ide_get_sector on the FIS's registers.
func (p *port) lba(lba48 bool) uint64 {
	t := &p.tf
	if lba48 {
		return uint64(t.hobHcyl)<<40 | uint64(t.hobLcyl)<<32 | uint64(t.hobSector)<<24 |
			uint64(t.hcyl)<<16 | uint64(t.lcyl)<<8 | uint64(t.sector)
	}
	if t.sel&0x40 != 0 {
		return uint64(t.sel&0x0f)<<24 | uint64(t.hcyl)<<16 | uint64(t.lcyl)<<8 | uint64(t.sector)
	}
	// CHS
	cyl := uint64(t.hcyl)<<8 | uint64(t.lcyl)
	s := uint64(t.sector)
	if s == 0 {
		return ^uint64(0) // sector 0 does not exist: out of range
	}
	return (cyl*uint64(p.heads)+uint64(t.sel&0x0f))*uint64(p.secs) + s - 1
}

// setLBA is ide_set_sector.
func (p *port) setLBA(lba uint64, lba48 bool) {
	t := &p.tf
	switch {
	case lba48:
		t.sector, t.lcyl, t.hcyl = byte(lba), byte(lba>>8), byte(lba>>16)
		t.hobSector, t.hobLcyl, t.hobHcyl = byte(lba>>24), byte(lba>>32), byte(lba>>40)
	case t.sel&0x40 != 0:
		t.sel = t.sel&0xf0 | byte(lba>>24)&0x0f
		t.sector, t.lcyl, t.hcyl = byte(lba), byte(lba>>8), byte(lba>>16)
	default:
		if p.heads == 0 || p.secs == 0 {
			return
		}
		cyl := lba / (uint64(p.heads) * uint64(p.secs))
		r := lba % (uint64(p.heads) * uint64(p.secs))
		t.hcyl, t.lcyl = byte(cyl>>8), byte(cyl)
		t.sel = t.sel&0xf0 | byte(r/uint64(p.secs))&0x0f
		t.sector = byte(r%uint64(p.secs)) + 1
	}
}

// count is the sector count as ide_cmd_lba48_transform leaves it for
// AHCI (the FIS's 16-bit count; 0 means 256 or 65536).
func (p *port) count(lba48 bool) uint64 {
	n := uint64(p.tf.nsector)
	if n == 0 {
		if lba48 {
			return 65536
		}
		return 256
	}
	return n
}

// rangeOK is ide_sect_range_ok.
func (p *port) rangeOK(lba, n uint64) bool {
	return lba <= p.sectors && n <= p.sectors-lba
}

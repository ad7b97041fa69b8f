package uhci

import (
	"encoding/binary"

	"godm/devices/usb"
	"godm/memory"
)

// What a transfer descriptor's execution tells the walker.
type tdResult uint8

const (
	// resNext: go on with the next queue head (the TD waits, failed or
	// ended short): the horizontal link of the current QH, else the TD's
	// link.
	resNext tdResult = iota
	// resDone: the TD completed; the queue advances past it.
	resDone
	// resStop: the frame ends here (a process or host system error).
	resStop
)

// frameLocked walks the frame list entry of the current frame (UHCI 1.1
// §3.4: the frame list pointer, then queue heads and TDs by their link
// pointers), executing active TDs against the devices on enabled ports.
func (d *Controller) frameLocked() {
	d.stats.Frames.Add(1)
	s := &d.st
	if d.fn.ConfigRead(4, 2)&4 == 0 {
		// Bus mastering off: the controller reaches no memory (QEMU's
		// DMA address space is disabled then; its walk finds nothing),
		// the frame counts on.
		return
	}
	link, ok := d.read32(s.flbase + uint32(s.frnum&0x3ff)*4)
	if !ok {
		return
	}
	var (
		inQH           bool   // the walk is inside a queue head's elements
		qhAddr, qhNext uint32 // that QH and its horizontal link
		seen           int    // queue heads in d.seen
		progress       int    // TDs completed since d.seen was cleared
		bytes          int    // the frame's bandwidth used
	)
	for steps := 0; link&linkTerm == 0; steps++ {
		if steps == MaxFrameSteps {
			d.stats.StepLimit.Add(1)
			return
		}
		if bytes >= frameBandwidth {
			return
		}
		addr := link &^ 0xf
		if link&linkQH != 0 {
			// A queue head seen again: schedules loop on purpose
			// (bandwidth reclamation), so go round again only if a TD
			// completed since (QEMU's rule too).
			if d.sawQH(addr, seen) {
				if progress == 0 {
					d.stats.StepLimit.Add(1)
					return
				}
				seen, progress = 0, 0
			}
			if seen < qhSeen {
				d.seen[seen] = addr
				seen++
			}
			if !d.read(addr, d.word[:8]) {
				return
			}
			head := binary.LittleEndian.Uint32(d.word[0:])
			elem := binary.LittleEndian.Uint32(d.word[4:])
			if elem&linkTerm != 0 {
				inQH = false
				link = head
				continue
			}
			inQH, qhAddr, qhNext = true, addr, head
			link = elem
			continue
		}
		if !d.read(addr, d.word[:16]) {
			return
		}
		tdLink := binary.LittleEndian.Uint32(d.word[0:])
		ctrl := binary.LittleEndian.Uint32(d.word[4:])
		token := binary.LittleEndian.Uint32(d.word[8:])
		buffer := binary.LittleEndian.Uint32(d.word[12:])
		old := ctrl
		res, n := d.tdLocked(&ctrl, token, buffer)
		if ctrl != old && !d.write32(addr+4, ctrl) {
			return
		}
		switch res {
		case resStop:
			return
		case resNext:
			if inQH {
				link, inQH = qhNext, false
			} else {
				link = tdLink
			}
		case resDone:
			progress++
			bytes += n + 1
			link = tdLink
			if inQH {
				// The queue's element pointer moves past the TD (UHCI
				// 1.1 §3.3.2); a TD linked without the depth-first bit
				// ends the queue's turn in this frame.
				if !d.write32(qhAddr+4, link) {
					return
				}
				if link&linkDepth == 0 {
					link, inQH = qhNext, false
				}
			}
		}
	}
}

func (d *Controller) sawQH(addr uint32, n int) bool {
	for _, a := range d.seen[:n] {
		if a == addr {
			return true
		}
	}
	return false
}

// tdLocked executes one TD; ctrl is its control/status word, updated.
// n is the actual length for a completed TD.
func (d *Controller) tdLocked(ctrl *uint32, token, buffer uint32) (tdResult, int) {
	s := &d.st
	if *ctrl&tdActive == 0 {
		// "Even if the Active bit is already cleared ... an IOC
		// interrupt is generated" (UHCI 1.1 §3.2.2, as QEMU).
		if *ctrl&tdIOC != 0 {
			s.pending |= 1
		}
		return resNext, 0
	}
	pid := uint8(token)
	maxLen := int((token>>21)+1) & 0x7ff // 0x7ff: a null packet
	switch {
	case pid != usb.PIDIn && pid != usb.PIDOut && pid != usb.PIDSetup, maxLen > maxPacket:
		// A consistency failure: HC process error, and the controller
		// halts (UHCI 1.1 §2.1.2).
		s.status |= StsHCPErr
		s.cmd &^= CmdRS
		s.status |= StsHalted
		return resStop, 0
	}
	dev := d.findLocked(uint8(token>>8) & 0x7f)
	if dev == nil {
		// Nobody answers: a time-out, the error count spent.
		*ctrl = *ctrl&^(tdErrCnt|tdActive) | tdCRC
		d.tdErrorLocked(*ctrl)
		return resNext, 0
	}
	d.stats.TDs.Add(1)
	ep := uint8(token>>15) & 0xf
	data := d.buf[:maxLen]
	var n int
	var st usb.Status
	if pid == usb.PIDIn {
		n, st = dev.Transfer(pid, ep, data)
		n = min(max(n, 0), maxLen)
		if st == usb.ACK && n > 0 && !d.write(buffer, data[:n]) {
			return resStop, 0
		}
	} else {
		if maxLen > 0 && !d.read(buffer, data) {
			return resStop, 0
		}
		n, st = dev.Transfer(pid, ep, data)
		n = maxLen
	}
	if *ctrl&tdIOS != 0 {
		*ctrl &^= tdActive
	}
	switch st {
	case usb.NAK:
		*ctrl |= tdNAK
		return resNext, 0
	case usb.Stall:
		*ctrl = *ctrl&^tdActive | tdStall
		d.tdErrorLocked(*ctrl)
		return resNext, 0
	}
	*ctrl = *ctrl&^(tdActLen|tdActive|tdNAK) | uint32(n-1)&tdActLen
	if *ctrl&tdIOC != 0 {
		s.pending |= 1
	}
	if pid == usb.PIDIn && *ctrl&tdSPD != 0 && n < maxLen {
		// Short packet: the queue stays on this TD for its driver to
		// see; the walk moves to the next queue.
		s.pending |= 2
		return resNext, n
	}
	return resDone, n
}

func (d *Controller) tdErrorLocked(ctrl uint32) {
	d.st.status |= StsUSBErr
	if ctrl&tdIOC != 0 {
		d.st.pending |= 1
	}
}

// findLocked returns the device at USB address addr behind an enabled
// port.
func (d *Controller) findLocked(addr uint8) usb.Device {
	for i, dev := range d.devs {
		// Enabled ports only (a suspended one still passes traffic, as in
		// QEMU's uhci_find_device).
		if dev != nil && d.st.ports[i]&PortEN != 0 && dev.Address() == addr {
			return dev
		}
	}
	return nil
}

// hostErrorLocked is a failed access to guest memory: a host system
// error, which stops the controller (UHCI 1.1 §2.1.2, HSE).
func (d *Controller) hostErrorLocked() {
	d.stats.DMAErrors.Add(1)
	s := &d.st
	s.status |= StsHSErr | StsHalted
	s.cmd &^= CmdRS
	d.updateIRQLocked()
}

func (d *Controller) read(addr uint32, p []byte) bool {
	if err := d.mem.Read(memory.GPA(addr), p); err != nil {
		d.hostErrorLocked()
		return false
	}
	return true
}

func (d *Controller) write(addr uint32, p []byte) bool {
	if err := d.mem.Write(memory.GPA(addr), p); err != nil {
		d.hostErrorLocked()
		return false
	}
	return true
}

func (d *Controller) read32(addr uint32) (uint32, bool) {
	if !d.read(addr, d.word[:4]) {
		return 0, false
	}
	return binary.LittleEndian.Uint32(d.word[:4]), true
}

func (d *Controller) write32(addr, v uint32) bool {
	binary.LittleEndian.PutUint32(d.word[:4], v)
	return d.write(addr, d.word[:4])
}

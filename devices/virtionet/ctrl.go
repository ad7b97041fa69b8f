package virtionet

import (
	"encoding/binary"

	"godm/devices/virtio"
)

// The control queue (virtio 1.2 §5.1.6.5; QEMU virtio_net_handle_ctrl):
// each chain is a header (class, command), the command's data, and one
// writable ack byte. godm offers VIRTIO_NET_F_CTRL_VQ and
// VIRTIO_NET_F_CTRL_RX: the receive modes and the MAC filter table, which
// decide what reaches the guest (QEMU receive_filter). Like QEMU it also
// takes the CTRL_RX_EXTRA modes and MAC_ADDR_SET without their features
// being negotiated; every other class is answered with an error.
const (
	ctrlRx    = 0 // VIRTIO_NET_CTRL_RX
	ctrlMAC   = 1 // VIRTIO_NET_CTRL_MAC
	ctrlOK    = 0 // VIRTIO_NET_OK
	ctrlErr   = 1 // VIRTIO_NET_ERR
	fCtrlRx   = 1 << 18
	macTable  = 64 // QEMU MAC_TABLE_ENTRIES (unicast and multicast together)
	ctrlBurst = CtrlQueueSize
)

// Receive mode commands (class ctrlRx) and MAC commands (class ctrlMAC).
const (
	rxPromisc  = 0
	rxAllMulti = 1
	rxAllUni   = 2
	rxNoMulti  = 3
	rxNoUni    = 4
	rxNoBcast  = 5

	macTableSet = 0
	macAddrSet  = 1
)

// rxFilter is the receive filter the control queue sets (QEMU's
// VirtIONet promisc, allmulti, ..., mac_table).
type rxFilter struct {
	promisc, allMulti, allUni, noMulti, noUni, noBcast bool
	uniOverflow, multiOverflow                         bool
	// macs holds nUni unicast then nMulti multicast addresses.
	nUni, nMulti int
	macs         [macTable][6]byte
}

// reset is QEMU virtio_net_reset's filter: promiscuous, the table empty.
func (f *rxFilter) reset() { *f = rxFilter{promisc: true} }

// accept is QEMU receive_filter (no VLAN filter: CTRL_VLAN is not
// offered): promiscuous takes all; broadcast unless nobcast; multicast
// unless nomulti, with allmulti, an overflowed table or a table entry;
// unicast unless nouni, with alluni, an overflowed table, the station
// address (the configuration's) or a table entry.
func (d *Device) accept(frame []byte) bool {
	f := &d.st.filter
	if f.promisc {
		return true
	}
	if len(frame) < 6 {
		return false
	}
	var dst [6]byte
	copy(dst[:], frame)
	if dst[0]&1 != 0 {
		if dst == [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff} {
			return !f.noBcast
		}
		if f.noMulti {
			return false
		}
		if f.allMulti || f.multiOverflow {
			return true
		}
		for _, m := range f.macs[f.nUni : f.nUni+f.nMulti] {
			if m == dst {
				return true
			}
		}
		return false
	}
	if f.noUni {
		return false
	}
	if f.allUni || f.uniOverflow || dst == d.st.cfgMAC {
		return true
	}
	for _, m := range f.macs[:f.nUni] {
		if m == dst {
			return true
		}
	}
	return false
}

// ctrlLocked answers the control queue's chains.
func (d *Device) ctrlLocked() {
	if !d.ready() || d.t.Negotiated()&FCtrlVQ == 0 {
		return
	}
	q := d.t.Queue(CtrlQueue)
	interrupt := false
	for range ctrlBurst {
		q.Lock()
		ok, err := q.Pop(&d.chain, d.store[:])
		c := &d.chain
		if err != nil || ok && (c.Out < 2 || c.In < 1) {
			// QEMU: "virtio-net ctrl missing headers".
			q.Unlock()
			d.guestError()
			return
		}
		if !ok {
			q.Unlock()
			break
		}
		ack := d.ctrlCommand(c)
		if ack == ctrlOK {
			d.stats.CtrlCommands.Add(1)
		}
		d.ack[0] = ack
		if a := locate(c, 0); a != noAddr {
			d.dma.Write(a, d.ack[:])
		}
		notify, err := q.Push(c.Head, 1)
		q.Unlock()
		if err != nil {
			d.guestError()
			return
		}
		interrupt = interrupt || notify
	}
	if interrupt {
		d.t.Queue(CtrlQueue).Interrupt()
	}
}

// ctrlCommand runs one command and returns its ack.
func (d *Device) ctrlCommand(c *virtio.Chain) byte {
	var hdr [2]byte
	d.gather(c, 0, hdr[:])
	data := c.Out - 2
	switch hdr[0] {
	case ctrlRx:
		// QEMU virtio_net_handle_rx_mode: one byte, on or off.
		if data < 1 {
			return ctrlErr
		}
		var on [1]byte
		d.gather(c, 2, on[:])
		f := &d.st.filter
		var flag *bool
		switch hdr[1] {
		case rxPromisc:
			flag = &f.promisc
		case rxAllMulti:
			flag = &f.allMulti
		case rxAllUni:
			flag = &f.allUni
		case rxNoMulti:
			flag = &f.noMulti
		case rxNoUni:
			flag = &f.noUni
		case rxNoBcast:
			flag = &f.noBcast
		default:
			return ctrlErr
		}
		*flag = on[0] != 0
		return ctrlOK
	case ctrlMAC:
		switch hdr[1] {
		case macAddrSet:
			// QEMU: exactly six bytes.
			if data != 6 {
				return ctrlErr
			}
			d.gather(c, 2, d.st.cfgMAC[:])
			return ctrlOK
		case macTableSet:
			return d.macTableSet(c, data)
		}
	}
	return ctrlErr
}

// macTableSet is QEMU virtio_net_handle_mac's MAC_TABLE_SET: a unicast
// then a multicast table, each a 32-bit count and its addresses, filling
// exactly the data; a table that does not fit the 64 entries left sets
// its overflow flag instead. A malformed command leaves the filter as it
// was.
func (d *Device) macTableSet(c *virtio.Chain, data uint64) byte {
	var f rxFilter
	old := &d.st.filter
	f.promisc, f.allMulti, f.allUni, f.noMulti, f.noUni, f.noBcast =
		old.promisc, old.allMulti, old.allUni, old.noMulti, old.noUni, old.noBcast
	off := uint64(2)
	end := 2 + data
	var b [4]byte
	table := func(multi bool) bool {
		if end-off < 4 {
			return false
		}
		d.gather(c, off, b[:])
		off += 4
		n := uint64(binary.LittleEndian.Uint32(b[:]))
		if n*6 > end-off {
			return false
		}
		used := f.nUni
		if n <= uint64(macTable-used) {
			for i := range n {
				d.gather(c, off+6*i, f.macs[used+int(i)][:])
			}
			if multi {
				f.nMulti = int(n)
			} else {
				f.nUni = int(n)
			}
		} else if multi {
			f.multiOverflow = true
		} else {
			f.uniOverflow = true
		}
		off += n * 6
		return true
	}
	if !table(false) || !table(true) || off != end {
		return ctrlErr
	}
	*old = f
	return ctrlOK
}

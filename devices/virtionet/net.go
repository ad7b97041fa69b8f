// Package virtionet is the virtio network device (virtio 1.2 §5.1) on the
// virtio PCI transport, as QEMU 7.2's virtio-net-pci presents it (facts
// from hw/net/virtio-net.c and the spec, checked through qtest): one
// receive and one transmit queue of 256 entries and QEMU's control queue
// of 64 (receive modes and the MAC filter table: ctrl.go), the MAC and
// link status in the device configuration (max_virtqueue_pairs only
// with VIRTIO_NET_F_MQ, not offered for one pair, as QEMU), mergeable receive buffers,
// frames to and from a netback.Backend (checksum and TSO offloads when
// the back-end carries virtio-net headers, none otherwise, as QEMU). Every descriptor chain is the
// guest's and hostile: a malformed one breaks the device until reset
// (DEVICE_NEEDS_RESET, as QEMU's virtio_error); frames that cannot be
// placed are dropped and counted. Nothing allocates per frame.
package virtionet

import (
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"

	"godm/devices/nic"
	"godm/devices/virtio"
	"godm/netback"
	"godm/pci"
)

// Identity (QEMU include/hw/pci/pci.h PCI_DEVICE_ID_VIRTIO_NET 0x1000,
// PCI_CLASS_NETWORK_ETHERNET; virtio 1.2 §5.1.1 device ID 1).
const (
	DeviceID    = 1
	PCIDeviceID = 0x1000
	Class       = 0x020000
	// QueueSize is the rx and tx queues' size, CtrlQueueSize the control
	// queue's (QEMU VIRTIO_NET_RX/TX_QUEUE_DEFAULT_SIZE, and 64 for
	// virtio_add_queue of ctrl_vq).
	QueueSize     = 256
	CtrlQueueSize = 64
	// Vectors is QEMU's default for one queue pair: 2*pairs+2
	// (virtio_net_pci_realize).
	Vectors = 4
)

// Queue indices (§5.1.2).
const (
	RxQueue   = 0
	TxQueue   = 1
	CtrlQueue = 2
)

// Feature bits (§5.1.3).
const (
	FMAC = 1 << 5
	// fGSO is the legacy VIRTIO_NET_F_GSO ("any GSO type"), meaningless
	// without VIRTIO_NET_F_CSUM (Linux's virtio_net looks at it only
	// under CSUM); QEMU 7.2 offers it on every back-end (checked through
	// qtest) through the legacy interface only, so godm does too. Frames
	// still go out as they are.
	fGSO      = 1 << 6
	FMrgRxBuf = 1 << 15
	FStatus   = 1 << 16
	FCtrlVQ   = 1 << 17
	// fCtrlMACAddr: the MAC is set through the control queue, and no
	// longer by writing the configuration (§5.1.4.2).
	fCtrlMACAddr = 1 << 23
)

// Offload features (§5.1.3), offered when the back-end carries virtio-net
// headers (a tap with vnet_hdr=on), as QEMU does on such a peer (less
// UFO, which Linux no longer makes): the guest's checksum and TSO
// requests go to the back-end in the frame's header, and the back-end's
// partial checksums and GSO frames reach a guest that takes them.
const (
	FCsum      = 1 << 0
	FGuestCsum = 1 << 1
	FGuestTSO4 = 1 << 7
	FGuestTSO6 = 1 << 8
	FGuestECN  = 1 << 9
	FHostTSO4  = 1 << 11
	FHostTSO6  = 1 << 12
	FHostECN   = 1 << 13
	offloads   = FCsum | FGuestCsum | FGuestTSO4 | FGuestTSO6 | FGuestECN | FHostTSO4 | FHostTSO6 | FHostECN
)

// StatusLinkUp is VIRTIO_NET_S_LINK_UP in the configuration's status.
const StatusLinkUp = 1

// Header sizes (§5.1.6): struct virtio_net_hdr is 10 bytes for a legacy
// driver without mergeable buffers, 12 (with num_buffers) once
// VIRTIO_NET_F_MRG_RXBUF or VIRTIO_F_VERSION_1 is negotiated (QEMU
// virtio_net_set_mrg_rx_bufs).
const (
	hdrLegacy = 10
	hdrMrg    = 12
)

// configLen is struct virtio_net_config through status: QEMU 7.2 sizes
// it by the offered features (through status with VIRTIO_NET_F_STATUS;
// max_virtqueue_pairs only with VIRTIO_NET_F_MQ, which one queue pair
// does not offer), so bytes 8 on read all ones, as the qtest
// differential shows.
const configLen = 8

// Limits. maxSegs bounds one chain's descriptors (a longer chain is a
// guest error, as QEMU's VIRTQUEUE_MAX_SIZE); txBurst is how many frames
// a kick sends before the worker takes over (QEMU's tx_burst).
const (
	maxSegs = virtio.MaxQueueSize
	txBurst = 256
	rxBurst = 256
)

// Config wires a device.
type Config struct {
	MAC    [6]byte
	Memory virtio.Memory
	// Backend is the netdev; nil: no cable (link down, frames dropped).
	Backend netback.Backend
	// ModernBAR32: see virtio.Config.
	ModernBAR32 bool
}

// Stats are the device's counters.
type Stats struct {
	RxFrames, TxFrames atomic.Uint64
	// RxDropped: frames from the back-end the guest's buffers could not
	// take (a non-mergeable buffer too small, more buffers than the
	// queue holds) or arriving with the link down.
	RxDropped atomic.Uint64
	// TxDropped: guest frames that are not Ethernet frames the back-end
	// passes (runts, giants) or sent with the link down.
	TxDropped atomic.Uint64
	// RxFiltered: frames the receive filter (the control queue's modes
	// and MAC table) kept from the guest.
	RxFiltered atomic.Uint64
	// TxGSO and RxGSO count frames that went with a segmentation
	// offload (a back-end with virtio-net headers).
	TxGSO, RxGSO atomic.Uint64
	// CtrlCommands counts control queue commands answered VIRTIO_NET_OK.
	CtrlCommands atomic.Uint64
	// GuestErrors counts malformed chains (each breaks the device).
	GuestErrors atomic.Uint64
	DMAErrors   atomic.Uint64
}

// Device is one virtio-net-pci function.
type Device struct {
	t     *virtio.Transport
	be    netback.Backend
	mac   [6]byte
	dma   nic.DMA
	stats Stats
	w     nic.Worker

	mu sync.Mutex
	st state

	// Staging, owned under mu: a chain's descriptors, the used elements
	// of a frame spread over mergeable buffers, the header.
	chain virtio.Chain
	store [maxSegs]virtio.Desc
	used  [QueueSize]usedElem
	hdr   [hdrMrg]byte
	ack   [1]byte
}

// state is what a snapshot carries beside the transport.
type state struct {
	// cfgMAC is the configuration's MAC (a legacy driver may write it).
	cfgMAC [6]byte
	// linkDown is the cable state.
	linkDown bool
	// filter is what the control queue set.
	filter rxFilter
	// txPending: a transmit waits for room in the back-end, the next
	// burst, or Resume.
	txPending bool
	// ctrlPending: a control queue kick came while paused.
	ctrlPending bool
	paused      bool
}

type usedElem struct {
	head uint16
	n    uint32
}

// vdev is the device as the transport sees it (its Reset is the
// transport's stop, not the board's reset).
type vdev Device

// New makes a device; call Function to place it on a bus and Close to
// stop it.
func New(c Config) (*Device, error) {
	if c.Memory == nil {
		return nil, errors.New("virtio-net: no guest memory")
	}
	d := &Device{be: c.Backend, mac: c.MAC}
	d.dma = nic.DMA{Mem: c.Memory, Errors: &d.stats.DMAErrors}
	d.st.cfgMAC = c.MAC
	d.st.linkDown = c.Backend == nil
	d.st.filter.reset()
	t, err := virtio.New(virtio.Config{DeviceID: DeviceID, PCIDeviceID: PCIDeviceID, Class: Class,
		Queues: 3, QueueSizes: []uint16{QueueSize, QueueSize, CtrlQueueSize}, Vectors: Vectors,
		ModernBAR32: c.ModernBAR32, Memory: c.Memory, Device: (*vdev)(d)})
	if err != nil {
		return nil, err
	}
	d.t = t
	d.w.Start(d.be, d.poll)
	return d, nil
}

// Function is the PCI function.
func (d *Device) Function() *pci.Device { return d.t.Function() }

// Transport is the virtio transport.
func (d *Device) Transport() *virtio.Transport { return d.t }

// Stats returns the device's counters.
func (d *Device) Stats() *Stats { return &d.stats }

// MAC returns the station address the device was made with.
func (d *Device) MAC() [6]byte { return d.mac }

// Reset is the device's reset (PCI or system reset; the PCI function is
// reset by its owner): the transport's, which stops the device.
func (d *Device) Reset() { d.t.Reset() }

// Close stops the worker and the transport (dropping its pins) and
// detaches the back-end, which stays open. Idempotent.
func (d *Device) Close() error {
	d.w.Close(nil)
	d.t.Close()
	return nil
}

// Pause implements devices.Pauser: once it returns the device touches no
// guest memory and raises no interrupt until Resume; a kick meanwhile
// waits.
func (d *Device) Pause() {
	d.mu.Lock()
	d.st.paused = true
	d.mu.Unlock()
	d.w.Pause()
}

// Resume implements devices.Pauser.
func (d *Device) Resume() {
	d.mu.Lock()
	d.st.paused = false
	d.mu.Unlock()
	d.w.Resume()
}

// SetLink sets the cable state (QMP set_link; QEMU
// virtio_net_set_link_status): the status field's LINK_UP and a
// configuration interrupt when it changed.
func (d *Device) SetLink(up bool) {
	d.mu.Lock()
	changed := d.st.linkDown == up
	d.st.linkDown = !up
	d.mu.Unlock()
	if changed {
		d.t.ConfigChanged()
	}
	if up {
		d.w.Wake()
	}
}

// LinkUp reports the cable state.
func (d *Device) LinkUp() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return !d.st.linkDown
}

// --- virtio.Device

// Features implements virtio.Device: QEMU 7.2's on a back-end without a
// vnet header (virtio_net_get_features clears the offloads;
// VIRTIO_NET_F_MAC is always set), with the control queue's CTRL_RX only
// (not CTRL_VLAN, CTRL_RX_EXTRA, CTRL_MAC_ADDR, GUEST_ANNOUNCE).
func (v *vdev) Features() uint64 {
	f := uint64(FMAC | fGSO | FMrgRxBuf | FStatus | FCtrlVQ | fCtrlRx | virtio.FIndirectDesc | virtio.FEventIdx)
	if v.be != nil && v.be.Offloads() {
		f |= offloads
	}
	return f
}

// LegacyFeatures implements virtio.LegacyFeaturer: GSO through the
// legacy interface only (QEMU virtio_net_class_init legacy_features).
func (v *vdev) LegacyFeatures() uint64 { return fGSO }

// ConfigLen implements virtio.Device.
func (v *vdev) ConfigLen() int { return configLen }

// config builds struct virtio_net_config (§5.1.4): mac, status.
func (d *Device) config() [configLen]byte {
	var c [configLen]byte
	d.mu.Lock()
	copy(c[:], d.st.cfgMAC[:])
	if !d.st.linkDown {
		binary.LittleEndian.PutUint16(c[6:], StatusLinkUp)
	}
	d.mu.Unlock()
	return c
}

// ReadConfig implements virtio.Device.
func (v *vdev) ReadConfig(off int, p []byte) {
	c := (*Device)(v).config()
	copy(p, c[off:])
}

// WriteConfig implements virtio.Device: the MAC is writable by a driver
// that negotiated neither VERSION_1 nor CTRL_MAC_ADDR (QEMU
// virtio_net_set_config); the rest is read-only.
func (v *vdev) WriteConfig(off int, p []byte) {
	d := (*Device)(v)
	if d.t.Negotiated()&(virtio.FVersion1|fCtrlMACAddr) != 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, b := range p {
		if o := off + i; o < len(d.st.cfgMAC) {
			d.st.cfgMAC[o] = b
		}
	}
}

// Notify implements virtio.Device: a transmit kick sends at once on the
// kicking vCPU (as the e1000's TDT write does); new receive buffers wake
// the worker for frames waiting in the back-end; control commands also
// run on the kicking vCPU. While paused, kicks wait for Resume.
func (v *vdev) Notify(q *virtio.Queue) {
	d := (*Device)(v)
	switch q.Index() {
	case TxQueue:
		d.mu.Lock()
		if d.st.paused {
			d.st.txPending = true
		} else {
			d.txLocked()
		}
		d.mu.Unlock()
	case RxQueue:
		d.w.Wake()
	case CtrlQueue:
		d.mu.Lock()
		if d.st.paused {
			d.st.ctrlPending = true
		} else {
			d.ctrlLocked()
		}
		d.mu.Unlock()
	}
}

// Reset implements virtio.Device: nothing is held across calls (every
// frame is done under mu), so taking mu waits for the one in progress.
func (v *vdev) Reset() {
	d := (*Device)(v)
	d.mu.Lock()
	d.st.txPending, d.st.ctrlPending = false, false
	d.st.cfgMAC = d.mac // QEMU virtio_net_reset restores the MAC
	d.st.filter.reset()
	d.mu.Unlock()
}

// ResetQueue implements virtio.Device.
func (v *vdev) ResetQueue(q *virtio.Queue) {
	d := (*Device)(v)
	d.mu.Lock()
	switch q.Index() {
	case TxQueue:
		d.st.txPending = false
	case CtrlQueue:
		d.st.ctrlPending = false
	}
	d.mu.Unlock()
}

// poll is the worker's work on a wake-up: control commands and a
// transmit that waited, then frames waiting in the back-end.
func (d *Device) poll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.st.ctrlPending {
		d.st.ctrlPending = false
		d.ctrlLocked()
	}
	if d.st.txPending {
		d.st.txPending = false
		d.txLocked()
	}
	d.rxLocked()
}

// ready reports whether the driver is running the device.
func (d *Device) ready() bool {
	return d.t.Status()&virtio.StatusDriverOK != 0 && !d.t.Broken()
}

// hdrLen is the header's size for what was negotiated.
func (d *Device) hdrLen() uint64 {
	if d.t.Negotiated()&(FMrgRxBuf|virtio.FVersion1) != 0 {
		return hdrMrg
	}
	return hdrLegacy
}

// guestError breaks the device (QEMU virtio_error).
func (d *Device) guestError() {
	d.stats.GuestErrors.Add(1)
	d.t.Fail()
}

// --- transmit (QEMU virtio_net_flush_tx)

// txLocked sends up to txBurst frames from the transmit queue; the rest
// waits for the worker (more to send, or room in the back-end).
func (d *Device) txLocked() {
	if !d.ready() {
		return
	}
	q := d.t.Queue(TxQueue)
	interrupt := false
	more := true
	for i := 0; more; i++ {
		if i == txBurst {
			// A full burst: the worker goes on (QEMU reschedules its bh).
			d.st.txPending = true
			d.w.Wake()
			break
		}
		var notify bool
		more, notify = d.txOneLocked(q)
		interrupt = interrupt || notify
	}
	if interrupt {
		q.Interrupt()
	}
}

// txOneLocked sends one frame; more is false when the queue is empty,
// the back-end full (txPending set: its tx wake-up retries) or the
// device broken.
func (d *Device) txOneLocked(q *virtio.Queue) (more, notify bool) {
	q.Lock()
	ok, err := q.Pop(&d.chain, d.store[:])
	c := &d.chain
	hl := d.hdrLen()
	switch {
	case err != nil:
		q.Unlock()
		d.guestError()
		return false, false
	case !ok:
		q.Unlock()
		return false, false
	case c.Out < hl:
		// The header leads the readable bytes (QEMU: "virtio-net header
		// incorrect").
		q.Unlock()
		d.guestError()
		return false, false
	}
	var f *netback.Frame
	if d.be != nil && !d.st.linkDown {
		if f = d.be.TxFrame(); f == nil {
			// Back-pressure: the chain goes back to the ring; the
			// back-end's tx wake-up retries.
			q.Unpop(1)
			q.Unlock()
			d.st.txPending = true
			return false, false
		}
	}
	n := c.Out - hl
	switch {
	case f == nil:
		d.stats.TxDropped.Add(1) // link down: QEMU drops the queue's data
	case n > uint64(len(f.Buf())) || !netback.CheckFrame(int(n), d.be.MaxLen()):
		d.stats.TxDropped.Add(1)
		f.Release()
	default:
		d.gather(c, hl, f.Buf()[:n])
		f.SetLen(int(n))
		f.Hdr = netback.VnetHdr{}
		if d.be.Offloads() {
			// The guest's checksum and segmentation requests go with the
			// frame; the back-end drops a header that does not fit it
			// (counted Bad).
			d.gather(c, 0, d.hdr[:hl])
			f.Hdr.Decode(d.hdr[:hl])
			f.Hdr.NumBuffers = 0
			if f.Hdr.GSOType != netback.VnetGSONone {
				d.stats.TxGSO.Add(1)
			}
		}
		d.be.Transmit(f)
		d.stats.TxFrames.Add(1)
	}
	notify, err = q.Push(c.Head, 0)
	q.Unlock()
	if err != nil {
		d.guestError()
		return false, false
	}
	return true, notify
}

// gather copies the chain's readable bytes from byte skip on into p.
func (d *Device) gather(c *virtio.Chain, skip uint64, p []byte) {
	for _, g := range c.Segs {
		if len(p) == 0 {
			return
		}
		if g.Write {
			continue
		}
		l := uint64(g.Len)
		if skip >= l {
			skip -= l
			continue
		}
		n := min(l-skip, uint64(len(p)))
		d.dma.Read(g.Addr+skip, p[:n])
		p = p[n:]
		skip = 0
	}
}

// --- receive (QEMU virtio_net_receive_rcu)

// rxLocked places frames waiting in the back-end into the guest's
// buffers until there are none, or too few buffers (the frame waits for
// the driver's next kick).
func (d *Device) rxLocked() {
	if d.be == nil {
		return
	}
	for range rxBurst {
		f := d.be.RxPeek()
		if f == nil {
			return
		}
		if d.st.linkDown {
			// QEMU's net layer drops what reaches a NIC whose link is
			// down.
			d.dropRx()
			continue
		}
		if !d.ready() {
			return
		}
		if !d.accept(f.Bytes()) {
			if g := d.be.RxPop(); g != nil {
				g.Release()
			}
			d.stats.RxFiltered.Add(1)
			continue
		}
		if !d.rxFrameLocked(f) {
			return
		}
	}
	// More than a burst: go on after other work.
	d.w.Wake()
}

func (d *Device) dropRx() {
	if f := d.be.RxPop(); f != nil {
		f.Release()
	}
	d.stats.RxDropped.Add(1)
}

// rxFrameLocked places one frame; false when it must wait for buffers
// (or the device broke).
func (d *Device) rxFrameLocked(f *netback.Frame) bool {
	data := f.Bytes()
	neg := d.t.Negotiated()
	var h netback.VnetHdr
	if d.be.Offloads() {
		h = f.Hdr
		h.NumBuffers = 0
		// What the guest did not negotiate it cannot be given: a GSO
		// frame of a kind it does not take is dropped (the tap was not
		// told: it makes every kind), a partial checksum is finished
		// here, "data valid" is dropped (QEMU tells the tap instead).
		if g := h.GSOType; g != netback.VnetGSONone {
			var need uint64
			switch g &^ netback.VnetGSOECN {
			case netback.VnetGSOTCPv4:
				need = FGuestTSO4
			case netback.VnetGSOTCPv6:
				need = FGuestTSO6
			default:
				need = 1 << 63 // UFO: not offered
			}
			if g&netback.VnetGSOECN != 0 {
				need |= FGuestECN
			}
			if neg&need != need || neg&FGuestCsum == 0 {
				d.dropRx()
				return true
			}
			d.stats.RxGSO.Add(1)
		}
		if neg&FGuestCsum == 0 {
			if h.Flags&netback.VnetFlagNeedsCsum != 0 {
				nic.FinishCsum(data, int(h.CsumStart), int(h.CsumOffset))
			}
			h.Flags, h.CsumStart, h.CsumOffset = 0, 0, 0
		}
	}
	mrg := neg&FMrgRxBuf != 0
	hl := d.hdrLen()
	clear(d.hdr[:])
	h.NumBuffers = 0
	if hl == hdrMrg {
		h.NumBuffers = 1
	}
	h.Encode(d.hdr[:hl])
	total := hl + uint64(len(data))
	q := d.t.Queue(RxQueue)
	q.Lock()
	var popped uint16
	var numAt [2]uint64 // guest addresses of num_buffers' two bytes
	for off := uint64(0); off < total; {
		ok, err := q.Pop(&d.chain, d.store[:])
		if err != nil {
			q.Unlock()
			d.guestError()
			return false
		}
		if !ok {
			// Too few buffers: they go back, the frame waits (QEMU
			// virtio_net_has_buffers).
			q.Unpop(popped)
			q.Unlock()
			return false
		}
		if int(popped) == len(d.used) {
			// More buffers outstanding than a queue holds: the avail
			// index ran ahead of the ring.
			q.Unlock()
			d.guestError()
			return false
		}
		c := &d.chain
		if c.In == 0 {
			// QEMU: "virtio-net receive queue contains no in buffers".
			q.Unlock()
			d.guestError()
			return false
		}
		if popped == 0 && hl == hdrMrg {
			numAt[0], numAt[1] = locate(c, 10), locate(c, 11)
		}
		n := min(c.In, total-off)
		d.scatter(c, off, hl, data, n)
		d.used[popped] = usedElem{head: c.Head, n: uint32(n)}
		popped++
		off += n
		if !mrg && off < total {
			// A non-mergeable buffer too small for the frame: the buffer
			// goes back, the frame is dropped (QEMU virtio_net_receive_rcu).
			q.Unpop(popped)
			q.Unlock()
			d.dropRx()
			return true
		}
	}
	if mrg && popped > 1 {
		var b [2]byte
		binary.LittleEndian.PutUint16(b[:], popped)
		for i, a := range numAt {
			if a != noAddr {
				d.dma.Write(a, b[i:i+1])
			}
		}
	}
	for i := range popped {
		if q.Fill(i, d.used[i].head, d.used[i].n) != nil {
			q.Unlock()
			d.guestError()
			return false
		}
	}
	notify, err := q.Flush(popped)
	q.Unlock()
	if g := d.be.RxPop(); g != nil {
		g.Release()
	}
	d.stats.RxFrames.Add(1)
	if err != nil {
		d.guestError()
		return false
	}
	if notify {
		q.Interrupt()
	}
	return true
}

const noAddr = ^uint64(0)

// locate is the guest address of byte off of the chain's writable
// stream (noAddr past it).
func locate(c *virtio.Chain, off uint64) uint64 {
	for _, g := range c.Segs {
		if !g.Write {
			continue
		}
		if off < uint64(g.Len) {
			return g.Addr + off
		}
		off -= uint64(g.Len)
	}
	return noAddr
}

// scatter writes n bytes of the stream header (hl bytes of d.hdr) then
// data, from stream offset off, into the chain's writable buffers.
func (d *Device) scatter(c *virtio.Chain, off, hl uint64, data []byte, n uint64) {
	for _, g := range c.Segs {
		if n == 0 {
			return
		}
		if !g.Write {
			continue
		}
		a, room := g.Addr, uint64(g.Len)
		for room > 0 && n > 0 {
			var src []byte
			if off < hl {
				src = d.hdr[off:hl]
			} else {
				src = data[off-hl:]
			}
			k := min(uint64(len(src)), room, n)
			d.dma.Write(a, src[:k])
			a += k
			room -= k
			n -= k
			off += k
		}
	}
}

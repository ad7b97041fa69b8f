package netback

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"godm/internal/qemuopts"
	"godm/netback/antispoof"
)

// TapConfig is a tap back-end's configuration, as libxl writes it:
// "-netdev type=tap,id=netN,ifname=vifX.Y-emu,br=BRIDGE,script=no,
// downscript=no" (libxl/libxl_dm.c), or a pre-opened tap with fd=.
type TapConfig struct {
	ID     string
	IfName string // interface to create or open (ignored with FD)
	Bridge string // bridge to attach the interface to, "" for none
	FD     int    // a pre-opened tap fd, -1 for none
	// VnetHdr asks for IFF_VNET_HDR (virtio-net header offloads).
	VnetHdr bool
	Depth   int
	// AntiSpoof puts godm's anti-spoofing classifier on the tap's ingress
	// (netback/antispoof): "x-godm-antispoof=on|off", godm's own key
	// (QEMU has none such; libxl writes none). AntiSpoofSet says the key
	// was given, so that a host-wide default yields to it.
	AntiSpoof, AntiSpoofSet bool
	// AntiSpoofAddrs are the guest's source networks
	// ("x-godm-antispoof-ip=10.0.0.5;fd00::5", which implies
	// x-godm-antispoof=on); none: only MACs are checked.
	AntiSpoofAddrs []netip.Prefix
}

// ParseTap reads a "-netdev tap" option. Scripts are refused: godm runs
// nothing (script= and downscript= other than "no" are an error).
func ParseTap(o *qemuopts.Opts) (TapConfig, error) {
	c := TapConfig{FD: -1}
	if t := o.String("type", ""); t != "tap" {
		return c, o.Errorf("type '%s' is not tap", t)
	}
	c.ID = o.ID()
	if c.ID == "" {
		return c, o.Errorf("parameter 'id' is missing")
	}
	c.IfName = o.String("ifname", "")
	c.Bridge = o.String("br", "")
	for _, k := range []string{"script", "downscript"} {
		// QEMU's default for both is a script under /etc; godm never runs
		// one, so only an explicit "no" is accepted.
		if v := o.String(k, ""); v != "no" {
			return c, o.Errorf("%s=%q: godm runs no scripts; give %s=no", k, v, k)
		}
	}
	vh, err := o.Bool("vnet_hdr", false)
	if err != nil {
		return c, err
	}
	c.VnetHdr = vh
	if o.Has("x-godm-antispoof") {
		if c.AntiSpoof, err = o.Bool("x-godm-antispoof", false); err != nil {
			return c, err
		}
		c.AntiSpoofSet = true
	}
	if o.Has("x-godm-antispoof-ip") {
		if c.AntiSpoofAddrs, err = antispoof.ParseAddrs(o.String("x-godm-antispoof-ip", "")); err != nil {
			return c, o.Errorf("x-godm-antispoof-ip: %v", err)
		}
		if c.AntiSpoofSet && !c.AntiSpoof {
			return c, o.Errorf("x-godm-antispoof-ip= is given with x-godm-antispoof=off")
		}
		c.AntiSpoof, c.AntiSpoofSet = true, true
	}
	if o.Has("fd") {
		s := o.String("fd", "")
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return c, o.Errorf("fd=%q is not a file descriptor number", s)
		}
		if c.IfName != "" || c.Bridge != "" {
			return c, o.Errorf("ifname= and br= are invalid with fd=")
		}
		c.FD = n
	} else if len(c.IfName) == 0 || len(c.IfName) >= unix.IFNAMSIZ {
		return c, o.Errorf("ifname=%q: an interface name of 1 to %d bytes is required", c.IfName, unix.IFNAMSIZ-1)
	}
	return c, o.CheckUnused()
}

// Tap is a tap device back-end. Toward the guest it reads the fd only
// while the receive queue has room: a flooding peer fills the kernel's
// tap queue (which drops past txqueuelen), never godm's memory.
type Tap struct {
	*Port
	file   *os.File
	name   string
	vnet   bool
	closed chan struct{}
	eof    chan struct{}
	spoof  *antispoof.Filter // nil when anti-spoofing is off
}

// TUN offload flags (Linux include/uapi/linux/if_tun.h).
const (
	tunFCsum = 0x01
	tunFTSO4 = 0x02
	tunFTSO6 = 0x04
	tunFTSOE = 0x08
	tunFUFO  = 0x10
)

// OpenTap opens (creating if needed) the tap, attaches it to the bridge
// and brings it up, or adopts the given fd.
func OpenTap(c TapConfig) (*Tap, error) {
	var fd int
	name := c.IfName
	vnet := c.VnetHdr
	if c.FD >= 0 {
		fd = c.FD
		ifr, err := unix.NewIfreq("")
		if err != nil {
			return nil, err
		}
		if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr); err != nil {
			return nil, fmt.Errorf("netdev %s: fd=%d is not a tap: %v", c.ID, fd, err)
		}
		fl := ifr.Uint16()
		if fl&unix.IFF_TAP == 0 || fl&unix.IFF_NO_PI == 0 {
			return nil, fmt.Errorf("netdev %s: fd=%d is not a tap without packet information (flags %#x)", c.ID, fd, fl)
		}
		vnet = fl&unix.IFF_VNET_HDR != 0
		name = ifr.Name()
	} else {
		var err error
		fd, err = unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("netdev %s: open /dev/net/tun: %v", c.ID, err)
		}
		ifr, err := unix.NewIfreq(c.IfName)
		if err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("netdev %s: ifname %q: %v", c.ID, c.IfName, err)
		}
		// Linux Documentation/networking/tuntap.rst: TUNSETIFF creates the
		// interface or attaches to an existing one of that name.
		fl := uint16(unix.IFF_TAP | unix.IFF_NO_PI)
		if vnet {
			fl |= unix.IFF_VNET_HDR
		}
		ifr.SetUint16(fl)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("netdev %s: TUNSETIFF %s: %v", c.ID, c.IfName, err)
		}
		name = ifr.Name()
	}
	if vnet {
		if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, VnetHdrLen); err != nil {
			return nil, closeErr(fd, c.FD, fmt.Errorf("netdev %s: TUNSETVNETHDRSZ: %v", c.ID, err))
		}
		// The guest may hand the tap partial checksums and TSO/UFO
		// frames; the kernel segments what the peer cannot take.
		if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tunFCsum|tunFTSO4|tunFTSO6|tunFTSOE); err != nil {
			return nil, closeErr(fd, c.FD, fmt.Errorf("netdev %s: TUNSETOFFLOAD: %v", c.ID, err))
		}
	}
	if c.FD < 0 {
		if err := linkUp(name, c.Bridge); err != nil {
			return nil, closeErr(fd, c.FD, fmt.Errorf("netdev %s: %v", c.ID, err))
		}
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, closeErr(fd, c.FD, err)
	}
	var spoof *antispoof.Filter
	if c.AntiSpoof {
		// Before the first frame is read from the guest: until a NIC
		// binds its MAC the filter drops everything.
		f, err := antispoof.Attach(name, antispoof.Policy{Prefixes: c.AntiSpoofAddrs})
		if err != nil {
			return nil, closeErr(fd, c.FD, fmt.Errorf("netdev %s: %v", c.ID, err))
		}
		spoof = f
	}
	return newFDBackend(fd, "tap:"+name, name, vnet, c.Depth, spoof), nil
}

// OpenPacketFD makes a back-end of a message-oriented descriptor: a
// SOCK_SEQPACKET socket whose every message is one Ethernet frame,
// without a virtio-net header (a back-end in another process: godm's
// user-mode networking). The back-end owns fd. When the peer closes its
// end, PeerClosed is closed.
func OpenPacketFD(fd int, name string, depth int) (*Tap, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netback: %s: %v", name, err)
	}
	return newFDBackend(fd, name, name, false, depth, nil), nil
}

func newFDBackend(fd int, fileName, name string, vnet bool, depth int, spoof *antispoof.Filter) *Tap {
	t := &Tap{
		Port:   NewPort(PortConfig{Depth: depth, Offloads: vnet}),
		file:   os.NewFile(uintptr(fd), fileName),
		name:   name,
		vnet:   vnet,
		closed: make(chan struct{}),
		eof:    make(chan struct{}),
		spoof:  spoof,
	}
	t.Go(t.reader)
	t.Go(t.writer)
	return t
}

// PeerClosed is closed once a read found the other end closed (a
// packet socket's peer; a tap does not end this way).
func (t *Tap) PeerClosed() <-chan struct{} { return t.eof }

func closeErr(fd, given int, err error) error {
	if given < 0 {
		unix.Close(fd)
	}
	return err
}

func linkUp(name, bridge string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("interface %s: %v", name, err)
	}
	if bridge != "" {
		br, err := netlink.LinkByName(bridge)
		if err != nil {
			return fmt.Errorf("bridge %s: %v", bridge, err)
		}
		if br.Type() != "bridge" {
			return fmt.Errorf("br=%s is a %s, not a bridge", bridge, br.Type())
		}
		if err := netlink.LinkSetMaster(l, br); err != nil {
			return fmt.Errorf("attach %s to bridge %s: %v", name, bridge, err)
		}
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("bring %s up: %v", name, err)
	}
	return nil
}

// AntiSpoof is the tap's anti-spoofing filter, nil when it is off. The
// NIC's wiring binds the guest's MAC to it (Filter.Bind).
func (t *Tap) AntiSpoof() *antispoof.Filter { return t.spoof }

// Name is the interface's name.
func (t *Tap) Name() string { return t.name }

// reader moves frames from the fd to the guest's queue, reading only
// while the queue has room.
func (t *Tap) reader() {
	rx := t.RxQueue()
	for {
		for rx.Len() == rx.Cap() {
			select {
			case <-rx.Room:
			case <-t.Stopping():
				return
			}
		}
		f := t.Pool().Get()
		if f == nil {
			// Every frame out: the NIC holds more than it should. Wait
			// for one back without reading the fd.
			select {
			case <-time.After(time.Millisecond):
			case <-t.Stopping():
				return
			}
			continue
		}
		n, err := t.file.Read(f.buf)
		if err != nil {
			f.Release()
			if errors.Is(err, os.ErrClosed) {
				return
			}
			if errors.Is(err, io.EOF) {
				// A packet socket's peer has gone (a tap never reads 0).
				close(t.eof)
				return
			}
			// A persistent error (the interface deleted under us: EBADFD,
			// EIO) must not spin: wait a little before the next try.
			select {
			case <-t.Stopping():
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		if t.vnet {
			if !f.Hdr.Decode(f.buf[:n]) || n < VnetHdrLen {
				t.Stats().Bad.Add(1)
				f.Release()
				continue
			}
			n = copy(f.buf, f.buf[VnetHdrLen:n])
		}
		f.n = n
		t.Deliver(f)
	}
}

// writer moves frames the guest sent to the fd.
func (t *Tap) writer() {
	tx := t.TxQueue()
	for {
		f := tx.Pop()
		if f == nil {
			select {
			case <-tx.Ready:
				continue
			case <-t.Stopping():
				return
			}
		}
		b := f.buf[:f.n]
		if t.vnet {
			// Pool buffers have VnetHdrLen bytes past MaxLen: room to put
			// the header in front.
			copy(f.buf[VnetHdrLen:], f.buf[:f.n])
			f.Hdr.NumBuffers = 0
			f.Hdr.Encode(f.buf[:VnetHdrLen])
			b = f.buf[:f.n+VnetHdrLen]
		}
		_, err := t.file.Write(b)
		f.Release()
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			t.Stats().TxDropped.Add(1)
		}
	}
}

// Close closes the fd (a pre-opened one too: the back-end owns it) and
// stops the goroutines.
func (t *Tap) Close() error {
	var serr error
	if t.spoof != nil {
		// Detached before the fd goes: a persistent tap keeps no filter.
		serr = t.spoof.Close()
	}
	err := t.file.Close()
	t.Shutdown()
	return errors.Join(err, serr)
}

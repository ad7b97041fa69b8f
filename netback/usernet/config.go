package usernet

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"godm/internal/qemuopts"
	"godm/netback"
)

// Config is a user-mode network's configuration, from "-netdev user,..."
// (QEMU net/slirp.c net_init_slirp's defaults: net 10.0.2.0/24, host .2,
// dns .3, dhcpstart .15).
type Config struct {
	ID        string
	Net       netip.Prefix
	Host      netip.Addr // the gateway; the host's loopback seen from the guest
	DNS       netip.Addr
	DHCPStart netip.Addr
	Restrict  bool
	HostFwd   []HostFwd
	// Resolver is the host's DNS server the DNS address forwards to
	// (ip:port); empty means the first nameserver of /etc/resolv.conf.
	Resolver string
	// MAC is the gateway's Ethernet address.
	MAC [6]byte
	// Depth is each frame queue's depth (netback.DefaultDepth when 0).
	Depth int
	// MaxFlows bounds the NAT's concurrent TCP connections and UDP flows
	// each (128 when 0).
	MaxFlows int
}

// HostFwd is one "hostfwd=[tcp|udp]:HOSTADDR:HOSTPORT-GUESTADDR:GUESTPORT".
type HostFwd struct {
	UDP   bool
	Host  netip.AddrPort
	Guest netip.AddrPort // guest address unspecified: the first DHCP address
}

// parseDefaults fills c's network fields with QEMU's defaults.
func parseDefaults(c Config) (Config, error) {
	o, err := qemuopts.Parse("-netdev", "user,id=defaults", "type")
	if err != nil {
		return c, err
	}
	d, err := Parse(o)
	if err != nil {
		return c, err
	}
	d.Resolver, d.Depth, d.MaxFlows, d.Restrict = c.Resolver, c.Depth, c.MaxFlows, c.Restrict
	return d, nil
}

// Parse reads a "-netdev user" option.
func Parse(o *qemuopts.Opts) (Config, error) {
	c := Config{MAC: [6]byte{0x52, 0x55, 0x0a, 0x00, 0x02, 0x02}}
	if t := o.String("type", ""); t != "user" {
		return c, o.Errorf("type '%s' is not user", t)
	}
	c.ID = o.ID()
	if c.ID == "" {
		return c, o.Errorf("parameter 'id' is missing")
	}
	var err error
	n := o.String("net", "10.0.2.0/24")
	if c.Net, err = netip.ParsePrefix(n); err != nil || !c.Net.Addr().Is4() || c.Net.Bits() > 30 || c.Net.Bits() < 8 {
		return c, o.Errorf("net=%q: an IPv4 network with a prefix of 8 to 30 bits is required", n)
	}
	c.Net = c.Net.Masked()
	at := func(key string, off uint32) (netip.Addr, error) {
		def := c.Net.Addr().As4()
		v := uint32(def[0])<<24 | uint32(def[1])<<16 | uint32(def[2])<<8 | uint32(def[3]) + off
		d := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
		s := o.String(key, "")
		if s == "" {
			return d, nil
		}
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() || !c.Net.Contains(a) {
			return a, o.Errorf("%s=%q: an IPv4 address inside %s is required", key, s, c.Net)
		}
		return a, nil
	}
	if c.Host, err = at("host", 2); err != nil {
		return c, err
	}
	if c.DNS, err = at("dns", 3); err != nil {
		return c, err
	}
	if c.DHCPStart, err = at("dhcpstart", 15); err != nil {
		return c, err
	}
	last := c.DHCPStart
	for i := 1; i < PoolSize; i++ {
		last = last.Next()
	}
	if !c.Net.Contains(last) {
		return c, o.Errorf("dhcpstart=%s: %d addresses from it do not fit in %s", c.DHCPStart, PoolSize, c.Net)
	}
	if c.Restrict, err = o.Bool("restrict", false); err != nil {
		return c, err
	}
	if o.Has("hostfwd") {
		s := o.String("hostfwd", "")
		h, err := parseHostFwd(s)
		if err != nil {
			return c, o.Errorf("hostfwd=%q: %v", s, err)
		}
		c.HostFwd = append(c.HostFwd, h)
	}
	return c, o.CheckUnused()
}

// parseHostFwd reads QEMU's "[tcp]:[hostaddr]:hostport-[guestaddr]:guestport"
// (net/slirp.c slirp_hostfwd; tcp when the protocol is empty).
func parseHostFwd(s string) (HostFwd, error) {
	var h HostFwd
	proto, rest, ok := strings.Cut(s, ":")
	if !ok {
		return h, fmt.Errorf("expected [tcp]:[hostaddr]:hostport-[guestaddr]:guestport")
	}
	switch proto {
	case "", "tcp":
	case "udp":
		h.UDP = true
	default:
		return h, fmt.Errorf("protocol %q: tcp or udp", proto)
	}
	hs, gs, ok := strings.Cut(rest, "-")
	if !ok {
		return h, fmt.Errorf("expected hostport-guestport")
	}
	ap := func(s, what string) (netip.AddrPort, error) {
		a, p, ok := strings.Cut(s, ":")
		if !ok {
			return netip.AddrPort{}, fmt.Errorf("%s %q: expected [addr]:port", what, s)
		}
		ip := netip.IPv4Unspecified()
		if a != "" {
			var err error
			if ip, err = netip.ParseAddr(a); err != nil || !ip.Is4() {
				return netip.AddrPort{}, fmt.Errorf("%s address %q is not IPv4", what, a)
			}
		}
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("%s port %q is not a port number", what, p)
		}
		return netip.AddrPortFrom(ip, uint16(n)), nil
	}
	var err error
	if h.Host, err = ap(hs, "host"); err != nil {
		return h, err
	}
	if h.Guest, err = ap(gs, "guest"); err != nil {
		return h, err
	}
	if h.Guest.Port() == 0 {
		return h, fmt.Errorf("guest port 0")
	}
	return h, nil
}

// Open starts the user-mode network "-netdev user,..." describes, in this
// process (netdev.Defaults.User for callers that link the netstack).
func Open(o *qemuopts.Opts) (netback.Backend, error) {
	c, err := Parse(o)
	if err != nil {
		return nil, err
	}
	return New(c)
}

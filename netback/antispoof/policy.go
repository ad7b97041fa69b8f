// Package antispoof is godm's opt-in anti-spoofing filter for a tap: a
// TC classifier on the tap's ingress (the frames the guest sends), built
// at run time with cilium/ebpf's asm package (no C, no object files), that
// drops a frame whose source is not the guest's.
//
// The policy follows Xen's vif-bridge rules for PV vifs
// (tools/hotplug/Linux/vif-common.sh handle_iptable: with "ip" set, only
// those source networks, plus UDP 68->67 from anywhere for DHCP; without
// it, anything) and adds what a bridge needs against a guest forging its
// link-layer identity:
//
//   - Ethernet source MAC must be the guest's (the toolstack's mac=);
//   - ARP (Ethernet/IPv4 only) sender MAC must be the guest's, and with
//     addresses listed its sender IP one of them or 0.0.0.0 (an RFC 5227
//     probe);
//   - with addresses listed, IPv4 source must be in a listed network, or
//     the frame a DHCP client's (UDP 68->67, first fragment); IPv6 source
//     must be :: (duplicate address detection), in fe80::/64 (any
//     link-local interface identifier: stable-privacy and random ones are
//     not derived from the MAC) or in a listed IPv6 network; every other
//     EtherType is dropped. Xen's rules cover IPv4 only: listing any
//     address here restricts both families.
//   - without addresses, only the MACs are checked.
//
// Until a NIC binds the guest's MAC (Filter.Bind) every frame is dropped.
package antispoof

import (
	"fmt"
	"net/netip"
	"strings"
)

// MaxPrefixes bounds the listed networks per family (each costs a few
// instructions on every frame).
const MaxPrefixes = 16

// Policy is what the filter lets through besides the guest's MAC.
type Policy struct {
	// Prefixes are the guest's allowed source networks (a single address
	// is a /32 or /128). Empty: any source address (only MACs checked).
	Prefixes []netip.Prefix
}

// ParseAddrs reads a list of addresses or networks separated by spaces,
// commas or semicolons ("10.0.0.5", "10.0.0.0/24 fd00::5"), as Xen's "ip"
// key holds them. The error is one line.
func ParseAddrs(s string) ([]netip.Prefix, error) {
	var ps []netip.Prefix
	f := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' || r == ';' || r == '\t' })
	var n4, n6 int
	for _, w := range f {
		var p netip.Prefix
		if strings.Contains(w, "/") {
			var err error
			p, err = netip.ParsePrefix(w)
			if err != nil {
				return nil, fmt.Errorf("'%s' is not an IP address or network", w)
			}
		} else {
			a, err := netip.ParseAddr(w)
			if err != nil || a.Zone() != "" {
				return nil, fmt.Errorf("'%s' is not an IP address or network", w)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		p = p.Masked()
		if p.Addr().Is4In6() {
			return nil, fmt.Errorf("'%s': give IPv4 networks in dotted form", w)
		}
		if p.Addr().Is4() {
			n4++
		} else {
			n6++
		}
		if n4 > MaxPrefixes || n6 > MaxPrefixes {
			return nil, fmt.Errorf("more than %d networks of one family", MaxPrefixes)
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// Counter indexes the filter's counters.
type Counter int

// The counters, in the order of the BPF map's value.
const (
	Passed    Counter = iota // frames let through
	BadMAC                   // Ethernet source MAC not the guest's
	BadIPv4                  // IPv4 source not allowed
	BadARP                   // ARP sender MAC or IP not the guest's, or not Ethernet/IPv4 ARP
	BadIPv6                  // IPv6 source not allowed
	BadType                  // other EtherType while addresses are restricted
	Malformed                // too short for its header
	Unbound                  // no NIC has bound the guest's MAC yet
	NumCounters
)

var counterNames = [NumCounters]string{"passed", "bad_mac", "bad_ipv4", "bad_arp", "bad_ipv6", "bad_type", "malformed", "unbound"}

func (c Counter) String() string {
	if c >= 0 && c < NumCounters {
		return counterNames[c]
	}
	return fmt.Sprintf("counter%d", int(c))
}

// Counters is a snapshot of the filter's counters.
type Counters [NumCounters]uint64

// Dropped is the sum of the drop counters.
func (c Counters) Dropped() uint64 {
	var s uint64
	for i := BadMAC; i < NumCounters; i++ {
		s += c[i]
	}
	return s
}

// Stats are the counters as named fields (a NIC's metrics:
// godm_device_events_total{counter="antispoof_bad_mac"}, ...; Ipv4 and
// Ipv6 so that they read bad_ipv4 and bad_ipv6 in snake case).
type Stats struct {
	Passed, BadMAC, BadIpv4, BadARP, BadIpv6, BadType, Malformed, Unbound uint64
}

// Stats returns the counters as Stats.
func (c Counters) Stats() Stats {
	return Stats{c[Passed], c[BadMAC], c[BadIPv4], c[BadARP], c[BadIPv6], c[BadType], c[Malformed], c[Unbound]}
}

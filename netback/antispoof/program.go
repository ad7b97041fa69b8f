package antispoof

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf/asm"
)

// Layout of the configuration map's single value: the guest's MAC, then
// a byte that is non-zero once it is bound.
const (
	cfgMAC   = 0
	cfgBound = 6
	cfgSize  = 8
)

// struct __sk_buff offsets (Linux include/uapi/linux/bpf.h): data and
// data_end, the packet bounds of direct packet access. At TC ingress the
// kernel has pushed the Ethernet header back (net/core/dev.c
// sch_handle_ingress), so data is the Ethernet header.
const (
	skbData    = 76
	skbDataEnd = 80
)

// Return codes: TC_ACT_UNSPEC / TCX_NEXT (-1) lets the frame on to any
// other classifier (and then through); TC_ACT_SHOT / TCX_DROP (2) drops it
// (include/uapi/linux/pkt_cls.h).
const (
	actNext = -1
	actDrop = 2
)

// EtherTypes and frame offsets (IEEE 802.3, RFC 826, RFC 791, RFC 8200).
const (
	ethHdr    = 14
	ethSrc    = 6
	ethType   = 12
	typeIPv4  = 0x0800
	typeARP   = 0x0806
	typeIPv6  = 0x86dd
	arpLen    = 28
	ipv4Min   = 20
	ipv6Len   = 40
	ipv4Frag  = ethHdr + 6
	ipv4Proto = ethHdr + 9
	ipv4Src   = ethHdr + 12
	arpSHA    = ethHdr + 8
	arpSPA    = ethHdr + 14
	ipv6Src   = ethHdr + 8
)

// native is the 32-bit immediate a load of b (4 bytes) from memory
// yields: the program compares raw bytes, so constants take the host's
// byte order like the loads do.
func native(b ...byte) int32 { return int32(binary.NativeEndian.Uint32(b)) }

func native16(b ...byte) int32 { return int32(binary.NativeEndian.Uint16(b)) }

// program builds the classifier. cfgFD and ctrFD are the configuration and
// counter maps (single-value arrays, addressed directly).
func program(p Policy, cfgFD, ctrFD int) asm.Instructions {
	restricted := len(p.Prefixes) > 0
	var v4, v6 []netip.Prefix
	for _, pf := range p.Prefixes {
		if pf.Addr().Is4() {
			v4 = append(v4, pf)
		} else {
			v6 = append(v6, pf)
		}
	}
	const (
		rData = asm.R2
		rEnd  = asm.R3
		rCfg  = asm.R7
		rCtr  = asm.R8
	)
	// bounds: if data+n > data_end, the frame is malformed.
	bounds := func(n int32) asm.Instructions {
		return asm.Instructions{
			asm.Mov.Reg(asm.R4, rData),
			asm.Add.Imm(asm.R4, n),
			asm.JGT.Reg(asm.R4, rEnd, "malformed"),
		}
	}
	// sameMAC: the 6 bytes at data+off equal the bound MAC, else goto fail.
	sameMAC := func(off int16, fail string) asm.Instructions {
		return asm.Instructions{
			asm.LoadMem(asm.R4, rData, off, asm.Word),
			asm.LoadMem(asm.R5, rCfg, cfgMAC, asm.Word),
			asm.JNE.Reg(asm.R4, asm.R5, fail),
			asm.LoadMem(asm.R4, rData, off+4, asm.Half),
			asm.LoadMem(asm.R5, rCfg, cfgMAC+4, asm.Half),
			asm.JNE.Reg(asm.R4, asm.R5, fail),
		}
	}
	// v4match: the IPv4 address in R4 is in a listed network: goto pass.
	v4match := func() asm.Instructions {
		var in asm.Instructions
		for _, pf := range v4 {
			a := pf.Addr().As4()
			var mask [4]byte
			for i := 0; i < pf.Bits(); i++ {
				mask[i/8] |= 0x80 >> (i % 8)
			}
			in = append(in,
				asm.Mov.Reg(asm.R5, asm.R4),
				asm.And.Imm32(asm.R5, native(mask[:]...)),
				asm.JEq.Imm32(asm.R5, native(a[:]...), "passed"),
			)
		}
		return in
	}

	in := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMapValue(rCfg, cfgFD, 0),
		asm.LoadMapValue(rCtr, ctrFD, 0),
		asm.LoadMem(rData, asm.R6, skbData, asm.Word),
		asm.LoadMem(rEnd, asm.R6, skbDataEnd, asm.Word),
		asm.LoadMem(asm.R4, rCfg, cfgBound, asm.Byte),
		asm.JEq.Imm(asm.R4, 0, "unbound"),
	}
	in = append(in, bounds(ethHdr)...)
	in = append(in, sameMAC(ethSrc, "bad_mac")...)
	in = append(in,
		asm.LoadMem(asm.R9, rData, ethType, asm.Half),
		asm.HostTo(asm.BE, asm.R9, asm.Half),
		asm.JEq.Imm(asm.R9, typeARP, "arp"),
	)
	if restricted {
		in = append(in,
			asm.JEq.Imm(asm.R9, typeIPv4, "ipv4"),
			asm.JEq.Imm(asm.R9, typeIPv6, "ipv6"),
			asm.Ja.Label("bad_type"),
		)
	} else {
		in = append(in, asm.Ja.Label("passed"))
	}

	// ARP: Ethernet/IPv4 only, sender MAC the guest's; with addresses
	// listed, sender IP one of them or 0.0.0.0 (RFC 5227 probe).
	arp := bounds(ethHdr + arpLen)
	arp[0] = arp[0].WithSymbol("arp")
	in = append(in, arp...)
	in = append(in,
		// htype 1, ptype 0x0800, hlen 6, plen 4 (RFC 826).
		asm.LoadMem(asm.R4, rData, ethHdr, asm.Word),
		asm.JNE.Imm32(asm.R4, native(0, 1, 8, 0), "bad_arp"),
		asm.LoadMem(asm.R4, rData, ethHdr+4, asm.Half),
		asm.JNE.Imm32(asm.R4, native16(6, 4), "bad_arp"),
	)
	in = append(in, sameMAC(arpSHA, "bad_arp")...)
	if restricted {
		in = append(in,
			asm.LoadMem(asm.R4, rData, arpSPA, asm.Word),
			asm.JEq.Imm32(asm.R4, 0, "passed"),
		)
		in = append(in, v4match()...)
		in = append(in, asm.Ja.Label("bad_arp"))

		// IPv4: a listed source, or a DHCP client's frame (UDP 68->67,
		// from any source as Xen's rule has it; first fragment only, so
		// that a later fragment cannot pose as one).
		ip4 := bounds(ethHdr + ipv4Min)
		ip4[0] = ip4[0].WithSymbol("ipv4")
		in = append(in, ip4...)
		in = append(in, asm.LoadMem(asm.R4, rData, ipv4Src, asm.Word))
		in = append(in, v4match()...)
		in = append(in,
			asm.LoadMem(asm.R5, rData, ipv4Proto, asm.Byte),
			asm.JNE.Imm(asm.R5, 17, "bad_ipv4"),
			asm.LoadMem(asm.R5, rData, ipv4Frag, asm.Half),
			asm.HostTo(asm.BE, asm.R5, asm.Half),
			asm.And.Imm(asm.R5, 0x1fff),
			asm.JNE.Imm(asm.R5, 0, "bad_ipv4"),
			asm.LoadMem(asm.R5, rData, ethHdr, asm.Byte),
			asm.And.Imm(asm.R5, 0xf),
			asm.LSh.Imm(asm.R5, 2),
			asm.JLT.Imm(asm.R5, ipv4Min, "malformed"),
			asm.Mov.Reg(asm.R4, rData),
			asm.Add.Reg(asm.R4, asm.R5),
			asm.Add.Imm(asm.R4, ethHdr),
			asm.Mov.Reg(asm.R5, asm.R4),
			asm.Add.Imm(asm.R5, 4),
			asm.JGT.Reg(asm.R5, rEnd, "malformed"),
			asm.LoadMem(asm.R5, asm.R4, 0, asm.Word),
			asm.JEq.Imm32(asm.R5, native(0, 68, 0, 67), "passed"),
			asm.Ja.Label("bad_ipv4"),
		)

		// IPv6: ::, fe80::/64 or a listed network.
		ip6 := bounds(ethHdr + ipv6Len)
		ip6[0] = ip6[0].WithSymbol("ipv6")
		in = append(in, ip6...)
		w := [4]asm.Register{asm.R0, asm.R4, asm.R5, asm.R9}
		for i, r := range w {
			in = append(in, asm.LoadMem(r, rData, int16(ipv6Src+4*i), asm.Word))
		}
		in = append(in,
			asm.Mov.Reg(asm.R1, asm.R0),
			asm.Or.Reg(asm.R1, asm.R4),
			asm.Or.Reg(asm.R1, asm.R5),
			asm.Or.Reg(asm.R1, asm.R9),
			asm.JEq.Imm(asm.R1, 0, "passed"),
			asm.JNE.Imm32(asm.R0, native(0xfe, 0x80, 0, 0), "v6p0"),
			asm.JEq.Imm32(asm.R4, 0, "passed"),
		)
		// Block k tests network k and falls to block k+1 ("v6pK").
		label := func(k int) string { return fmt.Sprintf("v6p%d", k) }
		for k, pf := range v6 {
			a := pf.Addr().As16()
			var mask [16]byte
			for i := 0; i < pf.Bits(); i++ {
				mask[i/8] |= 0x80 >> (i % 8)
			}
			var blk asm.Instructions
			for i, r := range w {
				m := mask[4*i : 4*i+4]
				if native(m...) == 0 {
					continue
				}
				blk = append(blk,
					asm.Mov.Reg(asm.R1, r),
					asm.And.Imm32(asm.R1, native(m...)),
					asm.JNE.Imm32(asm.R1, native(a[4*i:4*i+4]...), label(k+1)),
				)
			}
			blk = append(blk, asm.Ja.Label("passed"))
			blk[0] = blk[0].WithSymbol(label(k))
			in = append(in, blk...)
		}
		in = append(in, asm.Ja.Label("bad_ipv6").WithSymbol(label(len(v6))))
	}

	// The exits: count, then pass on or drop.
	exit := func(c Counter, ret int32) asm.Instructions {
		return asm.Instructions{
			asm.Mov.Imm(asm.R1, 1).WithSymbol(c.String()),
			asm.AddAtomic.Mem(rCtr, asm.R1, asm.DWord, int16(8*c)),
			asm.Mov.Imm(asm.R0, ret),
			asm.Return(),
		}
	}
	// (The verifier refuses unreachable code: only the exits some jump
	// names.)
	refs := in.ReferenceOffsets()
	in = append(in, exit(Passed, actNext)...)
	for c := BadMAC; c < NumCounters; c++ {
		if _, ok := refs[c.String()]; ok {
			in = append(in, exit(c, actDrop)...)
		}
	}
	return in
}

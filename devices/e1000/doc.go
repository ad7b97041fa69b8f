// Package e1000 is the Intel 82540EM Gigabit Ethernet controller (PCI
// 8086:100e, revision 3), the NIC xl users select with model=e1000 in a
// vif ("-device e1000,id=nicN,netdev=netN,mac=..."). Its frames go to and
// come from a netback.Backend; it knows no back-end.
//
// Facts come from QEMU 7.2's model (hw/net/e1000.c and e1000x_common.c,
// the reference the differential test runs against) and Intel's PCI/PCI-X
// Family of Gigabit Ethernet Controllers Software Developer's Manual
// (8254x SDM):
//
//   - BAR0 128 KiB of memory: the register file, 32-bit registers (an
//     access is cut into aligned pieces and each piece reaches the whole
//     register its address falls in, as QEMU's memory core does); BAR1
//     64 bytes of I/O (IOADDR/IODATA, which QEMU 7.2 leaves dead: reads 0).
//   - CTRL/STATUS; the EEPROM behind EECD (Microwire bit-banging) and EERD
//     (word reads): 64 words, MAC in words 0-2, device ID in 11 and 13,
//     word 63 making the sum 0xBABA; the M88E1000 PHY behind MDIC (PHY
//     address 1), whose BMSR reports the link and autonegotiation (500 ms
//     after a restart, then LSC).
//   - ICR (read clears), ICS, IMS, IMC: INTA# is ICR & IMS, moderated as
//     QEMU's mitigation does: a rising edge opens a window of
//     max(ITR, RADV×4 when RDTR, TADV×4 after IDE; 500) × 256 ns during
//     which no new edge is raised.
//   - Receive: RCTL (enable, UPE/MPE/BAM, MO, LPE, SBP, SECRC, buffer size
//     256 B-16 KiB), a ring of 16-byte legacy descriptors at RDBAL/RDBAH of
//     RDLEN bytes between RDH and RDT; a frame may span descriptors; RXT0,
//     RXDMT0 (RCTL.RDMTS), RXO. Filters: the 16 receive addresses RAL/RAH
//     with AV, the 4096-bit multicast table MTA, broadcast, promiscuous
//     modes, VLAN filter VFTA with CTRL.VME stripping the tag (VET).
//   - Transmit: TCTL.EN, a ring at TDBAL/TDBAH of TDLEN bytes between TDH
//     and TDT of legacy, context and data descriptors: IP and TCP/UDP
//     checksum insertion (IXSM/TXSM at the context's css/cso/cse), TCP
//     segmentation (TSE: headers of hdr_len replayed before every mss
//     bytes, IP length/ID, TCP sequence, PSH/FIN only on the last), VLAN
//     insertion (VLE); DD written back with RS; TXDW, TXQE. PHY loopback
//     (BMCR bit 14) turns frames around.
//   - Statistics registers 0x4000-0x40ff (those QEMU counts; the good
//     packet/octet ones read-to-clear).
//
// Hostile guests: every descriptor and buffer access goes through
// memory.Accessor (an unmapped address is a DMA error with a defined
// outcome, never a crash); a ring walk stops when it comes back to where
// it started or its head lies outside the ring, as QEMU's; a frame being
// assembled is bounded by the 64 KiB staging buffer; offsets a context
// descriptor gives are bounded by its 8/16-bit fields and checked against
// the buffer. Memory is fixed at creation: the back-end's pool and queues,
// one staging buffer per direction.
//
// Back-pressure: a descriptor that completes a frame is left to the
// device (TDH does not move) while the back-end has no free frame, and
// retried when it has; segments after the first of a TSO descriptor that
// find it full are dropped and counted (TCP retransmits). Frames wait in
// the back-end's bounded queue while the guest has no receive buffers, as
// QEMU's can_receive holds them.
//
// Deviations from QEMU: no option ROM (QEMU loads efi-e1000.rom); QEMU
// holds received frames for 1 s of virtual time after every RCTL write
// (its flush_queue_timer, a workaround for its own queue), godm takes them
// at once.
package e1000

// Package rtl8139 is the Realtek RTL8139C+ Fast Ethernet controller
// (PCI 10ec:8139, revision 0x20), libxl's default emulated NIC
// ("-device rtl8139,id=nicN,netdev=netN,mac=..."). Its frames go to and
// come from a netback.Backend; it knows no back-end.
//
// Facts come from QEMU's model (hw/net/rtl8139.c, the reference the
// differential tests run against) and Realtek's RTL8139C(L)+ datasheet:
//
//   - BAR0 256 bytes of I/O, BAR1 256 bytes of memory, the same register
//     file behind both; INTA#.
//   - ID registers IDR0-5 at 0x00 (from mac=), multicast hash MAR0-7 at 0x08
//     (bit = top 6 bits of the big-endian Ethernet CRC of the address).
//   - The 93C46 serial EEPROM behind Cfg9346 (0x50): 64 words; word 0
//     0x8129, 1-2 the PCI IDs, 7-9 the MAC.
//   - Normal ("C") transmit: four TSD/TSAD pairs (0x10/0x20), one frame
//     each, OWN/TOK in TSD, TSAD summary at 0x60.
//   - Normal receive: a ring buffer at RBSTART (0x30) of 8-64 KiB plus
//     slack, each frame behind a 4-byte header (status, length incl. CRC)
//     and followed by its CRC, 4-byte aligned; CAPR (0x38, off by 16) is
//     the driver's read pointer, CBR (0x3a) the device's write pointer;
//     RCR (0x44) accept modes (all/physical/multicast hash/broadcast).
//   - C+ mode (CPlusCmd 0xe0): 16-byte descriptors (OWN, EOR, FS, LS,
//     length; 64-bit buffer address) in a transmit ring at TNPDS (0x20,
//     64-bit) polled through TPPoll (0xd9) and a receive ring at RDSAR
//     (0xe4); IP/TCP/UDP checksum offload, large send and VLAN tag
//     insertion on transmit, VLAN detagging on receive; the tally counter dump (DTCCR).
//   - ISR/IMR (0x3e/0x3c) drive INTx; PHY registers BMCR/BMSR/ANAR/ANLPAR/
//     ANER (0x62-0x6a) and MSR (0x58) report the link; TCTR (0x48) counts
//     at the PCI clock (33 MHz) and TimerInt (0x54) raises PCSTimeout.
//
// Hostile guests: every descriptor and buffer access goes through
// memory.Accessor (an unmapped address is a DMA error with a defined
// outcome, never a crash); descriptor walks are bounded (64 descriptors a
// transmit poll as QEMU, a receive ring of at most 1024 descriptors);
// frames longer than the back-end takes are dropped and counted; a C+
// frame assembled from many descriptors is bounded by its buffer. Memory
// is fixed at creation: the back-end's pool and queues, one staging buffer
// per direction.
//
// Back-pressure: a transmit that finds the back-end full leaves the
// descriptor to the device and is retried when the back-end has room; a
// receive that finds the guest's ring full leaves the frame in the
// back-end's bounded queue until the guest frees space (CAPR write), as
// QEMU's can_receive does, except in C+ mode where, as in QEMU, a frame
// without a free descriptor is dropped with RxOverflow.
//
// Large send (LGSEN, TCP segmentation offload) cuts a TCP/IPv4 frame of
// up to 64 KiB at the descriptor's MSS (bits 16-26), as QEMU does.
//
// Deviations from QEMU: no option ROM (QEMU loads efi-rtl8139.rom); the
// last large-send segment keeps FIN and PSH (QEMU 7.2 clears them in the
// header template it reuses, so its last segment loses them); the C+
// receive ring wraps after 1024 descriptors without EOR (QEMU walks on);
// unaligned accesses are cut into aligned pieces as QEMU's memory core
// does before its device sees them.
package rtl8139

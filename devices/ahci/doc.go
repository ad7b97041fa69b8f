// Package ahci is the ICH9 AHCI SATA controller (QEMU hw/ide/ich.c
// "ich9-ahci", alias "ahci"; 8086:2922 rev 2, class 0x010601), which libxl
// asks for with xl.cfg hdtype="ahci": -device ahci,id=ahci0 and one
// -device ide-hd,bus=ahci0.N per disk.
//
// Guest-visible behaviour follows QEMU 7.2's hw/ide/ahci.c:
//
//   - ABAR is BAR5 (4 KiB memory); the generic host control registers
//     CAP (6 ports, 32 slots, NCQ, 64-bit, AHCI-only, Gen1), GHC (HBA
//     reset, interrupt enable; AE reads 1), IS (write 1 to clear), PI and
//     VS (1.0). Each port has CLB/FB (+upper halves), IS (write 1 to
//     clear), IE, CMD (ST/FRE start the engines, CR/FR follow, the
//     read-only bits kept), TFD, SIG, SSTS, SCTL (DET 1 then 0 resets
//     the port), SERR, SACT and CI. BAR4 is the index/data pair.
//   - Writing CI walks the set slots in order: the 32-byte command header,
//     the command table's H2D register FIS (control FISes only step the
//     SRST state machine), then the ATA command. One command runs per port
//     at a time; the others wait in CI.
//   - ATA commands served: IDENTIFY DEVICE (the page devices/ide builds,
//     through the PRDT, PIO setup FIS), READ/WRITE DMA (+EXT), READ/WRITE
//     FPDMA QUEUED (NCQ: PxSACT, the set device bits FIS), FLUSH CACHE
//     (+EXT), SET FEATURES (write cache, transfer mode, the no-ops QEMU
//     accepts), READ VERIFY, CHECK POWER MODE and the power no-ops. The
//     others end with ABRT. (QEMU 7.2 leaves an aborted command's slot in
//     PxCI without a D2H FIS, to be rerun at the next CI write; godm
//     completes it with the error, as a device does.)
//   - Completion writes the D2H register FIS (or the SDB FIS for NCQ) into
//     the received-FIS area, updates PxTFD and raises PxIS bits; the
//     controller's interrupt is INTx, or MSI once the guest enables it.
//
// I/O runs on a block.Queue per port: the ioreq thread only decodes the
// command and submits; the completion copies through a 128 KiB bounce
// buffer to or from the PRDT segments and continues with the next chunk.
// Every PRDT walk is bounded by the entry count (at most 65535) and the
// command's length, and every guest address goes through
// memory.Accessor: a segment outside guest memory ends the command with
// ABRT.
//
// ATAPI (ide-cd on a port): the signature 0xeb140101 in PxSIG, IDENTIFY
// DEVICE aborted with it, IDENTIFY PACKET DEVICE, and PACKET with the
// command in the command table's ACMD area run by devices/ide's command
// layer (ide.CDState, shared with the IDE channel): the packet phase's
// PIO setup FIS without the interrupt bit, replies and READs through the
// PRDT by DMA or PIO (the byte count limit's last block in the cylinder
// registers and one PIO setup FIS with the interrupt bit), READs in
// 128 KiB steps on the port's queue, sense data and the NOT READY then
// UNIT ATTENTION sequence after a media change (OpenTray, InsertMedium).
// Deviations: QEMU 7.2 sends no D2H FIS for a command refused under a
// unit attention, nor for DEVICE RESET or EXECUTE DEVICE DIAGNOSTIC on a
// CD; godm does. PIO byte-count blocks are folded into one PIO setup FIS.
//
// Not served yet: PIO data commands for disks, DATA SET MANAGEMENT, port
// multipliers.
package ahci

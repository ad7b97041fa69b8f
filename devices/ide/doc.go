// Package ide is the PIIX3 IDE function of the xenfv machine (Intel
// 82371SB IDE, 8086:7010 at 00:01.1; QEMU hw/ide/piix.c "piix3-ide-xen"):
// two legacy ATA channels and the bus-master DMA engine, with hard disks
// (ide-hd) and ATAPI CD-ROM drives (ide-cd) on block.Drive back ends.
//
// Guest-visible behaviour follows QEMU 7.2 (hw/ide/core.c, atapi.c, pci.c,
// piix.c), which SeaBIOS, Linux's ata_piix and Windows are written
// against; the differential tests in internal/machine compare register
// answers and interrupts with QEMU's through qtest.
//
//   - Ports: channel 0 at 0x1f0-0x1f7 and 0x3f6, IRQ 14; channel 1 at
//     0x170-0x177 and 0x376, IRQ 15 (ISA lines, legacy mode: programming
//     interface 0x80). BAR4 (16 I/O ports): per channel, the bus-master
//     command (+0), status (+2) and PRD table address (+4..+7).
//   - ATA: IDENTIFY, READ/WRITE SECTORS and MULTIPLE (PIO, LBA28/LBA48/
//     CHS), READ/WRITE DMA (+EXT), FLUSH CACHE (+EXT), SET FEATURES
//     (write cache, transfer mode), SET MULTIPLE, INITIALIZE DEVICE
//     PARAMETERS, VERIFY, SEEK, READ NATIVE MAX, power-mode no-ops,
//     EXECUTE DEVICE DIAGNOSTIC, soft reset through the device control
//     register. SMART and DATA SET MANAGEMENT are not served (ABRT).
//   - ATAPI: PACKET (PIO and DMA), IDENTIFY PACKET DEVICE, DEVICE RESET,
//     TEST UNIT READY, REQUEST SENSE, INQUIRY, MODE SENSE(10), START STOP
//     UNIT, PREVENT ALLOW MEDIUM REMOVAL, READ CAPACITY, READ(10/12), READ
//     TOC, GET CONFIGURATION, GET EVENT STATUS NOTIFICATION, SEEK, SET CD
//     SPEED, MECHANISM STATUS; a medium change reports NOT READY then UNIT
//     ATTENTION as QEMU does. The command layer is CDState (medium, tray,
//     sense and change state; Exec answers what the transport must move),
//     which devices/ahci shares for CD-ROM drives on AHCI ports.
//
// I/O: bus-master DMA runs on a block.Queue per drive (the ioreq thread
// only walks the PRD table and submits; the completion copies to or from
// guest memory in chunks of at most 128 KiB and raises the interrupt).
// PIO is synchronous on the ioreq thread: one data block is at most
// 16 sectors (8 KiB) for ATA or one 2 KiB CD sector, the guest polls BSY
// for it anyway, and the answer is then ready when the guest's next
// status read comes (QEMU shows BSY for the same span). FLUSH CACHE goes
// through the queue (an fdatasync may take long).
//
// Every PRD walk is bounded as QEMU bounds it (one 4 KiB page of
// descriptors) and every guest address goes through memory.Accessor; a
// descriptor pointing outside guest memory ends the command with an
// aborted-command error instead of QEMU's silent drop.
//
// Lifecycle: New, then Attach drives, Handler(i) gives the port ranges;
// Reset, Pause/Resume (devices.Pauser: no DMA or interrupt while
// paused), Snapshot/Restore, Close (drains the queues; the drives belong
// to the caller). Threading: safe for concurrent use; one lock per
// channel.
package ide

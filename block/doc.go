// Package block is godm's block layer: the disk images behind the emulated
// disk controllers. It knows nothing of any controller.
//
// A Drive is an opened image (raw file or block device, or qcow2 v2/v3 with
// its backing chain) with QEMU's cache modes, flush and FUA, discard and
// write-zeroes, and QEMU-compatible image locking. Controllers reach it
// through a Queue: a bounded number of Requests in flight, a fixed pool of
// worker goroutines, scatter-gather buffers ([][]byte, e.g. the segments of
// pinned guest memory regions) and a completion callback run without any
// lock of this package held.
//
// Every image is untrusted input: a hostile header, table or backing chain
// gets an error, never a crash, a hang or unbounded memory.
package block

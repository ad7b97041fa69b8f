// Package guest runs a real Linux guest for godm's end-to-end tests: Debian's
// kernel booted directly (PVH) by QEMU under TCG, with a busybox initramfs
// built here that runs a test script and powers off. Each device the guest
// should see from godm is one x-pci-proxy-dev on its own socketpair, served
// by package mpqemu. Guest RAM is a shared memfd so the device side can map
// it (SYNC_SYSMEM).
//
// The assets (vmlinux, static busybox) are prepared by scripts/guest-assets.sh,
// which the test command runs; GODM_GUEST_DIR names their directory.
//
// QEMU's QMP monitor is on a socketpair the harness reads: its events
// (SHUTDOWN with the cause, RESET) say why the guest stopped and how often
// it reset; Result carries them with the reaped process state. By default
// QEMU runs with -no-reboot (a guest reset ends the run); Config.Reboot
// lets the guest reboot in place, with RebootOnce's script telling the
// boots apart by a mark in CMOS RAM.
//
// A Run is bounded in time: QEMU is killed when the context ends or the
// timeout passes, and every goroutine it started is stopped before Run
// returns.
package guest

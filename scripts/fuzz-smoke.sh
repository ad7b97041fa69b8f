#!/usr/bin/env bash
# A short fuzz run of the guest-facing decoders (CI runs it before the
# tests; the committed seed corpora in testdata/fuzz already run as plain
# tests).
#
# The budget is a count of executions per target, not a duration: Go
# 1.26's coordinator can report a spurious "context deadline exceeded"
# failure when a -fuzztime duration expires while a worker is mid-call
# (golang/go#75804, fixed in Go 1.27). A count has no deadline to race;
# -timeout still bounds a target that hangs.
# Every target that decodes guest, image, QMP or stream input is listed.
# Left out on purpose: the simulator's FuzzDomctl, FuzzDMResponses and
# xenstored FuzzOps, and hyp/internal/golden FuzzParse (test machinery,
# not product input); hyp/dm FuzzIORange (our own encoding) and hyp/evtchn
# FuzzPending (the kernel's answers). They still run their seeds as tests.
#
# Usage: scripts/fuzz-smoke.sh [executions per target, default 20000]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20000}
targets="
./ioreq FuzzSharedPage
./ioreq FuzzBufferedPage
./ioreq FuzzRequest
./hyp/xenstore FuzzReadMsg
./hyp/xenstore FuzzClientReplies
./hyp/xensim FuzzDMOp
./devices FuzzSpace
./devices FuzzConfigSpace
./memory FuzzMapCache
./memory FuzzMapCacheStale
./memory FuzzRegionRing
./pci FuzzConfigWrites
./pci FuzzMSIX
./passthrough FuzzConfigWrites
./passthrough FuzzMSIXTrap
./devices/uart FuzzUART
./devices/uart FuzzBackend
./devices/i8042 FuzzController
./devices/i8042 FuzzScript
./devices/i440fx FuzzConfig
./devices/i440fx FuzzConfigScript
./devices/piix3 FuzzConfig
./devices/piix3 FuzzINTxWiredOR
./devices/piix3 FuzzScript
./devices/piix4pm FuzzPorts
./devices/piix4pm FuzzScript
./devices/xenplatform FuzzFixedPorts
./devices/xenplatform FuzzScript
./devices/uart/pciserial FuzzScript
./devices/ide FuzzTaskfile
./devices/ide FuzzPRD
./devices/ide FuzzATAPIPacket
./devices/ide FuzzRestore
./devices/ahci FuzzCommand
./devices/ahci FuzzRegisters
./devices/ahci FuzzRestore
./devices/ahci FuzzATAPI
./devices/virtio FuzzVirtqueue
./devices/virtio FuzzRegisters
./devices/virtioblk FuzzRequest
./devices/nvme FuzzCommand
./devices/nvme FuzzRestore
./devices/virtionet FuzzChains
./devices/uhci FuzzSchedule
./devices/uhci FuzzRestore
./devices/testdev FuzzScript
./devices/rtl8139 FuzzScript
./devices/rtl8139 FuzzRings
./devices/e1000 FuzzScript
./devices/e1000 FuzzRings
./internal/qemuopts FuzzParse
./internal/qemuopts FuzzParseSize
./internal/qmp FuzzDecoder
./internal/dmcontract FuzzCommands
./internal/mpqemu FuzzServe
./internal/board FuzzRestore
./internal/devstate FuzzRead
./display/vnc FuzzClientMessages
./display/vnc FuzzZRLE
./devices/vga FuzzDISPI
./devices/vga FuzzLegacy
./devices/vga FuzzCirrus
./netback FuzzPortFrames
./netback/usernet FuzzDHCP
./netback/usernet FuzzGuestFrame
./block FuzzQcowHeader
./block FuzzQcowTables
./block FuzzRefcount
"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "$targets" | while read -r pkg fn; do
	[ -n "$pkg" ] || continue
	start=$(date +%s)
	go test -run '^$' -fuzz "^${fn}\$" -fuzztime "${n}x" -timeout 5m "$pkg" > "$out" 2>&1 || { cat "$out"; exit 1; }
	echo "fuzz: $pkg $fn: ${n} execs in $(( $(date +%s) - start ))s"
done
echo "fuzz: $(echo "$targets" | grep -c Fuzz) passed, 0 failed"

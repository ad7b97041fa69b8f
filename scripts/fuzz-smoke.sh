#!/usr/bin/env bash
# A short fuzz run of the guest-facing decoders (CI runs it after the tests;
# the committed seed corpora in testdata/fuzz already run as plain tests).
# Usage: scripts/fuzz-smoke.sh [seconds per target, default 5]
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-5}
targets="
./ioreq FuzzSharedPage
./ioreq FuzzBufferedPage
./ioreq FuzzRequest
./hyp/xenstore FuzzReadMsg
./hyp/xensim FuzzDMOp
./devices FuzzSpace
./memory FuzzMapCache
./pci FuzzConfigWrites
./pci FuzzMSIX
./passthrough FuzzConfigWrites
./devices/uart FuzzUART
./devices/i8042 FuzzController
"
echo "$targets" | while read -r pkg fn; do
	[ -n "$pkg" ] || continue
	echo "fuzz: $pkg $fn (${t}s)"
	go test -run '^$' -fuzz "^${fn}\$" -fuzztime "${t}s" "$pkg" > /tmp/godm-fuzz.$$ 2>&1 || { cat /tmp/godm-fuzz.$$; rm -f /tmp/godm-fuzz.$$; exit 1; }
done
rm -f /tmp/godm-fuzz.$$
echo "fuzz: $(echo "$targets" | grep -c Fuzz) passed, 0 failed"

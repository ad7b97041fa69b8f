package xenbox

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// SaveRestoreFWPath is where dom0 finds the save/restore firmware.
const SaveRestoreFWPath = "/xenbox/fw/saverestore.elf"

// Values the save/restore firmware puts in device registers before it
// starts counting, and checks on every round: godm must carry them
// across xl save and xl restore (the guest's RAM and vCPU are Xen's).
const (
	srScratch = 0xa5       // COM1's scratch register (0x3ff)
	srPIRQ    = 0x0b0a0509 // PIIX3's PIRQ routes (00:01.0 0x60)
	srSector  = 2          // the disk sector holding the last tick's round
)

// SaveRestoreFirmwareSource is a firmware that sets device registers,
// then counts for ever: every round re-reads them and prints "FW SR
// BAD <round> <what> <value>" on a difference, and every 64 rounds reads
// the round of the previous tick back from its IDE disk, writes its own
// there and prints "FW SR TICK <round>". Saved and restored in the
// middle, its rounds go on from where they were (RAM and vCPU restored)
// and it reads no BAD (the devices restored, the disk image handed over
// to the restored or migrated domain's godm with its data).
func SaveRestoreFirmwareSource() string {
	var b strings.Builder
	b.WriteString(fwPrelude)
	fmt.Fprintf(&b, `
/* The disk (the primary IDE master, on legacy ports): sector %[3]d holds
 * the round of the last tick. A whole sector moves with one rep insw or
 * outsw (one ioreq through Xen). */
static u16 sec[256];
static u32 ide_cmd(u8 cmd) {
	out(0x1f6, 1, 0xe0); out(0x1f2, 1, 1); out(0x1f3, 1, %[3]d); out(0x1f4, 1, 0); out(0x1f5, 1, 0);
	out(0x1f7, 1, cmd);
	u32 st = 0x80;
	for (u32 i = 0; i < 10000000 && (st & 0x80); i++) st = in(0x1f7, 1);
	return st;
}
static u32 disk_read(u32 *v) {
	u32 st = ide_cmd(0x20);
	if ((st & 0x89) != 0x08) return st | 0x100;
	u16 *p = sec; u32 c = 256;
	__asm__ volatile("cld; rep insw" : "+D"(p), "+c"(c) : "d"(0x1f0) : "memory");
	*v = sec[0] | (u32)sec[1] << 16;
	return 0;
}
static u32 disk_write(u32 v) {
	u32 st = ide_cmd(0x30);
	if ((st & 0x89) != 0x08) return st | 0x100;
	sec[0] = v; sec[1] = v >> 16;
	const u16 *p = sec; u32 c = 256;
	__asm__ volatile("cld; rep outsw" : "+S"(p), "+c"(c) : "d"(0x1f0) : "memory");
	for (u32 i = 0; i < 10000000 && (in(0x1f7, 1) & 0x80); i++) ;
	return in(0x1f7, 1) & 0x89;
}
void fwmain(void) {
	puts_("\nFW SR START\n");
	out(0x3ff, 1, %#[1]x);
	out(0xcf8, 4, 0x80000000 | (1 << 11) | 0x60); out(0xcfc, 4, %#[2]xu);
	/* prev: the round the disk holds; pending: the one being written
	 * (a save may fall between the write and the update of prev). */
	u32 prev = 0, pending = 0, e;
	if ((e = disk_write(0)) != 0) { puts_("FW SR BAD 0 disk-write "); puthex(e); puts_("\n"); }
	for (u32 round = 1; ; round++) {
		u32 scr = in(0x3ff, 1);
		out(0xcf8, 4, 0x80000000 | (1 << 11) | 0x60);
		u32 pirq = in(0xcfc, 4);
		if (scr != %#[1]x) { puts_("FW SR BAD "); putdec(round); puts_(" scratch "); puthex(scr); puts_("\n"); }
		if (pirq != %#[2]xu) { puts_("FW SR BAD "); putdec(round); puts_(" pirq "); puthex(pirq); puts_("\n"); }
		if ((round & 63) == 0) {
			u32 v = 0;
			if ((e = disk_read(&v)) != 0) { puts_("FW SR BAD "); putdec(round); puts_(" disk-read "); puthex(e); puts_("\n"); }
			else if (v != prev && v != pending) { puts_("FW SR BAD "); putdec(round); puts_(" disk "); puthex(v); puts_("\n"); }
			pending = round;
			if ((e = disk_write(round)) != 0) { puts_("FW SR BAD "); putdec(round); puts_(" disk-write "); puthex(e); puts_("\n"); }
			prev = round;
			puts_("FW SR TICK "); putdec(round); puts_("\n");
		}
	}
}
`, srScratch, srPIRQ, srSector)
	b.WriteString(fwStart)
	return b.String()
}

// BuildSaveRestoreFirmware compiles SaveRestoreFirmwareSource into
// dir/name.elf.
func BuildSaveRestoreFirmware(dir, name string) (string, error) {
	return compileFirmware(dir, name, SaveRestoreFirmwareSource())
}

// SaveRestoreScenario is xl save and xl restore of an HVM guest whose
// device model is godm, launched by libxl (device_model_override): the
// firmware counts; after a few ticks xl save writes the domain (Xen's
// vCPU and RAM records, and godm's device state through QMP stop, add-fd
// and xen-save-devices-state) and destroys it; xl restore builds a new
// domain and a new godm with -incoming fd:N. The COM1 file of each half
// is relayed with "sr-before: " and "sr-after: " prefixes; the harness
// checks that the rounds go on and no BAD line appears.
func SaveRestoreScenario() Scenario {
	cfg := LibxlConfig("sr", SaveRestoreFWPath, `vga = "none"
serial = "file:/tmp/sr-com1.log"
device_model_args_hvm = [ "-drive", "file=/tmp/sr-disk.img,if=ide,index=0,media=disk,format=raw,cache=writeback" ]
`)
	return Scenario{Name: "save-restore", Script: fmt.Sprintf("cat > /tmp/sr.cfg <<'EOF'\n%sEOF\n", cfg) + `
fail() { echo "$1"; for l in /var/log/xen/qemu-dm-sr.log*; do echo "--- $l"; cat $l; done; xl list; exit 1; }
dd if=/dev/zero of=/tmp/sr-disk.img bs=1M count=1 2>/dev/null || fail "no disk image"
xl create /tmp/sr.cfg || fail "xl create failed"
d=$(xl domid sr)
echo "XENBOX-FACT domid=$d"
waitfor /tmp/sr-com1.log "FW SR TICK 128" 120 || fail "no second tick before the save"
xl save sr /tmp/sr.save || fail "xl save failed"
xl list sr >/dev/null 2>&1 && fail "the domain is still there after xl save"
godmgone 10 || fail "godm still runs after xl save"
sed 's/^/sr-before: /' /tmp/sr-com1.log
echo "XENBOX-FACT save_bytes=$(wc -c < /tmp/sr.save)"
: > /tmp/sr-com1.log
xl restore /tmp/sr.save || fail "xl restore failed"
d=$(xl domid sr)
echo "XENBOX-FACT restored_domid=$d"
waitfor /tmp/sr-com1.log "FW SR TICK" 120 || fail "no tick after the restore"
sleep 2
sed 's/^/sr-after: /' /tmp/sr-com1.log
# Live migration to this host (xl's -s "": the receiver is run here with
# sh): log-dirty on, rounds of RAM, then stop and the device state.
xl migrate -s "" sr "xl migrate-receive" || fail "xl migrate to localhost failed"
d=$(xl domid sr)
echo "XENBOX-FACT migrated_domid=$d"
waitfor /tmp/sr-com1.log "FW SR TICK" 120 || fail "no tick after the migration"
sleep 2
xl destroy sr || fail "xl destroy failed"
gone $d 30 || fail "domain $d still listed after xl destroy"
godmgone 10 || fail "godm still runs after xl destroy"
sed 's/^/sr-migrated: /' /tmp/sr-com1.log
for l in /var/log/xen/qemu-dm-sr*; do echo "--- $l"; cat $l; done
exit 0`}
}

var srLine = regexp.MustCompile(`\[save-restore\] (sr-before|sr-after|sr-migrated): FW SR (TICK|BAD) (\d+)(.*)$`)

// SRPhase is what the save/restore firmware printed in one phase
// (before the save, after the restore, after the migration): its first
// and last tick.
type SRPhase struct{ First, Last uint64 }

// SaveRestorePhases returns the ticks of each phase ("sr-before",
// "sr-after", "sr-migrated") and every BAD line, from a boot's console.
func SaveRestorePhases(lines []Line) (map[string]SRPhase, []string) {
	ph := map[string]SRPhase{}
	var bad []string
	for _, l := range lines {
		m := srLine.FindStringSubmatch(strings.TrimSpace(l.Text))
		if m == nil {
			continue
		}
		n, err := strconv.ParseUint(m[3], 10, 32)
		if err != nil {
			continue
		}
		if m[2] == "BAD" {
			bad = append(bad, m[1]+": round "+m[3]+m[4])
			continue
		}
		p, ok := ph[m[1]]
		if !ok || n < p.First {
			p.First = n
		}
		p.Last = max(p.Last, n)
		ph[m[1]] = p
	}
	return ph, bad
}

package xenbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"godm/internal/xenbox/srrec"
)

func TestDowntime(t *testing.T) {
	samples := []string{
		"P 100.00 lsr,3,-b----",
		"P 100.20 lsr,3,r-----",
		"P 100.40 lsr,3,---s--",
		"P 100.60 lsr--migratedaway,3,---s-- lsr--incoming,4,--p---",
		"P 100.80 lsr,4,--p---",
		"P 101.00 lsr,4,-b----",
		"P 101.20 lsr,4,r-----",
	}
	down, step, err := Downtime(samples)
	if err != nil || down < 0.59 || down > 0.61 || step < 0.19 || step > 0.21 {
		t.Errorf("Downtime = %v, %v, %v; want 0.6 s in steps of 0.2 s", down, step, err)
	}
	if _, _, err := Downtime(samples[:4]); err == nil {
		t.Error("no new domain running, yet a downtime")
	}
	if _, _, err := Downtime([]string{"P 1.0 ", "junk"}); err == nil {
		t.Error("no domain listed, yet a downtime")
	}
}

func TestParseLinuxSR(t *testing.T) {
	p := "[linux-sr] "
	lines := []Line{
		{Text: p + "lsr-com1: SR-START lba=2048 max=4096 net=10.0.2.2:9000"},
		{Text: p + "lsr-com1: " + srrec.SerialLine(1)},
		{Text: p + "lsr-com1: " + srrec.SerialLine(2) + "\r"},
		{Text: p + "lsr-com1: SR-BAD read-back 3 differs"},
		{Text: p + "lsr-com1: SR-VERIFY 64 bad=0"},
		{Text: p + "lsr-com1: SR-END n=2 disk=ab bad=1 acked=2 reconnects=1"},
		{Text: p + "lsr-net: " + srrec.NetLine(1)},
		{Text: p + "lsr-net: " + srrec.NetLine(1)},
		{Text: p + "lsr-net: " + srrec.NetLine(2)},
		{Text: p + "lsr-poll-mig: P 1.0 lsr,3,r-----"},
		{Text: p + "godm: device state saved (1234 bytes)"},
		{Text: p + "godm: device state restored from fd:3"},
		{Text: p + "godm: log-dirty on"},
		{Text: "[linux-sr-qemu] lsr-com1: " + srrec.SerialLine(9)},
	}
	r := ParseLinuxSR(lines, "linux-sr")
	if err := r.Serial.CheckExact(2); err != nil {
		t.Error(err)
	}
	if dups, err := r.Net.CheckResent(2); err != nil || dups != 1 {
		t.Errorf("net: %d, %v", dups, err)
	}
	if r.End["n"] != "2" || r.End["reconnects"] != "1" || len(r.GuestBad) != 1 || r.Verified != 1 {
		t.Errorf("end %v, bad %q, verified %d", r.End, r.GuestBad, r.Verified)
	}
	if len(r.Poll["mig"]) != 1 || r.Log["saved"] != 1 || r.Log["restored"] != 1 || r.Log["dirty"] != 1 {
		t.Errorf("poll %v, log %v", r.Poll, r.Log)
	}
}

// TestLinuxSRScenario: the guest's script names the record area and the
// sink; the configs differ only in the device model and COM1's file.
func TestLinuxSRScenario(t *testing.T) {
	sc := LinuxSRScript(4096)
	for _, want := range []string{"insmod /lib/modules/8139cp.ko", "/srload guest -disk /dev/sda -lba 4096 -max 4096", "net=10.0.2.2:9000"} {
		if !strings.Contains(sc, want) {
			t.Errorf("guest script lacks %q", want)
		}
	}
	g, q := LinuxSRScenario(LinuxDisk{DataLBA: 4096}, false), LinuxSRScenario(LinuxDisk{DataLBA: 4096}, true)
	if g.Name != "linux-sr" || q.Name != "linux-sr-qemu" {
		t.Errorf("names %q %q", g.Name, q.Name)
	}
	for _, want := range []string{"rtl8139,netdev=n0", "/tmp/lsr-com1-b.log", "xl -T -vvv migrate -C /tmp/$N-c.cfg", "skip=4096 count=$n", "touch /tmp/$N-stop"} {
		if !strings.Contains(g.Script, want) {
			t.Errorf("godm scenario lacks %q", want)
		}
	}
	if strings.Contains(q.Script, "rtl8139") || strings.Contains(q.Script, GodmPath) || !strings.Contains(q.Script, "xl destroy $N") {
		t.Error("the QEMU scenario names godm or a NIC, or does not destroy its guest")
	}
}

// TestBuildLinuxSRGuest builds the guest from the box's kernel package
// (skipped without the box's assets).
func TestBuildLinuxSRGuest(t *testing.T) {
	dir := os.Getenv(EnvDir)
	if dir == "" {
		t.Skip(EnvDir + " unset: no box assets to take the kernel package from")
	}
	a := Assets{Dir: dir}
	if a.KernelDeb() == "" {
		t.Skip("no kernel package in " + dir)
	}
	tmp := t.TempDir()
	srload, err := GoBinary(tmp, "srload", "godm/internal/xenbox/srload", false)
	if err != nil {
		t.Fatal(err)
	}
	d, err := BuildLinuxSRGuest(a, tmp, srload)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(d.Path) != "linux-sr.img" || d.DataLBA%2048 != 0 || st.Size() < int64(d.DataLBA+SRRecords)*512 {
		t.Errorf("image %s of %d bytes, record area at %d", d.Path, st.Size(), d.DataLBA)
	}
	t.Logf("linux-sr disk: %d bytes, record area at sector %d", st.Size(), d.DataLBA)
}

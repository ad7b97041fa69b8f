package xenbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"godm/internal/guest"
	"godm/internal/xenbox/srrec"
)

// The linux-sr scenario: a Linux guest (the linux-disk scenario's
// kernel, loader and disk layout) runs a workload across xl save + xl
// restore and a live xl migrate to localhost, writing to its disk, its
// serial port and its network all the while (srload, package srrec);
// what each channel carried must equal an uninterrupted run's.
const (
	LinuxSRDiskPath = "/xenbox/disk/linux-sr.img"
	// SRLoadPath is the workload's binary in dom0 (its sink role).
	SRLoadPath = "/xenbox/bin/srload"
	// UsernetPath is godm's user-mode network child, which godm looks
	// up beside itself (netback/userproc).
	UsernetPath = "/xenbox/bin/godm-usernet"
	// SRRecords is the record area's size in sectors: the most records
	// a run writes.
	SRRecords = 4096
	// SRSinkPort is the dom0 sink's port on its loopback, which the
	// guest reaches as 10.0.2.2 through the user-mode network's NAT.
	SRSinkPort = 9000
	// LinuxSRCmdline: nopv makes Linux a plain HVM guest (no PV
	// drivers, no callback vector), so libxl suspends it without its
	// cooperation (xc_domain_shutdown SHUTDOWN_suspend, as for the
	// save-restore firmware): the device model's state is captured
	// wherever the guest's drivers are, mid-request included, instead
	// of after Linux's own suspend quiesced and re-initialised them.
	LinuxSRCmdline = "console=ttyS0 nopv nokaslr loglevel=4"
	// srInitrdAddr puts the initramfs at 84 MiB, above Debian's
	// decompressed kernel (16 MiB + init_size ~63.6 MiB), so that the
	// guest fits in srMemMB: every page of it is copied at each save
	// and migration round, in the box's emulated CPU.
	srInitrdAddr = 0x5400000
	srMemMB      = 128
)

// LinuxNetModules are the guest's NIC driver for godm's rtl8139 (an
// 8139C+, which Linux's 8139cp drives), after LinuxModules.
var LinuxNetModules = []string{
	"kernel/drivers/net/mii.ko",
	"kernel/drivers/net/ethernet/realtek/8139cp.ko",
}

// LinuxSRScript is the guest's test: the modules, the disk, eth0 with a
// static address on the user-mode network (10.0.2.15, gateway 10.0.2.2)
// when the machine has a NIC, then srload guest on the record area.
func LinuxSRScript(lba uint32) string {
	var b strings.Builder
	b.WriteString("set -u\n")
	for _, m := range append(append([]string{}, LinuxModules...), LinuxNetModules...) {
		fmt.Fprintf(&b, "insmod /lib/modules/%s || { echo \"SR-BAD insmod %s\"; exit 1; }\n", filepath.Base(m), filepath.Base(m))
	}
	fmt.Fprintf(&b, `i=0
while [ ! -b /dev/sda ]; do
	i=$((i+1)); [ $i -gt 300 ] && { echo "SR-BAD no /dev/sda"; dmesg | tail -40; exit 1; }; sleep 0.1
done
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do i=$((i+1)); sleep 0.1; done
net=none
if [ -e /sys/class/net/eth0 ]; then
	ip link set lo up
	ip link set eth0 up
	ip addr add 10.0.2.15/24 dev eth0
	ip route add default via 10.0.2.2
	net=10.0.2.2:%d
fi
echo "SR-NETDEV $net"
/srload guest -disk /dev/sda -lba %d -max %d -net $net
`, SRSinkPort, lba, SRRecords)
	return b.String()
}

// BuildLinuxSRGuest makes the linux-sr scenario's disk in dir from the
// box's kernel package: the initramfs (busybox, the disk and NIC
// modules, srload, LinuxSRScript) and the image (buildLinuxDisk with
// LinuxSRCmdline, the initramfs at srInitrdAddr and a zeroed record area
// of SRRecords sectors). srload is the guest's workload binary (a static
// linux/amd64 build of internal/xenbox/srload).
func BuildLinuxSRGuest(a Assets, dir, srload string) (LinuxDisk, error) {
	deb := a.KernelDeb()
	if deb == "" {
		return LinuxDisk{}, fmt.Errorf("xenbox: no kernel package in %s/debs (run scripts/xenbox.sh)", a.Dir)
	}
	mods := append(append([]string{}, LinuxModules...), LinuxNetModules...)
	kdir := filepath.Join(dir, "linux-sr-kernel")
	if err := os.MkdirAll(kdir, 0o755); err != nil {
		return LinuxDisk{}, err
	}
	k, err := extractLinuxKernel(deb, kdir, mods)
	if err != nil {
		return LinuxDisk{}, err
	}
	bz, err := os.ReadFile(k.BzImage)
	if err != nil {
		return LinuxDisk{}, err
	}
	extra := map[string][]byte{}
	for name, p := range k.Modules {
		b, err := os.ReadFile(p)
		if err != nil {
			return LinuxDisk{}, err
		}
		extra["lib/modules/"+name] = b
	}
	if extra["srload"], err = os.ReadFile(srload); err != nil {
		return LinuxDisk{}, err
	}
	spec := diskSpec{name: "linux-sr.img", cmdline: LinuxSRCmdline, initrdAddr: srInitrdAddr, dataSectors: SRRecords}
	d := LinuxDisk{DataLBA: 1}
	for range 3 {
		rd, err := guest.BuildInitramfs(filepath.Join(a.Root(), "bin", "busybox"), LinuxSRScript(d.DataLBA), extra)
		if err != nil {
			return LinuxDisk{}, err
		}
		// The guest's RAM: the initramfs must end below it, with room
		// for the kernel to unpack it (a quarter of the RAM).
		if end := srInitrdAddr + len(rd); end > srMemMB<<20*3/4 {
			return LinuxDisk{}, fmt.Errorf("xenbox: the linux-sr initramfs ends at %#x, too close to the guest's %d MiB", end, srMemMB)
		}
		nd, err := buildLinuxDisk(dir, bz, rd, spec)
		if err != nil {
			return LinuxDisk{}, err
		}
		if nd.DataLBA == d.DataLBA {
			return nd, nil
		}
		d = nd
	}
	return LinuxDisk{}, errors.New("xenbox: the linux-sr disk's record area did not settle")
}

// linuxSRConfig is the guest's xl configuration: name, COM1's file, and
// the device model (godm with an IDE disk and an rtl8139 on user-mode
// networking, or QEMU-xen with the same disk and no NIC: Debian's
// qemu-system-xen is built without user-mode networking).
func linuxSRConfig(name, com1 string, godm bool) string {
	dm := fmt.Sprintf(`device_model_override = "%s"
device_model_args_hvm = [ "-drive", "file=%s,if=ide,index=0,media=disk,format=raw,cache=writeback",
  "-netdev", "user,id=n0", "-device", "rtl8139,netdev=n0" ]
`, GodmPath, LinuxSRDiskPath)
	if !godm {
		dm = fmt.Sprintf(`device_model_args_hvm = [ "-drive", "file=%s,if=ide,index=0,media=disk,format=raw,cache=writeback" ]
`, LinuxSRDiskPath)
	}
	return fmt.Sprintf(`name = "%s"
type = "hvm"
memory = %d
vcpus = 1
device_model_version = "qemu-xen"
%svga = "none"
vkb_device = 0
vnc = 0
sdl = 0
serial = "file:%s"
boot = "c"
on_poweroff = "destroy"
on_reboot = "preserve"
on_crash = "preserve"
`, name, srMemMB, dm, com1)
}

// LinuxSRScenario runs the linux-sr guest with godm (or, with qemu,
// QEMU-xen: scenario "linux-sr-qemu", the reference for the downtime)
// as its device model. dom0 starts the network sink, creates the guest
// and, once the workload runs (its 30th record on COM1), does xl save and
// xl restore, then (20 records later) xl migrate -s "" to localhost with
// the receiver run here: live, log-dirty on. Each of the three device
// models writes COM1 to its own file (xl restore's config argument and
// xl migrate -C: a new device model truncates its serial file), so the
// three files laid end to end are the guest's whole serial output. A
// background loop samples xl list across each event ("P <uptime>
// name,id,state ..."), from which the harness reads the downtime: the
// first sample with the guest paused or shut down (suspended) to the
// first with the new domain running. 20 records after the migration,
// godm's run has the sink answer STOP: the guest ends its workload,
// prints SR-END and powers off, and dom0 hashes the record area of the
// image; QEMU's run (no NIC, so no STOP) is destroyed instead. Relayed:
// COM1 ("lsr-com1: "), the sink's lines ("lsr-net: "), the samples
// ("lsr-poll-save: ", "lsr-poll-mig: "), the QMP commands from xl -vvv
// and the device models' logs.
func LinuxSRScenario(d LinuxDisk, qemu bool) Scenario {
	name, scen := "lsr", "linux-sr"
	if qemu {
		name, scen = "lsq", "linux-sr-qemu"
	}
	cfg := func(part string) string {
		return fmt.Sprintf("cat > /tmp/%s-%s.cfg <<'EOF'\n%sEOF\n", name, part, linuxSRConfig(name, "/tmp/"+name+"-com1-"+part+".log", !qemu))
	}
	end := `touch /tmp/$N-stop
# The guest ends its workload at the sink's STOP and powers off.
i=0
while xl list $N >/dev/null 2>&1; do
	i=$((i+1)); [ $i -gt 150 ] && fail "the guest did not power off within 300 s of STOP"; sleep 2
done
godmgone 10 || fail "godm still runs after the guest's power-off"
n=$(cat /tmp/$N-com1-*.log | tr -d '\r' | sed -n 's/^SR-END n=\([0-9]*\) .*/\1/p' | tail -n 1)
echo "XENBOX-FACT end_n=${n:-none}"
[ -n "$n" ] && echo "XENBOX-FACT disk_sum=$(dd if=` + LinuxSRDiskPath + ` bs=512 skip=` + fmt.Sprint(d.DataLBA) + ` count=$n 2>/dev/null | sha256sum | cut -d' ' -f1)"
`
	if qemu {
		end = `xl destroy $N || fail "xl destroy failed"
gone $N 30 || fail "the domain is still listed after xl destroy"
`
	}
	return Scenario{Name: scen, Script: cfg("a") + cfg("b") + cfg("c") + `N=` + name + `
fail() {
	echo "$1"
	for p in a b c; do [ -f /tmp/$N-com1-$p.log ] && tail -n 20 /tmp/$N-com1-$p.log | tr -d '\r' | sed "s/^/$N-com1-$p: /"; done
	for l in /var/log/xen/qemu-dm-$N*.log*; do echo "--- $l"; cat $l; done
	for x in /tmp/$N-*.xl; do [ -f $x ] && { echo "--- $x"; tail -n 30 $x; }; done
	xl list; xl destroy $N 2>/dev/null; kill $sink 2>/dev/null; touch /tmp/$N-pollstop; exit 1
}
now() { cut -d' ' -f1 /proc/uptime; }
lastseq() { tr -d '\r' < "$1" 2>/dev/null | sed -n 's/^SR-SER \([0-9]*\) .*/\1/p' | tail -n 1; }
firstseq() { tr -d '\r' < "$1" 2>/dev/null | sed -n 's/^SR-SER \([0-9]*\) .*/\1/p' | head -n 1; }
# waitseq FILE SEQ SECONDS: until the guest printed record SEQ there.
waitseq() {
	i=0
	while [ "$(lastseq $1)" -lt $2 ] 2>/dev/null || [ -z "$(lastseq $1)" ]; do
		i=$((i+1)); [ $i -gt $(($3/2)) ] && return 1
		grep -q 'SR-BAD\|GODM-GUEST-EXIT' $1 2>/dev/null && return 1
		# progress every 30 s: the file's size and its last line
		if [ $((i % 15)) = 0 ]; then
			echo "progress: $(wc -c < $1 2>/dev/null) bytes in $1 after $((i*2)) s: $(tail -n 1 $1 2>/dev/null | tr -d '\r' | cut -c1-60)"
			# dom0's busiest processes (the box's CPU is the scarce thing)
			[ $((i % 60)) = 0 ] && top -b -n 1 | sed -n '1,12s/^/top: /p'
		fi
		sleep 2
	done
	return 0
}
# poll NAME: sample xl list until /tmp/$N-pollstop exists.
poll() {
	rm -f /tmp/$N-pollstop
	( while [ ! -e /tmp/$N-pollstop ]; do
		echo "P $(now) $(xl list 2>/dev/null | awk -v n=$N 'index($1, n) == 1 {print $1 "," $2 "," $5}' | tr '\n' ' ')"
		sleep 0.05
	done ) > /tmp/$N-poll-$1.log 2>&1 &
}
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up || fail "cannot bring up lo"
mkdir -p /usr/share/qemu/keymaps
[ -f /usr/share/qemu/keymaps/en-us ] || : > /usr/share/qemu/keymaps/en-us
rm -f /tmp/$N-stop /tmp/$N-net.log /tmp/$N-com1-*.log
` + SRLoadPath + ` sink -listen 127.0.0.1:` + fmt.Sprint(SRSinkPort) + ` -out /tmp/$N-net.log -stop /tmp/$N-stop > /tmp/$N-sink.out 2>&1 &
sink=$!
xl create -p /tmp/$N-a.cfg || fail "xl create -p failed"
d=$(xl domid $N)
echo "XENBOX-FACT domid=$d"
xl unpause $d || fail "xl unpause failed"
t0=$(now)
waitseq /tmp/$N-com1-a.log 30 1500 || fail "the workload did not reach record 30 within 1500 s"
echo "XENBOX-FACT running_after=$(awk "BEGIN{print $(now)-$t0}")s"
poll save
t1=$(now)
xl -T -vvv save $N /tmp/$N.save > /tmp/$N-save.xl 2>&1 || fail "xl save failed"
t2=$(now)
echo "XENBOX-FACT save_bytes=$(wc -c < /tmp/$N.save)"
xl -T -vvv restore /tmp/$N-b.cfg /tmp/$N.save > /tmp/$N-restore.xl 2>&1 || fail "xl restore failed"
t3=$(now)
touch /tmp/$N-pollstop
rm -f /tmp/$N.save
echo "XENBOX-FACT restored_domid=$(xl domid $N)"
echo "XENBOX-FACT xl_save=$(awk "BEGIN{print $t2-$t1}")s xl_restore=$(awk "BEGIN{print $t3-$t2}")s"
a=$(lastseq /tmp/$N-com1-a.log)
waitseq /tmp/$N-com1-b.log $((a+20)) 600 || fail "the restored workload did not reach record $((a+20)) within 600 s"
sleep 1
poll mig
t4=$(now)
xl -T -vvv migrate -C /tmp/$N-c.cfg -s "" $N "xl -T -vvv migrate-receive" > /tmp/$N-mig.xl 2>&1 || fail "xl migrate to localhost failed"
t5=$(now)
touch /tmp/$N-pollstop
echo "XENBOX-FACT migrated_domid=$(xl domid $N) xl_migrate=$(awk "BEGIN{print $t5-$t4}")s"
b=$(lastseq /tmp/$N-com1-b.log)
waitseq /tmp/$N-com1-c.log $((b+20)) 600 || fail "the migrated workload did not reach record $((b+20)) within 600 s"
` + end + `kill $sink
echo "XENBOX-FACT a_last=$a b_first=$(firstseq /tmp/$N-com1-b.log) b_last=$b c_first=$(firstseq /tmp/$N-com1-c.log)"
cat /tmp/$N-com1-a.log /tmp/$N-com1-b.log /tmp/$N-com1-c.log | tr -d '\r' | sed 's/^/lsr-com1: /'
[ -f /tmp/$N-net.log ] && sed 's/^/lsr-net: /' /tmp/$N-net.log
sed 's/^/lsr-poll-save: /' /tmp/$N-poll-save.log
sed 's/^/lsr-poll-mig: /' /tmp/$N-poll-mig.log
for x in save restore mig; do grep -h '"execute"' /tmp/$N-$x.xl | sed "s/^/lsr-qmp-$x: /"; done
for l in /var/log/xen/qemu-dm-$N*.log*; do echo "--- $l"; cat $l; done
exit 0`}
}

// SRRun is what the harness reads of a linux-sr run from the console.
type SRRun struct {
	Serial, Net srrec.Stream
	// SerialTail is the last COM1 line with the serial tag, which a
	// destroyed guest may have left half-written.
	SerialTail string
	End        map[string]string // SR-END's fields
	GuestBad   []string          // SR-BAD lines
	Verified   int               // SR-VERIFY lines
	Poll       map[string][]string
	// QMP are libxl's stop, cont, xen-save-devices-state and
	// xen-set-global-dirty-log commands, as xl -T -vvv logged them
	// (with the second they were sent in).
	QMP []string
	// Log counts godm's log lines: "saved", "restored", "dirty".
	Log map[string]int
}

// ParseLinuxSR reads scenario scen's relayed lines.
func ParseLinuxSR(lines []Line, scen string) SRRun {
	r := SRRun{End: map[string]string{}, Poll: map[string][]string{}, Log: map[string]int{}}
	p := "[" + scen + "] "
	for _, l := range lines {
		s, ok := strings.CutPrefix(strings.TrimRight(l.Text, "\r\n"), p)
		if !ok {
			continue
		}
		switch {
		case strings.HasPrefix(s, "lsr-com1: "):
			c := strings.TrimPrefix(s, "lsr-com1: ")
			r.Serial.Add(c, srrec.SerialTag)
			if strings.HasPrefix(c, srrec.SerialTag) {
				r.SerialTail = c
			}
			switch {
			case strings.HasPrefix(c, srrec.EndTag+" "):
				for _, f := range strings.Fields(c)[1:] {
					if k, v, ok := strings.Cut(f, "="); ok {
						r.End[k] = v
					}
				}
			case strings.HasPrefix(c, srrec.BadTag):
				r.GuestBad = append(r.GuestBad, c)
			case strings.HasPrefix(c, "SR-VERIFY "):
				r.Verified++
			}
		case strings.HasPrefix(s, "lsr-net: "):
			r.Net.Add(strings.TrimPrefix(s, "lsr-net: "), srrec.NetTag)
		case strings.HasPrefix(s, "lsr-qmp-"):
			for _, c := range []string{`"stop"`, `"cont"`, `"xen-save-devices-state"`, `"xen-set-global-dirty-log"`} {
				if strings.Contains(s, c) {
					r.QMP = append(r.QMP, s)
					break
				}
			}
		case strings.HasPrefix(s, "lsr-poll-"):
			ev, rest, _ := strings.Cut(strings.TrimPrefix(s, "lsr-poll-"), ": ")
			r.Poll[ev] = append(r.Poll[ev], rest)
		case strings.HasPrefix(s, "godm: device state saved ("):
			r.Log["saved"]++
		case strings.HasPrefix(s, "godm: device state restored from "):
			r.Log["restored"]++
		case s == "godm: log-dirty on":
			r.Log["dirty"]++
		}
	}
	return r
}

// Downtime reads the samples of one event ("P <uptime> name,id,state
// ..."): the domain that the first sample lists is the old one; the
// downtime runs from the first sample where it is paused or shut down
// (xl list's p or s) to the first where another domain of the name runs
// (neither). It returns the downtime and the sampling interval's median
// (the downtime's resolution), in seconds.
func Downtime(samples []string) (down, step float64, err error) {
	type dom struct{ id, state string }
	var times []float64
	var doms [][]dom
	for _, s := range samples {
		f := strings.Fields(s)
		if len(f) < 2 || f[0] != "P" {
			continue
		}
		t, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		var ds []dom
		for _, x := range f[2:] {
			p := strings.Split(x, ",")
			if len(p) == 3 {
				ds = append(ds, dom{p[1], p[2]})
			}
		}
		times = append(times, t)
		doms = append(doms, ds)
	}
	old := ""
	for _, ds := range doms {
		if len(ds) > 0 {
			old = ds[0].id
			break
		}
	}
	if old == "" {
		return 0, 0, errors.New("no sample lists the domain")
	}
	stopped := func(st string) bool { return strings.ContainsAny(st, "ps") }
	t0, t1 := -1.0, -1.0
	for i, ds := range doms {
		for _, d := range ds {
			switch {
			case t0 < 0 && d.id == old && stopped(d.state):
				t0 = times[i]
			case t0 >= 0 && t1 < 0 && d.id != old && !stopped(d.state):
				t1 = times[i]
			}
		}
	}
	if t0 < 0 || t1 < 0 {
		return 0, 0, fmt.Errorf("no stop (%v) or no new domain running (%v) in %d samples", t0 >= 0, t1 >= 0, len(times))
	}
	var steps []float64
	for i := 1; i < len(times); i++ {
		steps = append(steps, times[i]-times[i-1])
	}
	sort.Float64s(steps)
	if len(steps) > 0 {
		step = steps[len(steps)/2]
	}
	return t1 - t0, step, nil
}

package dmcontract

import (
	"errors"
	"godm/display/vnc"
	"reflect"
	"strings"
	"testing"
	"time"
)

// debian4177 is the argv Debian's xl 4.17.7 wrote for a default HVM
// config with device_model_override (issue 12, measured in the box).
const debian4177 = `-xen-domid 7 -no-shutdown -chardev socket,id=libxl-cmd,path=/var/run/xen/qmp-libxl-7,server=on,wait=off ` +
	`-mon chardev=libxl-cmd,mode=control -chardev socket,id=libxenstat-cmd,path=/var/run/xen/qmp-libxenstat-7,server=on,wait=off ` +
	`-mon chardev=libxenstat-cmd,mode=control -nodefaults -no-user-config -name godmtest -vnc none ` +
	`-display none -serial pty -device cirrus-vga,vgamem_mb=8 -boot order=cda -net none ` +
	`-machine xenfv,suppress-vmdesc=on -m 56`

// served is the same with vga="none" (no -device cirrus-vga).
var served = strings.Replace(debian4177, "-device cirrus-vga,vgamem_mb=8 ", "", 1)

// restricted is the dm_restrict=1 form (XEN-FACTS §2.3, §2.9): the
// pre-opened QMP fd and -S, -xen-domid-restrict, -chroot and -runas with
// libxl's uid:gid of the per-domain user.
var restricted = strings.Replace(served,
	"-chardev socket,id=libxl-cmd,path=/var/run/xen/qmp-libxl-7,server=on,wait=off",
	"-chardev socket,id=libxl-cmd,fd=5,server=on,wait=off -S", 1) +
	" -xen-domid-restrict -chroot /var/run/xen/qemu-root-7 -runas 131079:0"

const probe = "-S -no-user-config -nodefaults -nographic -machine none,accel=xen -chardev socket,id=libxl-cmd,fd=4,server=on,wait=off -mon chardev=libxl-cmd,mode=control"

func env7(k string) string {
	if k == "XEN_DOMAIN_ID" {
		return "7"
	}
	return ""
}

func TestParseServed(t *testing.T) {
	mons := []Monitor{
		{ID: "libxl-cmd", Path: "/var/run/xen/qmp-libxl-7", FD: -1},
		{ID: "libxenstat-cmd", Path: "/var/run/xen/qmp-libxenstat-7", FD: -1},
	}
	for _, tc := range []struct {
		name, argv string
		want       Config
	}{
		{"default vga=none", served, Config{Dom: 7, Name: "godmtest", Monitors: mons, MemMiB: 56, Serial: []string{"pty"}}},
		{"default config: the Cirrus VGA", debian4177, Config{Dom: 7, Name: "godmtest", Monitors: mons, MemMiB: 56, Serial: []string{"pty"},
			VGA: "cirrus-vga", VGAMemMB: 8}},
		{"cirrus-vga with QEMU's default vgamem_mb", strings.Replace(debian4177, "cirrus-vga,vgamem_mb=8", "cirrus-vga", 1),
			Config{Dom: 7, Name: "godmtest", Monitors: mons, MemMiB: 56, Serial: []string{"pty"}, VGA: "cirrus-vga", VGAMemMB: 4}},
		{"dm_restrict", restricted, Config{Dom: 7, Name: "godmtest", Prelaunch: true, Restrict: true,
			Chroot: "/var/run/xen/qemu-root-7", User: "131079:0",
			Monitors: []Monitor{{ID: "libxl-cmd", FD: 5}, mons[1]}, MemMiB: 56, Serial: []string{"pty"}}},
		{"run-with (QEMU 9.1+ libxl)", strings.Replace(restricted, "-chroot /var/run/xen/qemu-root-7 -runas 131079:0",
			"-run-with chroot=/var/run/xen/qemu-root-7 -run-with user=131079:0", 1),
			Config{Dom: 7, Name: "godmtest", Prelaunch: true, Restrict: true,
				Chroot: "/var/run/xen/qemu-root-7", User: "131079:0",
				Monitors: []Monitor{{ID: "libxl-cmd", FD: 5}, mons[1]}, MemMiB: 56, Serial: []string{"pty"}}},
		{"device_model_args_hvm -godm-sandbox log", served + " -godm-sandbox log", Config{Dom: 7, Name: "godmtest", Monitors: mons, MemMiB: 56, Serial: []string{"pty"}, Sandbox: "log"}},
		{"device_model_args_hvm -godm-spin 400us", served + " -godm-spin 400us", Config{Dom: 7, Name: "godmtest", Monitors: mons, MemMiB: 56, Serial: []string{"pty"}, Spin: 400 * time.Microsecond}},
		{"device_model_args_hvm -godm-spin off", served + " -godm-spin off", Config{Dom: 7, Name: "godmtest", Monitors: mons, MemMiB: 56, Serial: []string{"pty"}, Spin: -1}},
		{"probe", probe, Config{Dom: 0, Probe: true, Prelaunch: true, Monitors: []Monitor{{ID: "libxl-cmd", FD: 4}}}},
		{"vif=[ 'mac=00:16:3e:00:00:01,bridge=xenbr0' ] (rtl8139 on a tap) and a user netdev",
			strings.Replace(served, "-net none", "-device rtl8139,id=nic0,netdev=net0,mac=00:16:3e:00:00:01 "+
				"-netdev type=tap,id=net0,ifname=vif7.0-emu,br=xenbr0,script=no,downscript=no "+
				"-device rtl8139,id=nic1,netdev=net1,mac=00:16:3e:00:00:02 -netdev user,id=net1,hostfwd=tcp:127.0.0.1:2222-:22", 1),
			Config{Dom: 7, Name: "godmtest", Monitors: mons, MemMiB: 56, Serial: []string{"pty"},
				NICs: []NIC{{Model: "rtl8139", ID: "nic0", Netdev: "net0", MAC: "00:16:3e:00:00:01"}, {Model: "rtl8139", ID: "nic1", Netdev: "net1", MAC: "00:16:3e:00:00:02"}},
				Netdevs: []Netdev{{ID: "net0", Type: "tap", Arg: "type=tap,id=net0,ifname=vif7.0-emu,br=xenbr0,script=no,downscript=no"},
					{ID: "net1", Type: "user", Arg: "user,id=net1,hostfwd=tcp:127.0.0.1:2222-:22"}}}},
		{"vif=[ 'mac=00:16:3e:00:00:01,bridge=xenbr0,model=e1000' ] (e1000 on a tap) beside an rtl8139",
			strings.Replace(served, "-net none", "-device e1000,id=nic0,netdev=net0,mac=00:16:3e:00:00:01 "+
				"-netdev type=tap,id=net0,ifname=vif7.0-emu,br=xenbr0,script=no,downscript=no "+
				"-device rtl8139,id=nic1,netdev=net1,mac=00:16:3e:00:00:02 -netdev user,id=net1", 1),
			Config{Dom: 7, Name: "godmtest", Monitors: mons, MemMiB: 56, Serial: []string{"pty"},
				NICs: []NIC{{Model: "e1000", ID: "nic0", Netdev: "net0", MAC: "00:16:3e:00:00:01"}, {Model: "rtl8139", ID: "nic1", Netdev: "net1", MAC: "00:16:3e:00:00:02"}},
				Netdevs: []Netdev{{ID: "net0", Type: "tap", Arg: "type=tap,id=net0,ifname=vif7.0-emu,br=xenbr0,script=no,downscript=no"},
					{ID: "net1", Type: "user", Arg: "user,id=net1"}}}},
		{"vif=[ 'mac=00:16:3e:00:00:01,bridge=xenbr0,model=virtio-net-pci' ] (virtio-net on a tap)",
			strings.Replace(served, "-net none", "-device virtio-net-pci,id=nic0,netdev=net0,mac=00:16:3e:00:00:01 "+
				"-netdev type=tap,id=net0,ifname=vif7.0-emu,br=xenbr0,script=no,downscript=no", 1),
			Config{Dom: 7, Name: "godmtest", Monitors: mons, MemMiB: 56, Serial: []string{"pty"},
				NICs:    []NIC{{Model: "virtio-net-pci", ID: "nic0", Netdev: "net0", MAC: "00:16:3e:00:00:01"}},
				Netdevs: []Netdev{{ID: "net0", Type: "tap", Arg: "type=tap,id=net0,ifname=vif7.0-emu,br=xenbr0,script=no,downscript=no"}}}},
		{"xen_platform_pci=0, mmio_hole, smp, two serials, none",
			strings.Replace(served, "-machine xenfv,suppress-vmdesc=on -m 56",
				"-smp 2,maxcpus=4 -serial file:/var/log/xen/com2.log -serial none -serial unix:/run/s4,server=on,wait=off -machine pc,accel=xen,suppress-vmdesc=on,max-ram-below-4g=3221225472 -m 1024", 1),
			Config{Dom: 7, Name: "godmtest", Monitors: mons, MemMiB: 1024, VCPUs: 4, OnlineVCPUs: 2, NoPlatform: true, Below4G: 3 << 30,
				Serial: []string{"pty", "file:/var/log/xen/com2.log", "unix:/run/s4"}}},
		{"IDE disk, qcow2 disk, CD-ROMs (libxl 4.15+ and older forms)", served +
			" -drive file=/var/lib/xen/d.img,if=ide,index=0,media=disk,format=raw,cache=writeback" +
			" -drive file=/var/lib/xen/e.qcow2,if=ide,index=1,media=disk,format=qcow2,cache=writeback" +
			" -drive if=none,readonly=on,id=ide-5632,file=/srv/x.iso,format=raw -device ide-cd,id=ide-5632,drive=ide-5632,bus=ide.1,unit=0" +
			" -drive if=ide,index=3,readonly=on,media=cdrom,id=ide-5696",
			Config{Dom: 7, Name: "godmtest", Monitors: mons, MemMiB: 56, Serial: []string{"pty"},
				Drives: []Drive{
					{File: "/var/lib/xen/d.img", Format: "raw", Cache: "writeback", Media: "disk", Index: 0},
					{File: "/var/lib/xen/e.qcow2", Format: "qcow2", Cache: "writeback", Media: "disk", Index: 1},
					{ID: "ide-5632", File: "/srv/x.iso", Format: "raw", ReadOnly: true, Cache: "writeback", Media: "cdrom", Index: -1},
					{ID: "ide-5696", ReadOnly: true, Cache: "writeback", Media: "cdrom", Index: 3},
				},
				IDEDevices: []IDEDevice{{Driver: "ide-cd", ID: "ide-5632", Drive: "ide-5632", Bus: 1}}}},
		{"hdtype=\"ahci\": two AHCI disks, a CD-ROM on IDE (libxl_dm.c)", served +
			" -device ahci,id=ahci0" +
			" -drive file=/var/lib/xen/d.img,if=none,id=ahcidisk-0,format=raw,cache=writeback -device ide-hd,bus=ahci0.0,unit=0,drive=ahcidisk-0" +
			" -drive file=/var/lib/xen/e.qcow2,if=none,id=ahcidisk-1,format=qcow2,cache=writeback -device ide-hd,bus=ahci0.1,unit=0,drive=ahcidisk-1" +
			" -drive if=ide,index=2,readonly=on,media=cdrom,id=ide-5664",
			Config{Dom: 7, Name: "godmtest", Monitors: mons, MemMiB: 56, Serial: []string{"pty"},
				AHCI: []AHCIController{{ID: "ahci0"}},
				Drives: []Drive{
					{ID: "ahcidisk-0", File: "/var/lib/xen/d.img", Format: "raw", Cache: "writeback", Media: "disk", Index: -1},
					{ID: "ahcidisk-1", File: "/var/lib/xen/e.qcow2", Format: "qcow2", Cache: "writeback", Media: "disk", Index: -1},
					{ID: "ide-5664", ReadOnly: true, Cache: "writeback", Media: "cdrom", Index: 2},
				},
				IDEDevices: []IDEDevice{{Driver: "ide-hd", Drive: "ahcidisk-0", AHCI: "ahci0"},
					{Driver: "ide-hd", Drive: "ahcidisk-1", Bus: 1, AHCI: "ahci0"}}}},
		{"nvme and virtio-blk-pci on if=none drives (an admin's device_model_args_hvm)", served +
			" -drive file=/var/lib/xen/n.qcow2,if=none,id=nv0,format=qcow2,cache=writeback,discard=unmap -device nvme,id=n0,drive=nv0,serial=GODM0001" +
			" -drive file=/var/lib/xen/v.img,if=none,id=vb0,format=raw -device virtio-blk,drive=vb0,addr=0x9.0,serial=vb",
			Config{Dom: 7, Name: "godmtest", Monitors: mons, MemMiB: 56, Serial: []string{"pty"},
				Drives: []Drive{
					{ID: "nv0", File: "/var/lib/xen/n.qcow2", Format: "qcow2", Cache: "writeback", Media: "disk", Index: -1, Discard: true},
					{ID: "vb0", File: "/var/lib/xen/v.img", Format: "raw", Cache: "writeback", Media: "disk", Index: -1},
				},
				PCIDisks: []PCIDisk{{Driver: "nvme", ID: "n0", Drive: "nv0", Serial: "GODM0001"},
					{Driver: "virtio-blk-pci", Drive: "vb0", Serial: "vb", Addr: "9"}}}},
		{"a CD-ROM on an AHCI port (ATAPI over AHCI; an admin's device_model_args_hvm), and an empty one", served +
			" -device ahci,id=ahci0" +
			" -drive if=none,readonly=on,id=cd0,file=/srv/x.iso,format=raw -device ide-cd,id=cd0,bus=ahci0.2,unit=0,drive=cd0" +
			" -device ide-cd,id=cd1,bus=ahci0.5",
			Config{Dom: 7, Name: "godmtest", Monitors: mons, MemMiB: 56, Serial: []string{"pty"},
				AHCI: []AHCIController{{ID: "ahci0"}},
				Drives: []Drive{
					{ID: "cd0", File: "/srv/x.iso", Format: "raw", ReadOnly: true, Cache: "writeback", Media: "cdrom", Index: -1},
				},
				IDEDevices: []IDEDevice{{Driver: "ide-cd", ID: "cd0", Drive: "cd0", Bus: 2, AHCI: "ahci0"},
					{Driver: "ide-cd", ID: "cd1", Bus: 5, AHCI: "ahci0"}}}},
		{"stdvga, vnc with password, keymap (libxl vga=\"stdvga\" vnc=1 vncpasswd=... keymap=\"en-us\")",
			strings.Replace(strings.Replace(debian4177, "-device cirrus-vga,vgamem_mb=8", "-device VGA,vgamem_mb=16", 1),
				"-vnc none", "-vnc 127.0.0.1:3,password=on,to=99 -k en-us", 1),
			Config{Dom: 7, Name: "godmtest", Monitors: mons, MemMiB: 56, Serial: []string{"pty"}, VGA: "VGA", VGAMemMB: 16,
				VNC: vnc.Options{Enabled: true, Host: "127.0.0.1", Display: 3, To: 99, Password: true}, Keymap: "en-us"}},
		{"stdvga, vnc on every address, no to=",
			strings.Replace(strings.Replace(debian4177, "-device cirrus-vga,vgamem_mb=8", "-device VGA,vgamem_mb=8", 1),
				"-vnc none", "-vnc :0", 1),
			Config{Dom: 7, Name: "godmtest", Monitors: mons, MemMiB: 56, Serial: []string{"pty"}, VGA: "VGA", VGAMemMB: 8,
				VNC: vnc.Options{Enabled: true, Display: 0, To: 0}}},
		{"usb=1 usbdevice=\"tablet\" (libxl: -usb -usbdevice tablet)", served + " -usb -usbdevice tablet",
			Config{Dom: 7, Name: "godmtest", Monitors: mons, MemMiB: 56, Serial: []string{"pty"},
				USBController: true, USB: []USBDevice{{Driver: "usb-tablet", Props: map[string]string{}}}}},
		{"usbdevice=[\"tablet\"] without usb=1: -usbdevice implies the controller", served + " -usbdevice tablet",
			Config{Dom: 7, Name: "godmtest", Monitors: mons, MemMiB: 56, Serial: []string{"pty"},
				USBController: true, USB: []USBDevice{{Driver: "usb-tablet", Props: map[string]string{}}}}},
		{"usbversion=1 (libxl: -device piix3-usb-uhci,id=usb) and a tablet on it in device_model_args",
			served + " -device piix3-usb-uhci,id=usb -device usb-tablet,id=tab,bus=usb.0,port=2",
			Config{Dom: 7, Name: "godmtest", Monitors: mons, MemMiB: 56, Serial: []string{"pty"},
				USB: []USBDevice{{Driver: "piix3-usb-uhci", Props: map[string]string{"id": "usb"}},
					{Driver: "usb-tablet", Props: map[string]string{"id": "tab", "bus": "usb.0", "port": "2"}}}}},
		{"old-style flags, test device", "-xen-domid 3 -chardev socket,id=m,path=/tmp/q,server,nowait -mon chardev=m,mode=control -machine xenfv -m 128 -vga none -nographic -parallel none -device godm-testdev,addr=0x5",
			Config{Dom: 3, Monitors: []Monitor{{ID: "m", Path: "/tmp/q", FD: -1}}, MemMiB: 128, TestSlots: []int{5}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := env7
			if tc.want.Dom != 7 {
				env = func(string) string { return "" }
			}
			got, err := Parse(strings.Fields(tc.argv), env)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("Parse =\n%+v\nwant\n%+v", *got, tc.want)
			}
		})
	}
}

func TestParseRefused(t *testing.T) {
	// Each line is a change to the served argv and the one-line error.
	tail := func(extra string) string { return served + " " + extra }
	for _, tc := range []struct{ argv, want string }{
		{tail("-device cirrus-vga,vgamem_mb=32"), `-device cirrus-vga,vgamem_mb=32: vgamem_mb=32: the Cirrus VGA takes 4, 8 or 16`},
		{debian4177 + " -device VGA", `-device VGA: a second VGA`},
		{tail("-device VGA,vgamem_mb=16 -device VGA,vgamem_mb=16"), `-device VGA,vgamem_mb=16: a second VGA`},
		{tail("-device VGA,vgamem_mb=0"), `vgamem_mb=0: want 1..512`},
		{tail("-device VGA,vgamem_mb=16,foo=1"), `foo`},
		{tail("-device qxl-vga,vram_size_mb=64,ram_size_mb=64"), `godm emulates only the standard VGA and the Cirrus: set vga="stdvga" or "cirrus"`},
		{strings.Replace(served, "-vnc none", "-vnc 127.0.0.1:0,to=99,tls-creds=x", 1), `tls-creds`},
		{strings.Replace(served, "-vnc none", "-vnc 127.0.0.1", 1), `-vnc 127.0.0.1: want HOST:DISPLAY or none`},
		{strings.Replace(served, "-vnc none", "-vnc none -vnc :1", 1), `-vnc given twice`},
		{strings.Replace(served, "-display none", "-display sdl", 1), `-display sdl: no local display (godm shows the screen over VNC only): set sdl=0`},
		{tail("-k de"), `-k de: keymap "de" is not supported`},
		{tail("-spice port=6000,tls-port=0,addr=127.0.0.1,disable-ticketing=on"), `spice is not supported: remove spice=1`},
		{tail("-device virtio-serial -chardev spicevmc,id=vdagent,name=vdagent"), `spice is not supported`},
		{tail("-usb -usbdevice mouse"), `-usbdevice mouse: godm serves usbdevice="tablet" only`},
		{tail("-usb -usbdevice tablet -usbdevice host:1234:5678"), `-usbdevice host:1234:5678: godm serves usbdevice="tablet" only`},
		{tail("-device piix3-usb-uhci,id=usb,masterbus=x"), `masterbus`},
		{tail("-device usb-tablet,bus=usb.0,foo=1"), `foo`},
		{tail("-device ich9-usb-ehci1,id=usb,addr=0x1d.0x7,multifunction=on"), `-device ich9-usb-ehci1,id=usb,addr=0x1d.0x7,multifunction=on: godm serves the UHCI controller (usb=1 or usbversion=1) with usbdevice="tablet" only`},
		{tail("-device nec-usb-xhci,id=usb"), `usbversion=2/3`},
		{tail("-device usb-mouse"), `-device usb-mouse: godm serves the UHCI controller`},
		{tail("-device intel-hda -device hda-duplex"), `-device intel-hda: no sound device yet: remove soundhw=`},
		{tail("-no-acpi"), `-no-acpi: godm's machine always has the PIIX4 ACPI device: remove acpi=0`},
		{strings.Replace(served, "-net none", "-device e1000e,id=nic0,netdev=net0,mac=00:16:3e:00:00:01 -netdev type=tap,id=net0,ifname=vif7.0-emu,br=xenbr0,script=no,downscript=no", 1),
			`-device e1000e,id=nic0,netdev=net0,mac=00:16:3e:00:00:01: emulated NIC model not served (godm has rtl8139, e1000 and virtio-net-pci): set model=rtl8139`},
		{tail("-device vmxnet3,id=nic0,netdev=net0 -netdev type=tap,id=net0,ifname=vif7.0-emu"), `set model=rtl8139 (libxl's default), model=e1000 or model=virtio-net-pci`},
		{tail("-device virtio-net-pci,id=nic0,netdev=net0,mac=00:16:3e:00:00:01,mq=on -netdev user,id=net0"), `mq`},
		{tail("-device e1000,id=nic0,netdev=net0,mac=00:16:3e:00:00:01"), `-device e1000,id=nic0: netdev 'net0' is not on the command line`},
		{tail("-netdev user,id=net0 -device e1000,id=nic0,netdev=net0 -device rtl8139,id=nic1,netdev=net0"), `netdev 'net0' is in use by another NIC`},
		{tail("-device rtl8139,id=nic0,netdev=net0,mac=00:16:3e:00:00:01"), `-device rtl8139,id=nic0: netdev 'net0' is not on the command line`},
		{tail("-device rtl8139,id=nic0,netdev=net0,mac=01:16:3e:00:00:01 -netdev user,id=net0"), `mac='01:16:3e:00:00:01' is a multicast address`},
		{tail("-device rtl8139,id=nic0,netdev=net0,mac=00:16:3e:00:00:01,vlan=2 -netdev user,id=net0"), `vlan`},
		{tail("-netdev user,id=net0 -device rtl8139,id=nic0,netdev=net0 -device rtl8139,id=nic1,netdev=net0"), `netdev 'net0' is in use by another NIC`},
		{tail("-netdev user,id=net0 -netdev type=tap,id=net0,ifname=x"), `id 'net0' used twice`},
		{tail("-netdev bridge,id=net0,br=xenbr0"), `-netdev bridge,id=net0,br=xenbr0: netdev type 'bridge' is not served`},
		{tail("-netdev type=tap,ifname=vif1.0-emu"), `id= is missing`},
		{tail("-net nic,model=rtl8139"), `the legacy -net form is not served`},
		{tail("-drive file=/var/lib/xen/d.img,if=scsi,index=0,media=disk,format=raw"), `-drive file=/var/lib/xen/d.img,if=scsi,index=0,media=disk,format=raw: SCSI disks are not served`},
		{tail("-drive file=/d.vmdk,if=ide,index=0,media=disk,format=vmdk,cache=writeback"), `format=vmdk: only raw and qcow2 images are served`},
		{tail("-drive file=/d.img,if=ide,index=0,media=disk,cache=writeback"), `format= missing`},
		{tail("-drive file=/d.img,if=ide,index=4,media=disk,format=raw"), `index=4: the IDE controller has positions 0-3`},
		{tail("-drive file=/d.img,if=ide,index=1,media=disk,format=raw -drive file=/e.img,if=ide,index=1,media=disk,format=raw"), `index=1 used twice`},
		{tail("-drive file=/d.img,if=ide,index=0,media=disk,format=raw,readonly=on"), `a read-only IDE disk is not possible`},
		{tail("-drive file=/d.img,if=ide,index=0,media=disk,format=raw,cache=fast"), `cache=fast: want writeback`},
		{tail("-drive if=ide,index=0,media=disk,cache=writeback,driver=quorum,id=e,children.0.file.filename=/d.img"), `COLO disk replication is not supported`},
		{tail("-device ide-cd,drive=nope,bus=ide.1,unit=0,id=ide-1"), `-device ide-cd,id=ide-1: no -drive id=nope`},
		{tail("-drive file=/d.img,if=ide,index=2,media=disk,format=raw -drive if=none,readonly=on,id=ide-5632 -device ide-cd,id=ide-5632,drive=ide-5632,bus=ide.1,unit=0"), `ide.1 unit 0 is taken by -drive index=2`},
		{tail("-drive if=none,readonly=on,id=x -device ide-hd,id=h,drive=x,bus=ide.0,unit=0"), `an IDE disk needs a writable file`},
		{tail("-device ide-hd,drive=ahci-d,bus=ahci0.0"), `bus=ahci0.0: no -device ahci,id=ahci0 before it`},
		{tail("-device ahci"), `-device ahci: id= missing`},
		{tail("-device ahci,id=ahci0 -device ahci,id=ahci1"), `a second AHCI controller`},
		{tail("-device ahci,id=ahci0 -drive file=/d.img,if=none,id=d,format=raw -device ide-hd,bus=ahci0.6,unit=0,drive=d"), `ports are ahci0.0 to ahci0.5`},
		{tail("-device ahci,id=ahci0 -drive file=/d.img,if=none,id=d,format=raw -device ide-hd,bus=ahci0.1,unit=1,drive=d"), `unit 0 only`},
		{tail("-device ahci,id=ahci0 -drive if=none,readonly=on,id=c -device ide-hd,bus=ahci0.1,unit=0,drive=c"), `an IDE disk needs a writable file`},
		{tail("-device ahci,id=ahci0 -device ide-hd,bus=ahci0.1,unit=0"), `an ide-hd needs drive=`},
		{tail("-device ahci,id=ahci0 -drive file=/d.img,if=none,id=d,format=raw -drive file=/e.img,if=none,id=e,format=raw -device ide-hd,bus=ahci0.1,drive=d -device ide-hd,bus=ahci0.1,drive=e"), `ahci0.1 is taken by`},
		{tail("-device lsi53c895a"), `SCSI disks are not served`},
		{tail("-drive file=/d.img,if=virtio,format=raw"), `if=virtio: write -drive if=none,id=ID,... -device virtio-blk-pci,drive=ID`},
		{tail("-drive file=/d.img,if=floppy,format=raw"), `if=floppy: only IDE, AHCI, NVMe and virtio-blk disks are served`},
		{tail("-device nvme,drive=n,serial=x"), `-device nvme,drive=n: no -drive id=n`},
		{tail("-device virtio-blk-pci,drive=v"), `-device virtio-blk-pci,drive=v: no -drive id=v`},
		{tail("-drive file=/d.img,if=none,id=n,format=raw -device nvme,drive=n"), `serial= missing`},
		{tail("-device nvme,serial=x"), `drive= missing`},
		{tail("-drive file=/d.img,if=none,id=n,format=raw -device nvme,drive=n,serial=x,num_queues=4"), `num_queues`},
		{tail("-drive file=/d.img,if=none,id=n,format=raw -device nvme,drive=n,serial=012345678901234567890"), `at most 20 characters`},
		{tail("-drive file=/d.img,if=none,id=n,format=raw -device nvme,drive=n,serial=x,addr=2"), `addr=2: want a free slot`},
		{tail("-drive file=/d.img,if=none,id=n,format=raw -drive file=/e.img,if=none,id=v,format=raw -device nvme,drive=n,serial=x,addr=7 -device virtio-blk-pci,drive=v,addr=7.0"), `addr=7.0 used twice`},
		{tail("-drive file=/d.img,if=ide,index=0,media=disk,format=raw,id=d -device virtio-blk-pci,drive=d"), `an if=ide drive already placed at index 0`},
		{tail("-drive file=/d.img,if=none,id=n,format=raw -device nvme,drive=n,serial=x -device virtio-blk-pci,drive=n"), `drive n is used by -device nvme,drive=n already`},
		{tail("-drive if=none,readonly=on,id=c,file=/x.iso,format=raw -device ide-cd,drive=c,bus=ide.1,unit=0,id=c -device nvme,drive=c,serial=x"), `drive c is used by c already`},
		{tail("-drive if=none,readonly=on,id=c,file=/x.iso,format=raw,media=cdrom -device nvme,drive=c,serial=x"), `drive c is a CD-ROM`},
		{tail("-drive if=none,readonly=on,id=r,file=/d.img,format=raw -device virtio-blk-pci,drive=r"), `a read-only virtio-blk-pci is not served`},
		{tail("-drive if=none,id=e -device virtio-blk-pci,drive=e"), `drive e has no file=`},
		{tail("-device xen-pvdevice,device-id=0xc000"), `remove xen_vendor_device=`},
		{tail("-device xen-pci-passthrough,hostaddr=0000:03:00.0"), `through QMP device_add`},
		{tail("-device isa-serial,chardev=s"), `part of godm's xenfv machine already`},
		{tail("-device e1001"), `godm has no device "e1001"`},
		{tail("-incoming tcp:0:4444"), `-incoming tcp:0:4444: godm restores device state from fd:N (as libxl passes it) or file:PATH, not from "tcp:"`},
		{tail("-incoming fd:x"), `-incoming fd:x: fd:N wants a descriptor number`},
		{tail("-incoming fd:3 -incoming fd:4"), `-incoming given twice`},
		{tail("-kernel /boot/vmlinuz"), `direct kernel boot of an HVM guest is not supported: remove kernel=`},
		{tail("-chardev pty,id=libxl-channel0"), `-chardev pty,id=libxl-channel0: no channel support yet: remove channel=[...]`},
		{tail("-chardev socket,id=libxl-channel1,path=/tmp/ch,server=on,wait=off"), `-chardev id=libxl-channel1: no channel support yet`},
		{tail("-xen-attach"), `-xen-attach: godm serves HVM domains only`},
		{tail("-serial /dev/hvc0"), `-serial /dev/hvc0: a host serial device is not served`},
		{tail("-serial tcp:1.2.3.4:5"), `want pty, none, null, stdio, file:PATH or unix:PATH in serial=`},
		{tail("-serial pty -serial pty -serial pty -serial pty"), `at most 4 serial ports`},
		{strings.Replace(served, "xenfv,suppress-vmdesc=on", "xenfv,suppress-vmdesc=on,igd-passthru=on", 1), `IGD passthrough is not supported: remove gfx_passthru=`},
		{strings.Replace(served, "xenfv,suppress-vmdesc=on", "q35", 1), `godm's machine is xenfv`},
		{strings.Replace(served, "xenfv,suppress-vmdesc=on", "xenfv,frobs=1", 1), `frobs`},
		{strings.Replace(served, "mode=control", "mode=readline", 1), `only QMP monitors (mode=control) are served`},
		{strings.Replace(served, "server=on,wait=off", "server=on,wait=on", 1), `must be server=on,wait=off`},
		{tail("-global isa-fdc.fdtypeA=none"), `-global isa-fdc.fdtypeA=none: not part of a configuration godm serves`},
		{served + " -global VGA.x-godm-vram-p2m=yes", `-global VGA.x-godm-vram-p2m=yes: want on or off`},
		{served + " -global VGA.x-godm-vram-p2m=on -global VGA.x-godm-vram-p2m=off", `-global VGA.x-godm-vram-p2m given twice`},
		{tail("-name again"), `-name given twice`},
		{strings.Replace(served, "-m 56", "-m 0", 1), `-m 0: want a whole, non-zero number of MiB`},
		{strings.Replace(served, "-xen-domid 7", "-xen-domid 0", 1), `-xen-domid "0": want a guest domain id`},
		{served + " -godm-sandbox no", `-godm-sandbox "no": want on, log or off`},
		{served + " -godm-sandbox off -godm-sandbox on", `-godm-sandbox given twice`},
		{served + " -godm-spin 0s", `-godm-spin "0s": want off or a duration in (0, 10ms], e.g. 50us`},
		{served + " -godm-spin 1h", `-godm-spin "1h": want off`},
		{served + " -godm-spin fast", `-godm-spin "fast": want off`},
		{served + " -godm-spin off -godm-spin 1ms", `-godm-spin given twice`},
		{strings.Replace(served, "-xen-domid 7 ", "", 1), `-xen-domid: missing`},
		{strings.Replace(served, "-machine xenfv,suppress-vmdesc=on ", "", 1), `-machine: missing`},
		{strings.Replace(served, "-boot order=cda", "-boot order=cdz", 1), `-boot order=cdz: order wants drive letters`},
		{tail("-smp 4,maxcpus=2"), `-smp 4,maxcpus=2: want 1..128 vCPUs with cpus <= maxcpus`},
		{tail("-frob"), `unknown option -frob`},
		{tail("disk.img"), `unexpected "disk.img"`},
		{strings.Replace(probe, "-machine none,accel=xen", "-machine none,accel=xen -xen-domid 4", 1), `the probe) takes no -xen-domid`},
	} {
		env := env7
		_, err := Parse(strings.Fields(tc.argv), env)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(...%s) = %v, want error containing %q", lastDiff(tc.argv), err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("error spans lines: %q", err)
		}
	}
	// The one -global godm serves.
	for _, drv := range []string{"VGA", "cirrus-vga"} {
		for _, v := range []string{"on", "off"} {
			c, err := Parse(strings.Fields(served+" -global "+drv+".x-godm-vram-p2m="+v), env7)
			if err != nil || c.VRAMP2M[drv] != v || len(c.VRAMP2M) != 1 {
				t.Errorf("-global %s.x-godm-vram-p2m=%s: %v, VRAMP2M %q", drv, v, err, c.VRAMP2M)
			}
		}
	}
	// XEN_DOMAIN_ID must agree with -xen-domid.
	_, err := Parse(strings.Fields(served), func(string) string { return "8" })
	if err == nil || !strings.Contains(err.Error(), "XEN_DOMAIN_ID=8 in the environment but -xen-domid 7") {
		t.Errorf("mismatched XEN_DOMAIN_ID: %v", err)
	}
	var r *Refusal
	if _, err := Parse(strings.Fields(tail("-device qxl-vga")), env7); !errors.As(err, &r) || r.Option != "-device qxl-vga" {
		t.Errorf("qxl refusal = %#v", err)
	}
}

func lastDiff(s string) string {
	if len(s) > 60 {
		return s[len(s)-60:]
	}
	return s
}

func TestIsQEMUArgv(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"-xen-domid", "1"}, true},
		{[]string{"-S"}, true},
		{[]string{"serve"}, false},
		{[]string{"-h"}, false},
		{[]string{"--help"}, false},
		{nil, false},
		{[]string{"-"}, false},
	} {
		if got := IsQEMUArgv(tc.args); got != tc.want {
			t.Errorf("IsQEMUArgv(%q) = %v", tc.args, got)
		}
	}
}

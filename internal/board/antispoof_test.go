package board

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"godm/netback"
	"godm/netback/antispoof"
)

// spoofBE is a back-end with an anti-spoofing filter, as a tap with
// x-godm-antispoof=on is.
type spoofBE struct {
	portBE
	f *antispoof.Filter
}

func (s spoofBE) AntiSpoof() *antispoof.Filter { return s.f }

// The rtl8139 wiring binds its mac= to its netdev's filter, the NIC's
// stats carry the filter's counters, and the PV unplug unbinds it.
func TestNICBindsAntiSpoof(t *testing.T) {
	done := make(chan struct{})
	var skip string
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with its namespace
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			skip = "cannot make a network namespace: " + err.Error()
			return
		}
		if err := antispoof.Supported(); err != nil {
			skip = "the kernel refuses a BPF classifier: " + err.Error()
			return
		}
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			skip = "no /dev/net/tun: " + err.Error()
			return
		}
		defer unix.Close(fd)
		ifr, _ := unix.NewIfreq("nictap0")
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			t.Errorf("TUNSETIFF: %v", err)
			return
		}
		f, err := antispoof.Attach("nictap0", antispoof.Policy{})
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		be := spoofBE{portBE{netback.NewPort(netback.PortConfig{Depth: 8})}, f}
		defer be.Close()
		env := testEnv()
		env.Netdevs = map[string]netback.Backend{"net0": be}
		b, err := New(env)
		if err != nil {
			t.Error(err)
			return
		}
		defer b.Close()
		if err := b.Build(append(defaultList[:len(defaultList):len(defaultList)],
			Entry{Driver: NICDriver, Props: map[string]string{"id": "nic0", "netdev": "net0", "mac": "00:16:3e:01:02:03"}})); err != nil {
			t.Error(err)
			return
		}
		mac, bound, err := f.Bound()
		if err != nil || !bound || mac != [6]byte{0x00, 0x16, 0x3e, 1, 2, 3} {
			t.Errorf("after plug: bound %v mac %x %v", bound, mac, err)
		}
		st, ok := b.Device("nic0").Dev.(*NIC).StatsValue().(NICStats)
		if !ok {
			t.Errorf("NIC stats %T, want NICStats", b.Device("nic0").Dev.(*NIC).StatsValue())
		} else if st.Antispoof != (antispoof.Stats{}) {
			t.Errorf("counters %+v before any frame", st.Antispoof)
		}
		if err := b.UnplugNICs(); err != nil {
			t.Error(err)
		}
		if _, bound, err := f.Bound(); err != nil || bound {
			t.Errorf("after the PV unplug: bound %v %v", bound, err)
		}
	}()
	<-done
	if skip != "" {
		t.Skip(skip)
	}
}

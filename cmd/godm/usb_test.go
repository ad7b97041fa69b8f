package main

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	"godm/devices/uhci"
	"godm/devices/usb"
	"godm/devices/usb/hid"
	"godm/hyp/xensim"
)

// TestLibxlUSBTablet: libxl's argv for usb=1 usbdevice="tablet" with
// vnc=1 and no VGA (a black 640×480 screen): the UHCI controller is at
// 00:01.2 as under QEMU-xen; a guest driver working through the vCPU's
// port I/O and guest RAM enumerates the tablet, and a VNC client's
// pointer event arrives in the tablet's interrupt report as absolute
// X/Y.
func TestLibxlUSBTablet(t *testing.T) {
	r, q := startVGA(t, func(dom int, dir string, disp int) string {
		return strings.Replace(libxlArgv(dom, dir), "-vnc none", fmt.Sprintf("-vnc 127.0.0.1:%d,to=99", disp), 1) +
			" -usb -usbdevice tablet"
	})
	port := vncPort(t, q)
	checkUSBInQueryPCI(t, q)
	v := r.dom.VCPU(0)
	const devfn = 1<<3 | 2
	if id, err := v.PCIConfigRead(devfn, 0, 4); err != nil || id != 0x70208086 {
		t.Fatalf("00:01.2 ids %#x, %v", id, err)
	}
	const io = 0xc080
	for _, w := range [][3]uint64{{0x20, 4, io}, {0x04, 2, 5}} {
		if err := v.PCIConfigWrite(devfn, uint32(w[0]), int(w[1]), w[2]); err != nil {
			t.Fatal(err)
		}
	}
	h := &hostDriver{t: t, v: v, dom: r.dom, io: io}
	if got := h.in(uhci.RegPortSC1); got&uhci.PortCCS == 0 {
		t.Fatalf("PORTSC1 %#x: no device", got)
	}
	h.out(uhci.RegPortSC1, uhci.PortCSC|uhci.PortEN)
	h.start()
	if _, err := h.control(0, usb.Setup{Request: usb.ReqSetAddress, Value: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.control(1, usb.Setup{Request: usb.ReqSetConfiguration, Value: 1}); err != nil {
		t.Fatal(err)
	}
	// The interrupt IN TD NAKs until the pointer moves.
	h.queue([]tdSpec{{pid: usb.PIDIn, addr: 1, ep: 1, maxLen: 8}})
	time.Sleep(20 * time.Millisecond)
	if c := h.ctrl(0); c&(1<<23) == 0 || c&(1<<19) == 0 {
		t.Fatalf("interrupt TD %#x: want active and NAKed", c)
	}
	c := rfbConnect(t, port, "")
	defer c.Close()
	// RFB PointerEvent: left button at (320, 240).
	if _, err := c.Write([]byte{5, 1, 320 >> 8, 320 & 0xff, 0, 240}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for h.ctrl(0)&(1<<23) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no report: TD %#x", h.ctrl(0))
		}
		time.Sleep(5 * time.Millisecond)
	}
	rep := h.buf(0, hid.ReportLen)
	x, y := hid.Scale(320, 640), hid.Scale(240, 480)
	if want := []byte{1, byte(x), byte(x >> 8), byte(y), byte(y >> 8), 0}; string(rep) != string(want) {
		t.Fatalf("report % x, want % x", rep, want)
	}
	t.Logf("VNC pointer (320,240) of 640x480 reached the tablet as X=%#x Y=%#x", x, y)
}

func checkUSBInQueryPCI(t *testing.T, q *qmpClient) {
	t.Helper()
	ret, e := q.do("query-pci", nil)
	if e != "" {
		t.Fatal(e)
	}
	if s := fmt.Sprint(ret); !strings.Contains(s, "device:28704") || !strings.Contains(s, "function:2") {
		t.Errorf("query-pci has no 8086:7020 at function 2: %s", s)
	}
}

// hostDriver is a minimal UHCI driver over a simulated vCPU: one QH in
// every frame list entry, TDs behind it, in guest RAM at 1 MiB.
type hostDriver struct {
	t   *testing.T
	v   *xensim.VCPU
	dom *xensim.Domain
	io  uint16
}

const (
	hdFL  = 0x100000
	hdQH  = 0x101000
	hdTD  = 0x101100
	hdBuf = 0x102000
)

type tdSpec struct {
	pid      uint8
	addr, ep uint8
	maxLen   int // 0: a null packet
	data     []byte
}

func (h *hostDriver) in(reg uint16) uint64 {
	v, err := h.v.In(h.io+reg, 2)
	if err != nil {
		h.t.Fatal(err)
	}
	return v
}

func (h *hostDriver) out(reg uint16, val uint64) {
	if err := h.v.Out(h.io+reg, 2, val); err != nil {
		h.t.Fatal(err)
	}
}

func (h *hostDriver) w32(gpa, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	if err := h.dom.WriteRAM(uint64(gpa), b[:]); err != nil {
		h.t.Fatal(err)
	}
}

func (h *hostDriver) r32(gpa uint32) uint32 {
	var b [4]byte
	if err := h.dom.ReadRAM(uint64(gpa), b[:]); err != nil {
		h.t.Fatal(err)
	}
	return binary.LittleEndian.Uint32(b[:])
}

func (h *hostDriver) start() {
	for i := range uint32(1024) {
		h.w32(hdFL+4*i, hdQH|2)
	}
	h.w32(hdQH, 1)
	h.w32(hdQH+4, 1)
	if err := h.v.Out(h.io+uhci.RegFLBase, 4, hdFL); err != nil {
		h.t.Fatal(err)
	}
	h.out(uhci.RegCmd, uhci.CmdRS)
}

// queue puts tds behind the QH as one depth-first list.
func (h *hostDriver) queue(tds []tdSpec) {
	h.w32(hdQH+4, 1) // park the queue while writing
	for i, x := range tds {
		a := hdTD + uint32(i)*32
		link := uint32(1)
		if i+1 < len(tds) {
			link = (a + 32) | 4
		}
		ml := uint32(0x7ff)
		if x.maxLen > 0 {
			ml = uint32(x.maxLen - 1)
		}
		buf := uint32(hdBuf + i*0x100)
		if x.data != nil {
			if err := h.dom.WriteRAM(uint64(buf), x.data); err != nil {
				h.t.Fatal(err)
			}
		}
		h.w32(a, link)
		h.w32(a+4, 1<<23|3<<27)
		h.w32(a+8, ml<<21|uint32(x.ep)<<15|uint32(x.addr)<<8|uint32(x.pid))
		h.w32(a+12, buf)
	}
	h.w32(hdQH+4, hdTD)
}

func (h *hostDriver) ctrl(i int) uint32 { return h.r32(hdTD + uint32(i)*32 + 4) }

func (h *hostDriver) buf(i, n int) []byte {
	b := make([]byte, n)
	if err := h.dom.ReadRAM(uint64(hdBuf+i*0x100), b); err != nil {
		h.t.Fatal(err)
	}
	return b
}

// control runs a no-data control request (SETUP, IN status) to addr.
func (h *hostDriver) control(addr uint8, s usb.Setup) (uint32, error) {
	var b [8]byte
	b[0], b[1] = s.RequestType, s.Request
	binary.LittleEndian.PutUint16(b[2:], s.Value)
	binary.LittleEndian.PutUint16(b[4:], s.Index)
	h.queue([]tdSpec{{pid: usb.PIDSetup, addr: addr, maxLen: 8, data: b[:]}, {pid: usb.PIDIn, addr: addr}})
	deadline := time.Now().Add(20 * time.Second)
	for h.r32(hdQH+4)&1 == 0 {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("request %#x to %d: TDs %#x %#x, USBSTS %#x", s.Request, addr, h.ctrl(0), h.ctrl(1), h.in(uhci.RegStatus))
		}
		time.Sleep(2 * time.Millisecond)
	}
	if c := h.ctrl(1); c&(1<<22|1<<18) != 0 {
		return c, fmt.Errorf("request %#x: status TD %#x", s.Request, c)
	}
	return h.ctrl(1), nil
}

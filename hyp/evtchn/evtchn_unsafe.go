package evtchn

import (
	"unsafe"

	"godm/hyp/kernel"
	"godm/hyp/xenabi"
)

// portBytes views buf as the bytes the device reads into (native order).
func portBytes(buf []Port) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(&buf[0])), len(buf)*portSize)
}

func ioctlBindInterdomain(f kernel.File, a *xenabi.IoctlEvtchnBindInterdomain) (uintptr, error) {
	return f.Ioctl(xenabi.IOCTL_EVTCHN_BIND_INTERDOMAIN, unsafe.Pointer(a))
}

func ioctlBindUnboundPort(f kernel.File, a *xenabi.IoctlEvtchnBindUnboundPort) (uintptr, error) {
	return f.Ioctl(xenabi.IOCTL_EVTCHN_BIND_UNBOUND_PORT, unsafe.Pointer(a))
}

func ioctlUnbind(f kernel.File, a *xenabi.IoctlEvtchnUnbind) error {
	_, err := f.Ioctl(xenabi.IOCTL_EVTCHN_UNBIND, unsafe.Pointer(a))
	return err
}

func ioctlNotify(f kernel.File, a *xenabi.IoctlEvtchnNotify) error {
	_, err := f.Ioctl(xenabi.IOCTL_EVTCHN_NOTIFY, unsafe.Pointer(a))
	return err
}

func ioctlReset(f kernel.File) error {
	_, err := f.Ioctl(xenabi.IOCTL_EVTCHN_RESET, nil)
	return err
}

func ioctlRestrict(f kernel.File, a *xenabi.IoctlEvtchnRestrictDomid) error {
	_, err := f.Ioctl(xenabi.IOCTL_EVTCHN_RESTRICT_DOMID, unsafe.Pointer(a))
	return err
}

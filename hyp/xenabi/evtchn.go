package xenabi

// IoctlEvtchnBindInterdomain mirrors struct ioctl_evtchn_bind_interdomain,
// include/uapi/xen/evtchn.h.
type IoctlEvtchnBindInterdomain struct {
	RemoteDomain uint32
	RemotePort   uint32
}

// IoctlEvtchnBindUnboundPort mirrors struct ioctl_evtchn_bind_unbound_port.
type IoctlEvtchnBindUnboundPort struct {
	RemoteDomain uint32
}

// IoctlEvtchnUnbind mirrors struct ioctl_evtchn_unbind.
type IoctlEvtchnUnbind struct {
	Port uint32
}

// IoctlEvtchnNotify mirrors struct ioctl_evtchn_notify.
type IoctlEvtchnNotify struct {
	Port uint32
}

// IoctlEvtchnRestrictDomid mirrors struct ioctl_evtchn_restrict_domid.
type IoctlEvtchnRestrictDomid struct {
	Domid uint16
}

// evtchn ioctl request numbers; include/uapi/xen/evtchn.h.
const (
	IOCTL_EVTCHN_BIND_VIRQ         = _IOC_NONE<<30 | 4<<16 | 'E'<<8 | 0
	IOCTL_EVTCHN_BIND_INTERDOMAIN  = _IOC_NONE<<30 | 8<<16 | 'E'<<8 | 1
	IOCTL_EVTCHN_BIND_UNBOUND_PORT = _IOC_NONE<<30 | 4<<16 | 'E'<<8 | 2
	IOCTL_EVTCHN_UNBIND            = _IOC_NONE<<30 | 4<<16 | 'E'<<8 | 3
	IOCTL_EVTCHN_NOTIFY            = _IOC_NONE<<30 | 4<<16 | 'E'<<8 | 4
	IOCTL_EVTCHN_RESET             = _IOC_NONE<<30 | 0<<16 | 'E'<<8 | 5
	IOCTL_EVTCHN_RESTRICT_DOMID    = _IOC_NONE<<30 | 2<<16 | 'E'<<8 | 6
)

package xenabi

// hvm_op sub-ops; xen/include/public/hvm/hvm_op.h.
const (
	HVMOP_set_param = 0
	HVMOP_get_param = 1
)

// HVM parameters; xen/include/public/hvm/params.h.
const (
	HVM_PARAM_CALLBACK_IRQ          = 0
	HVM_PARAM_STORE_PFN             = 1
	HVM_PARAM_STORE_EVTCHN          = 2
	HVM_PARAM_PAE_ENABLED           = 4
	HVM_PARAM_IOREQ_PFN             = 5
	HVM_PARAM_BUFIOREQ_PFN          = 6
	HVM_PARAM_VIRIDIAN              = 9
	HVM_PARAM_TIMER_MODE            = 10
	HVM_PARAM_HPET_ENABLED          = 11
	HVM_PARAM_IDENT_PT              = 12
	HVM_PARAM_DM_DOMAIN             = 13
	HVM_PARAM_ACPI_S_STATE          = 14
	HVM_PARAM_VM86_TSS              = 15
	HVM_PARAM_VPT_ALIGN             = 16
	HVM_PARAM_CONSOLE_PFN           = 17
	HVM_PARAM_CONSOLE_EVTCHN        = 18
	HVM_PARAM_ACPI_IOPORTS_LOCATION = 19
	HVM_PARAM_NESTEDHVM             = 24
	HVM_PARAM_BUFIOREQ_EVTCHN       = 26
	HVM_PARAM_PAGING_RING_PFN       = 27
	HVM_PARAM_MONITOR_RING_PFN      = 28
	HVM_PARAM_SHARING_RING_PFN      = 29
	HVM_PARAM_TRIPLE_FAULT_REASON   = 31
	HVM_PARAM_IOREQ_SERVER_PFN      = 32
	HVM_PARAM_NR_IOREQ_SERVER_PAGES = 33
	HVM_PARAM_VM_GENERATION_ID_ADDR = 34
	HVM_PARAM_ALTP2M                = 35
	HVM_PARAM_X87_FIP_WIDTH         = 36
	HVM_PARAM_VM86_TSS_SIZED        = 37
	HVM_PARAM_MCA_CAP               = 38
	HVM_NR_PARAMS                   = 39
)

// XenHVMParam mirrors struct xen_hvm_param.
type XenHVMParam struct {
	Domid uint16
	Pad   uint16
	Index uint32
	Value uint64 // IN/OUT
}

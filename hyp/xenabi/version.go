package xenabi

// xen_version sub-ops; xen/include/public/version.h.
const (
	XENVER_version             = 0
	XENVER_extraversion        = 1
	XENVER_compile_info        = 2
	XENVER_capabilities        = 3
	XENVER_changeset           = 4
	XENVER_platform_parameters = 5
	XENVER_get_features        = 6
	XENVER_pagesize            = 7
	XENVER_guest_handle        = 8
	XENVER_commandline         = 9
	XENVER_build_id            = 10
)

// Sizes of the fixed xen_version answers.
const (
	XenExtraversionLen = 16   // xen_extraversion_t
	XenCapabilitiesLen = 1024 // xen_capabilities_info_t
)

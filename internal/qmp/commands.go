package qmp

// Command is a QMP command libxl (4.15 to 4.20) sends to its device model,
// with the arguments it passes: the data godm's command handlers implement.
// TestQEMUSchemaHasLibxlCommands checks every entry against QEMU 7.2's own
// schema (query-qmp-schema).
type Command struct {
	Name    string
	Args    []Arg
	Returns string // JSON type of the reply ("object", "array", "string"), "" for {}
	Gone    string // set when QEMU 7.2 lacks the command: why libxl never sends it to godm's 7.2 greeting
	Use     string // when libxl sends it (XEN-FACTS §2.4, §2.5)
}

// Arg is one argument libxl passes.
type Arg struct {
	Name     string
	Type     string // JSON type: "string", "int", "boolean", "object"
	Optional bool   // optional in QEMU's schema
	Prop     bool   // a device property (device_add), not a schema argument
}

// LibxlCommands is every command libxl sends to a qemu-xen device model.
var LibxlCommands = []Command{
	{Name: "qmp_capabilities", Use: "every connection, after the greeting (answered by Server)"},
	{Name: "query-command-line-options", Returns: "array",
		Use: "dm_restrict probe (-machine none): looks for run-with's chroot and user parameters"},
	{Name: "quit", Use: "end of the probe"},
	{Name: "query-status", Returns: "object",
		Use: "start with -S (pre-opened fd): status must be \"prelaunch\" (new domain) or \"paused\" (restore)"},
	{Name: "query-chardev", Returns: "array", Use: "post-config: serialN labels with pty: filenames give serial/N/tty"},
	{Name: "query-vnc", Returns: "object", Use: "post-config when VNC is on: host and service to console/vnc-*"},
	{Name: "change-vnc-password", Args: []Arg{{Name: "password", Type: "string"}}, Use: "post-config when a VNC password is set"},
	{Name: "cont", Use: "unpause, resume after -S"},
	{Name: "stop", Use: "save and migrate, before the device state is saved"},
	{Name: "add-fd", Args: []Arg{{Name: "opaque", Type: "string", Optional: true}}, Returns: "object",
		Use: "save (no arguments) and cd-insert (opaque): the fd comes by SCM_RIGHTS with the command; reply fdset-id"},
	{Name: "remove-fd", Args: []Arg{{Name: "fdset-id", Type: "int"}}, Use: "cd-insert clean-up"},
	{Name: "query-fdsets", Returns: "array", Use: "cd-insert"},
	{Name: "xen-save-devices-state", Args: []Arg{{Name: "filename", Type: "string"}, {Name: "live", Type: "boolean", Optional: true}},
		Use: "save and migrate: filename /dev/fdset/N; live from QEMU 2.11"},
	{Name: "xen-load-devices-state", Args: []Arg{{Name: "filename", Type: "string"}}, Use: "COLO restore (normal restore uses -incoming)"},
	{Name: "xen-set-global-dirty-log", Args: []Arg{{Name: "enable", Type: "boolean"}}, Use: "live migration log-dirty switch"},
	{Name: "device_add", Args: []Arg{
		{Name: "driver", Type: "string"},
		{Name: "id", Type: "string", Optional: true},
		{Name: "hostaddr", Type: "string", Prop: true},
		{Name: "addr", Type: "string", Prop: true},
		{Name: "permissive", Type: "boolean", Prop: true},
		{Name: "socket-id", Type: "int", Prop: true},
		{Name: "core-id", Type: "int", Prop: true},
		{Name: "thread-id", Type: "int", Prop: true},
	}, Use: "pci-attach (xen-pci-passthrough: id pci-pt-BB_DD.F, hostaddr, addr, permissive) and vcpu-set (cpu-N: socket-id, core-id, thread-id)"},
	{Name: "device_del", Args: []Arg{{Name: "id", Type: "string"}}, Use: "pci-detach, then query-pci until the device is gone"},
	{Name: "query-pci", Returns: "array", Use: "after device_add: the slot and function of qdev_id"},
	{Name: "query-hotpluggable-cpus", Returns: "array", Use: "vcpu-set from QEMU 2.7"},
	{Name: "cpu-add", Gone: "removed from QEMU in 5.0; libxl uses it only with a QEMU older than 2.7", Use: "vcpu-set"},
	{Name: "query-cpus-fast", Returns: "array", Use: "vCPU listing from QEMU 2.12"},
	{Name: "query-cpus", Gone: "removed from QEMU in 6.0; libxl uses it only with a QEMU older than 2.12", Use: "vCPU listing"},
	{Name: "system_wakeup", Use: "S3 resume (xl trigger s3resume)"},
	{Name: "query-version", Use: "cd-insert, to learn QEMU's version before eject", Returns: "object"},
	{Name: "eject", Args: []Arg{{Name: "id", Type: "string", Optional: true}}, Use: "cd-insert and cd-eject: id ide-N from QEMU 2.8"},
	{Name: "blockdev-change-medium", Args: []Arg{
		{Name: "id", Type: "string", Optional: true},
		{Name: "filename", Type: "string"},
		{Name: "format", Type: "string", Optional: true},
	}, Use: "cd-insert from QEMU 2.8 in libxl versions that check: filename /dev/fdset/N"},
	{Name: "change", Gone: "not in QEMU 7.2; libxl sends it for cd-insert to QEMU older than 2.8, or always in versions without the 2.8 check (then cd-insert fails on QEMU 7.2 too)",
		Use: "cd-insert (device, target, arg)"},
	{Name: "human-monitor-command", Args: []Arg{{Name: "command-line", Type: "string"}}, Returns: "string",
		Use: "xl qemu-monitor-command; COLO debugging"},
	// COLO (libxl_qmp.c, libxl_colo_*.c).
	{Name: "xen-set-replication", Args: []Arg{{Name: "enable", Type: "boolean"}, {Name: "primary", Type: "boolean"}}, Use: "COLO"},
	{Name: "query-xen-replication-status", Returns: "object", Use: "COLO"},
	{Name: "xen-colo-do-checkpoint", Use: "COLO"},
	{Name: "nbd-server-start", Args: []Arg{{Name: "addr", Type: "object"}}, Use: "COLO secondary: addr {type: inet, data: {host, port}}"},
	{Name: "nbd-server-add", Args: []Arg{{Name: "device", Type: "string"}, {Name: "writable", Type: "boolean", Optional: true}}, Use: "COLO secondary"},
	{Name: "nbd-server-stop", Use: "COLO secondary"},
	{Name: "x-blockdev-change", Args: []Arg{
		{Name: "parent", Type: "string"},
		{Name: "child", Type: "string", Optional: true},
		{Name: "node", Type: "string", Optional: true},
	}, Use: "COLO"},
}

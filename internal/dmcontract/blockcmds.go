package dmcontract

import (
	"fmt"
	"os"
	"strings"

	"godm/block"
	"godm/internal/qmp"
)

// BlockHost is the part of a Host with block devices (IDE disks and
// CD-ROM drives). A Host without it answers query-block with an empty
// list and refuses eject and blockdev-change-medium.
type BlockHost interface {
	// Blocks lists the block devices.
	Blocks() []BlockInfo
	// Eject opens a CD-ROM drive's tray and removes its medium; moved
	// says the tray was closed before. A tray the guest locked fails
	// (the guest is asked to release it) unless force.
	Eject(id string, force bool) (moved bool, err error)
	// ChangeMedium puts filename (format raw or qcow2) into a CD-ROM
	// drive; opened says the tray had to be opened first.
	ChangeMedium(id, filename, format string) (opened bool, err error)
}

// BlockInfo is one device of query-block.
type BlockInfo struct {
	Device    string // the drive's id
	QdevID    string // the disk device's id
	Removable bool   // a CD-ROM drive
	Locked    bool
	TrayOpen  bool
	// Inserted describes the medium; nil for an empty drive.
	Inserted *BlockMedium
}

// BlockMedium is a drive's medium.
type BlockMedium struct {
	File, Format string
	ReadOnly     bool
	VirtualSize  int64
	// Cache is the -drive cache mode (writeback, none, writethrough,
	// directsync, unsafe).
	Cache string
}

// blockInfo is QEMU 7.2's BlockInfo (qapi/block-core.json), with the
// BlockDeviceInfo members godm knows (no throttling: all zero).
func blockInfo(b BlockInfo) map[string]any {
	m := map[string]any{"device": b.Device, "type": "unknown", "removable": b.Removable,
		"locked": b.Locked, "io-status": "ok"}
	if b.QdevID != "" {
		m["qdev"] = b.QdevID
	}
	if b.Removable {
		m["tray_open"] = b.TrayOpen
	}
	if in := b.Inserted; in != nil {
		cache, _ := block.ParseCache(in.Cache) // an unknown name reads as writeback
		m["inserted"] = map[string]any{
			"file": in.File, "ro": in.ReadOnly, "drv": in.Format, "backing_file_depth": 0,
			"encrypted": false, "detect_zeroes": "off",
			"bps": 0, "bps_rd": 0, "bps_wr": 0, "iops": 0, "iops_rd": 0, "iops_wr": 0,
			"write_threshold": 0,
			"image":           map[string]any{"filename": in.File, "format": in.Format, "virtual-size": in.VirtualSize},
			"cache":           map[string]any{"writeback": cache.WriteCache(), "direct": cache.Direct(), "no-flush": cache.NoFlush()},
		}
	}
	return m
}

// blockCommands are query-block, eject and blockdev-change-medium as
// libxl_disk.c uses them for cd-eject and cd-insert (QEMU 7.2: the id
// is the ide-cd device's, "ide-N").
func (s *State) blockCommands(cmds map[string]qmp.Handler) {
	bh := func(r *qmp.Request) (BlockHost, error) {
		if err := s.needHost(r); err != nil {
			return nil, err
		}
		h, ok := s.host.(BlockHost)
		if !ok {
			return nil, qmp.NewError(qmp.ClassDeviceNotFound, "this machine has no block devices")
		}
		return h, nil
	}
	target := func(a *qmp.Args) (string, error) {
		dev, err := a.OptString("device", "")
		if err != nil {
			return "", err
		}
		id, err := a.OptString("id", "")
		if err != nil {
			return "", err
		}
		switch {
		case dev != "" && id != "":
			return "", qmp.Errorf("Cannot specify both 'device' and 'id'")
		case dev == "" && id == "":
			return "", qmp.Errorf("Either 'device' or 'id' must be specified")
		}
		return dev + id, nil
	}
	cmds["query-block"] = func(r *qmp.Request) (any, error) {
		if err := noArgs(r); err != nil {
			return nil, err
		}
		out := make([]map[string]any, 0)
		if s.host == nil {
			return out, nil
		}
		if h, ok := s.host.(BlockHost); ok {
			for _, b := range h.Blocks() {
				out = append(out, blockInfo(b))
			}
		}
		return out, nil
	}
	cmds["eject"] = func(r *qmp.Request) (any, error) {
		a := qmp.ArgsOf(r.Args)
		id, err := target(a)
		if err != nil {
			return nil, err
		}
		force, err := a.OptBool("force", false)
		if err != nil {
			return nil, err
		}
		if err := a.Check(); err != nil {
			return nil, err
		}
		h, err := bh(r)
		if err != nil {
			return nil, err
		}
		moved, err := h.Eject(id, force)
		if err != nil {
			return nil, qmp.Errorf("%v", err)
		}
		if moved {
			s.trayMoved(id, true)
		}
		return nil, nil
	}
	cmds["blockdev-change-medium"] = func(r *qmp.Request) (any, error) {
		a := qmp.ArgsOf(r.Args)
		id, err := target(a)
		if err != nil {
			return nil, err
		}
		file, err := a.String("filename")
		if err != nil {
			return nil, err
		}
		format, err := a.OptString("format", "")
		if err != nil {
			return nil, err
		}
		if _, err := a.OptBool("force", false); err != nil {
			return nil, err
		}
		mode, err := a.OptString("read-only-mode", "retain")
		if err != nil {
			return nil, err
		}
		if err := a.Check(); err != nil {
			return nil, err
		}
		if mode == "read-write" {
			return nil, qmp.Errorf("a CD-ROM medium is read-only")
		}
		if format == "" {
			return nil, qmp.Errorf("format is required (raw or qcow2): godm does not probe images")
		}
		h, err := bh(r)
		if err != nil {
			return nil, err
		}
		file, release, err := s.resolveFdset(file)
		if err != nil {
			return nil, err
		}
		opened, err := h.ChangeMedium(id, file, format)
		release()
		if err != nil {
			return nil, qmp.Errorf("%v", err)
		}
		if opened {
			s.trayMoved(id, true)
		}
		s.trayMoved(id, false)
		return nil, nil
	}
}

// trayMoved sends DEVICE_TRAY_MOVED.
func (s *State) trayMoved(id string, open bool) {
	dev := ""
	if h, ok := s.host.(BlockHost); ok {
		for _, b := range h.Blocks() {
			if b.QdevID == id || b.Device == id {
				dev, id = b.Device, b.QdevID
			}
		}
	}
	s.emit("DEVICE_TRAY_MOVED", map[string]any{"device": dev, "id": id, "tray-open": open})
}

// resolveFdset turns "/dev/fdset/N" (libxl's cd-insert passes the image
// with add-fd) into a path the block layer can open: a read-only
// duplicate of the set's descriptor through /proc/self/fd, which release
// closes once the image is open (a new open of the same file: it needs
// /proc, which a dm_restrict chroot lacks). Other names are returned as
// they are.
func (s *State) resolveFdset(name string) (string, func(), error) {
	if !strings.HasPrefix(name, "/dev/fdset/") {
		return name, func() {}, nil
	}
	f, err := s.fds.Open(name, os.O_RDONLY)
	if err != nil {
		return "", nil, qmp.Errorf("%v", err)
	}
	return fmt.Sprintf("/proc/self/fd/%d", f.Fd()), func() { f.Close() }, nil
}

// Close releases what the monitors left: the descriptors in fdsets.
func (s *State) Close() { s.fds.ClientsGone() }

package dmcontract

import (
	"fmt"
	"strings"

	"godm/block"
	"godm/internal/qemuopts"
)

// Drive is a -drive back end godm serves: an image (or an empty CD-ROM
// drive) for an IDE position.
type Drive struct {
	// ID is -drive id= ("" for an if=ide drive without one: the board
	// names it).
	ID string
	// File and Format are the image ("" for an empty CD-ROM drive).
	File, Format string
	ReadOnly     bool
	// Cache is QEMU's cache mode (writeback unless given).
	Cache string
	// Media is "disk" or "cdrom".
	Media string
	// Index is the IDE position (if=ide,index=N: bus N/2, unit N%2), or
	// -1 for if=none (a -device ide-hd/ide-cd names it).
	Index int
	// Discard passes guest discards to the image (discard=unmap).
	Discard bool
}

// IDEDevice is a -device ide-hd or ide-cd on the PIIX3 IDE buses or on a
// port of the AHCI controller.
type IDEDevice struct {
	Driver    string // ide-hd or ide-cd
	ID        string
	Drive     string // a -drive id, "" for an empty ide-cd
	Bus, Unit int
	// AHCI names the AHCI controller (its id) when Bus is its port.
	AHCI string
}

// PCIDisk is -device nvme,drive=D,serial=S[,id=][,addr=] or -device
// virtio-blk-pci,drive=D[,serial=][,id=][,addr=] on an if=none drive.
type PCIDisk struct {
	Driver string // nvme or virtio-blk-pci
	ID     string
	Drive  string
	Serial string
	Addr   string // "" for the first free slot
}

// parsePCIDisk takes -device nvme and virtio-blk-pci (virtio-blk is QEMU's
// alias for it on a PCI machine).
func (c *Config) parsePCIDisk(a qemuopts.Arg, o *qemuopts.Opts, drv string) error {
	if drv == "virtio-blk" {
		drv = "virtio-blk-pci"
	}
	d := PCIDisk{Driver: drv, ID: o.ID(), Drive: o.String("drive", ""), Serial: o.String("serial", ""), Addr: o.String("addr", "")}
	if err := o.CheckUnused(); err != nil {
		return err
	}
	switch {
	case d.Drive == "":
		return refuse(a, "drive= missing: name an if=none -drive")
	case drv == "nvme" && d.Serial == "":
		return refuse(a, "serial= missing (QEMU's nvme requires it)")
	case len(d.Serial) > 20:
		return refuse(a, "serial=%s: at most 20 characters", d.Serial)
	}
	if d.Addr != "" {
		slot, err := qemuopts.ParseUint(strings.TrimSuffix(d.Addr, ".0"))
		if err != nil || slot < 3 || slot > 31 {
			return refuse(a, "addr=%s: want a free slot in 0x3..0x1f (SLOT or SLOT.0)", d.Addr)
		}
		d.Addr = fmt.Sprintf("%x", slot) // the board's form (QEMU also takes 0x9 and 9.0)
		for _, e := range c.PCIDisks {
			if e.Addr == d.Addr {
				return refuse(a, "addr=%s used twice", o.String("addr", ""))
			}
		}
	}
	c.PCIDisks = append(c.PCIDisks, d)
	return nil
}

// AHCIController is -device ahci,id=ID[,addr=SLOT] (libxl's
// hdtype="ahci"; addr= when an IGD is passed through).
type AHCIController struct {
	ID   string
	Addr string // "" for the first free slot
}

// Refusals of disk set-ups godm does not serve.
const (
	whyDiskKind = `SCSI disks are not served: use hdX or xvdX vdevs (IDE, or AHCI with hdtype="ahci"), or -device nvme / virtio-blk-pci on an if=none drive in device_model_args_hvm`
	whyCOLO     = `COLO disk replication is not supported: remove colo= from the disk=[...] entry`
)

// parseDrive takes the -drive forms libxl writes (libxl_dm.c
// qemu_disk_ide_drive_string and the CD-ROM branch):
//
//	file=PATH,if=ide,index=N,media=disk,format=F,cache=writeback
//	if=ide,index=N,readonly=on,media=cdrom,id=ide-N[,file=PATH,format=F]   (libxl before 4.15)
//	if=none,readonly=on,id=ide-N[,file=PATH,format=F]                      (with -device ide-cd)
func (c *Config) parseDrive(a qemuopts.Arg) error {
	o, err := qemuopts.ParseArg(a)
	if err != nil {
		return err
	}
	if o.Has("driver") || o.Has("children.0.file.filename") {
		return refuse(a, whyCOLO)
	}
	d := Drive{Index: -1}
	d.File = o.String("file", "")
	d.ID = o.ID()
	iface := o.String("if", "ide")
	mediaGiven := o.Has("media")
	d.Media = o.String("media", "disk")
	d.Format = o.String("format", "")
	d.Cache = o.String("cache", "writeback")
	if d.ReadOnly, err = o.Bool("readonly", false); err != nil {
		return err
	}
	idx, err := o.Uint("index", 0)
	if err != nil {
		return err
	}
	hasIndex := o.Has("index")
	discard := o.String("discard", "ignore")
	if err := o.CheckUnused(); err != nil {
		return err
	}
	switch iface {
	case "ide":
		if !hasIndex {
			return refuse(a, "an if=ide drive needs index= (0-3), as libxl writes it")
		}
		if idx > 3 {
			return refuse(a, "index=%d: the IDE controller has positions 0-3 (hda-hdd)", idx)
		}
		d.Index = int(idx)
	case "none":
		if hasIndex {
			return refuse(a, "index= with if=none")
		}
		if d.ID == "" {
			return refuse(a, "an if=none drive needs an id for its -device")
		}
		if !mediaGiven {
			d.Media = "" // the -device (ide-hd or ide-cd) decides
		}
	case "scsi":
		return refuse(a, whyDiskKind)
	case "virtio":
		return refuse(a, "if=virtio: write -drive if=none,id=ID,... -device virtio-blk-pci,drive=ID")
	case "sd", "pflash", "mtd", "floppy":
		return refuse(a, "if=%s: only IDE, AHCI, NVMe and virtio-blk disks are served", iface)
	default:
		return refuse(a, "if=%s: want ide or none", iface)
	}
	switch d.Media {
	case "":
	case "disk":
		if d.File == "" {
			return refuse(a, "a disk needs file=")
		}
		if d.ReadOnly {
			return refuse(a, "a read-only IDE disk is not possible (QEMU: \"Can't use a read-only drive\"): make the disk=[...] entry rw, or a cdrom")
		}
	case "cdrom":
		// QEMU opens if=ide CD-ROMs read-only whatever readonly= says.
		d.ReadOnly = true
	default:
		return refuse(a, "media=%s: want disk or cdrom", d.Media)
	}
	if d.File != "" {
		switch d.Format {
		case "raw", "qcow2":
		case "":
			return refuse(a, "format= missing: give format=raw or format=qcow2 (probing a guest-writable image is unsafe)")
		default:
			return refuse(a, "format=%s: only raw and qcow2 images are served (xl.cfg disk format=)", d.Format)
		}
	} else if d.Format != "" {
		return refuse(a, "format= without file=")
	}
	if _, err := block.ParseCache(d.Cache); err != nil {
		return refuse(a, "%v", err)
	}
	switch discard {
	case "ignore", "off":
	case "unmap", "on":
		d.Discard = true
	default:
		return refuse(a, "discard=%s: want ignore or unmap", discard)
	}
	for _, e := range c.Drives {
		if d.ID != "" && e.ID == d.ID {
			return fmt.Errorf("-drive id=%s given twice", d.ID)
		}
		if d.Index >= 0 && e.Index == d.Index {
			return refuse(a, "index=%d used twice", d.Index)
		}
	}
	c.Drives = append(c.Drives, d)
	return nil
}

// parseIDEDevice takes -device ide-hd/ide-cd,id=ID,drive=DRIVE,bus=ide.B,unit=U.
func (c *Config) parseIDEDevice(a qemuopts.Arg, o *qemuopts.Opts, drv string) error {
	dev := IDEDevice{Driver: drv, ID: o.ID(), Drive: o.String("drive", "")}
	bus := o.String("bus", "")
	unit, err := o.Uint("unit", 0)
	if err != nil {
		return err
	}
	if err := o.CheckUnused(); err != nil {
		return err
	}
	if id, port, ok := strings.Cut(bus, "."); ok && id != "ide" {
		return c.parseAHCIDevice(a, dev, id, port, unit)
	}
	switch {
	case bus == "ide.0":
	case bus == "ide.1":
		dev.Bus = 1
	default:
		return refuse(a, "bus=%s: want ide.0 or ide.1 (the PIIX3 IDE buses)", bus)
	}
	if unit > 1 {
		return refuse(a, "unit=%d: want 0 (master) or 1 (slave)", unit)
	}
	dev.Unit = int(unit)
	if dev.Drive == "" && drv == "ide-hd" {
		return refuse(a, "an ide-hd needs drive=")
	}
	c.IDEDevices = append(c.IDEDevices, dev)
	return nil
}

// parseAHCIDevice takes -device ide-hd,bus=ID.N,unit=0,drive=D (libxl_dm.c
// for hdtype="ahci": ide-hd,bus=ahci0.N,unit=0,drive=ahcidisk-N) and an
// ide-cd on a port (ATAPI over AHCI; libxl itself puts CD-ROMs on the
// IDE buses, an admin's device_model_args may not).
func (c *Config) parseAHCIDevice(a qemuopts.Arg, dev IDEDevice, id, port string, unit uint64) error {
	found := false
	for _, h := range c.AHCI {
		found = found || h.ID == id
	}
	if !found {
		return refuse(a, "bus=%s.%s: no -device ahci,id=%s before it (the IDE buses are ide.0 and ide.1)", id, port, id)
	}
	n, err := qemuopts.ParseUint(port)
	if err != nil || n > 5 {
		return refuse(a, "bus=%s.%s: an AHCI controller's ports are %s.0 to %s.5", id, port, id, id)
	}
	if unit != 0 {
		return refuse(a, "unit=%d: an AHCI port has unit 0 only", unit)
	}
	if dev.Drive == "" && dev.Driver == "ide-hd" {
		return refuse(a, "an ide-hd needs drive=")
	}
	dev.Bus, dev.AHCI = int(n), id
	c.IDEDevices = append(c.IDEDevices, dev)
	return nil
}

// parseAHCI takes -device ahci,id=ID[,addr=SLOT].
func (c *Config) parseAHCI(a qemuopts.Arg, o *qemuopts.Opts) error {
	h := AHCIController{ID: o.ID(), Addr: o.String("addr", "")}
	if err := o.CheckUnused(); err != nil {
		return err
	}
	if h.ID == "" {
		return refuse(a, "id= missing: the disks name the controller's ports ID.0 to ID.5")
	}
	if len(c.AHCI) > 0 {
		return refuse(a, "a second AHCI controller (libxl writes one)")
	}
	if h.Addr != "" {
		slot, err := qemuopts.ParseUint(strings.TrimSuffix(h.Addr, ".0"))
		if err != nil || slot < 3 || slot > 31 {
			return refuse(a, "addr=%s: want a free slot in 0x3..0x1f (SLOT or SLOT.0)", h.Addr)
		}
		h.Addr = fmt.Sprintf("%x", slot) // the board's form
	}
	c.AHCI = append(c.AHCI, h)
	return nil
}

// checkDisks runs once the command line is read: every device's drive
// exists, is if=none and backs one device; no two disks share a position.
func (c *Config) checkDisks() error {
	used := map[string]string{}
	pos := map[int]string{}
	for _, d := range c.Drives {
		if d.Index >= 0 {
			pos[d.Index] = "-drive index=" + fmt.Sprint(d.Index)
		}
	}
	for _, dev := range c.IDEDevices {
		opt := fmt.Sprintf("-device %s,id=%s", dev.Driver, dev.ID)
		if dev.Drive != "" {
			var drv *Drive
			for i := range c.Drives {
				if c.Drives[i].ID == dev.Drive {
					drv = &c.Drives[i]
				}
			}
			switch {
			case drv == nil:
				return &Refusal{Option: opt, Why: fmt.Sprintf("no -drive id=%s", dev.Drive)}
			case drv.Index >= 0:
				return &Refusal{Option: opt, Why: fmt.Sprintf("drive %s is an if=ide drive already placed at index %d", dev.Drive, drv.Index)}
			case used[dev.Drive] != "":
				return &Refusal{Option: opt, Why: fmt.Sprintf("drive %s is used by %s already", dev.Drive, used[dev.Drive])}
			case dev.Driver == "ide-hd" && drv.Media == "cdrom":
				return &Refusal{Option: opt, Why: fmt.Sprintf("drive %s is a CD-ROM: use ide-cd", dev.Drive)}
			case dev.Driver == "ide-hd" && (drv.File == "" || drv.ReadOnly):
				return &Refusal{Option: opt, Why: fmt.Sprintf("drive %s: an IDE disk needs a writable file (QEMU: \"Can't use a read-only drive\")", dev.Drive)}
			}
			drv.Media = "disk"
			if dev.Driver == "ide-cd" {
				drv.Media, drv.ReadOnly = "cdrom", true
			}
			used[dev.Drive] = dev.ID
			if dev.ID == "" {
				used[dev.Drive] = opt
			}
		}
		i := dev.Bus*2 + dev.Unit
		if dev.AHCI != "" {
			i = 100 + dev.Bus
			if p := pos[i]; p != "" {
				return &Refusal{Option: opt, Why: fmt.Sprintf("%s.%d is taken by %s", dev.AHCI, dev.Bus, p)}
			}
		} else if p := pos[i]; p != "" {
			return &Refusal{Option: opt, Why: fmt.Sprintf("ide.%d unit %d is taken by %s", dev.Bus, dev.Unit, p)}
		}
		pos[i] = opt
	}
	for _, dev := range c.PCIDisks {
		opt := fmt.Sprintf("-device %s,drive=%s", dev.Driver, dev.Drive)
		var drv *Drive
		for i := range c.Drives {
			if c.Drives[i].ID == dev.Drive {
				drv = &c.Drives[i]
			}
		}
		switch {
		case drv == nil:
			return &Refusal{Option: opt, Why: fmt.Sprintf("no -drive id=%s", dev.Drive)}
		case drv.Index >= 0:
			return &Refusal{Option: opt, Why: fmt.Sprintf("drive %s is an if=ide drive already placed at index %d: use if=none", dev.Drive, drv.Index)}
		case used[dev.Drive] != "":
			return &Refusal{Option: opt, Why: fmt.Sprintf("drive %s is used by %s already", dev.Drive, used[dev.Drive])}
		case drv.Media == "cdrom":
			return &Refusal{Option: opt, Why: fmt.Sprintf("drive %s is a CD-ROM: %s serves disks", dev.Drive, dev.Driver)}
		case drv.File == "":
			return &Refusal{Option: opt, Why: fmt.Sprintf("drive %s has no file=", dev.Drive)}
		case drv.ReadOnly:
			return &Refusal{Option: opt, Why: fmt.Sprintf("drive %s: a read-only %s is not served: drop readonly=", dev.Drive, dev.Driver)}
		}
		drv.Media = "disk"
		used[dev.Drive] = opt
	}
	return nil
}

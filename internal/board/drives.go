package board

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"godm/block"
	"godm/devices/ide"
	"godm/devices/savestate"
	"godm/devices/xenplatform"
	"godm/irq"
)

// DriveOptions are a -drive back end's options as godm serves them.
type DriveOptions struct {
	// ID names the drive (-drive id=, or the board's name for an
	// if=ide drive).
	ID string
	// File is the image; "" is an empty CD-ROM drive.
	File string
	// Format is raw or qcow2 (required with File).
	Format   string
	ReadOnly bool
	Cache    block.Cache
	// Media is "disk" or "cdrom".
	Media string
	// Discard passes guest discards to the image (discard=unmap).
	Discard bool
	// Inactive opens the image without its locks and serving no I/O
	// until Board.ActivateDrives (a migration's destination).
	Inactive bool
}

// Drive is a block back end on the board (QEMU's -drive): an opened
// image, or none for an empty CD-ROM drive. The board owns it: it is
// closed (its image lock released) when the device using it is unplugged
// or the board closes.
type Drive struct {
	Opts DriveOptions

	mu    sync.Mutex
	blk   *block.Drive
	user  string // id of the device holding it
	close sync.Once
}

// OpenDrive opens o's image (none for an empty CD-ROM drive).
func OpenDrive(o DriveOptions) (*Drive, error) {
	switch o.Media {
	case "disk", "cdrom":
	default:
		return nil, fmt.Errorf("drive '%s': media=%s: want disk or cdrom", o.ID, o.Media)
	}
	d := &Drive{Opts: o}
	if o.File == "" {
		if o.Media != "cdrom" {
			return nil, fmt.Errorf("drive '%s': a disk needs a file", o.ID)
		}
		return d, nil
	}
	blk, err := block.Open(o.File, block.Options{Format: o.Format, ReadOnly: o.ReadOnly, Cache: o.Cache, Inactive: o.Inactive})
	if err != nil {
		return nil, fmt.Errorf("drive '%s': %w", o.ID, err)
	}
	d.blk = blk
	return d, nil
}

// Block returns the opened image (nil: none).
func (d *Drive) Block() *block.Drive {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.blk
}

// SetBlock replaces the image (a CD-ROM's medium change); the old one is
// closed.
func (d *Drive) SetBlock(b *block.Drive, file, format string) error {
	d.mu.Lock()
	old := d.blk
	d.blk = b
	d.Opts.File, d.Opts.Format = file, format
	d.mu.Unlock()
	if old != nil && old != b {
		return old.Close()
	}
	return nil
}

// Close closes the image; it is idempotent.
func (d *Drive) Close() error {
	var err error
	d.close.Do(func() {
		d.mu.Lock()
		b := d.blk
		d.blk = nil
		d.mu.Unlock()
		if b != nil {
			err = b.Close()
		}
	})
	return err
}

// claim marks the drive used by device id (a drive backs one device).
func (d *Drive) claim(id string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.user != "" {
		return fmt.Errorf("Drive '%s' is already in use by '%s'", d.Opts.ID, d.user)
	}
	d.user = id
	return nil
}

// IDEDrive is an ide-hd or ide-cd device: where it sits and its drive.
type IDEDrive struct {
	Ctl        *ide.Controller
	Bus, Unit  int
	Kind       ide.Kind
	Drive      *Drive
	Controller string // the controller's device id
}

// Index is QEMU's if=ide index of the position (bus*2 + unit).
func (d *IDEDrive) Index() int { return d.Bus*2 + d.Unit }

// PIIX3IDE is the piix3-ide device: the controller.
type PIIX3IDE struct {
	*ide.Controller
}

func newPIIX3IDE(b *Board, p Props, pl *Plugged) error {
	if err := fixedPCIAddr(p, ide.Slot, ide.Function); err != nil {
		return err
	}
	if b.env.ISA == nil || b.env.Memory == nil {
		return errors.New("the machine has no ISA interrupts or guest memory")
	}
	c, err := ide.New(ide.Config{Memory: b.env.Memory, IRQ: [2]irq.Line{b.env.ISA(ide.IRQ(0)), b.env.ISA(ide.IRQ(1))}})
	if err != nil {
		return err
	}
	pl.Dev = &PIIX3IDE{c}
	pl.onUnplug(c.Close)
	if err := b.addPCI(pl, c.Function(), ide.Slot, ide.Function, false); err != nil {
		return err
	}
	for i := 0; ; i++ {
		base, size, h := c.Handler(i)
		if h == nil {
			break
		}
		if err := b.registerPIO(pl, base, size, h); err != nil {
			return err
		}
	}
	pl.resetWith(c.Function(), c.Reset)
	return nil
}

// ideBus parses "ide.N" and finds the controller (QEMU names the PIIX
// buses ide.0 and ide.1).
func (b *Board) ideController() (*Plugged, *ide.Controller) {
	for _, q := range b.Devices() {
		if c, ok := q.Dev.(*PIIX3IDE); ok {
			return q, c.Controller
		}
	}
	return nil, nil
}

func newIDEDrive(kind ide.Kind) func(b *Board, p Props, pl *Plugged) error {
	return func(b *Board, p Props, pl *Plugged) error {
		busName := p.String("bus", "")
		if acp, actl, port, ok, err := b.ahciBus(busName); ok || err != nil {
			if err != nil {
				return err
			}
			return b.newAHCIDrive(p, pl, acp, actl, port, kind == ide.CD)
		}
		cp, ctl := b.ideController()
		if ctl == nil {
			return errors.New("No 'IDE' bus found for device")
		}
		unit, err := p.Uint("unit", 0)
		if err != nil {
			return err
		}
		bus := 0
		switch busName {
		case "ide.0", "":
		case "ide.1":
			bus = 1
		default:
			return fmt.Errorf("Bus '%s' not found (godm's IDE buses are ide.0 and ide.1; an ahci device with id ID has ID.0 to ID.5)", busName)
		}
		if unit > 1 {
			return fmt.Errorf("property 'unit': %d is not 0 or 1", unit)
		}
		if busName == "" {
			// QEMU takes the first free position.
			bus, unit = -1, 0
			for i := 0; i < 4 && bus < 0; i++ {
				if k, _ := ctl.DriveAt(i/2, i%2); k == ide.None {
					bus, unit = i/2, uint64(i%2)
				}
			}
			if bus < 0 {
				return errors.New("no free IDE position")
			}
		}
		id := p.String("drive", "")
		drv := b.env.Drives[id]
		switch {
		case id == "" && kind == ide.HD:
			return errors.New("drive property not set")
		case id != "" && drv == nil:
			return fmt.Errorf("Property '%s.drive' can't find value '%s'", kind, id)
		}
		if drv != nil {
			if err := drv.claim(pl.ID); err != nil {
				return err
			}
		} else {
			drv = &Drive{Opts: DriveOptions{ID: pl.ID, Media: "cdrom", ReadOnly: true}}
		}
		if err := ctl.Attach(bus, int(unit), ide.DriveConfig{Kind: kind, Drive: drv.Block(), Discard: drv.Opts.Discard}); err != nil {
			return err
		}
		pl.Dev = &IDEDrive{Ctl: ctl, Bus: bus, Unit: int(unit), Kind: kind, Drive: drv, Controller: cp.ID}
		pl.onUnplug(func() error {
			_, derr := ctl.Detach(bus, int(unit))
			return errors.Join(derr, drv.Close())
		})
		return nil
	}
}

// IDEDrives returns the board's ide-hd and ide-cd devices.
func (b *Board) IDEDrives() []*Plugged {
	var out []*Plugged
	for _, p := range b.Devices() {
		if _, ok := p.Dev.(*IDEDrive); ok {
			out = append(out, p)
		}
	}
	return out
}

// unplugDisks is the Xen platform device's unplug of emulated disks
// (QEMU 7.2 hw/i386/xen/xen_platform.c unplug_disks and
// pci_xen_ide_unplug): every IDE hard disk, or with only the auxiliary
// bit every one but the primary master, is flushed and removed (its image
// closed); CD-ROM drives stay. The controller is then reset.
func (b *Board) unplugDisks(mask xenplatform.UnplugMask) error {
	if mask&(xenplatform.UnplugDisks|xenplatform.UnplugAuxDisks) == 0 {
		return nil
	}
	aux := mask&xenplatform.UnplugAuxDisks != 0 && mask&xenplatform.UnplugDisks == 0
	var errs []error
	touched := map[string]bool{}
	for _, p := range b.IDEDrives() {
		d := p.Dev.(*IDEDrive)
		if d.Kind != ide.HD || (aux && d.Index() == 0) {
			continue
		}
		touched[d.Controller] = true
		errs = append(errs, b.remove(p.ID, true))
	}
	// AHCI disks go the same way, as later QEMU's unplug_disks does (it
	// added PCI_CLASS_STORAGE_SATA beside IDE for pci_xen_ide_unplug;
	// QEMU 7.2 leaves them, and the guest would then reach one image
	// through two drivers). Port 0 plays the primary master for the
	// auxiliary-only unplug (not checked against QEMU).
	for _, p := range b.AHCIDrives() {
		d := p.Dev.(*AHCIDrive)
		if d.CD || aux && d.Port == 0 {
			continue
		}
		touched[d.Controller] = true
		errs = append(errs, b.remove(p.ID, true))
	}
	ids := make([]string, 0, len(touched))
	for id := range touched {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if c := b.Device(id); c != nil && c.reset != nil {
			c.reset() // pci_device_reset
		}
	}
	return errors.Join(errs...)
}

// platformUnplugger removes the board's emulated disks, then passes the
// request on (the machine logs it).
type platformUnplugger struct {
	b    *Board
	next PVUnplugger
}

func (u platformUnplugger) Unplug(mask xenplatform.UnplugMask) error {
	err := u.b.unplugDisks(mask)
	if u.next != nil {
		err = errors.Join(err, u.next.Unplug(mask))
	}
	return err
}

// driveBlocks returns the open images of the drive table in id order.
func (b *Board) driveBlocks() []*block.Drive {
	ids := make([]string, 0, len(b.env.Drives))
	for id := range b.env.Drives {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var out []*block.Drive
	for _, id := range ids {
		if blk := b.env.Drives[id].Block(); blk != nil {
			out = append(out, blk)
		}
	}
	return out
}

// InactivateDrives hands every open image over to another process: its
// writes made durable, its locks released, no I/O served (the source's
// side of a live migration, once the devices' state is saved: QEMU
// bdrv_inactivate_all). On an error the images it already handed over
// are taken back.
func (b *Board) InactivateDrives() error {
	blks := b.driveBlocks()
	for i, blk := range blks {
		if err := blk.Inactivate(); err != nil {
			for _, done := range blks[:i] {
				_ = done.Activate()
			}
			return err
		}
	}
	return nil
}

// ActivateDrives takes every inactive image back: its locks, its
// metadata re-read (QEMU bdrv_activate_all, at cont or at the end of an
// incoming migration). It fails while another process holds an image.
func (b *Board) ActivateDrives() error {
	var errs []error
	for _, blk := range b.driveBlocks() {
		errs = append(errs, blk.Activate())
	}
	return errors.Join(errs...)
}

// closeDrives closes every drive of the table (those no device holds).
func (b *Board) closeDrives() error {
	var errs []error
	ids := make([]string, 0, len(b.env.Drives))
	for id := range b.env.Drives {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		errs = append(errs, b.env.Drives[id].Close())
	}
	return errors.Join(errs...)
}

// IDEIndexEntry is the ide-hd or ide-cd entry QEMU creates for -drive
// if=ide,index=N (bus N/2, unit N%2).
func IDEIndexEntry(index int, media, driveID string) (Entry, error) {
	if index < 0 || index > 3 {
		return Entry{}, fmt.Errorf("drive '%s': index=%d: the IDE controller has positions 0-3", driveID, index)
	}
	drv := "ide-hd"
	if strings.EqualFold(media, "cdrom") {
		drv = "ide-cd"
	}
	return Entry{Driver: drv, Props: map[string]string{
		"bus": fmt.Sprintf("ide.%d", index/2), "unit": fmt.Sprint(index % 2), "drive": driveID,
	}}, nil
}

// ideDriveRecord names an ide-hd/ide-cd snapshot record: the drive's
// state lives in the controller's record; this one only checks that the
// restoring board has the drive at the same position.
const ideDriveRecord = "ide-drive"

// Snapshot implements devices.Snapshotter.
func (d *IDEDrive) Snapshot() ([]byte, error) {
	var w savestate.Writer
	w.U8(byte(d.Bus))
	w.U8(byte(d.Unit))
	w.U8(byte(d.Kind))
	return savestate.Record(ideDriveRecord, 1, w.Out()), nil
}

// Restore implements devices.Snapshotter.
func (d *IDEDrive) Restore(b []byte) error {
	_, r, err := savestate.Open(b, ideDriveRecord, 1)
	if err != nil {
		return err
	}
	p := [3]byte{r.U8(), r.U8(), r.U8()}
	if err := r.Done(); err != nil {
		return err
	}
	if p != [3]byte{byte(d.Bus), byte(d.Unit), byte(d.Kind)} {
		return fmt.Errorf("ide drive: the snapshot's is %v at %d.%d: %w", ide.Kind(p[2]), p[0], p[1], savestate.ErrFormat)
	}
	return nil
}

// ErrMediumLocked is wrapped when the guest holds a CD-ROM's tray
// locked: the guest got an eject request and may release it.
var ErrMediumLocked = errors.New("locked")

// BlockState is one block device as query-block shows it.
type BlockState struct {
	Drive  *Drive
	Device string // the drive's id (QEMU's BlockBackend name)
	QdevID string // the ide-hd/ide-cd id ("" if the board named it)
	Kind   ide.Kind
	Locked bool
	Tray   bool // the tray is open (CD-ROM only)
}

// Blocks lists the IDE and AHCI drives, by drive id.
func (b *Board) Blocks() []BlockState {
	var out []BlockState
	for _, p := range b.IDEDrives() {
		d := p.Dev.(*IDEDrive)
		st := BlockState{Drive: d.Drive, Device: d.Drive.Opts.ID, QdevID: p.ID, Kind: d.Kind}
		if d.Kind == ide.CD {
			st.Tray, st.Locked, _ = d.Ctl.TrayState(d.Bus, d.Unit)
		}
		out = append(out, st)
	}
	for _, p := range b.AHCIDrives() {
		d := p.Dev.(*AHCIDrive)
		st := BlockState{Drive: d.Drive, Device: d.Drive.Opts.ID, QdevID: p.ID, Kind: ide.HD}
		if d.CD {
			st.Kind = ide.CD
			st.Tray, st.Locked, _ = d.Ctl.TrayState(d.Port)
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, c BlockState) int { return strings.Compare(a.Device, c.Device) })
	return out
}

// cdMedia is a CD-ROM drive's media operations on its controller.
type cdMedia interface {
	TrayState() (open, locked bool, err error)
	OpenTray(force bool) (*block.Drive, error)
	InsertMedium(*block.Drive) error
}

type ideCD struct{ d *IDEDrive }

func (c ideCD) TrayState() (bool, bool, error) { return c.d.Ctl.TrayState(c.d.Bus, c.d.Unit) }
func (c ideCD) OpenTray(force bool) (*block.Drive, error) {
	return c.d.Ctl.OpenTray(c.d.Bus, c.d.Unit, force)
}
func (c ideCD) InsertMedium(b *block.Drive) error { return c.d.Ctl.InsertMedium(c.d.Bus, c.d.Unit, b) }

type ahciCD struct{ d *AHCIDrive }

func (c ahciCD) TrayState() (bool, bool, error)            { return c.d.Ctl.TrayState(c.d.Port) }
func (c ahciCD) OpenTray(force bool) (*block.Drive, error) { return c.d.Ctl.OpenTray(c.d.Port, force) }
func (c ahciCD) InsertMedium(b *block.Drive) error         { return c.d.Ctl.InsertMedium(c.d.Port, b) }

// cdByID finds a CD-ROM drive (on IDE or AHCI) by its device id or its
// drive's id.
func (b *Board) cdByID(id string) (*Drive, cdMedia, error) {
	for _, p := range b.IDEDrives() {
		d := p.Dev.(*IDEDrive)
		if p.ID == id || d.Drive.Opts.ID == id {
			if d.Kind != ide.CD {
				return nil, nil, fmt.Errorf("Device '%s' is not removable", id)
			}
			return d.Drive, ideCD{d}, nil
		}
	}
	for _, p := range b.AHCIDrives() {
		d := p.Dev.(*AHCIDrive)
		if p.ID == id || d.Drive.Opts.ID == id {
			if !d.CD {
				return nil, nil, fmt.Errorf("Device '%s' is not removable", id)
			}
			return d.Drive, ahciCD{d}, nil
		}
	}
	return nil, nil, fmt.Errorf("Device '%s' not found", id)
}

// OpenTray opens a CD-ROM drive's tray and removes its medium (QMP's
// eject; QEMU do_open_tray then blockdev_remove_medium), closing the
// image. moved reports that the tray was closed before. A tray the guest
// locked is refused (wrapping ErrMediumLocked) unless force.
func (b *Board) OpenTray(id string, force bool) (moved bool, err error) {
	drv, m, err := b.cdByID(id)
	if err != nil {
		return false, err
	}
	open, _, err := m.TrayState()
	if err != nil {
		return false, err
	}
	if _, err := m.OpenTray(force); err != nil {
		if errors.Is(err, ide.ErrLocked) {
			return false, fmt.Errorf("Device '%s' is %w and force was not specified, wait for tray to open and try again", id, ErrMediumLocked)
		}
		return false, err
	}
	return !open, drv.SetBlock(nil, "", "")
}

// ChangeMedium puts the image o names into a CD-ROM drive (QMP's
// blockdev-change-medium: open the tray, remove the old medium, insert,
// close the tray). opened reports that the tray had to be opened first.
func (b *Board) ChangeMedium(id string, o DriveOptions) (opened bool, err error) {
	drv, m, err := b.cdByID(id)
	if err != nil {
		return false, err
	}
	o.Media, o.ReadOnly = "cdrom", true
	nd, err := OpenDrive(o)
	if err != nil {
		return false, err
	}
	if opened, err = b.OpenTray(id, false); err != nil {
		nd.Close()
		return false, err
	}
	blk := nd.Block()
	if err := m.InsertMedium(blk); err != nil {
		nd.Close()
		return opened, err
	}
	return opened, drv.SetBlock(blk, o.File, o.Format)
}

package dmcontract

import (
	"io"
	"os"
	"strings"

	"godm/internal/qmp"
)

// StateSaver is the part of a Host that saves and loads the devices'
// state (xen-save-devices-state, xen-load-devices-state, -incoming).
type StateSaver interface {
	// SaveState writes the devices' state as one stream; LoadState reads
	// one and restores the devices from it (refusing, with nothing
	// changed, a stream for another machine).
	SaveState(w io.Writer) error
	LoadState(r io.Reader) error
}

// ImageReleaser is the part of a Host that lets go of its disk images
// (their locks) once a live migration's device state is saved, so that
// the destination can open them (QEMU: bdrv_inactivate_all in
// qmp_xen_save_devices_state, when live and the VM was stopped).
type ImageReleaser interface {
	ReleaseImages() error
}

// ImageActivator is the part of a Host that takes its disk images back
// (their locks, their metadata re-read) before the guest runs again: a
// failed migration's source at cont (QEMU qmp_cont: bdrv_activate_all,
// whose error leaves the VM stopped).
type ImageActivator interface {
	ActivateImages() error
}

// OpenFunc opens a file named in a QMP command (a path, or "/dev/fdset/N"
// for a descriptor given with add-fd) with open(2)'s flags.
type OpenFunc func(name string, flag int, perm os.FileMode) (*os.File, error)

// saver returns the host's StateSaver, or a QMP error naming the command.
func (s *State) saver(r *qmp.Request) (StateSaver, error) {
	if err := s.needHost(r); err != nil {
		return nil, err
	}
	sv, ok := s.host.(StateSaver)
	if !ok {
		return nil, qmp.Errorf("'%s' is not available: this machine cannot save its devices", r.Command)
	}
	return sv, nil
}

// stateCommands adds the device-state commands libxl sends
// (libxl_qmp.c: stop, add-fd, xen-save-devices-state at xl save and
// migrate; xen-load-devices-state for COLO).
func (s *State) stateCommands(m map[string]qmp.Handler) {
	m["xen-save-devices-state"] = func(r *qmp.Request) (any, error) {
		a := qmp.ArgsOf(r.Args)
		name, err := a.String("filename")
		if err != nil {
			return nil, err
		}
		live, err := a.OptBool("live", true) // qapi/migration.json: default true
		if err != nil {
			return nil, err
		}
		if err := a.Check(); err != nil {
			return nil, err
		}
		sv, err := s.saver(r)
		if err != nil {
			return nil, err
		}
		// QEMU migration/savevm.c qmp_xen_save_devices_state: a running
		// VM is stopped for the save and started again after it.
		wasRunning := s.Status() == StatusRunning
		if wasRunning {
			s.Stop()
			defer s.Cont()
		}
		f, err := s.open(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o660)
		if err != nil {
			return nil, qmp.Errorf("Could not open VM state file")
		}
		err = sv.SaveState(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, qmp.Errorf("State saving failed: %v", err)
		}
		// libxl stops the VM before saving and sends cont if the
		// migration fails: a live save of a stopped VM hands the
		// images over to the destination.
		if live && !wasRunning {
			if rel, ok := s.host.(ImageReleaser); ok {
				if err := rel.ReleaseImages(); err != nil {
					return nil, qmp.Errorf("releasing the disk images: %v", err)
				}
			}
		}
		return nil, nil
	}
	m["xen-load-devices-state"] = func(r *qmp.Request) (any, error) {
		a := qmp.ArgsOf(r.Args)
		name, err := a.String("filename")
		if err != nil {
			return nil, err
		}
		if err := a.Check(); err != nil {
			return nil, err
		}
		sv, err := s.saver(r)
		if err != nil {
			return nil, err
		}
		// QEMU qmp_xen_load_devices_state: the guest must be paused; its
		// RAM was loaded by Xen's tools already.
		if s.Status() == StatusRunning {
			return nil, qmp.Errorf("Cannot update device state while vm is running")
		}
		f, err := s.open(name, os.O_RDONLY, 0)
		if err != nil {
			return nil, qmp.Errorf("Could not open '%s': %v", name, err)
		}
		defer f.Close()
		if err := sv.LoadState(f); err != nil {
			// QEMU answers QERR_IO_ERROR; godm says why as well.
			return nil, qmp.Errorf("An IO error has occurred: %v", err)
		}
		return nil, nil
	}
}

// open opens a file a command names: "/dev/fdset/N" is a descriptor a
// client passed with add-fd (libxl's xen-save-devices-state; QEMU
// qemu_open), anything else a path.
func (s *State) open(name string, flag int, perm os.FileMode) (*os.File, error) {
	if s.openFile != nil {
		return s.openFile(name, flag, perm)
	}
	if strings.HasPrefix(name, "/dev/fdset/") {
		return s.fds.Open(name, flag&^(os.O_CREATE|os.O_TRUNC))
	}
	return os.OpenFile(name, flag, perm)
}

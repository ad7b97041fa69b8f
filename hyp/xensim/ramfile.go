package xensim

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// RAMBacking places one RAM region of a domain in the file RAMFile returns.
type RAMBacking struct {
	Region
	// Offset is the region's offset in the file.
	Offset int64
}

// RAMFile returns a new file descriptor for the memfd backing the domain's
// RAM and where each region lives in it, so that another process can share
// the guest's memory (the real-guest harness gives it to QEMU as the
// guest's RAM, so that the simulated guest and QEMU's vCPU see the same
// bytes). The caller owns the returned file.
func (d *Domain) RAMFile() (*os.File, []RAMBacking, error) {
	d.s.mu.RLock()
	defer d.s.mu.RUnlock()
	if d.dead || d.ram == nil {
		return nil, nil, errors.New("xensim: domain has no RAM")
	}
	fd, err := unix.FcntlInt(uintptr(d.ram.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("xensim: dup RAM memfd: %w", err)
	}
	regs := make([]RAMBacking, len(d.regions))
	for i, r := range d.regions {
		regs[i] = RAMBacking{Region: Region{GPA: r.gpa, Size: r.size}, Offset: r.off}
	}
	return os.NewFile(uintptr(fd), fmt.Sprintf("xensim-dom%d-ram", d.id)), regs, nil
}

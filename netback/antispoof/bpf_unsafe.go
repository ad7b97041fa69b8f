package antispoof

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// The few bpf(2) commands the filter needs, issued directly: the program
// is built with cilium/ebpf's asm package, but its loader (package ebpf,
// with BTF and ELF support) would add 2 MB to godm's binary for four
// system calls. Layouts: Linux include/uapi/linux/bpf.h union bpf_attr.
const (
	bpfMapCreate     = 0
	bpfMapLookupElem = 1
	bpfMapUpdateElem = 2
	bpfProgLoad      = 5
	bpfLinkCreate    = 28

	bpfMapTypeArray     = 2
	bpfProgTypeSchedCLS = 3
	bpfTCXIngress       = 46
	bpfObjNameLen       = 16
	bpfLogSize          = 64 << 10
)

type mapCreateAttr struct {
	mapType, keySize, valueSize, maxEntries, mapFlags, innerMapFD, numaNode uint32
	name                                                                    [bpfObjNameLen]byte
}

type mapElemAttr struct {
	fd    uint32
	_     uint32
	key   uint64
	value uint64
	flags uint64
}

type progLoadAttr struct {
	progType, insnCnt uint32
	insns, license    uint64
	logLevel, logSize uint32
	logBuf            uint64
	kernVersion       uint32
	progFlags         uint32
	name              [bpfObjNameLen]byte
}

type linkCreateAttr struct {
	progFD, targetIfindex, attachType, flags uint32
	relative                                 uint32
	_                                        uint32
	expectedRevision                         uint64
	_                                        [32]byte
}

func bpf(cmd int, attr unsafe.Pointer, size uintptr) (int, error) {
	r, _, e := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(attr), size)
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

func objName(s string) (n [bpfObjNameLen]byte) {
	copy(n[:bpfObjNameLen-1], s)
	return n
}

// newArrayMap makes a one-entry array map of valueSize bytes.
func newArrayMap(name string, valueSize uint32) (int, error) {
	a := mapCreateAttr{mapType: bpfMapTypeArray, keySize: 4, valueSize: valueSize, maxEntries: 1, name: objName(name)}
	fd, err := bpf(bpfMapCreate, unsafe.Pointer(&a), unsafe.Sizeof(a))
	if err == nil {
		unix.CloseOnExec(fd)
	}
	return fd, err
}

func mapUpdate(fd int, value []byte) error {
	var key uint32
	a := mapElemAttr{fd: uint32(fd), key: uint64(uintptr(unsafe.Pointer(&key))), value: uint64(uintptr(unsafe.Pointer(&value[0])))}
	_, err := bpf(bpfMapUpdateElem, unsafe.Pointer(&a), unsafe.Sizeof(a))
	runtime.KeepAlive(value)
	runtime.KeepAlive(&key)
	return err
}

func mapLookup(fd int, value []byte) error {
	var key uint32
	a := mapElemAttr{fd: uint32(fd), key: uint64(uintptr(unsafe.Pointer(&key))), value: uint64(uintptr(unsafe.Pointer(&value[0])))}
	_, err := bpf(bpfMapLookupElem, unsafe.Pointer(&a), unsafe.Sizeof(a))
	runtime.KeepAlive(value)
	runtime.KeepAlive(&key)
	return err
}

// loadSchedCLS loads a classifier. A refusal by the verifier is one line:
// the errno and the last line of the verifier's log.
func loadSchedCLS(name string, insns asm.Instructions) (int, error) {
	var buf bytes.Buffer
	if err := insns.Marshal(&buf, hostOrder()); err != nil {
		return -1, err
	}
	code := buf.Bytes()
	lic := []byte("MIT\x00")
	log := make([]byte, bpfLogSize)
	a := progLoadAttr{
		progType: bpfProgTypeSchedCLS,
		insnCnt:  uint32(len(code) / asm.InstructionSize),
		insns:    uint64(uintptr(unsafe.Pointer(&code[0]))),
		license:  uint64(uintptr(unsafe.Pointer(&lic[0]))),
		name:     objName(name),
	}
	fd, err := bpf(bpfProgLoad, unsafe.Pointer(&a), unsafe.Sizeof(a))
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EINVAL) {
		// Again with the verifier's log, to say why.
		a.logLevel, a.logSize, a.logBuf = 1, uint32(len(log)), uint64(uintptr(unsafe.Pointer(&log[0])))
		if fd2, err2 := bpf(bpfProgLoad, unsafe.Pointer(&a), unsafe.Sizeof(a)); err2 == nil {
			fd, err = fd2, nil
		} else if l := lastLine(log); l != "" {
			err = fmt.Errorf("%w (verifier: %s)", err2, l)
		}
	}
	runtime.KeepAlive(code)
	runtime.KeepAlive(lic)
	runtime.KeepAlive(log)
	if err == nil {
		unix.CloseOnExec(fd)
	}
	return fd, err
}

// hostOrder is the host's byte order as asm takes it (LittleEndian or
// BigEndian, not NativeEndian).
func hostOrder() binary.ByteOrder {
	if binary.NativeEndian.Uint16([]byte{1, 0}) == 1 {
		return binary.LittleEndian
	}
	return binary.BigEndian
}

func lastLine(log []byte) string {
	if i := bytes.IndexByte(log, 0); i >= 0 {
		log = log[:i]
	}
	log = bytes.TrimRight(log, "\n")
	if i := bytes.LastIndexByte(log, '\n'); i >= 0 {
		log = log[i+1:]
	}
	return string(log)
}

// attachTCX links the program to the interface's TCX ingress (Linux
// 6.6+). The link lives as long as its fd.
func attachTCX(prog, ifindex int) (int, error) {
	a := linkCreateAttr{progFD: uint32(prog), targetIfindex: uint32(ifindex), attachType: bpfTCXIngress}
	fd, err := bpf(bpfLinkCreate, unsafe.Pointer(&a), unsafe.Sizeof(a))
	if err == nil {
		unix.CloseOnExec(fd)
	}
	return fd, err
}

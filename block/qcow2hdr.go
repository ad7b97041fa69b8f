package block

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// The qcow2 format, from QEMU's docs/interop/qcow2.txt (facts only): a
// big-endian header at offset 0, a one-level L1 table of L2 table offsets,
// L2 tables of cluster descriptors, and a refcount table of refcount block
// offsets. Limits from QEMU block/qcow2.h.
const (
	qcowMagic        = 0x514649fb // "QFI\xfb"
	qcowV2HeaderLen  = 72
	qcowV3HeaderLen  = 104
	minClusterBits   = 9
	maxClusterBits   = 21
	maxL1Bytes       = 32 << 20 // QCOW_MAX_L1_SIZE
	maxRefTableBytes = 8 << 20  // QCOW_MAX_REFTABLE_SIZE
	maxBackingName   = 1023
	maxImageSize     = 1 << 61 // guest size bound (QEMU: QCOW_MAX_CLUSTER_OFFSET-ish, INT64 sectors)

	incDirty     = 1 << 0
	incCorrupt   = 1 << 1
	incDataFile  = 1 << 2
	incCompType  = 1 << 3
	incExtL2     = 1 << 4
	incKnownMask = incDirty | incCorrupt | incDataFile | incCompType | incExtL2
	compatLazy   = 1 << 0

	extEnd        = 0x00000000
	extBackingFmt = 0xe2792aca
	extFeatures   = 0x6803f857
	extDataFile   = 0x44415441
	extCrypto     = 0x0537be77

	l1OffsetMask = 0x00fffffffffffe00
	l2OffsetMask = 0x00fffffffffffe00
	oflagCopied  = 1 << 63
	oflagCompr   = 1 << 62
	oflagZero    = 1 << 0
	rtOffsetMask = 0xfffffffffffffe00
)

// ErrCorrupt is wrapped by every error about a malformed image.
var ErrCorrupt = errors.New("qcow2: corrupt image")

// ErrUnsupported is wrapped by errors about images using a feature godm
// does not implement (or not for writing).
var ErrUnsupported = errors.New("qcow2: unsupported feature")

func corrupt(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, a...)...)
}

func unsupported(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUnsupported}, a...)...)
}

// qcowHeader is a parsed, checked qcow2 header.
type qcowHeader struct {
	version       uint32
	backingOff    uint64
	backingLen    uint32
	clusterBits   uint32
	size          uint64
	l1Size        uint32
	l1Off         uint64
	rtOff         uint64
	rtClusters    uint32
	nbSnapshots   uint32
	snapOff       uint64
	incompat      uint64
	compat        uint64
	autoclear     uint64
	refOrder      uint32
	headerLen     uint32
	backingName   string
	backingFormat string
	featureNames  map[[2]uint8]string // (type, bit) → name from the feature name table
}

func (h *qcowHeader) clusterSize() uint64 { return 1 << h.clusterBits }
func (h *qcowHeader) extL2() bool         { return h.incompat&incExtL2 != 0 }

// l2Entries is the number of entries of one L2 table.
func (h *qcowHeader) l2Entries() uint64 {
	if h.extL2() {
		return h.clusterSize() / 16
	}
	return h.clusterSize() / 8
}

// parseQcowHeader reads and checks a header from the first cluster of an
// image (buf: at least the first min(cluster size, file size) bytes, at
// most 2 MiB) of a file of fileSize bytes. It checks everything that does
// not need more I/O; writable says whether the image is opened for writing.
func parseQcowHeader(buf []byte, fileSize int64, writable bool) (*qcowHeader, error) {
	if len(buf) < qcowV2HeaderLen {
		return nil, corrupt("file too short for a header (%d bytes)", len(buf))
	}
	be := binary.BigEndian
	if be.Uint32(buf) != qcowMagic {
		return nil, corrupt("bad magic %#x", be.Uint32(buf))
	}
	h := &qcowHeader{
		version:     be.Uint32(buf[4:]),
		backingOff:  be.Uint64(buf[8:]),
		backingLen:  be.Uint32(buf[16:]),
		clusterBits: be.Uint32(buf[20:]),
		size:        be.Uint64(buf[24:]),
		l1Size:      be.Uint32(buf[36:]),
		l1Off:       be.Uint64(buf[40:]),
		rtOff:       be.Uint64(buf[48:]),
		rtClusters:  be.Uint32(buf[56:]),
		nbSnapshots: be.Uint32(buf[60:]),
		snapOff:     be.Uint64(buf[64:]),
	}
	if crypt := be.Uint32(buf[32:]); crypt != 0 {
		return nil, unsupported("encrypted images (crypt_method %d)", crypt)
	}
	switch h.version {
	case 2:
		h.refOrder, h.headerLen = 4, qcowV2HeaderLen
	case 3:
		if len(buf) < qcowV3HeaderLen {
			return nil, corrupt("file too short for a version 3 header")
		}
		h.incompat = be.Uint64(buf[72:])
		h.compat = be.Uint64(buf[80:])
		h.autoclear = be.Uint64(buf[88:])
		h.refOrder = be.Uint32(buf[96:])
		h.headerLen = be.Uint32(buf[100:])
	default:
		return nil, unsupported("version %d (want 2 or 3)", h.version)
	}
	if h.clusterBits < minClusterBits || h.clusterBits > maxClusterBits {
		return nil, corrupt("cluster_bits %d outside %d..%d", h.clusterBits, minClusterBits, maxClusterBits)
	}
	cs := h.clusterSize()
	if h.version == 3 && (h.headerLen < qcowV3HeaderLen || uint64(h.headerLen) > cs || h.headerLen%8 != 0) {
		return nil, corrupt("header_length %d", h.headerLen)
	}
	if int(h.headerLen) > len(buf) {
		return nil, corrupt("header_length %d beyond the file", h.headerLen)
	}
	if h.refOrder > 6 {
		return nil, corrupt("refcount_order %d > 6", h.refOrder)
	}
	// Features: the feature name table is read first so that a refusal
	// can name the feature.
	extEndOff := cs
	if h.backingOff != 0 && h.backingOff < extEndOff {
		extEndOff = h.backingOff
	}
	if err := h.parseExtensions(buf, extEndOff); err != nil {
		return nil, err
	}
	if unk := h.incompat &^ incKnownMask; unk != 0 {
		return nil, unsupported("unknown incompatible features %s", h.featureList(0, unk))
	}
	if h.incompat&incDataFile != 0 {
		return nil, unsupported("external data file")
	}
	if h.incompat&incCompType != 0 {
		if h.headerLen <= 104 || buf[104] != 0 {
			return nil, unsupported("compression type other than deflate (zstd)")
		}
	}
	if writable {
		switch {
		case h.incompat&incCorrupt != 0:
			return nil, fmt.Errorf("%w: the corrupt bit is set; repair it with qemu-img check -r all, or open read-only", ErrCorrupt)
		case h.incompat&incDirty != 0:
			return nil, unsupported("the image is dirty (lazy refcounts not written back); repair it with qemu-img check -r all, or open read-only")
		case h.nbSnapshots != 0:
			return nil, unsupported("writing images with internal snapshots (%d); open read-only", h.nbSnapshots)
		}
	}
	// Size and tables.
	if h.size > maxImageSize {
		return nil, corrupt("virtual size %d too large", h.size)
	}
	perL1 := h.l2Entries() * cs
	need := (h.size + perL1 - 1) / perL1
	if uint64(h.l1Size) < need {
		return nil, corrupt("L1 table of %d entries too small for %d bytes (need %d)", h.l1Size, h.size, need)
	}
	if uint64(h.l1Size)*8 > maxL1Bytes {
		return nil, corrupt("L1 table of %d entries larger than %d bytes", h.l1Size, maxL1Bytes)
	}
	fs := uint64(max(fileSize, 0))
	if err := h.checkTable("L1 table", h.l1Off, uint64(h.l1Size)*8, fs); err != nil {
		return nil, err
	}
	if h.rtClusters == 0 {
		return nil, corrupt("no refcount table")
	}
	if uint64(h.rtClusters)*cs > maxRefTableBytes {
		return nil, corrupt("refcount table of %d clusters larger than %d bytes", h.rtClusters, maxRefTableBytes)
	}
	if err := h.checkTable("refcount table", h.rtOff, uint64(h.rtClusters)*cs, fs); err != nil {
		return nil, err
	}
	if h.l1Size > 0 && overlaps(h.l1Off, uint64(h.l1Size)*8, h.rtOff, uint64(h.rtClusters)*cs) {
		return nil, corrupt("L1 table and refcount table overlap")
	}
	if h.nbSnapshots != 0 && (h.snapOff%cs != 0 || h.snapOff == 0 || h.snapOff >= fs) {
		return nil, corrupt("snapshot table offset %#x", h.snapOff)
	}
	// Backing file name: in the first cluster (QEMU reads it from there).
	if h.backingOff != 0 {
		if h.backingLen == 0 || h.backingLen > maxBackingName {
			return nil, corrupt("backing file name length %d", h.backingLen)
		}
		if h.backingOff > cs || uint64(h.backingLen) > cs-h.backingOff || h.backingOff+uint64(h.backingLen) > uint64(len(buf)) {
			return nil, corrupt("backing file name at %#x+%d outside the first cluster", h.backingOff, h.backingLen)
		}
		if h.backingOff < uint64(h.headerLen) {
			return nil, corrupt("backing file name inside the header")
		}
		h.backingName = string(buf[h.backingOff : h.backingOff+uint64(h.backingLen)])
		if strings.IndexByte(h.backingName, 0) >= 0 {
			return nil, corrupt("NUL in the backing file name")
		}
	}
	return h, nil
}

func overlaps(a, an, b, bn uint64) bool { return a < b+bn && b < a+an }

// checkTable checks that a table is cluster-aligned, not the header
// cluster, and inside the file.
func (h *qcowHeader) checkTable(what string, off, n, fileSize uint64) error {
	if n == 0 {
		return nil
	}
	cs := h.clusterSize()
	if off%cs != 0 || off == 0 {
		return corrupt("%s offset %#x not a cluster boundary after the header", what, off)
	}
	if off > fileSize || n > fileSize-off {
		return corrupt("%s at %#x+%d beyond the end of the file (%d)", what, off, n, fileSize)
	}
	return nil
}

func (h *qcowHeader) parseExtensions(buf []byte, end uint64) error {
	be := binary.BigEndian
	off := uint64(h.headerLen)
	if end > uint64(len(buf)) {
		end = uint64(len(buf))
	}
	for n := 0; ; n++ {
		if n > 1024 {
			return corrupt("too many header extensions")
		}
		if off+8 > end {
			// No end marker before the backing name or cluster end:
			// QEMU treats running out as the end.
			return nil
		}
		typ, ln := be.Uint32(buf[off:]), uint64(be.Uint32(buf[off+4:]))
		off += 8
		if typ == extEnd {
			return nil
		}
		if ln > end-off {
			return corrupt("header extension %#x of %d bytes overruns the header area", typ, ln)
		}
		data := buf[off : off+ln]
		switch typ {
		case extBackingFmt:
			if ln > 32 {
				return corrupt("backing format name of %d bytes", ln)
			}
			h.backingFormat = string(data)
		case extFeatures:
			for i := 0; i+48 <= len(data); i += 48 {
				if h.featureNames == nil {
					h.featureNames = map[[2]uint8]string{}
				}
				name := strings.TrimRight(string(data[i+2:i+48]), "\x00")
				h.featureNames[[2]uint8{data[i], data[i+1]}] = name
			}
		case extDataFile:
			return unsupported("external data file")
		case extCrypto:
			return unsupported("encryption header")
		}
		off += (ln + 7) &^ 7
	}
}

// featureList names the bits of mask (feature type: 0 incompatible,
// 1 compatible, 2 autoclear) from the feature name table, else by number.
func (h *qcowHeader) featureList(typ uint8, mask uint64) string {
	var parts []string
	for b := 0; b < 64; b++ {
		if mask&(1<<b) == 0 {
			continue
		}
		if n, ok := h.featureNames[[2]uint8{typ, uint8(b)}]; ok && n != "" {
			parts = append(parts, fmt.Sprintf("%q (bit %d)", n, b))
		} else {
			parts = append(parts, fmt.Sprintf("bit %d", b))
		}
	}
	return strings.Join(parts, ", ")
}

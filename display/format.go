package display

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// PixelFormat is a true-colour pixel layout as RFB describes it (RFC 6143
// §7.4, PIXEL_FORMAT): a pixel is BPP bits stored little- or big-endian,
// and each channel is (pixel >> Shift) & Max.
type PixelFormat struct {
	BPP        uint8 // 8, 16 or 32
	Depth      uint8
	BigEndian  bool
	TrueColour bool
	RedMax     uint16
	GreenMax   uint16
	BlueMax    uint16
	RedShift   uint8
	GreenShift uint8
	BlueShift  uint8
}

// XRGB8888 is 32 bits per pixel, little-endian, 0x00RRGGBB: what a VGA in a
// 32-bpp mode holds and the VNC server's default.
var XRGB8888 = PixelFormat{BPP: 32, Depth: 24, TrueColour: true,
	RedMax: 255, GreenMax: 255, BlueMax: 255, RedShift: 16, GreenShift: 8, BlueShift: 0}

// RGB565 is 16 bits per pixel, little-endian (a VGA 16-bpp mode).
var RGB565 = PixelFormat{BPP: 16, Depth: 16, TrueColour: true,
	RedMax: 31, GreenMax: 63, BlueMax: 31, RedShift: 11, GreenShift: 5, BlueShift: 0}

// ErrPixelFormat is wrapped by Validate's errors.
var ErrPixelFormat = errors.New("unsupported pixel format")

// BytesPerPixel is BPP/8.
func (f PixelFormat) BytesPerPixel() int { return int(f.BPP) / 8 }

// Validate refuses what this package cannot convert: colour-map formats,
// BPP other than 8/16/32, a zero maximum, or a channel that does not fit in
// the pixel.
func (f PixelFormat) Validate() error {
	switch {
	case !f.TrueColour:
		return fmt.Errorf("%w: colour-map formats are not supported", ErrPixelFormat)
	case f.BPP != 8 && f.BPP != 16 && f.BPP != 32:
		return fmt.Errorf("%w: %d bits per pixel", ErrPixelFormat, f.BPP)
	case f.RedMax == 0 || f.GreenMax == 0 || f.BlueMax == 0:
		return fmt.Errorf("%w: a channel maximum of 0", ErrPixelFormat)
	}
	for _, c := range [...]struct {
		max   uint16
		shift uint8
	}{{f.RedMax, f.RedShift}, {f.GreenMax, f.GreenShift}, {f.BlueMax, f.BlueShift}} {
		if uint(c.shift) >= uint(f.BPP) || uint64(c.max)<<c.shift >= 1<<f.BPP {
			return fmt.Errorf("%w: channel max %d << %d does not fit in %d bits", ErrPixelFormat, c.max, c.shift, f.BPP)
		}
	}
	return nil
}

// Load reads one pixel value from b (at least BytesPerPixel bytes).
func (f PixelFormat) Load(b []byte) uint32 {
	switch f.BPP {
	case 8:
		return uint32(b[0])
	case 16:
		if f.BigEndian {
			return uint32(binary.BigEndian.Uint16(b))
		}
		return uint32(binary.LittleEndian.Uint16(b))
	default:
		if f.BigEndian {
			return binary.BigEndian.Uint32(b)
		}
		return binary.LittleEndian.Uint32(b)
	}
}

// Store writes one pixel value into b.
func (f PixelFormat) Store(b []byte, v uint32) {
	switch f.BPP {
	case 8:
		b[0] = uint8(v)
	case 16:
		if f.BigEndian {
			binary.BigEndian.PutUint16(b, uint16(v))
		} else {
			binary.LittleEndian.PutUint16(b, uint16(v))
		}
	default:
		if f.BigEndian {
			binary.BigEndian.PutUint32(b, v)
		} else {
			binary.LittleEndian.PutUint32(b, v)
		}
	}
}

// RGB returns a pixel value's channels scaled to 0..255.
func (f PixelFormat) RGB(v uint32) (r, g, b uint8) {
	return scale8(v>>f.RedShift, f.RedMax), scale8(v>>f.GreenShift, f.GreenMax), scale8(v>>f.BlueShift, f.BlueMax)
}

func scale8(v uint32, max uint16) uint8 {
	v &= uint32(max)
	if max == 255 {
		return uint8(v)
	}
	return uint8((v*255 + uint32(max)/2) / uint32(max))
}

// Pixel builds the pixel value of an 8-bit-per-channel colour.
func (f PixelFormat) Pixel(r, g, b uint8) uint32 {
	return scaleTo(r, f.RedMax)<<f.RedShift | scaleTo(g, f.GreenMax)<<f.GreenShift | scaleTo(b, f.BlueMax)<<f.BlueShift
}

func scaleTo(c uint8, max uint16) uint32 {
	if max == 255 {
		return uint32(c)
	}
	return (uint32(c)*uint32(max) + 127) / 255
}

// Converter turns pixels of one format into pixel values of another.
type Converter struct {
	src, dst PixelFormat
	same     bool // identical channel layout: values pass through
	// per-channel tables when the source channel maxima are small
	r, g, b []uint32
}

// NewConverter returns a converter from src to dst (both valid).
func NewConverter(src, dst PixelFormat) *Converter {
	c := &Converter{src: src, dst: dst}
	c.same = src.RedMax == dst.RedMax && src.GreenMax == dst.GreenMax && src.BlueMax == dst.BlueMax &&
		src.RedShift == dst.RedShift && src.GreenShift == dst.GreenShift && src.BlueShift == dst.BlueShift
	if !c.same {
		c.r = table(src.RedMax, dst.RedMax, dst.RedShift)
		c.g = table(src.GreenMax, dst.GreenMax, dst.GreenShift)
		c.b = table(src.BlueMax, dst.BlueMax, dst.BlueShift)
	}
	return c
}

// table maps every source channel value to the shifted destination value,
// scaled with rounding.
func table(smax, dmax uint16, dshift uint8) []uint32 {
	t := make([]uint32, int(smax)+1)
	for i := range t {
		t[i] = ((uint32(i)*uint32(dmax) + uint32(smax)/2) / uint32(smax)) << dshift
	}
	return t
}

// Value converts one source pixel value.
func (c *Converter) Value(v uint32) uint32 {
	if c.same {
		return v
	}
	s := &c.src
	return c.r[(v>>s.RedShift)&uint32(s.RedMax)] | c.g[(v>>s.GreenShift)&uint32(s.GreenMax)] | c.b[(v>>s.BlueShift)&uint32(s.BlueMax)]
}

// Values converts len(dst) pixels from src (packed source pixels).
func (c *Converter) Values(dst []uint32, src []byte) {
	bpp := c.src.BytesPerPixel()
	if c.src.BPP == 32 && !c.src.BigEndian {
		for i := range dst {
			dst[i] = c.Value(binary.LittleEndian.Uint32(src[i*4:]))
		}
		return
	}
	for i := range dst {
		dst[i] = c.Value(c.src.Load(src[i*bpp:]))
	}
}

// Pack stores pixel values in the destination format.
func (c *Converter) Pack(dst []byte, vals []uint32) []byte {
	bpp := c.dst.BytesPerPixel()
	n := len(dst)
	dst = grow(dst, len(vals)*bpp)
	out := dst[n:]
	switch {
	case bpp == 4 && !c.dst.BigEndian:
		for i, v := range vals {
			binary.LittleEndian.PutUint32(out[i*4:], v)
		}
	default:
		for i, v := range vals {
			c.dst.Store(out[i*bpp:], v)
		}
	}
	return dst
}

func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), len(b)+n)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

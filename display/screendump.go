package display

import (
	"bufio"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
)

// ErrModeChanged is returned when the source changed mode during a read
// more times than a caller retries.
var ErrModeChanged = errors.New("display: mode changed during the read")

// Snapshot copies the whole framebuffer as 8-bit RGB triplets (row-major,
// 3*Width bytes a row), retrying a few times if the mode changes meanwhile.
func Snapshot(s Source) (Mode, []byte, error) {
	for range 4 {
		m := s.Mode()
		if m.Width < 1 || m.Height < 1 || m.Width > MaxSide || m.Height > MaxSide || m.Format.Validate() != nil {
			return m, nil, ErrGeometry
		}
		bpp := m.Format.BytesPerPixel()
		raw := make([]byte, m.Width*m.Height*bpp)
		if !s.Read(raw, m, m.Bounds()) {
			continue
		}
		rgb := make([]byte, m.Width*m.Height*3)
		for i := 0; i < m.Width*m.Height; i++ {
			rgb[3*i], rgb[3*i+1], rgb[3*i+2] = m.Format.RGB(m.Format.Load(raw[i*bpp:]))
		}
		return m, rgb, nil
	}
	return Mode{}, nil, ErrModeChanged
}

// WritePPM writes the framebuffer as a binary PPM (P6, maxval 255), the
// format of QEMU's screendump (ui/console.c ppm_save).
func WritePPM(w io.Writer, s Source) error {
	m, rgb, err := Snapshot(s)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "P6\n%d %d\n255\n", m.Width, m.Height)
	bw.Write(rgb)
	return bw.Flush()
}

// WritePNG writes the framebuffer as an 8-bit RGB PNG (QEMU 7.1+'s
// screendump format=png).
func WritePNG(w io.Writer, s Source) error {
	m, rgb, err := Snapshot(s)
	if err != nil {
		return err
	}
	img := image.NewNRGBA(image.Rect(0, 0, m.Width, m.Height))
	for i := 0; i < m.Width*m.Height; i++ {
		copy(img.Pix[4*i:], rgb[3*i:3*i+3])
		img.Pix[4*i+3] = 0xff
	}
	return png.Encode(w, img)
}

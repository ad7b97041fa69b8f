// Command vnccap is the real-Xen box's VNC client: it logs in to a VNC
// server (RFB 3.8, None or VNC authentication), takes one full-screen
// update in Raw at 32 bpp and reports what it saw on stdout as lines the
// harness reads: the size, the number of colours, a coarse picture of
// the text cells (a '#' where a 9x16 cell has more than one colour), and
// with -ppm whether the picture equals a screendump (PPM) taken by the
// device model. It exits 1 when the picture is blank or differs.
package main

import (
	"bufio"
	"bytes"
	"crypto/des"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/png"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:5900", "VNC server")
	passwd := flag.String("passwd", "", "VNC password (VNC authentication)")
	ppm := flag.String("ppm", "", "screendump (P6) to compare with")
	pngOut := flag.Bool("png", false, "print the picture as PNG, base64 in lines \"VNCCAP png <chunk>\"")
	flag.Parse()
	w, h, rgb, err := capture(*addr, *passwd)
	if err != nil {
		fmt.Println("VNCCAP error:", err)
		os.Exit(1)
	}
	colours := map[[3]byte]bool{}
	for i := 0; i+3 <= len(rgb); i += 3 {
		colours[[3]byte(rgb[i:i+3])] = true
	}
	fmt.Printf("VNCCAP size=%dx%d colours=%d\n", w, h, len(colours))
	ok := len(colours) > 1
	if w%9 == 0 && h%16 == 0 {
		for cy := 0; cy < h/16; cy++ {
			var line strings.Builder
			for cx := 0; cx < w/9; cx++ {
				c := byte('.')
				first := rgb[3*(cy*16*w+cx*9):][:3]
				for y := 0; y < 16 && c == '.'; y++ {
					for x := 0; x < 9; x++ {
						if !bytes.Equal(rgb[3*((cy*16+y)*w+cx*9+x):][:3], first) {
							c = '#'
							break
						}
					}
				}
				line.WriteByte(c)
			}
			fmt.Printf("VNCCAP row %02d %s\n", cy, strings.TrimRight(line.String(), "."))
		}
	}
	if *ppm != "" {
		b, err := os.ReadFile(*ppm)
		if err != nil {
			fmt.Println("VNCCAP error:", err)
			os.Exit(1)
		}
		hdr := fmt.Sprintf("P6\n%d %d\n255\n", w, h)
		switch {
		case !bytes.HasPrefix(b, []byte(hdr)):
			fmt.Printf("VNCCAP equals_screendump=no (header %q, want %q)\n", b[:min(len(b), 20)], hdr)
			ok = false
		case !bytes.Equal(b[len(hdr):], rgb):
			n := 0
			for i := range rgb {
				if len(hdr)+i >= len(b) || b[len(hdr)+i] != rgb[i] {
					n++
				}
			}
			fmt.Printf("VNCCAP equals_screendump=no (%d bytes differ)\n", n)
			ok = false
		default:
			fmt.Println("VNCCAP equals_screendump=yes")
		}
	}
	if *pngOut {
		img := image.NewRGBA(image.Rect(0, 0, w, h))
		for i := 0; i < w*h; i++ {
			copy(img.Pix[4*i:], rgb[3*i:3*i+3])
			img.Pix[4*i+3] = 0xff
		}
		var b bytes.Buffer
		if err := png.Encode(&b, img); err != nil {
			fmt.Println("VNCCAP error:", err)
			os.Exit(1)
		}
		enc := base64.StdEncoding.EncodeToString(b.Bytes())
		for len(enc) > 0 {
			n := min(len(enc), 100)
			fmt.Println("VNCCAP png", enc[:n])
			enc = enc[n:]
		}
	}
	if !ok {
		os.Exit(1)
	}
}

// capture returns the screen as RGB triplets.
func capture(addr, passwd string) (w, h int, rgb []byte, err error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return 0, 0, nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	r := bufio.NewReader(c)
	ver := make([]byte, 12)
	if _, err := io.ReadFull(r, ver); err != nil {
		return 0, 0, nil, err
	}
	if string(ver) != "RFB 003.008\n" {
		return 0, 0, nil, fmt.Errorf("server version %q", ver)
	}
	c.Write([]byte("RFB 003.008\n"))
	n, err := r.ReadByte()
	if err != nil || n == 0 {
		return 0, 0, nil, fmt.Errorf("no security types (%v)", err)
	}
	types := make([]byte, n)
	io.ReadFull(r, types)
	switch {
	case passwd != "" && bytes.IndexByte(types, 2) >= 0:
		c.Write([]byte{2})
		chal := make([]byte, 16)
		if _, err := io.ReadFull(r, chal); err != nil {
			return 0, 0, nil, err
		}
		c.Write(vncAuth(passwd, chal))
	case bytes.IndexByte(types, 1) >= 0:
		c.Write([]byte{1})
	default:
		return 0, 0, nil, fmt.Errorf("security types % x (password given: %v)", types, passwd != "")
	}
	var res uint32
	if err := binary.Read(r, binary.BigEndian, &res); err != nil || res != 0 {
		return 0, 0, nil, fmt.Errorf("security result %d (%v)", res, err)
	}
	c.Write([]byte{1}) // shared
	var si struct {
		W, H   uint16
		PF     [16]byte
		NameLn uint32
	}
	if err := binary.Read(r, binary.BigEndian, &si); err != nil {
		return 0, 0, nil, err
	}
	io.CopyN(io.Discard, r, int64(si.NameLn))
	w, h = int(si.W), int(si.H)
	// SetPixelFormat: 32 bpp, depth 24, little endian, true colour,
	// 8 bits each, red at 16, green at 8, blue at 0.
	c.Write([]byte{0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0})
	c.Write([]byte{2, 0, 0, 1, 0, 0, 0, 0}) // SetEncodings: Raw
	req := []byte{3, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(req[6:], si.W)
	binary.BigEndian.PutUint16(req[8:], si.H)
	c.Write(req)
	rgb = make([]byte, 3*w*h)
	covered := 0
	for covered < w*h {
		var hdr struct {
			Type, Pad uint8
			N         uint16
		}
		if err := binary.Read(r, binary.BigEndian, &hdr); err != nil {
			return 0, 0, nil, err
		}
		if hdr.Type != 0 {
			return 0, 0, nil, fmt.Errorf("server message %d", hdr.Type)
		}
		for range hdr.N {
			var rect struct {
				X, Y, W, H uint16
				Enc        int32
			}
			if err := binary.Read(r, binary.BigEndian, &rect); err != nil {
				return 0, 0, nil, err
			}
			if rect.Enc != 0 || int(rect.X)+int(rect.W) > w || int(rect.Y)+int(rect.H) > h {
				return 0, 0, nil, errors.New("unexpected rectangle")
			}
			px := make([]byte, 4*int(rect.W)*int(rect.H))
			if _, err := io.ReadFull(r, px); err != nil {
				return 0, 0, nil, err
			}
			for y := range int(rect.H) {
				for x := range int(rect.W) {
					p := px[4*(y*int(rect.W)+x):]
					o := 3 * ((int(rect.Y)+y)*w + int(rect.X) + x)
					rgb[o], rgb[o+1], rgb[o+2] = p[2], p[1], p[0]
				}
			}
			covered += int(rect.W) * int(rect.H)
		}
	}
	return w, h, rgb, nil
}

// vncAuth encrypts the challenge with the password as RFB does (DES, the
// key bytes' bits reversed; RFC 6143 §7.2.2).
func vncAuth(passwd string, chal []byte) []byte {
	var k [8]byte
	copy(k[:], passwd)
	for i, b := range k {
		var r byte
		for j := range 8 {
			r |= (b >> j & 1) << (7 - j)
		}
		k[i] = r
	}
	ci, _ := des.NewCipher(k[:])
	out := make([]byte, 16)
	ci.Encrypt(out, chal[:8])
	ci.Encrypt(out[8:], chal[8:])
	return out
}

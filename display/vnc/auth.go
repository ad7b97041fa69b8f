package vnc

import (
	"crypto/des"
	"crypto/subtle"
	"math/bits"
)

// vncAuthResponse is the client's answer to a VNC Authentication challenge:
// the 16-byte challenge encrypted with DES in ECB mode (RFC 6143 §7.2.2)
// under the password's first eight bytes, zero padded. The RFC leaves out
// a quirk every implementation shares (the original d3des code, noted in
// the community RFB specification, rfbproto "VNC Authentication"): each
// key byte is used with its bit order reversed.
func vncAuthResponse(password string, challenge []byte) []byte {
	var key [8]byte
	copy(key[:], password)
	for i, b := range key {
		key[i] = bits.Reverse8(b)
	}
	c, err := des.NewCipher(key[:])
	if err != nil { // cannot happen: the key is 8 bytes
		panic(err)
	}
	out := make([]byte, len(challenge))
	for i := 0; i+8 <= len(challenge); i += 8 {
		c.Encrypt(out[i:i+8], challenge[i:i+8])
	}
	return out
}

// checkVNCAuth reports whether response answers challenge under password.
// An empty password never matches (QEMU refuses VNC authentication until a
// password is set).
func checkVNCAuth(password string, challenge, response []byte) bool {
	if password == "" || len(response) != 16 {
		return false
	}
	return subtle.ConstantTimeCompare(vncAuthResponse(password, challenge), response) == 1
}

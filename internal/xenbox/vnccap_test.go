package xenbox

import (
	"bytes"
	"encoding/base64"
	"testing"
)

// VNCCapPNG takes the chunks in order from among other console lines.
func TestVNCCapPNG(t *testing.T) {
	data := bytes.Repeat([]byte("godm stdvga "), 50)
	enc := base64.StdEncoding.EncodeToString(data)
	var lines []Line
	for i := 0; i < len(enc); i += 100 {
		lines = append(lines, Line{Text: "[stdvga] VNCCAP png " + enc[i:min(i+100, len(enc))]}, Line{Text: "(d8) noise"})
	}
	got, err := VNCCapPNG(lines)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("got %d bytes, %v", len(got), err)
	}
	if _, err := VNCCapPNG(lines[1:2]); err == nil {
		t.Error("no chunks accepted")
	}
}

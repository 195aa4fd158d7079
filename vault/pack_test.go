package vault

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
)

func TestPackRoundTrip(t *testing.T) {
	random := make([]byte, 300)
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	json := []byte(`{"resourceType":"Observation","code":{"coding":[{"system":"http://loinc.org","code":"8302-2"}]},` +
		`"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],` +
		`"subject":{"reference":"Patient/1"},"encounter":{"reference":"Encounter/1"},"status":"final"}`)
	for _, tc := range []struct {
		name   string
		in     []byte
		packed func(p []byte) bool // what the sealed plain text must look like
	}{
		{"empty", nil, func(p []byte) bool { return len(p) == 0 }},
		{"json", json, func(p []byte) bool { return p[0] == packedDeflate && len(p) < len(json) }},
		{"json repeated", bytes.Repeat(json, 50), func(p []byte) bool { return p[0] == packedDeflate && len(p) < len(json)*5 }},
		// Incompressible bytes stay as they are, unless their first byte
		// would be read as a marker.
		{"incompressible", append([]byte{'{'}, random...), func(p []byte) bool { return p[0] == '{' && len(p) == 301 }},
		{"incompressible 0x00", append([]byte{0}, random...), func(p []byte) bool { return p[0] == packedRaw && len(p) == 302 }},
		{"incompressible 0x01", append([]byte{1}, random...), func(p []byte) bool { return p[0] == packedRaw && len(p) == 302 }},
		{"one byte 0x01", []byte{1}, func(p []byte) bool { return bytes.Equal(p, []byte{packedRaw, 1}) }},
		{"one byte", []byte("x"), func(p []byte) bool { return string(p) == "x" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := pack(tc.in)
			if !tc.packed(p) {
				t.Errorf("pack(%d bytes) = %d bytes starting %x: not the expected form", len(tc.in), len(p), p[:min(len(p), 4)])
			}
			got, err := unpack(p)
			if err != nil || !bytes.Equal(got, tc.in) {
				t.Errorf("unpack(pack(x)) = %q, %v; want x back", got, err)
			}
		})
	}
}

// TestUnpackFormat pins the stored form to RFC 1951 independently of Go's
// encoder: the stream below was made by zlib (Python,
// zlib.compressobj(9, zlib.DEFLATED, -15)); and bodies sealed before packing
// (plain JSON) open as they are.
func TestUnpackFormat(t *testing.T) {
	p, _ := hex.DecodeString("01ab562a4a2dce2f2d4a4e0da92c4855b2520a482cc94ccd2b51d251ca4c01720d8d8c81ccbcc45ca05c74b5525a626e664e2550dc3923312737b5a858a95607ab686c2d00")
	want := `{"resourceType":"Patient","id":"123","name":[{"family":"Chalmers"},{"family":"Chalmers"}]}`
	if got, err := unpack(p); err != nil || string(got) != want {
		t.Errorf("unpack(zlib stream) = %q, %v; want %q", got, err, want)
	}
	if got, err := unpack([]byte(want)); err != nil || string(got) != want {
		t.Errorf("unpack(plain JSON) = %q, %v; want it unchanged", got, err)
	}
	for _, bad := range [][]byte{{packedDeflate}, append([]byte{packedDeflate}, p[1:10]...), {packedDeflate, 0xff, 0xff, 0xff}} {
		if got, err := unpack(bad); err == nil {
			t.Errorf("unpack(%x) = %q, nil; want an error", bad, got)
		}
	}
	if _, err := unpack(append([]byte{packedDeflate}, []byte(strings.Repeat("x", 10))...)); err == nil {
		t.Error("unpack of garbage after the marker: no error")
	}
}

package vault

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// FuzzUnpackRecord feeds stored record rows, which whoever can write the
// database chooses: reading one never panics, never yields more than
// maxRecord bytes, and yields either the row itself or bytes that a
// marker byte announced. And whatever the bytes, PackRecord and pack
// round-trip them.
func FuzzUnpackRecord(f *testing.F) {
	zst, _ := hex.DecodeString("0528b52ffd600400ad0100e07b31322d303654313566656463626139383736353433323130325d7d08006c4b26986c839b5df7b4b66006d917da2e0cc6a65c57")
	zlib, _ := hex.DecodeString("032336c80c8d740dcc420c2141664a20acd252539293122d2dcccd4c4d8c8d0c0dd0f988b034c213660827d234c9c6d60200")
	for _, seed := range [][]byte{
		zst, zlib, []byte(deidRecord), PackRecord([]byte(deidRecord)), pack([]byte(deidRecord)),
		{}, {packedRaw}, {packedZstdRecord}, {packedZstdBody, 0x28, 0xb5, 0x2f, 0xfd},
		append([]byte{packedZstdRecord}, zst[1:10]...),
		{packedS2Record}, {packedS2Body, 0x05, 0x10, 'x'}, {packedS2Record, 0x0b, 0x11, 0x00, 0x08, ',', '"', 'x'},
		recordCodec.pack([]byte(deidRecord)),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, row []byte) {
		got := UnpackRecord(row)
		if len(got) > maxRecord && !bytes.Equal(got, row) {
			t.Fatalf("a %d-byte row unpacked to %d bytes, past maxRecord", len(row), len(got))
		}
		if !bytes.Equal(got, row) && (len(row) == 0 || row[0] > lastMarker) {
			t.Fatalf("a row without a marker byte (%x...) read as other bytes", row[:min(len(row), 1)])
		}
		if back := UnpackRecord(PackRecord(row)); !bytes.Equal(back, row) {
			t.Fatalf("UnpackRecord(PackRecord(%x)) = %x", row, back)
		}
		if back, err := unpackSealed(pack(row)); err != nil || !bytes.Equal(back, row) {
			t.Fatalf("unpack(pack(%x)) = %x, %v", row, back, err)
		}
	})
}

package vault

import (
	"bytes"
	"compress/flate"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// json64K is a JSON value of more than s2MaxValue bytes, compressible.
var json64K = []byte(`{"a":"` + strings.Repeat("fhir ", s2MaxValue/5+100) + `"}`)

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
		{"json", json, func(p []byte) bool { return p[0] == packedS2Body && len(p) < len(json)/3 }},
		{"json repeated", bytes.Repeat(json, 50), func(p []byte) bool { return p[0] == packedS2Body && len(p) < len(json)*5 }},
		// Up to s2MaxValue bytes an S2 block, past it a Zstandard frame.
		{"json of s2MaxValue", json64K[:s2MaxValue], func(p []byte) bool { return p[0] == packedS2Body && len(p) < s2MaxValue/20 }},
		{"json past s2MaxValue", json64K, func(p []byte) bool { return p[0] == packedZstdBody && len(p) < s2MaxValue/20 }},
		// Incompressible bytes stay as they are, unless their first byte
		// would be read as a marker.
		{"incompressible", append([]byte{'{'}, random...), func(p []byte) bool { return p[0] == '{' && len(p) == 301 }},
		{"incompressible 0x00", append([]byte{0}, random...), func(p []byte) bool { return p[0] == packedRaw && len(p) == 302 }},
		{"incompressible 0x01", append([]byte{1}, random...), func(p []byte) bool { return p[0] == packedRaw && len(p) == 302 }},
		{"incompressible 0x03", append([]byte{3}, random...), func(p []byte) bool { return p[0] == packedRaw && len(p) == 302 }},
		{"incompressible 0x04", append([]byte{4}, random...), func(p []byte) bool { return p[0] == packedRaw && len(p) == 302 }},
		{"incompressible 0x05", append([]byte{5}, random...), func(p []byte) bool { return p[0] == packedRaw && len(p) == 302 }},
		{"incompressible 0x06", append([]byte{6}, random...), func(p []byte) bool { return p[0] == packedRaw && len(p) == 302 }},
		{"incompressible 0x07", append([]byte{7}, random...), func(p []byte) bool { return p[0] == packedRaw && len(p) == 302 }},
		{"incompressible 0x08", append([]byte{8}, random...), func(p []byte) bool { return p[0] == 8 && len(p) == 301 }},
		{"one byte 0x01", []byte{1}, func(p []byte) bool { return bytes.Equal(p, []byte{packedRaw, 1}) }},
		{"one byte 0x02", []byte{2}, func(p []byte) bool { return bytes.Equal(p, []byte{packedRaw, 2}) }},
		{"one byte 0x05", []byte{5}, func(p []byte) bool { return bytes.Equal(p, []byte{packedRaw, 5}) }},
		{"one byte 0x07", []byte{7}, func(p []byte) bool { return bytes.Equal(p, []byte{packedRaw, 7}) }},
		{"one byte", []byte("x"), func(p []byte) bool { return string(p) == "x" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := pack(tc.in)
			if !tc.packed(p) {
				t.Errorf("pack(%d bytes) = %d bytes starting %x: not the expected form", len(tc.in), len(p), p[:min(len(p), 4)])
			}
			got, err := unpackSealed(p)
			if err != nil || !bytes.Equal(got, tc.in) {
				t.Errorf("unpack(pack(x)) = %q, %v; want x back", got, err)
			}
		})
	}
}

// TestUnpackHuffmanLiterals: frames packed before literals were left
// without Huffman coding (the encoder as it was configured until then)
// still unpack, with either dictionary. Members that repeat around values
// of eight letters, whose literals only Huffman coding shrinks, show the
// old frame used it.
func TestUnpackHuffmanLiterals(t *testing.T) {
	letters := make([]byte, 800)
	if _, err := rand.Read(letters); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString(`{"resourceType":"Basic","extension":[`)
	for i := 0; i < len(letters); i += 20 {
		for j := i; j < i+20; j++ {
			letters[j] = "abcdefgh"[letters[j]%8]
		}
		b.WriteString(`{"url":"http://example.org/` + string(letters[i:i+20]) + `"},`)
	}
	b.WriteString(`{}]}`)
	text := []byte(b.String())
	for _, c := range []*zstdCodec{bodyCodec, recordCodec} {
		old, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderDictRaw(0, c.dict),
			zstd.WithEncoderCRC(false), zstd.WithSingleSegment(true))
		if err != nil {
			t.Fatal(err)
		}
		frame := old.EncodeAll(text, []byte{c.marker})
		if now := c.pack(text); now == nil || len(frame)*3/2 >= len(now) {
			t.Fatalf("marker %x: the Huffman-coded frame (%d bytes) is not much smaller than pack's (%d)", c.marker, len(frame), len(now))
		}
		got, err := unpack(frame, maxRecord)
		if err != nil || !bytes.Equal(got, text) {
			t.Errorf("marker %x: unpack of a Huffman-coded frame = %q, %v; want the text back", c.marker, got, err)
		}
	}
}

// TestUnpackFormat pins the stored forms independently of the encoders
// this package uses: the Zstandard frame below was made by the reference
// implementation (zstd 1.5.4: zstd --no-check -19 -D vault/body.dict), the
// DEFLATE streams of earlier versions by zlib (Python,
// zlib.compressobj(9, zlib.DEFLATED, -15), with zdict=open("vault/body.dict",
// "rb").read() for the second); and bodies sealed before packing (plain
// JSON) open as they are.
func TestUnpackFormat(t *testing.T) {
	zst, _ := hex.DecodeString("0428b52ffd60370005020004027b766974616c2d7369676e73383330322d426f6479204865696768746f31227d0900332f3384840656c9c03cf1f888b3ac84a14863a7048604ec0a71c106")
	p, _ := hex.DecodeString("01ab562a4a2dce2f2d4a4e0da92c4855b2520a482cc94ccd2b51d251ca4c01720d8d8c81ccbcc45ca05c74b5525a626e664e2550dc3923312737b5a858a95607ab686c2d00")
	want := `{"resourceType":"Patient","id":"123","name":[{"family":"Chalmers"},{"family":"Chalmers"}]}`
	if got, err := unpackSealed(p); err != nil || string(got) != want {
		t.Errorf("unpack(zlib stream) = %q, %v; want %q", got, err, want)
	}
	dict, _ := hex.DecodeString("0223980dca403d66dde2ccf4bc629424882a4e8f8c60610c4c17a8b5a1537e4aa582476a667a06d10b8b90b5c01260bea1126911590b00")
	wantDict := `{"category":[{"coding":[{"code":"vital-signs","display":"vital-signs","system":"http://terminology.hl7.org/CodeSystem/observation-category"}]}],` +
		`"code":{"coding":[{"code":"8302-2","display":"Body Height","system":"http://loinc.org"}],"text":"Body Height"},"id":"o1","resourceType":"Observation","status":"final"}`
	if got, err := unpackSealed(dict); err != nil || string(got) != wantDict {
		t.Errorf("unpack(zlib stream with body.dict) = %q, %v; want %q", got, err, wantDict)
	}
	if got, err := unpackSealed(zst); err != nil || string(got) != wantDict {
		t.Errorf("unpack(zstd frame with body.dict) = %q, %v; want %q", got, err, wantDict)
	}
	if got, err := unpackSealed([]byte(want)); err != nil || string(got) != want {
		t.Errorf("unpack(plain JSON) = %q, %v; want it unchanged", got, err)
	}
	for _, bad := range [][]byte{{packedDeflate}, append([]byte{packedDeflate}, p[1:10]...), {packedDeflate, 0xff, 0xff, 0xff},
		{packedBodyDict}, dict[:len(dict)-1], {packedBodyDict, 0xff, 0xff, 0xff},
		{packedZstdBody}, zst[:len(zst)-1], zst[:10], {packedZstdBody, 0xff, 0xff, 0xff},
		append(bytes.Clone(zst), 0xff)} { // trailing bytes after the frame
		if got, err := unpackSealed(bad); err == nil {
			t.Errorf("unpack(%x) = %q, nil; want an error", bad, got)
		}
	}
	if _, err := unpackSealed(append([]byte{packedDeflate}, []byte(strings.Repeat("x", 10))...)); err == nil {
		t.Error("unpack of garbage after the marker: no error")
	}
}

// deidRecord is a deidentification record as access.Add writes them.
const deidRecord = `{"kind":"deidentification","time":"2026-12-06T14:05:05.372216Z",` +
	`"resource":"Encounter/tok-a57133997beeb979c49ed13d78dd6f86/_history/1",` +
	`"source":"491c3c35742b6eafdd5cea0f6cc71d6d0d67d28b647d0465a6bd052cffe07950",` +
	`"output":"d5caaff179844b18aa4986515a2fe9de2a49e6eb0f15fdd63871dc47430cb7c0","profile":"safe-harbor",` +
	`"profileRevision":"32893898e8e637630baaeedb488f81e92cfe93eb15c1cf235664e4e444388fc4",` +
	`"labels":["REDACTED","CRYTOHASH","PERTURBED"],"rules":[{"rule":"date-times","method":"dateShift",` +
	`"paths":["period.end","period.start"]},{"rule":"ids","method":"cryptoHash","paths":["id"]},` +
	`{"rule":"meta-last-updated","method":"redact","paths":["meta.lastUpdated"]},{"rule":"references",` +
	`"method":"cryptoHash","paths":["participant[0].individual.reference","serviceProvider.reference","subject.reference"]}]}`

func TestPackRecordRoundTrip(t *testing.T) {
	random := make([]byte, 300)
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte(deidRecord), maxRecord/len(deidRecord)+1)
	for _, tc := range []struct {
		name   string
		in     []byte
		stored func(p []byte) bool // what the Store must keep
	}{
		{"empty", nil, func(p []byte) bool { return len(p) == 0 }},
		// The dictionary, not the record alone, makes it small: compressed
		// on its own it is about half its size.
		{"deidentification", []byte(deidRecord), func(p []byte) bool { return p[0] == packedS2Record && len(p) < len(deidRecord)*4/10 }},
		{"past s2MaxValue", json64K, func(p []byte) bool { return p[0] == packedZstdRecord && len(p) < s2MaxValue/20 }},
		{"incompressible 0x07", append([]byte{7}, random...), func(p []byte) bool { return p[0] == packedRaw && len(p) == 302 }},
		{"incompressible", append([]byte{'{'}, random...), func(p []byte) bool { return p[0] == '{' && len(p) == 301 }},
		{"incompressible 0x00", append([]byte{0}, random...), func(p []byte) bool { return p[0] == packedRaw && len(p) == 302 }},
		{"incompressible 0x01", append([]byte{1}, random...), func(p []byte) bool { return p[0] == packedRaw && len(p) == 302 }},
		{"incompressible 0x03", append([]byte{3}, random...), func(p []byte) bool { return p[0] == packedRaw && len(p) == 302 }},
		{"incompressible 0x05", append([]byte{5}, random...), func(p []byte) bool { return p[0] == packedRaw && len(p) == 302 }},
		{"one byte 0x03", []byte{3}, func(p []byte) bool { return bytes.Equal(p, []byte{packedRaw, 3}) }},
		{"one byte 0x04", []byte{4}, func(p []byte) bool { return bytes.Equal(p, []byte{packedRaw, 4}) }},
		{"one byte", []byte("x"), func(p []byte) bool { return string(p) == "x" }},
		// Past maxRecord a record is kept as it is, so that it reads back.
		{"larger than maxRecord", big, func(p []byte) bool { return bytes.Equal(p, big) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := PackRecord(tc.in)
			if !tc.stored(p) {
				t.Errorf("PackRecord(%d bytes) = %d bytes starting %x: not the expected form", len(tc.in), len(p), p[:min(len(p), 4)])
			}
			if got := UnpackRecord(p); !bytes.Equal(got, tc.in) {
				t.Errorf("UnpackRecord(PackRecord(x)) = %q; want x back", got)
			}
		})
	}
}

// TestDictsFrozen: values stored under markers 0x02 to 0x05 unpack only
// with these exact dictionary bytes. Changing a dictionary loses them all;
// a new dictionary needs a new marker.
func TestDictsFrozen(t *testing.T) {
	for _, d := range []struct {
		name string
		dict []byte
		want string
	}{
		{"body.dict", bodyDict, "1f3399472ff0c3bca2e7324aa5cb695c387c44d9263a2f451a2bcd7e8379bc5a"},
		{"record.dict", recordDict, "78d7708bf5c217cf9da41fc38dc380dcec46f38939864e3f93860aaa4c937e36"},
	} {
		if got := sha256.Sum256(d.dict); hex.EncodeToString(got[:]) != d.want {
			t.Errorf("%s has SHA-256 %x, want %s: the dictionary of stored values changed", d.name, got, d.want)
		}
	}
}

// TestUnpackRecordFormat pins the stored forms independently of the
// encoders this package uses: the Zstandard frame below was made by the
// reference implementation (zstd 1.5.4: zstd --no-check -19 -D
// vault/record.dict), the DEFLATE stream of earlier versions by zlib
// (Python, zlib.compressobj(9, zlib.DEFLATED, -15, 9,
// zlib.Z_DEFAULT_STRATEGY, open("vault/record.dict", "rb").read())).
// Records stored before packing (plain JSON) read as they are; stored
// bytes that do not unpack come back as they are, never as an error or a
// panic, and never as JSON; and no small row unpacks to more than maxRecord.
func TestUnpackRecordFormat(t *testing.T) {
	zst, _ := hex.DecodeString("0528b52ffd600400ad0100e07b31322d303654313566656463626139383736353433323130325d7d08006c4b26986c839b5df7b4b66006d917da2e0cc6a65c57")
	p, _ := hex.DecodeString("032336c80c8d740dcc420c2141664a20acd252539293122d2dcccd4c4d8c8d0c0dd0f988b034c213660827d234c9c6d60200")
	want := `{"kind":"deidentification","time":"2026-12-06T10:00:05Z",` +
		`"resource":"Observation/tok-fedcba9876543210fedcba9876543210/_history/2","profile":"safe-harbor",` +
		`"rules":[{"rule":"references","method":"cryptoHash","paths":["encounter.reference","subject.reference"]}]}`
	if got := UnpackRecord(zst); string(got) != want {
		t.Errorf("UnpackRecord(zstd frame) = %q; want %q", got, want)
	}
	if got := UnpackRecord(p); string(got) != want {
		t.Errorf("UnpackRecord(zlib stream) = %q; want %q", got, want)
	}
	for _, bad := range [][]byte{{packedZstdRecord}, zst[:len(zst)-1], zst[:10], {packedZstdRecord, 0xff, 0xff, 0xff}} {
		if got := UnpackRecord(bad); !bytes.Equal(got, bad) {
			t.Errorf("UnpackRecord(%x) = %q; want the stored bytes back", bad, got)
		}
	}
	// Zstandard bombs: frames that state their size, and a stream that
	// does not (made by the streaming encoder), each a small row that
	// decompresses past maxRecord, with either dictionary's marker.
	huge := bytes.Repeat([]byte{'{'}, maxRecord+1)
	for _, marker := range []byte{packedZstdRecord, packedZstdBody} {
		dict := recordDict
		if marker == packedZstdBody {
			dict = bodyDict
		}
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderDictRaw(0, dict), zstd.WithEncoderLevel(zstd.SpeedBestCompression))
		if err != nil {
			t.Fatal(err)
		}
		sized := enc.EncodeAll(huge, []byte{marker})
		var streamed bytes.Buffer
		streamed.WriteByte(marker)
		enc.Reset(&streamed)
		enc.Write(huge)
		enc.Close()
		for _, bomb := range [][]byte{sized, streamed.Bytes()} {
			if len(bomb) > 1000 {
				t.Fatalf("bomb of %d bytes: not small", len(bomb))
			}
			if got := UnpackRecord(bomb); !bytes.Equal(got, bomb) {
				t.Errorf("UnpackRecord(%d bytes decompressing to %d) = %d bytes; want the stored bytes back", len(bomb), len(huge), len(got))
			}
		}
	}
	if got := UnpackRecord([]byte(deidRecord)); string(got) != deidRecord {
		t.Errorf("UnpackRecord(plain JSON) = %q; want it unchanged", got)
	}
	for _, bad := range [][]byte{{packedRecordDict}, p[:len(p)-1], p[:10], {packedRecordDict, 0xff, 0xff, 0xff}} {
		if got := UnpackRecord(bad); !bytes.Equal(got, bad) {
			t.Errorf("UnpackRecord(%x) = %q; want the stored bytes back", bad, got)
		}
	}
	// A bomb: a small row that inflates past maxRecord comes back as it is.
	var buf bytes.Buffer
	buf.WriteByte(packedRecordDict)
	w, err := flate.NewWriterDict(&buf, flate.BestCompression, recordDict)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(bytes.Repeat([]byte{'{'}, maxRecord+1))
	w.Close()
	if got := UnpackRecord(buf.Bytes()); !bytes.Equal(got, buf.Bytes()) {
		t.Errorf("UnpackRecord(%d bytes inflating to %d) = %d bytes; want the stored bytes back", buf.Len(), maxRecord+1, len(got))
	}
}

// TestUnpackRecordAltered changes every byte of a stored record in turn:
// reading it never panics, and it either fails to inflate (the stored
// bytes come back, which are not the record) or yields bytes that an audit
// compares with the commitment. Only a change in bits the decoder skips
// (padding) may read back the same record, which is then unchanged.
func TestUnpackRecordAltered(t *testing.T) {
	p := PackRecord([]byte(deidRecord))
	changed := 0
	for i := range p {
		for _, x := range []byte{0x01, 0x80, 0xff} {
			q := bytes.Clone(p)
			q[i] ^= x
			got := UnpackRecord(q)
			if !bytes.Equal(got, []byte(deidRecord)) {
				changed++
			}
		}
	}
	// Nearly every change shows; a handful may land in padding or copy
	// the same bytes from another distance.
	if total := 3 * len(p); changed < total*9/10 {
		t.Errorf("%d of %d altered rows read back as the original record", total-changed, total)
	}
}

// flatePack writes marker || DEFLATE(b) as earlier versions packed values
// (level 1 without a dictionary, level 2 with one, a writer reused through
// Reset as their pool did, so that BenchmarkPack compares like with like),
// for the tests that hold unpack to what they stored. Not for parallel
// tests: the writers are shared.
func flatePack(tb testing.TB, marker byte, b []byte) []byte {
	tb.Helper()
	var buf bytes.Buffer
	buf.WriteByte(marker)
	if w := flateWriters[marker]; w != nil {
		w.Reset(&buf)
	} else {
		level, dict := 2, []byte(nil)
		switch marker {
		case packedDeflate:
			level = flate.BestSpeed
		case packedBodyDict:
			dict = bodyDict
		case packedRecordDict:
			dict = recordDict
		default:
			tb.Fatalf("flatePack with marker %#x", marker)
		}
		w, err := flate.NewWriterDict(&buf, level, dict)
		if err != nil {
			tb.Fatal(err)
		}
		flateWriters[marker] = w
	}
	w := flateWriters[marker]
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// flateWriters are flatePack's writers, by marker.
var flateWriters = map[byte]*flate.Writer{}

// BenchmarkPack compares the packing of a Synthea Observation and of a
// deidentification record as earlier versions did (DEFLATE with a preset
// dictionary, then Zstandard with the same dictionary) and as pack and
// PackRecord do (S2 with it): the CPU spent per value (the writer's,
// inside its transaction, for a record not packed ahead) and what is
// stored.
func BenchmarkPack(b *testing.B) {
	obs := []byte(`{"category":[{"coding":[{"code":"laboratory","display":"laboratory","system":"http://terminology.hl7.org/CodeSystem/observation-category"}]}],` +
		`"code":{"coding":[{"code":"2093-3","display":"Total Cholesterol","system":"http://loinc.org"}],"text":"Total Cholesterol"},` +
		`"effectiveDateTime":"2011-01-16T03:11:33+00:00","encounter":{"reference":"Encounter/0be2bd40-c3b6-4b5f-a4a7-9b8a8c8b0a77"},` +
		`"id":"5a3e9e2f-33b5-46ec-8a8e-6bd2b0d5b8c4","issued":"2011-01-16T03:11:33.548+00:00",` +
		`"meta":{"lastUpdated":"2026-12-06T14:05:05.372216Z","tag":[{"code":"synthea-5-2019","system":"https://smarthealthit.org/tags"}],"versionId":"1"},` +
		`"resourceType":"Observation","status":"final","subject":{"reference":"Patient/829bb06a-42b9-433d-a8f6-560727c63da9"},` +
		`"valueQuantity":{"code":"mg/dL","system":"http://unitsofmeasure.org","unit":"mg/dL","value":181.6}}`)
	for _, c := range []struct {
		name string
		pack func([]byte) []byte
		in   []byte
	}{
		{"body/deflate-dict", func(x []byte) []byte { return flatePack(b, packedBodyDict, x) }, obs},
		{"body/zstd-dict", bodyCodec.pack, obs},
		{"body/s2-dict", pack, obs},
		{"record/deflate-dict", func(x []byte) []byte { return flatePack(b, packedRecordDict, x) }, []byte(deidRecord)},
		{"record/zstd-dict", recordCodec.pack, []byte(deidRecord)},
		{"record/s2-dict", PackRecord, []byte(deidRecord)},
	} {
		b.Run(c.name, func(b *testing.B) {
			var n int
			for b.Loop() {
				n = len(c.pack(c.in))
			}
			b.ReportMetric(float64(n), "stored-B")
			b.ReportMetric(float64(len(c.in)), "plain-B")
		})
	}
}

// TestUnpackS2Format pins the S2 forms independently of the encoder this
// package uses: each block below is built by hand from the format's
// description (Snappy's block format, with a dictionary logically before
// the block): the decoded length as a uvarint, then literal elements (tag
// byte (n-1)<<2, the n bytes) and copies with a two-byte offset (tag byte
// (length-1)<<2 | 2, the offset little-endian), here copies whose offset
// reaches back past the block's start into the dictionary's end. A
// dictionary other than the marker's, or another first repeat offset,
// would not change these blocks but the encoder's; the bytes a dictionary
// copy lands on are the format.
func TestUnpackS2Format(t *testing.T) {
	block := func(marker byte, dict []byte, prefix, fromDict, suffix string) ([]byte, string) {
		t.Helper()
		at := bytes.LastIndex(dict, []byte(fromDict))
		if at < 0 || len(prefix) > 60 || len(suffix) > 60 || len(fromDict) > 64 {
			t.Fatalf("cannot build a block copying %q", fromDict)
		}
		want := prefix + fromDict + suffix
		b := binary.AppendUvarint([]byte{marker}, uint64(len(want)))
		b = append(append(b, byte(len(prefix)-1)<<2), prefix...)
		offset := len(prefix) + len(dict) - at // back from the copy's output position
		b = append(b, byte(len(fromDict)-1)<<2|2, byte(offset), byte(offset>>8))
		b = append(append(b, byte(len(suffix)-1)<<2), suffix...)
		return b, want
	}
	rec, want := block(packedS2Record, recordDict, `{`, `"kind":"deidentification"`, `,"n":1}`)
	if got := UnpackRecord(rec); string(got) != want {
		t.Errorf("UnpackRecord(hand-built S2 block) = %q; want %q", got, want)
	}
	body, wantBody := block(packedS2Body, bodyDict, `{"a":1,`, `"system":"http://loinc.org"`, `}`)
	if got, err := unpackSealed(body); err != nil || string(got) != wantBody {
		t.Errorf("unpack(hand-built S2 block) = %q, %v; want %q", got, err, wantBody)
	}
	// A block may begin with a repeat (a one-byte-offset copy of offset
	// 0, tag byte (length-4)<<2 | 1): it repeats the first offset, which
	// the dictionary's first repeat offset, 0, makes the dictionary's
	// whole length: it copies the dictionary's first bytes.
	rep := binary.AppendUvarint([]byte{packedS2Record}, 8+3)
	rep = append(rep, (8-4)<<2|1, 0, (3-1)<<2, ',', '"', 'x')
	if got, want := UnpackRecord(rep), string(recordDict[:8])+`,"x`; string(got) != want {
		t.Errorf("UnpackRecord(a block beginning with a repeat) = %q; want %q", got, want)
	}
	// Read with the other dictionary, the same blocks yield other bytes:
	// the marker names the dictionary.
	if got, err := unpackSealed(append([]byte{packedS2Record}, body[1:]...)); err == nil && string(got) == wantBody {
		t.Errorf("a body block read with recordDict gave the body")
	}
	// Broken blocks come back as they are; none panics.
	for _, bad := range [][]byte{{packedS2Record}, rec[:len(rec)-1], rec[:4], {packedS2Record, 0xff, 0xff, 0xff}} {
		if got := UnpackRecord(bad); !bytes.Equal(got, bad) {
			t.Errorf("UnpackRecord(%x) = %q; want the stored bytes back", bad, got)
		}
	}
	// A bomb: a small row that states a length past maxRecord is refused
	// before anything that large is allocated, and comes back as it is.
	bomb := binary.AppendUvarint([]byte{packedS2Record}, maxRecord+1)
	bomb = append(bomb, 0x00, '{')
	if got := UnpackRecord(bomb); !bytes.Equal(got, bomb) {
		t.Errorf("UnpackRecord(a block stating %d bytes) = %d bytes; want the stored bytes back", maxRecord+1, len(got))
	}
	if _, err := unpack(bomb, maxRecord); err == nil {
		t.Errorf("unpack(a block stating %d bytes, limit %d) succeeded", maxRecord+1, maxRecord)
	}
}

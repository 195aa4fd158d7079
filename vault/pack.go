package vault

import (
	"bytes"
	"compress/flate"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Bodies and research copies are deflated before they are sealed: FHIR JSON
// repeats its member names and code system URLs, and a version's bytes are
// most of what the vault keeps (Synthea deflates to about 40 %). The plain
// text inside the AEAD says how it is stored, by its first byte:
//
//	0x01  a raw DEFLATE stream (RFC 1951) of the bytes
//	0x00  the bytes follow as they are (they began with 0x00 or 0x01)
//	else  the bytes as they are: a JSON object begins with '{', and every
//	      version sealed before packing is such a body
//
// so what was sealed before still opens unchanged. A body is compressed on
// its own, never with another's, so its length says nothing about other
// resources; the first byte is authenticated with the rest.
const (
	packedRaw     = 0x00
	packedDeflate = 0x01
)

// maxUnpacked bounds what one sealed body inflates to. Sealed bytes are the
// vault's own, authenticated, so this guards against a bug, not an attack.
const maxUnpacked = 256 << 20

var deflaters = sync.Pool{New: func() any {
	// BestSpeed: a body is small and written once; the level barely changes
	// its size (40 % vs 39 % at level 5) and costs a third of the time.
	w, err := flate.NewWriter(nil, flate.BestSpeed)
	if err != nil {
		panic(err) // only for an invalid level
	}
	return w
}}

var inflaters sync.Pool // of io.ReadCloser that are flate.Resetter

// pack returns the plain text to seal for b.
func pack(b []byte) []byte {
	if len(b) == 0 {
		return b
	}
	var buf bytes.Buffer
	buf.Grow(1 + len(b)/2)
	buf.WriteByte(packedDeflate)
	w := deflaters.Get().(*flate.Writer)
	w.Reset(&buf)
	// Writes to a bytes.Buffer do not fail.
	_, _ = w.Write(b)
	_ = w.Close()
	deflaters.Put(w)
	if buf.Len() < len(b) {
		return buf.Bytes()
	}
	if b[0] != packedRaw && b[0] != packedDeflate {
		return b
	}
	return append([]byte{packedRaw}, b...)
}

// errPacked reports sealed plain text that does not unpack.
var errPacked = errors.New("sealed body does not inflate")

// unpack reverses pack.
func unpack(p []byte) ([]byte, error) {
	if len(p) == 0 {
		return p, nil
	}
	switch p[0] {
	case packedRaw:
		return p[1:], nil
	case packedDeflate:
	default:
		return p, nil
	}
	src := bytes.NewReader(p[1:])
	var r io.ReadCloser
	if v := inflaters.Get(); v != nil {
		r = v.(io.ReadCloser)
		if err := r.(flate.Resetter).Reset(src, nil); err != nil {
			return nil, fmt.Errorf("%w: %w", errPacked, err)
		}
	} else {
		r = flate.NewReader(src)
	}
	var out bytes.Buffer
	out.Grow(3 * len(p))
	_, err := out.ReadFrom(io.LimitReader(r, maxUnpacked+1))
	inflaters.Put(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errPacked, err)
	}
	if out.Len() > maxUnpacked {
		return nil, fmt.Errorf("%w: larger than %d bytes", errPacked, maxUnpacked)
	}
	return out.Bytes(), nil
}

// Leaf records (Leaf.Record) are deflated too, but against a preset
// dictionary: a record is JSON of about a kilobyte written once and read
// rarely, and most of it (the kind's member names, the de-identification
// rule names, methods and FHIR paths, the profile revision) is the same in
// every record, so on its own it deflates to about half, and with the
// dictionary to about a fifth (Synthea: 978 bytes to about 200). A Store
// keeps, by the first byte:
//
//	0x02  a raw DEFLATE stream of the record with recordDict as its preset
//	      dictionary (RFC 1951 section 3.2.2 window priming, as zlib's
//	      deflateSetDictionary)
//	0x00  the record follows as it is (it began with 0x00, 0x01 or 0x02)
//	else  the record as it is: JSON begins with '{', and every record
//	      stored before packing is such JSON
//
// Records are not sealed: they hold opaque ids only and are listed to
// auditors and patients, so their compressed size tells nothing their
// bytes do not.
const packedRecordDict = 0x02

// recordDict is the preset dictionary of packedRecordDict: skeletons of
// each record kind and the rule groups most frequent in the deidentification
// records of the Synthea set, most frequent last (nearest the data). It is
// frozen: records stored with it need exactly these bytes to inflate
// (TestRecordDictFrozen pins its digest). A better dictionary gets a new
// marker byte, and this one stays for the records written under it.
//
//go:embed record.dict
var recordDict []byte

// recordLevel: a preset dictionary needs level 2 or more (BestSpeed ignores
// it); 2 is within a few percent of 6 on records, for less CPU.
const recordLevel = 2

var recordDeflaters = sync.Pool{New: func() any {
	w, err := flate.NewWriterDict(nil, recordLevel, recordDict)
	if err != nil {
		panic(err) // only for an invalid level
	}
	return w
}}

var recordInflaters sync.Pool // of io.ReadCloser that are flate.Resetter

// maxRecord bounds what one stored record inflates to. Records are not
// sealed, so unlike a body a stored record is not known to be the vault's
// own: whoever can write the database could plant a small row that inflates
// to a lot. Records are a few kilobytes; a larger one is kept as it is.
const maxRecord = 1 << 20

// PackRecord returns the bytes a Store keeps for a leaf record. Both
// backends call it as they store a record, and UnpackRecord as they read
// one back, so every reader (evidence, receipts, audit, the decision log,
// the console) still gets the exact bytes the leaf commits to.
func PackRecord(b []byte) []byte {
	if len(b) == 0 {
		return b
	}
	if len(b) > maxRecord {
		return packedAsIs(b)
	}
	var buf bytes.Buffer
	buf.Grow(1 + len(b)/3)
	buf.WriteByte(packedRecordDict)
	w := recordDeflaters.Get().(*flate.Writer)
	w.Reset(&buf)
	// Writes to a bytes.Buffer do not fail.
	_, _ = w.Write(b)
	_ = w.Close()
	recordDeflaters.Put(w)
	if buf.Len() < len(b) {
		return buf.Bytes()
	}
	return packedAsIs(b)
}

// packedAsIs is the stored form of a record kept as it is.
func packedAsIs(b []byte) []byte {
	if b[0] > packedRecordDict {
		return b
	}
	return append([]byte{packedRaw}, b...)
}

// UnpackRecord reverses PackRecord. A record stored before packing (plain
// JSON) comes back as it is. Stored bytes that do not inflate are returned
// as they are: they cannot be the bytes the leaf commits to (those are
// JSON), so an audit reports the record as altered, as it does any changed
// byte, rather than failing its walk, and no reader panics.
func UnpackRecord(p []byte) []byte {
	if len(p) == 0 {
		return p
	}
	switch p[0] {
	case packedRaw:
		return p[1:]
	case packedRecordDict:
	default:
		return p
	}
	src := bytes.NewReader(p[1:])
	var r io.ReadCloser
	if v := recordInflaters.Get(); v != nil {
		r = v.(io.ReadCloser)
		if err := r.(flate.Resetter).Reset(src, recordDict); err != nil {
			return p
		}
	} else {
		r = flate.NewReaderDict(src, recordDict)
	}
	var out bytes.Buffer
	out.Grow(5 * len(p))
	_, err := out.ReadFrom(io.LimitReader(r, maxRecord+1))
	recordInflaters.Put(r)
	if err != nil || out.Len() > maxRecord {
		return p
	}
	return out.Bytes()
}

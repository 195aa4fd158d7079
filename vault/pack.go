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

// Bodies, research copies and remembered responses are deflated before
// they are sealed, and leaf records before they are stored: FHIR JSON
// repeats its member names and code system URLs, and a version's bytes are
// most of what the vault keeps. The first byte of the packed form says how
// it is stored:
//
//	0x01  a raw DEFLATE stream (RFC 1951) of the bytes
//	0x02  a raw DEFLATE stream of the bytes with bodyDict as its preset
//	      dictionary (RFC 1951 window priming, as zlib's
//	      deflateSetDictionary); what pack writes
//	0x03  the same with recordDict; what PackRecord writes
//	0x00  the bytes follow as they are (they began with 0x00 to 0x03)
//	else  the bytes as they are: JSON begins with '{', and every body,
//	      response and record stored before packing is such JSON
//
// so what was stored before still reads unchanged. Each value is compressed
// on its own, never with another's, so its length says nothing about other
// resources; a preset dictionary is public, frozen bytes, not another
// resource. A sealed value's first byte is authenticated with the rest.
const (
	packedRaw        = 0x00
	packedDeflate    = 0x01
	packedBodyDict   = 0x02
	packedRecordDict = 0x03
)

// bodyDict is the preset dictionary of bodies, copies and responses, 16 KiB
// in two halves, each one resource of every type that is neither a Patient,
// a Practitioner nor an Organization, least frequent type first, with ids,
// UUIDs, hashes and attachments removed, cut to its last 8 KiB (the part
// nearest the data): first research copies (the gateway's Safe Harbor
// output for Synthea resources: security labels, masked extensions), then
// canonical bodies from five Synthea patients (no other file of the set).
// It holds member names, code systems, codes and their displays, no
// patient's data. Measured on the other patients, a Synthea body deflates
// with it to about 280 bytes instead of 610 (1,400 in clear), a research
// copy to about 350 instead of about 600 (1,950 in clear). recordDict is
// the preset dictionary of leaf records: a skeleton of each record kind and
// the rule groups most frequent in the Synthea set's deidentification
// records, most frequent last; with it such a record deflates to about 210
// bytes instead of 520 (980 in clear).
//
// Both are frozen: values stored with them need exactly these bytes to
// inflate (TestDictsFrozen pins their digests). A better dictionary gets a
// new marker byte, and these stay for the values written under them.
var (
	//go:embed body.dict
	bodyDict []byte
	//go:embed record.dict
	recordDict []byte
)

// A preset dictionary needs level 2 or more (BestSpeed ignores it); level 2
// is within a few percent of 6 on these sizes, for less CPU.
const dictLevel = 2

// maxUnpacked bounds what one sealed body inflates to. Sealed bytes are the
// vault's own, authenticated, so this guards against a bug, not an attack.
const maxUnpacked = 256 << 20

// maxRecord bounds what one stored record inflates to. Records are not
// sealed, so a stored record is not known to be the vault's own: whoever
// can write the database could plant a small row that inflates to a lot.
// Records are a few kilobytes; a larger one is kept as it is.
const maxRecord = 1 << 20

// codec deflates with one preset dictionary (none for packedDeflate).
type codec struct {
	marker  byte
	level   int
	dict    []byte
	writers sync.Pool // of *flate.Writer
	readers sync.Pool // of io.ReadCloser that are flate.Resetter
}

var (
	deflateCodec = &codec{marker: packedDeflate, level: flate.BestSpeed}
	bodyCodec    = &codec{marker: packedBodyDict, level: dictLevel, dict: bodyDict}
	recordCodec  = &codec{marker: packedRecordDict, level: dictLevel, dict: recordDict}
)

// pack returns marker || DEFLATE(b), or nil if that is not smaller than b.
func (c *codec) pack(b []byte) []byte {
	var buf bytes.Buffer
	buf.Grow(1 + len(b)/2)
	buf.WriteByte(c.marker)
	w, _ := c.writers.Get().(*flate.Writer)
	if w == nil {
		var err error
		if w, err = flate.NewWriterDict(&buf, c.level, c.dict); err != nil {
			panic(err) // only for an invalid level
		}
	} else {
		w.Reset(&buf)
	}
	// Writes to a bytes.Buffer do not fail.
	_, _ = w.Write(b)
	_ = w.Close()
	c.writers.Put(w)
	if buf.Len() >= len(b) {
		return nil
	}
	return buf.Bytes()
}

// unpack inflates stream (the packed form without its marker) to at most
// limit bytes.
func (c *codec) unpack(stream []byte, limit int) ([]byte, error) {
	src := bytes.NewReader(stream)
	r, _ := c.readers.Get().(io.ReadCloser)
	if r == nil {
		r = flate.NewReaderDict(src, c.dict)
	} else if err := r.(flate.Resetter).Reset(src, c.dict); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	out.Grow(4 * len(stream))
	_, err := out.ReadFrom(io.LimitReader(r, int64(limit)+1))
	c.readers.Put(r)
	if err != nil {
		return nil, err
	}
	if out.Len() > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return out.Bytes(), nil
}

// pack returns the plain text to seal for b.
func pack(b []byte) []byte { return packWith(bodyCodec, b) }

func packWith(c *codec, b []byte) []byte {
	if len(b) == 0 {
		return b
	}
	if c != nil {
		if p := c.pack(b); p != nil {
			return p
		}
	}
	if b[0] > packedRecordDict {
		return b
	}
	return append([]byte{packedRaw}, b...)
}

// errPacked reports packed bytes that do not unpack.
var errPacked = errors.New("packed value does not inflate")

// unpack reverses pack, PackRecord and the packedDeflate form bodies were
// sealed in before bodyDict.
func unpack(p []byte, limit int) ([]byte, error) {
	if len(p) == 0 {
		return p, nil
	}
	var c *codec
	switch p[0] {
	case packedRaw:
		return p[1:], nil
	case packedDeflate:
		c = deflateCodec
	case packedBodyDict:
		c = bodyCodec
	case packedRecordDict:
		c = recordCodec
	default:
		return p, nil
	}
	b, err := c.unpack(p[1:], limit)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errPacked, err)
	}
	return b, nil
}

// unpackSealed unpacks sealed plain text.
func unpackSealed(p []byte) ([]byte, error) { return unpack(p, maxUnpacked) }

// PackRecord returns the bytes a Store keeps for a leaf record
// (Leaf.Record), deflated against recordDict. Both backends call it as they
// store a record, and UnpackRecord as they read one back, so every reader
// (evidence, receipts, audit, the decision log, the console) still gets the
// exact bytes the leaf commits to. Records are not sealed: they hold opaque
// ids only and are listed to auditors and patients, so their compressed
// size tells nothing their bytes do not.
func PackRecord(b []byte) []byte {
	if len(b) > maxRecord {
		return packWith(nil, b)
	}
	return packWith(recordCodec, b)
}

// UnpackRecord reverses PackRecord. A record stored before packing (plain
// JSON) comes back as it is. Stored bytes that do not inflate are returned
// as they are: they begin with a marker byte, which a record (JSON) never
// does, so they are not what the leaf commits to and an audit reports the
// record as altered, as it does any changed byte, rather than failing its
// walk; and no reader panics.
func UnpackRecord(p []byte) []byte {
	b, err := unpack(p, maxRecord)
	if err != nil {
		return p
	}
	return b
}

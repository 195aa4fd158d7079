package vault

import (
	"bytes"
	"compress/flate"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Bodies, research copies and remembered responses are compressed before
// they are sealed, and leaf records before they are stored: FHIR JSON
// repeats its member names and code system URLs, and a version's bytes are
// most of what the vault keeps. The first byte of the packed form says how
// it is stored:
//
//	0x06  an S2 block of the bytes (S2: the extension of Snappy's block
//	      format that github.com/klauspost/compress/s2 writes), with
//	      bodyDict as its dictionary, whose first repeat offset is 0: the
//	      dictionary logically precedes the block, and a copy whose offset
//	      reaches back past the block's start copies from the dictionary's
//	      end (TestUnpackS2Format builds one by hand); what pack writes for
//	      a value of at most s2MaxValue bytes
//	0x07  the same with recordDict; what PackRecord writes for such a value
//	0x04  a Zstandard frame (RFC 8878) of the bytes, compressed with
//	      bodyDict as a raw content dictionary (dictionary id 0); what pack
//	      writes for a larger value
//	0x05  the same with recordDict; what PackRecord writes for such a value
//	0x01  a raw DEFLATE stream (RFC 1951) of the bytes
//	0x02  a raw DEFLATE stream of the bytes with bodyDict as its preset
//	      dictionary (RFC 1951 window priming, as zlib's
//	      deflateSetDictionary)
//	0x03  the same with recordDict
//	0x00  the bytes follow as they are (they began with 0x00 to 0x07)
//	else  the bytes as they are: JSON begins with '{', and every body,
//	      response and record stored before packing is such JSON
//
// so what was stored before still reads unchanged: 0x01 to 0x05 are what
// earlier versions wrote, and every value ever packed is JSON, so no value
// stored as it is begins with 0x04 to 0x07. Zstandard replaced DEFLATE
// because a preset dictionary costs DEFLATE a pass over the dictionary and
// a cleared 640 KiB hash table for every value. S2 replaced Zstandard for
// values of up to 64 KiB (nearly every resource) for the same reason one
// step on: Zstandard's encoder restores its 256 KiB hash table from the
// dictionary's for every value, a fixed cost of some 10 µs, where S2's
// reads the dictionary's table in place and clears a 64 KiB one of its
// own. Measured on Synthea (BenchmarkPackCorpus): a body packs in 3.1 µs
// instead of 12.9 to 351 bytes instead of 343, a deidentification record
// in 5.4 µs instead of 13.1 to the same size, and a body unpacks in 1.2 µs
// instead of 2.6 (an audit unpacks every body, copy and record); the
// vault grows some 1.5 %, and BenchmarkIngest's CPU ratio to the bare
// parse went from 0.82-0.89 to 0.92-0.94. S2 reaches its dictionary only
// from a block's first 64 KiB, so a larger value is still a Zstandard
// frame. S2 dictionaries are the
// newest part of that library (its author calls them early work, and
// their successor format, MinLZ, has none): the stored form is pinned by
// blocks built by hand from the format's description, which a reader
// written from that description would decode.
//
// Each value is compressed on its own, never with another's, so its length
// says nothing about other resources; a dictionary is public, frozen bytes,
// not another resource. A sealed value's first byte is authenticated with
// the rest.
const (
	packedRaw        = 0x00
	packedDeflate    = 0x01
	packedBodyDict   = 0x02
	packedRecordDict = 0x03
	packedZstdBody   = 0x04
	packedZstdRecord = 0x05
	packedS2Body     = 0x06
	packedS2Record   = 0x07
	lastMarker       = packedS2Record
)

// bodyDict is the dictionary of bodies, copies and responses, 16 KiB in
// two halves, each one resource of every type that is neither a Patient,
// a Practitioner nor an Organization, least frequent type first, with ids,
// UUIDs, hashes and attachments removed, cut to its last 8 KiB (the part
// nearest the data): first research copies (the gateway's Safe Harbor
// output for Synthea resources: security labels, masked extensions), then
// canonical bodies from five Synthea patients (no other file of the set).
// It holds member names, code systems, codes and their displays, no
// patient's data. Measured on the other patients (with Huffman-coded
// literals, as packing wrote them before; see newZstdCodec), a Synthea body
// packs with it to about 280 bytes instead of 610 (1,400 in clear), a
// research copy to about 350 instead of about 600 (1,950 in clear). recordDict is
// the dictionary of leaf records: a skeleton of each record kind and the
// rule groups most frequent in the Synthea set's deidentification records,
// most frequent last; with it such a record packs to about 210 bytes
// instead of 520 (980 in clear).
//
// Both are frozen: values stored with them need exactly these bytes to
// unpack (TestDictsFrozen pins their digests). A better dictionary gets a
// new marker byte, and these stay for the values written under them.
var (
	//go:embed body.dict
	bodyDict []byte
	//go:embed record.dict
	recordDict []byte
)

// maxUnpacked bounds what one sealed body unpacks to. Sealed bytes are the
// vault's own, authenticated, so this guards against a bug, not an attack.
const maxUnpacked = 256 << 20

// maxRecord bounds what one stored record unpacks to. Records are not
// sealed, so a stored record is not known to be the vault's own: whoever
// can write the database could plant a small row that unpacks to a lot.
// Records are a few kilobytes; a larger one is kept as it is.
const maxRecord = 1 << 20

// zstdCodec compresses with one raw content dictionary.
type zstdCodec struct {
	marker  byte
	dict    []byte
	encoder func() *zstd.Encoder

	mu       sync.Mutex
	decoders map[int]*zstd.Decoder // by output limit
}

func newZstdCodec(marker byte, dict []byte) *zstdCodec {
	c := &zstdCodec{marker: marker, dict: dict, decoders: map[int]*zstd.Decoder{}}
	// Built on first use: the dictionary's tables are made once, here.
	c.encoder = sync.OnceValue(func() *zstd.Encoder {
		e, err := zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderDictRaw(0, dict),
			// Sealed values are authenticated and records are committed
			// to by their leaves: a checksum would add 4 bytes for nothing.
			zstd.WithEncoderCRC(false),
			// One segment: the frame states its content size, which the
			// decoder checks against its limit before it allocates.
			zstd.WithSingleSegment(true),
			// Literals as they are, without Huffman coding: a frame of a
			// value this small must carry its own Huffman table, and reading
			// it and decoding the literals was most of unpacking (audit
			// unpacks every version, copy and record). Measured on Synthea
			// bodies: unpacking 5.6 -> 2.2 µs, packing 18.7 -> 13.0 µs, 283
			// -> 347 bytes; the vault grows about 12 % (2,530 -> 2,850 bytes
			// a resource in BenchmarkIngest). Frames written before, with
			// Huffman-coded literals, unpack as they did.
			zstd.WithNoEntropyCompression(true),
			// Each encoder keeps about 600 KiB of tables; a value takes
			// microseconds, so a few encoders serve any number of cores.
			zstd.WithEncoderConcurrency(min(runtime.GOMAXPROCS(0), 8)))
		if err != nil {
			panic(err) // only for invalid options
		}
		return e
	})
	return c
}

var (
	bodyCodec   = newZstdCodec(packedZstdBody, bodyDict)
	recordCodec = newZstdCodec(packedZstdRecord, recordDict)
)

// s2Codec compresses a value as one S2 block with one dictionary.
type s2Codec struct {
	marker byte
	dict   *s2.Dict
}

// s2MaxValue is the largest value packed as an S2 block: a block's copies
// reach the dictionary from its first 64 KiB only.
const s2MaxValue = s2.MaxDictSrcOffset

func newS2Codec(marker byte, dict []byte) *s2Codec {
	// The first repeat offset is part of the format, as the dictionary's
	// bytes are: 0, the dictionary's first byte.
	d := s2.MakeDictManual(dict, 0)
	if d == nil {
		panic("vault: a dictionary S2 cannot use")
	}
	return &s2Codec{marker: marker, dict: d}
}

var (
	s2BodyCodec   = newS2Codec(packedS2Body, bodyDict)
	s2RecordCodec = newS2Codec(packedS2Record, recordDict)
)

// pack returns marker || block(b), or nil if that is not smaller than b.
// b is at most s2MaxValue bytes.
func (c *s2Codec) pack(b []byte) []byte {
	out := make([]byte, 1+s2.MaxEncodedLen(len(b)))
	out[0] = c.marker
	n := 1 + len(c.dict.Encode(out[1:], b))
	if n >= len(b) {
		return nil
	}
	return out[:n]
}

// unpack decompresses block (the packed form without its marker) to at
// most limit bytes: a block states its length first, which is checked
// before anything is allocated.
func (c *s2Codec) unpack(block []byte, limit int) ([]byte, error) {
	n, err := s2.DecodedLen(block)
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return c.dict.Decode(nil, block)
}

// packer packs with one dictionary: as an S2 block up to s2MaxValue
// bytes, as a Zstandard frame past it (or whatever the length, without
// small: what tests compare with the reference zstd tool).
type packer struct {
	small *s2Codec
	large *zstdCodec
}

var (
	bodyPacker   = &packer{s2BodyCodec, bodyCodec}
	recordPacker = &packer{s2RecordCodec, recordCodec}
)

// pack returns b packed, or nil if that is not smaller than b.
func (p *packer) pack(b []byte) []byte {
	if p.small != nil && len(b) <= s2MaxValue {
		return p.small.pack(b)
	}
	return p.large.pack(b)
}

// pack returns marker || frame(b), or nil if that is not smaller than b.
func (c *zstdCodec) pack(b []byte) []byte {
	out := make([]byte, 1, 1+len(b)/2)
	out[0] = c.marker
	out = c.encoder().EncodeAll(b, out)
	if len(out) >= len(b) {
		return nil
	}
	return out
}

// unpack decompresses frame (the packed form without its marker) to at
// most limit bytes.
func (c *zstdCodec) unpack(frame []byte, limit int) ([]byte, error) {
	if len(frame) == 0 {
		return nil, errors.New("no frame") // which DecodeAll would take for nothing
	}
	d, err := c.decoder(limit)
	if err != nil {
		return nil, err
	}
	return d.DecodeAll(frame, nil)
}

// decoder returns the codec's decoder that refuses, before allocating, a
// frame that would decompress to more than limit bytes or needs a larger
// window.
func (c *zstdCodec) decoder(limit int) (*zstd.Decoder, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := c.decoders[limit]; d != nil {
		return d, nil
	}
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderDictRaw(0, c.dict),
		zstd.WithDecoderMaxMemory(uint64(limit)),
		zstd.WithDecoderMaxWindow(uint64(max(limit, zstd.MinWindowSize))),
		zstd.WithDecoderConcurrency(0)) // GOMAXPROCS decodes at once
	if err != nil {
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	c.decoders[limit] = d
	return d, nil
}

// flateCodec inflates what earlier versions deflated, with one preset
// dictionary (none for packedDeflate).
type flateCodec struct {
	dict    []byte
	readers sync.Pool // of io.ReadCloser that are flate.Resetter
}

var (
	deflateCodec     = &flateCodec{}
	flateBodyCodec   = &flateCodec{dict: bodyDict}
	flateRecordCodec = &flateCodec{dict: recordDict}
)

// unpack inflates stream (the packed form without its marker) to at most
// limit bytes.
func (c *flateCodec) unpack(stream []byte, limit int) ([]byte, error) {
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
func pack(b []byte) []byte { return packWith(bodyPacker, b) }

func packWith(c *packer, b []byte) []byte {
	if len(b) == 0 {
		return b
	}
	if c != nil {
		if p := c.pack(b); p != nil {
			return p
		}
	}
	if b[0] > lastMarker {
		return b
	}
	return append([]byte{packedRaw}, b...)
}

// errPacked reports packed bytes that do not unpack.
var errPacked = errors.New("packed value does not unpack")

// unpack reverses pack, PackRecord and the forms earlier versions wrote.
func unpack(p []byte, limit int) ([]byte, error) {
	if len(p) == 0 {
		return p, nil
	}
	var c interface {
		unpack(stream []byte, limit int) ([]byte, error)
	}
	switch p[0] {
	case packedRaw:
		return p[1:], nil
	case packedZstdBody:
		c = bodyCodec
	case packedZstdRecord:
		c = recordCodec
	case packedS2Body:
		c = s2BodyCodec
	case packedS2Record:
		c = s2RecordCodec
	case packedDeflate:
		c = deflateCodec
	case packedBodyDict:
		c = flateBodyCodec
	case packedRecordDict:
		c = flateRecordCodec
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
// (Leaf.Record), compressed with recordDict. Both backends call it as they
// store a record, and UnpackRecord as they read one back, so every reader
// (evidence, receipts, audit, the decision log, the console) still gets the
// exact bytes the leaf commits to. Records are not sealed: they hold opaque
// ids only and are listed to auditors and patients, so their compressed
// size tells nothing their bytes do not.
func PackRecord(b []byte) []byte { return packRecordWith(recordPacker, b) }

// packRecordWith packs a record with p, or keeps it as it is past
// maxRecord, which UnpackRecord refuses to inflate to.
func packRecordWith(p *packer, b []byte) []byte {
	if len(b) > maxRecord {
		return packWith(nil, b)
	}
	return packWith(p, b)
}

// PackLeaf packs l's Record ahead, into l.Packed: a caller that builds a
// leaf before its transaction (on its own goroutine, while the writer
// serves others) packs it there too. Record MUST NOT change afterwards.
func PackLeaf(l *Leaf) {
	l.Packed = nil
	if len(l.Record) > 0 {
		l.Packed = PackRecord(l.Record)
	}
}

// StoredRecord is what a Store keeps for l's Record: l.Packed if PackLeaf
// made it, else PackRecord(l.Record).
func StoredRecord(l *Leaf) []byte {
	if l.Packed != nil && len(l.Record) > 0 {
		return l.Packed
	}
	return PackRecord(l.Record)
}

// UnpackRecord reverses PackRecord. A record stored before packing (plain
// JSON) comes back as it is. Stored bytes that do not unpack are returned
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

package vault

import (
	"bytes"
	"compress/flate"
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

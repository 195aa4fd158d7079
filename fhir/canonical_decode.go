package fhir

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// ErrNotCanonical reports bytes that are not the canonical form of any
// JSON tree (see Canonical).
var ErrNotCanonical = errors.New("not in canonical form")

// DecodeCanonical decodes data that must already be in canonical form: it
// returns the tree Decode returns for data if Canonical of that tree gives
// data back byte for byte, and an error wrapping ErrNotCanonical otherwise.
// It checks the form while it parses, in one pass and without re-encoding,
// so that an audit can read every stored version at a fraction of the cost
// of Decode then Canonical.
//
// The tree's strings share one copy of data: holding any of them holds all
// of it.
func DecodeCanonical(data []byte) (any, error) {
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: not UTF-8", ErrNotCanonical)
	}
	d := jsonDecoder{s: string(data), canonical: true}
	v, err := d.value()
	if err != nil {
		return nil, fmt.Errorf("%w: %w at byte %d", ErrNotCanonical, err, d.i)
	}
	if d.i != len(d.s) {
		return nil, fmt.Errorf("%w: data after the top-level value at byte %d", ErrNotCanonical, d.i)
	}
	return v, nil
}

var (
	errCanonicalOrder  = errors.New("member names not in ascending order, or repeated")
	errCanonicalEscape = errors.New("a string escaped otherwise than canonically")
)

// canonicalEscape reads the escape at d.s[d.i] of a canonical string into
// buf: '"', '\\' and control characters only, these as \b \f \n \r \t or
// else \u00xx in lower-case hex (as appendString writes them).
func (d *jsonDecoder) canonicalEscape(buf []byte) ([]byte, error) {
	if d.i+1 >= len(d.s) {
		return nil, errSyntax
	}
	if c, ok := shortEscape(d.s[d.i+1]); ok {
		d.i += 2
		return append(buf, c), nil
	}
	// Only a control character without a short form is written \u00xx.
	if d.s[d.i+1] != 'u' || d.i+6 > len(d.s) || d.s[d.i+2:d.i+4] != "00" {
		return nil, errCanonicalEscape
	}
	hi, lo := lowerHex(d.s[d.i+4]), lowerHex(d.s[d.i+5])
	if hi < 0 || hi > 1 || lo < 0 {
		return nil, errCanonicalEscape
	}
	switch r := byte(hi<<4 | lo); r {
	case '\b', '\f', '\n', '\r', '\t':
		return nil, errCanonicalEscape
	default:
		d.i += 6
		return append(buf, r), nil
	}
}

func lowerHex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	}
	return -1
}

package fhir

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Canonical returns the canonical bytes of a JSON tree as produced by Decode:
// the form every commitment is computed over. It is specified in
// docs/canonical-form.md and pinned by golden tests; changing it would break
// every receipt ever issued.
//
// In short: UTF-8 JSON with no insignificant whitespace; object members sorted
// by the bytes of their UTF-8 names; arrays in order; numbers exactly as the
// client wrote them (FHIR decimals carry precision, so 1.50 stays 1.50);
// strings with only '"', '\\' and control characters escaped, control
// characters as \b \f \n \r \t or \u00XX (lower-case hex), everything else
// literal.
func Canonical(v any) ([]byte, error) {
	// Most resources are under 2 KB: one allocation, rarely two.
	return appendCanonical(make([]byte, 0, 2048), v)
}

// CanonicalJSON decodes JSON text and returns its canonical bytes. Verifiers
// use it to re-derive a commitment from an exported resource in any layout.
func CanonicalJSON(data []byte) ([]byte, error) {
	v, err := Decode(data)
	if err != nil {
		return nil, err
	}
	return Canonical(v)
}

func appendCanonical(buf []byte, v any) ([]byte, error) {
	var err error
	switch x := v.(type) {
	case nil:
		buf = append(buf, "null"...)
	case bool:
		buf = strconv.AppendBool(buf, x)
	case json.Number:
		buf = append(buf, x...)
	case string:
		if !utf8.ValidString(x) {
			return nil, errNotUTF8
		}
		buf = appendString(buf, x)
	case []any:
		buf = append(buf, '[')
		for i, e := range x {
			if i > 0 {
				buf = append(buf, ',')
			}
			if buf, err = appendCanonical(buf, e); err != nil {
				return nil, err
			}
		}
		buf = append(buf, ']')
	case map[string]any:
		// FHIR elements have a few members: their names sort on the stack.
		var names [24]string
		keys := names[:0]
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys) // Go compares strings bytewise: UTF-8 byte order
		buf = append(buf, '{')
		for i, k := range keys {
			if i > 0 {
				buf = append(buf, ',')
			}
			if !utf8.ValidString(k) {
				return nil, errNotUTF8
			}
			buf = appendString(buf, k)
			buf = append(buf, ':')
			if buf, err = appendCanonical(buf, x[k]); err != nil {
				return nil, err
			}
		}
		buf = append(buf, '}')
	default:
		return nil, fmt.Errorf("canonical form: unsupported JSON value of type %T", v)
	}
	return buf, nil
}

// errNotUTF8 guards trees built in Go (ids, tombstones): Decode never
// yields such a string, and canonical bytes are always UTF-8 JSON.
var errNotUTF8 = errors.New("canonical form: string is not valid UTF-8")

const hexDigits = "0123456789abcdef"

func appendString(buf []byte, s string) []byte {
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		buf = append(buf, s[start:i]...)
		switch c {
		case '"':
			buf = append(buf, `\"`...)
		case '\\':
			buf = append(buf, `\\`...)
		case '\b':
			buf = append(buf, `\b`...)
		case '\f':
			buf = append(buf, `\f`...)
		case '\n':
			buf = append(buf, `\n`...)
		case '\r':
			buf = append(buf, `\r`...)
		case '\t':
			buf = append(buf, `\t`...)
		default:
			buf = append(buf, `\u00`...)
			buf = append(buf, hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}

// ErrInvalidJSON reports input that is not one well-formed JSON value.
var ErrInvalidJSON = errors.New("invalid JSON")

// DecodeObject is Decode for a JSON object, such as a stored resource: its
// tree, or an error wrapping ErrInvalidJSON.
func DecodeObject(data []byte) (map[string]any, error) {
	v, err := Decode(data)
	if err != nil {
		return nil, err
	}
	tree, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: not a JSON object", ErrInvalidJSON)
	}
	return tree, nil
}

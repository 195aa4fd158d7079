package fhir

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Decode parses JSON text into a generic tree: map[string]any, []any,
// string, json.Number, bool and nil. Numbers keep their lexical form. Invalid
// UTF-8 and trailing data are errors. A repeated member name is an error too:
// parsers disagree on which copy wins, and the copy we store must be the copy
// that was validated.
//
// It accepts exactly what encoding/json's Decoder (UseNumber) accepts, and
// builds the same tree, escapes resolved the same way (a lone surrogate
// becomes U+FFFD); FuzzDecode holds it to that. It is a parser of its own
// because every pushed Bundle goes through it once: in one pass, without
// encoding/json's separate validating scan and reflection, and finding
// repeated names as each object is built, it costs about a third as much.
func Decode(data []byte) (any, error) {
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: not UTF-8", ErrInvalidJSON)
	}
	d := jsonDecoder{data: data}
	d.ws()
	v, err := d.value()
	if err != nil {
		if d.i >= len(d.data) && !errors.Is(err, errRepeatedName) {
			return nil, fmt.Errorf("%w: unexpected end of input", ErrInvalidJSON)
		}
		return nil, fmt.Errorf("%w: %w at byte %d", ErrInvalidJSON, err, d.i)
	}
	if d.ws(); d.i != len(d.data) {
		return nil, fmt.Errorf("%w: data after the top-level value", ErrInvalidJSON)
	}
	return v, nil
}

// maxDecodeDepth is encoding/json's nesting limit, which Decode keeps.
const maxDecodeDepth = 10000

var (
	errSyntax       = errors.New("syntax error")
	errRepeatedName = errors.New("repeated member name in an object")
	errDepth        = errors.New("nested too deeply")
)

// jsonDecoder parses JSON text. members and elems are stacks shared by the
// nested objects and arrays being parsed: a container is built, at its
// exact size, once its last member is known. Every string of the tree is
// its own copy, so that a value kept from the tree does not hold the whole
// body.
type jsonDecoder struct {
	data    []byte
	i       int
	depth   int
	members []canonicalMember
	elems   []any
}

func (d *jsonDecoder) ws() {
	for d.i < len(d.data) {
		switch d.data[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *jsonDecoder) value() (any, error) {
	if d.i >= len(d.data) {
		return nil, errSyntax
	}
	switch c := d.data[d.i]; {
	case c == '{':
		return d.object()
	case c == '[':
		return d.array()
	case c == '"':
		return d.string()
	case c == '-' || (c >= '0' && c <= '9'):
		return d.number()
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	}
	return nil, errSyntax
}

func (d *jsonDecoder) literal(word string) error {
	if len(d.data)-d.i < len(word) || string(d.data[d.i:d.i+len(word)]) != word {
		return errSyntax
	}
	d.i += len(word)
	return nil
}

func (d *jsonDecoder) enter() error {
	d.depth++
	d.i++ // the opening bracket
	if d.depth > maxDecodeDepth {
		return errDepth
	}
	d.ws()
	return nil
}

// next passes the separator after a member or element: it reports whether
// the container ends (at close) or another follows (at a comma).
func (d *jsonDecoder) next(close byte) (bool, error) {
	d.ws()
	if d.i >= len(d.data) {
		return false, errSyntax
	}
	switch d.data[d.i] {
	case close:
		d.i++
		return true, nil
	case ',':
		d.i++
		d.ws()
		return false, nil
	}
	return false, errSyntax
}

func (d *jsonDecoder) object() (any, error) {
	if err := d.enter(); err != nil {
		return nil, err
	}
	start := len(d.members)
	if d.i < len(d.data) && d.data[d.i] == '}' {
		d.i++
		d.depth--
		return map[string]any{}, nil
	}
	for {
		if d.i >= len(d.data) || d.data[d.i] != '"' {
			return nil, errSyntax
		}
		name, err := d.string()
		if err != nil {
			return nil, err
		}
		if d.ws(); d.i >= len(d.data) || d.data[d.i] != ':' {
			return nil, errSyntax
		}
		d.i++
		d.ws()
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		d.members = append(d.members, canonicalMember{name: name, value: v})
		end, err := d.next('}')
		if err != nil {
			return nil, err
		}
		if end {
			break
		}
	}
	ms := d.members[start:]
	m := make(map[string]any, len(ms))
	for _, e := range ms {
		m[e.name] = e.value
	}
	// Names are compared by value, not by spelling: "a" and "\u0061"
	// collide, as they do once decoded.
	repeated := len(m) != len(ms)
	clear(ms) // let the stack hold no values of a finished object
	d.members = d.members[:start]
	d.depth--
	if repeated {
		return nil, errRepeatedName
	}
	return m, nil
}

func (d *jsonDecoder) array() (any, error) {
	if err := d.enter(); err != nil {
		return nil, err
	}
	start := len(d.elems)
	if d.i < len(d.data) && d.data[d.i] == ']' {
		d.i++
		d.depth--
		return []any{}, nil
	}
	for {
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		d.elems = append(d.elems, v)
		end, err := d.next(']')
		if err != nil {
			return nil, err
		}
		if end {
			break
		}
	}
	a := append([]any(nil), d.elems[start:]...)
	clear(d.elems[start:])
	d.elems = d.elems[:start]
	d.depth--
	return a, nil
}

// string parses a string at d.i (its opening quote).
func (d *jsonDecoder) string() (string, error) {
	d.i++
	start := d.i
	for d.i < len(d.data) {
		switch c := d.data[d.i]; {
		case c == '"':
			s := string(d.data[start:d.i])
			d.i++
			return s, nil
		case c == '\\':
			return d.escaped(start)
		case c < 0x20:
			return "", errSyntax
		default:
			d.i++
		}
	}
	return "", errSyntax
}

// escaped finishes a string that began at start and has an escape at d.i,
// resolving escapes as encoding/json does.
func (d *jsonDecoder) escaped(start int) (string, error) {
	buf := make([]byte, d.i-start, d.i-start+16)
	copy(buf, d.data[start:d.i])
	for d.i < len(d.data) {
		c := d.data[d.i]
		switch {
		case c == '"':
			d.i++
			return string(buf), nil
		case c < 0x20:
			return "", errSyntax
		case c != '\\':
			buf = append(buf, c)
			d.i++
			continue
		}
		if d.i+1 >= len(d.data) {
			return "", errSyntax
		}
		switch e := d.data[d.i+1]; e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r := d.hex4(d.i + 2)
			if r < 0 {
				return "", errSyntax
			}
			d.i += 6
			if utf16.IsSurrogate(r) {
				// A valid pair is one rune; anything else is U+FFFD, and
				// what follows is read on its own.
				if r2 := d.hex4(d.i + 2); d.i+1 < len(d.data) && d.data[d.i] == '\\' && d.data[d.i+1] == 'u' && r2 >= 0 {
					if dec := utf16.DecodeRune(r, r2); dec != unicode.ReplacementChar {
						buf = utf8.AppendRune(buf, dec)
						d.i += 6
						continue
					}
				}
				r = unicode.ReplacementChar
			}
			buf = utf8.AppendRune(buf, r)
			continue
		default:
			return "", errSyntax
		}
		d.i += 2
	}
	return "", errSyntax
}

// hex4 reads four hex digits at i as a rune, or returns -1.
func (d *jsonDecoder) hex4(i int) rune {
	if i+4 > len(d.data) {
		return -1
	}
	var r rune
	for _, c := range d.data[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// number parses a JSON number, kept as written.
func (d *jsonDecoder) number() (any, error) {
	start := d.i
	if d.data[d.i] == '-' {
		d.i++
	}
	switch {
	case d.i < len(d.data) && d.data[d.i] == '0':
		d.i++
	case d.digits() == 0:
		return nil, errSyntax
	}
	if d.i < len(d.data) && d.data[d.i] == '.' {
		d.i++
		if d.digits() == 0 {
			return nil, errSyntax
		}
	}
	if d.i < len(d.data) && (d.data[d.i] == 'e' || d.data[d.i] == 'E') {
		d.i++
		if d.i < len(d.data) && (d.data[d.i] == '+' || d.data[d.i] == '-') {
			d.i++
		}
		if d.digits() == 0 {
			return nil, errSyntax
		}
	}
	return json.Number(d.data[start:d.i]), nil
}

func (d *jsonDecoder) digits() int {
	n := 0
	for d.i < len(d.data) && d.data[d.i] >= '0' && d.data[d.i] <= '9' {
		d.i++
		n++
	}
	return n
}

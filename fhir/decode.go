package fhir

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
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
// becomes U+FFFD); FuzzDecodeStdlib holds it to that. It is a parser of its
// own (the one DecodeCanonical uses) because every pushed Bundle goes
// through it: in one pass, without encoding/json's separate validating scan
// and reflection, and finding repeated names as each object is built, it
// costs about a third as much.
func Decode(data []byte) (any, error) {
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: not UTF-8", ErrInvalidJSON)
	}
	// One copy of the text to parse; every string of the tree is copied
	// out of it again (see jsonDecoder).
	d := jsonDecoder{s: string(data)}
	d.ws()
	v, err := d.value()
	if err != nil {
		if d.i >= len(d.s) && !errors.Is(err, errRepeatedName) {
			return nil, fmt.Errorf("%w: unexpected end of input", ErrInvalidJSON)
		}
		return nil, fmt.Errorf("%w: %w at byte %d", ErrInvalidJSON, err, d.i)
	}
	if d.ws(); d.i != len(d.s) {
		return nil, fmt.Errorf("%w: data after the top-level value", ErrInvalidJSON)
	}
	return v, nil
}

// maxDecodeDepth is encoding/json's nesting limit, which Decode and
// DecodeCanonical keep.
const maxDecodeDepth = 10000

var (
	errSyntax       = errors.New("syntax error")
	errRepeatedName = errors.New("repeated member name in an object")
	errDepth        = errors.New("nested too deeply")
)

// jsonDecoder parses JSON text (Decode), or canonical JSON text only
// (DecodeCanonical: no white space, names in ascending order, strings
// escaped as Canonical escapes them). members and elems are stacks shared
// by the nested objects and arrays being parsed: a container is built, at
// its exact size, once its last member is known. Decode copies every
// string of the tree out of the text, so that a value kept from the tree
// does not hold the whole body; DecodeCanonical, for the audit's
// short-lived trees, shares the text.
type jsonDecoder struct {
	s         string
	i         int
	depth     int
	canonical bool
	members   []canonicalMember
	elems     []any
}

type canonicalMember struct {
	name  string
	value any
}

// sub returns the text from start to d.i.
func (d *jsonDecoder) sub(start int) string {
	if d.canonical {
		return d.s[start:d.i]
	}
	return strings.Clone(d.s[start:d.i])
}

// ws skips white space, which canonical text has none of.
func (d *jsonDecoder) ws() {
	if d.canonical {
		return
	}
	for d.i < len(d.s) {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *jsonDecoder) value() (any, error) {
	if d.i >= len(d.s) {
		return nil, errSyntax
	}
	switch c := d.s[d.i]; {
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
	if len(d.s)-d.i < len(word) || d.s[d.i:d.i+len(word)] != word {
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
	if d.i >= len(d.s) {
		return false, errSyntax
	}
	switch d.s[d.i] {
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
	if d.i < len(d.s) && d.s[d.i] == '}' {
		d.i++
		d.depth--
		return map[string]any{}, nil
	}
	for {
		if d.i >= len(d.s) || d.s[d.i] != '"' {
			return nil, errSyntax
		}
		name, err := d.string()
		if err != nil {
			return nil, err
		}
		// Canonical sorts members by the bytes of their names: each must
		// sort strictly after the one before, which also rules out repeats.
		if d.canonical && len(d.members) > start && name <= d.members[len(d.members)-1].name {
			return nil, errCanonicalOrder
		}
		if d.ws(); d.i >= len(d.s) || d.s[d.i] != ':' {
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
	if d.i < len(d.s) && d.s[d.i] == ']' {
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
	for d.i < len(d.s) {
		switch c := d.s[d.i]; {
		case c == '"':
			s := d.sub(start)
			d.i++
			return s, nil
		case c == '\\':
			return d.escaped(start)
		case c < 0x20:
			if d.canonical {
				return "", errCanonicalEscape
			}
			return "", errSyntax
		default:
			d.i++
		}
	}
	return "", errSyntax
}

// escaped finishes a string that began at start and has an escape at d.i.
func (d *jsonDecoder) escaped(start int) (string, error) {
	buf := make([]byte, d.i-start, d.i-start+16)
	copy(buf, d.s[start:d.i])
	for d.i < len(d.s) {
		c := d.s[d.i]
		switch {
		case c == '"':
			d.i++
			return string(buf), nil
		case c < 0x20:
			if d.canonical {
				return "", errCanonicalEscape
			}
			return "", errSyntax
		case c != '\\':
			buf = append(buf, c)
			d.i++
			continue
		}
		var err error
		if buf, err = d.escape(buf); err != nil {
			return "", err
		}
	}
	return "", errSyntax
}

// escape reads the escape at d.s[d.i] into buf: as encoding/json resolves
// it, or for canonical text only as Canonical writes it.
func (d *jsonDecoder) escape(buf []byte) ([]byte, error) {
	if d.canonical {
		return d.canonicalEscape(buf)
	}
	if d.i+1 >= len(d.s) {
		return nil, errSyntax
	}
	if c, ok := shortEscape(d.s[d.i+1]); ok {
		d.i += 2
		return append(buf, c), nil
	}
	switch d.s[d.i+1] {
	case '/':
		d.i += 2
		return append(buf, '/'), nil
	case 'u':
		r := d.hex4(d.i + 2)
		if r < 0 {
			return nil, errSyntax
		}
		d.i += 6
		if utf16.IsSurrogate(r) {
			// A valid pair is one rune; anything else is U+FFFD, and what
			// follows is read on its own.
			if r2 := d.hex4(d.i + 2); d.i+1 < len(d.s) && d.s[d.i] == '\\' && d.s[d.i+1] == 'u' && r2 >= 0 {
				if dec := utf16.DecodeRune(r, r2); dec != unicode.ReplacementChar {
					d.i += 6
					return utf8.AppendRune(buf, dec), nil
				}
			}
			r = unicode.ReplacementChar
		}
		return utf8.AppendRune(buf, r), nil
	}
	return nil, errSyntax
}

// shortEscape returns the character the two-character escape \e stands
// for, of those Canonical writes: \" \\ \b \f \n \r \t.
func shortEscape(e byte) (byte, bool) {
	switch e {
	case '"', '\\':
		return e, true
	case 'b':
		return '\b', true
	case 'f':
		return '\f', true
	case 'n':
		return '\n', true
	case 'r':
		return '\r', true
	case 't':
		return '\t', true
	}
	return 0, false
}

// hex4 reads four hex digits at i as a rune, or returns -1.
func (d *jsonDecoder) hex4(i int) rune {
	if i+4 > len(d.s) {
		return -1
	}
	var r rune
	for _, c := range d.s[i : i+4] {
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
	if d.s[d.i] == '-' {
		d.i++
	}
	switch {
	case d.i < len(d.s) && d.s[d.i] == '0':
		d.i++
	case d.digits() == 0:
		return nil, errSyntax
	}
	if d.i < len(d.s) && d.s[d.i] == '.' {
		d.i++
		if d.digits() == 0 {
			return nil, errSyntax
		}
	}
	if d.i < len(d.s) && (d.s[d.i] == 'e' || d.s[d.i] == 'E') {
		d.i++
		if d.i < len(d.s) && (d.s[d.i] == '+' || d.s[d.i] == '-') {
			d.i++
		}
		if d.digits() == 0 {
			return nil, errSyntax
		}
	}
	return json.Number(d.sub(start)), nil
}

func (d *jsonDecoder) digits() int {
	n := 0
	for d.i < len(d.s) && d.s[d.i] >= '0' && d.s[d.i] <= '9' {
		d.i++
		n++
	}
	return n
}

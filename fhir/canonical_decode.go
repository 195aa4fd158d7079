package fhir

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// ErrNotCanonical reports bytes that are not the canonical form of any
// JSON tree (see Canonical).
var ErrNotCanonical = errors.New("not in canonical form")

// maxCanonicalDepth is encoding/json's nesting limit, so that
// DecodeCanonical accepts exactly what Decode accepts.
const maxCanonicalDepth = 10000

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
	d := canonicalDecoder{s: string(data)}
	v, err := d.value()
	if err != nil {
		return nil, fmt.Errorf("%w: %w at byte %d", ErrNotCanonical, err, d.i)
	}
	if d.i != len(d.s) {
		return nil, fmt.Errorf("%w: data after the top-level value at byte %d", ErrNotCanonical, d.i)
	}
	return v, nil
}

// canonicalDecoder parses canonical JSON text. members and elems are stacks
// shared by the nested objects and arrays being parsed: a container is
// built, at its exact size, once its last member is known.
type canonicalDecoder struct {
	s       string
	i       int
	depth   int
	members []canonicalMember
	elems   []any
}

type canonicalMember struct {
	name  string
	value any
}

var (
	errCanonicalSyntax = errors.New("not JSON, or JSON with insignificant white space")
	errCanonicalOrder  = errors.New("member names not in ascending order, or repeated")
	errCanonicalEscape = errors.New("a string escaped otherwise than canonically")
	errCanonicalNumber = errors.New("malformed number")
	errCanonicalDepth  = errors.New("nested too deeply")
)

func (d *canonicalDecoder) value() (any, error) {
	if d.i >= len(d.s) {
		return nil, errCanonicalSyntax
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
	return nil, errCanonicalSyntax
}

func (d *canonicalDecoder) literal(word string) error {
	if len(d.s)-d.i < len(word) || d.s[d.i:d.i+len(word)] != word {
		return errCanonicalSyntax
	}
	d.i += len(word)
	return nil
}

func (d *canonicalDecoder) enter() error {
	d.depth++
	d.i++ // the opening bracket
	if d.depth > maxCanonicalDepth {
		return errCanonicalDepth
	}
	return nil
}

func (d *canonicalDecoder) object() (any, error) {
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
			return nil, errCanonicalSyntax
		}
		name, err := d.string()
		if err != nil {
			return nil, err
		}
		// Canonical sorts members by the bytes of their names: each must
		// sort strictly after the one before, which also rules out repeats.
		if len(d.members) > start && name <= d.members[len(d.members)-1].name {
			return nil, errCanonicalOrder
		}
		if d.i >= len(d.s) || d.s[d.i] != ':' {
			return nil, errCanonicalSyntax
		}
		d.i++
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		d.members = append(d.members, canonicalMember{name: name, value: v})
		if d.i >= len(d.s) {
			return nil, errCanonicalSyntax
		}
		c := d.s[d.i]
		d.i++
		if c == '}' {
			break
		}
		if c != ',' {
			return nil, errCanonicalSyntax
		}
	}
	ms := d.members[start:]
	m := make(map[string]any, len(ms))
	for _, e := range ms {
		m[e.name] = e.value
	}
	clear(ms) // let the stack hold no values of a finished object
	d.members = d.members[:start]
	d.depth--
	return m, nil
}

func (d *canonicalDecoder) array() (any, error) {
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
		if d.i >= len(d.s) {
			return nil, errCanonicalSyntax
		}
		c := d.s[d.i]
		d.i++
		if c == ']' {
			break
		}
		if c != ',' {
			return nil, errCanonicalSyntax
		}
	}
	a := append([]any(nil), d.elems[start:]...)
	clear(d.elems[start:])
	d.elems = d.elems[:start]
	d.depth--
	return a, nil
}

// string parses a string at d.i (its opening quote), which must be escaped
// as appendString escapes it: '"', '\\' and control characters only, these
// as \b \f \n \r \t or else \u00xx in lower-case hex.
func (d *canonicalDecoder) string() (string, error) {
	d.i++
	start := d.i
	for d.i < len(d.s) {
		switch c := d.s[d.i]; {
		case c == '"':
			s := d.s[start:d.i]
			d.i++
			return s, nil
		case c == '\\':
			return d.escaped(start)
		case c < 0x20:
			return "", errCanonicalEscape
		default:
			d.i++
		}
	}
	return "", errCanonicalSyntax
}

// escaped finishes a string that began at start and has an escape at d.i.
func (d *canonicalDecoder) escaped(start int) (string, error) {
	buf := []byte(d.s[start:d.i])
	for d.i < len(d.s) {
		c := d.s[d.i]
		switch {
		case c == '"':
			d.i++
			return string(buf), nil
		case c < 0x20:
			return "", errCanonicalEscape
		case c != '\\':
			buf = append(buf, c)
			d.i++
			continue
		}
		if d.i+1 >= len(d.s) {
			return "", errCanonicalSyntax
		}
		switch e := d.s[d.i+1]; e {
		case '"', '\\':
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
			// Only a control character without a short form is written
			// \u00xx.
			if d.i+6 > len(d.s) || d.s[d.i+2:d.i+4] != "00" {
				return "", errCanonicalEscape
			}
			hi, lo := lowerHex(d.s[d.i+4]), lowerHex(d.s[d.i+5])
			if hi < 0 || hi > 1 || lo < 0 {
				return "", errCanonicalEscape
			}
			switch r := byte(hi<<4 | lo); r {
			case '\b', '\f', '\n', '\r', '\t':
				return "", errCanonicalEscape
			default:
				buf = append(buf, r)
			}
			d.i += 6
			continue
		default:
			return "", errCanonicalEscape
		}
		d.i += 2
	}
	return "", errCanonicalSyntax
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

// number parses a JSON number; Canonical writes numbers as they were
// written, so any well-formed one is canonical.
func (d *canonicalDecoder) number() (any, error) {
	start := d.i
	if d.s[d.i] == '-' {
		d.i++
	}
	switch {
	case d.i < len(d.s) && d.s[d.i] == '0':
		d.i++
	case d.digits() == 0:
		return nil, errCanonicalNumber
	}
	if d.i < len(d.s) && d.s[d.i] == '.' {
		d.i++
		if d.digits() == 0 {
			return nil, errCanonicalNumber
		}
	}
	if d.i < len(d.s) && (d.s[d.i] == 'e' || d.s[d.i] == 'E') {
		d.i++
		if d.i < len(d.s) && (d.s[d.i] == '+' || d.s[d.i] == '-') {
			d.i++
		}
		if d.digits() == 0 {
			return nil, errCanonicalNumber
		}
	}
	return json.Number(d.s[start:d.i]), nil
}

func (d *canonicalDecoder) digits() int {
	n := 0
	for d.i < len(d.s) && d.s[d.i] >= '0' && d.s[d.i] <= '9' {
		d.i++
		n++
	}
	return n
}

package search

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// NormalizeString is the form string parameters are matched in when
// :exact is not given (R4: case- and accent-insensitive, prefix match):
// accents removed (NFD, combining marks dropped, NFC again), case folded,
// runs of white space collapsed to one space, ends trimmed. The index
// stores NormalizeString of each value and matches a search term's
// NormalizeString as a prefix of it.
func NormalizeString(s string) string {
	if n, ok := normalizeASCII(s); ok {
		return n
	}
	var b strings.Builder
	space := false
	for _, r := range norm.NFD.String(s) {
		switch {
		case unicode.Is(unicode.Mn, r):
			continue
		case unicode.IsSpace(r):
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(foldRune(r))
	}
	return norm.NFC.String(b.String())
}

// normalizeASCII is NormalizeString of s when s is ASCII (ok), as most
// strings an index sees are: NFD and NFC leave it as it is, it has no
// combining marks, its white space is ASCII's (unicode.IsSpace's U+0085
// and U+00A0 are not ASCII) and its case folds A-Z alone. It costs one
// allocation, where the general way costs several.
func normalizeASCII(s string) (string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return "", false
		}
	}
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case ' ', '\t', '\n', '\v', '\f', '\r':
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String(), true
}

// foldRune lower-cases r with simple case folding; ß and similar letters
// whose upper and lower forms differ in length stay as ToLower makes them.
func foldRune(r rune) rune {
	return unicode.ToLower(unicode.ToUpper(r))
}

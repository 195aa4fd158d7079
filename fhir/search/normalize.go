package search

import (
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// NormalizeString is the form string parameters are matched in when
// :exact is not given (R4: case- and accent-insensitive, prefix match):
// accents removed (NFD, combining marks dropped, NFC again), case folded,
// runs of white space collapsed to one space, ends trimmed. The index
// stores NormalizeString of each value and matches a search term's
// NormalizeString as a prefix of it.
func NormalizeString(s string) string {
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
		b.WriteString(foldRune(r))
	}
	return norm.NFC.String(b.String())
}

// foldRune lower-cases r with simple case folding; ß and similar letters
// whose upper and lower forms differ in length stay as ToLower makes them.
func foldRune(r rune) string {
	return string(unicode.ToLower(unicode.ToUpper(r)))
}

package search

import (
	"strings"
	"testing"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

func TestNormalizeString(t *testing.T) {
	for in, want := range map[string]string{
		"Müller":                "muller",
		"  José   María\tDÍAZ ": "jose maria diaz",
		"ÅSA-Lena O'Brien":      "asa-lena o'brien",
		"Ǆemal":                 "ǆemal",
		"":                      "",
		"   ":                   "",
		"Straße":                "straße",
		"Ωmega":                 "ωmega",
		"e\u0301":               "e",
	} {
		if got := NormalizeString(in); got != want {
			t.Errorf("NormalizeString(%q) = %q, want %q", in, got, want)
		}
	}
	// A prefix of a name, normalized, is a prefix of the normalized name.
	if n, p := NormalizeString("Éloïse Dupont"), NormalizeString("ELOI"); n[:len(p)] != p {
		t.Errorf("%q is not a prefix of %q", p, n)
	}
}

// refNormalizeString is NormalizeString as it was before its ASCII path:
// the reference TestNormalizeStringReference holds it to.
func refNormalizeString(s string) string {
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
		b.WriteString(string(unicode.ToLower(unicode.ToUpper(r))))
	}
	return norm.NFC.String(b.String())
}

// TestNormalizeStringReference compares NormalizeString with
// refNormalizeString over every string of up to four characters of an
// alphabet of cases, white space (ASCII and not), marks and invalid
// UTF-8, every single byte and rune up to U+024F, and the strings and
// token texts of the shared test data.
func TestNormalizeStringReference(t *testing.T) {
	check := func(s string) {
		if got, want := NormalizeString(s), refNormalizeString(s); got != want {
			t.Errorf("NormalizeString(%q) = %q, want %q", s, got, want)
		}
	}
	alphabet := []string{"a", "Z", "0", " ", "\t", "\n", "\v", "\f", "\r", "\x00", "\x1f", "~", "\x7f", "\u0085", "\u00a0", "é", "E\u0301", "\u0301", "ß", "İ", "\xff", "\u2028"}
	var walk func(s string, depth int)
	walk = func(s string, depth int) {
		check(s)
		if depth < 4 {
			for _, a := range alphabet {
				walk(s+a, depth+1)
			}
		}
	}
	walk("", 0)
	for b := range 256 {
		check(string([]byte{byte(b)}))
		check("A" + string([]byte{byte(b)}) + "b")
	}
	for r := range rune(0x250) {
		check(string(r))
		check(" X" + string(r) + "  y ")
	}
	n := 0
	for _, sub := range []string{"synthea", "hl7-examples"} {
		for _, e := range resources(t, sub) {
			vals, _ := Extract(e.resourceType, e.tree)
			for _, v := range vals {
				check(v.String)
				check(v.Token.Text)
				check(v.Token.Display)
				n++
			}
		}
	}
	t.Logf("%d values of the test data", n)
}

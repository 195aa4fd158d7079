package search

import "testing"

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

package deid

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/google/go-cmp/cmp"
)

func TestScrub(t *testing.T) {
	m := newMatcher([]string{"John Smith", "John", "Smith", "Jo Li", "742 Evergreen Terrace", "Quahog Falls", "MRN-7734", "Zoë Ångström", "Ångström", "Jo"})
	tests := []struct{ in, want string }{
		{"Smith, John called", "[X] called"},
		{"JOHN SMITH and john", "[X] and [X]"},
		{"Johnson and Smithers stay", "Johnson and Smithers stay"},
		{"Li, Jo and Jo alone", "[X] and Jo alone"},
		{"lives at 742 evergreen terrace, Quahog Falls", "lives at [X], [X]"},
		{"id mrn-7734 here", "id [X] here"},
		{"ZOË ÅNGSTRÖM visited", "[X] visited"},
		{"mail jo@example.org or http://x.example/a?b=1", "mail [X] or [X]"},
		{"see www.acme.com and portal.acme-hospital.health/p", "see [X] and [X]"},
		{"host 192.168.1.20 and fe80::1ff:fe23:4567:890a", "host [X] and [X]"},
		{"on 2020-01-02, 3/4/2021, March 3rd, 2020 and 4 Jan 1999", "on [X], [X], [X] and [X]"},
		{"Dec 2019 and may 5", "[X] and [X]"},
		{"ssn 999-12-3456 phone (617) 555-0199 or +1 617.555.0199", "ssn [X] phone [X] or [X]"},
		{"acct 1234567 but 1234 stays", "acct [X] but 1234 stays"},
		{"aged 95, 102 years old, 93 y/o; 89 years stays", "[X], [X], [X]; 89 years stays"},
		{"Hemoglobin [Mass/volume] in Blood", "Hemoglobin [Mass/volume] in Blood"},
		{"Bilirubin.total [Mass/volume] in Serum or Plasma", "Bilirubin.total [Mass/volume] in Serum or Plasma"},
		{"Glomerular filtration rate/1.73 sq M.predicted", "Glomerular filtration rate/1.73 sq M.predicted"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := scrub(tt.in, "[X]", m); got != tt.want {
			t.Errorf("scrub(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestLexicon(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
	}{
		{
			name: "patient, contact, contained",
			in: `{"resourceType":"Patient","name":[{"prefix":["Dr."],"given":["Jo","Anne-Marie"],"family":"O'Brien"}],
			"address":[{"line":["1 Main St"],"city":"Springfield","district":"Hampden","state":"MA","postalCode":"01101"}],
			"telecom":[{"value":"555-0100"}],"identifier":[{"value":"MRN1"}],
			"contact":[{"name":{"given":["Bea"]},"telecom":[{"value":"bea@x.org"}]}],
			"generalPractitioner":[{"reference":"Practitioner/1","display":"Dr. Okafor"},{"reference":"Observation/2","display":"Sodium"}],
			"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName","valueString":"Vanderhoeven"}],
			"contained":[{"resourceType":"Organization","id":"o","name":"Acme Clinic"}]}`,
			want: []string{"01101", "1 Main St", "555-0100", "Acme Clinic", "Anne", "Anne-Marie", "Bea", "Brien", "Dr. Okafor", "Hampden", "Jo", "Jo Anne-Marie O'Brien", "MRN1", "Marie", "O'Brien", "Springfield", "Vanderhoeven", "bea@x.org"},
		},
		{
			name: "family member history without relationship words",
			in:   `{"resourceType":"FamilyMemberHistory","status":"completed","patient":{"reference":"Patient/1"},"relationship":{"text":"aunt"},"name":"Aunt Philippa Quarrington"}`,
			want: []string{"Philippa", "Philippa Quarrington", "Quarrington"},
		},
		{
			name: "result displays are not people",
			in:   `{"resourceType":"DiagnosticReport","status":"final","code":{"text":"x"},"result":[{"reference":"urn:uuid:829bb06a-42b9-433d-a8f6-560727c63da9","display":"Sodium"}],"performer":[{"reference":"urn:uuid:829bb06a-42b9-433d-a8f6-560727c63da8","display":"Dr. Okafor"}]}`,
			want: []string{"Dr. Okafor"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tree := mustDecode(t, tt.in)
			if diff := cmp.Diff(tt.want, Lexicon(tree)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestSubjectKnown checks that Options.Subject.Known reaches clean and the
// display checks: a name the resource does not hold is removed.
func TestSubjectKnown(t *testing.T) {
	e := engineFor(t, `rules:
- {id: d, path: Coding.display, method: vet}
- {id: c, path: CodeableConcept.text, method: clean}
`)
	in := `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://snomed.info/sct","code":"38341003","display":"Hypertension per Maribel"}],"text":"Told by Quintanilla, Maribel"}}`
	res := apply(t, e, in, Options{})
	want := `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://snomed.info/sct","code":"38341003","display":"Hypertension per Maribel"}],"text":"Told by Quintanilla, Maribel"}}`
	if diff := cmp.Diff(canon(t, want), jsonOf(t, res.Tree)); diff != "" {
		t.Errorf("without Known (-want +got):\n%s", diff)
	}
	res = apply(t, e, in, Options{Subject: Subject{Known: []string{"Maribel Quintanilla", "Maribel", "Quintanilla"}}})
	want = `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://snomed.info/sct","code":"38341003"}],"text":"Told by [REDACTED]"}}`
	if diff := cmp.Diff(canon(t, want), jsonOf(t, res.Tree)); diff != "" {
		t.Errorf("with Known (-want +got):\n%s", diff)
	}
}

func mustDecode(t *testing.T, s string) map[string]any {
	t.Helper()
	v, err := fhir.Decode([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return v.(map[string]any)
}

// TestScrubCacheOracle holds scrub, whose pattern search a cache of
// pattern-free texts may skip, to the expression itself (and the title
// prefilter to the title expression): over the displays,
// texts and units of the Synthea set, the nasty corpus and texts made to
// differ from a remembered one by one character, a text comes back unchanged
// exactly when the expression finds nothing in it, on its first, second and
// third scrub (the later ones may be answered by the cache).
func TestScrubCacheOracle(t *testing.T) {
	texts := []string{
		"Hemoglobin A1c/Hemoglobin.total in Blood", "Hemoglobin A1c/Hemoglobin.total in Blood 617-555-0199",
		"Body Height", "Body Height 2020-01-02", "Glomerular filtration rate/1.73 sq M.predicted",
		"Glomerular filtration rate/1.73 sq M.predicted1", "call 617.555.0199", "call 617.555.0198",
		"aged 89", "aged 90", "mail a@b.org", "mail a@b.or", "12345", "1234", "10.0.0.1", "10.0.0",
	}
	set := map[string]bool{}
	for _, f := range syntheaFiles(t) {
		res, _ := loadBundle(t, f)
		for _, r := range res {
			stringsOf(r.tree, set)
		}
	}
	nasty, err := os.ReadFile(filepath.Join("testdata", "nasty.phi.json"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := fhir.Decode(nasty)
	if err != nil {
		t.Fatal(err)
	}
	stringsOf(v, set)
	for s := range set {
		texts = append(texts, s)
	}
	slices.Sort(texts)
	texts = slices.Compact(texts)
	found := 0
	for round := range 3 {
		for _, s := range texts {
			match := strings.ContainsAny(s, "0123456789@:.") && scrubPattern.MatchString(s)
			if got := scrub(s, "[X]"); (got != s) != match {
				t.Fatalf("round %d: scrub changed a text: %v, the expression matches it: %v", round, got != s, match)
			}
			if match && round == 0 {
				found++
			}
			if round == 0 && hasPersonTitle(s) != personTitle.MatchString(s) {
				t.Fatalf("hasPersonTitle disagrees with the title expression on a corpus text")
			}
		}
	}
	if found == 0 {
		t.Fatal("no text the expression matches: the oracle proves nothing")
	}
	t.Logf("%d texts, %d with a pattern", len(texts), found)
}

func TestTextSetBounded(t *testing.T) {
	s := newTextSet(4, 8)
	for _, w := range []string{"a", "b", "c", "d"} {
		s.add(w)
	}
	for _, w := range []string{"a", "b", "c", "d"} {
		if !s.has(w) {
			t.Errorf("has(%q) = false after add", w)
		}
	}
	if s.has("e") {
		t.Error("has a text never added")
	}
	s.add("e") // full: starts over
	if len(s.set) > 4 || !s.has("e") || s.has("a") {
		t.Errorf("after a fifth add: %d kept, has e %v, has a %v", len(s.set), s.has("e"), s.has("a"))
	}
	s.add("longer than 8")
	if s.has("longer than 8") {
		t.Error("a text over maxLen is remembered")
	}
}

// FuzzScrubCache: scrubbing a text again, once the cache may answer for
// it, gives what the first scrub gave, and changes the text exactly when
// the expression finds something in it.
func FuzzScrubCache(f *testing.F) {
	for _, s := range []string{"Body Height", "call 617-555-0199", "1.73 sq M", "Dr. Okafor", "a@b.org", "12345"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		first := scrub(s, "[X]")
		if again := scrub(s, "[X]"); again != first {
			t.Fatalf("second scrub %q, first %q", again, first)
		}
		if match := strings.ContainsAny(s, "0123456789@:.") && scrubPattern.MatchString(s); (first != s) != match {
			t.Fatalf("scrub changed the text: %v, the expression matches: %v", first != s, match)
		}
	})
}

// TestMatcherSpansOracle holds spans, which skips runs of tokens holding a
// word of no term, to the plain search: every run of every term length
// looked up, over random terms and texts of a small vocabulary.
func TestMatcherSpansOracle(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	vocab := []string{"ann", "bo", "lee", "smith", "ng", "okafor", "zoë", "street", "of", "main"}
	words := func(n int) string {
		var ws []string
		for range n {
			ws = append(ws, vocab[rng.IntN(len(vocab))])
		}
		return strings.Join(ws, " ")
	}
	for round := range 500 {
		var terms []string
		for range 1 + rng.IntN(6) {
			terms = append(terms, words(1+rng.IntN(4)))
		}
		m := newMatcher(terms)
		toks := tokenize(words(rng.IntN(30)) + ", " + words(rng.IntN(10)))
		var want [][2]int
		for i, tk := range toks {
			if m.single[tk.word] {
				want = append(want, [2]int{tk.start, tk.end})
			}
			for _, k := range m.lens {
				if i+k <= len(toks) && m.multi[k][key(toks[i:i+k])] {
					want = append(want, [2]int{tk.start, toks[i+k-1].end})
				}
			}
		}
		if got := m.spans(toks); !slices.Equal(got, want) {
			t.Fatalf("round %d: terms %q: spans %v, want %v", round, terms, got, want)
		}
	}
}

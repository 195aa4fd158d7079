package deid

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/google/go-cmp/cmp"
)

func engineFor(t *testing.T, yml string) *Engine {
	t.Helper()
	cfg, err := ParseConfig([]byte(yml))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	e, err := New(cfg, testKeys())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

// apply parses in as FHIR, applies e, checks that the input is untouched
// and the output is valid FHIR, and returns the result.
func apply(t *testing.T, e *Engine, in string, o Options) *Result {
	t.Helper()
	p, err := fhir.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Parse([]byte(in))
	if err != nil {
		t.Fatalf("input: %v", err)
	}
	before, _ := fhir.Canonical(r.Tree)
	if o.Now.IsZero() {
		o.Now = testNow
	}
	res, err := e.Apply(r.Type, r.Tree, o)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if after, _ := fhir.Canonical(r.Tree); string(after) != string(before) {
		t.Fatal("Apply modified its input")
	}
	if err := parseOut(t, p, res.Tree); err != nil {
		out, _ := json.Marshal(res.Tree)
		t.Fatalf("output is not valid FHIR: %v\n%s", err, out)
	}
	return res
}

// jsonOf renders a tree without meta.security, for comparisons.
func jsonOf(t *testing.T, tree map[string]any) string {
	t.Helper()
	c := deepCopyMap(tree)
	stripSecurity(c)
	b, err := fhir.Canonical(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func stripSecurity(v any) {
	switch x := v.(type) {
	case map[string]any:
		if m, ok := x["meta"].(map[string]any); ok {
			delete(m, "security")
			if len(m) == 0 {
				delete(x, "meta")
			}
		}
		for _, e := range x {
			stripSecurity(e)
		}
	case []any:
		for _, e := range x {
			stripSecurity(e)
		}
	}
}

func canon(t *testing.T, s string) string {
	t.Helper()
	b, err := fhir.CanonicalJSON([]byte(s))
	if err != nil {
		t.Fatalf("want: %v", err)
	}
	return string(b)
}

func TestSelection(t *testing.T) {
	tests := []struct {
		name, rules, in, want string
	}{
		{
			name:  "type anywhere",
			rules: `[{id: n, type: HumanName, method: redact}]`,
			in:    `{"resourceType":"Patient","name":[{"family":"Doe"}],"contact":[{"name":{"family":"Roe"},"gender":"male"}]}`,
			want:  `{"resourceType":"Patient","contact":[{"gender":"male"}]}`,
		},
		{
			name:  "resource path",
			rules: `[{id: c, path: Patient.contact.name, method: redact}]`,
			in:    `{"resourceType":"Patient","name":[{"family":"Doe"}],"contact":[{"name":{"family":"Roe"},"gender":"male"}]}`,
			want:  `{"resourceType":"Patient","name":[{"family":"Doe"}],"contact":[{"gender":"male"}]}`,
		},
		{
			name:  "data type path",
			rules: `[{id: l, path: Address.line, method: redact}]`,
			in:    `{"resourceType":"Patient","address":[{"line":["1 Main St"],"state":"MA"}],"extension":[{"url":"http://x/e","valueAddress":{"line":["2 Elm"],"city":"Town"}}]}`,
			want:  `{"resourceType":"Patient","address":[{"state":"MA"}],"extension":[{"url":"http://x/e","valueAddress":{"city":"Town"}}]}`,
		},
		{
			name:  "extension url",
			rules: `[{id: g, url: "http://hl7.org/fhir/StructureDefinition/geolocation", method: redact}]`,
			in:    `{"resourceType":"Patient","address":[{"state":"MA","extension":[{"url":"http://hl7.org/fhir/StructureDefinition/geolocation","extension":[{"url":"latitude","valueDecimal":42.1}]},{"url":"http://x/other","valueString":"k"}]}]}`,
			want:  `{"resourceType":"Patient","address":[{"state":"MA","extension":[{"url":"http://x/other","valueString":"k"}]}]}`,
		},
		{
			name:  "inside extension by type",
			rules: `[{id: s, type: string, method: redact}]`,
			in:    `{"resourceType":"Patient","gender":"male","extension":[{"url":"http://x/e","valueString":"secret"},{"url":"http://x/f","valueCode":"c"}]}`,
			want:  `{"resourceType":"Patient","gender":"male","extension":[{"url":"http://x/f","valueCode":"c"}]}`,
		},
		{
			name:  "choice element by name",
			rules: `[{id: v, path: Observation.value, method: redact}]`,
			in:    `{"resourceType":"Observation","status":"final","code":{"text":"c"},"valueQuantity":{"value":1}}`,
			want:  `{"resourceType":"Observation","status":"final","code":{"text":"c"}}`,
		},
		{
			name:  "choice option type",
			rules: `[{id: p, type: Period, method: redact}]`,
			in:    `{"resourceType":"Observation","status":"final","code":{"text":"c"},"effectivePeriod":{"start":"2020-01-01"}}`,
			want:  `{"resourceType":"Observation","status":"final","code":{"text":"c"}}`,
		},
		{
			name:  "contained resource uses its own type's rules",
			rules: `[{id: n, path: Patient.name, method: redact}]`,
			in:    `{"resourceType":"Observation","status":"final","code":{"text":"c"},"contained":[{"resourceType":"Patient","id":"p","name":[{"family":"Doe"}],"gender":"male"}],"subject":{"reference":"#p"}}`,
			want:  `{"resourceType":"Observation","status":"final","code":{"text":"c"},"contained":[{"resourceType":"Patient","id":"p","gender":"male"}],"subject":{"reference":"#p"}}`,
		},
		{
			name:  "primitive extension walked with the element's path",
			rules: `[{id: x, path: Patient.birthDate.extension, method: redact}]`,
			in:    `{"resourceType":"Patient","birthDate":"1970-01-02","_birthDate":{"extension":[{"url":"http://x/t","valueTime":"10:00:00"}]}}`,
			want:  `{"resourceType":"Patient","birthDate":"1970-01-02"}`,
		},
		{
			name:  "redacting a primitive removes its extension",
			rules: `[{id: b, path: Patient.birthDate, method: redact}]`,
			in:    `{"resourceType":"Patient","gender":"male","birthDate":"1970-01-02","_birthDate":{"extension":[{"url":"http://x/t","valueTime":"10:00:00"}]}}`,
			want:  `{"resourceType":"Patient","gender":"male"}`,
		},
		{
			name:  "primitive arrays keep value and extension aligned",
			rules: `[{id: g, path: HumanName.given, method: redact}]`,
			in:    `{"resourceType":"Patient","name":[{"family":"Doe","given":["A","B"],"_given":[null,{"extension":[{"url":"http://x/q","valueCode":"c"}]}]}]}`,
			want:  `{"resourceType":"Patient","name":[{"family":"Doe"}]}`,
		},
		{
			name:  "first matching rule wins",
			rules: `[{id: k, path: HumanName.family, method: keep}, {id: s, type: string, method: redact}]`,
			in:    `{"resourceType":"Patient","name":[{"family":"Doe","given":["A"]}]}`,
			want:  `{"resourceType":"Patient","name":[{"family":"Doe"}]}`,
		},
		{
			name:  "keep stops descent",
			rules: `[{id: k, type: HumanName, method: keep}, {id: s, type: string, method: redact}]`,
			in:    `{"resourceType":"Patient","name":[{"family":"Doe"}],"address":[{"city":"X"}]}`,
			want:  `{"resourceType":"Patient","name":[{"family":"Doe"}]}`,
		},
		{
			name:  "Resource root alias",
			rules: `[{id: m, path: Resource.meta, method: redact}]`,
			in:    `{"resourceType":"Patient","gender":"male","meta":{"versionId":"1"}}`,
			want:  `{"resourceType":"Patient","gender":"male"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := engineFor(t, "rules: "+tt.rules)
			res := apply(t, e, tt.in, Options{})
			if diff := cmp.Diff(canon(t, tt.want), jsonOf(t, res.Tree)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestPruning(t *testing.T) {
	tests := []struct {
		name, rules, in, want string
	}{
		{
			name:  "annotation without text goes",
			rules: `[{id: md, type: markdown, method: redact}]`,
			in:    `{"resourceType":"Observation","status":"final","code":{"text":"c"},"note":[{"text":"call Jo","time":"2020-01-01"}]}`,
			want:  `{"resourceType":"Observation","status":"final","code":{"text":"c"}}`,
		},
		{
			name:  "extension without value or extension goes",
			rules: `[{id: s, type: string, method: redact}]`,
			in:    `{"resourceType":"Patient","gender":"male","extension":[{"url":"http://x","extension":[{"url":"text","valueString":"t"}]}]}`,
			want:  `{"resourceType":"Patient","gender":"male"}`,
		},
		{
			name:  "empty reference goes",
			rules: `[{id: s, type: string, method: redact}]`,
			in:    `{"resourceType":"Observation","status":"final","code":{"coding":[{"code":"c"}]},"performer":[{"display":"Dr. X"}]}`,
			want:  `{"resourceType":"Observation","status":"final","code":{"coding":[{"code":"c"}]}}`,
		},
		{
			name:  "required element of a backbone gets data-absent-reason",
			rules: `[{id: r, path: Reference.reference, method: keep}, {id: s, type: string, method: redact}]`,
			in:    `{"resourceType":"Claim","status":"active","type":{"coding":[{"code":"x"}]},"use":"claim","patient":{"reference":"Patient/1"},"created":"2020-01-01","provider":{"reference":"Organization/1"},"priority":{"coding":[{"code":"normal"}]},"insurance":[{"sequence":1,"focal":true,"coverage":{"display":"private"}}]}`,
			want:  `{"resourceType":"Claim","status":"active","type":{"coding":[{"code":"x"}]},"use":"claim","patient":{"reference":"Patient/1"},"created":"2020-01-01","provider":{"reference":"Organization/1"},"priority":{"coding":[{"code":"normal"}]},"insurance":[{"sequence":1,"focal":true,"coverage":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/data-absent-reason","valueCode":"masked"}]}}]}`,
		},
		{
			name:  "required string of a resource gets the marker",
			rules: `[{id: r, path: Reference.reference, method: keep}, {id: s, type: string, method: redact}]`,
			in:    `{"resourceType":"Composition","status":"final","type":{"coding":[{"code":"x"}]},"date":"2020-01-01","author":[{"reference":"Practitioner/1"}],"title":"Note on Jo"}`,
			want:  `{"resourceType":"Composition","status":"final","type":{"coding":[{"code":"x"}]},"date":"2020-01-01","author":[{"reference":"Practitioner/1"}],"title":"[REDACTED]"}`,
		},
		{
			name:  "element left with only an id goes",
			rules: `[{id: f, path: HumanName.family, method: redact}]`,
			in:    `{"resourceType":"Patient","gender":"male","name":[{"id":"n1","family":"Doe"}]}`,
			want:  `{"resourceType":"Patient","gender":"male"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := engineFor(t, "rules: "+tt.rules)
			res := apply(t, e, tt.in, Options{})
			if diff := cmp.Diff(canon(t, tt.want), jsonOf(t, res.Tree)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestChangesAndLabels(t *testing.T) {
	e := engineFor(t, `rules:
- {id: names, type: HumanName, method: redact}
- {id: city, path: Address.city, method: redact}
- {id: ids, type: id, method: cryptoHash}
- {id: when, type: date, method: dateShift}
`)
	in := `{"resourceType":"Patient","id":"p1","meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"REDACTED"},{"system":"http://x","code":"y"}]},
	"name":[{"family":"Doe"},{"family":"Roe"}],"birthDate":"1970-01-02",
	"extension":[{"url":"http://x/a","valueCode":"c"},{"url":"http://x/b","valueAddress":{"city":"Town","state":"MA"}}]}`
	res := apply(t, e, in, Options{Patient: "Patient/p1"})
	want := []Change{
		{"ids", "Patient.id", "cryptoHash"},
		{"names", "Patient.name[0]", "redact"},
		{"names", "Patient.name[1]", "redact"},
		{"when", "Patient.birthDate", "dateShift"},
		{"city", "Patient.extension[1].valueAddress.city", "redact"},
	}
	got := slices.Clone(res.Changes)
	sortChanges(got)
	sortChanges(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"REDACTED", "CRYTOHASH", "PERTURBED"}, res.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	sec := res.Tree["meta"].(map[string]any)["security"].([]any)
	var codes []string
	for _, c := range sec {
		codes = append(codes, c.(map[string]any)["code"].(string))
	}
	if diff := cmp.Diff([]string{"REDACTED", "y", "CRYTOHASH", "PERTURBED"}, codes); diff != "" {
		t.Errorf("meta.security codes (-want +got):\n%s", diff)
	}
	for _, c := range res.Changes {
		if strings.Contains(c.Path, "Doe") || strings.Contains(c.Path, "Town") {
			t.Errorf("change path %q holds a value", c.Path)
		}
	}
}

func sortChanges(c []Change) {
	slices.SortFunc(c, func(a, b Change) int { return strings.Compare(a.Path, b.Path) })
}

func TestPseudonymLinks(t *testing.T) {
	e := safeHarbor(t)
	pat := apply(t, e, `{"resourceType":"Patient","id":"x1","gender":"female"}`, Options{Patient: "Patient/x1"})
	obs := apply(t, e, `{"resourceType":"Observation","status":"final","code":{"text":"c"},"subject":{"reference":"Patient/x1"},"performer":[{"reference":"https://ehr.example.org/fhir/Practitioner/d7/_history/3"}]}`, Options{Patient: "Patient/x1"})
	ps := e.Pseudonym("x1")
	if len(ps) != 64 || strings.Trim(ps, "0123456789abcdef") != "" {
		t.Fatalf("Pseudonym = %q, want 64 hex digits", ps)
	}
	if got := pat.Tree["id"]; got != ps {
		t.Errorf("Patient id = %v, want Pseudonym", got)
	}
	if got := obs.Tree["subject"].(map[string]any)["reference"]; got != "Patient/"+ps {
		t.Errorf("subject = %v, want Patient/<Pseudonym>", got)
	}
	if got := obs.Tree["performer"].([]any)[0].(map[string]any)["reference"]; got != "Practitioner/"+e.Pseudonym("d7") {
		t.Errorf("absolute reference = %v", got)
	}
	other, err := New(SafeHarbor(), Keys{DateShift: testKeys().DateShift, CryptoHash: []byte(strings.Repeat("z", 32))})
	if err != nil {
		t.Fatal(err)
	}
	if other.Pseudonym("x1") == ps {
		t.Error("pseudonyms do not depend on the key")
	}
}

func TestContainedAndUUIDReferences(t *testing.T) {
	e := safeHarbor(t)
	res := apply(t, e, `{"resourceType":"Observation","status":"final","code":{"text":"c"},
	"contained":[{"resourceType":"Patient","id":"pp","name":[{"family":"Doe"}],"birthDate":"1980-05-06"}],
	"subject":{"reference":"#pp"},"focus":[{"reference":"urn:uuid:829bb06a-42b9-433d-a8f6-560727c63da9"}]}`, Options{Patient: "Patient/q"})
	c := res.Tree["contained"].([]any)[0].(map[string]any)
	if c["id"] != e.Pseudonym("pp") || res.Tree["subject"].(map[string]any)["reference"] != "#"+e.Pseudonym("pp") {
		t.Errorf("contained id and #reference not hashed alike: %v", res.Tree)
	}
	if c["name"] != nil || c["birthDate"] != "1980" {
		t.Errorf("contained Patient not de-identified with Patient rules: %v", c)
	}
	ref := res.Tree["focus"].([]any)[0].(map[string]any)["reference"].(string)
	if !strings.HasPrefix(ref, "urn:uuid:") || strings.Contains(ref, "829bb06a") || len(ref) != len("urn:uuid:829bb06a-42b9-433d-a8f6-560727c63da9") {
		t.Errorf("urn:uuid reference = %q", ref)
	}
}

func TestApplyErrors(t *testing.T) {
	e := safeHarbor(t)
	if _, err := e.Apply("Patient", map[string]any{"resourceType": "Observation"}, Options{}); !errors.Is(err, ErrNotResource) {
		t.Errorf("type mismatch: %v", err)
	}
	if _, err := e.Apply("Nope", map[string]any{"resourceType": "Nope"}, Options{}); !errors.Is(err, ErrNotResource) {
		t.Errorf("unknown type: %v", err)
	}
}

func TestUnknownMembersFailClosed(t *testing.T) {
	e := engineFor(t, `rules: [{id: k, type: Coding, method: keep}]`)
	res, err := e.Apply("Patient", map[string]any{"resourceType": "Patient", "gender": "male", "nickname": "Bob"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res.Tree["nickname"]; ok {
		t.Error("a member outside the R4 schema was copied")
	}
}

func TestNewKeys(t *testing.T) {
	if _, err := New(SafeHarbor(), Keys{}); err == nil {
		t.Error("New accepted empty keys")
	}
	cfg, err := ParseConfig([]byte(`rules: [{id: e, type: string, method: encrypt}]`))
	if err != nil {
		t.Fatal(err)
	}
	k := testKeys()
	k.Encrypt = nil
	if _, err := New(cfg, k); err == nil {
		t.Error("New accepted encrypt without a key")
	}
}

func TestRevision(t *testing.T) {
	a, b := safeHarbor(t), safeHarbor(t)
	if a.Revision() != b.Revision() || len(a.Revision()) != 64 {
		t.Errorf("revision not stable: %s %s", a.Revision(), b.Revision())
	}
	strict, err := Profile("safe-harbor-strict")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(strict, testKeys())
	if err != nil {
		t.Fatal(err)
	}
	if s.Revision() == a.Revision() {
		t.Error("different profiles share a revision")
	}
	text, err := Profile("safe-harbor-text")
	if err != nil {
		t.Fatal(err)
	}
	tx, err := New(text, testKeys())
	if err != nil {
		t.Fatal(err)
	}
	if tx.Revision() == a.Revision() || tx.Revision() == s.Revision() {
		t.Error("safe-harbor-text shares a revision")
	}
	// The revision covers the engine's semantics, not only the profile.
	b2, _ := json.Marshal(SafeHarbor())
	if sum := sha256.Sum256(b2); hex.EncodeToString(sum[:]) == a.Revision() {
		t.Error("the revision is the profile's hash alone: semantic changes would not change it")
	}
}

func TestSafeHarborCoversAllIdentifiers(t *testing.T) {
	for _, name := range ProfileNames() {
		cfg, err := Profile(name)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, r := range cfg.Rules {
			for _, c := range r.Covers {
				seen[c] = true
			}
		}
		for c := 'A'; c <= 'R'; c++ {
			if !seen[string(c)] {
				t.Errorf("%s: no rule covers Safe Harbor identifier %c", name, c)
			}
		}
	}
	if _, err := Profile("nope"); err == nil {
		t.Error("Profile accepted an unknown name")
	}
}

func TestSafeHarborPatient(t *testing.T) {
	e := safeHarbor(t)
	in := `{"resourceType":"Patient","id":"p9","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Jo Doe</div>"},
	"identifier":[{"system":"http://hl7.org/fhir/sid/us-ssn","value":"999-12-3456"}],
	"name":[{"family":"Doe","given":["Jo"]}],"telecom":[{"system":"email","value":"jo@example.org"}],
	"gender":"female","birthDate":"1930-02-03","deceasedDateTime":"2021-03-04T05:06:07+01:00",
	"address":[{"line":["1 Main St"],"city":"Springfield","district":"Hampden","state":"MA","postalCode":"05901-1234","country":"US"},{"postalCode":"01085"}],
	"photo":[{"contentType":"image/png","data":"AAAA"}],
	"contact":[{"name":{"family":"Roe"}}],
	"maritalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus","code":"M","display":"Married"}],"text":"Married to Jo Doe, call 555-123-4567"},
	"communication":[{"language":{"coding":[{"system":"urn:ietf:bcp:47","code":"es"}]}}],
	"managingOrganization":{"reference":"Organization/o1","display":"General Hospital"}}`
	res := apply(t, e, in, Options{Patient: "Patient/p9"})
	got := res.Tree
	days := e.DateShiftDays("Patient/p9")
	wantDeceased, _, _ := shiftDate("2021-03-04T05:06:07+01:00", days)
	wantDeceased = wantDeceased[:4] // over 89: every date to the shifted year
	want := `{"resourceType":"Patient","id":"` + e.Pseudonym("p9") + `","gender":"female","deceasedDateTime":"` + wantDeceased + `",
	"address":[{"state":"MA","postalCode":"000","country":"US"},{"postalCode":"010"}],
	"maritalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus","code":"M","display":"Married"}]},
	"communication":[{"language":{"coding":[{"system":"urn:ietf:bcp:47","code":"es"}]}}],
	"managingOrganization":{"reference":"Organization/` + e.Pseudonym("o1") + `"},
	"extension":[{"url":"https://fhiranchor.org/fhir/StructureDefinition/age-band","valueString":"90+"}]}`
	if diff := cmp.Diff(canon(t, want), jsonOf(t, got)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestSafeHarborStrictDates(t *testing.T) {
	cfg, err := Profile("safe-harbor-strict")
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(cfg, testKeys())
	if err != nil {
		t.Fatal(err)
	}
	res := apply(t, e, `{"resourceType":"Observation","status":"final","code":{"text":"c"},"effectivePeriod":{"start":"2020-03-04T05:06:07Z","end":"2020-03"},"issued":"2020-03-04T05:06:07Z","meta":{"lastUpdated":"2020-03-04T05:06:07Z"}}`, Options{Patient: "Patient/1"})
	want := `{"resourceType":"Observation","status":"final","code":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/data-absent-reason","valueCode":"masked"}]},"effectivePeriod":{"start":"2020","end":"2020"}}`
	if diff := cmp.Diff(canon(t, want), jsonOf(t, res.Tree)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestConcurrentApply(t *testing.T) {
	e := safeHarbor(t)
	p, _ := fhir.NewParser()
	r, err := p.Parse([]byte(`{"resourceType":"Patient","id":"c","name":[{"family":"Doe"}],"birthDate":"2000-01-01","extension":[{"url":"http://hl7.org/fhir/StructureDefinition/geolocation","extension":[{"url":"latitude","valueDecimal":1}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan string, 8)
	for range 8 {
		go func() {
			res, err := e.Apply("Patient", r.Tree, Options{Patient: "Patient/c", Now: testNow})
			if err != nil {
				done <- err.Error()
				return
			}
			b, _ := fhir.Canonical(res.Tree)
			done <- string(b)
		}()
	}
	first := <-done
	for range 7 {
		if got := <-done; got != first {
			t.Errorf("concurrent Apply disagree:\n%s\n%s", first, got)
		}
	}
}

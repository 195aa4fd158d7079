package deid

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
)

func TestShiftDate(t *testing.T) {
	tests := []struct {
		in      string
		days    int
		want    string
		method  string
		wantErr bool
	}{
		{"2020-03-01", -1, "2020-02-29", MethodDateShift, false},
		{"2020-12-31T23:59:59.123+05:30", 1, "2021-01-01T23:59:59.123+05:30", MethodDateShift, false},
		{"2000-12-24T03:11:33Z", -50, "2000-11-04T03:11:33Z", MethodDateShift, false},
		{"1999", 10, "1999", "", false},
		{"1999-07", 10, "1999", MethodGeneralize, false},
		{"2020-02-30", 1, "", "", true},
		{"0001-01-01", -5, "", "", true},
		{"garbage", 1, "", "", true},
	}
	for _, tt := range tests {
		got, method, ok := shiftDate(tt.in, tt.days)
		if ok == tt.wantErr || got != tt.want || method != tt.method {
			t.Errorf("shiftDate(%q, %d) = %q, %q, %v; want %q, %q", tt.in, tt.days, got, method, ok, tt.want, tt.method)
		}
	}
}

func TestDateShiftDays(t *testing.T) {
	e := safeHarbor(t)
	seen := map[int]bool{}
	for i := range 10000 {
		d := e.DateShiftDays("Patient/" + strconv.Itoa(i))
		if d < -90 || d > 90 || (d > -15 && d < 15) {
			t.Fatalf("offset %d outside [-90,-15]∪[15,90]", d)
		}
		seen[d] = true
	}
	if len(seen) != 2*76 {
		t.Errorf("offsets cover %d of %d values", len(seen), 2*76)
	}
	if e.DateShiftDays("Patient/a") != e.DateShiftDays("Patient/a") {
		t.Error("offset not deterministic")
	}
}

func TestMethods(t *testing.T) {
	tests := []struct {
		name, rules, in, want string
	}{
		{
			name:  "cryptoHash of an oid keeps its form",
			rules: `[{id: h, path: Identifier.value, method: cryptoHash}]`,
			in:    `{"resourceType":"Patient","identifier":[{"system":"urn:ietf:rfc:3986","value":"urn:oid:1.2.3"}]}`,
			want:  `{"resourceType":"Patient","identifier":[{"system":"urn:ietf:rfc:3986","value":"urn:oid:` + mustEngine(t).oid("1.2.3") + `"}]}`,
		},
		{
			name:  "substitute a primitive",
			rules: `[{id: s, path: HumanName.family, method: substitute, replaceWith: Anonymous}]`,
			in:    `{"resourceType":"Patient","name":[{"family":"Doe"}]}`,
			want:  `{"resourceType":"Patient","name":[{"family":"Anonymous"}]}`,
		},
		{
			name:  "substitute a complex element with a JSON fragment",
			rules: `[{id: s, type: HumanName, method: substitute, replaceWith: {"text": "anonymous", "given": ["X"]}}]`,
			in:    `{"resourceType":"Patient","name":[{"family":"Doe"}]}`,
			want:  `{"resourceType":"Patient","name":[{"text":"anonymous","given":["X"]}]}`,
		},
		{
			name:  "generalize zip3 and restricted areas",
			rules: `[{id: z, path: Address.postalCode, method: generalize, to: zip3}]`,
			in:    `{"resourceType":"Patient","address":[{"postalCode":"02108"},{"postalCode":"03601"},{"postalCode":"12"}]}`,
			want:  `{"resourceType":"Patient","address":[{"postalCode":"021"},{"postalCode":"000"},{"postalCode":"000"}]}`,
		},
		{
			name:  "generalize ages over 89",
			rules: `[{id: a, type: Age, method: generalize, to: age90}]`,
			in:    `{"resourceType":"Condition","subject":{"reference":"Patient/1"},"onsetAge":{"value":1100,"unit":"months","system":"http://unitsofmeasure.org","code":"mo"}}`,
			want:  `{"resourceType":"Condition","subject":{"reference":"Patient/1"},"onsetAge":{"value":90,"comparator":">=","unit":"years","system":"http://unitsofmeasure.org","code":"a"}}`,
		},
		{
			name:  "ages up to 89 stay",
			rules: `[{id: a, type: Age, method: generalize, to: age90}]`,
			in:    `{"resourceType":"Condition","subject":{"reference":"Patient/1"},"onsetAge":{"value":89,"code":"a","system":"http://unitsofmeasure.org"}}`,
			want:  `{"resourceType":"Condition","subject":{"reference":"Patient/1"},"onsetAge":{"value":89,"code":"a","system":"http://unitsofmeasure.org"}}`,
		},
		{
			name:  "birth year under 90",
			rules: `[{id: b, path: Patient.birthDate, method: generalize, to: birthYear}]`,
			in:    `{"resourceType":"Patient","birthDate":"1936-06-02"}`,
			want:  `{"resourceType":"Patient","birthDate":"1936"}`,
		},
		{
			name:  "birth date over 89 becomes an age band",
			rules: `[{id: b, path: Patient.birthDate, method: generalize, to: birthYear}]`,
			in:    `{"resourceType":"Patient","birthDate":"1935-06-01"}`,
			want:  `{"resourceType":"Patient","extension":[{"url":"https://fhiranchor.org/fhir/StructureDefinition/age-band","valueString":"90+"}]}`,
		},
		{
			name:  "generalize dates to the year",
			rules: `[{id: y, type: dateTime, method: generalize, to: year}]`,
			in:    `{"resourceType":"Observation","status":"final","code":{"text":"c"},"effectiveDateTime":"2020-05-06T07:08:09Z"}`,
			want:  `{"resourceType":"Observation","status":"final","code":{"text":"c"},"effectiveDateTime":"2020"}`,
		},
		{
			name:  "a method that does not fit the element's type removes it",
			rules: `[{id: d, path: HumanName.family, method: dateShift}]`,
			in:    `{"resourceType":"Patient","name":[{"family":"Doe","given":["A"]}]}`,
			want:  `{"resourceType":"Patient","name":[{"given":["A"]}]}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := engineFor(t, "rules: "+tt.rules)
			res := apply(t, e, tt.in, Options{})
			if got := jsonOf(t, res.Tree); got != canon(t, tt.want) {
				t.Errorf("got  %s\nwant %s", got, canon(t, tt.want))
			}
		})
	}
}

func mustEngine(t *testing.T) *Engine { return safeHarbor(t) }

func TestInheritedDateShift(t *testing.T) {
	e := engineFor(t, `rules: [{id: d, type: Period, method: dateShift}]`)
	res := apply(t, e, `{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"period":{"start":"2020-01-10","end":"2020-01-11T10:00:00Z"}}`, Options{Patient: "Patient/z"})
	days := e.DateShiftDays("Patient/z")
	p := res.Tree["period"].(map[string]any)
	ws, _, _ := shiftDate("2020-01-10", days)
	we, _, _ := shiftDate("2020-01-11T10:00:00Z", days)
	if p["start"] != ws || p["end"] != we {
		t.Errorf("period = %v, want %s..%s", p, ws, we)
	}
}

func TestEncryptDecrypt(t *testing.T) {
	e := engineFor(t, `rules: [{id: enc, path: HumanName.family, method: encrypt}]`)
	res := apply(t, e, `{"resourceType":"Patient","name":[{"family":"Doe"}]}`, Options{})
	ct := res.Tree["name"].([]any)[0].(map[string]any)["family"].(string)
	if ct == "Doe" {
		t.Fatal("not encrypted")
	}
	pt, err := Decrypt(testKeys().Encrypt, ct)
	if err != nil || pt != "Doe" {
		t.Errorf("Decrypt = %q, %v", pt, err)
	}
	if _, err := Decrypt([]byte(strings.Repeat("x", 32)), ct); !errors.Is(err, ErrDecrypt) {
		t.Errorf("Decrypt with another key: %v", err)
	}
	res2 := apply(t, e, `{"resourceType":"Patient","name":[{"family":"Doe"}]}`, Options{})
	if res2.Tree["name"].([]any)[0].(map[string]any)["family"] == ct {
		t.Error("encryption is deterministic: the nonce is not random")
	}
	if got := res.Labels; len(got) != 1 || got[0] != "MASKED" {
		t.Errorf("labels = %v", got)
	}
}

func TestPerturb(t *testing.T) {
	e := engineFor(t, `rules:
- {id: v, path: Quantity.value, method: perturb, span: 0.1, rangeType: proportional, roundTo: 2}
- {id: i, path: Observation.valueInteger, method: perturb, span: 3}
`)
	for range 50 {
		res := apply(t, e, `{"resourceType":"Observation","status":"final","code":{"text":"c"},"component":[{"code":{"text":"x"},"valueQuantity":{"value":100.5,"unit":"kg"}}]}`, Options{})
		q := res.Tree["component"].([]any)[0].(map[string]any)["valueQuantity"].(map[string]any)
		f, err := strconv.ParseFloat(string(q["value"].(json.Number)), 64)
		if err != nil || f < 90.45 || f > 110.55 || q["unit"] != "kg" {
			t.Fatalf("perturbed quantity = %v", q)
		}
		if s := string(q["value"].(json.Number)); strings.Contains(s, ".") && len(s)-strings.Index(s, ".")-1 > 2 {
			t.Fatalf("not rounded to 2 decimals: %s", s)
		}
		res = apply(t, e, `{"resourceType":"Observation","status":"final","code":{"text":"c"},"valueInteger":10}`, Options{})
		n, err := strconv.Atoi(string(res.Tree["valueInteger"].(json.Number)))
		if err != nil || n < 7 || n > 13 {
			t.Fatalf("perturbed integer = %v", res.Tree["valueInteger"])
		}
	}
}

func TestClean(t *testing.T) {
	e := engineFor(t, `rules:
- {id: c, path: CodeableConcept.text, method: clean}
- {id: n, type: HumanName, method: redact}
`)
	in := `{"resourceType":"Patient","name":[{"family":"Riojas","given":["Alejandro"]}],
	"maritalStatus":{"text":"Alejandro RIOJAS jo@x.org https://x.org/a 555-413-6221 999-93-4328 MRN 1234567 seen 2020-01-02 and 3/4/2021; Riojasville stays"}}`
	res := apply(t, e, in, Options{})
	got := res.Tree["maritalStatus"].(map[string]any)["text"]
	want := "[REDACTED] [REDACTED] [REDACTED] [REDACTED] [REDACTED] MRN [REDACTED] seen [REDACTED] and [REDACTED]; Riojasville stays"
	if got != want {
		t.Errorf("clean = %q\nwant    %q", got, want)
	}
	res = apply(t, e, `{"resourceType":"Patient","maritalStatus":{"text":"Married"}}`, Options{})
	if len(res.Changes) != 0 || len(res.Labels) != 0 {
		t.Errorf("clean without a hit recorded %v %v", res.Changes, res.Labels)
	}
}

func TestHashRef(t *testing.T) {
	e := safeHarbor(t)
	ps := e.Pseudonym
	tests := []struct{ in, want string }{
		{"Patient/123", "Patient/" + ps("123")},
		{"Patient/123/_history/4", "Patient/" + ps("123")},
		{"http://a.example/fhir/Observation/o-1", "Observation/" + ps("o-1")},
		{"#c1", "#" + ps("c1")},
		{"#", "#"},
		{"Patient", "Patient"},
		{"Nope/123", ps("Nope/123")},
	}
	for _, tt := range tests {
		if got := e.hashRef(tt.in); got != tt.want {
			t.Errorf("hashRef(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	u := e.hashRef("urn:uuid:829bb06a-42b9-433d-a8f6-560727c63da9")
	if len(u) != len("urn:uuid:")+36 || u[len("urn:uuid:")+14] != '8' {
		t.Errorf("uuid pseudonym %q is not a version-8 UUID", u)
	}
}

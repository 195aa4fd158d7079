package policy

import (
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/open-policy-agent/opa/v1/ast"
)

func TestCompileConsent(t *testing.T) {
	c := map[string]any{
		"resourceType": "Consent", "id": "c1", "meta": map[string]any{"versionId": "4"},
		"status":     "active",
		"scope":      map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}}},
		"patient":    map[string]any{"reference": "Patient/p"},
		"policyRule": map[string]any{"coding": []any{map[string]any{"code": "OPTIN"}}},
		"provision": map[string]any{
			"period": map[string]any{"start": "2024", "end": "2024-05-31"},
			"actor": []any{
				map[string]any{"reference": map[string]any{"reference": "Organization/a"}, "role": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP"}, map[string]any{"code": "x"}}}},
				map[string]any{"reference": map[string]any{"reference": "Organization/b"}, "role": map[string]any{"coding": []any{map[string]any{"code": "x"}}}},
				map[string]any{"role": map[string]any{"coding": []any{map[string]any{"code": "physician"}}}},
			},
			"provision": []any{
				map[string]any{"type": "deny", "provision": []any{
					map[string]any{"class": []any{map[string]any{"code": "Observation"}}},
				}},
				map[string]any{
					"action":        []any{map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}}}},
					"securityLabel": []any{map[string]any{"system": "s", "code": "PSY"}},
					"data":          []any{map[string]any{"reference": map[string]any{"reference": "Observation/o1"}}},
					"dataPeriod":    map[string]any{"end": "2020-01-01T10:00:00Z"},
				},
			},
		},
	}
	cc, err := CompileConsent(c)
	if err != nil {
		t.Fatal(err)
	}
	if cc.ID != "c1" || cc.VersionID != "4" {
		t.Errorf("ID, VersionID = %q, %q", cc.ID, cc.VersionID)
	}
	got, err := ast.JSON(cc.term.Value)
	if err != nil {
		t.Fatal(err)
	}
	start, _, _ := fhirTimeBounds("2024")
	_, end, _ := fhirTimeBounds("2024-05-31")
	_, dataEnd, _ := fhirTimeBounds("2020-01-01T10:00:00Z")
	want := map[string]any{
		"id": "c1", "versionId": "4", "status": "active", "patient": "Patient/p", "maxDepth": n(2),
		"scope":      []any{"http://terminology.hl7.org/CodeSystem/consentscope|patient-privacy"},
		"policyRule": []any{"|OPTIN"},
		"provisions": []any{
			map[string]any{"path": "provision", "depth": n(0), "chain": []any{n(0)}, "children": []any{n(1), n(3)}, "criteria": map[string]any{
				"period": map[string]any{"start": n(start), "end": n(end)},
				"actor": map[string]any{
					"references": []any{"Organization/a", "Organization/b"},
					"roles":      []any{"physician"}, // only unnamed actors' roles match the requester's
					"referencesByRole": map[string]any{ // named actors' roles say what they are to the consent
						"http://terminology.hl7.org/CodeSystem/v3-ParticipationType|PRCP": []any{"Organization/a"},
						"|x": []any{"Organization/a", "Organization/b"},
					},
				},
			}},
			map[string]any{"path": "provision.provision[0]", "depth": n(1), "chain": []any{n(0), n(1)}, "children": []any{n(2)},
				"type": "deny", "criteria": map[string]any{}},
			map[string]any{"path": "provision.provision[0].provision[0]", "depth": n(2), "chain": []any{n(0), n(1), n(2)}, "children": []any{},
				"type": "deny", "criteria": map[string]any{"class": []any{"|Observation"}}}, // type inherited
			map[string]any{"path": "provision.provision[1]", "depth": n(1), "chain": []any{n(0), n(3)}, "children": []any{}, "criteria": map[string]any{
				"action":        []any{"http://terminology.hl7.org/CodeSystem/consentaction|access"},
				"securityLabel": map[string]any{"s|PSY": map[string]any{"system": "s", "code": "PSY"}},
				"data":          []any{"Observation/o1"},
				"dataPeriod":    map[string]any{"end": n(dataEnd)},
			}},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("compiled consent (-want +got):\n%s", diff)
	}
}

// n is a number as ast.JSON returns it.
func n[T int | int64](v T) json.Number { return json.Number(strconv.FormatInt(int64(v), 10)) }

func TestFHIRTimeBounds(t *testing.T) {
	tests := []struct {
		in     string
		lo, hi string // RFC 3339
	}{
		{"2016", "2016-01-01T00:00:00Z", "2017-01-01T00:00:00Z"},
		{"2016-02", "2016-02-01T00:00:00Z", "2016-03-01T00:00:00Z"},
		{"2016-01-01", "2016-01-01T00:00:00Z", "2016-01-02T00:00:00Z"},
		{"2016-06-23T17:32:33+10:00", "2016-06-23T07:32:33Z", "2016-06-23T07:32:33.000000001Z"},
	}
	for _, tt := range tests {
		lo, hi, err := fhirTimeBounds(tt.in)
		if err != nil || lo != at(tt.lo).UnixNano() || hi != at(tt.hi).UnixNano() {
			t.Errorf("fhirTimeBounds(%q) = %d, %d, %v; want %s, %s", tt.in, lo, hi, err, tt.lo, tt.hi)
		}
	}
	for _, bad := range []string{"", "16", "2016-1", "2016-13-01", "2016-01-01T25:00:00Z", "20160101"} {
		if _, _, err := fhirTimeBounds(bad); err == nil {
			t.Errorf("fhirTimeBounds(%q) accepted", bad)
		}
	}
}

func TestCompileConsentMaxDepth(t *testing.T) {
	for _, tt := range []struct {
		provision any
		want      int
	}{
		{nil, -1},
		{map[string]any{}, 0},
		{map[string]any{"provision": []any{map[string]any{}, map[string]any{"provision": []any{map[string]any{}}}}}, 2},
	} {
		c := map[string]any{"id": "c"}
		if tt.provision != nil {
			c["provision"] = tt.provision
		}
		cc, err := CompileConsent(c)
		if err != nil {
			t.Fatal(err)
		}
		got := cc.term.Value.(ast.Object).Get(ast.StringTerm("maxDepth"))
		if got == nil || !got.Equal(ast.IntNumberTerm(tt.want)) {
			t.Errorf("maxDepth of %v = %v, want %d", tt.provision, got, tt.want)
		}
	}
}

func TestCompileConsentRejectsWrongShapes(t *testing.T) {
	for name, c := range map[string]map[string]any{
		"status not a string":   {"status": n(1)},
		"provision not object":  {"provision": []any{}},
		"actor not a list":      {"provision": map[string]any{"actor": map[string]any{}}},
		"coding code a number":  {"provision": map[string]any{"purpose": []any{map[string]any{"code": n(1)}}}},
		"period not FHIR time":  {"provision": map[string]any{"period": map[string]any{"start": "yesterday"}}},
		"nested not an object":  {"provision": map[string]any{"provision": []any{"deny"}}},
		"type not a string":     {"provision": map[string]any{"type": true}},
		"data reference object": {"provision": map[string]any{"data": []any{map[string]any{"reference": "Observation/o1"}}}},
	} {
		if _, err := CompileConsent(c); !errors.Is(err, ErrInvalidConsent) {
			t.Errorf("%s: err = %v, want ErrInvalidConsent", name, err)
		}
	}
}

// TestDecideCompiledMatchesJSON: consents passed compiled decide exactly as the
// same consents passed as JSON, and an invalid consent denies.
func TestDecideCompiledMatchesJSON(t *testing.T) {
	e, err := New(t.Context(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	c := loadConsent(t, "pkb")
	in := hl7Case{patient: "Patient/example", actor: "Organization/f001", labels: []Coding{nLabel, psyLabel}}.input(c)
	want, err := e.Decide(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := CompileConsent(c)
	if err != nil {
		t.Fatal(err)
	}
	in.Consents, in.Compiled = nil, []CompiledConsent{cc}
	got, err := e.Decide(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" || !want.Allow || len(want.Reasons) < 2 {
		t.Errorf("compiled decision differs (-json +compiled):\n%s", diff)
	}

	in.Compiled = nil
	in.Consents = []map[string]any{{"resourceType": "Consent", "status": "active", "provision": "all"}}
	d, err := e.Decide(t.Context(), in)
	if !errors.Is(err, ErrInvalidConsent) || d.Allow || !slices.Equal(d.Reasons, []string{"invalid consent"}) {
		t.Errorf("invalid consent: decision %+v, err %v", d, err)
	}
	in.Consents, in.Compiled = nil, []CompiledConsent{{}}
	if d, err := e.Decide(t.Context(), in); !errors.Is(err, ErrInvalidConsent) || d.Allow {
		t.Errorf("zero CompiledConsent: decision %+v, err %v", d, err)
	}
}

// TestResourceScoped: a consent is resource-scoped exactly when a provision,
// at any depth, states code, data, dataPeriod or securityLabel; type-level
// criteria (class, actor, purpose, action, period) do not make it so.
func TestResourceScoped(t *testing.T) {
	for _, tc := range []struct {
		name      string
		provision string
		want      bool
	}{
		{"none", ``, false},
		{"type level", `,"provision":{"type":"deny","period":{"start":"2020"},"class":[{"code":"Observation"}],"purpose":[{"code":"TREAT"}],"action":[{"coding":[{"code":"access"}]}],"actor":[{"reference":{"reference":"Organization/o"}}]}`, false},
		{"code", `,"provision":{"type":"permit","code":[{"coding":[{"system":"http://loinc.org","code":"1-1"}]}]}`, true},
		{"data", `,"provision":{"type":"permit","data":[{"meaning":"instance","reference":{"reference":"Observation/o"}}]}`, true},
		{"dataPeriod", `,"provision":{"type":"permit","dataPeriod":{"start":"2020"}}`, true},
		{"nested label", `,"provision":{"type":"permit","provision":[{"type":"deny","provision":[{"securityLabel":[{"code":"R"}]}]}]}`, true},
	} {
		var c map[string]any
		if err := json.Unmarshal([]byte(`{"resourceType":"Consent","id":"c","status":"active","patient":{"reference":"Patient/p"}`+tc.provision+`}`), &c); err != nil {
			t.Fatal(err)
		}
		cc, err := CompileConsent(c)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if cc.ResourceScoped != tc.want {
			t.Errorf("%s: ResourceScoped = %v, want %v", tc.name, cc.ResourceScoped, tc.want)
		}
	}
}

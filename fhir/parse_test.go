package fhir_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/internal/shareddata"
)

func testFiles(t *testing.T, sub string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(shareddata.Dir(t), sub, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no JSON files in %s", filepath.Join(shareddata.Dir(t), sub))
	}
	return files
}

func newParser(t testing.TB) *fhir.Parser {
	t.Helper()
	p, err := fhir.NewParser()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestParseTestdata: every HL7 example and Synthea Bundle parses, and its
// tree is the file's JSON: canonical bytes of the tree equal those of the
// file.
func TestParseTestdata(t *testing.T) {
	p := newParser(t)
	for _, sub := range []string{"hl7-examples", "synthea"} {
		for _, f := range testFiles(t, sub) {
			t.Run(sub+"/"+filepath.Base(f), func(t *testing.T) {
				t.Parallel()
				data, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				r, err := p.Parse(data)
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if want := strings.SplitN(filepath.Base(f), "-", 2)[0]; sub == "hl7-examples" && r.Type != want {
					t.Errorf("Type = %q, want %q", r.Type, want)
				}
				if sub == "synthea" && r.Type != "Bundle" {
					t.Errorf("Type = %q, want Bundle", r.Type)
				}
				got, err := fhir.Canonical(r.Tree)
				if err != nil {
					t.Fatal(err)
				}
				want, err := fhir.CanonicalJSON(data)
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != string(want) {
					t.Error("parsed tree differs from the file's JSON")
				}
			})
		}
	}
}

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantType string
	}{
		{"minimal patient", `{"resourceType":"Patient","id":"p1"}`, "Patient"},
		{"surrounding whitespace", " \n{\"resourceType\":\"Patient\"}\n\t", "Patient"},
		{"primitive extension with nulls", `{"resourceType":"Patient","name":[{"given":["A",null],"_given":[null,{"id":"g2"}]}]}`, "Patient"},
		{"extension only on a primitive", `{"resourceType":"Patient","_birthDate":{"extension":[{"url":"http://x","valueDateTime":"1970-01-01T10:30:00Z"}]}}`, "Patient"},
		{"choice element", `{"resourceType":"Observation","status":"final","code":{"text":"w"},"valueQuantity":{"value":72.50,"unit":"kg"}}`, "Observation"},
		{"contained resource", `{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o1","name":"x"}],"managingOrganization":{"reference":"#o1"}}`, "Patient"},
		{"transaction", `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}]}`, "Bundle"},
	}
	p := newParser(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := p.Parse([]byte(tt.in))
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if r.Type != tt.wantType {
				t.Errorf("Type = %q, want %q", r.Type, tt.wantType)
			}
		})
	}
}

// nested builds n levels of extension inside a Patient.
func nested(n int) string {
	return `{"resourceType":"Patient","extension":[` +
		strings.Repeat(`{"url":"http://x/ZZSECRETZZ","extension":[`, n) +
		`{"url":"http://x","valueString":"ZZSECRETZZ"}` +
		strings.Repeat(`]}`, n) + `]}`
}

const (
	// obs is the start of a valid Observation; append elements and "}".
	obs = `{"resourceType":"Observation","status":"final","code":{"text":"w"}`
	// entry wraps a resource as a transaction entry.
	entryStart = `{"request":{"method":"POST","url":"X"},"resource":`
	entryEnd   = `}`
)

func bundle(resources ...string) string {
	var es []string
	for _, r := range resources {
		es = append(es, entryStart+r+entryEnd)
	}
	return `{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(es, ",") + `]}`
}

// TestParseErrors: each bad input fails with the right sentinel and a path
// to the failing element. Every input holds the marker ZZSECRETZZ, most in
// the failing value: no error may repeat it (DESIGN.md invariant 1).
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantErr  error
		wantPath string
		prefix   bool // wantPath is a prefix of every error's path
	}{
		// Not JSON, or not a resource.
		{"invalid JSON", `{"resourceType":"Patient","name":[{"family":"ZZSECRETZZ"}`, fhir.ErrInvalidJSON, "", false},
		{"syntax error", `{"resourceType":"Patient","name":ZZSECRETZZ}`, fhir.ErrInvalidJSON, "", false},
		{"empty body", ``, fhir.ErrInvalidJSON, "", false},
		{"whitespace body", " \r\n\t ", fhir.ErrInvalidJSON, "", false},
		{"array", `[]`, fhir.ErrInvalid, "", false},
		{"array of resources", `[{"resourceType":"Patient","id":"ZZSECRETZZ"}]`, fhir.ErrInvalid, "", false},
		{"null", `null`, fhir.ErrInvalid, "", false},
		{"string", `"ZZSECRETZZ"`, fhir.ErrInvalid, "", false},
		{"trailing data", `{"resourceType":"Patient"} "ZZSECRETZZ"`, fhir.ErrInvalidJSON, "", false},
		{"invalid UTF-8", "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"ZZSECRETZZ\xff\"}]}", fhir.ErrInvalidJSON, "", false},
		{"deeply nested arrays", `{"resourceType":"Patient","x":` + strings.Repeat("[", 100000) + `"ZZSECRETZZ"` + strings.Repeat("]", 100000) + `}`, fhir.ErrInvalidJSON, "", false},

		// resourceType.
		{"missing resourceType", `{"id":"ZZSECRETZZ"}`, fhir.ErrInvalid, "", false},
		{"resourceType not a string", `{"resourceType":["ZZSECRETZZ"]}`, fhir.ErrInvalid, "", false},
		{"unknown resourceType", `{"resourceType":"ZZSECRETZZ"}`, fhir.ErrUnknownResource, "", false},
		{"unknown resourceType with dots", `{"resourceType":"ZZSECRETZZ.Patient.id"}`, fhir.ErrUnknownResource, "", false},
		{"unknown resourceType with quotes", `{"resourceType":"ZZSECRETZZ\"x\\y"}`, fhir.ErrUnknownResource, "", false},
		{"resourceType wrong case", `{"resourceType":"patient","id":"ZZSECRETZZ"}`, fhir.ErrUnknownResource, "", false},
		{"unknown resourceType in entry", bundle(`{"resourceType":"ZZSECRETZZ.x"}`), fhir.ErrUnknownResource, "Bundle.entry[0].resource.resourceType", false},
		{"resourceType wrong case in entry", bundle(`{"resourceType":"patient","id":"ZZSECRETZZ"}`), fhir.ErrUnknownResource, "Bundle.entry[0].resource.resourceType", false},
		{"unknown resourceType contained", `{"resourceType":"Patient","contained":[{"resourceType":"ZZ.SECRET\"ZZ"}]}`, fhir.ErrUnknownResource, "Patient.contained[0].resourceType", false},

		// Values.
		{"invalid date", `{"resourceType":"Patient","birthDate":"ZZSECRETZZ"}`, fhir.ErrInvalid, "Patient.birthDate", false},
		{"impossible date", `{"resourceType":"Patient","birthDate":"1990-13-45","id":"ZZSECRETZZ"}`, fhir.ErrInvalid, "Patient.birthDate", false},
		{"date as number", `{"resourceType":"Patient","birthDate":19900101,"id":"ZZSECRETZZ"}`, fhir.ErrInvalid, "Patient.birthDate", false},
		{"wrong type", `{"resourceType":"Patient","active":"ZZSECRETZZ"}`, fhir.ErrInvalid, "Patient.active", false},
		{"unknown element", `{"resourceType":"Patient","unknownElement":"ZZSECRETZZ"}`, fhir.ErrInvalid, "Patient", true},
		{"bad code", `{"resourceType":"Patient","gender":"ZZSECRETZZ"}`, fhir.ErrInvalid, "Patient.gender", false},
		{"bad code in array", `{"resourceType":"Patient","telecom":[{"value":"1"},{"system":"ZZSECRETZZ"}]}`, fhir.ErrInvalid, "Patient.telecom[1].system", false},
		{"name not an array", `{"resourceType":"Patient","name":{"family":"ZZSECRETZZ"}}`, fhir.ErrInvalid, "Patient.name", false},
		{"name item not an object", `{"resourceType":"Patient","name":["ZZSECRETZZ"]}`, fhir.ErrInvalid, "Patient.name[0]", false},
		{"missing required code", `{"resourceType":"Observation","status":"final","id":"ZZSECRETZZ"}`, fhir.ErrInvalid, "Observation", false},
		{"wrong reference target", obs + `,"subject":{"reference":"Medication/ZZSECRETZZ"}}`, fhir.ErrInvalid, "Observation.subject", false},
		{"invalid id", `{"resourceType":"Patient","id":"ZZSECRETZZ!?"}`, fhir.ErrInvalid, "Patient.id", false},
		{"control character", `{"resourceType":"Patient","name":[{"text":"ZZSECRETZZ\u0001"}]}`, fhir.ErrInvalid, "Patient.name[0].text", false},
		{"two choice values", obs + `,"valueString":"ZZSECRETZZ","valueBoolean":true}`, fhir.ErrInvalid, "Observation", false},

		// Paths inside Bundles and contained resources.
		{"entry birthDate", bundle(`{"resourceType":"Patient"}`, `{"resourceType":"Patient","birthDate":"ZZSECRETZZ"}`), fhir.ErrInvalid, "Bundle.entry[1].resource.birthDate", false},
		{"entry missing code", bundle(`{"resourceType":"Patient"}`, `{"resourceType":"Patient"}`, `{"resourceType":"Observation","status":"final","id":"ZZSECRETZZ"}`), fhir.ErrInvalid, "Bundle.entry[2].resource", false},
		{"entry wrong reference", bundle(`{"resourceType":"MedicationRequest","status":"active","intent":"order","medicationCodeableConcept":{"text":"x"},"subject":{"reference":"Medication/ZZSECRETZZ"}}`), fhir.ErrInvalid, "Bundle.entry[0].resource.subject", false},
		{"contained wrong type", `{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o1","active":"ZZSECRETZZ"}]}`, fhir.ErrInvalid, "Patient.contained[0].active", false},
		{"contained in entry", bundle(`{"resourceType":"Patient","contained":[{"resourceType":"Organization"},{"resourceType":"Practitioner","birthDate":"ZZSECRETZZ"}]}`), fhir.ErrInvalid, "Bundle.entry[0].resource.contained[1].birthDate", false},
		{"contained missing resourceType", `{"resourceType":"Patient","contained":[{"id":"ZZSECRETZZ"}]}`, fhir.ErrInvalid, "Patient.contained[0]", false},

		// jsonformat names elements its own way; paths use FHIR's.
		{"choice type when parsing", obs + `,"valueDateTime":"ZZSECRETZZ"}`, fhir.ErrInvalid, "Observation.valueDateTime", false},
		{"choice type when validating", obs + `,"valueString":"ZZSECRETZZ\u0000"}`, fhir.ErrInvalid, "Observation.valueString", false},
		{"choice reference", `{"resourceType":"MedicationRequest","status":"active","intent":"order","subject":{"reference":"Patient/1"},"medicationReference":{"reference":"Patient/ZZSECRETZZ"}}`, fhir.ErrInvalid, "MedicationRequest.medicationReference", false},
		{"camelCase resource when validating", `{"resourceType":"MedicationRequest","status":"active","intent":"order","medicationCodeableConcept":{"text":"ZZSECRETZZ"},"subject":{"reference":"Medication/1"}}`, fhir.ErrInvalid, "MedicationRequest.subject", false},
		{"camelCase element when validating", `{"resourceType":"Patient","generalPractitioner":[{"reference":"Patient/ZZSECRETZZ"}]}`, fhir.ErrInvalid, "Patient.generalPractitioner[0]", false},
		{"primitive extension", `{"resourceType":"Patient","name":[{"given":["ZZSECRETZZ"],"_given":[null,{"id":"x"}]}]}`, fhir.ErrInvalid, "Patient.name[0].given", false},
		{"inside primitive extension", obs + `,"_status":{"extension":[{"url":"http://x","valueBoolean":"ZZSECRETZZ"}]}}`, fhir.ErrInvalid, "Observation.status.extension[0].valueBoolean", false},
		{"upper-case name", `{"resourceType":"Patient","BirthDate":"ZZSECRETZZ"}`, fhir.ErrInvalid, "Patient.birthDate", false},

		// Input jsonformat accepts but FHIR JSON does not, where the stored
		// tree would say something else than what was validated.
		{"duplicate keys", `{"resourceType":"Patient","birthDate":"1990-01-01","birthDate":"ZZSECRETZZ"}`, fhir.ErrInvalidJSON, "", false},
		{"duplicate keys via escape", `{"resourceType":"Patient","active":true,"\u0061ctive":false,"id":"ZZSECRETZZ"}`, fhir.ErrInvalidJSON, "", false},
		{"nested duplicate keys", `{"resourceType":"Patient","name":[{"family":"ZZSECRETZZ","family":"x"}]}`, fhir.ErrInvalidJSON, "", false},
		{"duplicate keys in entry", bundle(`{"resourceType":"Patient","id":"ZZSECRETZZ","id":"b"}`), fhir.ErrInvalidJSON, "", false},
		{"name in two spellings", `{"resourceType":"Patient","active":true,"Active":false,"id":"ZZSECRETZZ"}`, fhir.ErrInvalid, "Patient.active", false},
		{"upper-case spelling hides subject", obs + `,"Subject":{"reference":"Patient/ZZSECRETZZ"}}`, fhir.ErrInvalid, "Observation.subject", false},
		{"null value", `{"resourceType":"Patient","active":null,"id":"ZZSECRETZZ"}`, fhir.ErrInvalid, "Patient.active", false},
		{"null required element", `{"resourceType":"Observation","status":"final","code":null,"id":"ZZSECRETZZ"}`, fhir.ErrInvalid, "Observation.code", false},
		{"empty required element", `{"resourceType":"Observation","status":"final","code":{},"id":"ZZSECRETZZ"}`, fhir.ErrInvalid, "Observation.code", false},
		{"empty array", `{"resourceType":"Patient","name":[],"id":"ZZSECRETZZ"}`, fhir.ErrInvalid, "Patient.name", false},
		{"null array item", `{"resourceType":"Patient","name":[{"given":["ZZSECRETZZ",null]}]}`, fhir.ErrInvalid, "Patient.name[0].given[1]", false},
		{"null in entry", bundle(`{"resourceType":"Patient","id":"ZZSECRETZZ","gender":null}`), fhir.ErrInvalid, "Bundle.entry[0].resource.gender", false},

		// Attacks.
		{"deep extension nesting", nested(200), fhir.ErrInvalid, "Patient.extension[0].extension[0]", true},
	}
	p := newParser(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := p.Parse([]byte(tt.in))
			if err == nil {
				t.Fatalf("Parse(%.80q) = %v, want error", tt.in, r.Tree)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Parse err = %v, want %v", err, tt.wantErr)
			}
			var ves fhir.ValidationErrors
			if !errors.As(err, &ves) || len(ves) == 0 {
				t.Fatalf("Parse err = %T %v, want ValidationErrors", err, err)
			}
			if tt.prefix {
				for _, ve := range ves {
					if !strings.HasPrefix(ve.Path, tt.wantPath) {
						t.Errorf("Path = %q, want prefix %q", ve.Path, tt.wantPath)
					}
				}
			} else if ves[0].Path != tt.wantPath {
				t.Errorf("Path = %q, want %q (%v)", ves[0].Path, tt.wantPath, err)
			}
			if msg := err.Error(); strings.Contains(msg, marker) || strings.Contains(msg, "SECRET") {
				t.Errorf("Error() quotes input: %q", msg)
			}
			for _, ve := range ves {
				if ve.Err == nil {
					t.Errorf("%q has no sentinel", ve)
				}
				if ve.Reason == "" {
					t.Errorf("%q has no reason", ve)
				}
				if strings.Contains(ve.Path+ve.Reason, "SECRET") {
					t.Errorf("ValidationError quotes input: Path %q Reason %q", ve.Path, ve.Reason)
				}
			}
		})
	}
}

// TestParseErrorsNoPHI runs a bad value through every primitive type
// jsonformat checks: none of its errors may echo the value.
func TestParseErrorsNoPHI(t *testing.T) {
	tests := []string{
		`{"resourceType":"Patient","birthDate":"ZZSECRETZZ"}`,
		`{"resourceType":"Patient","deceasedDateTime":"ZZSECRETZZ"}`,
		`{"resourceType":"Patient","active":"ZZSECRETZZ"}`,
		`{"resourceType":"Patient","multipleBirthInteger":"ZZSECRETZZ"}`,
		`{"resourceType":"Patient","gender":"ZZSECRETZZ"}`,
		`{"resourceType":"Patient","id":"ZZSECRETZZ ZZSECRETZZ"}`,
		`{"resourceType":"Patient","meta":{"lastUpdated":"ZZSECRETZZ"}}`,
		`{"resourceType":"Patient","photo":[{"data":"ZZSECRETZZ!!"}]}`,
		`{"resourceType":"Patient","photo":[{"url":["ZZSECRETZZ"]}]}`,
		`{"resourceType":"Patient","photo":[{"size":"ZZSECRETZZ"}]}`,
		`{"resourceType":"Patient","name":[{"family":["ZZSECRETZZ"]}]}`,
		`{"resourceType":"Patient","name":[{"family":"ZZSECRETZZ\u0002"}]}`,
		`{"resourceType":"Patient","identifier":[{"system":"ZZSECRETZZ\u0003","value":"x"}]}`,
		`{"resourceType":"Patient","text":{"status":"ZZSECRETZZ","div":"<div/>"}}`,
		`{"resourceType":"Patient","managingOrganization":{"reference":"Patient/ZZSECRETZZ"}}`,
		`{"resourceType":"Patient","managingOrganization":{"reference":7}}`,
		`{"resourceType":"Patient","extension":[{"url":"ZZSECRETZZ","valueDecimal":"ZZSECRETZZ"}]}`,
		`{"resourceType":"Patient","extension":[{"url":"http://x","valuePositiveInt":"ZZSECRETZZ"}]}`,
		`{"resourceType":"Patient","extension":[{"url":"http://x","valueUnsignedInt":-1,"id":"ZZSECRETZZ"}]}`,
		`{"resourceType":"Patient","extension":[{"url":"http://x","valueInstant":"ZZSECRETZZ"}]}`,
		`{"resourceType":"Patient","extension":[{"url":"http://x","valueTime":"ZZSECRETZZ"}]}`,
		`{"resourceType":"Patient","extension":[{"url":"http://x","valueOid":"ZZSECRETZZ"}]}`,
		`{"resourceType":"Patient","extension":[{"url":"http://x","valueUuid":"ZZSECRETZZ"}]}`,
		`{"resourceType":"Patient","extension":[{"url":"http://x","valueId":"ZZSECRETZZ?"}]}`,
		`{"resourceType":"Patient","extension":[{"url":"http://x","valueBase64Binary":"ZZSECRETZZ?"}]}`,
		`{"resourceType":"Patient","extension":[{"url":"http://x","valueUnknown":"ZZSECRETZZ"}]}`,
		`{"resourceType":"Observation","status":"final","code":{"text":"w"},"valueQuantity":{"value":"ZZSECRETZZ"}}`,
		`{"resourceType":"Observation","status":"final","code":{"text":"w"},"valueSampledData":{"origin":{"value":1},"period":1,"dimensions":"ZZSECRETZZ","data":"1"}}`,
		`{"resourceType":"ZZSECRETZZ","name":"ZZSECRETZZ"}`,
		`{"resourceType":"Bundle","type":"ZZSECRETZZ"}`,
		`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"ZZSECRETZZ"}}]}`,
		`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":"ZZSECRETZZ"}]}`,
		`{"resourceType":"Patient","contained":["ZZSECRETZZ"]}`,
		`{"resourceType":"Patient","contained":[{"resourceType":"ZZSECRETZZ"}]}`,
		`{"resourceType":"Patient","contained":[{"resourceType":7,"id":"ZZSECRETZZ"}]}`,
		`{"resourceType":"Patient","birthDate":"ZZSECRETZZ","gender":"ZZSECRETZZ","active":"ZZSECRETZZ"}`,
	}
	p := newParser(t)
	for _, in := range tests {
		_, err := p.Parse([]byte(in))
		if err == nil {
			t.Errorf("Parse(%s) succeeded, want error", in)
			continue
		}
		var ves fhir.ValidationErrors
		if !errors.As(err, &ves) {
			t.Errorf("Parse(%s) err = %T, want ValidationErrors", in, err)
			continue
		}
		for _, ve := range ves {
			if s := ve.Path + " " + ve.Reason + " " + ve.Error(); strings.Contains(s, "SECRET") {
				t.Errorf("Parse(%s): error repeats input: %q", in, s)
			}
		}
	}
}

func TestValidationErrorsError(t *testing.T) {
	one := fhir.ValidationErrors{{Path: "Patient.active", Reason: "expected boolean", Err: fhir.ErrInvalid}}
	if got, want := one.Error(), "Patient.active: expected boolean"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	two := append(one, &fhir.ValidationError{Reason: "unknown resource type", Err: fhir.ErrUnknownResource})
	if got, want := two.Error(), "Patient.active: expected boolean (and 1 more)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(two, fhir.ErrUnknownResource) || !errors.Is(two, fhir.ErrInvalid) {
		t.Error("errors.Is does not see every error of the list")
	}
	var ve *fhir.ValidationError
	if !errors.As(two, &ve) || ve.Path != "Patient.active" {
		t.Errorf("errors.As = %v", ve)
	}
}

// decodeResource builds a Resource without validation, for inputs the
// parser would refuse (SplitBundle checks what jsonformat leaves out).
func decodeResource(t *testing.T, in string) *fhir.Resource {
	t.Helper()
	v, err := fhir.Decode([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	tree := v.(map[string]any)
	typ, _ := tree["resourceType"].(string)
	return &fhir.Resource{Type: typ, Tree: tree}
}

func TestSplitBundle(t *testing.T) {
	in := `{"resourceType":"Bundle","type":"transaction","entry":[
		{"fullUrl":"urn:uuid:a","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"/Patient","ifNoneExist":"identifier=x|1"}},
		{"resource":{"resourceType":"Patient","id":"p2"},"request":{"method":"PUT","url":"Patient/p2","ifMatch":"W/\"1\""}},
		{"request":{"method":"DELETE","url":"Patient/p3"}},
		{"request":{"method":"GET","url":"Patient?name=x","ifNoneMatch":"*","ifModifiedSince":"2020-01-01T00:00:00Z"}},
		{"request":{"method":"POST","url":"ValueSet/$lookup"}}
	]}`
	r, err := newParser(t).Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	b, err := fhir.SplitBundle(r)
	if err != nil {
		t.Fatal(err)
	}
	if b.Type != "transaction" {
		t.Errorf("Type = %q", b.Type)
	}
	want := []fhir.Request{
		{Method: "POST", URL: "Patient", IfNoneExist: "identifier=x|1"},
		{Method: "PUT", URL: "Patient/p2", IfMatch: `W/"1"`},
		{Method: "DELETE", URL: "Patient/p3"},
		{Method: "GET", URL: "Patient?name=x", IfNoneMatch: "*", IfModifiedSince: "2020-01-01T00:00:00Z"},
		{Method: "POST", URL: "ValueSet/$lookup"},
	}
	var got []fhir.Request
	for i, e := range b.Entries {
		got = append(got, e.Request)
		if e.Index != i {
			t.Errorf("entry %d: Index = %d", i, e.Index)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	if e := b.Entries[0]; e.FullURL != "urn:uuid:a" || e.Resource == nil || e.Resource.Type != "Patient" {
		t.Errorf("entry 0 = %+v", e)
	}
	if e := b.Entries[1]; e.Resource == nil || e.Resource.ID() != "p2" {
		t.Errorf("entry 1 resource = %+v", e.Resource)
	}
	if b.Entries[2].Resource != nil {
		t.Errorf("DELETE entry has a resource")
	}
	if got := b.Entries[3].Path(".request.url"); got != "Bundle.entry[3].request.url" {
		t.Errorf("Path = %q", got)
	}
	// Entry resources share the Bundle's tree: rewriting one is rewriting
	// the Bundle.
	b.Entries[1].Resource.Tree["id"] = "changed"
	entry1 := r.Tree["entry"].([]any)[1].(map[string]any)
	if entry1["resource"].(map[string]any)["id"] != "changed" {
		t.Error("entry resource is a copy of the Bundle's")
	}
}

func TestSplitBundleBatch(t *testing.T) {
	r := decodeResource(t, `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"/Patient/1"}}]}`)
	b, err := fhir.SplitBundle(r)
	if err != nil {
		t.Fatal(err)
	}
	if b.Type != "batch" || len(b.Entries) != 1 || b.Entries[0].Request.URL != "Patient/1" {
		t.Errorf("SplitBundle = %+v", b)
	}
}

func TestSplitBundleErrors(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantPath string
	}{
		{"not a Bundle", `{"resourceType":"Patient"}`, "resourceType"},
		{"searchset", `{"resourceType":"Bundle","type":"searchset"}`, "Bundle.type"},
		{"collection", `{"resourceType":"Bundle","type":"collection"}`, "Bundle.type"},
		{"document", `{"resourceType":"Bundle","type":"document"}`, "Bundle.type"},
		{"message", `{"resourceType":"Bundle","type":"message"}`, "Bundle.type"},
		{"history", `{"resourceType":"Bundle","type":"history"}`, "Bundle.type"},
		{"transaction-response", `{"resourceType":"Bundle","type":"transaction-response"}`, "Bundle.type"},
		{"batch-response", `{"resourceType":"Bundle","type":"batch-response"}`, "Bundle.type"},
		{"no type", `{"resourceType":"Bundle"}`, "Bundle.type"},
		{"missing request", `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"GET","url":"Patient/1"}},{"resource":{"resourceType":"Patient"}}]}`, "Bundle.entry[1].request"},
		{"POST without resource", `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST","url":"Patient"}}]}`, "Bundle.entry[0].resource"},
		{"PUT without resource", `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"PUT","url":"Patient/1"}}]}`, "Bundle.entry[0].resource"},
		{"unknown method", `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient"},"request":{"method":"FETCH","url":"Patient"}}]}`, "Bundle.entry[0].request.method"},
		{"lower-case method", `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient"},"request":{"method":"post","url":"Patient"}}]}`, "Bundle.entry[0].request.method"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := fhir.SplitBundle(decodeResource(t, tt.in))
			if err == nil {
				t.Fatalf("SplitBundle = %+v, want error", b)
			}
			if !errors.Is(err, fhir.ErrInvalid) {
				t.Errorf("err = %v, want ErrInvalid", err)
			}
			var ves fhir.ValidationErrors
			if !errors.As(err, &ves) {
				t.Fatalf("err = %T, want ValidationErrors", err)
			}
			if !slices.ContainsFunc(ves, func(ve *fhir.ValidationError) bool { return ve.Path == tt.wantPath }) {
				t.Errorf("err = %v, want one at %q", err, tt.wantPath)
			}
		})
	}
}

func TestRewriteReferences(t *testing.T) {
	r := decodeResource(t, `{"resourceType":"Observation",
		"subject":{"reference":"urn:uuid:p","display":"reference"},
		"performer":[{"reference":"Practitioner/1"},{"reference":"urn:uuid:o"}],
		"contained":[{"resourceType":"Specimen","subject":{"reference":"urn:uuid:p"}}],
		"extension":[{"url":"http://x","valueReference":{"reference":"urn:uuid:p"}}],
		"note":[{"text":"reference"}],
		"focus":[{"identifier":{"value":"x"}}]}`)
	got := map[string]string{}
	err := fhir.RewriteReferences(r.Tree, "Observation", func(path, ref string) (string, error) {
		got[path] = ref
		if id, ok := strings.CutPrefix(ref, "urn:uuid:"); ok {
			return "Resolved/" + id, nil
		}
		return ref, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"Observation.subject.reference":                     "urn:uuid:p",
		"Observation.performer[0].reference":                "Practitioner/1",
		"Observation.performer[1].reference":                "urn:uuid:o",
		"Observation.contained[0].subject.reference":        "urn:uuid:p",
		"Observation.extension[0].valueReference.reference": "urn:uuid:p",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("visited references (-want +got):\n%s", diff)
	}
	c, err := fhir.Canonical(r.Tree)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"subject":{"display":"reference","reference":"Resolved/p"}`, `{"reference":"Resolved/o"}`, `"valueReference":{"reference":"Resolved/p"}`, `"note":[{"text":"reference"}]`} {
		if !strings.Contains(string(c), s) {
			t.Errorf("rewritten tree %s lacks %s", c, s)
		}
	}
	if strings.Contains(string(c), "urn:uuid") {
		t.Errorf("rewritten tree still has urn:uuid: %s", c)
	}
}

func TestRewriteReferencesStopsAtError(t *testing.T) {
	r := decodeResource(t, `{"resourceType":"Observation","performer":[{"reference":"a"},{"reference":"b"},{"reference":"c"}]}`)
	errBroken := errors.New("broken reference")
	calls := 0
	err := fhir.RewriteReferences(r.Tree, "Bundle.entry[4].resource", func(path, ref string) (string, error) {
		calls++
		if path != "Bundle.entry[4].resource.performer[0].reference" {
			t.Errorf("path = %q", path)
		}
		return "", errBroken
	})
	if !errors.Is(err, errBroken) {
		t.Errorf("err = %v, want %v", err, errBroken)
	}
	if calls != 1 {
		t.Errorf("fn called %d times after an error, want 1", calls)
	}
	if got := r.Tree["performer"].([]any)[0].(map[string]any)["reference"]; got != "a" {
		t.Errorf("failed reference rewritten to %q", got)
	}
}

func TestPatientCompartment(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"patient", `{"resourceType":"Patient","id":"p1"}`, "Patient/p1"},
		{"patient without id", `{"resourceType":"Patient"}`, ""},
		{"observation subject", `{"resourceType":"Observation","subject":{"reference":"Patient/p1"}}`, "Patient/p1"},
		{"subject is a group", `{"resourceType":"Observation","subject":{"reference":"Group/g1"}}`, ""},
		{"allergy patient", `{"resourceType":"AllergyIntolerance","patient":{"reference":"Patient/p2"}}`, "Patient/p2"},
		{"patient before subject", `{"resourceType":"X","subject":{"reference":"Patient/s"},"patient":{"reference":"Patient/p"}}`, "Patient/p"},
		{"subject when patient is not one", `{"resourceType":"X","patient":{"reference":"Group/g"},"subject":{"reference":"Patient/s"}}`, "Patient/s"},
		{"coverage beneficiary", `{"resourceType":"Coverage","beneficiary":{"reference":"Patient/b"}}`, "Patient/b"},
		{"related person", `{"resourceType":"Consent","individual":{"reference":"Patient/i"}}`, "Patient/i"},
		{"who", `{"resourceType":"X","who":{"reference":"Patient/w"}}`, "Patient/w"},
		{"versioned reference", `{"resourceType":"Observation","subject":{"reference":"Patient/p1/_history/2"}}`, ""},
		{"empty id", `{"resourceType":"Observation","subject":{"reference":"Patient/"}}`, ""},
		{"absolute URL", `{"resourceType":"Observation","subject":{"reference":"https://other/Patient/p1"}}`, ""},
		{"unresolved", `{"resourceType":"Observation","subject":{"reference":"urn:uuid:x"}}`, ""},
		{"organization", `{"resourceType":"Organization","id":"o1"}`, ""},
		{"subject is a list", `{"resourceType":"X","subject":[{"reference":"Patient/p"}]}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := decodeResource(t, tt.in)
			if got := fhir.PatientCompartment(r.Type, r.Tree); got != tt.want {
				t.Errorf("PatientCompartment = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestIdentifiers(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []fhir.Identifier
	}{
		{"none", `{}`, nil},
		{"array", `{"identifier":[{"system":"urn:s","value":"1"},{"value":"2"},{"system":"urn:no-value"},"junk",{"value":""}]}`,
			[]fhir.Identifier{{System: "urn:s", Value: "1"}, {Value: "2"}}},
		{"single", `{"identifier":{"system":"urn:s","value":"1"}}`, []fhir.Identifier{{System: "urn:s", Value: "1"}}},
		{"wrong type", `{"identifier":"1"}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := fhir.Decode([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, fhir.Identifiers(v.(map[string]any))); diff != "" {
				t.Errorf("Identifiers (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSetVersion(t *testing.T) {
	r := decodeResource(t, `{"resourceType":"Patient","id":"client-id",
		"meta":{"versionId":"99","_versionId":{"id":"x"},"lastUpdated":"2000-01-01T00:00:00Z","_lastUpdated":{"id":"y"},
		        "profile":["http://p"],"tag":[{"code":"t"}]}}`)
	r.SetVersion("srv-1", 3, time.Date(2024, 5, 6, 9, 8, 9, 123456789, time.FixedZone("CEST", 2*3600)))
	got, err := fhir.Canonical(r.Tree)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"id":"srv-1","meta":{"lastUpdated":"2024-05-06T07:08:09.123456Z","profile":["http://p"],"tag":[{"code":"t"}],"versionId":"3"},"resourceType":"Patient"}`
	if string(got) != want {
		t.Errorf("after SetVersion:\ngot  %s\nwant %s", got, want)
	}
	if r.ID() != "srv-1" {
		t.Errorf("ID() = %q", r.ID())
	}
}

func TestSetVersionWithoutMeta(t *testing.T) {
	r := decodeResource(t, `{"resourceType":"Patient"}`)
	r.SetVersion("p", 1, time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC))
	got, err := fhir.Canonical(r.Tree)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"id":"p","meta":{"lastUpdated":"2024-01-02T03:04:05.000000Z","versionId":"1"},"resourceType":"Patient"}`
	if string(got) != want {
		t.Errorf("after SetVersion:\ngot  %s\nwant %s", got, want)
	}
	// A stored version re-parses: server-set values are valid FHIR.
	if _, err := newParser(t).Parse(got); err != nil {
		t.Errorf("stored version does not parse: %v", err)
	}
}

func TestTombstone(t *testing.T) {
	at := time.Date(2024, 1, 2, 3, 4, 5, 6000, time.UTC)
	got := fhir.Tombstone("Observation", "o1", 7, at)
	want := map[string]any{
		"resourceType": "Observation",
		"id":           "o1",
		"deleted":      true,
		"meta":         map[string]any{"versionId": "7", "lastUpdated": "2024-01-02T03:04:05.000006Z"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Tombstone (-want +got):\n%s", diff)
	}
	// "deleted" is no FHIR element: a tombstone can never pass for a
	// resource version.
	c, err := fhir.Canonical(got)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newParser(t).Parse(c); err == nil {
		t.Error("a tombstone parses as a FHIR resource")
	}
}

func TestResourceTypes(t *testing.T) {
	types := fhir.ResourceTypes()
	if len(types) != 146 {
		t.Errorf("len(ResourceTypes()) = %d, want 146 (R4)", len(types))
	}
	if !slices.IsSorted(types) {
		t.Error("ResourceTypes() is not sorted")
	}
	for _, name := range []string{"Patient", "Observation", "Bundle", "Consent", "MedicationRequest", "Parameters", "Binary", "VerificationResult"} {
		if !slices.Contains(types, name) || !fhir.IsResourceType(name) {
			t.Errorf("%s is not a resource type", name)
		}
	}
	for _, name := range []string{"", "patient", "PATIENT", "Resource", "DomainResource", "HumanName", "Reference", "ContainedResource", "MedicationStatement2"} {
		if fhir.IsResourceType(name) {
			t.Errorf("IsResourceType(%q) = true", name)
		}
	}
	types[0] = "Mutated"
	if fhir.ResourceTypes()[0] == "Mutated" {
		t.Error("ResourceTypes returns the shared slice")
	}
}

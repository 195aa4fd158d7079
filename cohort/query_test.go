package cohort

import (
	"errors"
	"strings"
	"testing"
)

const diabetesQuery = `{"criteria": {"all": [
  {"gender": "female"},
  {"birthYear": {"ge": 1950, "lt": 1970}}, {"age": {"ge": 18}},
  {"zip3": "021"}, {"race": "2106-3"}, {"deceased": false},
  {"condition": {"code": [{"system": "http://snomed.info/sct", "code": "44054006"}]}, "as": "dx"},
  {"observation": {"code": [{"system": "http://loinc.org", "code": "4548-4"}], "value": {"gt": 6.5}, "unit": "%"},
   "within": {"of": "dx", "from": {"days": 0}, "to": {"days": 365}}},
  {"not": {"medication": {"code": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "860975"}]}}},
  {"any": [{"encounter": {"code": [{"system": "http://snomed.info/sct", "code": "185349003"}]}},
           {"procedure": {"code": [{"system": "http://snomed.info/sct", "code": "430193006"}], "date": {"ge": "2010-01-01", "lt": "2015-01-01"}}}]},
  {"immunization": {"code": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140"}]}},
  {"report": {"status": "final"}}
]}, "breakdown": ["gender", "ageBand"]}`

func mustParse(t testing.TB, s string) *Query {
	t.Helper()
	q, err := ParseQuery([]byte(s))
	if err != nil {
		t.Fatalf("ParseQuery(%s): %v", s, err)
	}
	return q
}

func TestParseQueryAccepts(t *testing.T) {
	for _, in := range []string{
		diabetesQuery,
		`{"criteria": {"gender": "male"}}`,
		`{"criteria": {"encounter": {}}}`,
		`{"criteria": {"observation": {"valueCode": [{"system": "s", "code": "c"}]}}, "breakdown": []}`,
		`{"criteria": {"all": [{"condition": {}, "as": "a"}, {"any": [{"not": {"procedure": {}, "within": {"of": "a", "to": {"days": -1}}}}]}]}}`,
		`{"criteria": {"age": {"eq": 90}}, "breakdown": ["gender","ageBand","birthDecade","zip3","race","ethnicity","deceased"]}`,
	} {
		q := mustParse(t, in)
		if len(q.Fingerprint()) != 64 || len(q.Shape()) != 64 || q.Fingerprint() == q.Shape() {
			t.Errorf("fingerprint %q shape %q", q.Fingerprint(), q.Shape())
		}
	}
	q := mustParse(t, diabetesQuery)
	if got := strings.Join(q.Breakdown, ","); got != "gender,ageBand" {
		t.Errorf("Breakdown = %s", got)
	}
}

func TestParseQueryRejects(t *testing.T) {
	const secret = "SECRETVALUE"
	deep := strings.Repeat(`{"not":`, 100) + `{"gender":"x"}` + strings.Repeat("}", 100)
	deepJSON := `{"criteria":` + strings.Repeat("[", 30000) + strings.Repeat("]", 30000) + "}"
	manyCriteria := `{"criteria":{"any":[` + strings.Repeat(`{"gender":"x"},`, 300) + `{"gender":"x"}]}}`
	tests := []struct {
		name, in, path, reason string
	}{
		{"not JSON", `{"criteria":`, "", "invalid JSON"},
		{"trailing data", `{"criteria":{"gender":"x"}} {}`, "", "invalid JSON"},
		{"not an object", `[1]`, "", "not a JSON object"},
		{"duplicate member", `{"criteria":{"gender":"x"},"criteria":{"gender":"y"}}`, "", "repeated member"},
		{"no criteria", `{"breakdown":["gender"]}`, "criteria", "required"},
		{"unknown top member", `{"criteria":{"gender":"x"},"limit":3}`, "", "unknown member;"},
		{"unknown member value not echoed", `{"criteria":{"gender":"x"},"` + secret + ` x":3}`, "", "unknown member;"},
		{"unknown test", `{"criteria":{"colour":"x"}}`, "criteria", "unknown test"},
		{"two tests", `{"criteria":{"gender":"x","zip3":"021"}}`, "criteria", "more than one test"},
		{"no test", `{"criteria":{"as":"a"}}`, "criteria", "no test"},
		{"empty all", `{"criteria":{"all":[]}}`, "criteria.all", "non-empty array"},
		{"any not list", `{"criteria":{"any":{"gender":"x"}}}`, "criteria.any", "non-empty array"},
		{"gender number", `{"criteria":{"gender":3}}`, "criteria.gender", "non-empty string"},
		{"long string", `{"criteria":{"gender":"` + strings.Repeat("x", 300) + `"}}`, "criteria.gender", "longer than"},
		{"deceased string", `{"criteria":{"deceased":"` + secret + `"}}`, "criteria.deceased", "true or false"},
		{"age fraction", `{"criteria":{"age":{"ge":18.5}}}`, "criteria.age.ge", "whole number"},
		{"age string", `{"criteria":{"age":{"ge":"` + secret + `"}}}`, "criteria.age.ge", "must be a number"},
		{"range unknown op", `{"criteria":{"age":{"gte":18}}}`, "criteria.age", "unknown member"},
		{"range empty", `{"criteria":{"age":{}}}`, "criteria.age", "gt, ge"},
		{"eq with others", `{"criteria":{"age":{"eq":1,"lt":3}}}`, "criteria.age", "eq cannot"},
		{"gt and ge", `{"criteria":{"age":{"gt":1,"ge":3}}}`, "criteria.age", "gt and ge"},
		{"huge number", `{"criteria":{"observation":{"value":{"gt":1e999}}}}`, "criteria.observation.value.gt", "out of range"},
		{"value on condition", `{"criteria":{"condition":{"value":{"gt":1}}}}`, "criteria.condition", "unknown member;"},
		{"empty code list", `{"criteria":{"condition":{"code":[]}}}`, "criteria.condition.code", "non-empty array"},
		{"coding without system", `{"criteria":{"condition":{"code":[{"code":"` + secret + `"}]}}}`, "criteria.condition.code[0].system", "non-empty string"},
		{"coding extra member", `{"criteria":{"condition":{"code":[{"system":"s","code":"c","display":"d"}]}}}`, "criteria.condition.code[0]", "unknown member"},
		{"bad date", `{"criteria":{"condition":{"date":{"ge":"` + secret + `"}}}}`, "criteria.condition.date.ge", "YYYY-MM-DD"},
		{"bad name", `{"criteria":{"condition":{},"as":"1` + secret + `"}}`, "criteria.as", "must be a name"},
		{"as on demographic", `{"criteria":{"gender":"x","as":"a"}}`, "criteria.as", "only a fact criterion"},
		{"within on all", `{"criteria":{"all":[{"gender":"x"}],"within":{"of":"a"}}}`, "criteria.within", "only a fact criterion"},
		{"duplicate name", `{"criteria":{"all":[{"condition":{},"as":"a"},{"procedure":{},"as":"a"}]}}`, "criteria.all[1].as", "already used"},
		{"within unknown name", `{"criteria":{"all":[{"condition":{},"as":"a"},{"procedure":{},"within":{"of":"` + secret + `"}}]}}`, "criteria.all[1].within.of", "no criterion in scope"},
		{"within out of scope", `{"criteria":{"all":[{"any":[{"condition":{},"as":"a"}]},{"procedure":{},"within":{"of":"a"}}]}}`, "criteria.all[1].within.of", "no criterion in scope"},
		{"within self", `{"criteria":{"all":[{"condition":{},"as":"a","within":{"of":"a"}}]}}`, "criteria", "loop"},
		{"within loop", `{"criteria":{"all":[{"condition":{},"as":"a","within":{"of":"b"}},{"procedure":{},"as":"b","within":{"of":"a"}}]}}`, "criteria", "loop"},
		{"window reversed", `{"criteria":{"all":[{"condition":{},"as":"a"},{"procedure":{},"within":{"of":"a","from":{"days":5},"to":{"days":1}}}]}}`, "criteria.all[1].within", "from is after to"},
		{"window fraction", `{"criteria":{"all":[{"condition":{},"as":"a"},{"procedure":{},"within":{"of":"a","from":{"days":0.5}}}]}}`, "criteria.all[1].within.from.days", "whole number"},
		{"window huge", `{"criteria":{"all":[{"condition":{},"as":"a"},{"procedure":{},"within":{"of":"a","to":{"days":99999999}}}]}}`, "criteria.all[1].within.to.days", "whole number"},
		{"window unit", `{"criteria":{"all":[{"condition":{},"as":"a"},{"procedure":{},"within":{"of":"a","to":{"months":1}}}]}}`, "criteria.all[1].within.to", "unknown member;"},
		{"unknown dimension", `{"criteria":{"gender":"x"},"breakdown":["` + secret + `"]}`, "breakdown[0]", "unknown dimension"},
		{"repeated dimension", `{"criteria":{"gender":"x"},"breakdown":["gender","gender"]}`, "breakdown[1]", "repeated"},
		{"depth bomb", deep, "", "nested too deeply"},
		{"deep criteria", strings.Repeat(`{"not":`, 18) + `{"gender":"x"}` + strings.Repeat("}", 18), "", "nested deeper"},
		{"json depth bomb", deepJSON, "", "nested too deeply"},
		{"many criteria", manyCriteria, "", "more than 256 criteria"},
		{"huge input", `{"criteria":{"gender":"` + strings.Repeat("x", MaxQueryBytes) + `"}}`, "", "larger than"},
		{"invalid UTF-8", "{\"criteria\":{\"gender\":\"\xff\"}}", "", "not UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			if tt.name == "deep criteria" {
				in = `{"criteria":` + in + `}`
			}
			if tt.name == "depth bomb" {
				in = `{"criteria":` + in + `}`
			}
			q, err := ParseQuery([]byte(in))
			if err == nil {
				t.Fatalf("ParseQuery accepted it: %s", q.canonicalText())
			}
			if !errors.Is(err, ErrInvalidQuery) {
				t.Errorf("err %v does not wrap ErrInvalidQuery", err)
			}
			var qe *QueryError
			if !errors.As(err, &qe) {
				t.Fatalf("err %T is not a *QueryError", err)
			}
			if tt.path != "" && qe.Path != tt.path {
				t.Errorf("Path = %q, want %q (err %v)", qe.Path, tt.path, err)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("err = %v, want it to mention %q", err, tt.reason)
			}
			if strings.Contains(err.Error(), secret) || len(err.Error()) > 400 {
				t.Errorf("err echoes input or is long: %v", err)
			}
		})
	}
}

func TestFingerprintInvariant(t *testing.T) {
	a := mustParse(t, `{"criteria":{"all":[
		{"condition":{"code":[{"system":"s","code":"1"},{"system":"s","code":"2"}]},"as":"dx"},
		{"observation":{"unit":"%","value":{"lt":9,"gt":6.5},"code":[{"code":"4548-4","system":"http://loinc.org"}]},"within":{"to":{"days":365},"of":"dx","from":{"days":0}}},
		{"any":[{"gender":"male"},{"zip3":"021"}]}]},
		"breakdown":["gender"]}`)
	b := mustParse(t, `{"breakdown":["ageBand"],"criteria":{"all":[
		{"any":[{"zip3":"021"},{"gender":"male"}]},
		{"within":{"from":{"days":0},"of":"first","to":{"days":365}},"observation":{"code":[{"system":"http://loinc.org","code":"4548-4"}],"value":{"gt":6.50,"lt":9.0},"unit":"%"}},
		{"as":"first","condition":{"code":[{"code":"2","system":"s"},{"system":"s","code":"1"},{"system":"s","code":"2"}]}}]}}`)
	if a.Fingerprint() != b.Fingerprint() {
		t.Errorf("reordered query has another fingerprint:\n%s\n%s", a.canonicalText(), b.canonicalText())
	}
	if a.Shape() != b.Shape() {
		t.Error("reordered query has another shape")
	}
	differ := func(name, x, y string) {
		t.Helper()
		qx, qy := mustParse(t, x), mustParse(t, y)
		if qx.Fingerprint() == qy.Fingerprint() {
			t.Errorf("%s: same fingerprint", name)
		}
	}
	sameShape := func(name, x, y string, want bool) {
		t.Helper()
		qx, qy := mustParse(t, x), mustParse(t, y)
		if got := qx.Shape() == qy.Shape(); got != want {
			t.Errorf("%s: same shape = %v, want %v", name, got, want)
		}
	}
	const base = `{"criteria":{"all":[{"condition":{"code":[{"system":"s","code":"1"}]},"as":"dx"},{"observation":{"code":[{"system":"l","code":"h"}],"value":{"gt":6.5}},"within":{"of":"dx","from":{"days":0},"to":{"days":365}}},{"age":{"ge":18}},{"procedure":{"date":{"ge":"2010-01-01"}}}]}}`
	variants := map[string]string{
		"threshold": strings.Replace(base, `"gt":6.5`, `"gt":6.6`, 1),
		"operator":  strings.Replace(base, `"gt":6.5`, `"ge":6.5`, 1),
		"window":    strings.Replace(base, `"to":{"days":365}`, `"to":{"days":366}`, 1),
		"age":       strings.Replace(base, `"ge":18`, `"ge":19`, 1),
		"date":      strings.Replace(base, `2010-01-01`, `2010-01-02`, 1),
	}
	for name, v := range variants {
		differ(name, base, v)
		sameShape(name, base, v, true)
	}
	for name, v := range map[string]string{
		"code": strings.Replace(base, `"code":"1"`, `"code":"2"`, 1),
		"not":  strings.Replace(base, `{"age":{"ge":18}}`, `{"not":{"age":{"ge":18}}}`, 1),
		"unit": strings.Replace(base, `"value":{"gt":6.5}`, `"value":{"gt":6.5},"unit":"%"`, 1),
	} {
		differ(name, base, v)
		sameShape(name, base, v, false)
	}
	// A window with no bounds differs in shape from one with bounds.
	sameShape("unbounded window", base, strings.Replace(base, `,"from":{"days":0},"to":{"days":365}`, ``, 1), false)
	// Renaming "as" changes nothing.
	if x, y := mustParse(t, base), mustParse(t, strings.ReplaceAll(base, `"dx"`, `"other"`)); x.Fingerprint() != y.Fingerprint() {
		t.Error("renaming as changed the fingerprint")
	}
	// The breakdown is not part of the fingerprint (see Fingerprint's doc).
	if x, y := mustParse(t, `{"criteria":{"gender":"x"}}`), mustParse(t, `{"criteria":{"gender":"x"},"breakdown":["zip3"]}`); x.Fingerprint() != y.Fingerprint() {
		t.Error("breakdown changed the fingerprint")
	}
}

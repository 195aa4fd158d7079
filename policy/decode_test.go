package policy

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/open-policy-agent/opa/v1/ast"
)

func TestDecodeDecision(t *testing.T) {
	tests := []struct {
		name string
		rego string // an object term
		want *Decision
	}{
		{"full", `{"allow": true, "reasons": ["a", "b"], "breakGlass": true, "extra": 1,
			"obligations": [{"type": "redact", "securityLabels": [{"system": "s", "code": "c"}, {"code": "d"}]}, {"type": "audit-break-glass"}],
			"basedOn": [{"id": "c1", "versionId": "2"}]}`,
			&Decision{Allow: true, Reasons: []string{"a", "b"}, BreakGlass: true,
				Obligations: []Obligation{{Type: "redact", SecurityLabels: []Coding{{System: "s", Code: "c"}, {Code: "d"}}}, {Type: "audit-break-glass"}},
				BasedOn:     []ConsentRef{{ID: "c1", VersionID: "2"}}}},
		{"deny with nothing else", `{"allow": false}`, &Decision{}},
		{"nulls and sets", `{"allow": true, "reasons": {"b", "a"}, "obligations": null, "basedOn": {{"id": "x", "versionId": null}}}`,
			&Decision{Allow: true, Reasons: []string{"a", "b"}, BasedOn: []ConsentRef{{ID: "x"}}}},
		{"not an object", `["allow", true]`, nil},
		{"allow missing", `{"reasons": ["a"]}`, nil},
		{"allow a string", `{"allow": "true", "reasons": ["a"]}`, nil},
		{"allow without reasons", `{"allow": true, "reasons": []}`, nil},
		{"breakGlass not boolean", `{"allow": false, "breakGlass": 1}`, nil},
		{"reason not a string", `{"allow": false, "reasons": ["a", 1]}`, nil},
		{"reasons an object", `{"allow": false, "reasons": {"a": 1}}`, nil},
		{"obligation not an object", `{"allow": false, "obligations": ["redact"]}`, nil},
		{"label code a number", `{"allow": false, "obligations": [{"type": "redact", "securityLabels": [{"code": 1}]}]}`, nil},
		{"basedOn id a number", `{"allow": false, "basedOn": [{"id": 1}]}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, ok := decodeDecision(ast.MustParseTerm(tt.rego).Value)
			if tt.want == nil {
				if ok {
					t.Fatalf("decoded %+v, want ill-shaped", d)
				}
				return
			}
			if !ok {
				t.Fatal("ill-shaped, want a decision")
			}
			if diff := cmp.Diff(*tt.want, d); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
		})
	}
}

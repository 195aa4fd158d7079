package search

import (
	"strings"
	"testing"
)

func TestRegistryKnowsCommonParams(t *testing.T) {
	for _, tc := range []struct {
		resourceType, code string
		typ                Type
	}{
		{"Observation", "code", TypeToken},
		{"Observation", "subject", TypeReference},
		{"Observation", "patient", TypeReference},
		{"Observation", "date", TypeDate},
		{"Observation", "value-quantity", TypeQuantity},
		{"Observation", "code-value-quantity", TypeComposite},
		{"Patient", "name", TypeString},
		{"Patient", "birthdate", TypeDate},
		{"Patient", "gender", TypeToken},
		{"Patient", "identifier", TypeToken},
		{"Patient", "family", TypeString},
		{"Condition", "code", TypeToken},
		{"Condition", "subject", TypeReference},
		{"Condition", "onset-date", TypeDate},
		{"Patient", "_id", TypeToken},
		{"Binary", "_lastUpdated", TypeDate},
		{"Encounter", "_tag", TypeToken},
		{"Encounter", "_profile", TypeURI},
		{"Encounter", "_security", TypeToken},
		{"Encounter", "_source", TypeURI},
	} {
		p, ok := Lookup(tc.resourceType, tc.code)
		if !ok {
			t.Errorf("Lookup(%s, %s) not found", tc.resourceType, tc.code)
			continue
		}
		if p.Type != tc.typ || p.Code != tc.code || p.Expression == "" || p.Description == "" {
			t.Errorf("Lookup(%s, %s) = %+v", tc.resourceType, tc.code, p)
		}
	}
	p, _ := Lookup("Observation", "patient")
	if len(p.Targets) != 1 || p.Targets[0] != "Patient" {
		t.Errorf("Observation patient targets = %v", p.Targets)
	}
	if p.Description != "The subject that the observation is about (if patient)" {
		t.Errorf("Observation patient description = %q, want this type's line", p.Description)
	}
	p, _ = Lookup("Observation", "date")
	if len(p.Comparators) != 9 {
		t.Errorf("Observation date comparators = %v", p.Comparators)
	}
	p, _ = Lookup("Observation", "code-value-quantity")
	if len(p.Components) != 2 || p.Components[0].Code != "code" || p.Components[1].Type != TypeQuantity {
		t.Errorf("code-value-quantity components = %+v", p.Components)
	}
	if _, ok := Lookup("Patient", "no-such"); ok {
		t.Error("Lookup of an unknown code succeeded")
	}
	if _, ok := Lookup("NoSuchType", "_id"); ok {
		t.Error("Lookup on an unknown type succeeded")
	}
	if _, ok := Lookup("Patient", "_text"); ok {
		t.Error("_text has no expression and is not extracted")
	}
}

func TestEveryResourceTypeHasParams(t *testing.T) {
	types := ResourceTypes()
	if len(types) < 145 {
		t.Fatalf("%d resource types, want the ~146 of R4", len(types))
	}
	total := 0
	for _, rt := range types {
		ps := Params(rt)
		if len(ps) < 6 {
			t.Errorf("%s: %d params, want at least the common ones", rt, len(ps))
		}
		for i := 1; i < len(ps); i++ {
			if ps[i-1].Code >= ps[i].Code {
				t.Errorf("%s: params not sorted or duplicate at %s", rt, ps[i].Code)
			}
		}
		total += len(ps)
	}
	t.Logf("%d resource types, %d (type, param) pairs", len(types), total)
	if Params("NoSuchType") != nil {
		t.Error("Params of an unknown type is not nil")
	}
}

// TestEveryExpressionCompiles keeps the FHIRPath subset complete for the
// R4 definitions: every kept definition must be evaluable.
func TestEveryExpressionCompiles(t *testing.T) {
	for url, reason := range Unsupported() {
		t.Errorf("%s: %s", url, reason)
	}
}

func TestExpressionNarrowedToType(t *testing.T) {
	for _, tc := range []struct{ resourceType, code, want string }{
		{"Condition", "code", "Condition.code"},
		{"Observation", "patient", "Observation.subject.where(resolve() is Patient)"},
		{"Observation", "value-quantity", "(Observation.value.ofType(Quantity)) | (Observation.value.ofType(SampledData))"},
		{"Patient", "_id", "Resource.id"},
	} {
		if p, _ := Lookup(tc.resourceType, tc.code); p.Expression != tc.want {
			t.Errorf("%s %s expression = %q, want %q", tc.resourceType, tc.code, p.Expression, tc.want)
		}
	}
}

// TestNavigationSteps: the precomputed steps say what navigating by the
// element tables says, for every path the tables hold (and every path
// above one), so navigate's two ways agree.
func TestNavigationSteps(t *testing.T) {
	r := load()
	n := 0
	for parent, children := range r.steps {
		for name, st := range children {
			n++
			want := name
			if parent != "" {
				want = parent + "." + name
			}
			if st.path != want {
				t.Fatalf("step %q under %q: path %q", name, parent, st.path)
			}
			if typ, ok := r.elementTypes[want]; st.elemType != typ || st.hasType != ok {
				t.Errorf("%s: element type %q %v, table says %q %v", want, st.elemType, st.hasType, typ, ok)
			}
			choices := r.choices[want]
			if len(st.choices) != len(choices) {
				t.Fatalf("%s: %d choices, table has %d", want, len(st.choices), len(choices))
			}
			for i, c := range st.choices {
				if c.typ != choices[i] || c.member != name+strings.ToUpper(choices[i][:1])+choices[i][1:] {
					t.Errorf("%s: choice %+v for %q", want, c, choices[i])
				}
			}
		}
	}
	for _, table := range []map[string]bool{keys(r.elementTypes), keys(r.choices)} {
		for path := range table {
			for p := path; p != ""; {
				parent, name := "", p
				if i := strings.LastIndexByte(p, '.'); i >= 0 {
					parent, name = p[:i], p[i+1:]
				}
				if r.steps[parent][name] == nil {
					t.Fatalf("no step for %s", p)
				}
				p = parent
			}
		}
	}
	if n == 0 {
		t.Fatal("no steps")
	}
	if r.steps[unknownPath] != nil || isResourceType(unknownPath) {
		t.Errorf("unknownPath %q names a known path", unknownPath)
	}
}

func keys[V any](m map[string]V) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

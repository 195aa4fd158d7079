package search

import (
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

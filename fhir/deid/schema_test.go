package deid

import "testing"

func TestSchemaTypes(t *testing.T) {
	s := schema()
	p := s.resources["Patient"]
	if p == nil {
		t.Fatal("no Patient")
	}
	tests := []struct {
		msg  *message
		json string
		typ  string
		name string
	}{
		{p, "name", "HumanName", "name"},
		{p, "birthDate", "date", "birthDate"},
		{p, "deceasedDateTime", "dateTime", "deceased"},
		{p, "gender", "code", "gender"},
		{p, "contact", "BackboneElement", "contact"},
		{p, "id", "id", "id"},
		{p.members["extension"].msg, "valueAddress", "Address", "value"},
		{p.members["extension"].msg, "url", "uri", "url"},
		{p.members["generalPractitioner"].msg, "reference", "string", "reference"},
		{s.resources["Observation"], "effectivePeriod", "Period", "effective"},
		{s.resources["Observation"], "valueQuantity", "Quantity", "value"},
		{p.members["text"].msg, "div", "xhtml", "div"},
		{s.resources["Condition"], "onsetAge", "Age", "onset"},
	}
	for _, tt := range tests {
		m := tt.msg.members[tt.json]
		if m == nil {
			t.Errorf("%s.%s: no member", tt.msg.typ, tt.json)
			continue
		}
		if m.msg.typ != tt.typ || m.name != tt.name {
			t.Errorf("%s.%s: type %q name %q, want %q %q", tt.msg.typ, tt.json, m.msg.typ, m.name, tt.typ, tt.name)
		}
	}
	if b := s.resources["Condition"].members["onsetAge"].msg.base; b != "Quantity" {
		t.Errorf("Age base = %q, want Quantity", b)
	}
	if !s.resources["Patient"].members["contained"].resource {
		t.Error("contained does not hold resources")
	}
	var req []string
	for _, m := range s.types["Narrative"].required {
		req = append(req, m.json)
	}
	if len(req) != 2 {
		t.Errorf("Narrative required = %v", req)
	}
}

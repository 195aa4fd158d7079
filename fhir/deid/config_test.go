package deid

import (
	"errors"
	"strings"
	"testing"
)

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", ``, "empty document"},
		{"no rules", `name: x`, "no rules"},
		{"unknown key", `rules: [{id: a, type: string, method: redact, colour: red}]`, "colour"},
		{"unknown top key", `{"rules": [{"id": "a", "type": "string", "method": "redact"}], "extra": 1}`, "extra"},
		{"missing id", `rules: [{type: string, method: redact}]`, "missing id"},
		{"duplicate id", `rules: [{id: a, type: string, method: redact}, {id: a, type: date, method: redact}]`, "duplicate id"},
		{"unknown method", `rules: [{id: a, type: string, method: shred}]`, "unknown method"},
		{"missing method", `rules: [{id: a, type: string}]`, "missing method"},
		{"selects nothing", `rules: [{id: a, method: redact}]`, "selects nothing"},
		{"unknown type", `rules: [{id: a, type: Humanname, method: redact}]`, "unknown type"},
		{"unknown path root", `rules: [{id: a, path: Patinet.name, method: redact}]`, "unknown type"},
		{"unknown path element", `rules: [{id: a, path: Patient.nmae, method: redact}]`, "no element"},
		{"substitute without value", `rules: [{id: a, type: string, method: substitute}]`, "needs replaceWith"},
		{"replaceWith on redact", `rules: [{id: a, type: string, method: redact, replaceWith: x}]`, "only applies to substitute"},
		{"perturb without span", `rules: [{id: a, type: decimal, method: perturb}]`, "positive span"},
		{"bad rangeType", `rules: [{id: a, type: decimal, method: perturb, span: 1, rangeType: wide}]`, "rangeType"},
		{"bad roundTo", `rules: [{id: a, type: decimal, method: perturb, span: 1, roundTo: 30}]`, "roundTo"},
		{"generalize without to", `rules: [{id: a, type: date, method: generalize}]`, "generalize needs to"},
		{"to on redact", `rules: [{id: a, type: date, method: redact, to: year}]`, "only applies to generalize"},
		{"bad covers", `rules: [{id: a, type: date, method: redact, covers: [Z]}]`, "covers"},
		{"bad range", `{rules: [{id: a, type: date, method: redact}], parameters: {dateShiftRange: -3}}`, "dateShiftRange"},
		{"bad min", `{rules: [{id: a, type: date, method: redact}], parameters: {dateShiftMin: -1}}`, "dateShiftMin"},
		{"min over range", `{rules: [{id: a, type: date, method: redact}], parameters: {dateShiftRange: 20, dateShiftMin: 21}}`, "must not exceed"},
		{"default min over range", `{rules: [{id: a, type: date, method: redact}], parameters: {dateShiftRange: 10}}`, "must not exceed"},
		{"bad zip", `{rules: [{id: a, type: date, method: redact}], parameters: {restrictedZip3: ["12a"]}}`, "restrictedZip3"},
		{"two documents", "rules: [{id: a, type: date, method: redact}]\n---\nname: b", "more than one document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.in))
			if err == nil {
				t.Fatal("ParseConfig accepted the config")
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want ErrInvalidConfig mentioning %q", err, tt.want)
			}
		})
	}
}

func TestParseConfigJSON(t *testing.T) {
	cfg, err := ParseConfig([]byte(`{"name":"j","rules":[{"id":"a","path":"Observation.value","method":"redact"},{"id":"b","path":"Observation.valueQuantity","method":"keep"},{"id":"c","type":"Extension","url":"http://x","method":"keep"},{"id":"d","path":"DomainResource.text","method":"redact"}],"parameters":{"dateShiftRange":10,"dateShiftMin":3}}`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "j" || len(cfg.Rules) != 4 || cfg.Parameters.DateShiftRange != 10 {
		t.Errorf("decoded %+v", cfg)
	}
	e, err := New(cfg, testKeys())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if d := e.DateShiftDays(string(rune('a' + i%26))); d < -10 || d > 10 || (d > -3 && d < 3) {
			t.Fatalf("offset %d outside the configured range", d)
		}
	}
}

func BenchmarkParseConfig(b *testing.B) {
	data, err := profileFS.ReadFile("profiles/safe-harbor.yaml")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := ParseConfig(data); err != nil {
			b.Fatal(err)
		}
	}
}

func TestCheckPathDoesNotExplode(t *testing.T) {
	p := "Extension" + strings.Repeat(".value.extension", 15)
	if _, err := ParseConfig([]byte(`rules: [{id: a, path: "` + p + `", method: redact}]`)); err != nil {
		t.Fatal(err)
	}
}

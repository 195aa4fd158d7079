package policy

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

func bundleFS(files map[string]string) fstest.MapFS {
	m := fstest.MapFS{}
	for k, v := range files {
		m[k] = &fstest.MapFile{Data: []byte(v)}
	}
	return m
}

// simpleInput asks for marketing use, which no implied consent covers: with
// no consent on file the default bundle denies it.
var simpleInput = Input{Time: at("2024-01-01T00:00:00Z"), Action: "read", Purpose: "HMARKT", Patient: "Patient/p"}

func TestDecideFailsClosed(t *testing.T) {
	tests := []struct {
		name    string
		rego    string
		timeout time.Duration
		reason  string
		wantErr bool
	}{
		{"runtime error", "package fhiranchor.consent\ndecision := {\"allow\": true, \"reasons\": [\"a\"]}\ndecision := {\"allow\": false} if true\n",
			0, "policy evaluation failed", true},
		{"undefined", "package fhiranchor.consent\ndecision := {\"allow\": true, \"reasons\": [\"a\"]} if input.nope\n",
			0, "policy decision undefined", false},
		{"ill-shaped", "package fhiranchor.consent\ndecision := {\"allow\": \"yes\"}\n",
			0, "policy decision ill-shaped", false},
		{"allow without reasons", "package fhiranchor.consent\ndecision := {\"allow\": true}\n",
			0, "policy decision ill-shaped", false},
		{"timeout", "package fhiranchor.consent\nn := count([1 | some i in numbers.range(1, 4000); some j in numbers.range(1, 4000)])\ndecision := {\"allow\": n > 0, \"reasons\": [\"slow\"]}\n",
			5 * time.Millisecond, "policy evaluation timed out", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := New(t.Context(), Config{Bundle: bundleFS(map[string]string{"p.rego": tt.rego}), Revision: "r1", Timeout: tt.timeout})
			if err != nil {
				t.Fatal(err)
			}
			d, err := e.Decide(t.Context(), simpleInput)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.name == "timeout" && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v, want DeadlineExceeded", err)
			}
			if d.Allow || len(d.Reasons) != 1 || d.Reasons[0] != tt.reason || d.PolicyRevision != "r1" {
				t.Errorf("decision = %+v, want deny %q at r1", d, tt.reason)
			}
		})
	}
}

func TestEmbeddedRegoTests(t *testing.T) {
	rs, err := RunTests(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) < 15 {
		t.Fatalf("%d Rego tests ran, want the whole consent_test.rego", len(rs))
	}
	for _, r := range rs {
		if !r.Pass {
			t.Errorf("%s: %s", r.Name, r.Message)
		}
	}
}

func TestRevisionDefaultsToBundleDigest(t *testing.T) {
	a, err := New(t.Context(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Revision()) != 64 {
		t.Errorf("Revision() = %q, want a hex sha256", a.Revision())
	}
	b, err := New(t.Context(), Config{Revision: "v7"})
	if err != nil {
		t.Fatal(err)
	}
	if b.Revision() != "v7" {
		t.Errorf("Revision() = %q, want v7", b.Revision())
	}
}

const allowAll = "package fhiranchor.consent\ndecision := {\"allow\": true, \"reasons\": [\"allow all\"]}\n"

func TestReplace(t *testing.T) {
	ctx := t.Context()
	e, err := New(ctx, Config{})
	if err != nil {
		t.Fatal(err)
	}
	orig := e.Revision()

	t.Run("refuses failing tests and names them", func(t *testing.T) {
		err := e.Replace(ctx, bundleFS(map[string]string{
			"p.rego": allowAll,
			"p_test.rego": "package fhiranchor.consent_test\nimport data.fhiranchor.consent\n" +
				"test_ok if consent.decision.allow\ntest_denies_by_default if not consent.decision.allow\n",
		}), "bad")
		var tf *TestFailureError
		if !errors.As(err, &tf) || !strings.Contains(err.Error(), "test_denies_by_default") || strings.Contains(err.Error(), "test_ok") {
			t.Fatalf("Replace err = %v, want a TestFailureError naming test_denies_by_default only", err)
		}
		if e.Revision() != orig {
			t.Errorf("revision changed to %q after a refused replace", e.Revision())
		}
	})
	t.Run("refuses a bundle that does not compile", func(t *testing.T) {
		err := e.Replace(ctx, bundleFS(map[string]string{"p.rego": "package fhiranchor.consent\ndecision := {\"allow\": undefined_var}\n"}), "bad")
		if err == nil || !strings.Contains(err.Error(), "compile policy") {
			t.Fatalf("Replace err = %v, want a compile error", err)
		}
		if e.Revision() != orig {
			t.Errorf("revision changed after a refused replace")
		}
	})
	t.Run("swaps a passing bundle and rolls back", func(t *testing.T) {
		if err := e.Replace(ctx, bundleFS(map[string]string{
			"p.rego":      allowAll,
			"p_test.rego": "package fhiranchor.consent_test\nimport data.fhiranchor.consent\ntest_allows if consent.decision.allow\n",
		}), ""); err != nil {
			t.Fatal(err)
		}
		if e.Revision() == orig {
			t.Fatal("revision did not change")
		}
		d, err := e.Decide(ctx, simpleInput)
		if err != nil || !d.Allow || d.PolicyRevision != e.Revision() {
			t.Fatalf("decision after replace = %+v, %v", d, err)
		}
		if err := e.Replace(ctx, DefaultBundle(), ""); err != nil {
			t.Fatal(err)
		}
		if e.Revision() != orig {
			t.Errorf("rollback revision = %q, want %q", e.Revision(), orig)
		}
		if d, _ := e.Decide(ctx, simpleInput); d.Allow {
			t.Errorf("rollback did not restore the default deny: %+v", d)
		}
	})
}

func TestWriteNeedsThePatientsOrganization(t *testing.T) {
	ctx := t.Context()
	files, err := ReadFiles(DefaultBundle())
	if err != nil {
		t.Fatal(err)
	}
	files["data.json"] = `{"fhiranchor": {"config": {"default": "deny", "write": {"any_organization": ["migrator"]}}}}`
	withMigrator, err := New(ctx, Config{Bundle: files.FS()})
	if err != nil {
		t.Fatal(err)
	}
	def, err := New(ctx, Config{})
	if err != nil {
		t.Fatal(err)
	}
	const refused = "write: client does not act for the patient's managing organization"
	tests := []struct {
		name        string
		engine      *Engine
		action      string
		client      string
		actorOrg    string
		patientOrg  string
		allow       bool
		wantRefused bool
	}{
		{"managing organization writes", def, "write", "ehr", "Organization/mo", "Organization/mo", true, false},
		{"other organization may not write", def, "write", "ehr", "Organization/other", "Organization/mo", false, true},
		{"client bound to no organization is not constrained", def, "write", "ehr", "", "Organization/mo", true, false},
		{"no managing organization: no constraint", def, "write", "ehr", "Organization/other", "", true, false},
		{"reads are not constrained", def, "read", "ehr", "Organization/other", "Organization/mo", true, false},
		{"listed client writes for any organization", withMigrator, "write", "migrator", "", "Organization/mo", true, false},
		{"unlisted client still refused", withMigrator, "write", "ehr", "Organization/other", "Organization/mo", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Out is an opt-out consent that withholds only from Organization/f001.
			in := Input{
				Time: at("2024-01-01T00:00:00Z"), Action: tt.action, Purpose: "TREAT",
				Actor:   Actor{ClientID: tt.client, Reference: "Practitioner/p1", Organization: tt.actorOrg},
				Patient: "Patient/f001", PatientOrganization: tt.patientOrg,
				Resource: ResourceRef{Type: "Observation", ID: "o1", Reference: "Observation/o1"},
				Consents: []map[string]any{loadConsent(t, "Out")},
			}
			d, err := tt.engine.Decide(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allow != tt.allow || slices.Contains(d.Reasons, refused) != tt.wantRefused {
				t.Errorf("allow = %v, reasons %q; want allow %v, refusal reason %v", d.Allow, d.Reasons, tt.allow, tt.wantRefused)
			}
		})
	}
}

// TestEvalErrorQuotesNoInput: a builtin that fails on an input value (here a
// clinical date) makes a denial whose error names the rule, not the value.
func TestEvalErrorQuotesNoInput(t *testing.T) {
	e, err := New(t.Context(), Config{Bundle: bundleFS(map[string]string{"p.rego": `package fhiranchor.consent

decision := {"allow": true, "reasons": ["x"]} if time.parse_rfc3339_ns(input.resource.date) > 0
`})})
	if err != nil {
		t.Fatal(err)
	}
	in := simpleInput
	in.Resource.Date = "1962-07-04-MARKER"
	d, err := e.Decide(t.Context(), in)
	if err == nil || d.Allow {
		t.Fatalf("decision %+v, err %v; want a failed evaluation", d, err)
	}
	if strings.Contains(err.Error(), "MARKER") || strings.Contains(err.Error(), "1962") {
		t.Errorf("evaluation error quotes the input: %v", err)
	}
	if !strings.Contains(err.Error(), "p.rego:") {
		t.Errorf("evaluation error %q does not name the rule's location", err)
	}
}

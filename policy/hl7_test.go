package policy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/internal/shareddata"
)

func loadConsent(t testing.TB, name string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(shareddata.Dir(t), "hl7-examples", "Consent-consent-example-"+name+".json"))
	if err != nil {
		t.Fatalf("read HL7 example (set FHIRANCHOR_TESTDATA to shared/testdata): %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

var (
	psyLabel = Coding{System: "http://terminology.hl7.org/CodeSystem/v3-ActCode", Code: "PSY"}
	nLabel   = Coding{System: "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", Code: "N"}
	spiLabel = Coding{System: "http://terminology.hl7.org/CodeSystem/v3-ActCode", Code: "SPI"}
	sexLabel = Coding{System: "http://terminology.hl7.org/CodeSystem/v3-ActCode", Code: "SEX"}
)

// hl7Case is one request against one HL7 R4 Consent example, whose expected
// outcome the example's narrative states (quoted above each group of cases).
// Where the example's coding (policyRule, provision types) and its narrative
// disagree, the case follows the reading doc.go documents and says which: the
// examples' Opt-In preface ("consent to" for "withhold"), or a root provision
// naming recipients read as a grant to them.
type hl7Case struct {
	name      string
	example   string // Consent-consent-example-<example>.json
	patient   string
	actor     string
	roles     []string
	action    string // default read
	purpose   string // default TREAT
	when      string // default 2026-01-15T12:00:00Z
	resType   string // default Observation
	resRef    string // default Observation/o1
	date      string
	labels    []Coding
	allow     bool
	glass     bool
	redact    []Coding
	reasonHas string
}

func TestHL7ConsentExamples(t *testing.T) {
	e, err := New(t.Context(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []hl7Case{
		// basic: "Patient wishes to have all of the PHI collected at the Good Health
		// Psychiatric Hospital available for normal treatment use." (OPTIN, period 1964..2016-01-01)
		{name: "basic permits treatment within its period", example: "basic", patient: "Patient/f001",
			actor: "Practitioner/any", when: "2015-06-01T09:00:00Z", allow: true, reasonHas: "permit by provision"},
		{name: "basic denies after its period ends", example: "basic", patient: "Patient/f001",
			actor: "Practitioner/any", when: "2016-01-02T09:00:00Z", reasonHas: "deny by base policy OPTIN"},
		// notTime: "Patient wishes to withhold disclosure of all data from a timeframe to any provider."
		// Encoded OPTIN with an untyped provision.period of January 2015; the examples' preface: "where
		// an express consent model is used (Opt-In), these examples would contain the phrase 'consent
		// to' rather than 'withhold'". So disclosure is consented within the timeframe, to any provider,
		// and not outside it. Data from 2015-01 asked for in 2026 (outside the period) is denied.
		{name: "notTime denies outside its period", example: "notTime", patient: "Patient/f001",
			actor: "Practitioner/any", date: "2015-01-15", reasonHas: "deny by base policy OPTIN"},
		{name: "notTime permits any provider within its period", example: "notTime", patient: "Patient/f001",
			actor: "Practitioner/any", when: "2015-01-20T10:00:00Z", date: "2015-01-15", allow: true,
			reasonHas: "permit by provision"},
		// notThis: "withhold consent to disclose the order and all results associated with that
		// specific order from all other providers". Encoded OPTIN with the untyped provision naming
		// Task/example3; the examples' preface: "where an express consent model is used (Opt-In),
		// these examples would contain the phrase 'consent to' rather than 'withhold'". So data
		// other than the named record is not disclosed; see the report for the named record itself.
		{name: "notThis discloses nothing else", example: "notThis", patient: "Patient/f001",
			actor: "Practitioner/other", resRef: "Observation/o1"},
		// notAuthor: "wishes to have all of the PHI collected at the Good Health Psychiatric
		// Hospital restricted from disclosure to every provider."
		{name: "notAuthor denies other providers", example: "notAuthor", patient: "Patient/f001",
			actor: "Practitioner/other"},
		// notOrg: "would like to withdraw/withhold consent to disclose any instance of his health
		// information to Good Health Clinic." (Organization/f001, a typed deny provision)
		{name: "notOrg denies the named organization", example: "notOrg", patient: "Patient/f001",
			actor: "Organization/f001", reasonHas: "deny by provision"},
		{name: "notOrg denies correction by the named organization", example: "notOrg", patient: "Patient/f001",
			actor: "Organization/f001", action: "write", reasonHas: "deny by provision"},
		// notThem: "she does not want her ex-spouse to have any access to her IIHI." Encoded OPTIN:
		// everyone else is denied; for Practitioner/f204 itself see the report (encoding vs narrative).
		// Its root names Practitioner/f204 as primary information recipient (PRCP), so it is a grant
		// to f204 alone, and access by anyone else is denied by that grant's exclusivity.
		{name: "notThem denies everyone not named", example: "notThem", patient: "Patient/f001",
			actor: "Practitioner/other", reasonHas: "deny: not a recipient named by Consent/consent-example-notThem"},
		// signature: generated narrative: "period : 10/10/2015 --> 10/10/2016 ... Practitioner/13".
		{name: "signature denies after its period", example: "signature", patient: "Patient/72",
			actor: "Practitioner/13", when: "2017-01-01T00:00:00Z"},
		// Its root names Practitioner/13 as primary information recipient: the consent is for
		// Practitioner/13, and others in its period are denied as non-recipients.
		{name: "signature denies other actors in its period", example: "signature", patient: "Patient/72",
			actor: "Practitioner/other", when: "2016-01-01T00:00:00Z",
			reasonHas: "deny: not a recipient named by Consent/consent-example-signature"},
		// smartonfhir: "period : 23/06/2016 5:02:33 PM --> 23/06/2016 5:32:33 PM Provisions ...
		// permit access MedicationRequest" (README: "nested permit of action access to class
		// MedicationRequest, for a 30-minute period").
		{name: "smartonfhir permits MedicationRequest access in its period", example: "smartonfhir",
			patient: "Patient/xcda", actor: "Organization/app", when: "2016-06-23T17:10:00+10:00",
			resType: "MedicationRequest", resRef: "MedicationRequest/m1", allow: true,
			reasonHas: "permit by provision.provision[0]"},
		{name: "smartonfhir denies other types in its period", example: "smartonfhir",
			patient: "Patient/xcda", actor: "Organization/app", when: "2016-06-23T17:10:00+10:00"},
		{name: "smartonfhir denies MedicationRequest after 30 minutes", example: "smartonfhir",
			patient: "Patient/xcda", actor: "Organization/app", when: "2016-06-23T17:32:34+10:00",
			resType: "MedicationRequest", resRef: "MedicationRequest/m1"},
		{name: "smartonfhir denies writing MedicationRequest", example: "smartonfhir",
			patient: "Patient/xcda", actor: "Organization/app", when: "2016-06-23T17:10:00+10:00",
			action: "write", resType: "MedicationRequest", resRef: "MedicationRequest/m1"},
		// Out: "The default policy is one of implied consent for the provision of care ...
		// wishes to have no data at the Good Health Psychiatric Hospital available for normal treatment use."
		{name: "Out denies the named organization", example: "Out", patient: "Patient/f001",
			actor: "Organization/f001", reasonHas: "deny by provision"},
		{name: "Out keeps implied consent for others", example: "Out", patient: "Patient/f001",
			actor: "Organization/other", allow: true, reasonHas: "permit by base policy OPTOUT"},
		// Emergency: "exception 'Deny' ... from good health hospital" (nested deny of
		// Organization/f001 under the ETREAT provision): emergency treatment by others is allowed
		// (break-the-glass, audited); Good Health is denied even for ETREAT.
		{name: "Emergency permits ETREAT by another physician", example: "Emergency", patient: "Patient/f001",
			actor: "Practitioner/er", roles: []string{"physician"}, purpose: "ETREAT", allow: true, glass: true,
			reasonHas: "break-the-glass"},
		{name: "Emergency denies ETREAT by the denied organization", example: "Emergency", patient: "Patient/f001",
			actor: "Organization/f001", roles: []string{"physician"}, purpose: "ETREAT",
			reasonHas: "deny by provision.provision[0]"},
		// grantor: "This is a case where a Patient is giving a limited (read-only) access to an
		// individual. Patient "P. van de Heuvel" wishes to provide XXX with read-only access to the
		// data at Good Health Psychiatric Hospital available for patient requested access use."
		// Encoded OPTOUT with an untyped root naming Organization/f001 as custodian (CST) and
		// Patient/example as primary information recipient (PRCP), action access. Read as a grant
		// (doc.go): Patient/example may read; nobody else gets access under this consent, the
		// custodian included; and the grant is read-only, so a write gets nothing from it.
		{name: "grantor permits the named recipient to read", example: "grantor", patient: "Patient/f001",
			actor: "Patient/example", allow: true, reasonHas: "Consent/consent-example-grantor: permit by provision"},
		{name: "grantor denies another actor reading", example: "grantor", patient: "Patient/f001",
			actor: "Practitioner/other", reasonHas: "deny: not a recipient named by Consent/consent-example-grantor"},
		{name: "grantor denies the custodian, who is not a recipient", example: "grantor", patient: "Patient/f001",
			actor: "Organization/f001", reasonHas: "deny: not a recipient named by Consent/consent-example-grantor"},
		{name: "grantor: no provision grants write", example: "grantor", patient: "Patient/f001",
			actor: "Patient/example", action: "write", allow: true, reasonHas: "permit by base policy OPTOUT"},
		// pkb: "This example demonstrates how to encode this screen shot in a consent resource:
		// Thanks to Patients Know Best for contributing this example". A PKB sharing screen: the
		// patient shares with Good Health Clinic (Organization/f001, PRCP) access to normal (N) data
		// and, in nested provisions, to data labelled N, PSY, SPI and SEX. Read as a grant: f001
		// may read such data, no redaction; other organizations are denied data matching the root
		// (N-labelled); the grant is for access, so research use gets nothing from it.
		{name: "pkb shares N and PSY data with the named organization", example: "pkb", patient: "Patient/example",
			actor: "Organization/f001", labels: []Coding{nLabel, psyLabel}, allow: true,
			reasonHas: "Consent/consent-example-pkb: permit by provision.provision["},
		{name: "pkb shares N, SPI and SEX data with the named organization", example: "pkb", patient: "Patient/example",
			actor: "Organization/f001", labels: []Coding{nLabel, spiLabel, sexLabel}, allow: true,
			reasonHas: "Consent/consent-example-pkb: permit by provision.provision["},
		{name: "pkb denies other organizations N data", example: "pkb", patient: "Patient/example",
			actor: "Organization/other", labels: []Coding{nLabel},
			reasonHas: "deny: not a recipient named by Consent/consent-example-pkb"},
		{name: "pkb denies other organizations N and PSY data", example: "pkb", patient: "Patient/example",
			actor: "Organization/other", labels: []Coding{nLabel, psyLabel},
			reasonHas: "deny: not a recipient named by Consent/consent-example-pkb"},
		{name: "pkb provisions cover access only, not research use", example: "pkb", patient: "Patient/example",
			actor: "Organization/f001", labels: []Coding{nLabel}, action: "research-query", allow: true,
			reasonHas: "permit by base policy OPTOUT"},
	}
	covered := map[string]bool{}
	for _, tt := range tests {
		covered[tt.example] = true
	}
	files, err := filepath.Glob(filepath.Join(shareddata.Dir(t), "hl7-examples", "Consent-consent-example-*.json"))
	if err != nil || len(files) != 12 {
		t.Fatalf("found %d HL7 Consent examples (%v), want 12", len(files), err)
	}
	for _, f := range files {
		if name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "Consent-consent-example-"), ".json"); !covered[name] {
			t.Errorf("no case for HL7 example %s", name)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := e.Decide(t.Context(), tt.input(loadConsent(t, tt.example)))
			if err != nil {
				t.Fatal(err)
			}
			if d.Allow != tt.allow || d.BreakGlass != tt.glass {
				t.Fatalf("allow, breakGlass = %v, %v, want %v, %v; reasons %q", d.Allow, d.BreakGlass, tt.allow, tt.glass, d.Reasons)
			}
			if tt.reasonHas != "" && !slices.ContainsFunc(d.Reasons, func(r string) bool { return strings.Contains(r, tt.reasonHas) }) {
				t.Errorf("reasons %q lack %q", d.Reasons, tt.reasonHas)
			}
			var got []Coding
			for _, o := range d.Obligations {
				if o.Type == "redact" {
					got = append(got, o.SecurityLabels...)
				}
			}
			if !slices.Equal(got, tt.redact) {
				t.Errorf("redact labels = %v, want %v", got, tt.redact)
			}
		})
	}
}

func (c hl7Case) input(consent map[string]any) Input {
	in := Input{
		Time: at("2026-01-15T12:00:00Z"), Action: "read", Purpose: "TREAT",
		Actor:   Actor{ClientID: "client-1", Reference: c.actor, Roles: c.roles},
		Patient: c.patient,
		Resource: ResourceRef{Type: "Observation", ID: "o1", Reference: "Observation/o1",
			SecurityLabels: c.labels, Date: c.date},
		Consents: []map[string]any{consent},
	}
	if c.when != "" {
		in.Time = at(c.when)
	}
	if c.action != "" {
		in.Action = c.action
	}
	if c.purpose != "" {
		in.Purpose = c.purpose
	}
	if c.resType != "" {
		in.Resource.Type = c.resType
	}
	if c.resRef != "" {
		in.Resource.Reference = c.resRef
	}
	return in
}

// TestRevokeFlipsAtOnce shows the engine keeps no consent state: the next
// decision after a Consent turns inactive already sees it.
func TestRevokeFlipsAtOnce(t *testing.T) {
	e, err := New(t.Context(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	c := loadConsent(t, "basic")
	c["meta"] = map[string]any{"versionId": "1"}
	// Marketing: a purpose no implied consent covers, so without an active
	// consent the request is denied.
	in := hl7Case{patient: "Patient/f001", actor: "Practitioner/any", when: "2015-06-01T09:00:00Z", purpose: "HMARKT"}.input(c)
	d, err := e.Decide(t.Context(), in)
	if err != nil || !d.Allow {
		t.Fatalf("active consent: allow = %v, err = %v, reasons %q", d.Allow, err, d.Reasons)
	}
	if want := []ConsentRef{{ID: "consent-example-basic", VersionID: "1"}}; !slices.Equal(d.BasedOn, want) {
		t.Errorf("basedOn = %v, want %v", d.BasedOn, want)
	}
	revised := map[string]any{}
	for k, v := range c {
		revised[k] = v
	}
	revised["status"] = "inactive"
	revised["meta"] = map[string]any{"versionId": "2"}
	in.Consents = []map[string]any{revised}
	d, err = e.Decide(t.Context(), in)
	if err != nil || d.Allow {
		t.Fatalf("inactive consent: allow = %v, err = %v", d.Allow, err)
	}
	if !slices.Contains(d.Reasons, "no active patient-privacy consent: default deny") {
		t.Errorf("reasons = %q", d.Reasons)
	}
}

package policy

import (
	"fmt"
	"io/fs"
	"math/rand/v2"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// embeddedRules is the digest of the embedded policy modules that
// TestConsentFreeKey last checked ConsentFreeKey's claim against. An edit to
// them fails the test until someone reads the argument in consentfree.go
// again, runs the random requests below on the new rules, and pins the new
// digest here.
const embeddedRules = "40400c0c2c670893d5e33782865a2b026cd5f15eb3e08f107e389e88285822cd"

// TestConsentFreeKey holds ConsentFreeKey to the embedded rules' own
// decisions: over random requests without consents, every field drawn
// from a small set (the key's inputs and everything else: the resource's
// type, id, reference, codes, labels and a date that need not parse; the
// patient; the actor's references; the time), any two with the same key
// get the same decision, reasons and obligations included. Some allow and
// some deny, so both kinds of decision are reused.
func TestConsentFreeKey(t *testing.T) {
	if got := defaultRules(); got != embeddedRules {
		t.Fatalf("the embedded policy modules changed (rules digest %s): check ConsentFreeKey's claim against them, then pin the digest", got)
	}
	// The embedded data, and data under which the client matters (it may
	// write for any organization) and the default permits.
	other := fstest.MapFS{"data.json": &fstest.MapFile{Data: []byte(`{"fhiranchor": {"config": {"default": "permit",
		"implied": {"read": ["TREAT"]}, "write": {"any_organization": ["app-2"]}}}}`)}}
	for _, name := range []string{"consent.rego", "consent_test.rego"} {
		src, err := readDefault(name)
		if err != nil {
			t.Fatal(err)
		}
		other[name] = &fstest.MapFile{Data: src}
	}
	for _, bundle := range []fs.FS{nil, other} {
		e, err := New(t.Context(), Config{Bundle: bundle})
		if err != nil {
			t.Fatal(err)
		}
		checkConsentFreeKey(t, e)
	}
}

func checkConsentFreeKey(t *testing.T, e *Engine) {
	rng := rand.New(rand.NewPCG(7, 11))
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	codings := func() []Coding {
		var cs []Coding
		for range rng.IntN(3) {
			cs = append(cs, Coding{System: pick("", "http://loinc.org", "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"), Code: pick("R", "N", "8302-2", "PSY", "")})
		}
		return cs
	}
	type seen struct {
		d  Decision
		in Input
	}
	first := map[string]seen{}
	reused, allowed, denied := 0, 0, 0
	for range 4000 {
		typ, id := pick("Observation", "Consent", ""), pick("o1", "123-45-6789", "")
		in := Input{
			Time:    time.Date(2000+rng.IntN(40), time.Month(1+rng.IntN(12)), 1+rng.IntN(28), rng.IntN(24), 0, 0, rng.IntN(1e9), time.UTC),
			Action:  pick("read", "write", "research-query", "erase"),
			Purpose: pick("TREAT", "ETREAT", "HRESCH", ""),
			Actor: Actor{ClientID: pick("ehr-1", "app-2"), Reference: pick("", "Practitioner/p7", "Patient/f001"),
				Organization: pick("", "Organization/a"), Roles: []string{pick("physician", "researcher")}[:rng.IntN(2)]},
			Patient:             pick("Patient/f001", ""),
			PatientOrganization: pick("", "Organization/a", "Organization/c"),
			Resource: ResourceRef{Type: typ, ID: id, Reference: typ + "/" + id, SecurityLabels: codings(), Codes: codings(),
				Date: pick("", "2015-05-30", "2015-05-30T10:00:00Z", "not a date", "2015-13-45")},
		}
		if rng.IntN(2) == 0 {
			in.Actor.Acting = []string{"Practitioner/p7", "Organization/f001"}
		}
		key, rev, ok := e.ConsentFreeKey(in)
		if !ok || rev != e.Revision() {
			t.Fatalf("ConsentFreeKey = %v for the embedded rules, revision %q (engine's %q)", ok, rev, e.Revision())
		}
		d, err := e.Decide(t.Context(), in)
		if err != nil {
			t.Fatal(err)
		}
		s, dup := first[key]
		if !dup {
			first[key] = seen{d, in}
			if d.Allow {
				allowed++
			} else {
				denied++
			}
			continue
		}
		reused++
		if diff := cmp.Diff(s.d, d); diff != "" {
			t.Fatalf("same key, other decision:\n%+v\n%+v\n(-first +later):\n%s", s.in, in, diff)
		}
	}
	if reused < 2000 || allowed < 10 || denied < 10 {
		t.Fatalf("%d decisions compared with one of the same key, %d keys allowed, %d denied: too few to show anything", reused, allowed, denied)
	}
	t.Logf("%d keys (%d allow, %d deny), %d decisions compared with their key's first", len(first), allowed, denied, reused)
}

// TestConsentFreeKeyOnlyForEmbeddedRules: a request with consents gets no
// key, nor does a bundle whose rules differ from the embedded ones, even
// by a module that changes nothing; other data does not matter.
func TestConsentFreeKeyOnlyForEmbeddedRules(t *testing.T) {
	in := Input{Action: "read", Purpose: "TREAT", Actor: Actor{ClientID: "ehr-1"}}
	e, err := New(t.Context(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	withConsent := in
	withConsent.Consents = []map[string]any{loadConsent(t, "Out")}
	if _, _, ok := e.ConsentFreeKey(withConsent); ok {
		t.Error("a request with a consent got a key")
	}
	cc, err := CompileConsent(loadConsent(t, "Out"))
	if err != nil {
		t.Fatal(err)
	}
	withConsent = in
	withConsent.Compiled = []CompiledConsent{cc}
	if _, _, ok := e.ConsentFreeKey(withConsent); ok {
		t.Error("a request with a compiled consent got a key")
	}

	files := fstest.MapFS{}
	for _, name := range []string{"consent.rego", "consent_test.rego", "data.json"} {
		src, err := readDefault(name)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = &fstest.MapFile{Data: src}
	}
	otherData := fstest.MapFS{}
	for k, v := range files {
		otherData[k] = v
	}
	otherData["data.json"] = &fstest.MapFile{Data: []byte(`{"fhiranchor": {"config": {"default": "permit"}}}`)}
	extra := fstest.MapFS{}
	for k, v := range files {
		extra[k] = v
	}
	extra["extra.rego"] = &fstest.MapFile{Data: []byte("package fhiranchor.extra\n\nunused := true\n")}
	for _, c := range []struct {
		name string
		fsys fstest.MapFS
		want bool
	}{{"the embedded files", files, true}, {"other data", otherData, true}, {"one more module", extra, false}} {
		e, err := New(t.Context(), Config{Bundle: c.fsys})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if _, _, ok := e.ConsentFreeKey(in); ok != c.want {
			t.Errorf("%s: ConsentFreeKey ok = %v, want %v", c.name, ok, c.want)
		}
	}
}

func readDefault(name string) ([]byte, error) {
	src, err := embedded.ReadFile("rego/" + name)
	if err != nil {
		return nil, fmt.Errorf("embedded %s: %w", name, err)
	}
	return src, nil
}

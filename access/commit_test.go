package access_test

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/access"
	"github.com/fhiranchor/fhiranchor/policy"
	"github.com/fhiranchor/fhiranchor/vault"
	"github.com/fhiranchor/fhiranchor/vault/sqlite"
)

// countingEngine is the default policy engine, counting its evaluations.
type countingEngine struct {
	e *policy.Engine
	n atomic.Int64
}

func (c *countingEngine) Decide(ctx context.Context, in policy.Input) (policy.Decision, error) {
	c.n.Add(1)
	return c.e.Decide(ctx, in)
}

// readFixture is a Control on a SQLite vault under the default policy.
type readFixture struct {
	path    string
	store   *sqlite.Store
	vault   *vault.Sealed
	control *access.Control
	engine  *countingEngine
}

func newReadFixture(t *testing.T) *readFixture {
	t.Helper()
	f := &readFixture{path: filepath.Join(t.TempDir(), "vault.db")}
	var err error
	if f.store, err = sqlite.New(t.Context(), sqlite.Config{Path: f.path}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.store.Close() })
	kr, err := vault.NewKeyring(bytes.Repeat([]byte{7}, vault.MasterKeySize))
	if err != nil {
		t.Fatal(err)
	}
	f.vault = vault.NewSealed(f.store, kr)
	e, err := policy.New(t.Context(), policy.Config{Timeout: time.Minute}) // -race on a loaded machine
	if err != nil {
		t.Fatal(err)
	}
	f.engine = &countingEngine{e: e}
	f.control = access.New(access.Config{Vault: f.vault})
	f.control.Activate(f.engine, 1, e.Revision())
	return f
}

// read reads v as c and fails the test on an error.
func (f *readFixture) read(t *testing.T, c access.Caller, v vault.Version) access.Verdict {
	t.Helper()
	out, err := f.control.Read(t.Context(), c, v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// observation is a stored version of an Observation of patient p (the
// Read path takes versions as the vault returns them).
func observation(p, id string, labels ...string) vault.Version {
	sec := []map[string]string{}
	for _, l := range labels {
		sec = append(sec, map[string]string{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": l})
	}
	body, _ := json.Marshal(map[string]any{"resourceType": "Observation", "id": id, "status": "final",
		"meta": map[string]any{"security": sec}, "subject": map[string]string{"reference": "Patient/" + p},
		"code": map[string]any{"coding": []map[string]string{{"system": "http://loinc.org", "code": "8867-4"}}}})
	return vault.Version{Type: "Observation", ID: id, Version: 1, Compartment: "Patient/" + p, Body: body,
		Commitment: []byte("commitment-of-" + id + "-" + p)}
}

var treat = access.Caller{ClientID: "ehr", Actor: "Practitioner/p1", Purpose: "TREAT"}

// TestReadRecordIsDurableOnReturn: concurrent reads share commits, and each
// returns only when its own decision record is in the store, under its own
// resource, once: an allowed read's record may wait in the leaf journal,
// and the store's every read of leaves takes the journal in first.
func TestReadRecordIsDurableOnReturn(t *testing.T) {
	f := newReadFixture(t)
	const readers, reads = 16, 25
	var wg sync.WaitGroup
	for r := range readers {
		wg.Go(func() {
			for i := range reads {
				id := "o" + strconv.Itoa(r) + "-" + strconv.Itoa(i)
				p := "p" + strconv.Itoa(i%3)
				v, err := f.control.Read(t.Context(), treat, observation(p, id))
				if err != nil || v.Effect != access.Allowed || !v.Recorded {
					t.Errorf("read %s: %+v, %v", id, v, err)
					return
				}
				// Straight from the store: the patient's records.
				if n := recordsOf(t, f, "Patient/"+p)[f.ref(id)]; n != 1 {
					t.Errorf("read %s answered with %d records of it stored, want 1", id, n)
				}
			}
		})
	}
	wg.Wait()
	st, err := f.store.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Leaves != readers*reads {
		t.Errorf("%d leaves for %d reads", st.Leaves, readers*reads)
	}
}

// TestReadFailsWhenItsCommitFails: the vault goes away under concurrent
// readers (closed mid-batch). Every read either returned with its record
// durable, found again after reopening the database, or failed; none is
// answered without its record.
func TestReadFailsWhenItsCommitFails(t *testing.T) {
	f := newReadFixture(t)
	var (
		mu       sync.Mutex
		ok       []string
		failures atomic.Int64
		wg       sync.WaitGroup
		started  = make(chan struct{}, 64)
	)
	for r := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				id := "o" + strconv.Itoa(r) + "-" + strconv.Itoa(i)
				_, err := f.control.Read(context.Background(), treat, observation("p", id))
				if err != nil {
					failures.Add(1)
					return
				}
				mu.Lock()
				ok = append(ok, id)
				mu.Unlock()
				select {
				case started <- struct{}{}:
				default:
				}
			}
		})
	}
	for range 32 {
		<-started
	}
	if err := f.store.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if failures.Load() != 16 {
		t.Fatalf("%d readers saw the closed vault fail their read, want all 16", failures.Load())
	}
	reopened, err := sqlite.New(t.Context(), sqlite.Config{Path: f.path})
	if err != nil {
		t.Fatal(err)
	}
	defer reopened.Close()
	f.store = reopened
	stored := recordsOf(t, f, "Patient/p")
	for _, id := range ok {
		if n := stored[f.ref(id)]; n != 1 {
			t.Errorf("read %s was answered, %d records of it are stored, want 1", id, n)
		}
	}
	t.Logf("%d reads answered before the vault closed", len(ok))
}

// recordsOf counts the access-decision records f's store holds about
// patient, by the resource each names (its Ref).
func recordsOf(t *testing.T, f *readFixture, patient string) map[string]int {
	t.Helper()
	ls, err := f.store.FindLeaves(t.Context(), vault.LeafFilter{Subject: access.Ref(f.vault, patient)})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, l := range ls {
		var d access.Decision
		if err := json.Unmarshal(l.Record, &d); err != nil || !d.Allow {
			t.Errorf("leaf %d holds %s", l.Seq, l.Record)
			continue
		}
		out[d.Resource]++
	}
	return out
}

// ref is the Ref a decision record names the first version of Observation
// id by.
func (f *readFixture) ref(id string) string {
	return access.Ref(f.vault, "Observation/"+id+"/_history/1")
}

// TestReadDecisionCache: repeated reads under the same consent state and
// policy reuse one evaluation, yet each read is recorded; a new label, a new
// client, or a policy activation is decided afresh.
func TestReadDecisionCache(t *testing.T) {
	f := newReadFixture(t)
	ctx := t.Context()
	read := func(c access.Caller, v vault.Version) access.Verdict { t.Helper(); return f.read(t, c, v) }
	for range 5 {
		read(treat, observation("p", "o1"))
	}
	if n := f.engine.n.Load(); n != 1 {
		t.Errorf("5 reads of one observation by one client evaluated the policy %d times, want 1", n)
	}
	// A policy may decide on a resource's own codes, not only through
	// consents: a sibling resource is decided afresh.
	read(treat, observation("p", "o2"))
	if n := f.engine.n.Load(); n != 2 {
		t.Errorf("a read of another observation made %d evaluations in all, want 2", n)
	}
	read(treat, observation("p", "o-psy", "PSY"))
	read(access.Caller{ClientID: "other", Actor: "Practitioner/p1", Purpose: "TREAT"}, observation("p", "o1"))
	read(treat, observation("q", "o1"))
	if n := f.engine.n.Load(); n != 5 {
		t.Errorf("a new label, client and patient made %d evaluations in all, want 5", n)
	}
	f.control.Activate(f.engine, 2, f.engine.e.Revision())
	if v := read(treat, observation("p", "o1")); v.Outcome.PolicyVersion != 2 {
		t.Errorf("after an activation the read was decided by policy version %d", v.Outcome.PolicyVersion)
	}
	if n := f.engine.n.Load(); n != 6 {
		t.Errorf("a read after an activation made %d evaluations in all, want 6", n)
	}
	st, err := f.store.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Leaves != 10 {
		t.Errorf("%d records for 10 reads", st.Leaves)
	}
}

// keyedEngine is a countingEngine that also names, as the default engine
// does, the key of a decision without consents.
type keyedEngine struct{ *countingEngine }

func (k keyedEngine) ConsentFreeKey(in policy.Input) (string, string, bool) {
	return k.e.ConsentFreeKey(in)
}

// TestReadDecisionWithoutConsents: under the default rules, reads for
// patients with no consent on file share one evaluation per client and
// purpose, whatever the resource, its labels or the patient; each read is
// still recorded. The moment a patient has a consent, that patient's next
// read is decided on it (here an opt-in with no grant: denied), while
// other patients keep the shared decision.
func TestReadDecisionWithoutConsents(t *testing.T) {
	f := newReadFixture(t)
	ctx := t.Context()
	f.control.Activate(keyedEngine{f.engine}, 1, f.engine.e.Revision())
	read := func(c access.Caller, v vault.Version) access.Verdict { t.Helper(); return f.read(t, c, v) }
	for _, v := range []vault.Version{observation("p", "o1"), observation("p", "o2"), observation("p", "o-psy", "PSY"), observation("q", "o3")} {
		if got := read(treat, v); got.Effect != access.Allowed {
			t.Fatalf("no consent on file, TREAT read of %s/%s: %+v", v.Compartment, v.ID, got)
		}
	}
	if n := f.engine.n.Load(); n != 1 {
		t.Errorf("4 reads of 3 resources of 2 patients without consents made %d evaluations, want 1", n)
	}
	read(access.Caller{ClientID: "other", Actor: "Practitioner/p1", Purpose: "TREAT"}, observation("p", "o1"))
	if got := read(access.Caller{ClientID: "ehr", Actor: "Practitioner/p1", Purpose: "HMARKT"}, observation("p", "o1")); got.Effect != access.Denied {
		t.Errorf("a marketing read without a consent: %+v, want denied", got)
	}
	if n := f.engine.n.Load(); n != 3 {
		t.Errorf("another client and another purpose made %d evaluations in all, want 3", n)
	}

	consent := []byte(`{"resourceType":"Consent","id":"c1","meta":{"versionId":"1"},"status":"active",` +
		`"scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},` +
		`"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],"patient":{"reference":"Patient/p"},` +
		`"policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTIN"}]}}`)
	err := f.vault.Update(ctx, func(tx *vault.SealedTx) error {
		return tx.Put(ctx, vault.Version{Type: "Consent", ID: "c1", Version: 1, Compartment: "Patient/p", Body: consent,
			Salt: make([]byte, 32), Commitment: []byte("commitment-of-c1"), LastUpdated: time.Now(),
			Tokens: [][]byte{access.ConsentToken(f.vault, "Patient/p")}})
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := read(treat, observation("p", "o1")); got.Effect != access.Denied {
		t.Errorf("the first read after an opt-in consent without a grant: %+v, want denied", got)
	}
	if got := read(treat, observation("q", "o3")); got.Effect != access.Allowed {
		t.Errorf("a patient without a consent after another's consent: %+v, want allowed", got)
	}
	if n := f.engine.n.Load(); n != 4 {
		t.Errorf("the consent's patient and the other made %d evaluations in all, want 4 (one new)", n)
	}
	st, err := f.store.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Leaves != 9 { // 8 reads and the consent's version
		t.Errorf("%d leaves for 8 reads and a consent", st.Leaves)
	}
}

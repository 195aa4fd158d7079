package access

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fhiranchor/fhiranchor/policy"
	"github.com/fhiranchor/fhiranchor/vault"
	"golang.org/x/sync/errgroup"
)

// Evaluator decides one policy input; *policy.Engine is one.
type Evaluator interface {
	Decide(ctx context.Context, in policy.Input) (policy.Decision, error)
}

// Active is the policy that decides: the engine and the stored version it
// runs. They change together, as one value (Control.Activate), so a
// decision never records one version's revision with another's number.
type Active struct {
	Engine   Evaluator
	Version  int64
	Revision string // the bundle's digest, as the engine's decisions name it
}

// Config configures a Control.
type Config struct {
	Vault *vault.Sealed
	Log   *slog.Logger
	// Now is the clock of decisions; nil means time.Now.
	Now func() time.Time
	// Metrics, if set, is told of every decision recorded.
	Metrics Metrics
}

// Metrics receives counts of a Control's work for an operator's metrics.
// Its methods MUST return quickly and MUST be safe for concurrent use.
type Metrics interface {
	// Decided is called once per access decision recorded.
	Decided(allow bool)
}

// Control makes and records access decisions. Every read of patient data,
// and every write for a patient, is decided by the active policy over the
// patient's consent state and recorded as an access-decision leaf: who
// (client, the FHIR actor it acts as, its organization and roles), what
// (the resource version, or the patient for a write), why (the purpose of
// use), the outcome, the consent versions and the policy revision and
// version that decided. A read is decided and recorded before any data is
// returned; a write is decided inside its own vault transaction, so the
// write and the decision that allowed it commit together.
type Control struct {
	vault    *vault.Sealed
	log      *slog.Logger
	now      func() time.Time
	consents *consentState
	active   atomic.Pointer[Active]
	metrics  Metrics // nil: none
	// Reads share the commits of their decision records (commit.go),
	// reuse decisions (decisions.go) and the facts of stored versions.
	commits   groupCommit
	decisions decisionCache
	facts     factsCache
}

// New returns a Control with no active policy: Activate one before
// deciding (every decision denies until then).
func New(cfg Config) *Control {
	c := &Control{vault: cfg.Vault, log: cfg.Log, now: cfg.Now, metrics: cfg.Metrics,
		consents: &consentState{vault: cfg.Vault, cache: map[string]policy.CompiledConsent{}}}
	c.commits.arrived, c.commits.maxGather = make(chan struct{}, 1), maxGather
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c
}

// Activate makes e, running stored policy version of revision, the
// deciding policy.
func (c *Control) Activate(e Evaluator, version int64, revision string) {
	c.active.Store(&Active{Engine: e, Version: version, Revision: revision})
}

// Active returns the deciding policy (zero before Activate).
func (c *Control) Active() Active {
	if a := c.active.Load(); a != nil {
		return *a
	}
	return Active{}
}

// ConsentsOf returns the patient's consents as r sees them, compiled. An
// error wrapping policy.ErrInvalidConsent means one cannot be compiled.
func (c *Control) ConsentsOf(ctx context.Context, r Reader, patient string) ([]policy.CompiledConsent, error) {
	return c.consents.of(ctx, r, patient)
}

// Outcome is a decision and the policy version that made it.
type Outcome struct {
	policy.Decision
	PolicyVersion int64
}

// Decide evaluates in over the patient's consents and the actor's stored
// affiliations as r sees them. It fails closed: a consent that cannot be
// compiled, or an engine error, denies with a reason; only an
// infrastructure failure (the vault) returns an error.
func (c *Control) Decide(ctx context.Context, r Reader, in policy.Input) (Outcome, error) {
	return c.decide(ctx, r, in, false, nil)
}

// DecideCommitted is Decide over what the vault has committed: as a read's
// decision, it may come from, and go to, the decision cache (decisions.go).
// A cohort count asks it for every patient it matches; for the patients
// without a consent on file, one policy evaluation then serves them all.
// If free (from WithoutConsent) holds in.Patient, the patient's consents
// are not looked up again: they had none when free was made.
func (c *Control) DecideCommitted(ctx context.Context, in policy.Input, free *ConsentFree) (Outcome, error) {
	return c.decide(ctx, c.committed(free, in.Patient), in, true, nil)
}

// committed is the Reader of committed state for deciding about patient:
// one that knows the patient's consents are none if free says so.
func (c *Control) committed(free *ConsentFree, patient string) Reader {
	if !free.Has(patient) {
		return Committed{c.vault}
	}
	return consentFreeReader{Reader: Committed{c.vault}, token: free.patients[patient]}
}

// ConsentFree is a set of patients who had no Consent on file, as
// committed, when WithoutConsent made it.
type ConsentFree struct {
	patients map[string][]byte // patient -> its consent token
}

// Has reports whether patient is in f.
func (f *ConsentFree) Has(patient string) bool {
	if f == nil {
		return false
	}
	_, ok := f.patients[patient]
	return ok
}

// consentFreeChunk is how many patients' consent tokens one FindAny asks
// about first. Most patients have no Consent on file, and a chunk in which
// none has one settles all of them at once; a chunk in which some have one
// is split in halves and asked again, down to consentFreeLeaf patients,
// who are left to a lookup each (DecideCommitted without them in
// ConsentFree). So each patient with a consent costs a few queries more,
// and a population where every patient has one costs about one query per
// consentFreeLeaf patients more than a lookup each.
const (
	consentFreeChunk = 256
	consentFreeLeaf  = 8
)

// WithoutConsent returns the patients, of patients, that have no Consent
// on file as committed, as far as FindAny over chunks of them can tell
// (consentFreeChunk): a cohort count asks about thousands of patients, in
// a few dozen queries instead of a Find each.
func (c *Control) WithoutConsent(ctx context.Context, patients []string) (*ConsentFree, error) {
	tokens := make([][]byte, len(patients))
	for i, p := range patients {
		tokens[i] = ConsentToken(c.vault, p)
	}
	free := make([]bool, len(patients))
	// The chunks on every core: each query is a few hundred index probes.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	var settle func(lo, hi int) error
	settle = func(lo, hi int) error {
		ids, err := c.vault.Store().FindAny(gctx, "Consent", tokens[lo:hi])
		switch {
		case err != nil:
			return fmt.Errorf("find consents: %w", err)
		case len(ids) == 0:
			for i := lo; i < hi; i++ {
				free[i] = true
			}
			return nil
		case hi-lo <= consentFreeLeaf:
			return nil
		}
		mid := lo + (hi-lo)/2
		if err := settle(lo, mid); err != nil {
			return err
		}
		return settle(mid, hi)
	}
	for lo := 0; lo < len(patients); lo += consentFreeChunk {
		g.Go(func() error {
			if gctx.Err() != nil {
				return gctx.Err()
			}
			return settle(lo, min(lo+consentFreeChunk, len(patients)))
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out := &ConsentFree{patients: make(map[string][]byte, len(patients))}
	for i, p := range patients {
		if free[i] {
			out.patients[p] = tokens[i]
		}
	}
	return out, nil
}

// consentFreeReader is a Reader that finds no Consent for one patient's
// consent token (a patient WithoutConsent found none for), and reads
// everything else, other patients' consents included, as Reader does.
type consentFreeReader struct {
	Reader
	token []byte // ConsentToken of the patient
}

func (r consentFreeReader) Find(ctx context.Context, typ string, token []byte) ([]string, error) {
	if typ == "Consent" && bytes.Equal(token, r.token) {
		return nil, nil
	}
	return r.Reader.Find(ctx, typ, token)
}

// decide is Decide; cached says r reads committed state, so that the
// decision may come from, and go to, the decision cache (decisions.go).
// resource, when not nil, describes in.Resource, which is then left to it:
// it is called only when the decision depends on the resource or is made
// afresh, not when a decision of a patient without consents is reused.
func (c *Control) decide(ctx context.Context, r Reader, in policy.Input, cached bool, resource func() (policy.ResourceRef, error)) (Outcome, error) {
	act := c.active.Load()
	if act == nil {
		return Outcome{Decision: policy.Decision{Reasons: []string{"no active policy: default deny"}}}, nil
	}
	acting, err := actingFor(ctx, r, in.Actor.Reference)
	if err != nil {
		return Outcome{}, err
	}
	in.Actor.Acting = acting
	var keys []string
	if in.Patient != "" {
		consents, ks, err := c.consents.versions(ctx, r, in.Patient)
		if errors.Is(err, policy.ErrInvalidConsent) {
			// No patient reference in the log: a client-chosen id can be an MRN.
			c.log.WarnContext(ctx, "a consent cannot be compiled: access denied", slog.String("client", in.Actor.ClientID))
			return Outcome{Decision: policy.Decision{Reasons: []string{"invalid consent: default deny"}}, PolicyVersion: act.Version}, nil
		}
		if err != nil {
			return Outcome{}, err
		}
		in.Compiled, keys = consents, ks
	}
	described := resource == nil
	describe := func() error {
		if described {
			return nil
		}
		res, err := resource()
		in.Resource, described = res, err == nil
		return err
	}
	var key, revision string
	if cached {
		key, revision = freeKey(in, act)
		if key == "" {
			if err := describe(); err != nil {
				return Outcome{}, err
			}
			key, cached = decisionKey(in, in.Compiled, keys, act)
		}
	}
	if cached {
		if out, ok := c.decisions.get(key, in.Time); ok {
			return out, nil
		}
	}
	if err := describe(); err != nil {
		return Outcome{}, err
	}
	d, err := act.Engine.Decide(ctx, in)
	if err != nil {
		// d already denies and says why; the error is for the operator.
		c.log.ErrorContext(ctx, "policy evaluation failed: access denied", slog.String("err", err.Error()))
		return Outcome{Decision: d, PolicyVersion: act.Version}, nil
	}
	out := Outcome{Decision: d, PolicyVersion: act.Version}
	if cached && (revision == "" || d.PolicyRevision == revision) {
		c.decisions.put(key, out, in.Time)
	}
	return out, nil
}

// actingFor resolves, from stored state, the other references an actor
// acts as: a PractitionerRole signs in for its practitioner and its
// organization, so a consent naming either binds it. The token's
// organization claim needs no lookup (policy.Actor.Organization).
func actingFor(ctx context.Context, r Reader, actor string) ([]string, error) {
	id, ok := strings.CutPrefix(actor, "PractitionerRole/")
	if !ok || id == "" {
		return nil, nil
	}
	role, err := stored(ctx, r, "PractitionerRole", id)
	if err != nil || role == nil {
		return nil, err
	}
	var out []string
	for _, ref := range []string{refOf(role, "practitioner"), refOf(role, "organization")} {
		if ref != "" {
			out = append(out, ref)
		}
	}
	return out, nil
}

// Record queues the record of a decision in tx and returns its leaf index.
// resource is "Type/id/_history/n" for a read, "" for a write.
func (c *Control) Record(ctx context.Context, tx *vault.SealedTx, in policy.Input, o Outcome, resource string) (uint64, error) {
	r, err := decisionEntry(tx, in, o, resource)
	if err != nil {
		return 0, err
	}
	return c.add(ctx, tx, r)
}

// decidedEntry is the record of one decision, made ready (Entry) with what
// adding it reports.
type decidedEntry struct {
	Entry
	client     string
	allow      bool
	breakGlass bool
}

// decisionEntry makes the record of a decision, its references tokenized
// by k (the vault or a transaction of it: the same key).
func decisionEntry(k Tokener, in policy.Input, o Outcome, resource string) (decidedEntry, error) {
	patient := Ref(k, in.Patient)
	rec := Decision{
		Kind: KindAccessDecision, Time: in.Time.Format(time.RFC3339Nano), Client: in.Actor.ClientID,
		Actor: ActorRef(k, in.Actor.Reference), Organization: in.Actor.Organization, Roles: in.Actor.Roles,
		Action: in.Action, Purpose: in.Purpose, Patient: patient, Resource: Ref(k, resource),
		Allow: o.Allow, Reasons: Reasons(k, o.Reasons), Obligations: o.Obligations, BasedOn: Consents(k, o.BasedOn),
		PolicyRevision: o.PolicyRevision, PolicyVersion: o.PolicyVersion, BreakGlass: o.BreakGlass,
	}
	if rec.Reasons == nil {
		rec.Reasons = []string{}
	}
	e, err := NewEntry(KindAccessDecision, "access-decision", patient, in.Actor.ClientID, in.Time, rec)
	return decidedEntry{Entry: e, client: in.Actor.ClientID, allow: o.Allow, breakGlass: o.BreakGlass}, err
}

// add queues a decision's record in tx and reports it.
func (c *Control) add(ctx context.Context, tx *vault.SealedTx, r decidedEntry) (uint64, error) {
	idx, err := r.Add(ctx, tx)
	if err != nil {
		return 0, err
	}
	if c.metrics != nil {
		c.metrics.Decided(r.allow)
	}
	if r.breakGlass {
		// Break-the-glass is allowed but must be seen: the record is
		// anchored like every decision, and the operator is told at once.
		c.log.WarnContext(ctx, "break-the-glass access", slog.String("client", r.client), slog.Uint64("decision", idx))
	}
	return idx, nil
}

// Effect is what a verdict lets the caller do.
type Effect int

// The effects of a verdict.
const (
	Allowed  Effect = iota
	Denied          // the policy denies
	Withheld        // allowed, but a redact obligation covers the version's security labels
)

// Verdict is a decision as the caller acts on it.
type Verdict struct {
	Effect  Effect
	Outcome Outcome
	// Leaf is the index of the decision's record, if it has one yet: a
	// refusal's always does; an allowed read's may be in the vault's leaf
	// journal, indexed when the log takes it in. Recorded says the record
	// is durable.
	Leaf     uint64
	Recorded bool
}

// Read decides one read of a stored version by caller and records the
// decision durably, in a transaction it may share with concurrent reads,
// before anything is returned. Versions outside every patient compartment,
// and tombstones, are governed by scopes alone.
func (c *Control) Read(ctx context.Context, caller Caller, v vault.Version) (Verdict, error) {
	if v.Compartment == "" || v.Deleted {
		return Verdict{Effect: Allowed}, nil
	}
	// A commit under way gathers this read's record (commit.go).
	c.commits.expect()
	queued := false
	defer func() {
		if !queued {
			c.commits.unexpect()
		}
	}()
	// The version's facts (codes, labels, date) come from its body, which
	// a decision reused for a patient without consents does not need.
	var (
		res       policy.ResourceRef
		described bool
	)
	describe := func() (policy.ResourceRef, error) {
		if !described {
			var err error
			if res, err = c.facts.of(v); err != nil {
				return res, err
			}
			described = true
		}
		return res, nil
	}
	in := caller.Input("read", v.Compartment, policy.ResourceRef{}, Now(c.now))
	out, err := c.decide(ctx, Committed{c.vault}, in, true, describe)
	if err != nil {
		return Verdict{}, err
	}
	if !described && !validJSON(v.Body) {
		// What facts.of would have refused: a body that is not JSON is
		// never served.
		return Verdict{}, errors.New("read: the stored body is not JSON")
	}
	verdict := Verdict{Effect: Allowed, Outcome: out, Recorded: true}
	switch {
	case !out.Allow:
		verdict.Effect = Denied
	case redacts(out.Decision):
		res, err := describe()
		if err != nil {
			return Verdict{}, err
		}
		if Withholds(out.Decision, res.SecurityLabels) {
			verdict.Effect = Withheld
		}
	}
	// Made here, on the request's goroutine: the committer only inserts it.
	rec, err := decisionEntry(c.vault, in, out, v.Type+"/"+v.ID+"/_history/"+strconv.FormatInt(v.Version, 10))
	if err != nil {
		return Verdict{}, err
	}
	queued = true
	// A refusal names its record's index; an allowed read's record may go
	// to the leaf journal, which assigns none yet.
	leaves, err := c.record(ctx, []decidedEntry{rec}, true, verdict.Effect != Allowed)
	if err != nil {
		return Verdict{}, err
	}
	if len(leaves) > 0 {
		verdict.Leaf = leaves[0]
	}
	return verdict, nil
}

// Withholds reports whether a redact obligation of d covers any of labels.
// Labels are resource-level (meta.security), so redacting them withholds
// the whole version.
func Withholds(d policy.Decision, labels []policy.Coding) bool {
	for _, o := range d.Obligations {
		if o.Type != "redact" {
			continue
		}
		for _, l := range o.SecurityLabels {
			if slices.Contains(labels, l) {
				return true
			}
		}
	}
	return false
}

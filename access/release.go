package access

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/fhiranchor/fhiranchor/policy"
	"github.com/fhiranchor/fhiranchor/vault"
)

// A Release decides which of the resources one request found (a search, a
// compartment search, $everything, their includes, a type or system
// history) the caller may see. It decides once per patient and resource
// type, as a read of that type of the patient's data, and records each of
// those decisions (Commit) as an access-decision whose resource is the type;
// a denied patient's resources are left out, never answered 403, so that
// nothing in the answer says they exist.
//
// A decision per patient and type is the decision of every resource of that
// type when the patient's consents distinguish resources only by type (by
// provision class). When one of them states a resource-level criterion
// (policy.CompiledConsent.ResourceScoped: code, data, dataPeriod,
// securityLabel), each resource is decided again on its own facts, as a read
// of it would be, and left out when that denies. Either way a resource whose
// security labels a redact obligation covers is withheld, as a read withholds
// it. A Release is for one request and not safe for concurrent use.
type Release struct {
	c       *Control
	caller  Caller
	at      time.Time
	groups  map[groupKey]*group
	pending []*group // decided, not yet recorded
	// asked are the patients LookUp asked about; free, those of them it
	// found without a consent on file.
	asked map[string]bool
	free  *ConsentFree
}

type groupKey struct{ patient, typ string }

type group struct {
	in      policy.Input
	out     Outcome
	scoped  bool               // a consent of the patient is resource-scoped
	perItem map[string]Outcome // resource facts (JSON) -> decision, when scoped
}

// NewRelease starts the release of one request's results to caller. A nil
// Control releases everything (no policy configured).
func (c *Control) NewRelease(caller Caller) *Release {
	r := &Release{c: c, caller: caller, groups: map[groupKey]*group{}}
	if c != nil {
		r.at = Now(c.now)
	}
	return r
}

// Allowed reports whether the caller may see v. tree returns its decoded
// body; it is called only when the decision needs the resource's own
// facts (its security labels under a redact obligation, or a
// resource-scoped consent), so that a caller holding only the stored
// record (type, id, compartment) decrypts nothing the decision does not
// need. A tombstone or a resource outside any patient compartment is
// allowed, as a read of it is.
func (r *Release) Allowed(ctx context.Context, v vault.Version, tree func() (map[string]any, error)) (bool, error) {
	if r.c == nil || v.Deleted || v.Compartment == "" {
		return true, nil
	}
	k := groupKey{v.Compartment, v.Type}
	g, ok := r.groups[k]
	if !ok {
		var err error
		if g, err = r.decide(ctx, k); err != nil {
			return false, err
		}
		r.groups[k] = g
		r.pending = append(r.pending, g)
	}
	if !g.out.Allow {
		return false, nil
	}
	if !g.scoped && !redacts(g.out.Decision) {
		return true, nil
	}
	t, err := tree()
	if err != nil {
		return false, err
	}
	facts := Facts(v.Type, v.ID, t)
	if Withholds(g.out.Decision, facts.SecurityLabels) {
		return false, nil
	}
	if !g.scoped {
		return true, nil
	}
	// The resource's own facts can change the outcome: decide them as a
	// read of this resource would be decided. The facts include the
	// resource's reference (provision.data names resources), so in effect
	// each resource is decided once per request.
	key, err := json.Marshal(struct {
		Codes, Labels []policy.Coding
		Date, Ref     string
	}{facts.Codes, facts.SecurityLabels, facts.Date, facts.Reference})
	if err != nil {
		return false, fmt.Errorf("encode resource facts: %w", err)
	}
	out, ok := g.perItem[string(key)]
	if !ok {
		in := g.in
		in.Resource = facts
		if out, err = r.c.decide(ctx, Committed{r.c.vault}, in, true, nil); err != nil {
			return false, err
		}
		g.perItem[string(key)] = out
	}
	return out.Allow && !Withholds(out.Decision, facts.SecurityLabels), nil
}

// redacts reports whether d has a redact obligation (see Withholds).
func redacts(d policy.Decision) bool {
	return slices.ContainsFunc(d.Obligations, func(o policy.Obligation) bool { return o.Type == "redact" })
}

// decide makes the decision of one patient and type.
func (r *Release) decide(ctx context.Context, k groupKey) (*group, error) {
	in := r.caller.Input("read", k.patient, policy.ResourceRef{Type: k.typ}, r.at)
	// A patient without a consent on file: nothing to look up, nothing
	// scoped.
	rd := r.c.committed(r.free, k.patient)
	out, err := r.c.decide(ctx, rd, in, true, nil)
	if err != nil {
		return nil, err
	}
	g := &group{in: in, out: out}
	if out.Allow {
		consents, err := r.c.ConsentsOf(ctx, rd, k.patient)
		if err != nil {
			// Decide already denied an invalid consent; anything else is
			// the vault's.
			return nil, fmt.Errorf("consents of a search match: %w", err)
		}
		g.scoped = slices.ContainsFunc(consents, func(c policy.CompiledConsent) bool { return c.ResourceScoped })
		g.perItem = map[string]Outcome{}
	}
	return g, nil
}

// LookUp finds in bulk (Control.WithoutConsent) which of patients, not
// asked about before, have no consent on file, so that their decisions
// need no lookup each: a search matching the resources of thousands of
// patients asks a few dozen queries instead of two per patient. Allowed
// decides the others as before.
func (r *Release) LookUp(ctx context.Context, patients []string) error {
	if r.c == nil {
		return nil
	}
	if r.asked == nil {
		r.asked = map[string]bool{}
	}
	var ask []string
	for _, p := range patients {
		if p != "" && !r.asked[p] {
			r.asked[p] = true
			ask = append(ask, p)
		}
	}
	if len(ask) == 0 {
		return nil
	}
	free, err := r.c.WithoutConsent(ctx, ask)
	if err != nil {
		return err
	}
	if r.free == nil {
		r.free = free
	} else {
		maps.Copy(r.free.patients, free.patients)
	}
	return nil
}

// Decided is how many patient-and-type decisions the release made.
func (r *Release) Decided() int { return len(r.groups) }

// Commit records, in one transaction (which it may share with concurrent
// requests), the decisions made since the last Commit. The caller answers
// only after it returns nil.
func (r *Release) Commit(ctx context.Context) error {
	if r.c == nil || len(r.pending) == 0 {
		return nil
	}
	recs := make([]decidedEntry, len(r.pending))
	for i, g := range r.pending {
		rec, err := decisionEntry(r.c.vault, g.in, g.out, g.in.Resource.Type)
		if err != nil {
			return fmt.Errorf("record search decisions: %w", err)
		}
		recs[i] = rec
	}
	if _, err := r.c.record(ctx, recs, false, false); err != nil {
		return fmt.Errorf("record search decisions: %w", err)
	}
	r.pending = r.pending[:0]
	return nil
}

package access

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fhiranchor/fhiranchor/policy"
)

// Decision cache. A read decision is a function of the policy input, the
// patient's consents and the deciding policy. Reads of committed state,
// and the research service's decisions (DecideCommitted: a cohort count
// asks one per patient it matches), reuse a decision made for the same
// key, which holds every input the decision can depend on except the time
// and the resource's own id:
//
//   - who: client, actor, what the actor acts as (resolved from stored
//     state), organization, roles, purpose; the action and the patient;
//   - the patient's consents by id and stored version, so that any write of
//     one of them (created, revised, revoked, deleted, erased) changes the
//     key of the very next read;
//   - the deciding policy by stored version and revision, so that an
//     activation or a rollback changes it;
//   - the resource as the policy sees it: type, id, reference, date, codes
//     and security labels. A policy admin's Rego may read any of them, not
//     only through a consent's provisions, so a decision is reused for the
//     same resource only, never for a sibling with other codes.
//
// The time is left out: a decision under a consent that states a period is
// never cached, and an entry serves for at most decisionMaxAge, which
// bounds how stale a decision of a custom policy that reads the clock can
// be. Each access is still recorded, with its own time and resource.
//
// A patient with no consent on file, decided by the embedded rules, gets a
// far shorter key: the engine's (policy.Engine.ConsentFreeKey), which
// names only what those rules then read (the action, the purpose, the
// client, its organization and roles, the patient's managing
// organization). One evaluation then serves a whole chart, and every
// patient without a consent, for the same client and purpose.

// decisionMaxAge is how long a cached decision serves.
const decisionMaxAge = time.Second

// decisionCacheSize bounds the decisions held in memory.
const decisionCacheSize = 16384

type cachedDecision struct {
	out Outcome
	at  time.Time
}

type decisionCache struct {
	mu sync.Mutex
	m  map[string]cachedDecision
}

func (d *decisionCache) get(key string, now time.Time) (Outcome, bool) {
	d.mu.Lock()
	e, ok := d.m[key]
	d.mu.Unlock()
	if !ok || now.Sub(e.at) >= decisionMaxAge || now.Before(e.at) {
		return Outcome{}, false
	}
	return e.out, true
}

func (d *decisionCache) put(key string, out Outcome, at time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil || len(d.m) >= decisionCacheSize {
		d.m = make(map[string]cachedDecision)
	}
	d.m[key] = cachedDecision{out: out, at: at}
}

// consentFree is an Evaluator that can name, for an input without
// consents, the few inputs its decision depends on (*policy.Engine).
type consentFree interface {
	ConsentFreeKey(in policy.Input) (key, revision string, ok bool)
}

// freeKey is the decision cache key of deciding in (its consents
// compiled) under act when the engine names one for a decision without
// consents, with the policy revision a decision must name to be cached
// under it; key is "" otherwise (then decisionKey decides).
func freeKey(in policy.Input, act *Active) (key, revision string) {
	e, can := act.Engine.(consentFree)
	if !can {
		return "", ""
	}
	k, rev, free := e.ConsentFreeKey(in)
	if !free {
		return "", ""
	}
	return "free|" + strconv.FormatInt(act.Version, 10) + "|" + k, rev
}

// decisionKey is the cache key of deciding in (its Acting resolved) under
// consents, with the consent state keys and the policy act; ok is false
// when the decision must not be cached.
func decisionKey(in policy.Input, consents []policy.CompiledConsent, keys []string, act *Active) (string, bool) {
	if len(in.Consents) > 0 {
		return "", false // raw consents are not keyed by version
	}
	for _, cc := range consents {
		if cc.Timed {
			return "", false
		}
	}
	var b strings.Builder
	b.Grow(512) // a key is a few hundred bytes: grown once, not doubled
	field := func(s string) {
		// Length-prefixed: no value can shift its neighbours.
		b.WriteString(strconv.Itoa(len(s)))
		b.WriteByte(':')
		b.WriteString(s)
	}
	list := func(ss []string) {
		field(strconv.Itoa(len(ss)))
		for _, s := range ss {
			field(s)
		}
	}
	codings := func(cs []policy.Coding) {
		field(strconv.Itoa(len(cs)))
		for _, c := range cs {
			field(c.System)
			field(c.Code)
		}
	}
	field(strconv.FormatInt(act.Version, 10))
	field(act.Revision)
	field(in.Action)
	field(in.Purpose)
	field(in.Actor.ClientID)
	field(in.Actor.Reference)
	field(in.Actor.Organization)
	list(in.Actor.Roles)
	list(in.Actor.Acting)
	field(in.Patient)
	field(in.PatientOrganization)
	list(keys)
	field(in.Resource.Type)
	codings(in.Resource.SecurityLabels)
	field(in.Resource.ID)
	field(in.Resource.Reference)
	field(in.Resource.Date)
	codings(in.Resource.Codes)
	return b.String(), true
}

package gateway

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"google.golang.org/genproto/googleapis/api/httpbody"

	"github.com/fhiranchor/fhiranchor/access"
	"github.com/fhiranchor/fhiranchor/fhir/search"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/policy"
	fhiranchorv1 "github.com/fhiranchor/fhiranchor/proto/fhiranchor/v1"
	"github.com/fhiranchor/fhiranchor/vault"
)

// Page sizes of type and system history (_count).
const (
	defaultHistoryCount = 50
	maxHistoryCount     = 1000
)

// TypeHistory lists the versions of every resource of a type, newest first,
// a page at a time (GET /{type}/_history).
func (s *service) TypeHistory(ctx context.Context, req *fhiranchorv1.TypeHistoryRequest) (*httpbody.HttpBody, error) {
	if err := checkType(req.GetType()); err != nil {
		return nil, err
	}
	if err := authorize(ctx, req.GetType(), auth.Read); err != nil {
		return nil, err
	}
	return s.listHistory(ctx, req.GetType(), req.GetCount(), req.GetSince(), req.GetCursor())
}

// SystemHistory lists the versions of every resource of the types the
// caller may read, newest first, a page at a time (GET /_history).
func (s *service) SystemHistory(ctx context.Context, req *fhiranchorv1.SystemHistoryRequest) (*httpbody.HttpBody, error) {
	p, ok := principalFrom(ctx)
	if !ok {
		return nil, auth.ErrNoToken
	}
	if !p.Scopes.AllowsAny(auth.Read) {
		return nil, failure(http.StatusForbidden, "forbidden", "", "the token's scopes do not allow reading any resource type")
	}
	return s.listHistory(ctx, "", req.GetCount(), req.GetSince(), req.GetCursor())
}

// listHistory answers type (typ set) or system history. A page holds the
// next count versions before the cursor that the caller may read; the next
// link, present when the page read count versions, continues after the last
// version read, allowed or not. A page is therefore shorter by the versions
// it left out, and nothing else in it (no total; the cursor is a position in
// the log, whose leaves are public) tells that they existed.
func (s *service) listHistory(ctx context.Context, typ, countParam, sinceParam, cursorParam string) (*httpbody.HttpBody, error) {
	f := vault.ChangeFilter{Type: typ, Limit: defaultHistoryCount}
	if countParam != "" {
		n, err := strconv.Atoi(countParam)
		if err != nil || n < 1 {
			return nil, failure(http.StatusBadRequest, "invalid", "", "_count must be a positive integer")
		}
		f.Limit = min(n, maxHistoryCount)
	}
	if sinceParam != "" {
		r, err := search.ParseDate(sinceParam)
		if err != nil {
			return nil, failure(http.StatusBadRequest, "invalid", "", "_since must be a FHIR instant or date")
		}
		f.Since = r.Low
	}
	if cursorParam != "" {
		n, err := strconv.ParseInt(cursorParam, 10, 64)
		if err != nil || n < 1 {
			return nil, failure(http.StatusBadRequest, "invalid", "", "_cursor is not one this server handed out")
		}
		f.Before = n
	}
	rs, err := s.vault.Store().Changes(ctx, f)
	if err != nil {
		return nil, err
	}
	versions, err := s.allowChanges(ctx, rs, typ == "")
	if err != nil {
		return nil, err
	}
	path := s.base(ctx) + "/_history"
	if typ != "" {
		path = s.base(ctx) + "/" + typ + "/_history"
	}
	q := url.Values{"_count": {strconv.Itoa(f.Limit)}}
	if sinceParam != "" {
		q.Set("_since", sinceParam)
	}
	if cursorParam != "" {
		q.Set("_cursor", cursorParam)
	}
	page := historyPage{self: path + "?" + q.Encode()}
	if len(rs) == f.Limit {
		q.Set("_cursor", strconv.FormatInt(rs[len(rs)-1].Leaf.Seq, 10))
		page.next = path + "?" + q.Encode()
	}
	body, err := historyBundle(s.base(ctx), versions, page)
	if err != nil {
		return nil, err
	}
	return &httpbody.HttpBody{ContentType: fhirJSON, Data: body}, nil
}

// compartmentVerdict is what one decision said about a patient for this
// request.
type compartmentVerdict struct {
	allow    bool
	decision policy.Decision
}

// allowChanges opens the versions the caller may read, in order, and leaves
// out the rest: erased versions, those of types the caller's scopes do not
// cover (checked per version when byScope, for system history), and those
// of patients whose consent denies the caller. Each entry is a read, decided
// as a read is (readVersion), but once per patient compartment per request:
// the newest version with content in the page decides for its patient (a
// tombstone has no content; without one, the newest version of its resource
// with content decides, and if none can, the tombstone is left out),
// and as in instance history a version whose security labels the decision
// withholds is left out. A denial leaves entries out; it is not a 403.
func (s *service) allowChanges(ctx context.Context, rs []vault.Record, byScope bool) ([]vault.Version, error) {
	p, _ := principalFrom(ctx)
	versions := make([]vault.Version, 0, len(rs))
	for _, r := range rs {
		if r.Erased || (byScope && !p.Scopes.Allows(r.Type, auth.Read)) {
			continue
		}
		v, err := s.vault.Open(ctx, r)
		if err != nil {
			return nil, err
		}
		versions = append(versions, v)
	}
	verdicts := map[string]*compartmentVerdict{}
	// decide decides a read of v, a version with content, for its patient.
	decide := func(v vault.Version) error {
		d, err := readVersion(ctx, s.access, v)
		var fe *fhirError
		switch {
		case errors.As(err, &fe):
			// Denied, or this version withheld: the outcome says which.
		case err != nil:
			return err
		}
		verdicts[v.Compartment] = &compartmentVerdict{allow: s.access == nil || d.Allow, decision: d}
		return nil
	}
	for _, v := range versions {
		if v.Compartment != "" && !v.Deleted && verdicts[v.Compartment] == nil {
			if err := decide(v); err != nil {
				return nil, err
			}
		}
	}
	// decideTombstone decides for the patient of a tombstone with the
	// newest version of its resource that has content, as instance history
	// does; nothing can decide if there is none, or it is erased or in
	// another compartment.
	decideTombstone := func(v vault.Version) (*compartmentVerdict, error) {
		vs, err := s.vault.History(ctx, v.Type, v.ID)
		switch {
		case errors.Is(err, vault.ErrErased), errors.Is(err, vault.ErrNotFound):
			return nil, nil
		case err != nil:
			return nil, err
		}
		for _, prev := range vs {
			if prev.Deleted {
				continue
			}
			if prev.Compartment != v.Compartment {
				return nil, nil
			}
			if err := decide(prev); err != nil {
				return nil, err
			}
			return verdicts[v.Compartment], nil
		}
		return nil, nil
	}
	kept := versions[:0]
	for _, v := range versions {
		if v.Compartment == "" {
			kept = append(kept, v)
			continue
		}
		cv := verdicts[v.Compartment]
		if cv == nil { // only tombstones of this patient in the page so far
			var err error
			if cv, err = decideTombstone(v); err != nil {
				return nil, err
			}
		}
		if cv == nil || !cv.allow {
			continue
		}
		if !v.Deleted {
			res, err := access.ResourceOf(v)
			if err != nil {
				return nil, err
			}
			if access.Withholds(cv.decision, res.SecurityLabels) {
				continue
			}
		}
		kept = append(kept, v)
	}
	return kept, nil
}

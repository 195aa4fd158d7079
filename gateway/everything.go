package gateway

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"google.golang.org/genproto/googleapis/api/httpbody"

	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/fhir/search"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	fhiranchorv1 "github.com/fhiranchor/fhiranchor/proto/fhiranchor/v1"
)

// Everything answers Patient/[id]/$everything: the patient, every resource
// of its compartment (the index's compartment key, the same compartment
// whose data key seals them), and the resources outside any compartment
// that a page's resources refer to (practitioners, organizations,
// locations, medications), as a paged searchset. _type narrows the types,
// _since keeps what changed at or after an instant, _count sizes pages.
// The patient's consent decides, once per resource type, like a search.
func (s *service) Everything(ctx context.Context, req *fhiranchorv1.EverythingRequest) (*httpbody.HttpBody, error) {
	if err := checkTypeID("Patient", req.GetId()); err != nil {
		return nil, err
	}
	if err := authorize(ctx, "Patient", auth.Read); err != nil {
		return nil, err
	}
	params, err := url.ParseQuery(req.GetQuery())
	if err != nil {
		return nil, failure(http.StatusBadRequest, "invalid", "", "the query string is malformed")
	}
	cur := params.Get("_cursor")
	// The rest of the query is parsed as a search of Patient would be, so
	// that _count and _since follow one set of rules.
	opts := url.Values{}
	for k, vs := range params {
		switch k {
		case "_count", "_type":
			opts[k] = vs
		case "_since":
		case "_cursor", "start", "end":
		default:
			if strictHandling(ctx) {
				return nil, failure(http.StatusBadRequest, "not-supported", "", "$everything takes _since, _type and _count only")
			}
		}
	}
	q, err := search.Parse("", opts, true)
	if err != nil {
		return nil, queryError(err)
	}
	var since search.DateRange
	if v := params.Get("_since"); v != "" {
		if since, err = search.ParseDate(v); err != nil {
			return nil, failure(http.StatusBadRequest, "invalid", "", "_since is not a FHIR instant")
		}
	}
	types := q.Types
	explicit := len(types) > 0
	if !explicit {
		types = search.ResourceTypes()
	}
	patient := "Patient/" + req.GetId()
	run := &searchRun{s: s, release: s.access.NewRelease(callerFrom(ctx))}
	p, err := run.load(ctx, "Patient", req.GetId())
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, failure(http.StatusNotFound, "not-found", "", "no such patient")
	}
	ok, err := run.release.Allowed(ctx, p.v, run.treeOf(ctx, p))
	if err != nil {
		return nil, err
	}
	if !ok {
		if err := run.release.Commit(ctx); err != nil {
			return nil, err
		}
		return nil, failure(http.StatusForbidden, "forbidden", "", "access not permitted by consent")
	}
	var hits []*hit
	if !explicit || slices.Contains(types, "Patient") {
		hits = append(hits, p)
	}
	// The compartment's current records, listed by the data key that seals
	// them in one query: the stored record says enough to decide and count
	// a resource; only the page's are decrypted.
	recs, err := s.vault.Compartment(ctx, patient)
	if err != nil {
		return nil, err
	}
	readable := map[string]bool{}
	for _, t := range types {
		if t == "Patient" {
			continue
		}
		if err := authorize(ctx, t, auth.Read); err != nil {
			if explicit {
				return nil, err
			}
			continue // what the token may not read is not part of its everything
		}
		readable[t] = true
	}
	for _, rec := range recs {
		if !readable[rec.Type] || rec.Deleted || rec.Erased || (!since.Low.IsZero() && rec.LastUpdated.Before(since.Low)) {
			continue
		}
		h := recordHit(rec)
		ok, err := run.release.Allowed(ctx, h.v, run.treeOf(ctx, h))
		if err != nil {
			return nil, err
		}
		if ok {
			hits = append(hits, h)
		}
	}
	slices.SortStableFunc(hits, func(a, b *hit) int { return compareHits(nil, a, b) })
	self := url.Values{}
	for k, vs := range params {
		if k != "_cursor" {
			self[k] = vs
		}
	}
	pg, err := run.page(q, hits, cur, self.Encode())
	if err != nil {
		return nil, err
	}
	// A page is up to maxSearchPage versions: decrypted on every core.
	errs := make([]error, len(pg.hits))
	eachParallel(len(pg.hits), func(i int) { errs[i] = run.open(ctx, pg.hits[i]) })
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	included, err := run.referenced(ctx, pg.hits)
	if err != nil {
		return nil, err
	}
	if err := run.release.Commit(ctx); err != nil {
		return nil, err
	}
	out, err := s.searchBundle(ctx, q, patient+"/$everything", self.Encode(), pg, len(hits), included)
	if err != nil {
		return nil, err
	}
	return &httpbody.HttpBody{ContentType: fhirJSON, Data: out}, nil
}

// referenced returns the resources outside any patient compartment that
// the page's resources refer to, each once.
func (r *searchRun) referenced(ctx context.Context, pg []*hit) ([]*hit, error) {
	seen := map[string]bool{}
	for _, h := range pg {
		seen[h.ref()] = true
	}
	var out []*hit
	for _, h := range pg {
		for _, v := range h.values {
			ref := v.Reference
			key := ref.Type + "/" + ref.ID
			if v.Type != search.TypeReference || ref.Type == "" || ref.ID == "" || seen[key] ||
				!fhir.IsResourceType(ref.Type) || strings.HasPrefix(key, "Patient/") || len(out) >= maxIncluded {
				continue
			}
			seen[key] = true
			if authorize(ctx, ref.Type, auth.Read) != nil {
				continue
			}
			t, err := r.load(ctx, ref.Type, ref.ID)
			if err != nil {
				return nil, err
			}
			if t == nil || t.v.Compartment != "" {
				continue // gone, or another patient's: not this patient's everything
			}
			out = append(out, t)
		}
	}
	return out, nil
}

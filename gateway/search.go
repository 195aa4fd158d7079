package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/api/httpbody"

	"github.com/fhiranchor/fhiranchor/access"
	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/fhir/search"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	fhiranchorv1 "github.com/fhiranchor/fhiranchor/proto/fhiranchor/v1"
	"github.com/fhiranchor/fhiranchor/vault"
)

// FHIR search over the sealed vault.
//
// The index is blind: package search turns each version's parameter values
// into keys, and the vault stores only their HMACs (searchToken) beside the
// version, in its transaction (versionTokens). A query's clauses give keys
// too (search.Clause.Keys): the vault returns the ids carrying any key of a
// clause, the clauses' sets are intersected, and every candidate is then
// decrypted and matched exactly (search.Clause.Match), so the index only
// ever has to find a superset. Sorting and paging happen on the matches in
// memory; a page link carries a sealed cursor (the last match's sort
// values), so it stays right while writes happen.
//
// Consent: every match, include and $everything resource passes an
// access.Release, which decides once per patient and type and records those
// decisions before the answer leaves. What it denies is left out before
// the total is counted and pages are cut.

const (
	// defaultSearchPage and maxSearchPage bound _count.
	defaultSearchPage = 50
	maxSearchPage     = 1000
	// maxCandidates bounds what one search decrypts and matches: a query
	// the index cannot narrow below it is refused as too costly rather than
	// left to hold a core for seconds.
	maxCandidates = 50000
	// maxIncluded bounds the resources _include, _revinclude and
	// $everything's references add to one page.
	maxIncluded = 5000
	// includeRounds bounds :iterate.
	includeRounds = 4
	// maxSearchForm bounds a POST _search form body.
	maxSearchForm = 64 << 10
)

// compartmentKey is the index key of the patient compartment a resource
// belongs to; $everything and Patient/[id]/[type] find it by that.
func compartmentKey(patient string) string { return "_compartment|" + patient }

// searchToken is the blind-index token of one search key of a resource of
// type typ: the first 8 bytes of its HMAC. The index only has to find a
// superset (every candidate is matched exactly, an _include or
// _revinclude checked against its reference), and a search key is a row
// every write inserts, each of them in a random place of the postings
// tree: a quarter of the bytes make a smaller tree, fewer page splits and
// fewer pages each commit writes. Two keys sharing a token (about one
// chance in 10^6 for ten million distinct keys) only add candidates.
func searchToken(k access.Tokener, typ, key string) []byte {
	return k.Token("search/v1", typ, key)[:8]
}

// searchTokens are the search-index tokens of a live version: its
// parameters' keys and its compartment's. (A search that no key narrows
// lists the type's resources from the vault: a key every resource of the
// type carried was a posting per write for that alone.) A value package
// search cannot extract is left out of the index (the write was
// validated; a search on that parameter then does not find it) rather
// than failing the write.
func searchTokens(k access.Tokener, typ string, tree map[string]any) [][]byte {
	// Only the parameters with keys of their own: the others' values would
	// be extracted for nothing (search.IndexKeys).
	x := search.Extractor{Indexed: true}
	// _id and _lastUpdated need no keys: the vault finds a resource by id
	// and lists versions by time (candidates). Every key is a row each
	// write inserts, so their values are left out before keys are made
	// (after extraction: a malformed _lastUpdated still fails the resource,
	// which then has no keys). The values themselves are not kept.
	keys, _ := x.IndexKeys(typ, tree, "_id", "_lastUpdated")
	if c := fhir.PatientCompartment(typ, tree); c != "" {
		keys = append(keys, compartmentKey(c))
	}
	tokens := make([][]byte, 0, len(keys))
	for _, key := range keys {
		tokens = append(tokens, searchToken(k, typ, key))
	}
	return tokens
}

// Search is GET [type]?params and POST [type]/_search.
func (s *service) Search(ctx context.Context, req *fhiranchorv1.SearchRequest) (*httpbody.HttpBody, error) {
	if err := checkType(req.GetType()); err != nil {
		return nil, err
	}
	if derivedTypes[req.GetType()] {
		return s.searchDerived(ctx, req.GetType(), req.GetQuery(), req.GetBody())
	}
	return s.searchRequest(ctx, req.GetType(), "", req.GetQuery(), req.GetBody())
}

// SearchSystem is GET [base]?_type=...&params.
func (s *service) SearchSystem(ctx context.Context, req *fhiranchorv1.SearchRequest) (*httpbody.HttpBody, error) {
	return s.searchRequest(ctx, "", "", req.GetQuery(), req.GetBody())
}

// SearchSystemPost is POST [base]/_search.
func (s *service) SearchSystemPost(ctx context.Context, req *fhiranchorv1.SearchRequest) (*httpbody.HttpBody, error) {
	return s.searchRequest(ctx, "", "", req.GetQuery(), req.GetBody())
}

// SearchCompartment is GET Patient/[id]/[type]?params.
func (s *service) SearchCompartment(ctx context.Context, req *fhiranchorv1.CompartmentSearchRequest) (*httpbody.HttpBody, error) {
	if err := checkTypeID("Patient", req.GetId()); err != nil {
		return nil, err
	}
	if err := checkType(req.GetType()); err != nil {
		return nil, err
	}
	if derivedTypes[req.GetType()] {
		return nil, failure(http.StatusBadRequest, "not-supported", "", req.GetType()+" is derived from the anchored log: search it at /"+req.GetType())
	}
	return s.searchRequest(ctx, req.GetType(), "Patient/"+req.GetId(), req.GetQuery(), req.GetBody())
}

// searchRequest parses a REST or gRPC search and answers it.
func (s *service) searchRequest(ctx context.Context, typ, compartment, query string, body *httpbody.HttpBody) (*httpbody.HttpBody, error) {
	params, err := searchParams(query, body)
	if err != nil {
		return nil, err
	}
	out, err := s.runSearch(ctx, typ, compartment, params, strictHandling(ctx))
	if err != nil {
		return nil, err
	}
	return &httpbody.HttpBody{ContentType: fhirJSON, Data: out}, nil
}

// searchParams merges a query string and a form body.
func searchParams(query string, body *httpbody.HttpBody) (url.Values, error) {
	params, err := url.ParseQuery(query)
	if err != nil {
		return nil, failure(http.StatusBadRequest, "invalid", "", "the search has a malformed query string")
	}
	if body == nil || len(body.GetData()) == 0 {
		return params, nil
	}
	if mt, _, err := mime.ParseMediaType(body.GetContentType()); err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, failure(http.StatusUnsupportedMediaType, "not-supported", "", "POST _search takes a form body: Content-Type application/x-www-form-urlencoded")
	}
	if len(body.GetData()) > maxSearchForm {
		return nil, failure(http.StatusRequestEntityTooLarge, "too-long", "", "the search form is larger than "+strconv.Itoa(maxSearchForm)+" bytes")
	}
	form, err := url.ParseQuery(string(body.GetData()))
	if err != nil {
		return nil, failure(http.StatusBadRequest, "invalid", "", "the search has a malformed form body")
	}
	for k, vs := range form {
		params[k] = append(params[k], vs...)
	}
	return params, nil
}

// strictHandling reports Prefer: handling=strict.
func strictHandling(ctx context.Context) bool {
	for _, part := range strings.Split(header(ctx, "prefer"), ";") {
		for _, p := range strings.Split(part, ",") {
			if strings.TrimSpace(p) == "handling=strict" {
				return true
			}
		}
	}
	return false
}

// runSearch answers a search of typ ("" for a system search), within
// compartment when it is set, with a searchset Bundle.
func (s *service) runSearch(ctx context.Context, typ, compartment string, params url.Values, strict bool) ([]byte, error) {
	cursor := params.Get("_cursor")
	params.Del("_cursor")
	q, err := search.Parse(typ, params, strict)
	if err != nil {
		return nil, queryError(err)
	}
	types := []string{typ}
	if typ == "" {
		types = q.Types
	}
	if len(types) == 0 {
		// A system search without _type covers every type the token may
		// search, and no other.
		for _, t := range search.ResourceTypes() {
			if !derivedTypes[t] && authorize(ctx, t, auth.Search) == nil {
				types = append(types, t)
			}
		}
		if len(types) == 0 {
			return nil, authorize(ctx, "Patient", auth.Search)
		}
	}
	for _, t := range types {
		if derivedTypes[t] {
			return nil, failure(http.StatusBadRequest, "not-supported", "", t+" is derived from the anchored log: search it at /"+t)
		}
		if err := authorize(ctx, t, auth.Search); err != nil {
			return nil, err
		}
	}
	for _, inc := range append(slices.Clone(q.Include), q.RevInclude...) {
		for _, t := range []string{inc.SourceType, inc.TargetType} {
			if derivedTypes[t] {
				return nil, failure(http.StatusBadRequest, "not-supported", "", t+" is derived from the anchored log: it cannot be included")
			}
			if t != "" && t != "*" {
				if err := authorize(ctx, t, auth.Search); err != nil {
					return nil, err
				}
			}
		}
	}
	run := &searchRun{s: s, release: s.access.NewRelease(callerFrom(ctx))}
	var hits []*hit
	for _, t := range types {
		h, err := run.matches(ctx, t, slices.Clone(q.Clauses), compartment, true)
		if err != nil {
			return nil, err
		}
		hits = append(hits, h...)
	}
	slices.SortStableFunc(hits, func(a, b *hit) int { return compareHits(q.Sort, a, b) })

	self := selfQuery(params, q)
	pg, err := run.page(q, hits, cursor, self)
	if err != nil {
		return nil, err
	}
	var included []*hit
	if q.Summary != "count" {
		if included, err = run.includes(ctx, q, pg.hits); err != nil {
			return nil, err
		}
	}
	if err := run.release.Commit(ctx); err != nil {
		return nil, err
	}
	path := typ
	if compartment != "" {
		path = compartment + "/" + typ
	}
	return s.searchBundle(ctx, q, path, self, pg, len(hits), included)
}

// queryError turns a parse error into a 400. search.QueryError names a
// known parameter at most, never a value or a name the client made up.
func queryError(err error) error {
	var qe *search.QueryError
	if errors.As(err, &qe) {
		return failure(http.StatusBadRequest, "invalid", "", qe.Error())
	}
	return failure(http.StatusBadRequest, "invalid", "", "the search query is invalid")
}

// hit is one resource a search found. A hit from load is decrypted,
// decoded and extracted; one from loadRecord holds the stored record
// only (type, id, compartment, lastUpdated) until open.
type hit struct {
	rec    vault.Record
	v      vault.Version // Body nil until opened
	tree   map[string]any
	values []search.Value
}

func (h *hit) ref() string { return h.v.Type + "/" + h.v.ID }

// opened says the hit's body is decrypted and decoded.
func (h *hit) opened() bool { return h.tree != nil }

// open decrypts, decodes and extracts a hit loadRecord made.
func (r *searchRun) open(ctx context.Context, h *hit) error {
	if h.opened() {
		return nil
	}
	v, err := r.s.vault.Open(ctx, h.rec)
	if err != nil {
		return err
	}
	tree, err := decodeStored(v.Body)
	if err != nil {
		return err
	}
	h.v, h.tree = v, tree
	h.values, _ = search.Extract(v.Type, tree)
	return nil
}

// treeOf is the lazy body a release may ask for.
func (r *searchRun) treeOf(ctx context.Context, h *hit) func() (map[string]any, error) {
	return func() (map[string]any, error) {
		if err := r.open(ctx, h); err != nil {
			return nil, err
		}
		return h.tree, nil
	}
}

// searchRun is one search request: its release decides every resource the
// answer touches.
type searchRun struct {
	s       *service
	release *access.Release
	// scanned counts the candidates of every search the request ran
	// (types of a system search, chains, _has): maxCandidates bounds it,
	// or limit when it is set (a bulk export, which streams its matches).
	scanned int
	limit   int
}

// matches returns the live resources of typ, within compartment if set,
// that satisfy every clause; with release set, only those the caller may
// see. Chains and _has are resolved first, as searches of their own whose
// matches the caller must be allowed to see too: a _has on a resource the
// consent withholds must not tell that it exists.
func (r *searchRun) matches(ctx context.Context, typ string, clauses []search.Clause, compartment string, release bool) ([]*hit, error) {
	if err := r.resolve(ctx, typ, clauses); err != nil {
		return nil, err
	}
	ids, err := r.candidates(ctx, typ, clauses, compartment)
	if err != nil {
		return nil, err
	}
	var out []*hit
	// A chunk at a time: the candidates that do not match are let go
	// before the next are opened.
	for chunk := range slices.Chunk(ids, loadChunk) {
		hits, err := r.loadAll(ctx, typ, chunk)
		if err != nil {
			return nil, err
		}
		if release {
			// Which of the chunk's patients have no consent on file, in
			// bulk, before each is decided.
			patients := make([]string, len(hits))
			for i, h := range hits {
				patients[i] = h.v.Compartment
			}
			if err := r.release.LookUp(ctx, patients); err != nil {
				return nil, err
			}
		}
		for _, h := range hits {
			if compartment != "" && h.v.Compartment != compartment {
				continue
			}
			if slices.ContainsFunc(clauses, func(c search.Clause) bool { return !c.Match(h.values) }) {
				continue
			}
			if release {
				ok, err := r.release.Allowed(ctx, h.v, r.treeOf(ctx, h))
				if err != nil {
					return nil, err
				}
				if !ok {
					continue
				}
			}
			out = append(out, h)
		}
	}
	return out, nil
}

// loadChunk is how many candidates a search reads and opens at once.
const loadChunk = 256

// loadAll is load of each of ids (ascending), in one read of their
// records, decrypted, decoded and extracted on every core; in the order of
// ids, without those gone, deleted or erased.
func (r *searchRun) loadAll(ctx context.Context, typ string, ids []string) ([]*hit, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	recs, err := r.s.vault.Store().Currents(ctx, typ, ids)
	if err != nil {
		return nil, err
	}
	hits := make([]*hit, 0, len(recs))
	for _, rec := range recs {
		if !rec.Deleted && !rec.Erased {
			hits = append(hits, recordHit(rec))
		}
	}
	errs := make([]error, len(hits))
	eachParallel(len(hits), func(i int) { errs[i] = r.open(ctx, hits[i]) })
	out := hits[:0]
	for i, h := range hits {
		switch {
		case errors.Is(errs[i], vault.ErrErased) || errors.Is(errs[i], vault.ErrNotFound):
			continue // its key is gone: erased since its record was read
		case errs[i] != nil:
			return nil, errs[i]
		}
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b *hit) int { return strings.Compare(a.v.ID, b.v.ID) })
	return out, nil
}

// resolve runs the chains and _has of clauses (of a search of typ) as
// searches of their own, released to the caller, and sets their Targets.
func (r *searchRun) resolve(ctx context.Context, typ string, clauses []search.Clause) error {
	for i := range clauses {
		c := &clauses[i]
		switch {
		case c.Chain != nil:
			inner, err := r.matches(ctx, c.Chain.Type, []search.Clause{c.Chain.Clause}, "", true)
			if err != nil {
				return err
			}
			c.Targets = c.Targets[:0]
			for _, h := range inner {
				c.Targets = append(c.Targets, h.ref())
			}
		case c.Has != nil:
			inner, err := r.matches(ctx, c.Has.Type, []search.Clause{c.Has.Clause}, "", true)
			if err != nil {
				return err
			}
			c.Targets = c.Targets[:0]
			for _, h := range inner {
				for _, v := range h.values {
					if v.Param == c.Has.Ref.Code && v.Type == search.TypeReference && v.Reference.Type == typ && v.Reference.ID != "" {
						c.Targets = append(c.Targets, v.Reference.ID)
					}
				}
			}
		}
	}
	return nil
}

// candidates are the ids of typ the index says may match: the
// intersection of each narrowing clause's ids, else every live resource
// of the type (or of the compartment). The clauses the index answers are
// intersected by the vault in one FindAll, driven by the most selective.
func (r *searchRun) candidates(ctx context.Context, typ string, clauses []search.Clause, compartment string) ([]string, error) {
	var set map[string]bool
	narrow := func(ids []string) {
		next := make(map[string]bool, len(ids))
		for _, id := range ids {
			if set == nil || set[id] {
				next[id] = true
			}
		}
		set = next
	}
	var indexed [][]string // the keys of each clause the index answers
	if compartment != "" {
		indexed = append(indexed, []string{compartmentKey(compartment)})
	}
	var since []search.Clause
	for _, c := range clauses {
		if ids, ok := directIDs(c); ok {
			narrow(ids)
			continue
		}
		if c.Param.Code == "_lastUpdated" && c.Chain == nil && c.Has == nil {
			since = append(since, c)
			continue
		}
		if keys, narrows := c.Keys(); narrows {
			indexed = append(indexed, keys)
		}
	}
	if len(indexed) > 0 && (set == nil || len(set) > 0) {
		ids, err := r.findAll(ctx, typ, indexed)
		if err != nil {
			return nil, err
		}
		narrow(ids)
	}
	for _, c := range since {
		if set != nil && len(set) == 0 {
			break
		}
		if lo, ok := lowerBound(c); ok {
			ids, err := r.changedSince(ctx, typ, lo)
			if err != nil {
				return nil, err
			}
			narrow(ids)
		}
	}
	limit := maxCandidates
	if r.limit > 0 {
		limit = r.limit
	}
	if set == nil {
		// Nothing narrows: every resource of the type is a candidate
		// (load leaves out the deleted ones). One over the limit is
		// enough to refuse the search below.
		ids, err := r.s.vault.Store().IDs(ctx, typ, max(1, limit-r.scanned+1))
		if err != nil {
			return nil, fmt.Errorf("list candidates: %w", err)
		}
		narrow(ids)
	}
	if r.scanned += len(set); r.scanned > limit {
		return nil, failure(http.StatusBadRequest, "too-costly", "", "the search criteria match more than "+strconv.Itoa(maxCandidates)+
			" resources before filtering; add more selective criteria")
	}
	ids := make([]string, 0, len(set))
	for id := range set {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

// directIDs are the ids a clause names outright: _id's values, or a
// _has clause's Targets (its resolved ids).
func directIDs(c search.Clause) ([]string, bool) {
	switch {
	case c.Has != nil:
		return c.Targets, true
	case c.Chain == nil && c.Param.Code == "_id" && c.Modifier == "":
		ids := make([]string, 0, len(c.Values))
		for _, p := range c.Values {
			ids = append(ids, p.Code)
		}
		return ids, true
	}
	return nil, false
}

// lowerBound is the earliest lastUpdated a _lastUpdated clause accepts,
// when each of its values has one.
func lowerBound(c search.Clause) (time.Time, bool) {
	var since time.Time
	for i, p := range c.Values {
		var lo time.Time
		switch p.Prefix {
		case "eq", "ge":
			lo = p.Date.Low
		case "gt", "sa":
			lo = p.Date.High
		default:
			return time.Time{}, false
		}
		if i == 0 || lo.Before(since) {
			since = lo
		}
	}
	return since, len(c.Values) > 0
}

// changedSince returns the ids of typ with a version last updated at or
// after since: a superset of those whose current version was.
func (r *searchRun) changedSince(ctx context.Context, typ string, since time.Time) ([]string, error) {
	seen := map[string]bool{}
	var ids []string
	for before := int64(0); ; {
		page, err := r.s.vault.Store().Changes(ctx, vault.ChangeFilter{Type: typ, Since: since, Before: before, Limit: 5000})
		if err != nil {
			return nil, fmt.Errorf("changes since: %w", err)
		}
		for _, rec := range page {
			if !seen[rec.ID] {
				seen[rec.ID] = true
				ids = append(ids, rec.ID)
			}
			before = rec.Leaf.Seq
		}
		if len(page) < 5000 || len(ids) > maxCandidates {
			return ids, nil
		}
	}
}

// findAll returns the live ids of typ carrying, for each clause, any of
// its keys, ascending.
func (r *searchRun) findAll(ctx context.Context, typ string, clauses [][]string) ([]string, error) {
	tokens := make([][][]byte, len(clauses))
	for i, keys := range clauses {
		tokens[i] = make([][]byte, len(keys))
		for j, key := range keys {
			tokens[i][j] = searchToken(r.s.vault, typ, key)
		}
	}
	ids, err := r.s.vault.FindAll(ctx, typ, tokens)
	if err != nil {
		return nil, fmt.Errorf("search index: %w", err)
	}
	return ids, nil
}

// load reads, decrypts and extracts the current version of typ/id; nil
// when it is gone or deleted.
func (r *searchRun) load(ctx context.Context, typ, id string) (*hit, error) {
	v, err := r.s.vault.Read(ctx, typ, id)
	if errors.Is(err, vault.ErrNotFound) || errors.Is(err, vault.ErrErased) || (err == nil && v.Deleted) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	tree, err := decodeStored(v.Body)
	if err != nil {
		return nil, err
	}
	values, _ := search.Extract(typ, tree)
	return &hit{v: v, tree: tree, values: values}, nil
}

// loadRecord reads the current stored record of typ/id without decrypting
// it; nil when it is gone, deleted or erased.
func (r *searchRun) loadRecord(ctx context.Context, typ, id string) (*hit, error) {
	rec, err := r.s.vault.Store().Current(ctx, typ, id)
	if errors.Is(err, vault.ErrNotFound) || (err == nil && (rec.Deleted || rec.Erased)) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return recordHit(rec), nil
}

// recordHit is a match known by its stored record, not yet decrypted.
func recordHit(rec vault.Record) *hit {
	return &hit{rec: rec, v: vault.Version{Type: rec.Type, ID: rec.ID, Version: rec.Version, LastUpdated: rec.LastUpdated,
		Compartment: rec.Compartment()}}
}

// decodeStored decodes a stored body (canonical JSON the gateway wrote),
// keeping numbers as written: in one pass by fhir.DecodeCanonical, several
// times cheaper than encoding/json, and by encoding/json for a body not in
// canonical form (written by an older canonicalization).
func decodeStored(body []byte) (map[string]any, error) {
	if v, err := fhir.DecodeCanonical(body); err == nil {
		if tree, ok := v.(map[string]any); ok {
			return tree, nil
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var tree map[string]any
	if err := dec.Decode(&tree); err != nil {
		return nil, fmt.Errorf("decode stored version: %w", err)
	}
	return tree, nil
}

// compareHits orders matches by the query's sort, then by type and id, so
// that the order is total and a cursor can say where a page ended.
func compareHits(sorts []search.Sort, a, b *hit) int {
	if c := search.Compare(sorts, a.values, b.values); c != 0 {
		return c
	}
	if c := strings.Compare(a.v.Type, b.v.Type); c != 0 {
		return c
	}
	return strings.Compare(a.v.ID, b.v.ID)
}

package gateway

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/fhir/search"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/vault"
)

// Paging: a page link repeats the query and adds _cursor, the sealed sort
// values and type/id of the match the page starts after (next) or ends
// before (previous). Each page runs the search again and cuts at that
// point, so a link stays right while resources are written: a match
// written since appears in its place, none is shown twice or skipped
// because another appeared or went. The cursor is sealed (AES-GCM under a
// key derived from the master key, bound to the query) because sort values
// can be PHI (a name) and a URL ends up in logs.

// page is one page of matches and the cursors of its neighbours.
type page struct {
	hits       []*hit
	next, prev string // sealed cursors, "" when there is no such page
}

// cursor says where a page starts or ends.
type cursor struct {
	Before bool           `json:"b,omitempty"` // a previous-page cursor: the page ends before this match
	Type   string         `json:"t"`
	ID     string         `json:"i"`
	Values []search.Value `json:"v,omitempty"` // the match's values of the sort parameters
}

// page cuts the page the cursor (if any) names out of hits, which are
// sorted by compareHits.
func (r *searchRun) page(q *search.Query, hits []*hit, sealed, self string) (page, error) {
	count := q.Count
	if count < 0 {
		count = defaultSearchPage
	}
	count = min(count, maxSearchPage)
	if q.Summary == "count" {
		count = 0
	}
	start, stop := 0, len(hits)
	if sealed != "" {
		c, err := r.openCursor(sealed, self)
		if err != nil {
			return page{}, failure(http.StatusBadRequest, "invalid", "", "the page link is invalid or belongs to another search")
		}
		b := &hit{v: vault.Version{Type: c.Type, ID: c.ID}, values: c.Values}
		at, _ := slices.BinarySearchFunc(hits, b, func(h, b *hit) int { return compareHits(q.Sort, h, b) })
		// at is the first match not before the boundary.
		if c.Before {
			// The page ends before the boundary even when fewer than
			// count matches are left before it (some went since): filling
			// it up from after the boundary would show again what the
			// page the link came from showed. When none is left, the
			// answer is the first page.
			start = max(0, at-count)
			if at > 0 {
				stop = at
			}
		} else {
			start = at
			if at < len(hits) && compareHits(q.Sort, hits[at], b) == 0 {
				start++
			}
		}
	}
	end := min(start+count, stop)
	pg := page{hits: hits[start:end]}
	if count == 0 {
		return pg, nil
	}
	var err error
	if end < len(hits) {
		if pg.next, err = r.sealCursor(q, hits[end-1], false, self); err != nil {
			return page{}, err
		}
	}
	if start > 0 {
		if pg.prev, err = r.sealCursor(q, hits[start], true, self); err != nil {
			return page{}, err
		}
	}
	return pg, nil
}

// cursorAEAD is the cursor key: derived from the master key, so cursors
// outlive a restart and are worthless to anyone without it.
func (r *searchRun) cursorAEAD() (cipher.AEAD, error) {
	block, err := aes.NewCipher(r.s.vault.Token("search-cursor/v1"))
	if err != nil {
		return nil, fmt.Errorf("cursor key: %w", err)
	}
	return cipher.NewGCM(block)
}

func cursorAD(self string) []byte {
	ad := sha256.Sum256([]byte("fhiranchor search cursor\x00" + self))
	return ad[:]
}

func (r *searchRun) sealCursor(q *search.Query, h *hit, before bool, self string) (string, error) {
	c := cursor{Before: before, Type: h.v.Type, ID: h.v.ID}
	for _, v := range h.values {
		if slices.ContainsFunc(q.Sort, func(s search.Sort) bool { return s.Param.Code == v.Param }) {
			c.Values = append(c.Values, v)
		}
	}
	plain, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("encode cursor: %w", err)
	}
	aead, err := r.cursorAEAD()
	if err != nil {
		return "", err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("cursor nonce: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(aead.Seal(nonce, nonce, plain, cursorAD(self))), nil
}

func (r *searchRun) openCursor(sealed, self string) (cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(sealed)
	if err != nil {
		return cursor{}, err
	}
	aead, err := r.cursorAEAD()
	if err != nil {
		return cursor{}, err
	}
	if len(raw) < aead.NonceSize() {
		return cursor{}, fmt.Errorf("short cursor")
	}
	plain, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], cursorAD(self))
	if err != nil {
		return cursor{}, err
	}
	var c cursor
	if err := json.Unmarshal(plain, &c); err != nil {
		return cursor{}, err
	}
	return c, nil
}

// selfQuery is the query as the server understood it: without what
// lenient handling ignored, and without the cursor.
func selfQuery(params url.Values, q *search.Query) string {
	used := url.Values{}
	for k, vs := range params {
		if k == "_cursor" || slices.Contains(q.Ignored, k) {
			continue
		}
		used[k] = vs
	}
	return used.Encode()
}

// includes returns what _include and _revinclude add to a page: each
// resource once, each one the caller may see (decided like the matches),
// of types its scopes let it read.
func (r *searchRun) includes(ctx context.Context, q *search.Query, pg []*hit) ([]*hit, error) {
	if len(q.Include) == 0 && len(q.RevInclude) == 0 {
		return nil, nil
	}
	seen := map[string]bool{}
	for _, h := range pg {
		seen[h.ref()] = true
	}
	var out []*hit
	add := func(h *hit) (bool, error) {
		if h == nil || seen[h.ref()] || len(out) >= maxIncluded {
			return false, nil
		}
		seen[h.ref()] = true
		if authorize(ctx, h.v.Type, auth.Read) != nil {
			return false, nil
		}
		ok, err := r.release.Allowed(ctx, h.v, r.treeOf(ctx, h))
		if err != nil || !ok {
			return false, err
		}
		out = append(out, h)
		return true, nil
	}
	frontier := pg
	for round := 0; round < includeRounds && len(frontier) > 0; round++ {
		var next []*hit
		for _, inc := range q.Include {
			if round > 0 && !inc.Iterate {
				continue
			}
			for _, h := range frontier {
				if inc.SourceType != "*" && inc.SourceType != h.v.Type {
					continue
				}
				for _, v := range h.values {
					ref := v.Reference
					if v.Type != search.TypeReference || ref.Type == "" || ref.ID == "" ||
						(inc.Param != "*" && v.Param != inc.Param) || (inc.TargetType != "" && ref.Type != inc.TargetType) ||
						seen[ref.Type+"/"+ref.ID] || !fhir.IsResourceType(ref.Type) {
						continue
					}
					t, err := r.load(ctx, ref.Type, ref.ID)
					if err != nil {
						return nil, err
					}
					if ok, err := add(t); err != nil {
						return nil, err
					} else if ok {
						next = append(next, t)
					}
				}
			}
		}
		for _, inc := range q.RevInclude {
			if round > 0 && !inc.Iterate {
				continue
			}
			for _, h := range frontier {
				ids, err := r.findAll(ctx, inc.SourceType, [][]string{search.ReferenceKeys(inc.SourceType, inc.Param, h.ref())})
				if err != nil {
					return nil, err
				}
				slices.Sort(ids)
				for _, id := range ids {
					if seen[inc.SourceType+"/"+id] {
						continue
					}
					t, err := r.load(ctx, inc.SourceType, id)
					if err != nil {
						return nil, err
					}
					if t == nil || !refersTo(t, inc.Param, h) {
						continue
					}
					if ok, err := add(t); err != nil {
						return nil, err
					} else if ok {
						next = append(next, t)
					}
				}
			}
		}
		frontier = next
	}
	return out, nil
}

// refersTo reports whether h's parameter param points to target.
func refersTo(h *hit, param string, target *hit) bool {
	return slices.ContainsFunc(h.values, func(v search.Value) bool {
		return v.Param == param && v.Type == search.TypeReference && v.Reference.Type == target.v.Type && v.Reference.ID == target.v.ID
	})
}

// searchEntry is one entry of a searchset Bundle.
type searchEntry struct {
	FullURL  string          `json:"fullUrl,omitempty"`
	Resource json.RawMessage `json:"resource"`
	Search   entrySearch     `json:"search"`
}

type entrySearch struct {
	Mode string `json:"mode"`
}

type bundleLink struct {
	Relation string `json:"relation"`
	URL      string `json:"url"`
}

// searchBundle renders a searchset Bundle.
func (s *service) searchBundle(ctx context.Context, q *search.Query, path, self string, pg page, total int, included []*hit) ([]byte, error) {
	base := s.base(ctx)
	link := func(rel, cur string) bundleLink {
		u := base
		if path != "" {
			u += "/" + path
		}
		query := self
		if cur != "" {
			if query != "" {
				query += "&"
			}
			query += "_cursor=" + cur
		}
		if query != "" {
			u += "?" + query
		}
		return bundleLink{Relation: rel, URL: u}
	}
	links := []bundleLink{link("self", "")}
	if pg.next != "" {
		links = append(links, link("next", pg.next))
	}
	if pg.prev != "" {
		links = append(links, link("previous", pg.prev))
	}
	entries := make([]searchEntry, 0, len(pg.hits)+len(included)+1)
	for _, h := range pg.hits {
		body, err := shape(q, h, true)
		if err != nil {
			return nil, err
		}
		entries = append(entries, searchEntry{FullURL: base + "/" + h.ref(), Resource: body, Search: entrySearch{Mode: "match"}})
	}
	for _, h := range included {
		body, err := shape(q, h, false)
		if err != nil {
			return nil, err
		}
		entries = append(entries, searchEntry{FullURL: base + "/" + h.ref(), Resource: body, Search: entrySearch{Mode: "include"}})
	}
	if n := len(q.Ignored); n > 0 {
		entries = append(entries, searchEntry{Resource: outcomeJSON(issue{Severity: "warning", Code: "not-supported",
			Diagnostics: strconv.Itoa(n) + " search parameter(s) were not understood and were ignored (Prefer: handling=strict refuses them)"}),
			Search: entrySearch{Mode: "outcome"}})
	}
	b := struct {
		ResourceType string         `json:"resourceType"`
		ID           string         `json:"id"`
		Meta         map[string]any `json:"meta"`
		Type         string         `json:"type"`
		Total        *int           `json:"total,omitempty"`
		Link         []bundleLink   `json:"link"`
		Entry        []searchEntry  `json:"entry,omitempty"`
	}{ResourceType: "Bundle", ID: uuid.NewString(), Type: "searchset",
		Meta: map[string]any{"lastUpdated": time.Now().UTC().Format(fhir.InstantLayout)}, Link: links, Entry: entries}
	if q.Total != "none" {
		b.Total = &total
	}
	out, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("render searchset: %w", err)
	}
	return out, nil
}

// subsetted is the tag a resource carries when _summary or _elements left
// elements out.
var subsetted = map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}

// shape applies _summary (to every entry) and _elements (to matches).
func shape(q *search.Query, h *hit, match bool) (json.RawMessage, error) {
	var keep func(string) bool
	switch {
	case q.Summary == "true":
		sum := search.SummaryElements(h.v.Type)
		keep = func(k string) bool { return slices.Contains(sum, k) }
	case q.Summary == "text":
		keep = func(k string) bool { return k == "text" }
	case q.Summary == "data":
		keep = func(k string) bool { return k != "text" }
	case match && len(q.Elements) > 0:
		keep = func(k string) bool { return slices.Contains(q.Elements, k) }
	default:
		return h.v.Body, nil
	}
	out := map[string]any{}
	dropped := false
	for k, v := range h.tree {
		switch {
		case k == "resourceType" || k == "id" || k == "meta" || keep(k):
			out[k] = v
		default:
			dropped = true
		}
	}
	if dropped {
		meta, _ := out["meta"].(map[string]any)
		m := map[string]any{}
		for k, v := range meta {
			m[k] = v
		}
		tags, _ := m["tag"].([]any)
		m["tag"] = append(slices.Clone(tags), subsetted)
		out["meta"] = m
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("render subsetted resource: %w", err)
	}
	return b, nil
}

package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/api/httpbody"

	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/vault"
)

// Transaction processes a transaction or batch Bundle (POST /).
func (s *service) Transaction(ctx context.Context, body *httpbody.HttpBody) (*httpbody.HttpBody, error) {
	// A retry is answered before the Bundle is even scanned (see replayFirst).
	key := idempotencyKey(ctx, "bundle")
	digest := s.requestDigest(key, body.GetData())
	if rp, err := s.replayFirst(ctx, key, digest); err != nil || rp != nil {
		if err != nil {
			return nil, err
		}
		setResponse(ctx, http.StatusOK)
		return &httpbody.HttpBody{ContentType: fhirJSON, Data: rp.Bundle}, nil
	}
	if s.maxBundleEntries > 0 && entriesOver(body.GetData(), s.maxBundleEntries) {
		return nil, failure(http.StatusRequestEntityTooLarge, "too-costly", "Bundle.entry",
			"the Bundle has more than "+strconv.Itoa(s.maxBundleEntries)+" entries; split it")
	}
	b, err := s.parser.ParseBundle(body.GetData())
	if err != nil {
		return nil, err
	}
	atomic := b.Type == "transaction"
	ops := make([]*op, len(b.Entries))
	hasReads := false
	needs := map[string]bool{}
	for i, e := range b.Entries {
		o := opFromEntry(e)
		if o.err == nil {
			if err := authorize(ctx, o.typ, o.access()); err != nil {
				fe := asFHIRError(ctx, err)
				fe.issues[0].Expression = []string{o.path("")}
				o.err = fe
			} else {
				needs[need(o.typ, o.access())] = true
			}
		}
		if atomic && o.err != nil {
			return nil, o.err
		}
		hasReads = hasReads || o.method == "GET"
		ops[i] = o
	}

	if hasReads {
		key = nil // reads answer with the state of the moment; never replay them
	}
	s.writer.precompute(ops, atomic)
	var out []byte
	var refused *fhirError
	err = s.vault.Update(ctx, func(tx *vault.SealedTx) error {
		out, refused = nil, nil
		rp, err := lookupReplay(ctx, tx, key, digest)
		if err != nil || rp != nil {
			if rp != nil {
				out = rp.Bundle
			}
			return err
		}
		if refused, err = s.writer.apply(ctx, tx, ops, atomic); err != nil || refused != nil {
			return err // a refusal commits its decisions alone
		}
		if h := transactionHook.Load(); h != nil {
			(*h)(ctx)
		}
		if key == nil {
			return nil
		}
		if out, err = s.bundleResponse(ctx, b.Type, ops); err != nil {
			return err
		}
		r := replayOf(nil, out)
		r.Request, r.Needs = digest, slices.Sorted(maps.Keys(needs))
		return rememberReplay(ctx, tx, key, r)
	})
	if err != nil {
		return nil, err
	}
	if refused != nil {
		return nil, refused
	}
	if out == nil {
		for _, o := range ops {
			if o.err == nil && o.method == "GET" {
				s.read(ctx, o)
			}
		}
		if out, err = s.bundleResponse(ctx, b.Type, ops); err != nil {
			return nil, err
		}
	}
	setResponse(ctx, http.StatusOK)
	return &httpbody.HttpBody{ContentType: fhirJSON, Data: out}, nil
}

// transactionHook, when set by a test, runs inside the vault transaction
// of a Bundle after its entries are written and before the commit.
var transactionHook atomic.Pointer[func(context.Context)]

// entriesOver reports whether the top-level "entry" array of the JSON
// object data has more than limit elements. It stops at element limit+1,
// so a huge Bundle is refused after a scan of the first limit entries,
// before anything is decoded into memory; input that is not such an object
// is left to the parser to refuse. It scans bytes without decoding or
// validating them (a tenth of the cost of a JSON decoder's pass, which this
// was): on valid JSON its count is exact, and invalid JSON is refused by
// the parser whatever the count.
func entriesOver(data []byte, limit int) bool {
	s := jsonScan{data: data}
	if s.ws(); !s.eat('{') {
		return false
	}
	// Entries are counted across every "entry" key: a Bundle that repeats
	// the key must not slip a large second array past the count (a JSON
	// decoder may keep either one).
	n := 0
	for s.ws(); !s.eat('}'); s.ws() {
		key, ok := s.key()
		if !ok {
			return false
		}
		if s.ws(); !s.eat(':') {
			return false
		}
		if s.ws(); key != "entry" || !s.eat('[') {
			if !s.skip() {
				return false
			}
		} else {
			for s.ws(); !s.eat(']'); s.ws() {
				if n++; n > limit {
					return true
				}
				if !s.skip() {
					return false
				}
				if s.ws(); !s.eat(',') && s.peek() != ']' {
					return false
				}
			}
		}
		if s.ws(); !s.eat(',') && s.peek() != '}' {
			return false
		}
	}
	return false
}

// jsonScan walks JSON text without decoding it.
type jsonScan struct {
	data []byte
	i    int
}

func (s *jsonScan) ws() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

// peek is the next byte, or 0 at the end.
func (s *jsonScan) peek() byte {
	if s.i < len(s.data) {
		return s.data[s.i]
	}
	return 0
}

func (s *jsonScan) eat(c byte) bool {
	if s.peek() == c {
		s.i++
		return true
	}
	return false
}

// str skips a string whose opening quote is at s.i and returns its
// contents as they stand (escapes included).
func (s *jsonScan) str() ([]byte, bool) {
	start := s.i + 1
	for j := start; ; {
		q := bytes.IndexByte(s.data[j:], '"')
		if q < 0 {
			return nil, false
		}
		j += q
		// The quote is escaped if an odd number of backslashes precede it.
		bs := 0
		for k := j - 1; k >= start && s.data[k] == '\\'; k-- {
			bs++
		}
		if bs%2 == 0 {
			s.i = j + 1
			return s.data[start:j], true
		}
		j++
	}
}

// key reads an object key, unescaped as a decoder would (so that
// "entr\u0079" is "entry" too).
func (s *jsonScan) key() (string, bool) {
	if s.peek() != '"' {
		return "", false
	}
	start := s.i
	raw, ok := s.str()
	if !ok {
		return "", false
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw), true
	}
	var k string
	if err := json.Unmarshal(s.data[start:s.i], &k); err != nil {
		return "", false
	}
	return k, true
}

// skip passes over one value: a string, a whole object or array (nesting
// followed by brackets, strings skipped), or a scalar up to the next
// delimiter.
func (s *jsonScan) skip() bool {
	depth := 0
	for s.i < len(s.data) {
		switch c := s.data[s.i]; c {
		case '"':
			if _, ok := s.str(); !ok {
				return false
			}
		case '{', '[':
			depth++
			s.i++
		case '}', ']':
			if depth == 0 {
				return true // the end of the enclosing container
			}
			depth--
			s.i++
		case ',':
			if depth == 0 {
				return true
			}
			s.i++
		default:
			s.i++
		}
		if depth == 0 && s.i > 0 && (s.data[s.i-1] == '"' || s.data[s.i-1] == '}' || s.data[s.i-1] == ']') {
			return true
		}
	}
	return depth == 0
}

// read runs a GET entry after the commit; failures stay in the op.
func (s *service) read(ctx context.Context, o *op) {
	var v vault.Version
	var err error
	switch {
	case o.search != nil:
		o.read, err = s.search(ctx, o)
		if err == nil {
			o.status = http.StatusOK
		}
	case o.hist:
		var vs []vault.Version
		if vs, err = s.vault.History(ctx, o.typ, o.id); err == nil && len(vs) == 0 {
			err = vault.ErrNotFound
		}
		if err == nil {
			vs, err = s.allowHistory(ctx, vs)
		}
		if err == nil {
			o.read, err = historyBundle(s.base(ctx), vs)
			o.status = http.StatusOK
		}
	case o.vid > 0:
		v, err = s.vault.VRead(ctx, o.typ, o.id, o.vid)
	default:
		v, err = s.vault.Read(ctx, o.typ, o.id)
	}
	if o.search == nil && !o.hist && err == nil {
		_, err = s.allowRead(ctx, v)
	}
	if o.search == nil && !o.hist && err == nil {
		o.version, o.lastUpdated = v.Version, v.LastUpdated
		if v.Deleted {
			err = failure(http.StatusGone, "deleted", o.path(""), "the resource was deleted")
		} else {
			o.read, o.status = v.Body, http.StatusOK
		}
	}
	if err != nil {
		fe := asFHIRError(ctx, err)
		if len(fe.issues[0].Expression) == 0 {
			fe.issues[0].Expression = []string{o.path(".request.url")}
		}
		o.err = fe
	}
}

// search answers a GET Type?criteria (or Patient/id/Type?criteria) entry
// with a searchset Bundle, as the REST search would.
func (s *service) search(ctx context.Context, o *op) ([]byte, error) {
	if err := authorize(ctx, o.typ, auth.Search); err != nil {
		return nil, err
	}
	return s.runSearch(ctx, o.typ, o.within, o.search, strictHandling(ctx))
}

type responseEntry struct {
	FullURL  string          `json:"fullUrl,omitempty"`
	Resource json.RawMessage `json:"resource,omitempty"`
	Response entryResponse   `json:"response"`
}

type entryResponse struct {
	Extension    []extension     `json:"extension,omitempty"`
	Status       string          `json:"status"`
	Location     string          `json:"location,omitempty"`
	Etag         string          `json:"etag,omitempty"`
	LastModified string          `json:"lastModified,omitempty"`
	Outcome      json.RawMessage `json:"outcome,omitempty"`
}

// bundleResponse renders a transaction-response or batch-response: per
// entry its status, location, etag and lastModified, or its
// OperationOutcome. Written resources are not echoed: the response holds no
// PHI, so it can be remembered for idempotent retries.
func (s *service) bundleResponse(ctx context.Context, typ string, ops []*op) ([]byte, error) {
	entries := make([]responseEntry, len(ops))
	for i, o := range ops {
		e := &entries[i]
		if o.err != nil {
			e.Response.Status = statusLine(o.err.status)
			e.Response.Outcome = outcomeJSON(o.err.issues...)
			continue
		}
		e.Response.Status = statusLine(o.status)
		if o.method == "GET" {
			e.Resource = o.read
			if o.version > 0 {
				e.Response.Etag = o.etag()
				e.Response.LastModified = o.lastUpdated.Format(fhir.InstantLayout)
			}
			continue
		}
		if o.version > 0 && o.status != http.StatusNoContent {
			e.FullURL = s.base(ctx) + "/" + o.typ + "/" + o.id
			e.Response.Location = o.location()
			e.Response.Extension = []extension{{URL: ReceiptExtension, ValueURL: s.receiptURL(ctx, o.location())}}
			e.Response.Etag = o.etag()
			e.Response.LastModified = o.lastUpdated.Format(fhir.InstantLayout)
		}
	}
	b, err := json.Marshal(map[string]any{
		"resourceType": "Bundle", "id": uuid.NewString(), "type": typ + "-response",
		"meta":  map[string]any{"lastUpdated": time.Now().UTC().Format(fhir.InstantLayout)},
		"entry": entries,
	})
	if err != nil {
		return nil, fmt.Errorf("render %s-response: %w", typ, err)
	}
	return b, nil
}

// ReceiptExtension is the URL of the extension on a transaction-response
// entry that says where the receipt of the version it wrote is.
const ReceiptExtension = "https://fhiranchor.dev/fhir/StructureDefinition/receipt"

type extension struct {
	URL      string `json:"url"`
	ValueURL string `json:"valueUrl"`
}

// receiptURL is where the receipt of a stored version is served.
func (s *service) receiptURL(ctx context.Context, location string) string {
	return strings.TrimSuffix(s.base(ctx), "/fhir/r4") + "/v1/receipts/" + location
}

func statusLine(code int) string { return strconv.Itoa(code) + " " + http.StatusText(code) }

// historyBundle renders versions, newest first: of one resource, or (with
// next, for a page of type or system history) a page of a listing. A page's
// Bundle has no total, which would count what the listing holds (and so
// what the caller may not see); next, if not "", is its next link.
func historyBundle(base string, versions []vault.Version, page ...historyPage) ([]byte, error) {
	type request struct {
		Method string `json:"method"`
		URL    string `json:"url"`
	}
	type entry struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource,omitempty"`
		Request  request         `json:"request"`
		Response entryResponse   `json:"response"`
	}
	entries := make([]entry, 0, len(versions))
	for _, v := range versions {
		e := entry{FullURL: base + "/" + v.Type + "/" + v.ID}
		e.Response = entryResponse{Etag: `W/"` + strconv.FormatInt(v.Version, 10) + `"`, LastModified: v.LastUpdated.Format(fhir.InstantLayout)}
		switch {
		case v.Deleted:
			e.Request = request{Method: "DELETE", URL: v.Type + "/" + v.ID}
			e.Response.Status = statusLine(http.StatusNoContent)
		case v.Version == 1:
			e.Resource = v.Body
			e.Request = request{Method: "POST", URL: v.Type}
			e.Response.Status = statusLine(http.StatusCreated)
		default:
			e.Resource = v.Body
			e.Request = request{Method: "PUT", URL: v.Type + "/" + v.ID}
			e.Response.Status = statusLine(http.StatusOK)
		}
		entries = append(entries, e)
	}
	bundle := map[string]any{
		"resourceType": "Bundle", "id": uuid.NewString(), "type": "history",
		"meta":  map[string]any{"lastUpdated": time.Now().UTC().Format(fhir.InstantLayout)},
		"total": len(entries), "entry": entries,
	}
	if len(page) > 0 {
		delete(bundle, "total")
		links := []map[string]string{{"relation": "self", "url": page[0].self}}
		if page[0].next != "" {
			links = append(links, map[string]string{"relation": "next", "url": page[0].next})
		}
		bundle["link"] = links
	}
	b, err := json.Marshal(bundle)
	if err != nil {
		return nil, fmt.Errorf("render history: %w", err)
	}
	return b, nil
}

// historyPage are the links of a page of type or system history.
type historyPage struct {
	self, next string
}

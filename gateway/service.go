package gateway

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/fhiranchor/fhiranchor/access"
	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/policy"
	fhiranchorv1 "github.com/fhiranchor/fhiranchor/proto/fhiranchor/v1"
	"github.com/fhiranchor/fhiranchor/vault"
)

// service implements fhiranchorv1.FHIRServiceServer.
type service struct {
	fhiranchorv1.UnimplementedFHIRServiceServer
	parser       *fhir.Parser
	vault        *vault.Sealed
	writer       *writer
	access       *access.Control // nil only where a benchmark measures the spine without policy
	baseURL      string          // configured public base URL, or "" to derive it per request
	capabilities []byte
	names        *refNames // resolves record refs for AuditEvents
	// maxBundleEntries caps a transaction's or batch's entries; <= 0: none.
	maxBundleEntries int
}

// Capabilities returns the CapabilityStatement. It needs no token: SMART
// clients read it to learn how to authenticate.
func (s *service) Capabilities(ctx context.Context, _ *fhiranchorv1.CapabilitiesRequest) (*httpbody.HttpBody, error) {
	caps := s.capabilities
	if s.baseURL == "" {
		caps = capabilityTokenURL(ctx, caps)
	}
	return &httpbody.HttpBody{ContentType: fhirJSON, Data: caps}, nil
}

// Create stores a new resource (POST /{type}), conditionally on
// If-None-Exist.
func (s *service) Create(ctx context.Context, req *fhiranchorv1.CreateRequest) (*httpbody.HttpBody, error) {
	if err := checkType(req.GetType()); err != nil {
		return nil, err
	}
	needs := []string{need(req.GetType(), auth.Create)}
	if err := authorize(ctx, req.GetType(), auth.Create); err != nil {
		// A research client may define a cohort as a Group (bulk.go).
		if ok, cerr := cohortGroupCreate(ctx, req.GetType(), req.GetBody().GetData()); cerr != nil || !ok {
			return nil, cmp.Or(cerr, err)
		}
		needs = nil // checked again by cohortGroupCreate above on a retry
	}
	key := idempotencyKey(ctx, "create/"+req.GetType())
	digest := s.requestDigest(key, req.GetBody().GetData())
	if rp, err := s.replayFirst(ctx, key, digest); err != nil || rp != nil {
		if err != nil {
			return nil, err
		}
		return s.writeResponse(ctx, rp.op())
	}
	res, err := s.parseResource(req.GetBody(), req.GetType())
	if err != nil {
		return nil, err
	}
	o := &op{entry: -1, prefix: req.GetType(), method: "POST", typ: req.GetType(), res: res,
		ifNoneExist: header(ctx, "if-none-exist")}
	s.writer.precompute([]*op{o}, true)
	var replayed *replay
	err = s.write(ctx, func(tx *vault.SealedTx) (*fhirError, error) {
		replayed = nil
		if rp, err := lookupReplay(ctx, tx, key, digest); err != nil || rp != nil {
			replayed = rp
			return nil, err
		}
		if refused, err := s.writer.apply(ctx, tx, []*op{o}, true); err != nil || refused != nil {
			return refused, err
		}
		r := replayOf(o, nil)
		r.Request, r.Needs = digest, needs
		return nil, rememberReplay(ctx, tx, key, r)
	})
	if err != nil {
		return nil, err
	}
	if replayed != nil {
		o = replayed.op()
	}
	return s.writeResponse(ctx, o)
}

// Update stores a version under a client-chosen id (PUT /{type}/{id}),
// creating the resource if needed; If-Match makes it version-aware.
func (s *service) Update(ctx context.Context, req *fhiranchorv1.UpdateRequest) (*httpbody.HttpBody, error) {
	if err := checkTypeID(req.GetType(), req.GetId()); err != nil {
		return nil, err
	}
	if err := authorize(ctx, req.GetType(), auth.Update); err != nil {
		return nil, err
	}
	res, err := s.parseResource(req.GetBody(), req.GetType())
	if err != nil {
		return nil, err
	}
	if id := res.ID(); id != "" && id != req.GetId() {
		return nil, failure(http.StatusBadRequest, "invalid", req.GetType()+".id", "the resource id does not match the URL")
	}
	o := &op{entry: -1, prefix: req.GetType(), method: "PUT", typ: req.GetType(), id: req.GetId(), res: res,
		ifMatch: header(ctx, "if-match")}
	if err := s.write(ctx, func(tx *vault.SealedTx) (*fhirError, error) {
		return s.writer.apply(ctx, tx, []*op{o}, true)
	}); err != nil {
		return nil, err
	}
	return s.writeResponse(ctx, o)
}

// Delete records a deletion (DELETE /{type}/{id}).
func (s *service) Delete(ctx context.Context, req *fhiranchorv1.DeleteRequest) (*httpbody.HttpBody, error) {
	if err := checkTypeID(req.GetType(), req.GetId()); err != nil {
		return nil, err
	}
	if err := authorize(ctx, req.GetType(), auth.Delete); err != nil {
		return nil, err
	}
	o := &op{entry: -1, prefix: req.GetType(), method: "DELETE", typ: req.GetType(), id: req.GetId(),
		ifMatch: header(ctx, "if-match")}
	if err := s.write(ctx, func(tx *vault.SealedTx) (*fhirError, error) {
		return s.writer.apply(ctx, tx, []*op{o}, true)
	}); err != nil {
		return nil, err
	}
	return s.deleteResponse(ctx, o)
}

// deleteResponse answers a delete: 204 when it changed nothing, else 200
// with the tombstone's ETag.
func (s *service) deleteResponse(ctx context.Context, o *op) (*httpbody.HttpBody, error) {
	if o.status == http.StatusNoContent {
		return noContent(ctx)
	}
	setResponse(ctx, http.StatusOK, "etag", o.etag(), "last-modified", o.lastUpdated.Format(http.TimeFormat))
	return &httpbody.HttpBody{ContentType: fhirJSON, Data: outcomeJSON(issue{Severity: "information", Code: "informational", Diagnostics: "deleted"})}, nil
}

// Read returns the current version (GET /{type}/{id}).
func (s *service) Read(ctx context.Context, req *fhiranchorv1.ReadRequest) (*httpbody.HttpBody, error) {
	if err := checkTypeID(req.GetType(), req.GetId()); err != nil {
		return nil, err
	}
	if derivedTypes[req.GetType()] && isLogID(req.GetId()) {
		return s.readDerived(ctx, req.GetType(), req.GetId())
	}
	if err := authorize(ctx, req.GetType(), auth.Read); err != nil {
		return nil, err
	}
	v, err := s.vault.Read(ctx, req.GetType(), req.GetId())
	return s.versionResponse(ctx, v, err)
}

// write runs a write transaction. fn returns a refusal when the policy
// refused the write: the transaction then commits the refusal's decision
// records (fn wrote nothing else) and the refusal is the answer.
func (s *service) write(ctx context.Context, fn func(*vault.SealedTx) (*fhirError, error)) error {
	var refused *fhirError
	err := s.vault.Update(ctx, func(tx *vault.SealedTx) error {
		var err error
		refused, err = fn(tx)
		return err
	})
	if err != nil {
		return err
	}
	if refused != nil {
		return refused
	}
	return nil
}

// allowRead decides a read of v by the request's caller (see
// access.Control.Read); without policy every read is allowed.
func (s *service) allowRead(ctx context.Context, v vault.Version) (policy.Decision, error) {
	return readVersion(ctx, s.access, v)
}

// VRead returns one version (GET /{type}/{id}/_history/{vid}).
func (s *service) VRead(ctx context.Context, req *fhiranchorv1.VReadRequest) (*httpbody.HttpBody, error) {
	if err := checkTypeID(req.GetType(), req.GetId()); err != nil {
		return nil, err
	}
	if derivedTypes[req.GetType()] && isLogID(req.GetId()) {
		return nil, errDerivedHistory(req.GetType())
	}
	vid, err := strconv.ParseInt(req.GetVersionId(), 10, 64)
	if err != nil || vid < 1 {
		return nil, failure(http.StatusNotFound, "not-found", "", "no such version")
	}
	if err := authorize(ctx, req.GetType(), auth.Read); err != nil {
		return nil, err
	}
	v, err := s.vault.VRead(ctx, req.GetType(), req.GetId(), vid)
	return s.versionResponse(ctx, v, err)
}

// History lists every version of a resource, newest first
// (GET /{type}/{id}/_history).
func (s *service) History(ctx context.Context, req *fhiranchorv1.HistoryRequest) (*httpbody.HttpBody, error) {
	if err := checkTypeID(req.GetType(), req.GetId()); err != nil {
		return nil, err
	}
	if derivedTypes[req.GetType()] && isLogID(req.GetId()) {
		return nil, errDerivedHistory(req.GetType())
	}
	if err := authorize(ctx, req.GetType(), auth.Read); err != nil {
		return nil, err
	}
	versions, err := s.vault.History(ctx, req.GetType(), req.GetId())
	if err != nil {
		return nil, err
	}
	if len(versions) == 0 {
		return nil, vault.ErrNotFound
	}
	if versions, err = s.allowHistory(ctx, versions); err != nil {
		return nil, err
	}
	body, err := historyBundle(s.base(ctx), versions)
	if err != nil {
		return nil, err
	}
	return &httpbody.HttpBody{ContentType: fhirJSON, Data: body}, nil
}

// allowHistory decides a read of a resource's versions: the newest decides
// (one decision per history read), and versions whose security labels the
// decision withholds are left out.
func (s *service) allowHistory(ctx context.Context, versions []vault.Version) ([]vault.Version, error) {
	// The newest version with content decides: a tombstone has no patient
	// and must not let the versions before it through undecided.
	newest := versions[0]
	for _, v := range versions {
		if !v.Deleted {
			newest = v
			break
		}
	}
	d, err := s.allowRead(ctx, newest)
	if err != nil {
		return nil, err
	}
	kept := versions[:0:0]
	for _, v := range versions {
		if v.Deleted || v.Compartment == "" {
			kept = append(kept, v)
			continue
		}
		res, err := access.ResourceOf(v)
		if err != nil {
			return nil, err
		}
		if !access.Withholds(d, res.SecurityLabels) {
			kept = append(kept, v)
		}
	}
	return kept, nil
}

// parseResource parses a request body as a resource of type typ.
func (s *service) parseResource(body *httpbody.HttpBody, typ string) (*fhir.Resource, error) {
	res, err := s.parser.Parse(body.GetData())
	if err != nil {
		return nil, err
	}
	if res.Type != typ {
		return nil, failure(http.StatusBadRequest, "invalid", typ+".resourceType", "the body's resourceType does not match the URL")
	}
	return res, nil
}

// writeResponse answers a create or update: status, Location, ETag,
// Last-Modified, and the body the client's Prefer header asks for.
func (s *service) writeResponse(ctx context.Context, o *op) (*httpbody.HttpBody, error) {
	setResponse(ctx, o.status,
		"location", s.base(ctx)+"/"+o.location(),
		"link", "<"+s.receiptURL(ctx, o.location())+`>; rel="receipt"`,
		"etag", o.etag(),
		"last-modified", o.lastUpdated.Format(http.TimeFormat))
	switch prefer(ctx) {
	case "minimal":
		return &httpbody.HttpBody{ContentType: fhirJSON}, nil
	case "OperationOutcome":
		return &httpbody.HttpBody{ContentType: fhirJSON, Data: outcomeJSON(issue{Severity: "information", Code: "informational",
			Diagnostics: strconv.Itoa(o.status) + " " + http.StatusText(o.status)})}, nil
	}
	body := o.body
	if body == nil { // a conditional create that matched, or a replay: a read
		v, err := s.vault.VRead(ctx, o.typ, o.id, o.version)
		if err != nil {
			return nil, fmt.Errorf("read stored version: %w", err)
		}
		if _, err := s.allowRead(ctx, v); err != nil {
			return nil, err
		}
		body = v.Body
	}
	return &httpbody.HttpBody{ContentType: fhirJSON, Data: body}, nil
}

func (s *service) versionResponse(ctx context.Context, v vault.Version, err error) (*httpbody.HttpBody, error) {
	if err != nil {
		return nil, err
	}
	if _, err := s.allowRead(ctx, v); err != nil {
		return nil, err
	}
	etag := `W/"` + strconv.FormatInt(v.Version, 10) + `"`
	if v.Deleted {
		setResponse(ctx, http.StatusGone, "etag", etag)
		return nil, failure(http.StatusGone, "deleted", "", "the resource was deleted")
	}
	setResponse(ctx, http.StatusOK, "etag", etag, "last-modified", v.LastUpdated.Format(http.TimeFormat))
	return &httpbody.HttpBody{ContentType: fhirJSON, Data: v.Body}, nil
}

// base returns the public base URL of the FHIR API, for Location headers and
// fullUrls: the configured one, or the one the request came in on.
func (s *service) base(ctx context.Context) string {
	if s.baseURL != "" {
		return s.baseURL
	}
	return serverBase(ctx) + "/fhir/r4"
}

func checkType(typ string) error {
	if !fhir.IsResourceType(typ) {
		return failure(http.StatusNotFound, "not-supported", "", "the URL does not name a FHIR R4 resource type")
	}
	return nil
}

func checkTypeID(typ, id string) error {
	if err := checkType(typ); err != nil {
		return err
	}
	if !idPattern.MatchString(id) {
		return failure(http.StatusBadRequest, "invalid", "", "the URL has an invalid resource id")
	}
	return nil
}

// authorize checks the caller's scopes for one interaction on one type.
func authorize(ctx context.Context, typ string, a auth.Access) error {
	p, ok := principalFrom(ctx)
	if !ok {
		return auth.ErrNoToken
	}
	if !p.Scopes.Allows(typ, a) {
		return failure(http.StatusForbidden, "forbidden", "", "the token's scopes do not allow "+a.String()+" of "+typ)
	}
	return nil
}

// serverBase is scheme://host of the request, as the client reached us.
func serverBase(ctx context.Context) string {
	host := header(ctx, "x-forwarded-host")
	if host == "" {
		host = header(ctx, ":authority")
	}
	if host == "" {
		host = "localhost"
	}
	scheme := "http"
	if header(ctx, "x-forwarded-proto") == "https" {
		scheme = "https"
	}
	return scheme + "://" + host
}

// header returns the first value of an incoming metadata key (REST headers
// arrive under their lower-case names).
func header(ctx context.Context, key string) string {
	// Not FromIncomingContext: it copies the whole metadata, and a call
	// reads several headers.
	if v := metadata.ValueFromIncomingContext(ctx, key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// prefer returns the return= preference of the Prefer header.
func prefer(ctx context.Context) string {
	for _, part := range strings.Split(header(ctx, "prefer"), ";") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), "return="); ok {
			return v
		}
	}
	return ""
}

// setResponse sends response headers, and the HTTP status for the REST
// side (see forwardResponse in http.go).
func setResponse(ctx context.Context, httpStatus int, kv ...string) {
	md := metadata.Pairs(kv...)
	md.Set(httpCodeKey, strconv.Itoa(httpStatus))
	_ = grpc.SetHeader(ctx, md) // fails only when headers were already sent
}

func noContent(ctx context.Context) (*httpbody.HttpBody, error) {
	setResponse(ctx, http.StatusNoContent)
	return &httpbody.HttpBody{ContentType: fhirJSON}, nil
}

// Idempotency: a client that sends an Idempotency-Key header
// (draft-ietf-httpapi-idempotency-key-header) with a create or a Bundle gets,
// on a retry with the same key, the first answer and no new writes. The key
// is scoped by client and interaction. What is remembered holds ids,
// versions and statuses only, never PHI, plus a keyed digest of the request
// body and the scopes the request needed.
//
// A retry is answered before its body is parsed: a keyed hash of the body
// and one committed-state lookup (replayFirst). The same key with another
// body is refused (422, as the draft says). The caller's scopes are checked
// again against what the first request needed; when they no longer allow
// it, the retry takes the full path, which refuses it as any request. A
// replayed create's body is read back through a decided read (writeResponse),
// so consent applies to it as to any read.

type replay struct {
	Status      int             `json:"status"`
	Type        string          `json:"type,omitempty"`
	ID          string          `json:"id,omitempty"`
	Version     int64           `json:"version,omitempty"`
	LastUpdated time.Time       `json:"lastUpdated"`
	Bundle      json.RawMessage `json:"bundle,omitempty"`
	// Request is the request body's digest (requestDigest); responses
	// remembered before it existed have none and match any body.
	Request string `json:"request,omitempty"`
	// Needs are the type and access (auth.Access, decimal) pairs the
	// request was authorized for, "Patient:1".
	Needs []string `json:"needs,omitempty"`
}

func replayOf(o *op, bundle []byte) replay {
	if bundle != nil {
		return replay{Status: http.StatusOK, Bundle: bundle}
	}
	return replay{Status: o.status, Type: o.typ, ID: o.id, Version: o.version, LastUpdated: o.lastUpdated}
}

func (r *replay) op() *op {
	return &op{entry: -1, typ: r.Type, id: r.ID, version: r.Version, lastUpdated: r.LastUpdated, status: r.Status}
}

// need names one authorization of a request in a replay's Needs.
func need(typ string, a auth.Access) string { return typ + ":" + strconv.Itoa(int(a)) }

// allowed reports whether the caller's scopes still allow everything the
// remembered request needed.
func (r *replay) allowed(ctx context.Context) bool {
	for _, n := range r.Needs {
		typ, a, _ := strings.Cut(n, ":")
		code, err := strconv.Atoi(a)
		if err != nil || code <= 0 || code > 255 || authorize(ctx, typ, auth.Access(code)) != nil {
			return false
		}
	}
	return true
}

func idempotencyKey(ctx context.Context, interaction string) []byte {
	k := header(ctx, "idempotency-key")
	if k == "" {
		return nil
	}
	client := ""
	if p, ok := principalFrom(ctx); ok {
		client = p.ClientID
	}
	sum := sha256.Sum256([]byte("fhiranchor/v1/idempotency\x00" + client + "\x00" + interaction + "\x00" + k))
	return sum[:]
}

// requestDigest names a request body in a remembered response: a hash
// keyed with the vault's blind-index key, so that what is remembered cannot
// confirm a guessed body.
func (s *service) requestDigest(key, body []byte) string {
	if key == nil {
		return ""
	}
	return hex.EncodeToString(s.vault.Token("idempotency-request/v1", string(body))[:16])
}

// errKeyReused refuses a request whose Idempotency-Key was first used with
// another body.
var errKeyReused = failure(http.StatusUnprocessableEntity, "business-rule", "",
	"this Idempotency-Key was used with another request body; use a new key for a new request")

// replayFirst returns the remembered response of key on committed state,
// for a retry answered before its body is parsed, or nil: no key, nothing
// remembered, or a caller whose scopes no longer allow the request (the
// full path then refuses it). A key first used with another body is
// errKeyReused; a remembered response that does not open fails closed, as
// in lookupReplay.
func (s *service) replayFirst(ctx context.Context, key []byte, digest string) (*replay, error) {
	if key == nil {
		return nil, nil
	}
	b, err := s.vault.Response(ctx, key)
	if errors.Is(err, vault.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up idempotency key: %w", err)
	}
	r, err := decodeReplay(b, digest)
	if err != nil || !r.allowed(ctx) {
		return nil, err
	}
	return r, nil
}

// lookupReplay returns the remembered response of an idempotency key, or
// nil. The vault seals remembered responses and opens them bound to their
// key; one that does not open (altered, moved from another key) fails the
// request closed: it is neither replayed nor applied again (its first
// application may have been acknowledged), the client gets a 500 and the
// operator the error, and `fhiranchor audit` names the row.
func lookupReplay(ctx context.Context, tx *vault.SealedTx, key []byte, digest string) (*replay, error) {
	if key == nil {
		return nil, nil
	}
	b, err := tx.Response(ctx, key)
	if errors.Is(err, vault.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up idempotency key: %w", err)
	}
	return decodeReplay(b, digest)
}

// decodeReplay decodes a remembered response for a request whose body has
// digest.
func decodeReplay(b []byte, digest string) (*replay, error) {
	var r replay
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode remembered response: %w", err)
	}
	if r.Request != "" && r.Request != digest {
		return nil, errKeyReused
	}
	return &r, nil
}

func rememberReplay(ctx context.Context, tx *vault.SealedTx, key []byte, r replay) error {
	if key == nil {
		return nil
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode response to remember: %w", err)
	}
	return tx.PutResponse(ctx, key, b)
}

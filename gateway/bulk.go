package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/api/httpbody"

	"github.com/fhiranchor/fhiranchor/access"
	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/fhir/search"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	fhiranchorv1 "github.com/fhiranchor/fhiranchor/proto/fhiranchor/v1"
	"github.com/fhiranchor/fhiranchor/research"
	"github.com/fhiranchor/fhiranchor/vault"
)

// FHIR Bulk Data Access (IG v2) $export.
//
// Two kinds of caller, two pipelines:
//
//   - A client with SMART read scopes (system/*.read, system/Observation.rs...)
//     gets identified data. The export runs the gateway's own search
//     (searchRun: the blind index, then exact matching) per type and
//     _typeFilter, and passes every match through an access.Release, as a
//     search does: one decision per patient and type, recorded before the
//     manifest is served; a patient whose consent denies the caller's
//     purpose is in no file. Types its scopes do not allow are left out (an
//     informational OperationOutcome line in the error file says which).
//   - A research client (CohortExportScope) exports Group/[id]/$export of a
//     Group that defines a cohort by criteria (cohortCriteriaURL): that is
//     the research export of package research (consent per patient for
//     research, small-cell rules, de-identified copies only), kicked off
//     with the Group's criteria; its status and files are CohortService's
//     URLs.
//
// Identified exports are jobs of this gateway process: one runs at a time on
// Run's goroutine, each under a context DELETE cancels; files live under
// <research export dir>/bulk-<random>/<id>/ (0600), a directory of this
// process only, until the export's time to live passes. Nothing survives a
// restart: Run deletes the directory when it returns, and a status URL
// from before answers 404 (start a new export); so does another gateway
// behind the same load balancer (route a client's bulk calls to one
// gateway). A gateway that crashes leaves its directory behind.
// Only the client that kicked an export off is served its status and files.
//
// Erasure reaches identified exports as it reaches research ones: an export
// holding a patient erased after its build began is withdrawn (its files
// deleted; status and files answer 410). The build checks the erasure
// leaves once its files are written, Run every few seconds, and the status
// and file URLs before they serve anything (failing closed).

// cohortCriteriaURL is the extension of a Group (actual false) whose
// valueString is the cohort criteria, in the query language of package
// cohort (the "criteria" member of a /v1/cohorts query).
const cohortCriteriaURL = "https://fhiranchor.dev/fhir/StructureDefinition/cohort-criteria"

// bulkDataCapability is the Bulk Data IG's CapabilityStatement.
const bulkDataCapability = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"

// ndjsonFormats are the _outputFormat values we accept (all mean NDJSON).
var ndjsonFormats = []string{"application/fhir+ndjson", "application/ndjson", "ndjson"}

// bulkMaxCandidates bounds the ids one query of one type (and one Group
// member) of an export considers; they are held, the resources are not.
const bulkMaxCandidates = 5_000_000

// bulkID is 32 hex digits.
var bulkID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// bulkFileName is "<Type>.ndjson".
var bulkFileName = regexp.MustCompile(`^([A-Z][A-Za-z]+)\.ndjson$`)

// Kinds of identified export.
const (
	bulkSystem  = "system"
	bulkPatient = "patient"
	bulkGroup   = "group"
)

// bulkService is the BulkService.
type bulkService struct {
	fhiranchorv1.UnimplementedBulkServiceServer
	svc     *service
	exports *research.Exports // nil without policy
	// base is scheme://host[/path] of the configured public base, or "":
	// URLs then use the request's.
	base string
	dir  string
	ttl  time.Duration
	log  *slog.Logger

	mu    sync.Mutex
	jobs  map[string]*bulkJob
	queue chan *bulkJob
}

// bulkJob is one identified export.
type bulkJob struct {
	id      string
	client  string
	caller  access.Caller
	kind    string
	request string // the kick-off URL, for the manifest
	created time.Time
	types   []string
	filters map[string][]url.Values // _typeFilter queries by type (ORed)
	since   time.Time               // zero: none
	members map[string]bool         // compartments of a Group's members
	left    []string                // types the scopes leave out

	cancel    context.CancelFunc
	done      bool
	failed    bool
	withdrawn bool // data in it was erased
	progress  string
	manifest  []byte

	// held are the record refs (access.Ref, the names erasure leaves give)
	// of the compartments with a line in a file; written by the build only.
	held map[string]bool
	// check serializes erasure checks; checked is the Seq of the newest
	// erasure leaf the export is known not to hold.
	check   sync.Mutex
	checked int64
}

func newBulkService(svc *service, exports *research.Exports, base, dir string, ttl time.Duration, log *slog.Logger) *bulkService {
	return &bulkService{svc: svc, exports: exports, base: base, dir: dir, ttl: ttl, log: log,
		jobs: map[string]*bulkJob{}, queue: make(chan *bulkJob, 16)}
}

// ExportSystem is [base]/$export.
func (b *bulkService) ExportSystem(ctx context.Context, req *fhiranchorv1.BulkExportRequest) (*httpbody.HttpBody, error) {
	return b.kickOff(ctx, bulkSystem, req)
}

// ExportPatients is Patient/$export.
func (b *bulkService) ExportPatients(ctx context.Context, req *fhiranchorv1.BulkExportRequest) (*httpbody.HttpBody, error) {
	return b.kickOff(ctx, bulkPatient, req)
}

// ExportGroup is Group/[id]/$export.
func (b *bulkService) ExportGroup(ctx context.Context, req *fhiranchorv1.BulkExportRequest) (*httpbody.HttpBody, error) {
	return b.kickOff(ctx, bulkGroup, req)
}

// bulkParams are the parsed kick-off parameters.
type bulkParams struct {
	types   []string // nil: every type
	since   time.Time
	filters map[string][]url.Values
	raw     string // the query, for the manifest's request
}

// kickOff checks a kick-off and starts the export.
func (b *bulkService) kickOff(ctx context.Context, kind string, req *fhiranchorv1.BulkExportRequest) (*httpbody.HttpBody, error) {
	principal, ok := principalFrom(ctx)
	if !ok {
		return nil, auth.ErrNoToken
	}
	// Who may ask at all comes first: a refused caller learns nothing of
	// what it sent.
	if !principal.Scopes.AllowsAny(auth.Read) && (kind != bulkGroup || !principal.Scopes.Has(CohortExportScope)) {
		if kind == bulkGroup {
			return nil, failure(http.StatusForbidden, "forbidden", "", "a Group export needs read scopes, or "+CohortExportScope+" for a cohort Group")
		}
		return nil, failure(http.StatusForbidden, "forbidden", "", "the token's scopes allow reading no resource type")
	}
	if !respondAsync(ctx) {
		return nil, failure(http.StatusBadRequest, "invalid", "", "a Bulk Data kick-off needs the header Prefer: respond-async")
	}
	if kind == bulkGroup && !idPattern.MatchString(req.GetId()) {
		return nil, failure(http.StatusBadRequest, "invalid", "", "the URL has an invalid resource id")
	}
	p, err := parseBulkParams(req.GetQuery(), req.GetBody(), lenientHandling(ctx))
	if err != nil {
		return nil, err
	}
	base := b.base
	if base == "" {
		base = serverBase(ctx)
	}
	path := "/fhir/r4/$export"
	switch kind {
	case bulkPatient:
		path = "/fhir/r4/Patient/$export"
	case bulkGroup:
		path = "/fhir/r4/Group/" + req.GetId() + "/$export"
	}
	request := base + path
	if p.raw != "" {
		request += "?" + p.raw
	}
	var members map[string]bool
	if kind == bulkGroup {
		g, err := b.group(ctx, req.GetId())
		if err != nil {
			return nil, err
		}
		if criteria, ok := cohortCriteria(g); ok {
			return b.researchExport(ctx, principal, base, request, criteria, p)
		}
		if members, err = groupMembers(g); err != nil {
			return nil, err
		}
	}
	// Identified data: the types the token may read.
	var types, left []string
	if p.types != nil {
		for _, t := range p.types {
			if principal.Scopes.Allows(t, auth.Read) {
				types = append(types, t)
			} else {
				left = append(left, t)
			}
		}
	} else {
		for _, t := range search.ResourceTypes() {
			if principal.Scopes.Allows(t, auth.Read) {
				types = append(types, t)
			}
		}
	}
	if len(types) == 0 && len(left) == 0 || !principal.Scopes.AllowsAny(auth.Read) {
		// A research token reaches here only for a Group of members.
		return nil, failure(http.StatusForbidden, "forbidden", "", "the token's scopes allow reading no resource type")
	}
	id, err := newBulkID()
	if err != nil {
		return nil, err
	}
	job := &bulkJob{
		id: id, client: principal.ClientID, caller: callerFrom(ctx), kind: kind, request: request,
		created: time.Now().UTC(), types: types, filters: p.filters, since: p.since, members: members, left: left,
		progress: "queued",
	}
	if err := os.MkdirAll(filepath.Join(b.dir, id), 0o700); err != nil {
		return nil, fmt.Errorf("create bulk export directory: %w", err)
	}
	b.mu.Lock()
	b.jobs[id] = job
	b.mu.Unlock()
	select {
	case b.queue <- job:
	default:
		b.forget(job)
		return nil, failure(http.StatusTooManyRequests, "throttled", "", "too many exports are waiting; try again later")
	}
	setResponse(ctx, http.StatusAccepted, "content-location", base+"/v1/bulk/"+id)
	return &httpbody.HttpBody{ContentType: fhirJSON, Data: outcomeJSON(issue{Severity: "information", Code: "informational",
		Diagnostics: "export accepted: poll the Content-Location URL"})}, nil
}

// respondAsync reports Prefer: respond-async.
func respondAsync(ctx context.Context) bool { return preferToken(ctx, "respond-async") }

// lenientHandling reports Prefer: handling=lenient: the IG lets a client
// ask that parameters the server does not know be ignored.
func lenientHandling(ctx context.Context) bool { return preferToken(ctx, "handling=lenient") }

func preferToken(ctx context.Context, token string) bool {
	for _, part := range strings.FieldsFunc(header(ctx, "prefer"), func(r rune) bool { return r == ',' || r == ';' }) {
		if strings.TrimSpace(part) == token {
			return true
		}
	}
	return false
}

// parseBulkParams reads the kick-off parameters from the query string and
// a POST's Parameters body; lenient ignores parameters it does not know.
// Errors name our parameters, never a value.
func parseBulkParams(query string, body *httpbody.HttpBody, lenient bool) (bulkParams, error) {
	params, err := url.ParseQuery(query)
	if err != nil {
		return bulkParams{}, failure(http.StatusBadRequest, "invalid", "", "the kick-off has a malformed query string")
	}
	if len(body.GetData()) > 0 {
		if err := addParameters(params, body.GetData()); err != nil {
			return bulkParams{}, err
		}
	}
	p := bulkParams{raw: params.Encode()}
	for name, vs := range params {
		switch name {
		case "_type", "_since", "_typeFilter", "_outputFormat":
		case "patient", "_elements", "includeAssociatedData", "organizeOutputBy", "allowPartialManifests":
			return p, failure(http.StatusBadRequest, "not-supported", "", "the kick-off parameter "+name+" is not supported")
		default:
			if lenient {
				delete(params, name)
				continue
			}
			return p, failure(http.StatusBadRequest, "not-supported", "",
				"the kick-off has a parameter this server does not support (Prefer: handling=lenient ignores it)")
		}
		if len(vs) > 1 && name != "_type" && name != "_typeFilter" {
			return p, failure(http.StatusBadRequest, "invalid", "", "the kick-off parameter "+name+" is repeated")
		}
	}
	// A "+" sent unescaped in a query decodes to a space: take it back, as
	// clients write application/fhir+ndjson and +01:00 offsets raw.
	for _, n := range []string{"_outputFormat", "_since"} {
		if params.Has(n) {
			params.Set(n, strings.ReplaceAll(params.Get(n), " ", "+"))
		}
	}
	if f := params.Get("_outputFormat"); f != "" && !slices.Contains(ndjsonFormats, f) {
		return p, failure(http.StatusBadRequest, "not-supported", "", "_outputFormat must be application/fhir+ndjson, application/ndjson or ndjson")
	}
	if s := params.Get("_since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return p, failure(http.StatusBadRequest, "invalid", "", "_since must be a FHIR instant (e.g. 2024-01-01T00:00:00Z)")
		}
		p.since = t
	}
	for _, v := range params["_type"] {
		for _, t := range strings.Split(v, ",") {
			t = strings.TrimSpace(t)
			if !fhir.IsResourceType(t) {
				return p, failure(http.StatusBadRequest, "invalid", "", "_type names an unknown resource type")
			}
			if !slices.Contains(p.types, t) {
				p.types = append(p.types, t)
			}
		}
	}
	for _, v := range params["_typeFilter"] {
		for _, f := range splitTypeFilter(v) {
			typ, q, ok := strings.Cut(f, "?")
			if !ok || !fhir.IsResourceType(typ) {
				return p, failure(http.StatusBadRequest, "invalid", "", "_typeFilter must be [type]?[search query] with a known resource type")
			}
			if p.types != nil && !slices.Contains(p.types, typ) {
				return p, failure(http.StatusBadRequest, "invalid", "", "_typeFilter names a resource type _type leaves out")
			}
			values, err := url.ParseQuery(q)
			if err != nil {
				return p, failure(http.StatusBadRequest, "invalid", "", "_typeFilter has a malformed search query")
			}
			for _, n := range []string{"_include", "_revinclude", "_sort", "_count", "_summary", "_elements", "_total", "_contained"} {
				if values.Has(n) {
					return p, failure(http.StatusBadRequest, "not-supported", "", "_typeFilter takes search criteria only, not "+n)
				}
			}
			if _, err := search.Parse(typ, values, true); err != nil {
				return p, queryError(err)
			}
			if p.filters == nil {
				p.filters = map[string][]url.Values{}
			}
			p.filters[typ] = append(p.filters[typ], values)
		}
	}
	return p, nil
}

// splitTypeFilter splits a _typeFilter value at the commas that start
// another "[type]?" query; a comma inside a query (code=a,b) stays.
func splitTypeFilter(v string) []string {
	var out []string
	for _, part := range strings.Split(v, ",") {
		if typ, _, ok := strings.Cut(part, "?"); ok && fhir.IsResourceType(typ) || len(out) == 0 {
			out = append(out, part)
			continue
		}
		out[len(out)-1] += "," + part
	}
	return out
}

// addParameters adds the parameters of a Parameters resource (POST
// kick-off) to params.
func addParameters(params url.Values, data []byte) error {
	var p struct {
		ResourceType string `json:"resourceType"`
		Parameter    []map[string]json.RawMessage
	}
	bad := failure(http.StatusBadRequest, "invalid", "", "a POST kick-off takes a Parameters resource whose parameters have a name and a value[x]")
	if err := json.Unmarshal(data, &p); err != nil || p.ResourceType != "Parameters" {
		return bad
	}
	for _, e := range p.Parameter {
		var name string
		if err := json.Unmarshal(e["name"], &name); err != nil || name == "" {
			return bad
		}
		var value string
		found := false
		for k, raw := range e {
			if strings.HasPrefix(k, "value") {
				if err := json.Unmarshal(raw, &value); err != nil {
					return bad
				}
				found = true
			}
		}
		if !found {
			return bad
		}
		params.Add(name, value)
	}
	return nil
}

// group reads Group id as a read of it would, for the caller.
func (b *bulkService) group(ctx context.Context, id string) (map[string]any, error) {
	v, err := b.svc.vault.Read(ctx, "Group", id)
	if errors.Is(err, vault.ErrNotFound) || errors.Is(err, vault.ErrErased) || (err == nil && v.Deleted) {
		return nil, failure(http.StatusNotFound, "not-found", "", "no such Group")
	}
	if err != nil {
		return nil, err
	}
	tree, err := decodeStored(v.Body)
	if err != nil {
		return nil, err
	}
	if _, ok := cohortCriteria(tree); ok {
		return tree, nil // a cohort definition names nobody
	}
	if err := authorize(ctx, "Group", auth.Read); err != nil {
		return nil, err
	}
	if _, err := b.svc.allowRead(ctx, v); err != nil {
		return nil, err
	}
	return tree, nil
}

// cohortCriteria returns the cohort criteria of a Group that defines a
// cohort: actual false and the cohortCriteriaURL extension.
func cohortCriteria(g map[string]any) (json.RawMessage, bool) {
	if actual, _ := g["actual"].(bool); actual {
		return nil, false
	}
	exts, _ := g["extension"].([]any)
	for _, e := range exts {
		m, _ := e.(map[string]any)
		if u, _ := m["url"].(string); u != cohortCriteriaURL {
			continue
		}
		if s, ok := m["valueString"].(string); ok && json.Valid([]byte(s)) {
			return json.RawMessage(s), true
		}
	}
	return nil, false
}

// groupMembers returns the patient compartments of a Group's members.
func groupMembers(g map[string]any) (map[string]bool, error) {
	out := map[string]bool{}
	ms, _ := g["member"].([]any)
	for _, m := range ms {
		mm, _ := m.(map[string]any)
		if inactive, _ := mm["inactive"].(bool); inactive {
			continue
		}
		ent, _ := mm["entity"].(map[string]any)
		ref, _ := ent["reference"].(string)
		if id, ok := strings.CutPrefix(ref, "Patient/"); ok && idPattern.MatchString(id) {
			out["Patient/"+id] = true
		}
	}
	if len(out) == 0 {
		return nil, failure(http.StatusBadRequest, "not-supported", "",
			"the Group has no Patient members and defines no cohort (extension "+cohortCriteriaURL+")")
	}
	return out, nil
}

// researchExport kicks off the research export of a cohort-defining Group.
func (b *bulkService) researchExport(ctx context.Context, p auth.Principal, base, request string, criteria json.RawMessage, bp bulkParams) (*httpbody.HttpBody, error) {
	if !p.Scopes.Has(CohortExportScope) {
		return nil, failure(http.StatusForbidden, "forbidden", "", "a cohort Group is exported with the scope "+CohortExportScope)
	}
	if b.exports == nil {
		return nil, failure(http.StatusNotImplemented, "not-supported", "", "research exports need the consent policy")
	}
	if !bp.since.IsZero() || bp.filters != nil {
		return nil, failure(http.StatusBadRequest, "not-supported", "", "a research export takes _type and _outputFormat only")
	}
	body, err := json.Marshal(struct {
		Criteria json.RawMessage `json:"criteria"`
		Type     []string        `json:"type,omitempty"`
	}{criteria, bp.types})
	if err != nil {
		return nil, err
	}
	return exportResponse(ctx)(b.exports.KickOffFrom(ctx, callerFrom(ctx), base, request, body))
}

func newBulkID() (string, error) {
	var r [16]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", fmt.Errorf("bulk export id: %w", err)
	}
	return hex.EncodeToString(r[:]), nil
}

// Run builds queued exports, one at a time, and deletes expired ones until
// ctx ends; then it deletes every file of this process's exports.
func (b *bulkService) Run(ctx context.Context) error {
	if err := os.MkdirAll(b.dir, 0o700); err != nil {
		return fmt.Errorf("create bulk export directory: %w", err)
	}
	defer os.RemoveAll(b.dir)
	sweep := time.NewTicker(time.Minute)
	defer sweep.Stop()
	follow := time.NewTicker(5 * time.Second)
	defer follow.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sweep.C:
			b.expire()
		case <-follow.C:
			b.followErasures(ctx)
		case job := <-b.queue:
			b.run(ctx, job)
		}
	}
}

func (b *bulkService) run(ctx context.Context, job *bulkJob) {
	jctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b.mu.Lock()
	if job.done { // deleted while queued
		b.mu.Unlock()
		return
	}
	job.cancel, job.progress = cancel, "started"
	b.mu.Unlock()
	m, err := b.build(jctx, job)
	b.mu.Lock()
	defer b.mu.Unlock()
	job.cancel = nil
	if jctx.Err() != nil {
		return // deleted: Delete removed it
	}
	job.done = true
	if errors.Is(err, errBulkWithdrawn) {
		return
	}
	if err != nil {
		job.failed = true
		_ = os.RemoveAll(filepath.Join(b.dir, job.id))
		b.log.ErrorContext(ctx, "bulk export failed", slog.String("export", job.id), slog.String("err", err.Error()))
		return
	}
	job.manifest = m
}

// bulkFile is one manifest entry.
type bulkFile struct {
	Type  string `json:"type"`
	URL   string `json:"url"`
	Count int    `json:"count"`
}

// build writes the export's files, records the release decisions, and
// returns the manifest.
func (b *bulkService) build(ctx context.Context, job *bulkJob) ([]byte, error) {
	// The export reflects the vault as of now: anything written later is
	// left out, so that a client's next _since may be this time.
	tt := time.Now().UTC()
	erasures, err := b.newestErasure(ctx)
	if err != nil {
		return nil, err
	}
	job.held = map[string]bool{}
	dir := filepath.Join(b.dir, job.id)
	base := strings.TrimSuffix(job.request[:strings.Index(job.request, "/fhir/r4")], "/")
	run := &searchRun{s: b.svc, release: b.svc.access.NewRelease(job.caller), limit: bulkMaxCandidates}
	var out []bulkFile
	for i, typ := range job.types {
		b.setProgress(job, fmt.Sprintf("%d of %d types", i, len(job.types)))
		n, err := b.exportType(ctx, run, job, typ, tt, filepath.Join(dir, typ+".ndjson"))
		if err != nil {
			return nil, err
		}
		// Decisions are recorded before the manifest names a file.
		if err := run.release.Commit(ctx); err != nil {
			return nil, err
		}
		if n > 0 {
			out = append(out, bulkFile{Type: typ, URL: base + "/v1/bulk/" + job.id + "/files/" + typ + ".ndjson", Count: n})
		}
	}
	errs := []bulkFile{}
	if len(job.left) > 0 {
		var lines []byte
		for _, t := range job.left {
			lines = append(lines, outcomeLine("information", "forbidden", "resources of type "+t+" are left out: the token's scopes do not allow reading them")...)
		}
		if err := os.WriteFile(filepath.Join(dir, "OperationOutcome.ndjson"), lines, 0o600); err != nil {
			return nil, fmt.Errorf("write bulk export file: %w", err)
		}
		errs = append(errs, bulkFile{Type: "OperationOutcome", URL: base + "/v1/bulk/" + job.id + "/files/OperationOutcome.ndjson", Count: len(job.left)})
	}
	if out == nil {
		out = []bulkFile{}
	}
	// A patient erased while the files were written may be in them.
	job.checked = erasures
	if err := b.checkErasures(ctx, job); err != nil {
		return nil, err
	}
	return json.Marshal(struct {
		TransactionTime     string     `json:"transactionTime"`
		Request             string     `json:"request"`
		RequiresAccessToken bool       `json:"requiresAccessToken"`
		Output              []bulkFile `json:"output"`
		Error               []bulkFile `json:"error"`
	}{tt.Format(time.RFC3339Nano), job.request, true, out, errs})
}

// exportType writes the resources of typ the export holds to path and
// returns how many; no file when none. Matches stream to the file: only
// the candidates' ids are held, not the resources.
func (b *bulkService) exportType(ctx context.Context, run *searchRun, job *bulkJob, typ string, tt time.Time, path string) (n int, err error) {
	queries := job.filters[typ]
	if len(queries) == 0 {
		queries = []url.Values{nil}
	}
	// A Group's members are searched compartment by compartment, so the
	// index narrows the candidates.
	compartments := []string{""}
	if job.members != nil {
		compartments = slices.Sorted(maps.Keys(job.members))
	}
	var f *os.File
	var w *bufio.Writer
	defer func() {
		if f == nil {
			return
		}
		if ferr := w.Flush(); err == nil && ferr != nil {
			err = fmt.Errorf("write bulk export file: %w", ferr)
		}
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("write bulk export file: %w", cerr)
		}
	}()
	seen := map[string]bool{}
	for _, params := range queries {
		var clauses []search.Clause
		if params != nil {
			q, err := search.Parse(typ, params, true)
			if err != nil {
				return 0, err // parsed at kick-off
			}
			clauses = q.Clauses
		}
		run.scanned = 0 // one budget per type and query
		if err := run.resolve(ctx, typ, clauses); err != nil {
			return 0, err
		}
		cs := clauses
		for _, compartment := range compartments {
			ids, err := run.candidates(ctx, typ, cs, compartment)
			if err != nil {
				return 0, err
			}
			for _, id := range ids {
				if err := ctx.Err(); err != nil {
					return 0, err
				}
				if seen[id] {
					continue
				}
				h, err := run.load(ctx, typ, id)
				if err != nil {
					return 0, err
				}
				if h == nil || h.v.LastUpdated.After(tt) || (!job.since.IsZero() && h.v.LastUpdated.Before(job.since)) ||
					(compartment != "" && h.v.Compartment != compartment) || (job.kind != bulkSystem && h.v.Compartment == "") ||
					slices.ContainsFunc(cs, func(c search.Clause) bool { return !c.Match(h.values) }) {
					continue
				}
				seen[id] = true
				ok, err := run.release.Allowed(ctx, h.v, run.treeOf(ctx, h))
				if err != nil {
					return 0, err
				}
				if !ok {
					continue
				}
				if h.v.Compartment != "" {
					job.held[access.Ref(b.svc.vault, h.v.Compartment)] = true
				}
				if f == nil {
					if f, err = os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600); err != nil {
						return 0, fmt.Errorf("create bulk export file: %w", err)
					}
					w = bufio.NewWriter(f)
				}
				var line bytes.Buffer
				if err := json.Compact(&line, h.v.Body); err != nil {
					return 0, fmt.Errorf("compact stored version: %w", err)
				}
				line.WriteByte('\n')
				if _, err := w.Write(line.Bytes()); err != nil {
					return 0, fmt.Errorf("write bulk export file: %w", err)
				}
				n++
			}
		}
	}
	return n, nil
}

// outcomeLine is an OperationOutcome as one NDJSON line.
func outcomeLine(severity, code, diagnostics string) []byte {
	var buf bytes.Buffer
	_ = json.Compact(&buf, outcomeJSON(issue{Severity: severity, Code: code, Diagnostics: diagnostics}))
	return append(buf.Bytes(), '\n')
}

func (b *bulkService) setProgress(job *bulkJob, p string) {
	b.mu.Lock()
	job.progress = p
	b.mu.Unlock()
}

// job returns the caller's export id, or a 404 that does not tell another
// client's export from a missing one.
func (b *bulkService) job(ctx context.Context, id string) (*bulkJob, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	job, ok := b.jobs[id]
	if !bulkID.MatchString(id) || !ok || job.client != clientOf(ctx) || job.client == "" {
		return nil, failure(http.StatusNotFound, "not-found", "", "no such export")
	}
	return job, nil
}

// GetBulkStatus answers the status URL.
func (b *bulkService) GetBulkStatus(ctx context.Context, req *fhiranchorv1.GetBulkStatusRequest) (*httpbody.HttpBody, error) {
	job, err := b.job(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	if err := b.checkDone(ctx, job); err != nil {
		return nil, err
	}
	b.mu.Lock()
	done, failed, withdrawn, progress, m := job.done, job.failed, job.withdrawn, job.progress, job.manifest
	b.mu.Unlock()
	switch {
	case withdrawn:
		return nil, bulkWithdrawn()
	case !done:
		setResponse(ctx, http.StatusAccepted, "x-progress", progress, "retry-after", "1")
		return &httpbody.HttpBody{ContentType: fhirJSON, Data: outcomeJSON(issue{Severity: "information", Code: "informational",
			Diagnostics: "the export is in progress"})}, nil
	case failed:
		return nil, failure(http.StatusInternalServerError, "exception", "", "the export failed; see the server log")
	}
	setResponse(ctx, http.StatusOK, "expires", job.created.Add(b.ttl).Format(http.TimeFormat))
	return &httpbody.HttpBody{ContentType: "application/json", Data: m}, nil
}

// GetBulkFile serves one file of a finished export.
func (b *bulkService) GetBulkFile(ctx context.Context, req *fhiranchorv1.GetBulkFileRequest) (*httpbody.HttpBody, error) {
	job, err := b.job(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	if err := b.checkDone(ctx, job); err != nil {
		return nil, err
	}
	b.mu.Lock()
	ready, withdrawn := job.done && !job.failed, job.withdrawn
	b.mu.Unlock()
	if withdrawn {
		return nil, bulkWithdrawn()
	}
	notFound := failure(http.StatusNotFound, "not-found", "", "no such export file")
	if !ready || !bulkFileName.MatchString(req.GetName()) {
		return nil, notFound
	}
	data, err := os.ReadFile(filepath.Join(b.dir, job.id, req.GetName()))
	if errors.Is(err, os.ErrNotExist) {
		return nil, notFound
	}
	if err != nil {
		return nil, fmt.Errorf("read bulk export file: %w", err)
	}
	return &httpbody.HttpBody{ContentType: research.NDJSONType, Data: data}, nil
}

// DeleteBulk cancels an export or deletes its files.
func (b *bulkService) DeleteBulk(ctx context.Context, req *fhiranchorv1.DeleteBulkRequest) (*httpbody.HttpBody, error) {
	job, err := b.job(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	if err := b.forget(job); err != nil {
		return nil, err
	}
	setResponse(ctx, http.StatusAccepted)
	return &httpbody.HttpBody{ContentType: fhirJSON, Data: outcomeJSON(issue{Severity: "information", Code: "informational",
		Diagnostics: "export deleted"})}, nil
}

// forget cancels job, deletes its files and forgets it.
func (b *bulkService) forget(job *bulkJob) error {
	b.mu.Lock()
	if job.cancel != nil {
		job.cancel()
	}
	job.done = true
	delete(b.jobs, job.id)
	b.mu.Unlock()
	if err := os.RemoveAll(filepath.Join(b.dir, job.id)); err != nil {
		return fmt.Errorf("delete bulk export: %w", err)
	}
	return nil
}

// expire forgets finished exports older than the time to live.
func (b *bulkService) expire() {
	cutoff := time.Now().Add(-b.ttl)
	b.mu.Lock()
	var old []*bulkJob
	for _, job := range b.jobs {
		if job.done && job.created.Before(cutoff) {
			old = append(old, job)
		}
	}
	b.mu.Unlock()
	for _, job := range old {
		_ = b.forget(job)
	}
}

// bulkDirectory is this process's directory of identified export files:
// bulk-<random> under the research export directory (or the system's
// temporary directory), so gateways sharing the export directory never
// touch each other's.
func bulkDirectory(exportDir string) (string, error) {
	if exportDir == "" {
		exportDir = os.TempDir()
	}
	id, err := newBulkID()
	if err != nil {
		return "", err
	}
	return filepath.Join(exportDir, "bulk-"+id[:16]), nil
}

// errBulkWithdrawn ends a build whose export was withdrawn for an erasure.
var errBulkWithdrawn = errors.New("bulk export withdrawn: data in it was erased")

// bulkWithdrawn is what the status and file URLs of a withdrawn export
// answer; it names neither the patient nor how many were erased.
func bulkWithdrawn() error {
	return failure(http.StatusGone, "deleted", "",
		"this export was withdrawn because data in it was erased; start a new export")
}

// newestErasure returns the Seq of the newest erasure leaf, or 0.
func (b *bulkService) newestErasure(ctx context.Context) (int64, error) {
	ls, err := b.svc.vault.Store().FindLeaves(ctx, vault.LeafFilter{Type: uint8(anchor.LeafErasure), Limit: 1})
	if err != nil {
		return 0, fmt.Errorf("read erasures: %w", err)
	}
	if len(ls) == 0 {
		return 0, nil
	}
	return ls[0].Seq, nil
}

// erasedAfter returns the subjects of the erasure leaves above after, and
// the newest Seq among them (after when there are none).
func (b *bulkService) erasedAfter(ctx context.Context, after int64) (map[string]bool, int64, error) {
	erased := map[string]bool{}
	newest := after
	before := int64(0)
	for {
		ls, err := b.svc.vault.Store().FindLeaves(ctx, vault.LeafFilter{Type: uint8(anchor.LeafErasure), Before: before, Limit: 256})
		if err != nil {
			return nil, 0, fmt.Errorf("read erasures: %w", err)
		}
		for _, l := range ls {
			if l.Seq <= after {
				return erased, newest, nil
			}
			erased[l.Subject] = true
			newest = max(newest, l.Seq)
		}
		if len(ls) < 256 {
			return erased, newest, nil
		}
		before = ls[len(ls)-1].Seq
	}
}

// checkErasures withdraws job if a patient it holds was erased after
// job.checked. It returns errBulkWithdrawn when it is withdrawn.
func (b *bulkService) checkErasures(ctx context.Context, job *bulkJob) error {
	job.check.Lock()
	defer job.check.Unlock()
	b.mu.Lock()
	withdrawn := job.withdrawn
	b.mu.Unlock()
	if withdrawn {
		return errBulkWithdrawn
	}
	erased, newest, err := b.erasedAfter(ctx, job.checked)
	if err != nil {
		return err
	}
	for ref := range erased {
		if job.held[ref] {
			b.mu.Lock()
			job.withdrawn, job.manifest = true, nil
			b.mu.Unlock()
			if err := os.RemoveAll(filepath.Join(b.dir, job.id)); err != nil {
				return fmt.Errorf("withdraw bulk export: %w", err)
			}
			b.log.WarnContext(ctx, "bulk export withdrawn: data in it was erased", slog.String("export", job.id))
			return errBulkWithdrawn
		}
	}
	job.checked = newest
	return nil
}

// checkDone checks a finished export for erasures before it is served
// (an export being built checks itself when its files are written).
func (b *bulkService) checkDone(ctx context.Context, job *bulkJob) error {
	b.mu.Lock()
	finished := job.done && !job.failed
	b.mu.Unlock()
	if !finished {
		return nil
	}
	if err := b.checkErasures(ctx, job); err != nil && !errors.Is(err, errBulkWithdrawn) {
		// Fail closed: an export that cannot be checked is not served.
		return err
	}
	return nil
}

// followErasures checks every finished export for erasures.
func (b *bulkService) followErasures(ctx context.Context) {
	b.mu.Lock()
	var jobs []*bulkJob
	for _, job := range b.jobs {
		if job.done && !job.failed && !job.withdrawn {
			jobs = append(jobs, job)
		}
	}
	b.mu.Unlock()
	for _, job := range jobs {
		if err := b.checkDone(ctx, job); err != nil && ctx.Err() == nil {
			b.log.ErrorContext(ctx, "bulk exports could not follow erasures", slog.String("err", err.Error()))
			return
		}
	}
}

// cohortGroupCreate reports whether a create the caller's SMART scopes do
// not allow is a research client (CohortExportScope) defining a cohort: a
// Group with actual false, no member and valid criteria
// (cohortCriteriaURL). Such a Group names nobody. A conditional create is
// not one: its search could tell the client of other Groups. An error is
// the answer for criteria that are not valid.
func cohortGroupCreate(ctx context.Context, typ string, body []byte) (bool, error) {
	p, ok := principalFrom(ctx)
	if !ok || typ != "Group" || !p.Scopes.Has(CohortExportScope) || header(ctx, "if-none-exist") != "" {
		return false, nil
	}
	var g map[string]any
	if err := json.Unmarshal(body, &g); err != nil {
		return false, nil
	}
	criteria, ok := cohortCriteria(g)
	if _, hasMembers := g["member"]; !ok || hasMembers || g["actual"] != false {
		return false, nil
	}
	if err := research.ValidateCriteria(criteria); err != nil {
		return false, err
	}
	return true, nil
}

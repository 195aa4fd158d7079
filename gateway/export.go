package gateway

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/api/httpbody"

	"github.com/fhiranchor/fhiranchor/cohort"
	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/policy"
	fhiranchorv1 "github.com/fhiranchor/fhiranchor/proto/fhiranchor/v1"
)

// Cohort export, in the manner of FHIR Bulk Data $export: the kick-off
// answers 202 with a status URL; the status answers 202 with X-Progress
// until the manifest is ready; the manifest lists one NDJSON file per
// resource type. Each export is decided per patient (action export) and
// recorded as an access-decision whose leaf commits to the SHA-256 of every
// file, before any file is served. Files hold de-identified copies only and
// live under the export directory until their time to live passes; only the
// client that asked may read them.

const ndjsonType = "application/fhir+ndjson"

// exportRequest is the kick-off body: a cohort query plus, optionally, the
// resource types to export (Bulk Data's _type).
type exportRequest struct {
	Type []string `json:"type"`
}

// exportFile is one file of a manifest and of the export's record.
type exportFile struct {
	Type   string `json:"type"`
	URL    string `json:"url,omitempty"` // in the manifest only
	Count  int    `json:"count"`
	SHA256 string `json:"sha256"`
}

// manifest is the Bulk Data completion manifest, with our extension: the
// decision record's leaf and the hash it commits to.
type manifest struct {
	TransactionTime     string            `json:"transactionTime"`
	Request             string            `json:"request"`
	RequiresAccessToken bool              `json:"requiresAccessToken"`
	Output              []exportFile      `json:"output"`
	Error               []exportFile      `json:"error"`
	Extension           manifestExtension `json:"extension"`
}

type manifestExtension struct {
	Decision uint64 `json:"decision"`
	Released string `json:"released"`
	Patients int    `json:"patients"`
}

type exportJob struct {
	id      string
	client  string
	created time.Time
	query   *cohort.Query
	types   map[string]bool // nil: all
	tally   *consentTally
	base    string // scheme://host of the kick-off, for file URLs

	cancel   context.CancelFunc
	done     bool
	failed   string // a failure's generic description
	progress string
	manifest []byte
}

// exports runs export jobs one at a time (an export reads every resource of
// the cohort: running several at once would only compete for the vault).
type exports struct {
	r    *research
	dir  string
	ttl  time.Duration
	log  *slog.Logger
	base string // scheme://host[/path] of the configured public base, or "": the request's

	mu    sync.Mutex
	jobs  map[string]*exportJob
	queue chan *exportJob
}

func newExports(r *research, dir string, ttl time.Duration, log *slog.Logger) *exports {
	return &exports{r: r, dir: dir, ttl: ttl, log: log, jobs: map[string]*exportJob{}, queue: make(chan *exportJob, 64)}
}

// exportID is 32 hex digits; anything else is not an export of ours.
var exportID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// ExportCohort answers POST /v1/cohorts:export.
func (s *cohortService) ExportCohort(ctx context.Context, body *httpbody.HttpBody) (*httpbody.HttpBody, error) {
	return s.exports.kickOff(ctx, body.GetData())
}

func (e *exports) kickOff(ctx context.Context, data []byte) (*httpbody.HttpBody, error) {
	// The query language is strict about unknown members, so the export's
	// own member is taken out before the query is parsed.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, failure(http.StatusBadRequest, "invalid", "", "the export request must be a JSON object")
	}
	var req exportRequest
	if t, ok := raw["type"]; ok {
		if err := json.Unmarshal(t, &req.Type); err != nil {
			return nil, failure(http.StatusBadRequest, "invalid", "type", "type must be an array of resource type names")
		}
		delete(raw, "type")
	}
	var types map[string]bool
	for _, t := range req.Type {
		if !fhir.IsResourceType(t) {
			return nil, failure(http.StatusBadRequest, "invalid", "type", "type names an unknown resource type")
		}
		if types == nil {
			types = map[string]bool{}
		}
		types[t] = true
	}
	rest, err := json.Marshal(raw)
	if err != nil {
		return nil, err
	}
	q, err := cohort.ParseQuery(rest)
	if err != nil {
		return nil, failure(http.StatusBadRequest, "invalid", "", "the cohort query is not valid: "+err.Error())
	}
	id, err := newExportID()
	if err != nil {
		return nil, err
	}
	at := microsNow(e.r.now)
	job := &exportJob{
		id: id, client: clientOf(ctx), created: at, query: q, types: types,
		tally: e.r.tally(ctx, actionExport, at), base: e.base, progress: "queued",
	}
	if job.base == "" {
		job.base = serverBase(ctx)
	}
	// The directory and its owner exist from the start, so that another
	// gateway sharing the export directory answers the status URL too.
	dir := filepath.Join(e.dir, id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create export directory: %w", err)
	}
	for f, content := range map[string][]byte{"owner": []byte(job.client), "building": nil} {
		if err := os.WriteFile(filepath.Join(dir, f), content, 0o600); err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("write export %s: %w", f, err)
		}
	}
	e.mu.Lock()
	e.jobs[id] = job
	e.mu.Unlock()
	select {
	case e.queue <- job:
	default:
		e.mu.Lock()
		delete(e.jobs, id)
		e.mu.Unlock()
		_ = os.RemoveAll(dir)
		return nil, failure(http.StatusTooManyRequests, "throttled", "", "too many exports are waiting; try again later")
	}
	setResponse(ctx, http.StatusAccepted, "content-location", job.base+"/v1/cohorts/exports/"+id)
	return &httpbody.HttpBody{ContentType: fhirJSON, Data: outcomeJSON(issue{Severity: "information", Code: "informational",
		Diagnostics: "export accepted: poll the Content-Location URL"})}, nil
}

func newExportID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("export id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// Run executes queued exports and removes expired ones until ctx ends.
func (e *exports) Run(ctx context.Context) error {
	sweep := time.NewTicker(time.Minute)
	defer sweep.Stop()
	go e.beat(ctx)
	e.expire()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sweep.C:
			e.expire()
		case job := <-e.queue:
			e.run(ctx, job)
		}
	}
}

func (e *exports) run(ctx context.Context, job *exportJob) {
	jctx, cancel := context.WithCancel(ctx)
	defer cancel()
	e.mu.Lock()
	if job.done { // cancelled while queued
		e.mu.Unlock()
		return
	}
	job.cancel, job.progress = cancel, "selecting patients"
	// Decisions stop when the export is cancelled; the caller's principal
	// is already in the policy input.
	job.tally.ctx = jctx
	e.mu.Unlock()
	dir := filepath.Join(e.dir, job.id)
	m, err := e.build(jctx, job)
	_ = os.Remove(filepath.Join(dir, "building"))
	e.mu.Lock()
	defer e.mu.Unlock()
	job.done, job.cancel = true, nil
	if err != nil {
		_ = os.RemoveAll(dir)
		if jctx.Err() != nil {
			delete(e.jobs, job.id)
			return
		}
		job.failed = exportFailed
		e.log.ErrorContext(ctx, "cohort export failed", slog.String("export", job.id), slog.String("err", err.Error()))
		// Other gateways learn of the failure from the directory.
		if os.MkdirAll(dir, 0o700) == nil {
			_ = os.WriteFile(filepath.Join(dir, "owner"), []byte(job.client), 0o600)
			_ = os.WriteFile(filepath.Join(dir, "failed"), nil, 0o600)
		}
		return
	}
	job.manifest = m
}

const exportFailed = "the export failed; see the server log"

// heartbeatEvery is how often a gateway touches the "building" file of each
// export it has queued or is building; another gateway that finds it older
// than heartbeatStale takes that gateway for dead.
const (
	heartbeatEvery = 10 * time.Second
	heartbeatStale = 6 * heartbeatEvery
)

// beat keeps the "building" files of this gateway's unfinished exports fresh
// until ctx ends.
func (e *exports) beat(ctx context.Context) {
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		e.mu.Lock()
		var ids []string
		for id, job := range e.jobs {
			if !job.done {
				ids = append(ids, id)
			}
		}
		e.mu.Unlock()
		for _, id := range ids {
			now := time.Now()
			_ = os.Chtimes(filepath.Join(e.dir, id, "building"), now, now)
		}
	}
}

// build writes the export's files, records the decision and returns the
// manifest.
func (e *exports) build(ctx context.Context, job *exportJob) ([]byte, error) {
	r := e.r
	if err := r.catchUp(ctx); err != nil {
		return nil, err
	}
	t := job.tally
	patients := r.index.Match(job.query, job.created, t.permit)
	if t.err != nil {
		return nil, fmt.Errorf("decide export consent: %w", t.err)
	}
	dir := filepath.Join(e.dir, job.id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create export directory: %w", err)
	}
	files := map[string]*ndjsonFile{}
	defer func() {
		for _, f := range files {
			f.f.Close()
		}
	}()
	for i, p := range patients {
		if i%50 == 0 {
			e.setProgress(job, fmt.Sprintf("%d of %d patients", i, len(patients)))
		}
		d := t.decisions[p]
		for _, key := range r.index.Resources(p) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			typ, id, ok := strings.Cut(key, "/")
			if !ok || (job.types != nil && !job.types[typ]) {
				continue
			}
			rec, err := r.vault.Store().Current(ctx, typ, id)
			if err != nil || rec.Deleted {
				continue // deleted since it was indexed
			}
			data, err := r.vault.OpenCopy(ctx, rec)
			if err != nil || data == nil {
				continue // erased since it was indexed
			}
			if withheld(d, securityLabels(data)) {
				continue
			}
			f := files[typ]
			if f == nil {
				if f, err = createNDJSON(filepath.Join(dir, typ+".ndjson")); err != nil {
					return nil, err
				}
				files[typ] = f
			}
			if err := f.add(data); err != nil {
				return nil, err
			}
		}
	}
	var out []exportFile
	for typ, f := range files {
		if err := f.close(); err != nil {
			return nil, err
		}
		out = append(out, exportFile{Type: typ, Count: f.n, SHA256: hex.EncodeToString(f.h.Sum(nil))})
	}
	slices.SortFunc(out, func(a, b exportFile) int { return strings.Compare(a.Type, b.Type) })
	if out == nil {
		out = []exportFile{}
	}

	// What is released: the files, by type, count and digest.
	released, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(released)
	record := t.record(job.query, true, nil)
	record.Released, record.Files = hex.EncodeToString(sum[:]), out
	idx, err := r.addRecord(ctx, record, job.created, job.query.Shape())
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i].URL = job.base + "/v1/cohorts/exports/" + job.id + "/files/" + out[i].Type + ".ndjson"
	}
	m, err := json.Marshal(manifest{
		TransactionTime: job.created.Format(time.RFC3339Nano), Request: job.base + "/v1/cohorts:export",
		RequiresAccessToken: true, Output: out, Error: []exportFile{},
		Extension: manifestExtension{Decision: idx, Released: record.Released, Patients: len(patients)},
	})
	if err != nil {
		return nil, err
	}
	// The owner and manifest on disk let a restarted gateway serve the
	// export until it expires.
	if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(job.client), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), m, 0o600); err != nil {
		return nil, err
	}
	return m, nil
}

func (e *exports) setProgress(job *exportJob, p string) {
	e.mu.Lock()
	job.progress = p
	e.mu.Unlock()
}

// securityLabels reads meta.security of a stored copy.
func securityLabels(data []byte) []policy.Coding {
	var r struct {
		Meta struct {
			Security []policy.Coding `json:"security"`
		} `json:"meta"`
	}
	_ = json.Unmarshal(data, &r)
	return r.Meta.Security
}

type ndjsonFile struct {
	f *os.File
	w *bufio.Writer
	h hash.Hash
	n int
}

func createNDJSON(path string) (*ndjsonFile, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create export file: %w", err)
	}
	h := sha256.New()
	return &ndjsonFile{f: f, w: bufio.NewWriter(f), h: h}, nil
}

// add appends one resource (compact JSON, no newline inside) as a line.
func (f *ndjsonFile) add(resource []byte) error {
	for _, b := range [][]byte{resource, {'\n'}} {
		if _, err := f.w.Write(b); err != nil {
			return fmt.Errorf("write export file: %w", err)
		}
		f.h.Write(b)
	}
	f.n++
	return nil
}

func (f *ndjsonFile) close() error {
	if err := f.w.Flush(); err != nil {
		return fmt.Errorf("write export file: %w", err)
	}
	if err := f.f.Sync(); err != nil {
		return fmt.Errorf("sync export file: %w", err)
	}
	return nil
}

// job returns the caller's export id, or a 404 that does not tell other
// clients' exports from missing ones.
func (e *exports) job(ctx context.Context, id string) (*exportJob, error) {
	notFound := failure(http.StatusNotFound, "not-found", "", "no such export")
	if !exportID.MatchString(id) {
		return nil, notFound
	}
	client := clientOf(ctx)
	e.mu.Lock()
	job, ok := e.jobs[id]
	e.mu.Unlock()
	if ok {
		if job.client != client {
			return nil, notFound
		}
		return job, nil
	}
	// Finished before a restart, or run by another gateway sharing the
	// export directory: the directory tells how it stands.
	dir := filepath.Join(e.dir, id)
	owner, err := os.ReadFile(filepath.Join(dir, "owner"))
	if err != nil || string(owner) != client {
		return nil, notFound
	}
	if m, err := os.ReadFile(filepath.Join(dir, "manifest.json")); err == nil {
		return &exportJob{id: id, client: client, done: true, manifest: m}, nil
	}
	if _, err := os.Stat(filepath.Join(dir, "failed")); err == nil {
		return &exportJob{id: id, client: client, done: true, failed: exportFailed}, nil
	}
	// Queued or building elsewhere, unless its builder went quiet (a
	// gateway that died with the job).
	last, err := os.Stat(filepath.Join(dir, "building"))
	if err == nil && time.Since(last.ModTime()) < heartbeatStale {
		return &exportJob{id: id, client: client, progress: "in progress on another gateway"}, nil
	}
	return &exportJob{id: id, client: client, done: true,
		failed: "the gateway running this export stopped; start a new export"}, nil
}

// GetExport answers the status URL.
func (s *cohortService) GetExport(ctx context.Context, req *fhiranchorv1.GetExportRequest) (*httpbody.HttpBody, error) {
	job, err := s.exports.job(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	s.exports.mu.Lock()
	done, failed, progress, m := job.done, job.failed, job.progress, job.manifest
	s.exports.mu.Unlock()
	switch {
	case !done:
		setResponse(ctx, http.StatusAccepted, "x-progress", progress, "retry-after", "1")
		return &httpbody.HttpBody{ContentType: "application/json", Data: []byte(`{"status":"in-progress"}`)}, nil
	case failed != "":
		return nil, failure(http.StatusInternalServerError, "exception", "", failed)
	}
	return &httpbody.HttpBody{ContentType: "application/json", Data: m}, nil
}

// GetExportFile serves one NDJSON file of a finished export.
func (s *cohortService) GetExportFile(ctx context.Context, req *fhiranchorv1.GetExportFileRequest) (*httpbody.HttpBody, error) {
	job, err := s.exports.job(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	s.exports.mu.Lock()
	ready := job.done && job.failed == ""
	s.exports.mu.Unlock()
	typ, ok := strings.CutSuffix(req.GetName(), ".ndjson")
	if !ready || !ok || !fhir.IsResourceType(typ) {
		return nil, failure(http.StatusNotFound, "not-found", "", "no such export file")
	}
	data, err := os.ReadFile(filepath.Join(s.exports.dir, job.id, typ+".ndjson"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, failure(http.StatusNotFound, "not-found", "", "no such export file")
	}
	if err != nil {
		return nil, fmt.Errorf("read export file: %w", err)
	}
	return &httpbody.HttpBody{ContentType: ndjsonType, Data: data}, nil
}

// DeleteExport cancels an export or deletes its files.
func (s *cohortService) DeleteExport(ctx context.Context, req *fhiranchorv1.DeleteExportRequest) (*httpbody.HttpBody, error) {
	job, err := s.exports.job(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	e := s.exports
	e.mu.Lock()
	if job.cancel != nil {
		job.cancel()
	}
	job.done = true
	delete(e.jobs, job.id)
	e.mu.Unlock()
	if err := os.RemoveAll(filepath.Join(e.dir, job.id)); err != nil {
		return nil, fmt.Errorf("delete export: %w", err)
	}
	setResponse(ctx, http.StatusAccepted)
	return &httpbody.HttpBody{ContentType: fhirJSON, Data: outcomeJSON(issue{Severity: "information", Code: "informational", Diagnostics: "export deleted"})}, nil
}

// expire removes exports older than the time to live, and forgets
// finished jobs as old (a failed one has no files).
func (e *exports) expire() {
	cutoff := e.r.now().Add(-e.ttl)
	e.mu.Lock()
	for id, job := range e.jobs {
		if job.done && job.created.Before(cutoff) {
			delete(e.jobs, id)
		}
	}
	e.mu.Unlock()
	entries, err := os.ReadDir(e.dir)
	if err != nil {
		return
	}
	for _, ent := range entries {
		if !ent.IsDir() || !exportID.MatchString(ent.Name()) {
			continue
		}
		info, err := ent.Info()
		if err != nil || info.ModTime().After(cutoff) {
			continue
		}
		e.mu.Lock()
		job, running := e.jobs[ent.Name()]
		if running && !job.done {
			e.mu.Unlock()
			continue
		}
		delete(e.jobs, ent.Name())
		e.mu.Unlock()
		_ = os.RemoveAll(filepath.Join(e.dir, ent.Name()))
	}
}

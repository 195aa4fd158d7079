package research

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

	"github.com/fhiranchor/fhiranchor/access"
	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/cohort"
	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/policy"
	"github.com/fhiranchor/fhiranchor/vault"
)

// Cohort export, in the manner of FHIR Bulk Data $export: the kick-off
// answers 202 with a status URL; the status answers 202 with X-Progress
// until the manifest is ready; the manifest lists one NDJSON file per
// resource type. Each export is decided per patient (action export) and
// recorded as an access-decision whose leaf commits to the SHA-256 of every
// file, before any file is served. Files hold de-identified copies only and
// live under the export directory until their time to live passes; only the
// client that asked may read them.
//
// Erasure reaches exports. Each export keeps, beside its files, keyed
// tokens of the patient compartments it holds (holds.json); an erasure leaf
// naming one of them withdraws the export: a "withdrawn" marker is written,
// every other file but the owner is deleted, and the status and file URLs
// answer 410 Gone. Every gateway follows the erasure leaves of the shared
// vault, before it serves any export, so it honours an erasure made by
// another gateway whether or not the export directory is shared.

// exportRequest is the kick-off body: a cohort query plus, optionally, the
// resource types to export (Bulk Data's _type).
type exportRequest struct {
	Type []string `json:"type"`
}

// manifest is the Bulk Data completion manifest, with our extension: the
// decision record's leaf and the hash it commits to.
type manifest struct {
	TransactionTime     string              `json:"transactionTime"`
	Request             string              `json:"request"`
	RequiresAccessToken bool                `json:"requiresAccessToken"`
	Output              []access.ExportFile `json:"output"`
	Error               []access.ExportFile `json:"error"`
	Extension           manifestExtension   `json:"extension"`
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
	request string // the kick-off URL, for the manifest

	cancel    context.CancelFunc
	done      bool
	failed    string // a failure's generic description
	withdrawn bool   // data in it was erased
	progress  string
	manifest  []byte
}

// The files of an export's directory besides its NDJSON files.
const (
	ownerFile     = "owner"         // the client id that asked: only it is served
	buildingFile  = "building"      // queued or building; touched as a heartbeat
	failedFile    = "failed"        // the build failed; no data files
	manifestFile  = "manifest.json" // finished
	holdsFile     = "holds.json"    // the patients it holds, as keyed tokens
	withdrawnFile = "withdrawn"     // withdrawn for an erasure; no data files
)

// exportHolds is what an export records of the patients it holds, so an
// erasure can find it: HMAC-SHA256 of each compartment ("Patient/<id>")
// under a key derived from the vault's master key, never an id, and never
// the pseudonym a researcher sees (that is keyed by another key), so the file
// links nothing for whoever reads the directory without the master key.
type exportHolds struct {
	// Erasures is the Seq of the newest erasure leaf committed before the
	// export selected its patients: those are reflected already (the erased
	// were not selected). Only later erasures can withdraw it.
	Erasures int64 `json:"erasures"`
	// Patients are the tokens (hex), sorted.
	Patients []string `json:"patients"`
}

// Exports runs export jobs one at a time (an export reads every resource of
// the cohort: running several at once would only compete for the vault).
type Exports struct {
	s    *Service
	dir  string
	ttl  time.Duration
	log  *slog.Logger
	hook func(stage string) // Config.Stage, or nil

	mu    sync.Mutex
	jobs  map[string]*exportJob
	queue chan *exportJob

	// follow serializes FollowErasures; erasedAfter is the Seq of the
	// last erasure leaf it applied to the export directory.
	follow      sync.Mutex
	erasedAfter int64
}

func newExports(s *Service, dir string, ttl time.Duration, log *slog.Logger, hook func(string)) *Exports {
	return &Exports{s: s, dir: dir, ttl: ttl, log: log, hook: hook, jobs: map[string]*exportJob{}, queue: make(chan *exportJob, 64)}
}

// Response is what the transport sends for an export interaction besides
// an error: the HTTP status, the headers the Bulk Data flow uses, and either
// a body or a note.
type Response struct {
	// Status is the HTTP status (200 or 202).
	Status int
	// ContentLocation is the Content-Location header (the status URL of
	// an accepted export), or "".
	ContentLocation string
	// Progress is the X-Progress header of an export in progress, or "".
	Progress string
	// RetryAfter is the Retry-After header (seconds), or "".
	RetryAfter string
	// ContentType and Body are the body, unless Note is set.
	ContentType string
	Body        []byte
	// Note, when set, is an informational message the transport sends as
	// an OperationOutcome (severity information) instead of Body.
	Note string
}

// NDJSONType is the content type of an export file.
const NDJSONType = "application/fhir+ndjson"

// exportID is 32 hex digits; anything else is not an export of ours.
var exportID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// KickOff starts an export for caller: data is a cohort query plus,
// optionally, "type", the resource types to export (Bulk Data's _type).
// base is scheme://host[/path] the export's URLs start with. The export
// runs on Run's goroutine; the Response is a 202 whose Content-Location is
// the status URL.
func (e *Exports) KickOff(ctx context.Context, caller access.Caller, base string, data []byte) (Response, error) {
	return e.KickOffFrom(ctx, caller, base, base+"/v1/cohorts:export", data)
}

// KickOffFrom is KickOff for a kick-off made at another URL (a Bulk Data
// Group/[id]/$export): request is that URL, the manifest's "request".
func (e *Exports) KickOffFrom(ctx context.Context, caller access.Caller, base, request string, data []byte) (Response, error) {
	// The query language is strict about unknown members, so the export's
	// own member is taken out before the query is parsed.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return Response{}, failure(http.StatusBadRequest, "invalid", "", "the export request must be a JSON object")
	}
	var req exportRequest
	if t, ok := raw["type"]; ok {
		if err := json.Unmarshal(t, &req.Type); err != nil {
			return Response{}, failure(http.StatusBadRequest, "invalid", "type", "type must be an array of resource type names")
		}
		delete(raw, "type")
	}
	var types map[string]bool
	for _, t := range req.Type {
		if !fhir.IsResourceType(t) {
			return Response{}, failure(http.StatusBadRequest, "invalid", "type", "type names an unknown resource type")
		}
		if types == nil {
			types = map[string]bool{}
		}
		types[t] = true
	}
	rest, err := json.Marshal(raw)
	if err != nil {
		return Response{}, err
	}
	q, err := cohort.ParseQuery(rest)
	if err != nil {
		return Response{}, failure(http.StatusBadRequest, "invalid", "", "the cohort query is not valid: "+err.Error())
	}
	id, err := newExportID()
	if err != nil {
		return Response{}, err
	}
	at := access.Now(e.s.now)
	job := &exportJob{
		id: id, client: caller.ClientID, created: at, query: q, types: types,
		tally: e.s.tally(ctx, caller, actionExport, at), base: base, request: request, progress: "queued",
	}
	// The directory and its owner exist from the start, so that another
	// gateway sharing the export directory answers the status URL too.
	dir := filepath.Join(e.dir, id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Response{}, fmt.Errorf("create export directory: %w", err)
	}
	for f, content := range map[string][]byte{ownerFile: []byte(job.client), buildingFile: nil} {
		if err := os.WriteFile(filepath.Join(dir, f), content, 0o600); err != nil {
			_ = os.RemoveAll(dir)
			return Response{}, fmt.Errorf("write export %s: %w", f, err)
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
		return Response{}, failure(http.StatusTooManyRequests, "throttled", "", "too many exports are waiting; try again later")
	}
	return Response{Status: http.StatusAccepted, ContentLocation: job.base + "/v1/cohorts/exports/" + id,
		Note: "export accepted: poll the Content-Location URL"}, nil
}

func newExportID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("export id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// Run executes queued exports and removes expired ones until ctx ends.
func (e *Exports) Run(ctx context.Context) error {
	sweep := time.NewTicker(time.Minute)
	defer sweep.Stop()
	follow := time.NewTicker(followEvery)
	defer follow.Stop()
	go e.beat(ctx)
	e.expire()
	e.followLogged(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sweep.C:
			e.expire()
		case <-follow.C:
			// Serving follows erasures too; this deletes the files of an
			// export nobody asks for.
			e.followLogged(ctx)
		case job := <-e.queue:
			e.run(ctx, job)
		}
	}
}

func (e *Exports) run(ctx context.Context, job *exportJob) {
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
	_ = os.Remove(filepath.Join(dir, buildingFile))
	e.mu.Lock()
	defer e.mu.Unlock()
	// The tally's decisions are keyed by patient: keep them no longer than
	// the build, so an erased patient's id does not linger in memory.
	job.done, job.cancel, job.tally = true, nil, nil
	if errors.Is(err, errWithdrawn) {
		job.withdrawn = true // withdraw left the marker and the owner
		return
	}
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
			_ = os.WriteFile(filepath.Join(dir, ownerFile), []byte(job.client), 0o600)
			_ = os.WriteFile(filepath.Join(dir, failedFile), nil, 0o600)
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
func (e *Exports) beat(ctx context.Context) {
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
			_ = os.Chtimes(filepath.Join(e.dir, id, buildingFile), now, now)
		}
	}
}

// build writes the export's files, records the decision and returns the
// manifest.
func (e *Exports) build(ctx context.Context, job *exportJob) ([]byte, error) {
	s := e.s
	// Every erasure committed before catchUp starts is reflected in the
	// index once it returns: the patients it erased are not selected.
	reflected, err := e.newestErasure(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.catchUp(ctx); err != nil {
		return nil, err
	}
	t := job.tally
	ix := s.idx()
	if err := t.lookUp(ix.Matching(job.query, false, job.created)); err != nil {
		return nil, err
	}
	patients := ix.Match(job.query, job.created, t.permit)
	if t.err != nil {
		return nil, fmt.Errorf("decide export consent: %w", t.err)
	}
	e.stage("selected")
	dir := filepath.Join(e.dir, job.id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create export directory: %w", err)
	}
	files := map[string]*ndjsonFile{}
	held := map[string]bool{} // compartments with at least one line written
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
		for _, key := range s.idx().Resources(p) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			typ, id, ok := strings.Cut(key, "/")
			if !ok || (job.types != nil && !job.types[typ]) {
				continue
			}
			rec, err := s.vault.Store().Current(ctx, typ, id)
			if err != nil || rec.Deleted {
				continue // deleted since it was indexed
			}
			data, err := s.vault.OpenCopy(ctx, rec)
			if err != nil || data == nil {
				continue // erased since it was indexed
			}
			if access.Withholds(d, securityLabels(data)) {
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
			held[p] = true
		}
	}
	var out []access.ExportFile
	for typ, f := range files {
		if err := f.close(); err != nil {
			return nil, err
		}
		out = append(out, access.ExportFile{Type: typ, Count: f.n, SHA256: hex.EncodeToString(f.h.Sum(nil))})
	}
	slices.SortFunc(out, func(a, b access.ExportFile) int { return strings.Compare(a.Type, b.Type) })
	if out == nil {
		out = []access.ExportFile{}
	}
	e.stage("files")

	// Before anything is released: record whom the export holds, so that
	// any later erasure finds it, then look for an erasure of one of them
	// committed since the selection (while the files were written).
	if err := e.writeHolds(job.id, reflected, held); err != nil {
		return nil, err
	}
	if n, err := e.erasedSince(ctx, reflected, held); err != nil {
		return nil, err
	} else if n > 0 {
		if err := e.withdraw(ctx, job.id, n); err != nil {
			return nil, err
		}
		return nil, errWithdrawn
	}
	e.stage("holds")

	// What is released: the files, by type, count and digest.
	released, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(released)
	record := t.record(job.query, true, nil)
	record.Released, record.Files = hex.EncodeToString(sum[:]), out
	idx, err := s.addRecord(ctx, record, job.created)
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i].URL = job.base + "/v1/cohorts/exports/" + job.id + "/files/" + out[i].Type + ".ndjson"
	}
	m, err := json.Marshal(manifest{
		TransactionTime: job.created.Format(time.RFC3339Nano), Request: job.request,
		RequiresAccessToken: true, Output: out, Error: []access.ExportFile{},
		Extension: manifestExtension{Decision: idx, Released: record.Released, Patients: len(patients)},
	})
	if err != nil {
		return nil, err
	}
	// The owner and manifest on disk let a restarted gateway serve the
	// export until it expires.
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(job.client), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, manifestFile), m, 0o600); err != nil {
		return nil, err
	}
	// An erasure committed after the check above withdrew the export from
	// holds.json (here or on another gateway), perhaps before the manifest
	// was written: take it away again.
	if _, err := os.Stat(filepath.Join(dir, withdrawnFile)); err == nil {
		if err := e.withdraw(ctx, job.id, 0); err != nil {
			return nil, err
		}
		return nil, errWithdrawn
	}
	return m, nil
}

// errWithdrawn ends a build whose export was withdrawn for an erasure.
var errWithdrawn = errors.New("export withdrawn: data in it was erased")

// stage runs Config.Stage, if set, at a named stage of a build.
func (e *Exports) stage(name string) {
	if e.hook != nil {
		e.hook(name)
	}
}

func (e *Exports) setProgress(job *exportJob, p string) {
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

// job returns the client's export id, or a 404 that does not tell other
// clients' exports from missing ones. It first applies every erasure
// committed so far to the export directory, so that no gateway serves an
// export holding a patient erased by another.
func (e *Exports) job(ctx context.Context, client, id string) (*exportJob, error) {
	notFound := failure(http.StatusNotFound, "not-found", "", "no such export")
	if !exportID.MatchString(id) {
		return nil, notFound
	}
	if _, err := e.FollowErasures(ctx); err != nil {
		// Fail closed: an export that cannot be checked is not served.
		return nil, err
	}
	dir := filepath.Join(e.dir, id)
	withdrawn := func() bool {
		_, err := os.Stat(filepath.Join(dir, withdrawnFile))
		return err == nil
	}
	e.mu.Lock()
	job, ok := e.jobs[id]
	e.mu.Unlock()
	if ok {
		if job.client != client {
			return nil, notFound
		}
		// Another gateway sharing the directory may have withdrawn it.
		if withdrawn() {
			e.mu.Lock()
			job.withdrawn, job.manifest = true, nil
			e.mu.Unlock()
		}
		return job, nil
	}
	// Finished before a restart, or run by another gateway sharing the
	// export directory: the directory tells how it stands.
	owner, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if err != nil || string(owner) != client {
		return nil, notFound
	}
	if withdrawn() {
		return &exportJob{id: id, client: client, done: true, withdrawn: true}, nil
	}
	if m, err := os.ReadFile(filepath.Join(dir, manifestFile)); err == nil {
		return &exportJob{id: id, client: client, done: true, manifest: m}, nil
	}
	if _, err := os.Stat(filepath.Join(dir, failedFile)); err == nil {
		return &exportJob{id: id, client: client, done: true, failed: exportFailed}, nil
	}
	// Queued or building elsewhere, unless its builder went quiet (a
	// gateway that died with the job).
	last, err := os.Stat(filepath.Join(dir, buildingFile))
	if err == nil && time.Since(last.ModTime()) < heartbeatStale {
		return &exportJob{id: id, client: client, progress: "in progress on another gateway"}, nil
	}
	return &exportJob{id: id, client: client, done: true,
		failed: "the gateway running this export stopped; start a new export"}, nil
}

// Status answers the status URL of export id for caller: 202 with
// X-Progress while it runs, then the Bulk Data manifest.
func (e *Exports) Status(ctx context.Context, caller access.Caller, id string) (Response, error) {
	job, err := e.job(ctx, caller.ClientID, id)
	if err != nil {
		return Response{}, err
	}
	e.mu.Lock()
	done, failed, withdrawn, progress, m := job.done, job.failed, job.withdrawn, job.progress, job.manifest
	e.mu.Unlock()
	switch {
	case withdrawn:
		return Response{}, exportWithdrawn()
	case !done:
		return Response{Status: http.StatusAccepted, Progress: progress, RetryAfter: "1",
			ContentType: "application/json", Body: []byte(`{"status":"in-progress"}`)}, nil
	case failed != "":
		return Response{}, failure(http.StatusInternalServerError, "exception", "", failed)
	}
	return Response{Status: http.StatusOK, ContentType: "application/json", Body: m}, nil
}

// File serves the NDJSON file name ("<type>.ndjson") of finished export id
// to caller.
func (e *Exports) File(ctx context.Context, caller access.Caller, id, name string) (Response, error) {
	job, err := e.job(ctx, caller.ClientID, id)
	if err != nil {
		return Response{}, err
	}
	e.mu.Lock()
	ready, withdrawn := job.done && job.failed == "", job.withdrawn
	e.mu.Unlock()
	if withdrawn {
		return Response{}, exportWithdrawn()
	}
	typ, ok := strings.CutSuffix(name, ".ndjson")
	if !ready || !ok || !fhir.IsResourceType(typ) {
		return Response{}, failure(http.StatusNotFound, "not-found", "", "no such export file")
	}
	dir := filepath.Join(e.dir, job.id)
	data, err := os.ReadFile(filepath.Join(dir, typ+".ndjson"))
	if errors.Is(err, os.ErrNotExist) {
		// Withdrawn while this request ran?
		if _, err := os.Stat(filepath.Join(dir, withdrawnFile)); err == nil {
			return Response{}, exportWithdrawn()
		}
		return Response{}, failure(http.StatusNotFound, "not-found", "", "no such export file")
	}
	if err != nil {
		return Response{}, fmt.Errorf("read export file: %w", err)
	}
	return Response{Status: http.StatusOK, ContentType: NDJSONType, Body: data}, nil
}

// Delete cancels caller's export id or deletes its files.
func (e *Exports) Delete(ctx context.Context, caller access.Caller, id string) (Response, error) {
	job, err := e.job(ctx, caller.ClientID, id)
	if err != nil {
		return Response{}, err
	}
	e.mu.Lock()
	if job.cancel != nil {
		job.cancel()
	}
	job.done = true
	delete(e.jobs, job.id)
	e.mu.Unlock()
	if err := os.RemoveAll(filepath.Join(e.dir, job.id)); err != nil {
		return Response{}, fmt.Errorf("delete export: %w", err)
	}
	return Response{Status: http.StatusAccepted, Note: "export deleted"}, nil
}

// expire removes exports older than the time to live, and forgets
// finished jobs as old (a failed one has no files).
func (e *Exports) expire() {
	cutoff := e.s.now().Add(-e.ttl)
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

// exportWithdrawn is what the status and file URLs of a withdrawn export
// answer. It names neither the patient nor how many were erased.
func exportWithdrawn() error {
	return failure(http.StatusGone, "deleted", "",
		"this export was withdrawn because data in it was erased; start a new export")
}

// followEvery is how often Run applies new erasures to the export directory
// when no request does.
const followEvery = 5 * time.Second

// followLogged is FollowErasures for Run: errors go to the log.
func (e *Exports) followLogged(ctx context.Context) {
	if _, err := e.FollowErasures(ctx); err != nil && ctx.Err() == nil {
		e.log.ErrorContext(ctx, "exports could not follow erasures", slog.String("err", err.Error()))
	}
}

// FollowErasures withdraws every export of the directory that holds a
// patient erased since the last call, and returns how many it withdrew.
// The first call after a start reads every erasure: the directory may have
// been written while this gateway was down. Like Service.applyErasures, it
// relies on leaf Seqs becoming visible in increasing order.
func (e *Exports) FollowErasures(ctx context.Context) (int, error) {
	e.follow.Lock()
	defer e.follow.Unlock()
	fresh, err := e.erasuresAfter(ctx, e.erasedAfter)
	if err != nil || len(fresh) == 0 {
		return 0, err
	}
	n, err := e.sweep(ctx, fresh)
	if err != nil {
		return n, err
	}
	e.erasedAfter = fresh[len(fresh)-1].Seq
	return n, nil
}

// erasuresAfter returns the erasure leaves with a Seq above after, oldest
// first.
func (e *Exports) erasuresAfter(ctx context.Context, after int64) ([]vault.Leaf, error) {
	var fresh []vault.Leaf
	before := int64(0)
	for {
		ls, err := e.s.vault.Store().FindLeaves(ctx, vault.LeafFilter{Type: uint8(anchor.LeafErasure), Before: before, Limit: 256})
		if err != nil {
			return nil, fmt.Errorf("read erasures: %w", err)
		}
		for _, l := range ls {
			if l.Seq <= after {
				slices.Reverse(fresh)
				return fresh, nil
			}
			fresh = append(fresh, l)
		}
		if len(ls) < 256 {
			slices.Reverse(fresh)
			return fresh, nil
		}
		before = ls[len(ls)-1].Seq
	}
}

// newestErasure returns the Seq of the newest erasure leaf, or 0.
func (e *Exports) newestErasure(ctx context.Context) (int64, error) {
	ls, err := e.s.vault.Store().FindLeaves(ctx, vault.LeafFilter{Type: uint8(anchor.LeafErasure), Limit: 1})
	if err != nil {
		return 0, fmt.Errorf("read erasures: %w", err)
	}
	if len(ls) == 0 {
		return 0, nil
	}
	return ls[0].Seq, nil
}

// erasedSince counts the patients of held erased by a leaf above after.
func (e *Exports) erasedSince(ctx context.Context, after int64, held map[string]bool) (int, error) {
	fresh, err := e.erasuresAfter(ctx, after)
	if err != nil {
		return 0, err
	}
	if len(fresh) == 0 {
		return 0, nil
	}
	tokens := make(map[string]bool, len(held))
	for p := range held {
		tokens[e.holdToken(p)] = true
	}
	n := 0
	for _, l := range fresh {
		if tokens[l.Subject] {
			n++
		}
	}
	return n, nil
}

// holdToken is the token of a compartment in holds.json: its recordRef,
// the name erasure leaves give the patient.
func (e *Exports) holdToken(compartment string) string {
	return access.Ref(e.s.vault, compartment)
}

// writeHolds records the patients an export holds.
func (e *Exports) writeHolds(id string, reflected int64, held map[string]bool) error {
	h := exportHolds{Erasures: reflected, Patients: make([]string, 0, len(held))}
	for p := range held {
		h.Patients = append(h.Patients, e.holdToken(p))
	}
	slices.Sort(h.Patients) // sorted: not in the order of the files
	data, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(e.dir, id, holdsFile), data, 0o600); err != nil {
		return fmt.Errorf("write export holds: %w", err)
	}
	return nil
}

// clockSkew bounds how far the clocks of gateways sharing a directory may
// disagree; it widens the test for an export that has no holds.json.
const clockSkew = 5 * time.Minute

// sweep withdraws the exports of the directory that hold a patient erased
// by one of the leaves fresh.
func (e *Exports) sweep(ctx context.Context, fresh []vault.Leaf) (int, error) {
	erased := map[string]int64{} // token -> Seq of its erasure
	var newest time.Time
	for _, l := range fresh {
		if !strings.HasPrefix(l.Subject, "Patient/") {
			continue
		}
		erased[l.Subject] = l.Seq // a recordRef, as holds.json keeps them
		if l.Time.After(newest) {
			newest = l.Time
		}
	}
	if len(erased) == 0 {
		return 0, nil
	}
	entries, err := os.ReadDir(e.dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read export directory: %w", err)
	}
	withdrawn := 0
	for _, ent := range entries {
		if !ent.IsDir() || !exportID.MatchString(ent.Name()) {
			continue
		}
		hits, err := e.holdsErased(filepath.Join(e.dir, ent.Name()), erased, newest)
		if err != nil {
			return withdrawn, err
		}
		if hits > 0 {
			if err := e.withdraw(ctx, ent.Name(), hits); err != nil {
				return withdrawn, err
			}
			withdrawn++
		}
	}
	return withdrawn, nil
}

// holdsErased tells how many of the erasures (tokens to Seqs, the newest
// made at newest) an export's directory holds data of.
func (e *Exports) holdsErased(dir string, erased map[string]int64, newest time.Time) (int, error) {
	data, err := os.ReadFile(filepath.Join(dir, holdsFile))
	switch {
	case err == nil:
		var h exportHolds
		if err := json.Unmarshal(data, &h); err != nil {
			return len(erased), nil // it cannot be told apart: withdraw it
		}
		hits := 0
		for _, p := range h.Patients {
			if seq, ok := erased[p]; ok && seq > h.Erasures {
				hits++
			}
		}
		return hits, nil
	case errors.Is(err, os.ErrNotExist):
	default:
		return 0, fmt.Errorf("read export holds: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, withdrawnFile)); err == nil {
		return 0, e.removeData(dir) // a manifest written after the withdrawal
	}
	// A finished export without holds.json was made before exports kept
	// them: it may hold anyone, so any erasure after it began withdraws it.
	if m, err := os.ReadFile(filepath.Join(dir, manifestFile)); err == nil {
		var mf struct {
			TransactionTime time.Time `json:"transactionTime"`
		}
		if json.Unmarshal(m, &mf) != nil || !newest.Before(mf.TransactionTime.Add(-clockSkew)) {
			return len(erased), nil
		}
		return 0, nil
	}
	// Being built: the builder checks for erasures once its files are
	// written. Otherwise failed, or abandoned by a gateway that died while
	// building: partial files may hold the erased, and nobody serves them.
	if last, err := os.Stat(filepath.Join(dir, buildingFile)); err == nil && time.Since(last.ModTime()) < heartbeatStale {
		return 0, nil
	}
	return 0, e.removeData(dir)
}

// removeData deletes every file of an export's directory but its owner and
// the markers that tell why the data is gone.
func (e *Exports) removeData(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read export: %w", err)
	}
	for _, ent := range entries {
		switch ent.Name() {
		case ownerFile, withdrawnFile, failedFile:
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, ent.Name())); err != nil {
			return fmt.Errorf("delete export data: %w", err)
		}
	}
	return nil
}

// withdraw marks an export withdrawn, then deletes its data; erased is how
// many of its patients were erased (0: not known here), for the log. The
// marker comes first, so a reader that misses a file finds it.
func (e *Exports) withdraw(ctx context.Context, id string, erased int) error {
	dir := filepath.Join(e.dir, id)
	f, err := os.OpenFile(filepath.Join(dir, withdrawnFile), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	fresh := err == nil
	switch {
	case fresh:
		err = errors.Join(f.Sync(), f.Close())
		if err != nil {
			return fmt.Errorf("mark export withdrawn: %w", err)
		}
	case errors.Is(err, os.ErrNotExist):
		return nil // deleted or expired meanwhile: nothing left to withdraw
	case !errors.Is(err, os.ErrExist):
		return fmt.Errorf("mark export withdrawn: %w", err)
	}
	if err := e.removeData(dir); err != nil {
		return err
	}
	e.mu.Lock()
	if job := e.jobs[id]; job != nil {
		job.withdrawn, job.manifest = true, nil
	}
	e.mu.Unlock()
	if fresh {
		e.log.WarnContext(ctx, "cohort export withdrawn: data in it was erased",
			slog.String("export", id), slog.Int("erased", erased))
	}
	return nil
}

// ValidateCriteria checks cohort criteria (the "criteria" member of a
// query) as an export would parse them: a *Error (400) when they are not
// valid.
func ValidateCriteria(criteria json.RawMessage) error {
	q, err := json.Marshal(struct {
		Criteria json.RawMessage `json:"criteria"`
	}{criteria})
	if err != nil {
		return failure(http.StatusBadRequest, "invalid", "", "the cohort criteria are not JSON")
	}
	if _, err := cohort.ParseQuery(q); err != nil {
		return failure(http.StatusBadRequest, "invalid", "", "the cohort criteria are not valid: "+err.Error())
	}
	return nil
}

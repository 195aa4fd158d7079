package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fhiranchor/fhiranchor/gateway/auth"
)

const pushUsage = `usage: fhiranchor push [flags] PATH...

Sends FHIR data to a gateway. Each PATH is a file or a folder (walked
recursively; files ending .json or .ndjson, in lexical order).

  *.json    a transaction or batch Bundle, POSTed unchanged to the base URL,
            or a single resource, POSTed to <base>/<resourceType>
  *.ndjson  one resource per line (Bulk Data style), sent as batch Bundles of
            --batch-size entries: PUT <type>/<id>, or POST <type> without an id

Every request carries an Idempotency-Key (SHA-256 of the body), so pushing the
same file again, or a retry after a lost answer, creates nothing twice. A
request the server could not take (429, 502, 503, 504, or no answer at all)
is retried with the same key, backing off exponentially and waiting at least
as long as the server's Retry-After, for up to --retry-for.

Token: --token, else $FHIRANCHOR_TOKEN, else a short-lived dev token signed by
<data>/dev-signing-key.pem if it exists (as 'fhiranchor serve' creates it).

example:
  fhiranchor push --server http://127.0.0.1:8080/fhir/r4 ./synthea/output/fhir/

flags:
`

// Defaults of push. A retry is safe (same Idempotency-Key), so push retries
// for as long as --retry-for allows: a database restart or an overload
// passes without failing files.
const (
	defaultServer    = "http://127.0.0.1:8080/fhir/r4"
	defaultRetryFor  = 2 * time.Minute
	pushFirstBackoff = 500 * time.Millisecond
	pushMaxBackoff   = 30 * time.Second
	// maxResponseBytes bounds what push reads of an answer; a transaction-response
	// is small next to its request, so this only guards against a broken server.
	maxResponseBytes = 64 << 20
	// maxNDJSONLine bounds one NDJSON line; a resource larger than this is
	// rejected locally rather than exhausting memory.
	maxNDJSONLine = 64 << 20
	// maxErrorsPerFile keeps the summary readable when a server rejects a whole
	// NDJSON file entry by entry.
	maxErrorsPerFile = 10
	// devTokenTTL is short because push mints the token itself and re-mints it
	// (devTokenSource) well before it expires.
	devTokenTTL = 15 * time.Minute
)

// pushScopes are the scopes of the dev token push mints for itself.
var pushScopes = []string{"system/*.write", "system/*.read"}

// runPush implements 'fhiranchor push'. It returns an error when a file could
// not be sent or the server rejected any entry, so scripts and CI can rely on
// the exit status alone.
func runPush(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fset := flag.NewFlagSet("push", flag.ContinueOnError)
	fset.SetOutput(stderr)
	fset.Usage = func() {
		fmt.Fprint(stderr, pushUsage)
		fset.PrintDefaults()
	}
	server := fset.String("server", defaultServer, "FHIR base `URL` of the gateway (the path up to and including /fhir/r4)")
	token := fset.String("token", "", "bearer `token` (prefer $FHIRANCHOR_TOKEN: flags show in the process list)")
	dataDir := fset.String("data", "./data", "data `dir`ectory of a local 'fhiranchor serve'; its dev key mints a token when none is given")
	concurrency := fset.Int("concurrency", 4, "files in flight at once")
	batchSize := fset.Int("batch-size", 500, "resources per batch Bundle when sending NDJSON")
	timeout := fset.Duration("timeout", 5*time.Minute, "time limit of one HTTP request attempt")
	retryFor := fset.Duration("retry-for", defaultRetryFor, "keep retrying a request the server could not take (429, 502-504, no answer) for up to this `duration`; 0: never retry")
	noProgress := fset.Bool("no-progress", false, "print one line per file instead of a progress bar")
	paths, err := parseInterspersed(fset, args)
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		fset.Usage()
		return errors.New("push: no PATH given")
	}
	switch {
	case *concurrency < 1:
		return fmt.Errorf("push: --concurrency must be at least 1, got %d", *concurrency)
	case *batchSize < 1:
		return fmt.Errorf("push: --batch-size must be at least 1, got %d", *batchSize)
	case *timeout <= 0:
		return fmt.Errorf("push: --timeout must be positive, got %v", *timeout)
	case *retryFor < 0:
		return fmt.Errorf("push: --retry-for must not be negative, got %v", *retryFor)
	}
	base, err := parseBaseURL(*server)
	if err != nil {
		return fmt.Errorf("push: --server: %w", err)
	}
	files, err := collectFiles(paths)
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	if len(files) == 0 {
		return errors.New("push: no .json or .ndjson files found")
	}
	tokens, err := resolveToken("push", pushScopes, false, *token, getenv, *dataDir, stderr)
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}

	p := &pusher{
		base:      base,
		client:    newPushClient(*concurrency),
		token:     tokens,
		batchSize: *batchSize,
		timeout:   *timeout,
		retryFor:  *retryFor,
	}
	p.progress = newProgress(stderr, len(files), !*noProgress && isTerminal(stderr))
	results := p.run(ctx, files, *concurrency)
	p.client.CloseIdleConnections()
	p.progress.finish()
	return writeSummary(stdout, results, p.progress.elapsed(), p.stopReason(ctx))
}

// parseInterspersed parses flags that may follow positional arguments, so that
// 'push ./bundles --no-progress' works as users of most CLIs expect; the flag
// package alone stops at the first non-flag.
func parseInterspersed(fset *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fset.Parse(args); err != nil {
			return nil, err
		}
		rest := fset.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), nil // everything after "--" is a PATH
		}
		if len(rest) == 0 {
			return positional, nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// parseBaseURL checks that the --server value is an absolute http(s) URL and
// drops a trailing slash so that <base>/<type> joins cleanly.
func parseBaseURL(s string) (string, error) { return parseServerURL(s, defaultServer) }

// parseServerURL checks that a --server value is an absolute http(s) URL
// with no query or fragment, and drops a trailing slash; example is what a
// good value looks like, for the error.
func parseServerURL(s, example string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("want an http(s) URL such as %s, got %q", example, s)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("the server URL takes no query or fragment, got %q", s)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// collectFiles expands PATH arguments into the ordered list of files to send.
// Folders contribute their .json and .ndjson files in filepath.WalkDir's
// lexical order; a file named explicitly must have one of those extensions so
// that a typo fails before anything is sent.
func collectFiles(paths []string) ([]string, error) {
	var files []string
	for _, root := range paths {
		info, err := os.Stat(root)
		if err != nil {
			return nil, err
		}
		if !info.IsDir() {
			if fileKind(root) == "" {
				return nil, fmt.Errorf("%s: want a .json or .ndjson file", root)
			}
			files = append(files, root)
			continue
		}
		err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() && fileKind(path) != "" {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("walk %s: %w", root, err)
		}
	}
	return files, nil
}

// fileKind returns ".json" or ".ndjson" for files push sends and "" otherwise.
func fileKind(path string) string {
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".json", ".ndjson":
		return ext
	}
	return ""
}

// tokenSource yields the bearer token for the next request; "" sends none.
type tokenSource func() (string, error)

// resolveToken picks the token in the documented order: flag, environment,
// then the local dev key, from which it mints tokens with scopes. The dev
// key is used only if it already exists: creating one here would mint
// tokens that no running server trusts. Without any, cmd (the subcommand,
// for messages) sends requests without a token, or fails if required.
func resolveToken(cmd string, scopes []string, required bool, flagToken string, getenv func(string) string, dataDir string, stderr io.Writer) (tokenSource, error) {
	static := func(t string) tokenSource { return func() (string, error) { return t, nil } }
	if t := strings.TrimSpace(flagToken); t != "" {
		return static(t), nil
	}
	if t := strings.TrimSpace(getenv("FHIRANCHOR_TOKEN")); t != "" {
		return static(t), nil
	}
	keyPath := auth.DevKeyPath(dataDir)
	if _, err := os.Stat(keyPath); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("check dev key: %w", err)
		}
		if required {
			return nil, fmt.Errorf("no token: pass --token, set $FHIRANCHOR_TOKEN, or point --data at a local serve's data directory (no dev key at %s)", keyPath)
		}
		fmt.Fprintf(stderr, "%s: no token (--token, $FHIRANCHOR_TOKEN, or a dev key at %s); sending requests without one\n", cmd, keyPath)
		return static(""), nil
	}
	key, err := auth.LoadOrCreateDevKey(dataDir)
	if err != nil {
		return nil, fmt.Errorf("load dev key: %w", err)
	}
	fmt.Fprintf(stderr, "%s: using a dev token signed by %s\n", cmd, keyPath)
	return devTokenSource(key, scopes), nil
}

// devTokenSource mints dev tokens on demand and re-mints at half their
// lifetime, so a push that runs longer than devTokenTTL keeps working.
func devTokenSource(key *ecdsa.PrivateKey, scopes []string) tokenSource {
	var (
		mu     sync.Mutex
		tok    string
		minted time.Time
	)
	return func() (string, error) {
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		if tok != "" && now.Sub(minted) < devTokenTTL/2 {
			return tok, nil
		}
		t, err := auth.MintToken(key, auth.Claims{
			ClientID: "dev-client",
			Scopes:   scopes,
			TTL:      devTokenTTL,
			Now:      now,
		})
		if err != nil {
			return "", fmt.Errorf("mint dev token: %w", err)
		}
		tok, minted = t, now
		return tok, nil
	}
}

// newPushClient returns an HTTP client whose idle pool keeps one connection
// per worker, so the files in flight reuse connections instead of re-dialling.
// It refuses redirects that would turn the POST into a GET (301/302/303):
// following one would silently drop the Bundle.
func newPushClient(concurrency int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = max(tr.MaxIdleConns, concurrency)
	tr.MaxIdleConnsPerHost = concurrency
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			if req.Method != via[0].Method {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
}

// pusher sends files to one server and tallies what the server answered.
type pusher struct {
	base      string
	client    *http.Client
	token     tokenSource
	batchSize int
	timeout   time.Duration
	retryFor  time.Duration // how long a request is retried
	progress  *progress

	// unauthorized is set on the first 401: the token is wrong for every
	// file, so push stops sending rather than failing each file in turn.
	unauthorized atomic.Bool
}

// fileResult is what push learned about one file. Counts are of resources
// (Bundle entries or NDJSON lines): accepted and rejected are the server's
// answers; unsent ones never got an answer (a local error, a network failure
// after all retries, or push stopped).
type fileResult struct {
	path     string
	started  bool
	entries  int
	accepted int
	rejected int
	unsent   int
	errs     []string
	moreErrs int
}

// failed reports whether the file counts as an error in the summary.
func (r *fileResult) failed() bool {
	return r.rejected > 0 || r.unsent > 0 || len(r.errs) > 0
}

// addErr records a message, keeping at most maxErrorsPerFile per file.
func (r *fileResult) addErr(format string, args ...any) {
	if len(r.errs) >= maxErrorsPerFile {
		r.moreErrs++
		return
	}
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// run sends files with a fixed number of workers and returns one result per
// file, in the order of files. Files not started (after a 401 or when ctx
// ends) keep a zero result with started == false.
func (p *pusher) run(ctx context.Context, files []string, concurrency int) []fileResult {
	results := make([]fileResult, len(files))
	for i, f := range files {
		results[i].path = f
	}
	stopTicker := p.progress.startTicker()
	defer stopTicker()

	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(concurrency, len(files)) {
		wg.Go(func() {
			for i := range jobs {
				if p.unauthorized.Load() || ctx.Err() != nil {
					continue // handed over before the 401 or ctx end was seen
				}
				r := &results[i]
				r.started = true
				p.pushFile(ctx, r)
				p.progress.fileDone(r)
			}
		})
	}
feed:
	for i := range files {
		if p.unauthorized.Load() {
			break
		}
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	return results
}

// stopReason explains why push stopped before sending every file, or ""
// when it did not.
func (p *pusher) stopReason(ctx context.Context) string {
	switch {
	case p.unauthorized.Load():
		return "stopped after HTTP 401: give a token with --token or $FHIRANCHOR_TOKEN, or point --data at the server's data directory"
	case ctx.Err() != nil:
		return fmt.Sprintf("interrupted: %v", ctx.Err())
	}
	return ""
}

// pushFile sends one file and fills r.
func (p *pusher) pushFile(ctx context.Context, r *fileResult) {
	if fileKind(r.path) == ".ndjson" {
		p.pushNDJSON(ctx, r)
		return
	}
	p.pushJSON(ctx, r)
}

// resourceHead is the part of a resource push needs to route it. Type and
// Entry stay raw because other resources use those names for other shapes
// (Encounter.type is an array, AuditEvent.entity...); they are read only
// for a Bundle.
type resourceHead struct {
	ResourceType string          `json:"resourceType"`
	ID           string          `json:"id"`
	Type         json.RawMessage `json:"type"`
	Entry        json.RawMessage `json:"entry"`
}

// bundleShape reads Bundle.type and the number of Bundle.entry elements.
func (h *resourceHead) bundleShape() (typ string, entries int, err error) {
	if len(h.Type) > 0 {
		if err := json.Unmarshal(h.Type, &typ); err != nil {
			return "", 0, errors.New("Bundle.type is not a string")
		}
	}
	if len(h.Entry) > 0 && string(h.Entry) != "null" {
		var e []struct{}
		if err := json.Unmarshal(h.Entry, &e); err != nil {
			return "", 0, errors.New("Bundle.entry is not an array of objects")
		}
		entries = len(e)
	}
	return typ, entries, nil
}

// describeJSONError says why a file or line is not a JSON object without
// quoting it or naming Go types.
func describeJSONError(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("invalid JSON at byte %d: %v", syn.Offset, err)
	case errors.As(err, &typ) && typ.Field == "":
		return "not a JSON object"
	case errors.As(err, &typ):
		return fmt.Sprintf("%s is not a %s", typ.Field, typ.Type)
	}
	return err.Error()
}

// pushJSON sends a .json file unchanged: a transaction or batch Bundle to the
// base URL, any other resource to <base>/<resourceType>.
func (p *pusher) pushJSON(ctx context.Context, r *fileResult) {
	body, err := os.ReadFile(r.path)
	if err != nil {
		r.addErr("read: %v", err)
		return
	}
	var head resourceHead
	if err := json.Unmarshal(body, &head); err != nil {
		r.addErr("not a FHIR JSON resource: %s", describeJSONError(err))
		return
	}
	req := request{body: body, entries: 1, label: func(int) string { return head.ResourceType }}
	switch {
	case head.ResourceType == "Bundle":
		typ, n, err := head.bundleShape()
		if err != nil {
			r.addErr("%v", err)
			return
		}
		if typ != "transaction" && typ != "batch" {
			r.entries, r.unsent = n, n
			r.addErr("Bundle type is %q: push sends only transaction or batch Bundles", typ)
			return
		}
		req.url = p.base
		req.entries = n
		req.bundle = true
		req.label = func(i int) string { return fmt.Sprintf("Bundle.entry[%d]", i) }
	case validResourceType(head.ResourceType):
		req.url = p.base + "/" + head.ResourceType
	default:
		r.entries, r.unsent = 1, 1
		r.addErr("not a FHIR resource: missing or invalid resourceType")
		return
	}
	r.entries = req.entries
	p.send(ctx, &req, r)
}

// pushNDJSON streams an NDJSON file as batch Bundles of p.batchSize entries,
// one batch in flight per file. Lines that are not resources are counted as
// unsent and reported by line number; the other lines are still sent.
func (p *pusher) pushNDJSON(ctx context.Context, r *fileResult) {
	f, err := os.Open(r.path)
	if err != nil {
		r.addErr("open: %v", err)
		return
	}
	defer f.Close()

	var (
		body  bytes.Buffer
		lines []int // line number of each entry in the current batch
		batch int
	)
	flush := func() {
		if len(lines) == 0 {
			return
		}
		body.WriteString("]}")
		batch++
		batchLines := lines
		req := request{
			url:     p.base,
			body:    body.Bytes(),
			entries: len(batchLines),
			bundle:  true,
			what:    fmt.Sprintf("batch %d (lines %d-%d)", batch, batchLines[0], batchLines[len(batchLines)-1]),
			label:   func(i int) string { return fmt.Sprintf("line %d", batchLines[i]) },
		}
		p.send(ctx, &req, r)
		// A fresh buffer rather than Reset: net/http documents no point after
		// which a request body is certainly no longer read.
		body = bytes.Buffer{}
		lines = nil
	}

	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), maxNDJSONLine)
	n := 0
	for sc.Scan() {
		n++
		if ctx.Err() != nil || p.unauthorized.Load() {
			r.unsent += len(lines)
			r.addErr("stopped before line %d", n)
			return
		}
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		r.entries++
		var head resourceHead
		if err := json.Unmarshal(line, &head); err != nil {
			r.unsent++
			r.addErr("line %d: not a JSON resource: %s", n, describeJSONError(err))
			continue
		}
		if !validResourceType(head.ResourceType) {
			r.unsent++
			r.addErr("line %d: missing or invalid resourceType", n)
			continue
		}
		method, target := "POST", head.ResourceType
		if head.ID != "" {
			if !validID(head.ID) {
				r.unsent++
				r.addErr("line %d: id is not a valid FHIR id", n)
				continue
			}
			method, target = "PUT", head.ResourceType+"/"+head.ID
		}
		if len(lines) == 0 {
			body.WriteString(`{"resourceType":"Bundle","type":"batch","entry":[`)
		} else {
			body.WriteByte(',')
		}
		// The URL is built from validated characters only, so it needs no escaping.
		fmt.Fprintf(&body, `{"request":{"method":%q,"url":%q},"resource":`, method, target)
		body.Write(line)
		body.WriteByte('}')
		lines = append(lines, n)
		if len(lines) == p.batchSize {
			flush()
		}
	}
	if err := sc.Err(); err != nil {
		r.addErr("line %d: %v", n+1, err)
	}
	flush()
}

// validResourceType reports whether s looks like a FHIR resource type name
// (it is used in a URL path, so anything else is refused before sending).
func validResourceType(s string) bool {
	if len(s) == 0 || len(s) > 64 || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// validID reports whether s matches the FHIR id type, [A-Za-z0-9\-\.]{1,64}.
func validID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// request is one HTTP request of a push and what is needed to attribute the
// server's answer to the entries it carried.
type request struct {
	url     string
	body    []byte
	entries int
	// bundle is set when the body is a Bundle, whose answer should be a
	// transaction-response or batch-response with one entry per request entry.
	bundle bool
	// what names the request in errors when a file takes several ("batch 2 ...").
	what string
	// label names entry i in errors: "Bundle.entry[3]" or "line 1207".
	label func(i int) string
}

// send posts req, retrying as post does, and adds the outcome to r.
func (p *pusher) send(ctx context.Context, req *request, r *fileResult) {
	prefix := ""
	if req.what != "" {
		prefix = req.what + ": "
	}
	status, body, err := p.post(ctx, req.url, req.body)
	if err != nil {
		r.unsent += req.entries
		r.addErr("%s%v", prefix, err)
		return
	}
	if status == http.StatusUnauthorized {
		p.unauthorized.Store(true)
	}
	acc, rej, msgs := tally(req, status, body)
	r.accepted += acc
	r.rejected += rej
	for _, m := range msgs {
		r.addErr("%s%s", prefix, m)
	}
	p.progress.addResources(acc + rej)
}

// redirectError reports a redirect push refused to follow (see
// newPushClient). Retrying it would only get the same answer.
type redirectError struct {
	status   int
	location string
}

func (e *redirectError) Error() string {
	return fmt.Sprintf("HTTP %d redirect to %q: pass the final FHIR base URL as --server", e.status, e.location)
}

// post sends body to target and returns the final status and response body.
// Network errors and 429/502/503/504 are retried, for up to p.retryFor, with
// the same Idempotency-Key, so the server can answer a retry of a request it
// already committed from its memory instead of committing it twice. The
// waits grow exponentially (with jitter) and are never shorter than the
// server's Retry-After.
func (p *pusher) post(ctx context.Context, target string, body []byte) (int, []byte, error) {
	sum := sha256.Sum256(body)
	key := hex.EncodeToString(sum[:])
	giveUp := time.Now().Add(p.retryFor)
	var lastErr error
	for attempt := 1; ; attempt++ {
		tok, err := p.token() // per attempt: a dev token may be re-minted
		if err != nil {
			return 0, nil, err
		}
		status, respBody, retryAfter, err := p.postOnce(ctx, target, key, tok, body)
		if ctx.Err() != nil {
			return 0, nil, ctx.Err()
		}
		var redirect *redirectError
		switch {
		case errors.As(err, &redirect):
			return 0, nil, err
		case err != nil:
			lastErr = err
		case retryable(status):
			lastErr = fmt.Errorf("HTTP %d %s", status, http.StatusText(status))
		default:
			return status, respBody, nil
		}
		delay := backoff(attempt)
		if retryAfter >= 0 {
			delay = max(min(retryAfter, pushMaxBackoff), delay/4)
			if retryAfter == 0 {
				delay = 0
			}
		}
		if time.Now().Add(delay).After(giveUp) {
			if err == nil {
				return status, respBody, nil // let tally report the server's OperationOutcome
			}
			return 0, nil, fmt.Errorf("no answer after %d attempts in %v: %w", attempt, p.retryFor, lastErr)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, nil, ctx.Err()
		case <-t.C:
		}
	}
}

// postOnce makes one attempt. retryAfter is the server's Retry-After in
// seconds as a duration, or -1 when absent or not in seconds.
func (p *pusher) postOnce(ctx context.Context, target, key, tok string, body []byte) (status int, respBody []byte, retryAfter time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return 0, nil, -1, err
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("Idempotency-Key", key)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, nil, -1, err
	}
	defer resp.Body.Close()
	respBody, err = io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return 0, nil, -1, fmt.Errorf("read answer: %w", err)
	}
	retryAfter = -1
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
		retryAfter = time.Duration(s) * time.Second
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		// Redirects that keep the method were followed; this one was refused.
		return 0, nil, -1, &redirectError{status: resp.StatusCode, location: resp.Header.Get("Location")}
	}
	return resp.StatusCode, respBody, retryAfter, nil
}

// retryable reports whether a status means "try again later" rather than an
// answer about the content.
func retryable(status int) bool {
	switch status {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// backoff returns the delay before retry number attempt (1-based):
// exponential with jitter so that workers do not retry in lockstep.
func backoff(attempt int) time.Duration {
	d := min(pushFirstBackoff<<(attempt-1), pushMaxBackoff)
	return d/2 + rand.N(d/2+1)
}

// operationOutcome holds the fields of an OperationOutcome push reports. It
// deliberately has no place for anything else, so no resource content can
// reach the output through it.
type operationOutcome struct {
	ResourceType string `json:"resourceType"`
	Issue        []struct {
		Severity    string   `json:"severity"`
		Code        string   `json:"code"`
		Diagnostics string   `json:"diagnostics"`
		Expression  []string `json:"expression"`
		Location    []string `json:"location"`
		Details     struct {
			Text string `json:"text"`
		} `json:"details"`
	} `json:"issue"`
}

// responseBundle holds the fields of a transaction-response or batch-response
// push counts.
type responseBundle struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Entry        []struct {
		Response struct {
			Status  string          `json:"status"`
			Outcome json.RawMessage `json:"outcome"`
		} `json:"response"`
	} `json:"entry"`
}

// tally turns a final answer into accepted and rejected counts and error
// messages. A 2xx answer to a Bundle is counted entry by entry from
// response.status; a 2xx without a response Bundle accepts everything (the
// server committed it); any other status rejects every entry of the request.
func tally(req *request, status int, body []byte) (accepted, rejected int, msgs []string) {
	if status < 200 || status > 299 {
		msg := fmt.Sprintf("HTTP %d %s", status, http.StatusText(status))
		if issues := formatOutcome(body, 5); issues != "" {
			msg += ": " + issues
		}
		return 0, req.entries, []string{msg}
	}
	if !req.bundle {
		return req.entries, 0, nil
	}
	var rb responseBundle
	if err := json.Unmarshal(body, &rb); err != nil || rb.ResourceType != "Bundle" ||
		(rb.Type != "transaction-response" && rb.Type != "batch-response") {
		return req.entries, 0, nil
	}
	for i, e := range rb.Entry {
		if i >= req.entries {
			break
		}
		if strings.HasPrefix(strings.TrimSpace(e.Response.Status), "2") {
			accepted++
			continue
		}
		rejected++
		msg := fmt.Sprintf("%s: status %q", req.label(i), e.Response.Status)
		if issue := formatOutcome(e.Response.Outcome, 1); issue != "" {
			msg += ": " + issue
		}
		msgs = append(msgs, msg)
	}
	if missing := req.entries - len(rb.Entry); missing > 0 {
		rejected += missing
		msgs = append(msgs, fmt.Sprintf("server answered %d entries for %d sent; counting %d as rejected", len(rb.Entry), req.entries, missing))
	}
	return accepted, rejected, msgs
}

// formatOutcome renders up to limit issues of an OperationOutcome as
// "severity code at expression: diagnostics", or "" if body is not one.
func formatOutcome(body []byte, limit int) string {
	if len(body) == 0 {
		return ""
	}
	var oo operationOutcome
	if err := json.Unmarshal(body, &oo); err != nil || oo.ResourceType != "OperationOutcome" {
		return ""
	}
	var parts []string
	for i, is := range oo.Issue {
		if i == limit {
			parts = append(parts, fmt.Sprintf("(+%d more issues)", len(oo.Issue)-limit))
			break
		}
		s := strings.TrimSpace(is.Severity + " " + is.Code)
		where := is.Expression
		if len(where) == 0 {
			where = is.Location
		}
		if len(where) > 0 {
			s += " at " + strings.Join(where, ", ")
		}
		text := is.Diagnostics
		if text == "" {
			text = is.Details.Text
		}
		if text != "" {
			s += ": " + text
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// writeSummary prints the totals and per-file errors to w and returns the
// error that makes the command exit non-zero, or nil if everything was
// accepted.
func writeSummary(w io.Writer, results []fileResult, elapsed time.Duration, stopReason string) error {
	var started, failed, skipped, accepted, rejected, unsent int
	for i := range results {
		r := &results[i]
		if !r.started {
			skipped++
			continue
		}
		started++
		if r.failed() {
			failed++
		}
		accepted += r.accepted
		rejected += r.rejected
		unsent += r.unsent
	}
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(accepted+rejected) / s
	}
	fmt.Fprintf(w, "files sent:          %s\n", commas(started))
	fmt.Fprintf(w, "files with errors:   %s\n", commas(failed))
	if skipped > 0 {
		fmt.Fprintf(w, "files not sent:      %s\n", commas(skipped))
	}
	fmt.Fprintf(w, "resources accepted:  %s\n", commas(accepted))
	fmt.Fprintf(w, "resources rejected:  %s\n", commas(rejected))
	fmt.Fprintf(w, "resources unsent:    %s\n", commas(unsent))
	fmt.Fprintf(w, "elapsed:             %s\n", elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "resources/s:         %s\n", commas(int(rate+0.5)))
	if failed > 0 || stopReason != "" {
		fmt.Fprintln(w, "\nerrors:")
		if stopReason != "" {
			fmt.Fprintf(w, "  %s\n", stopReason)
		}
		for i := range results {
			r := &results[i]
			for _, e := range r.errs {
				fmt.Fprintf(w, "  %s: %s\n", r.path, e)
			}
			if r.moreErrs > 0 {
				fmt.Fprintf(w, "  %s: ... and %d more errors\n", r.path, r.moreErrs)
			}
		}
	}
	if failed == 0 && skipped == 0 {
		return nil
	}
	return fmt.Errorf("push: %d of %d files had errors (%d resources rejected, %d unsent, %d files not sent)",
		failed, len(results), rejected, unsent, skipped)
}

// commas formats n with thousands separators, as the progress bar and summary
// show counts.
func commas(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// isTerminal reports whether w is a character device, the only place where a
// bar redrawn with \r reads well; in a pipe or a CI log it would be noise.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

// progress reports on stderr while push runs: a bar redrawn in place on a
// terminal, otherwise one line per finished file.
type progress struct {
	mu        sync.Mutex
	w         io.Writer
	bar       bool
	total     int
	files     int
	resources int
	start     time.Time
	lastWidth int
}

// newProgress starts the clock that the summary's elapsed time also uses.
func newProgress(w io.Writer, total int, bar bool) *progress {
	return &progress{w: w, bar: bar, total: total, start: time.Now()}
}

// elapsed is the time since push started sending.
func (p *progress) elapsed() time.Duration { return time.Since(p.start) }

// startTicker redraws the bar a few times a second so that the rate stays
// current while large files are in flight. The returned func stops it.
func (p *progress) startTicker() func() {
	if !p.bar {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				p.mu.Lock()
				p.draw()
				p.mu.Unlock()
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// addResources counts resources the server answered for.
func (p *progress) addResources(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.resources += n
}

// fileDone counts a finished file and reports it.
func (p *progress) fileDone(r *fileResult) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.files++
	if p.bar {
		p.draw()
		return
	}
	status := "ok"
	if r.failed() {
		status = "FAILED"
	}
	fmt.Fprintf(p.w, "%s %s: %s/%s accepted", status, r.path, commas(r.accepted), commas(r.entries))
	if r.rejected > 0 {
		fmt.Fprintf(p.w, ", %s rejected", commas(r.rejected))
	}
	if r.unsent > 0 {
		fmt.Fprintf(p.w, ", %s unsent", commas(r.unsent))
	}
	fmt.Fprintln(p.w)
}

// draw redraws the bar; p.mu must be held.
func (p *progress) draw() {
	rate := 0
	if s := time.Since(p.start).Seconds(); s > 0 {
		rate = int(float64(p.resources)/s + 0.5)
	}
	line := renderBar(p.files, p.total, p.resources, rate)
	pad := max(p.lastWidth-len(line), 0)
	p.lastWidth = len(line)
	fmt.Fprintf(p.w, "\r%s%s", line, strings.Repeat(" ", pad))
}

// finish ends the bar's line so that later output starts on a fresh one.
func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar {
		p.draw()
		fmt.Fprintln(p.w)
	}
}

// renderBar formats one progress line:
// [=========>          ] 23/60 files  4,512 resources  1,830 res/s
func renderBar(done, total, resources, rate int) string {
	const width = 20
	filled := 0
	if total > 0 {
		filled = min(done*width/total, width)
	}
	var b strings.Builder
	b.WriteByte('[')
	switch {
	case filled == width:
		b.WriteString(strings.Repeat("=", width))
	case filled > 0:
		b.WriteString(strings.Repeat("=", filled-1) + ">" + strings.Repeat(" ", width-filled))
	default:
		b.WriteString(strings.Repeat(" ", width))
	}
	fmt.Fprintf(&b, "] %d/%d files  %s resources  %s res/s", done, total, commas(resources), commas(rate))
	return b.String()
}

package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/internal/pgtest"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// pushTestdata is the folder of synthetic files the push tests send.
const pushTestdata = "testdata/push"

// seenRequest is one request the fake server received.
type seenRequest struct {
	path   string
	header http.Header
	body   []byte
}

// fakeFHIR is an httptest server under /fhir/r4 that records requests and
// answers with answer (n counts requests from 0).
type fakeFHIR struct {
	t      *testing.T
	base   string
	answer func(n int, req seenRequest, w http.ResponseWriter)

	mu   sync.Mutex
	seen []seenRequest
}

func newFakeFHIR(t *testing.T, answer func(n int, req seenRequest, w http.ResponseWriter)) *fakeFHIR {
	t.Helper()
	f := &fakeFHIR{t: t, answer: answer}
	srv := httptest.NewServer(http.HandlerFunc(f.serveHTTP))
	t.Cleanup(srv.Close)
	f.base = srv.URL + "/fhir/r4"
	return f
}

func (f *fakeFHIR) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		f.t.Errorf("fake server: read body: %v", err)
		return
	}
	req := seenRequest{path: r.URL.Path, header: r.Header.Clone(), body: body}
	f.mu.Lock()
	n := len(f.seen)
	f.seen = append(f.seen, req)
	f.mu.Unlock()
	if r.Method != http.MethodPost {
		f.t.Errorf("fake server: method %s, want POST", r.Method)
	}
	f.answer(n, req, w)
}

func (f *fakeFHIR) requests() []seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seenRequest(nil), f.seen...)
}

// requestBundle is the part of a pushed Bundle the tests inspect.
type requestBundle struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Entry        []struct {
		Request struct {
			Method string `json:"method"`
			URL    string `json:"url"`
		} `json:"request"`
		Resource json.RawMessage `json:"resource"`
	} `json:"entry"`
}

// answerAll answers every request as a server that accepts everything: a
// transaction-response or batch-response with "201 Created" per entry for a
// Bundle, the resource itself otherwise.
func answerAll(_ int, req seenRequest, w http.ResponseWriter) {
	writeFHIR(w, http.StatusOK, responseFor(req, nil))
}

// responseFor builds a response Bundle for req with status statuses[i] for
// entry i ("201 Created" when statuses is short), or echoes a non-Bundle.
func responseFor(req seenRequest, statuses []string) string {
	var b requestBundle
	if err := json.Unmarshal(req.body, &b); err != nil || b.ResourceType != "Bundle" {
		return string(req.body)
	}
	var entries []string
	for i := range b.Entry {
		status := "201 Created"
		if i < len(statuses) {
			status = statuses[i]
		}
		e := fmt.Sprintf(`{"response":{"status":%q}}`, status)
		if !strings.HasPrefix(status, "2") {
			e = fmt.Sprintf(`{"response":{"status":%q,"outcome":{"resourceType":"OperationOutcome","issue":[`+
				`{"severity":"error","code":"required","expression":["Observation.subject"],"diagnostics":"subject is required (entry %d)"},`+
				`{"severity":"warning","code":"informational","diagnostics":"second issue, not shown"}]}}}`, status, i)
		}
		entries = append(entries, e)
	}
	return fmt.Sprintf(`{"resourceType":"Bundle","type":%q,"entry":[%s]}`, b.Type+"-response", strings.Join(entries, ","))
}

func writeFHIR(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// runPushTest runs the push command with a getenv that knows only env.
func runPushTest(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = runPush(t.Context(), args, &out, &errOut, func(k string) string { return env[k] })
	return out.String(), errOut.String(), err
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func readTestdata(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(pushTestdata, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPushHeadersAndRetryAfter503(t *testing.T) {
	fake := newFakeFHIR(t, func(n int, req seenRequest, w http.ResponseWriter) {
		if n == 0 {
			w.Header().Set("Retry-After", "0")
			writeFHIR(w, http.StatusServiceUnavailable, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"transient"}]}`)
			return
		}
		answerAll(n, req, w)
	})
	file := filepath.Join(pushTestdata, "bundles", "a-transaction.json")
	stdout, _, err := runPushTest(t, nil, "--server", fake.base, "--token", "secret-token", "--no-progress", file)
	if err != nil {
		t.Fatalf("push: %v\n%s", err, stdout)
	}

	want := readTestdata(t, "bundles/a-transaction.json")
	reqs := fake.requests()
	if len(reqs) != 2 {
		t.Fatalf("server saw %d requests, want 2 (one 503, one retry)", len(reqs))
	}
	for i, r := range reqs {
		checks := []struct{ name, got, want string }{
			{"path", r.path, "/fhir/r4"},
			{"Content-Type", r.header.Get("Content-Type"), "application/fhir+json"},
			{"Accept", r.header.Get("Accept"), "application/fhir+json"},
			{"Authorization", r.header.Get("Authorization"), "Bearer secret-token"},
			{"Idempotency-Key", r.header.Get("Idempotency-Key"), sha256Hex(want)},
		}
		for _, c := range checks {
			if c.got != c.want {
				t.Errorf("request %d: %s = %q, want %q", i, c.name, c.got, c.want)
			}
		}
		if !bytes.Equal(r.body, want) {
			t.Errorf("request %d: body differs from the file; push must send a Bundle unchanged", i)
		}
	}
	if !strings.Contains(stdout, "resources accepted:  3\n") {
		t.Errorf("summary does not count 3 accepted:\n%s", stdout)
	}
}

func TestPushRetriesNetworkErrorWithSameKey(t *testing.T) {
	fake := newFakeFHIR(t, func(n int, req seenRequest, w http.ResponseWriter) {
		if n == 0 {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Errorf("hijack: %v", err)
				return
			}
			conn.Close() // the client sees a dropped connection, no answer
			return
		}
		answerAll(n, req, w)
	})
	file := filepath.Join(pushTestdata, "bundles", "b-batch.json")
	if stdout, _, err := runPushTest(t, nil, "--server", fake.base, "--no-progress", "--data", t.TempDir(), file); err != nil {
		t.Fatalf("push: %v\n%s", err, stdout)
	}
	reqs := fake.requests()
	if len(reqs) < 2 {
		t.Fatalf("server saw %d requests, want a retry", len(reqs))
	}
	want := sha256Hex(readTestdata(t, "bundles/b-batch.json"))
	for i, r := range reqs {
		if got := r.header.Get("Idempotency-Key"); got != want {
			t.Errorf("request %d: Idempotency-Key = %q, want %q on every attempt", i, got, want)
		}
	}
}

func TestPushCountsMixedStatusesAndOutcomes(t *testing.T) {
	fake := newFakeFHIR(t, func(n int, req seenRequest, w http.ResponseWriter) {
		var b requestBundle
		json.Unmarshal(req.body, &b)
		switch {
		case b.Type == "transaction":
			// All or nothing: the whole transaction fails with one outcome.
			writeFHIR(w, http.StatusBadRequest, `{"resourceType":"OperationOutcome","issue":[`+
				`{"severity":"error","code":"invalid","expression":["Bundle.entry[2].resource.valueQuantity"],"diagnostics":"unit is not UCUM"}]}`)
		case b.Type == "batch":
			writeFHIR(w, http.StatusOK, responseFor(req, []string{"201 Created", "400 Bad Request"}))
		default:
			writeFHIR(w, http.StatusCreated, string(req.body))
		}
	})
	dir := filepath.Join(pushTestdata, "bundles")
	stdout, stderr, err := runPushTest(t, nil, "--server", fake.base, "--token", "t", "--no-progress", dir)
	if err == nil {
		t.Fatal("push succeeded; want an error when entries are rejected")
	}
	for _, want := range []string{
		"files sent:          3\n",
		"files with errors:   2\n",
		"resources accepted:  2\n",
		"resources rejected:  4\n",
		"resources unsent:    0\n",
		"a-transaction.json: HTTP 400 Bad Request: error invalid at Bundle.entry[2].resource.valueQuantity: unit is not UCUM\n",
		`b-batch.json: Bundle.entry[1]: status "400 Bad Request": error required at Observation.subject: subject is required (entry 1); (+1 more issues)` + "\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "second issue") {
		t.Errorf("summary shows more than the first issue of an entry outcome:\n%s", stdout)
	}
	for _, want := range []string{
		"FAILED " + filepath.Join(dir, "a-transaction.json") + ": 0/3 accepted, 3 rejected\n",
		"FAILED " + filepath.Join(dir, "b-batch.json") + ": 1/2 accepted, 1 rejected\n",
		"ok " + filepath.Join(dir, "nested", "c-patient.json") + ": 1/1 accepted\n",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("per-file lines lack %q:\n%s", want, stderr)
		}
	}
	// Resource contents never reach the output, only counts and outcomes.
	for _, phi := range []string{"Syntheticperson", "Placeholder", "Fictional", "1970-01-01"} {
		if strings.Contains(stdout+stderr, phi) {
			t.Errorf("output contains resource content %q", phi)
		}
	}
	if reqs := fake.requests(); len(reqs) != 3 {
		t.Errorf("server saw %d requests, want 3 (4xx are not retried)", len(reqs))
	}
}

func TestPushSingleResourceGoesToTypeEndpoint(t *testing.T) {
	fake := newFakeFHIR(t, answerAll)
	file := filepath.Join(pushTestdata, "bundles", "nested", "c-patient.json")
	if _, _, err := runPushTest(t, nil, "--server", fake.base+"/", "--token", "t", "--no-progress", file); err != nil {
		t.Fatal(err)
	}
	reqs := fake.requests()
	if len(reqs) != 1 {
		t.Fatalf("server saw %d requests, want 1", len(reqs))
	}
	body := readTestdata(t, "bundles/nested/c-patient.json")
	if reqs[0].path != "/fhir/r4/Patient" || reqs[0].header.Get("Idempotency-Key") != sha256Hex(body) {
		t.Errorf("got POST %s with key %q, want /fhir/r4/Patient with the file's SHA-256", reqs[0].path, reqs[0].header.Get("Idempotency-Key"))
	}
}

func TestPushNDJSONBatches(t *testing.T) {
	fake := newFakeFHIR(t, func(n int, req seenRequest, w http.ResponseWriter) {
		statuses := []string{"201 Created", "200 OK"}
		if n == 1 {
			statuses = []string{"422 Unprocessable Entity", "200 OK"}
		}
		writeFHIR(w, http.StatusOK, responseFor(req, statuses))
	})
	file := filepath.Join(pushTestdata, "ndjson", "resources.ndjson")
	stdout, _, err := runPushTest(t, nil, "--server", fake.base, "--token", "t", "--no-progress", "--batch-size", "2", file)
	if err == nil {
		t.Errorf("push succeeded; want an error for the rejected line")
	}

	var lines [][]byte
	sc := bufio.NewScanner(bytes.NewReader(readTestdata(t, "ndjson/resources.ndjson")))
	for sc.Scan() {
		if len(sc.Bytes()) > 0 {
			lines = append(lines, append([]byte(nil), sc.Bytes()...))
		}
	}
	type entry struct{ Method, URL string }
	wantEntries := [][]entry{
		{{"PUT", "Patient/nd-1"}, {"POST", "Observation"}},
		{{"PUT", "Observation/nd-obs-2"}, {"PUT", "Encounter/nd-enc-1"}},
		{{"PUT", "Condition/nd-cond-1"}},
	}
	reqs := fake.requests()
	if len(reqs) != len(wantEntries) {
		t.Fatalf("server saw %d requests, want %d batches", len(reqs), len(wantEntries))
	}
	keys := map[string]bool{}
	next := 0
	for i, r := range reqs {
		if r.path != "/fhir/r4" {
			t.Errorf("batch %d: path %q, want the base URL", i, r.path)
		}
		key := r.header.Get("Idempotency-Key")
		if key != sha256Hex(r.body) {
			t.Errorf("batch %d: Idempotency-Key is not the SHA-256 of the body", i)
		}
		keys[key] = true
		var b requestBundle
		if err := json.Unmarshal(r.body, &b); err != nil {
			t.Fatalf("batch %d: body is not JSON: %v", i, err)
		}
		if b.ResourceType != "Bundle" || b.Type != "batch" {
			t.Errorf("batch %d: %s of type %q, want a batch Bundle", i, b.ResourceType, b.Type)
		}
		var got []entry
		for _, e := range b.Entry {
			got = append(got, entry{e.Request.Method, e.Request.URL})
			if next < len(lines) && !bytes.Equal(e.Resource, lines[next]) {
				t.Errorf("batch %d: resource %d differs from NDJSON line", i, next)
			}
			next++
		}
		if diff := cmp.Diff(wantEntries[i], got); diff != "" {
			t.Errorf("batch %d entries (-want +got):\n%s", i, diff)
		}
	}
	if len(keys) != len(reqs) {
		t.Errorf("batches share Idempotency-Keys: %d distinct for %d batches", len(keys), len(reqs))
	}
	for _, want := range []string{
		"resources accepted:  4\n",
		"resources rejected:  1\n",
		`resources.ndjson: batch 2 (lines 4-5): line 4: status "422 Unprocessable Entity"`,
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
}

func TestPushNDJSONBadLinesAreReportedNotSent(t *testing.T) {
	fake := newFakeFHIR(t, answerAll)
	file := filepath.Join(t.TempDir(), "mixed.ndjson")
	content := strings.Join([]string{
		`{"resourceType":"Patient","id":"ok-1"}`,
		`{"resourceType":"Patient","id":"bad id with spaces"}`,
		`not json`,
		`{"id":"no-type"}`,
		`{"resourceType":"Observation","status":"final","code":{"text":"x"}}`,
		`{"resourceType":"Encounter","id":"enc-1","type":[{"text":"an array, unlike Bundle.type"}]}`,
	}, "\n")
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, _, err := runPushTest(t, nil, "--server", fake.base, "--token", "t", "--no-progress", file)
	if err == nil {
		t.Error("push succeeded; want an error for the bad lines")
	}
	for _, want := range []string{
		"resources accepted:  3\n",
		"resources unsent:    3\n",
		"mixed.ndjson: line 2: id is not a valid FHIR id\n",
		"mixed.ndjson: line 3: not a JSON resource",
		"mixed.ndjson: line 4: missing or invalid resourceType\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "bad id with spaces") {
		t.Error("summary quotes a resource's id")
	}
	if n := len(fake.requests()); n != 1 {
		t.Errorf("server saw %d requests, want 1 batch", n)
	}
}

func TestPushWalksFoldersInOrder(t *testing.T) {
	bundles := filepath.Join(pushTestdata, "bundles")
	ndjson := filepath.Join(pushTestdata, "ndjson")
	want := []string{
		filepath.Join(bundles, "a-transaction.json"),
		filepath.Join(bundles, "b-batch.json"),
		filepath.Join(bundles, "nested", "c-patient.json"),
		filepath.Join(ndjson, "resources.ndjson"),
	}
	got, err := collectFiles([]string{bundles, ndjson})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("collectFiles (-want +got):\n%s", diff)
	}

	// With one worker the requests follow the same order. Flags after the
	// paths are accepted too.
	fake := newFakeFHIR(t, answerAll)
	if stdout, _, err := runPushTest(t, nil, bundles, ndjson, "--server", fake.base, "--token", "t", "--concurrency", "1", "--no-progress"); err != nil {
		t.Fatalf("push: %v\n%s", err, stdout)
	}
	var order []string
	for _, r := range fake.requests() {
		name := "?"
		for _, f := range want[:3] {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(b, r.body) {
				name = filepath.Base(f)
			}
		}
		if strings.Contains(string(r.body), `"type":"batch"`) {
			name = "resources.ndjson"
		}
		order = append(order, name)
	}
	wantOrder := []string{"a-transaction.json", "b-batch.json", "c-patient.json", "resources.ndjson"}
	if diff := cmp.Diff(wantOrder, order); diff != "" {
		t.Errorf("request order (-want +got):\n%s", diff)
	}
}

func TestPushStopsAfter401WithoutToken(t *testing.T) {
	fake := newFakeFHIR(t, func(_ int, req seenRequest, w http.ResponseWriter) {
		if h := req.header.Get("Authorization"); h != "" {
			t.Errorf("push sent Authorization %q with no token configured", h)
		}
		writeFHIR(w, http.StatusUnauthorized, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"login","diagnostics":"no bearer token"}]}`)
	})
	stdout, stderr, err := runPushTest(t, nil, "--server", fake.base, "--data", t.TempDir(), "--concurrency", "1", "--no-progress",
		filepath.Join(pushTestdata, "bundles"))
	if err == nil {
		t.Fatal("push succeeded against a server answering 401")
	}
	if n := len(fake.requests()); n != 1 {
		t.Errorf("server saw %d requests, want push to stop after the first 401", n)
	}
	if !strings.Contains(stderr, "no token") {
		t.Errorf("stderr does not warn that no token is configured:\n%s", stderr)
	}
	for _, want := range []string{
		"files not sent:      2\n",
		"stopped after HTTP 401",
		"HTTP 401 Unauthorized: error login: no bearer token",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
}

func TestPushTokenSources(t *testing.T) {
	keyDir := t.TempDir()
	key, err := auth.LoadOrCreateDevKey(keyDir)
	if err != nil {
		t.Fatal(err)
	}
	verifier := auth.NewVerifier(auth.DevKeySet(key), auth.Config{})

	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    string // exact Authorization, or "dev" for a verifiable dev token
		wantErr string // in stderr
	}{
		{"flag wins", map[string]string{"FHIRANCHOR_TOKEN": "from-env"}, []string{"--token", "from-flag", "--data", keyDir}, "Bearer from-flag", ""},
		{"env before dev key", map[string]string{"FHIRANCHOR_TOKEN": "from-env\n"}, []string{"--data", keyDir}, "Bearer from-env", ""},
		{"dev key", nil, []string{"--data", keyDir}, "dev", "using a dev token"},
		{"nothing", nil, []string{"--data", t.TempDir()}, "", "no token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := newFakeFHIR(t, answerAll)
			args := append([]string{"--server", fake.base, "--no-progress"}, tt.args...)
			args = append(args, filepath.Join(pushTestdata, "bundles", "nested", "c-patient.json"))
			_, stderr, _ := runPushTest(t, tt.env, args...)
			if !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("stderr lacks %q:\n%s", tt.wantErr, stderr)
			}
			reqs := fake.requests()
			if len(reqs) != 1 {
				t.Fatalf("server saw %d requests, want 1", len(reqs))
			}
			got := reqs[0].header.Get("Authorization")
			if tt.want != "dev" {
				if got != tt.want {
					t.Errorf("Authorization = %q, want %q", got, tt.want)
				}
				return
			}
			tok, err := auth.FromAuthorizationHeader(got)
			if err != nil {
				t.Fatal(err)
			}
			p, err := verifier.Verify(tok)
			if err != nil {
				t.Fatalf("dev token does not verify: %v", err)
			}
			if !p.Scopes.Allows("Patient", auth.Create) || !p.Scopes.Allows("Patient", auth.Read) {
				t.Errorf("dev token scopes %q do not allow create and read", p.Scopes)
			}
		})
	}
}

func TestPushRejectsOtherBundleTypesLocally(t *testing.T) {
	fake := newFakeFHIR(t, answerAll)
	stdout, _, err := runPushTest(t, nil, "--server", fake.base, "--token", "t", "--no-progress",
		filepath.Join(pushTestdata, "bad", "collection.json"))
	if err == nil {
		t.Error("push of a collection Bundle succeeded")
	}
	if n := len(fake.requests()); n != 0 {
		t.Errorf("server saw %d requests, want none", n)
	}
	for _, want := range []string{`Bundle type is "collection"`, "resources unsent:    1\n"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
}

func TestPushFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no path", nil, "no PATH"},
		{"bad server", []string{"--server", "127.0.0.1:8080", pushTestdata}, "--server"},
		{"zero concurrency", []string{"--concurrency", "0", pushTestdata}, "--concurrency"},
		{"zero batch", []string{"--batch-size", "0", pushTestdata}, "--batch-size"},
		{"missing path", []string{filepath.Join(pushTestdata, "nope")}, "nope"},
		{"unsupported file", []string{filepath.Join(pushTestdata, "bundles", "readme.txt")}, ".json or .ndjson"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := runPushTest(t, nil, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("runPush(%q) = %v, want an error mentioning %q", tt.args, err, tt.want)
			}
		})
	}
}

func TestPushRenderBar(t *testing.T) {
	tests := []struct {
		done, total, resources, rate int
		want                         string
	}{
		{0, 60, 0, 0, "[                    ] 0/60 files  0 resources  0 res/s"},
		{30, 60, 4512, 1830, "[=========>          ] 30/60 files  4,512 resources  1,830 res/s"},
		{60, 60, 10877, 912, "[====================] 60/60 files  10,877 resources  912 res/s"},
	}
	for _, tt := range tests {
		if got := renderBar(tt.done, tt.total, tt.resources, tt.rate); got != tt.want {
			t.Errorf("renderBar(%d, %d, %d, %d) =\n%q, want\n%q", tt.done, tt.total, tt.resources, tt.rate, got, tt.want)
		}
	}
}

func TestPushRefusesRedirectThatDropsTheBody(t *testing.T) {
	fake := newFakeFHIR(t, func(_ int, req seenRequest, w http.ResponseWriter) {
		w.Header().Set("Location", "/fhir/r4/")
		w.WriteHeader(http.StatusMovedPermanently) // a client following it would GET, losing the Bundle
	})
	stdout, _, err := runPushTest(t, nil, "--server", fake.base, "--token", "t", "--no-progress",
		filepath.Join(pushTestdata, "bundles", "a-transaction.json"))
	if err == nil {
		t.Error("push succeeded against a redirect")
	}
	if n := len(fake.requests()); n != 1 {
		t.Errorf("server saw %d requests, want 1 (no GET, no retry)", n)
	}
	if want := `HTTP 301 redirect to "/fhir/r4/": pass the final FHIR base URL as --server`; !strings.Contains(stdout, want) {
		t.Errorf("summary lacks %q:\n%s", want, stdout)
	}
}

// TestPushRidesOutPostgresOutage stops PostgreSQL in the middle of a push:
// while it is down, writes answer 503 with Retry-After and /readyz 503;
// push keeps retrying with the same Idempotency-Keys and completes once the
// database is back, with every resource stored exactly once.
func TestPushRidesOutPostgresOutage(t *testing.T) {
	pg := pgtest.Start(t, pgtest.Options{})
	g := testonly.StartGateway(t, testonly.Options{Quiet: true, PostgresDSN: pg.NewDatabase(t)})
	bearer := "Bearer " + g.Token(t)

	const files, perFile = 60, 5
	dir := t.TempDir()
	for i := range files {
		var b bytes.Buffer
		b.WriteString(`{"resourceType":"Bundle","type":"transaction","entry":[`)
		for j := range perFile {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"resource":{"resourceType":"Patient","identifier":[{"system":"urn:test:outage","value":"%d-%d"}]},"request":{"method":"POST","url":"Patient"}}`, i, j)
		}
		b.WriteString(`]}`)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%02d.json", i)), b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	before := g.Stats(t)

	// Between push and the gateway: the 10th request stops the database
	// before it goes on, so the outage starts mid-push, deterministically.
	stopped := make(chan struct{})
	var n atomic.Int64
	target, _ := url.Parse(g.Root)
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 10 {
			pg.Stop()
			close(stopped)
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()

	done := make(chan error, 1)
	var stdout bytes.Buffer
	go func() {
		done <- runPush(t.Context(), []string{"--server", front.URL + "/fhir/r4", "--token", strings.TrimPrefix(bearer, "Bearer "),
			"--no-progress", "--concurrency", "2", "--retry-for", "3m", dir}, &stdout, io.Discard, func(string) string { return "" })
	}()

	<-stopped
	r := g.Do(t, "POST", "/Patient", []byte(`{"resourceType":"Patient"}`), "Authorization", bearer)
	if r.Status != http.StatusServiceUnavailable {
		t.Errorf("a write with the database down: status %d, want 503: %s", r.Status, r.Body)
	}
	if s, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("a write with the database down: Retry-After %q", r.Header.Get("Retry-After"))
	}
	if !strings.Contains(string(r.Body), `"code":"transient"`) {
		t.Errorf("a write with the database down: not a transient OperationOutcome: %s", r.Body)
	}
	if r := g.DoRoot(t, "GET", "/readyz", nil); r.Status != http.StatusServiceUnavailable {
		t.Errorf("/readyz with the database down: status %d, want 503", r.Status)
	}
	time.Sleep(3 * time.Second) // push meets the outage and backs off
	select {
	case err := <-done:
		t.Fatalf("push ended during the outage: %v\n%s", err, stdout.String())
	default:
	}
	pg.Restart()

	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("push: %v\n%s", err, stdout.String())
		}
	case <-time.After(4 * time.Minute):
		t.Fatal("push did not finish within 4 minutes of the database's return")
	}
	if r := g.DoRoot(t, "GET", "/readyz", nil); r.Status != http.StatusOK {
		t.Errorf("/readyz with the database back: status %d, want 200", r.Status)
	}
	after := g.Stats(t)
	if got := after.Versions - before.Versions; got != files*perFile {
		t.Errorf("stored %d versions for %d resources pushed: lost or duplicated across the outage", got, files*perFile)
	}
	if !strings.Contains(stdout.String(), fmt.Sprintf("resources accepted:  %d\n", files*perFile)) {
		t.Errorf("push summary:\n%s", stdout.String())
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/fhiranchor/fhiranchor/access"
	"github.com/fhiranchor/fhiranchor/policy"
)

const policyUsage = `usage: fhiranchor policy <subcommand> [flags] [ARGS]

Administers the gateway's Rego consent policies and reads its decision log,
through the REST API under /v1 (PolicyService and DecisionService).

subcommands:
  list                  stored versions, newest first; * marks the active one
  get VERSION           print a version's files (--out DIR writes them into DIR)
  test DIR              compile and test the bundle in DIR without storing it
  push DIR              store the bundle in DIR as a new version (not yet active);
                        refused unless it compiles and its tests pass
  activate VERSION      make a stored version the one that decides
  rollback              re-activate the version active before the current one
  history               activations, newest first, with their leaf indexes
  evaluate [flags]      dry run: the decision a version would make for a request
  decisions [flags]     the access decision log, newest first

A bundle DIR holds *.rego files and data.json files (in subfolders too); other
files are ignored. File names are sent relative to DIR, with slashes.

Every subcommand takes --server, --token and --data. Token: --token, else
$FHIRANCHOR_TOKEN, else a short-lived dev token signed by
<data>/dev-signing-key.pem (as 'fhiranchor serve' creates it) with the scopes
fhiranchor/policy.admin and fhiranchor/audit.

run 'fhiranchor policy <subcommand> -h' for its flags
`

const (
	defaultAPIServer = "http://127.0.0.1:8080"
	// policyScopes are the scopes of the dev token policy mints for itself:
	// administration, and the audit scope the decision log needs.
	policyScopes = "fhiranchor/policy.admin fhiranchor/audit"
	// maxAPIResponse bounds what policy reads of an answer; the largest is
	// a version's files or a page of decisions.
	maxAPIResponse = 64 << 20
	// revisionPrefix is how many hex digits of a revision tables show.
	revisionPrefix = 12
	// maxDecisionPage is the server's largest page of decisions.
	maxDecisionPage = 1000
)

// policyAction is what a subcommand does once its flags are parsed and the
// client is set up; args are its positional arguments.
type policyAction func(ctx context.Context, c *apiClient, args []string, stdout io.Writer) error

// policySubcommand is one 'fhiranchor policy' subcommand: its argument
// synopsis, and setup, which defines its own flags on fset and returns the
// action that reads them.
type policySubcommand struct {
	synopsis string
	example  string // one command line, shown by -h
	nargs    int    // positional arguments it takes, exactly
	setup    func(fset *flag.FlagSet) policyAction
}

var policySubcommands = map[string]policySubcommand{
	"list": {synopsis: "list", example: "fhiranchor policy list --server http://127.0.0.1:8080", setup: func(*flag.FlagSet) policyAction {
		return policyList
	}},
	"get": {synopsis: "get VERSION [--out DIR]", example: "fhiranchor policy get 3 --out ./policy-v3", nargs: 1, setup: func(fset *flag.FlagSet) policyAction {
		out := fset.String("out", "", "write the files into this new or empty `dir`ectory instead of printing them")
		return func(ctx context.Context, c *apiClient, args []string, stdout io.Writer) error {
			return policyGet(ctx, c, args[0], *out, stdout)
		}
	}},
	"test": {synopsis: "test DIR", example: "fhiranchor policy test ./policy/rego", nargs: 1, setup: func(*flag.FlagSet) policyAction {
		return policyTest
	}},
	"push": {synopsis: "push DIR", example: "fhiranchor policy push ./policy/rego", nargs: 1, setup: func(*flag.FlagSet) policyAction {
		return policyPush
	}},
	"activate": {synopsis: "activate VERSION", example: "fhiranchor policy activate 3", nargs: 1, setup: func(*flag.FlagSet) policyAction {
		return func(ctx context.Context, c *apiClient, args []string, stdout io.Writer) error {
			version, err := parseVersion(args[0])
			if err != nil {
				return err
			}
			return policyActivate(ctx, c, "/v1/policies/"+strconv.FormatInt(version, 10)+":activate", stdout)
		}
	}},
	"rollback": {synopsis: "rollback", example: "fhiranchor policy rollback", setup: func(*flag.FlagSet) policyAction {
		return func(ctx context.Context, c *apiClient, _ []string, stdout io.Writer) error {
			return policyActivate(ctx, c, "/v1/policies:rollback", stdout)
		}
	}},
	"history": {synopsis: "history", example: "fhiranchor policy history", setup: func(*flag.FlagSet) policyAction {
		return policyHistory
	}},
	"evaluate": {synopsis: "evaluate [flags]", example: "fhiranchor policy evaluate --patient Patient/p1 --purpose HRESCH --action research-query", setup: evaluateFlags},
	"decisions": {synopsis: "decisions [--patient P] [--client C] [--limit N]", example: "fhiranchor policy decisions --patient Patient/p1 --limit 20", setup: func(fset *flag.FlagSet) policyAction {
		patient := fset.String("patient", "", "only decisions about this patient (`Patient/<id>` or <id>)")
		client := fset.String("client", "", "only decisions for this client `id`")
		limit := fset.Int("limit", 50, "at most `N` decisions, newest first")
		return func(ctx context.Context, c *apiClient, _ []string, stdout io.Writer) error {
			return policyDecisions(ctx, c, *patient, *client, *limit, stdout)
		}
	}},
}

// runPolicy implements 'fhiranchor policy'. Any failure, including a
// bundle that does not compile or fails a test, is a non-nil error, so
// scripts and CI can rely on the exit status.
func runPolicy(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, policyUsage)
		return flag.ErrHelp
	}
	name := args[0]
	switch name {
	case "help", "-h", "--help":
		fmt.Fprint(stdout, policyUsage)
		return nil
	}
	sub, ok := policySubcommands[name]
	if !ok {
		fmt.Fprintf(stderr, "unknown policy subcommand %q\n\n%s", name, policyUsage)
		return flag.ErrHelp
	}
	fset := flag.NewFlagSet("policy "+name, flag.ContinueOnError)
	fset.SetOutput(stderr)
	fset.Usage = func() {
		fmt.Fprintf(stderr, "usage: fhiranchor policy %s\n\nexample:\n  %s\n\nflags:\n", sub.synopsis, sub.example)
		fset.PrintDefaults()
	}
	server := fset.String("server", defaultAPIServer, "base `URL` of the gateway's REST API")
	token := fset.String("token", "", "bearer `token` (prefer $FHIRANCHOR_TOKEN: flags show in the process list)")
	dataDir := fset.String("data", "./data", "data `dir`ectory of a local 'fhiranchor serve'; its dev key mints a token when none is given")
	timeout := fset.Duration("timeout", 2*time.Minute, "time limit of each HTTP request")
	do := sub.setup(fset)
	rest, err := parseInterspersed(fset, args[1:])
	if err != nil {
		return err
	}
	if len(rest) != sub.nargs {
		fset.Usage()
		return fmt.Errorf("policy %s: want %d argument(s), got %d", name, sub.nargs, len(rest))
	}
	if *timeout <= 0 {
		return fmt.Errorf("policy %s: --timeout must be positive, got %v", name, *timeout)
	}
	base, err := parseAPIBase(*server)
	if err != nil {
		return fmt.Errorf("policy %s: --server: %w", name, err)
	}
	tok, err := policyToken(*token, getenv, *dataDir, stderr)
	if err != nil {
		return fmt.Errorf("policy %s: %w", name, err)
	}
	c := &apiClient{base: base, token: tok, timeout: *timeout, http: &http.Client{}}
	defer c.http.CloseIdleConnections()
	if err := do(ctx, c, rest, stdout); err != nil {
		var ae *apiError
		if errors.As(err, &ae) {
			ae.print(stdout)
		}
		return fmt.Errorf("policy %s: %w", name, err)
	}
	return nil
}

// parseAPIBase checks --server and drops a trailing slash. A FHIR base URL
// (.../fhir/r4, as push takes) is accepted for the REST root it is under.
func parseAPIBase(s string) (string, error) {
	base, err := parseServerURL(s, defaultAPIServer)
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(base, "/fhir/r4"), nil
}

// policyToken picks the token as push does (flag, environment, existing
// dev key), except that without any it fails: every policy endpoint needs
// one, so sending none would only earn a 401.
func policyToken(flagToken string, getenv func(string) string, dataDir string, stderr io.Writer) (string, error) {
	src, err := resolveToken("policy", strings.Fields(policyScopes), true, flagToken, getenv, dataDir, stderr)
	if err != nil {
		return "", err
	}
	return src()
}

// apiClient calls the gateway's JSON REST API.
type apiClient struct {
	base    string
	token   string
	timeout time.Duration
	http    *http.Client
}

// apiError is a non-2xx answer, with the issues of its OperationOutcome.
type apiError struct {
	method, path string
	status       int
	issues       []string
}

func (e *apiError) Error() string {
	msg := fmt.Sprintf("%s %s: HTTP %d %s", e.method, e.path, e.status, http.StatusText(e.status))
	if len(e.issues) > 0 {
		msg += ": " + e.issues[0]
	}
	if n := len(e.issues) - 1; n > 0 {
		msg += fmt.Sprintf(" (and %d more, listed above)", n)
	}
	return msg
}

// print lists every issue, one a line; the first is the server's summary
// and the rest are, for a refused bundle, the compiler messages or failing
// tests.
func (e *apiError) print(w io.Writer) {
	if len(e.issues) < 2 {
		return // Error says it all
	}
	fmt.Fprintf(w, "refused: %s\n", e.issues[0])
	for _, is := range e.issues[1:] {
		fmt.Fprintf(w, "  %s\n", is)
	}
}

// call sends in (if not nil) as JSON and decodes a 2xx answer into out (if
// not nil); any other answer is an *apiError.
func (c *apiClient) call(ctx context.Context, method, p string, query url.Values, in, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	target := c.base + p
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIResponse))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, p, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &apiError{method: method, path: p, status: resp.StatusCode, issues: outcomeIssues(data)}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: the answer is not what the API returns: %w", method, p, err)
	}
	return nil
}

// outcomeIssues renders each issue of an OperationOutcome as its
// diagnostics (or its code), or nothing if body is not one.
func outcomeIssues(body []byte) []string {
	var oo operationOutcome
	if err := json.Unmarshal(body, &oo); err != nil || oo.ResourceType != "OperationOutcome" {
		return nil
	}
	var out []string
	for _, is := range oo.Issue {
		text := is.Diagnostics
		if text == "" {
			text = is.Details.Text
		}
		if text == "" {
			text = is.Code
		}
		if len(is.Expression) > 0 {
			text = strings.Join(is.Expression, ", ") + ": " + text
		}
		out = append(out, text)
	}
	return out
}

// jsonInt decodes a protojson 64-bit integer, which is a JSON string, or a
// plain JSON number.
type jsonInt int64

func (n *jsonInt) UnmarshalJSON(b []byte) error {
	s := string(b)
	if uq, err := strconv.Unquote(s); err == nil {
		s = uq
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("not an integer: %s", b)
	}
	*n = jsonInt(v)
	return nil
}

// The REST messages, in protojson's lowerCamelCase (proto/fhiranchor/v1/policy.proto).
type (
	policyMsg struct {
		Version  jsonInt           `json:"version"`
		Revision string            `json:"revision"`
		Created  string            `json:"created"`
		Author   string            `json:"author"`
		Active   bool              `json:"active"`
		Files    map[string]string `json:"files"`
	}
	testResultMsg struct {
		Name           string  `json:"name"`
		Pass           bool    `json:"pass"`
		Message        string  `json:"message"`
		DurationMicros jsonInt `json:"durationMicros"`
	}
	activationMsg struct {
		Version   jsonInt `json:"version"`
		Revision  string  `json:"revision"`
		Time      string  `json:"time"`
		Client    string  `json:"client"`
		LeafIndex jsonInt `json:"leafIndex"`
		Rollback  bool    `json:"rollback"`
	}
	filesMsg struct {
		Files policy.Files `json:"files"`
	}
)

func parseVersion(s string) (int64, error) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 1 {
		return 0, fmt.Errorf("VERSION must be a positive integer, got %q", s)
	}
	return v, nil
}

func shortRevision(r string) string {
	if len(r) > revisionPrefix {
		return r[:revisionPrefix]
	}
	return r
}

func policyList(ctx context.Context, c *apiClient, _ []string, stdout io.Writer) error {
	var resp struct {
		Policies      []policyMsg `json:"policies"`
		ActiveVersion jsonInt     `json:"activeVersion"`
	}
	if err := c.call(ctx, http.MethodGet, "/v1/policies", nil, nil, &resp); err != nil {
		return err
	}
	if len(resp.Policies) == 0 {
		_, err := fmt.Fprintln(stdout, "no policy versions stored")
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tACTIVE\tREVISION\tCREATED\tAUTHOR")
	for _, p := range resp.Policies {
		mark := ""
		if p.Active || (resp.ActiveVersion != 0 && p.Version == resp.ActiveVersion) {
			mark = "*"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", p.Version, mark, shortRevision(p.Revision), p.Created, p.Author)
	}
	return tw.Flush()
}

func policyGet(ctx context.Context, c *apiClient, arg, outDir string, stdout io.Writer) error {
	version, err := parseVersion(arg)
	if err != nil {
		return err
	}
	var p policyMsg
	if err := c.call(ctx, http.MethodGet, "/v1/policies/"+strconv.FormatInt(version, 10), nil, nil, &p); err != nil {
		return err
	}
	files := policy.Files(p.Files)
	// The names come from the server; a name like ../x must not escape DIR.
	if err := files.Validate(); err != nil {
		return fmt.Errorf("version %d: %w", version, err)
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	if outDir != "" {
		if err := writeBundle(outDir, files, names); err != nil {
			return err
		}
		_, err := fmt.Fprintf(stdout, "wrote %d files of version %d (revision %s) to %s\n", len(names), p.Version, p.Revision, outDir)
		return err
	}
	state := "inactive"
	if p.Active {
		state = "active"
	}
	fmt.Fprintf(stdout, "# version %d, %s, revision %s, created %s by %s\n", p.Version, state, p.Revision, p.Created, p.Author)
	for _, name := range names {
		content := files[name]
		if !strings.HasSuffix(content, "\n") {
			content += "\n"
		}
		if _, err := fmt.Fprintf(stdout, "\n==> %s <==\n%s", name, content); err != nil {
			return err
		}
	}
	return nil
}

// writeBundle writes files into dir, which must be new or empty: files left
// over from another version would be pushed with this one.
func writeBundle(dir string, files policy.Files, names []string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("--out: %w", err)
	case len(entries) > 0:
		return fmt.Errorf("--out: %s is not empty; files left there would be pushed with this version", dir)
	}
	for _, name := range names {
		target := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		if err := os.WriteFile(target, []byte(files[name]), 0o644); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
	}
	return nil
}

// readBundle reads every *.rego and data.json file under dir, keyed by its
// slash-separated path relative to dir. Hidden folders (.git) are skipped.
func readBundle(dir string) (policy.Files, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", dir)
	}
	files := policy.Files{}
	rego := 0
	err = fs.WalkDir(os.DirFS(dir), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != "." && strings.HasPrefix(d.Name(), ".") {
				return fs.SkipDir
			}
			return nil
		}
		isRego := strings.HasSuffix(p, ".rego")
		if !d.Type().IsRegular() || !(isRego || path.Base(p) == "data.json") {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(p)))
		if err != nil {
			return err
		}
		files[p] = string(b)
		if isRego {
			rego++
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	if rego == 0 {
		return nil, fmt.Errorf("no .rego files under %s", dir)
	}
	if err := files.Validate(); err != nil {
		return nil, err
	}
	return files, nil
}

// printTests prints one line per test and returns how many failed.
func printTests(w io.Writer, tests []testResultMsg) (passed, failed int) {
	for _, t := range tests {
		if t.Pass {
			passed++
			fmt.Fprintf(w, "PASS  %s\n", t.Name)
			continue
		}
		failed++
		line := "FAIL  " + t.Name
		if t.Message != "" {
			line += ": " + t.Message
		}
		fmt.Fprintln(w, line)
	}
	return passed, failed
}

func policyTest(ctx context.Context, c *apiClient, args []string, stdout io.Writer) error {
	files, err := readBundle(args[0])
	if err != nil {
		return err
	}
	var resp struct {
		Revision string          `json:"revision"`
		Compiled bool            `json:"compiled"`
		Errors   []string        `json:"errors"`
		Tests    []testResultMsg `json:"tests"`
		Passed   bool            `json:"passed"`
	}
	if err := c.call(ctx, http.MethodPost, "/v1/policies:test", nil, filesMsg{files}, &resp); err != nil {
		return err
	}
	if !resp.Compiled {
		fmt.Fprintf(stdout, "%s does not compile:\n", args[0])
		for _, e := range resp.Errors {
			fmt.Fprintf(stdout, "  %s\n", e)
		}
		return fmt.Errorf("%s does not compile (%d errors)", args[0], len(resp.Errors))
	}
	passed, failed := printTests(stdout, resp.Tests)
	fmt.Fprintf(stdout, "\n%d passed, %d failed (revision %s)\n", passed, failed, resp.Revision)
	if !resp.Passed || failed > 0 {
		return fmt.Errorf("%d of %d tests failed", failed, passed+failed)
	}
	return nil
}

func policyPush(ctx context.Context, c *apiClient, args []string, stdout io.Writer) error {
	files, err := readBundle(args[0])
	if err != nil {
		return err
	}
	var resp struct {
		Policy policyMsg       `json:"policy"`
		Tests  []testResultMsg `json:"tests"`
	}
	if err := c.call(ctx, http.MethodPost, "/v1/policies", nil, filesMsg{files}, &resp); err != nil {
		return err
	}
	passed, failed := 0, 0
	for _, t := range resp.Tests {
		if t.Pass {
			passed++
		} else {
			failed++
		}
	}
	fmt.Fprintf(stdout, "stored version %d (revision %s), not active\n", resp.Policy.Version, resp.Policy.Revision)
	fmt.Fprintf(stdout, "tests: %d passed, %d failed\n", passed, failed)
	_, err = fmt.Fprintf(stdout, "activate it with: fhiranchor policy activate %d\n", resp.Policy.Version)
	return err
}

// policyActivate posts an activation (or a rollback, which is one) and
// prints where its receipt is.
func policyActivate(ctx context.Context, c *apiClient, p string, stdout io.Writer) error {
	var a activationMsg
	if err := c.call(ctx, http.MethodPost, p, nil, struct{}{}, &a); err != nil {
		return err
	}
	what := "activated"
	if a.Rollback {
		what = "rolled back to"
	}
	fmt.Fprintf(stdout, "%s version %d\n", what, a.Version)
	fmt.Fprintf(stdout, "revision:   %s\n", a.Revision)
	fmt.Fprintf(stdout, "leaf index: %d\n", a.LeafIndex)
	_, err := fmt.Fprintf(stdout, "receipt:    /v1/receipts/leaves/%d\n", a.LeafIndex)
	return err
}

func policyHistory(ctx context.Context, c *apiClient, _ []string, stdout io.Writer) error {
	var resp struct {
		Activations []activationMsg `json:"activations"`
	}
	if err := c.call(ctx, http.MethodGet, "/v1/policy-activations", nil, nil, &resp); err != nil {
		return err
	}
	if len(resp.Activations) == 0 {
		_, err := fmt.Fprintln(stdout, "no activations")
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LEAF\tTIME\tVERSION\tREVISION\tCLIENT\tKIND")
	for _, a := range resp.Activations {
		kind := "activate"
		if a.Rollback {
			kind = "rollback"
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\n", a.LeafIndex, a.Time, a.Version, shortRevision(a.Revision), a.Client, kind)
	}
	return tw.Flush()
}

// evaluateRequest is EvaluateRequest in protojson; empty fields are left
// out so the server sees them unset.
type evaluateRequest struct {
	Version             int64    `json:"version,omitempty"`
	Action              string   `json:"action,omitempty"`
	Purpose             string   `json:"purpose,omitempty"`
	Actor               string   `json:"actor,omitempty"`
	ActorRoles          []string `json:"actorRoles,omitempty"`
	ActorOrganization   string   `json:"actorOrganization,omitempty"`
	Patient             string   `json:"patient,omitempty"`
	ResourceType        string   `json:"resourceType,omitempty"`
	ResourceID          string   `json:"resourceId,omitempty"`
	SecurityLabels      []string `json:"securityLabels,omitempty"`
	Codes               []string `json:"codes,omitempty"`
	Date                string   `json:"date,omitempty"`
	Time                string   `json:"time,omitempty"`
	PatientOrganization string   `json:"patientOrganization,omitempty"`
}

func evaluateFlags(fset *flag.FlagSet) policyAction {
	version := fset.Int64("version", 0, "policy `version` to evaluate; 0 means the active one")
	action := fset.String("action", "read", "`action`: read, write, research-query or export")
	purpose := fset.String("purpose", "TREAT", "v3-ActReason `code` the access is for (TREAT, ETREAT, HPAYMT...)")
	actor := fset.String("actor", "", "FHIR `reference` the client acts as, e.g. Practitioner/p1")
	roles := fset.String("roles", "", "the actor's role `codes`, comma- or space-separated")
	org := fset.String("organization", "", "Organization `reference` the actor acts for")
	patient := fset.String("patient", "", "`Patient/<id>` (or <id>) whose current consents are used")
	typ := fset.String("type", "", "resource `type` asked for, e.g. Observation")
	id := fset.String("id", "", "resource `id` asked for")
	labels := fset.String("labels", "", "the resource's security labels, comma-separated `system|code`")
	codes := fset.String("codes", "", "the resource's codes, comma-separated `system|code`")
	date := fset.String("date", "", "the resource's clinical `date` (YYYY-MM-DD)")
	at := fset.String("time", "", "`time` of the access, RFC 3339; empty means now")
	patientOrg := fset.String("patient-organization", "", "the patient's managing Organization `reference` (for writes)")
	return func(ctx context.Context, c *apiClient, _ []string, stdout io.Writer) error {
		req := evaluateRequest{
			Version: *version, Action: *action, Purpose: *purpose, Actor: *actor,
			ActorRoles: splitList(*roles, true), ActorOrganization: *org, Patient: *patient,
			ResourceType: *typ, ResourceID: *id, SecurityLabels: splitList(*labels, false),
			Codes: splitList(*codes, false), Date: *date, Time: *at, PatientOrganization: *patientOrg,
		}
		if req.Version < 0 {
			return fmt.Errorf("--version must not be negative, got %d", req.Version)
		}
		return policyEvaluate(ctx, c, req, stdout)
	}
}

// splitList splits a flag value on commas (and on spaces when spaces is
// set), dropping empty items.
func splitList(s string, spaces bool) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || (spaces && unicode.IsSpace(r)) })
}

func policyEvaluate(ctx context.Context, c *apiClient, req evaluateRequest, stdout io.Writer) error {
	var resp struct {
		Allow       bool     `json:"allow"`
		Reasons     []string `json:"reasons"`
		Obligations []struct {
			Type           string   `json:"type"`
			SecurityLabels []string `json:"securityLabels"`
		} `json:"obligations"`
		BasedOn []struct {
			ID        string `json:"id"`
			VersionID string `json:"versionId"`
		} `json:"basedOn"`
		PolicyRevision string   `json:"policyRevision"`
		PolicyVersion  jsonInt  `json:"policyVersion"`
		BreakGlass     bool     `json:"breakGlass"`
		Fired          []string `json:"fired"`
	}
	if err := c.call(ctx, http.MethodPost, "/v1/policies:evaluate", nil, req, &resp); err != nil {
		return err
	}
	decision := "DENY"
	if resp.Allow {
		decision = "ALLOW"
	}
	if resp.BreakGlass {
		decision += " (break-the-glass)"
	}
	fmt.Fprintf(stdout, "decision:    %s\n", decision)
	fmt.Fprintf(stdout, "policy:      version %d, revision %s\n", resp.PolicyVersion, resp.PolicyRevision)
	list := func(title string, items []string) {
		if len(items) == 0 {
			fmt.Fprintf(stdout, "%-12s (none)\n", title+":")
			return
		}
		fmt.Fprintf(stdout, "%s:\n", title)
		for _, it := range items {
			fmt.Fprintf(stdout, "  - %s\n", it)
		}
	}
	list("reasons", resp.Reasons)
	var obligations []string
	for _, o := range resp.Obligations {
		s := o.Type
		if len(o.SecurityLabels) > 0 {
			s += " " + strings.Join(o.SecurityLabels, ", ")
		}
		obligations = append(obligations, s)
	}
	list("obligations", obligations)
	var basedOn []string
	for _, b := range resp.BasedOn {
		s := b.ID
		if !strings.Contains(s, "/") {
			s = "Consent/" + s
		}
		if b.VersionID != "" {
			s += "/_history/" + b.VersionID
		}
		basedOn = append(basedOn, s)
	}
	list("based on", basedOn)
	list("fired", resp.Fired)
	return nil
}

// decisionEntry is one entry of GET /v1/decisions: the record exactly as
// committed, its salt, and where its receipt is.
type decisionEntry struct {
	LeafIndex jsonInt         `json:"leafIndex"`
	Receipt   string          `json:"receipt"`
	Record    json.RawMessage `json:"record"`
	Salt      string          `json:"salt"`
	// Resolved maps the record's tokens ("Patient/tok-…") to the references
	// they stand for, where the server could still resolve them.
	Resolved map[string]string `json:"resolved"`
}

// resolvedRef shows a record's token reference with its resolved id when
// the server gave one: "Observation/tok-…/_history/2" -> "Observation/abc/_history/2".
func resolvedRef(ref string, resolved map[string]string) string {
	typ, rest, ok := strings.Cut(ref, "/")
	if !ok {
		return ref
	}
	tok, history, _ := strings.Cut(rest, "/")
	name, ok := resolved[typ+"/"+tok]
	if !ok {
		return ref
	}
	if history != "" {
		return name + "/" + history
	}
	return name
}

func policyDecisions(ctx context.Context, c *apiClient, patient, client string, limit int, stdout io.Writer) error {
	if limit < 1 {
		return fmt.Errorf("--limit must be at least 1, got %d", limit)
	}
	var entries []decisionEntry
	token := ""
	for len(entries) < limit {
		q := url.Values{}
		if patient != "" {
			q.Set("patient", patient)
		}
		if client != "" {
			q.Set("client", client)
		}
		q.Set("page_size", strconv.Itoa(min(limit-len(entries), maxDecisionPage)))
		if token != "" {
			q.Set("page_token", token)
		}
		var page struct {
			Decisions     []decisionEntry `json:"decisions"`
			NextPageToken string          `json:"nextPageToken"`
		}
		if err := c.call(ctx, http.MethodGet, "/v1/decisions", q, nil, &page); err != nil {
			return err
		}
		entries = append(entries, page.Decisions...)
		if page.NextPageToken == "" || page.NextPageToken == token || len(page.Decisions) == 0 {
			break
		}
		token = page.NextPageToken
	}
	if len(entries) > limit {
		entries = entries[:limit]
	}
	if len(entries) == 0 {
		_, err := fmt.Fprintln(stdout, "no decisions")
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LEAF\tTIME\tCLIENT\tACTION\tPURPOSE\tPATIENT\tRESOURCE\tDECISION")
	for _, e := range entries {
		var r access.Decision // a research decision decodes to the fields they share
		if err := json.Unmarshal(e.Record, &r); err != nil {
			return fmt.Errorf("decision %d: the record is not JSON: %w", e.LeafIndex, err)
		}
		if r.Kind == access.KindResearchDecision {
			r.Patient = access.ResearchSubject // a cohort: many patients, none named
		}
		decision := "deny"
		if r.Allow {
			decision = "allow"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.LeafIndex, r.Time, orDash(r.Client), r.Action,
			orDash(r.Purpose), orDash(resolvedRef(r.Patient, e.Resolved)), orDash(resolvedRef(r.Resource, e.Resolved)), decision)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

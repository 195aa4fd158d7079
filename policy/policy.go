package policy

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

//go:embed rego
var embedded embed.FS

// Query is the Rego rule every bundle must define; it yields the decision object.
const Query = "data.fhiranchor.consent.decision"

// DefaultTimeout bounds one decision when Config.Timeout is zero.
const DefaultTimeout = 50 * time.Millisecond

// ErrDenied is what callers return when a Decision does not allow the access.
var ErrDenied = errors.New("access not permitted by consent")

// Coding is a FHIR Coding reduced to what the policy compares.
type Coding struct {
	System string `json:"system,omitempty"`
	Code   string `json:"code"`
}

// Actor is who asks: the authenticated client and the FHIR reference it acts as.
type Actor struct {
	ClientID string `json:"clientId"`
	// Reference is a FHIR reference such as "Practitioner/xcda-author" or "Organization/f001".
	Reference string   `json:"reference"`
	Roles     []string `json:"roles"`
}

// ResourceRef describes the data asked for by opaque ids and codes, never by content.
type ResourceRef struct {
	Type           string   `json:"type"`
	ID             string   `json:"id"`
	Reference      string   `json:"reference"`
	SecurityLabels []Coding `json:"securityLabels"`
	Codes          []Coding `json:"codes"`
	// Date is the data's clinically relevant FHIR date or dateTime, matched against provision.dataPeriod.
	Date string `json:"date"`
}

// Input is one access request. The gateway builds it; it holds opaque ids only.
type Input struct {
	// Time is when the access happens; the zero value means now.
	Time time.Time `json:"time"`
	// Action is "read", "write", "research-query" or "export".
	Action string `json:"action"`
	// Purpose is a v3-ActReason code: TREAT, HPAYMT, HOPERAT, HRESCH, ETREAT...
	Purpose string `json:"purpose"`
	Actor   Actor  `json:"actor"`
	// Patient is "Patient/<id>"; every consent passed must be about this patient.
	Patient  string      `json:"patient"`
	Resource ResourceRef `json:"resource"`
	// Consents are the patient's FHIR R4 Consent resources as decoded JSON objects,
	// each with id and meta.versionId, in any status: the policy keeps the active ones.
	// Decide compiles each one (see CompileConsent); callers that keep consents
	// can pass them compiled in Compiled instead and skip that work.
	Consents []map[string]any `json:"consents"`
	// Compiled are more of the patient's consents, compiled once by
	// CompileConsent; Decide treats them exactly like Consents.
	Compiled []CompiledConsent `json:"-"`
}

// Obligation is something the caller MUST do for an allowed access.
type Obligation struct {
	// Type is "redact" (remove content carrying SecurityLabels) or "audit-break-glass".
	Type           string   `json:"type"`
	SecurityLabels []Coding `json:"securityLabels,omitempty"`
}

// ConsentRef pins one Consent version a decision was based on.
type ConsentRef struct {
	ID        string `json:"id"`
	VersionID string `json:"versionId"`
}

// Decision is the policy's answer. Reasons name consent ids and provision paths, never values.
type Decision struct {
	Allow          bool         `json:"allow"`
	Reasons        []string     `json:"reasons"`
	Obligations    []Obligation `json:"obligations,omitempty"`
	BasedOn        []ConsentRef `json:"basedOn,omitempty"`
	PolicyRevision string       `json:"policyRevision"`
	BreakGlass     bool         `json:"breakGlass"`
}

// Config configures an Engine.
type Config struct {
	// Bundle holds *.rego files (and data.json files, placed at their directory's
	// path); nil means the embedded default bundle.
	Bundle fs.FS
	// Revision names the bundle; empty means the hex SHA-256 of its files.
	Revision string
	// Timeout bounds one decision; zero means DefaultTimeout.
	Timeout time.Duration
}

// Engine evaluates consent decisions with a prepared Rego query. It holds no
// consent state and is safe for concurrent use.
type Engine struct {
	timeout time.Duration
	cur     atomic.Pointer[prepared]
}

type prepared struct {
	query    rego.PreparedEvalQuery
	revision string
}

// DefaultBundle returns the embedded default policy bundle.
func DefaultBundle() fs.FS {
	sub, err := fs.Sub(embedded, "rego")
	if err != nil {
		panic(err) // the embed directive guarantees the directory
	}
	return sub
}

// New compiles the bundle and prepares its decision query once. It does not run
// the bundle's tests; Replace does, as policy activation must.
func New(ctx context.Context, cfg Config) (*Engine, error) {
	e := &Engine{timeout: cfg.Timeout}
	if e.timeout <= 0 {
		e.timeout = DefaultTimeout
	}
	p, err := prepare(ctx, cfg.Bundle, cfg.Revision)
	if err != nil {
		return nil, err
	}
	e.cur.Store(p)
	return e, nil
}

// Revision returns the revision of the bundle currently deciding.
func (e *Engine) Revision() string { return e.cur.Load().revision }

// Replace compiles a new bundle, runs its *_test.rego tests, and only if both
// succeed swaps it in atomically. Decisions in flight finish on the old bundle.
func (e *Engine) Replace(ctx context.Context, fsys fs.FS, revision string) error {
	if fsys == nil {
		return errors.New("replace policy: nil bundle")
	}
	p, err := prepare(ctx, fsys, revision)
	if err != nil {
		return err
	}
	results, err := RunTests(ctx, fsys)
	if err != nil {
		return fmt.Errorf("replace policy: %w", err)
	}
	var failed []TestResult
	for _, r := range results {
		if !r.Pass {
			failed = append(failed, r)
		}
	}
	if len(failed) > 0 {
		return &TestFailureError{Failed: failed}
	}
	e.cur.Store(p)
	return nil
}

// TestFailureError reports the tests that kept a bundle from being activated.
type TestFailureError struct {
	Failed []TestResult
}

func (e *TestFailureError) Error() string {
	names := make([]string, len(e.Failed))
	for i, r := range e.Failed {
		names[i] = r.Name
	}
	return "policy tests failed: " + strings.Join(names, ", ")
}

func prepare(ctx context.Context, fsys fs.FS, revision string) (*prepared, error) {
	if fsys == nil {
		fsys = DefaultBundle()
	}
	b, err := loadBundle(fsys, false)
	if err != nil {
		return nil, err
	}
	if revision == "" {
		revision = b.digest
	}
	opts := []func(*rego.Rego){
		rego.Query(Query),
		rego.SetRegoVersion(ast.RegoV1),
		rego.StrictBuiltinErrors(true),
		rego.Store(b.store()),
	}
	for _, m := range b.modules {
		opts = append(opts, rego.ParsedModule(m))
	}
	q, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("compile policy: %w", err)
	}
	return &prepared{query: q, revision: revision}, nil
}

// Decide evaluates one request. It fails closed: whatever goes wrong, the
// Decision denies and its Reasons say why. An undefined or ill-shaped result
// returns a nil error; an evaluation failure or timeout also returns the error.
func (e *Engine) Decide(ctx context.Context, in Input) (Decision, error) {
	p := e.cur.Load()
	deny := func(reason string) Decision {
		return Decision{Allow: false, Reasons: []string{reason}, PolicyRevision: p.revision}
	}
	v, err := inputValue(in)
	if err != nil {
		if errors.Is(err, ErrInvalidConsent) {
			return deny("invalid consent"), fmt.Errorf("compile policy input: %w", err)
		}
		return deny("invalid policy input"), fmt.Errorf("compile policy input: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	rs, err := p.query.Eval(ctx, rego.EvalParsedInput(v))
	if err != nil {
		if ctx.Err() != nil {
			return deny("policy evaluation timed out"), fmt.Errorf("evaluate consent policy: %w", ctx.Err())
		}
		return deny("policy evaluation failed"), fmt.Errorf("evaluate consent policy: %w", err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return deny("policy decision undefined"), nil
	}
	d, ok := decode(rs[0].Expressions[0].Value)
	if !ok {
		return deny("policy decision ill-shaped"), nil
	}
	d.PolicyRevision = p.revision
	return d, nil
}

// inputValue builds the Rego input as an ast.Value, without a JSON round trip
// and without converting the already compiled consents again.
func inputValue(in Input) (ast.Value, error) {
	t := in.Time
	if t.IsZero() {
		t = time.Now()
	}
	consents := make([]*ast.Term, 0, len(in.Consents)+len(in.Compiled))
	for i, c := range in.Consents {
		cc, err := CompileConsent(c)
		if err != nil {
			return nil, fmt.Errorf("consent %d: %w", i, err)
		}
		consents = append(consents, cc.term)
	}
	for i, cc := range in.Compiled {
		if cc.term == nil {
			return nil, fmt.Errorf("compiled consent %d: %w: not made by CompileConsent", i, ErrInvalidConsent)
		}
		consents = append(consents, cc.term)
	}
	roles := make([]*ast.Term, len(in.Actor.Roles))
	for i, r := range in.Actor.Roles {
		roles[i] = ast.StringTerm(r)
	}
	return ast.NewObject(
		ast.Item(ast.InternedTerm("time"), ast.StringTerm(t.Format(time.RFC3339Nano))),
		ast.Item(ast.InternedTerm("action"), ast.StringTerm(in.Action)),
		ast.Item(ast.InternedTerm("purpose"), ast.StringTerm(in.Purpose)),
		ast.Item(ast.InternedTerm("actor"), ast.ObjectTerm(
			ast.Item(ast.InternedTerm("clientId"), ast.StringTerm(in.Actor.ClientID)),
			ast.Item(ast.InternedTerm("reference"), ast.StringTerm(in.Actor.Reference)),
			ast.Item(ast.InternedTerm("roles"), ast.ArrayTerm(roles...)),
		)),
		ast.Item(ast.InternedTerm("patient"), ast.StringTerm(in.Patient)),
		ast.Item(ast.InternedTerm("resource"), ast.ObjectTerm(
			ast.Item(ast.InternedTerm("type"), ast.StringTerm(in.Resource.Type)),
			ast.Item(ast.InternedTerm("id"), ast.StringTerm(in.Resource.ID)),
			ast.Item(ast.InternedTerm("reference"), ast.StringTerm(in.Resource.Reference)),
			ast.Item(ast.InternedTerm("securityLabels"), codings(in.Resource.SecurityLabels)),
			ast.Item(ast.InternedTerm("codes"), codings(in.Resource.Codes)),
			ast.Item(ast.InternedTerm("date"), ast.StringTerm(in.Resource.Date)),
		)),
		ast.Item(ast.InternedTerm("consents"), ast.ArrayTerm(consents...)),
	), nil
}

func codings(cs []Coding) *ast.Term {
	out := make([]*ast.Term, len(cs))
	for i, c := range cs {
		m := ast.NewObject(ast.Item(ast.InternedTerm("code"), ast.StringTerm(c.Code)))
		if c.System != "" {
			m.Insert(ast.InternedTerm("system"), ast.StringTerm(c.System))
		}
		out[i] = ast.NewTerm(m)
	}
	return ast.ArrayTerm(out...)
}

// decode reads the decision object strictly: allow must be a boolean, the rest
// must have the documented shapes.
func decode(v any) (Decision, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return Decision{}, false
	}
	var d Decision
	if d.Allow, ok = m["allow"].(bool); !ok {
		return Decision{}, false
	}
	if bg, present := m["breakGlass"]; present {
		if d.BreakGlass, ok = bg.(bool); !ok {
			return Decision{}, false
		}
	}
	// The rest is plain JSON data; a typed re-decode checks its shape.
	raw, err := json.Marshal(map[string]any{
		"reasons": m["reasons"], "obligations": m["obligations"], "basedOn": m["basedOn"],
	})
	if err != nil {
		return Decision{}, false
	}
	var rest struct {
		Reasons     []string     `json:"reasons"`
		Obligations []Obligation `json:"obligations"`
		BasedOn     []ConsentRef `json:"basedOn"`
	}
	if err := json.Unmarshal(raw, &rest); err != nil {
		return Decision{}, false
	}
	d.Reasons, d.Obligations, d.BasedOn = rest.Reasons, rest.Obligations, rest.BasedOn
	if d.Allow && len(d.Reasons) == 0 {
		return Decision{}, false // an allow must say why
	}
	return d, true
}

package policy

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
)

//go:embed rego
var embedded embed.FS

// Query is the Rego rule every bundle must define; it yields the decision object.
const Query = "data.fhiranchor.consent.decision"

// DefaultTimeout bounds one decision when Config.Timeout is zero. A
// decision takes well under a millisecond; the bound only stops a runaway
// policy (which then denies), so it leaves room for a loaded machine rather
// than failing closed under load.
const DefaultTimeout = 500 * time.Millisecond

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
	// Organization is "Organization/<id>", the organization the client acts for
	// (from its token), or "" when it acts for none.
	Organization string `json:"organization"`
	// Acting are the other references the actor acts as, resolved by the
	// gateway from stored state: the practitioner and organization of the
	// PractitionerRole it signs in as. A consent provision naming any of
	// them, or Reference, or Organization, names this actor.
	Acting []string `json:"acting,omitempty"`
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
	Patient string `json:"patient"`
	// PatientOrganization is the patient's Patient.managingOrganization
	// reference ("Organization/<id>"), or "" when there is none.
	PatientOrganization string      `json:"patientOrganization"`
	Resource            ResourceRef `json:"resource"`
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
	// defaultRules says the bundle's policy modules are exactly the
	// embedded default's (its data may differ): ConsentFreeKey holds.
	defaultRules bool
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
// the bundle's tests; Replace does, as policy activation must. A bundle that
// does not compile, or does not define Query, yields a *CompileError.
func New(ctx context.Context, cfg Config) (*Engine, error) {
	e := &Engine{timeout: cfg.Timeout}
	if e.timeout <= 0 {
		e.timeout = DefaultTimeout
	}
	fsys := cfg.Bundle
	if fsys == nil {
		fsys = DefaultBundle()
	}
	b, err := loadBundle(fsys)
	if err != nil {
		return nil, err
	}
	p, err := b.prepare(ctx, cfg.Revision)
	if err != nil {
		return nil, err
	}
	e.cur.Store(p)
	return e, nil
}

// Revision returns the revision of the bundle currently deciding.
func (e *Engine) Revision() string { return e.cur.Load().revision }

// Replace vets a new bundle exactly as Check does and only if it compiles and
// all its tests pass swaps it in atomically; revision names it ("" means its
// digest). It returns Check's *CompileError, or a *TestFailureError naming the
// failing tests; either way the current bundle stays. Decisions in flight
// finish on the old bundle.
func (e *Engine) Replace(ctx context.Context, fsys fs.FS, revision string) error {
	if fsys == nil {
		return errors.New("replace policy: nil bundle")
	}
	_, p, results, err := check(ctx, fsys, revision)
	if err != nil {
		return err
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

// Decide evaluates one request. It fails closed: whatever goes wrong, the
// Decision denies and its Reasons say why. An undefined or ill-shaped result
// returns a nil error; an evaluation failure or timeout also returns the error.
func (e *Engine) Decide(ctx context.Context, in Input) (Decision, error) {
	return e.decide(ctx, e.cur.Load(), in)
}

// Fired is one rule of the bundle whose body succeeded while deciding.
type Fired struct {
	// Rule is the rule's full name, such as "data.fhiranchor.consent.deny_provision".
	Rule string
	// Location is where the succeeding body (or else branch) starts, as "file:row".
	Location string
}

// Explain decides like Decide, on the same bundle and with the same fail-closed
// behaviour, and also lists the rules (functions included) whose bodies
// evaluated successfully for in, once each, in the order they first did. It
// traces the evaluation, so it is much slower than Decide; it is meant for
// explaining a decision to an administrator or in a test, not for every request.
func (e *Engine) Explain(ctx context.Context, in Input) (Decision, []Fired, error) {
	tracer := topdown.NewBufferTracer()
	d, err := e.decide(ctx, e.cur.Load(), in, rego.EvalQueryTracer(tracer))
	var fired []Fired
	seen := map[Fired]bool{}
	for _, ev := range *tracer {
		if ev.Op != topdown.ExitOp {
			continue
		}
		r, ok := ev.Node.(*ast.Rule)
		if !ok || r.Module == nil || r.Location == nil {
			continue
		}
		f := Fired{Rule: r.Path().String(), Location: fmt.Sprintf("%s:%d", r.Location.File, r.Location.Row)}
		if !seen[f] {
			seen[f] = true
			fired = append(fired, f)
		}
	}
	return d, fired, err
}

func (e *Engine) decide(ctx context.Context, p *prepared, in Input, opts ...rego.EvalOption) (Decision, error) {
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
	// No one reads an evaluation's metrics: without EvalMetrics OPA
	// makes and times a fresh set for every decision.
	rs, err := p.query.Eval(ctx, append(opts, rego.EvalParsedInput(v), rego.EvalGenerateJSON(decodeResult), rego.EvalMetrics(metrics.NoOp()))...)
	if err != nil {
		if ctx.Err() != nil {
			return deny("policy evaluation timed out"), fmt.Errorf("evaluate consent policy: %w", ctx.Err())
		}
		return deny("policy evaluation failed"), evalError(err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return deny("policy decision undefined"), nil
	}
	res, _ := rs[0].Expressions[0].Value.(decoded)
	d, ok := res.d, res.ok
	if !ok {
		return deny("policy decision ill-shaped"), nil
	}
	d.PolicyRevision = p.revision
	return d, nil
}

// inKey holds the input's member names as terms, looked up once rather
// than in OPA's intern table for every decision.
var inKey = struct {
	Acting              *ast.Term
	Action              *ast.Term
	Actor               *ast.Term
	ClientId            *ast.Term
	Code                *ast.Term
	Codes               *ast.Term
	Consents            *ast.Term
	Date                *ast.Term
	Id                  *ast.Term
	Organization        *ast.Term
	Patient             *ast.Term
	PatientOrganization *ast.Term
	Purpose             *ast.Term
	Reference           *ast.Term
	Resource            *ast.Term
	Roles               *ast.Term
	SecurityLabels      *ast.Term
	System              *ast.Term
	Time                *ast.Term
	Type                *ast.Term
}{
	Acting:              ast.InternedTerm("acting"),
	Action:              ast.InternedTerm("action"),
	Actor:               ast.InternedTerm("actor"),
	ClientId:            ast.InternedTerm("clientId"),
	Code:                ast.InternedTerm("code"),
	Codes:               ast.InternedTerm("codes"),
	Consents:            ast.InternedTerm("consents"),
	Date:                ast.InternedTerm("date"),
	Id:                  ast.InternedTerm("id"),
	Organization:        ast.InternedTerm("organization"),
	Patient:             ast.InternedTerm("patient"),
	PatientOrganization: ast.InternedTerm("patientOrganization"),
	Purpose:             ast.InternedTerm("purpose"),
	Reference:           ast.InternedTerm("reference"),
	Resource:            ast.InternedTerm("resource"),
	Roles:               ast.InternedTerm("roles"),
	SecurityLabels:      ast.InternedTerm("securityLabels"),
	System:              ast.InternedTerm("system"),
	Time:                ast.InternedTerm("time"),
	Type:                ast.InternedTerm("type"),
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
	acting := make([]*ast.Term, len(in.Actor.Acting))
	for i, r := range in.Actor.Acting {
		acting[i] = ast.StringTerm(r)
	}
	return ast.NewObject(
		ast.Item(inKey.Time, ast.StringTerm(t.Format(time.RFC3339Nano))),
		ast.Item(inKey.Action, ast.StringTerm(in.Action)),
		ast.Item(inKey.Purpose, ast.StringTerm(in.Purpose)),
		ast.Item(inKey.Actor, ast.ObjectTerm(
			ast.Item(inKey.ClientId, ast.StringTerm(in.Actor.ClientID)),
			ast.Item(inKey.Reference, ast.StringTerm(in.Actor.Reference)),
			ast.Item(inKey.Roles, ast.ArrayTerm(roles...)),
			ast.Item(inKey.Organization, ast.StringTerm(in.Actor.Organization)),
			ast.Item(inKey.Acting, ast.ArrayTerm(acting...)),
		)),
		ast.Item(inKey.Patient, ast.StringTerm(in.Patient)),
		ast.Item(inKey.PatientOrganization, ast.StringTerm(in.PatientOrganization)),
		ast.Item(inKey.Resource, ast.ObjectTerm(
			ast.Item(inKey.Type, ast.StringTerm(in.Resource.Type)),
			ast.Item(inKey.Id, ast.StringTerm(in.Resource.ID)),
			ast.Item(inKey.Reference, ast.StringTerm(in.Resource.Reference)),
			ast.Item(inKey.SecurityLabels, codings(in.Resource.SecurityLabels)),
			ast.Item(inKey.Codes, codings(in.Resource.Codes)),
			ast.Item(inKey.Date, ast.StringTerm(in.Resource.Date)),
		)),
		ast.Item(inKey.Consents, ast.ArrayTerm(consents...)),
	), nil
}

func codings(cs []Coding) *ast.Term {
	out := make([]*ast.Term, len(cs))
	for i, c := range cs {
		m := ast.NewObject(ast.Item(inKey.Code, ast.StringTerm(c.Code)))
		if c.System != "" {
			m.Insert(inKey.System, ast.StringTerm(c.System))
		}
		out[i] = ast.NewTerm(m)
	}
	return ast.ArrayTerm(out...)
}

// evalError keeps of an evaluation failure what an operator needs, the OPA
// error code and the rule's location, and drops its message: a builtin's
// message can quote the input it failed on, such as a clinical date, which
// must not reach a log.
func evalError(err error) error {
	var te *topdown.Error
	if errors.As(err, &te) {
		loc := "unknown location"
		if te.Location != nil {
			loc = te.Location.String()
		}
		return fmt.Errorf("evaluate consent policy: %s at %s", te.Code, loc)
	}
	return errors.New("evaluate consent policy: evaluation failed")
}

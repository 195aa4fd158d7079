package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/fhiranchor/fhiranchor/access"
	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/policy"
	fhiranchorv1 "github.com/fhiranchor/fhiranchor/proto/fhiranchor/v1"
	"github.com/fhiranchor/fhiranchor/vault"
)

// Policy administration. Policy bundles are stored in the vault as
// numbered versions, only after they compile and their tests pass. The
// active version is the one named by the newest policy-activation leaf, so
// the log itself is the policy history, and every gateway on one database
// converges on it (policyService.Run polls for activations made elsewhere).
// On first start the embedded default bundle is stored as version 1 and
// activated like any other, so every decision names an anchored revision.

// bootstrapClient is the client id of the activation made at first start.
const bootstrapClient = "fhiranchor"

// policyPollInterval is how often a gateway looks for activations made by
// another gateway on the same database.
const policyPollInterval = 2 * time.Second

type policyService struct {
	fhiranchorv1.UnimplementedPolicyServiceServer
	vault  *vault.Sealed
	access *access.Control // runs the active engine with its version
	log    *slog.Logger
	now    func() time.Time

	timeout time.Duration // of one decision; zero means policy.DefaultTimeout

	mu sync.Mutex // serialises activations in this process
	// active is the activation the engine runs, with its leaf index.
	active     access.PolicyActivation
	activeLeaf int64
}

// newPolicyService loads the active policy version, storing and activating
// the embedded default on first start, and returns the engine running it.
func newPolicyService(ctx context.Context, v *vault.Sealed, ac *access.Control, log *slog.Logger, now func() time.Time, timeout time.Duration) (*policyService, error) {
	s := &policyService{vault: v, access: ac, log: log, now: now, timeout: timeout}
	act, seq, err := s.latest(ctx)
	if err != nil {
		return nil, err
	}
	if seq == 0 {
		if act, seq, err = s.bootstrap(ctx); err != nil {
			return nil, err
		}
	}
	_, files, err := s.load(ctx, act.Version)
	if err != nil {
		return nil, err
	}
	engine, err := policy.New(ctx, policy.Config{Bundle: files.FS(), Revision: act.Revision, Timeout: s.timeout})
	if err != nil {
		return nil, fmt.Errorf("load active policy version %d: %w", act.Version, err)
	}
	s.active, s.activeLeaf = act, seq
	ac.Activate(engine, act.Version, act.Revision)
	return s, nil
}

// latest returns the newest activation and its leaf Seq (0 if none).
func (s *policyService) latest(ctx context.Context) (access.PolicyActivation, int64, error) {
	ls, err := s.vault.Store().FindLeaves(ctx, vault.LeafFilter{Type: uint8(anchor.LeafPolicyActivation), Limit: 1})
	if err != nil {
		return access.PolicyActivation{}, 0, fmt.Errorf("find policy activation: %w", err)
	}
	if len(ls) == 0 {
		return access.PolicyActivation{}, 0, nil
	}
	var act access.PolicyActivation
	if err := json.Unmarshal(ls[0].Record, &act); err != nil {
		return access.PolicyActivation{}, 0, fmt.Errorf("decode policy activation: %w", err)
	}
	return act, ls[0].Seq, nil
}

func (s *policyService) bootstrap(ctx context.Context) (access.PolicyActivation, int64, error) {
	files, err := policy.ReadFiles(policy.DefaultBundle())
	if err != nil {
		return access.PolicyActivation{}, 0, err
	}
	revision, results, err := policy.Check(ctx, files.FS())
	if err != nil {
		return access.PolicyActivation{}, 0, fmt.Errorf("check default policy: %w", err)
	}
	if f := failedTests(results); len(f) > 0 {
		return access.PolicyActivation{}, 0, fmt.Errorf("default policy fails its tests: %s", strings.Join(f, "; "))
	}
	var act access.PolicyActivation
	var seq int64
	err = s.vault.Update(ctx, func(tx *vault.SealedTx) error {
		p, err := s.store(ctx, tx, files, revision, bootstrapClient)
		if err != nil {
			return err
		}
		act, seq, err = s.recordActivation(ctx, tx, p.Version, revision, 0, false, bootstrapClient)
		return err
	})
	if err != nil {
		return access.PolicyActivation{}, 0, fmt.Errorf("activate default policy: %w", err)
	}
	s.log.InfoContext(ctx, "default policy activated", slog.Int64("version", act.Version), slog.String("revision", act.Revision))
	return act, seq, nil
}

func (s *policyService) store(ctx context.Context, tx *vault.SealedTx, files policy.Files, revision, client string) (vault.Policy, error) {
	enc, err := files.Encode()
	if err != nil {
		return vault.Policy{}, err
	}
	p := vault.Policy{Revision: revision, Bundle: enc, Created: access.Now(s.now), Author: client}
	p.Version, err = tx.PutPolicy(ctx, p)
	return p, err
}

func (s *policyService) recordActivation(ctx context.Context, tx *vault.SealedTx, version int64, revision string, previous int64, rollback bool, client string) (access.PolicyActivation, int64, error) {
	at := access.Now(s.now)
	act := access.PolicyActivation{Kind: access.KindPolicyActivation, Version: version, Revision: revision, Previous: previous,
		Rollback: rollback, Client: client, Time: at.Format(time.RFC3339Nano)}
	idx, _, err := access.Add(ctx, tx, access.KindPolicyActivation, fmt.Sprintf("policy-activation/%d", version), "", client, at, act)
	if err != nil {
		return access.PolicyActivation{}, 0, err
	}
	return act, int64(idx) + 1, nil
}

// load reads a stored version and decodes its files.
func (s *policyService) load(ctx context.Context, version int64) (vault.Policy, policy.Files, error) {
	p, err := s.vault.Store().Policy(ctx, version)
	if errors.Is(err, vault.ErrNotFound) {
		return vault.Policy{}, nil, failure(http.StatusNotFound, "not-found", "", "no such policy version")
	}
	if err != nil {
		return vault.Policy{}, nil, fmt.Errorf("read policy version: %w", err)
	}
	files, err := policy.DecodeFiles(p.Bundle)
	if err != nil {
		return vault.Policy{}, nil, fmt.Errorf("decode policy version %d: %w", version, err)
	}
	return p, files, nil
}

// Run follows activations made by other gateways on the same database
// until ctx ends.
func (s *policyService) Run(ctx context.Context) error {
	t := time.NewTicker(policyPollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := s.sync(ctx); err != nil && ctx.Err() == nil {
			s.log.ErrorContext(ctx, "follow policy activations", slog.String("err", err.Error()))
		}
	}
}

// sync loads the newest activation if it is not the one running.
func (s *policyService) sync(ctx context.Context) error {
	act, seq, err := s.latest(ctx)
	if err != nil || seq == 0 {
		return err
	}
	return s.follow(ctx, act, seq)
}

// follow runs the activation at leaf seq unless this process already runs
// it or a newer one: a sync that read the log before an activation made in
// this process (a rollback, say) must not undo it when it gets the lock.
func (s *policyService) follow(ctx context.Context, act access.PolicyActivation, seq int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq <= s.activeLeaf {
		return nil
	}
	_, files, err := s.load(ctx, act.Version)
	if err != nil {
		return err
	}
	engine, err := policy.New(ctx, policy.Config{Bundle: files.FS(), Revision: act.Revision, Timeout: s.timeout})
	if err != nil {
		return fmt.Errorf("load policy version %d activated elsewhere: %w", act.Version, err)
	}
	s.active, s.activeLeaf = act, seq
	s.access.Activate(engine, act.Version, act.Revision)
	s.log.InfoContext(ctx, "policy activated elsewhere loaded", slog.Int64("version", act.Version))
	return nil
}

// ListPolicies lists the stored versions.
func (s *policyService) ListPolicies(ctx context.Context, _ *fhiranchorv1.ListPoliciesRequest) (*fhiranchorv1.ListPoliciesResponse, error) {
	ps, err := s.vault.Store().Policies(ctx)
	if err != nil {
		return nil, fmt.Errorf("list policies: %w", err)
	}
	active := s.access.Active().Version
	out := &fhiranchorv1.ListPoliciesResponse{ActiveVersion: active}
	for _, p := range ps {
		out.Policies = append(out.Policies, policyMessage(p, active, nil))
	}
	return out, nil
}

// GetPolicy returns one version with its files.
func (s *policyService) GetPolicy(ctx context.Context, req *fhiranchorv1.GetPolicyRequest) (*fhiranchorv1.Policy, error) {
	p, files, err := s.load(ctx, req.GetVersion())
	if err != nil {
		return nil, err
	}
	return policyMessage(p, s.access.Active().Version, files), nil
}

// CreatePolicy stores a bundle as the next version if it compiles and its
// tests pass.
func (s *policyService) CreatePolicy(ctx context.Context, req *fhiranchorv1.CreatePolicyRequest) (*fhiranchorv1.CreatePolicyResponse, error) {
	files := policy.Files(req.GetFiles())
	revision, results, err := s.check(ctx, files)
	if err != nil {
		return nil, policyRefusal(err)
	}
	if f := failedTests(results); len(f) > 0 {
		return nil, refused("the policy's tests fail", f)
	}
	var p vault.Policy
	err = s.vault.Update(ctx, func(tx *vault.SealedTx) error {
		var err error
		p, err = s.store(ctx, tx, files, revision, clientOf(ctx))
		if errors.Is(err, vault.ErrConflict) {
			return failure(http.StatusConflict, "duplicate", "", "a stored version already has this revision")
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "policy stored", slog.Int64("version", p.Version), slog.String("client", clientOf(ctx)))
	setResponse(ctx, http.StatusCreated)
	return &fhiranchorv1.CreatePolicyResponse{Policy: policyMessage(p, s.access.Active().Version, files), Tests: testMessages(results)}, nil
}

// TestPolicy compiles a bundle and runs its tests, storing nothing.
func (s *policyService) TestPolicy(ctx context.Context, req *fhiranchorv1.TestPolicyRequest) (*fhiranchorv1.TestPolicyResponse, error) {
	revision, results, err := s.check(ctx, policy.Files(req.GetFiles()))
	var ce *policy.CompileError
	if errors.As(err, &ce) {
		return &fhiranchorv1.TestPolicyResponse{Revision: revision, Errors: ce.Messages}, nil
	}
	if err != nil {
		return nil, err
	}
	return &fhiranchorv1.TestPolicyResponse{Revision: revision, Compiled: true, Tests: testMessages(results),
		Passed: len(failedTests(results)) == 0}, nil
}

// check validates, compiles and tests a bundle. Invalid file names are a
// 400; a compile failure is returned as the *policy.CompileError.
func (s *policyService) check(ctx context.Context, files policy.Files) (string, []policy.TestResult, error) {
	if err := files.Validate(); err != nil {
		return "", nil, failure(http.StatusBadRequest, "invalid", "files", err.Error())
	}
	revision, results, err := policy.Check(ctx, files.FS())
	var ce *policy.CompileError
	if err != nil && !errors.As(err, &ce) {
		return "", nil, fmt.Errorf("check policy: %w", err)
	}
	return revision, results, err
}

// refused is a 422 whose OperationOutcome has one issue per message.
func refused(summary string, messages []string) *fhirError {
	fe := failure(http.StatusUnprocessableEntity, "processing", "", summary)
	for _, m := range messages {
		fe.issues = append(fe.issues, issue{Severity: "error", Code: "processing", Diagnostics: m})
	}
	return fe
}

// ActivatePolicy makes a stored version the deciding one.
func (s *policyService) ActivatePolicy(ctx context.Context, req *fhiranchorv1.ActivatePolicyRequest) (*fhiranchorv1.Activation, error) {
	return s.activate(ctx, req.GetVersion(), false)
}

// RollbackPolicy re-activates the version active before the current one.
func (s *policyService) RollbackPolicy(ctx context.Context, _ *fhiranchorv1.RollbackPolicyRequest) (*fhiranchorv1.Activation, error) {
	if err := s.sync(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	prev := s.active.Previous
	s.mu.Unlock()
	if prev == 0 {
		return nil, failure(http.StatusConflict, "business-rule", "", "no previous policy version to roll back to")
	}
	return s.activate(ctx, prev, true)
}

// activate compiles and tests a stored version again, swaps it in, and
// records the activation leaf. If the record cannot be written, the
// previous version is swapped back: an activation that is not in the log
// did not happen.
func (s *policyService) activate(ctx context.Context, version int64, rollback bool) (*fhiranchorv1.Activation, error) {
	if err := s.sync(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if version == s.active.Version {
		return nil, failure(http.StatusConflict, "business-rule", "", "this version is already the active one")
	}
	p, files, err := s.load(ctx, version)
	if err != nil {
		return nil, err
	}
	engine, err := vetted(ctx, files, p.Revision, s.timeout)
	if err != nil {
		return nil, policyRefusal(err)
	}
	prev := s.active
	var act access.PolicyActivation
	var seq int64
	err = s.vault.Update(ctx, func(tx *vault.SealedTx) error {
		var err error
		act, seq, err = s.recordActivation(ctx, tx, version, p.Revision, prev.Version, rollback, clientOf(ctx))
		return err
	})
	if err != nil {
		// Not in the log, so it did not happen: the engine was never swapped in.
		return nil, fmt.Errorf("record policy activation: %w", err)
	}
	s.active, s.activeLeaf = act, seq
	s.access.Activate(engine, version, p.Revision)
	s.log.InfoContext(ctx, "policy activated", slog.Int64("version", version), slog.Bool("rollback", rollback),
		slog.String("client", act.Client), slog.Int64("leaf", seq-1))
	return activationMessage(act, seq), nil
}

// vetted compiles a stored version and runs its tests, as an activation
// must: an engine over a bundle whose tests fail is never swapped in.
func vetted(ctx context.Context, files policy.Files, revision string, timeout time.Duration) (*policy.Engine, error) {
	engine, err := policy.New(ctx, policy.Config{Bundle: files.FS(), Revision: revision, Timeout: timeout})
	if err != nil {
		return nil, err
	}
	if err := engine.Replace(ctx, files.FS(), revision); err != nil {
		return nil, err
	}
	return engine, nil
}

// policyRefusal turns a bundle that does not compile or whose tests fail
// into a 422 naming the compiler messages or the failing tests.
func policyRefusal(err error) error {
	var ce *policy.CompileError
	var tf *policy.TestFailureError
	switch {
	case errors.As(err, &ce):
		return refused("the policy does not compile", ce.Messages)
	case errors.As(err, &tf):
		return refused("the policy's tests fail", failedTests(tf.Failed))
	}
	return fmt.Errorf("load policy: %w", err)
}

// ListActivations lists every activation, newest first.
func (s *policyService) ListActivations(ctx context.Context, _ *fhiranchorv1.ListActivationsRequest) (*fhiranchorv1.ListActivationsResponse, error) {
	out := &fhiranchorv1.ListActivationsResponse{}
	for before := int64(0); ; {
		ls, err := s.vault.Store().FindLeaves(ctx, vault.LeafFilter{Type: uint8(anchor.LeafPolicyActivation), Before: before, Limit: 500})
		if err != nil {
			return nil, fmt.Errorf("list activations: %w", err)
		}
		for _, l := range ls {
			var act access.PolicyActivation
			if err := json.Unmarshal(l.Record, &act); err != nil {
				return nil, fmt.Errorf("decode activation: %w", err)
			}
			out.Activations = append(out.Activations, activationMessage(act, l.Seq))
		}
		if len(ls) < 500 {
			return out, nil
		}
		before = ls[len(ls)-1].Seq
	}
}

// Evaluate is a dry run of a decision, with the rules that fired.
func (s *policyService) Evaluate(ctx context.Context, req *fhiranchorv1.EvaluateRequest) (*fhiranchorv1.EvaluateResponse, error) {
	in, err := evaluateInput(req)
	if err != nil {
		return nil, err
	}
	active := s.access.Active()
	engine, version := active.Engine.(*policy.Engine), active.Version
	if v := req.GetVersion(); v != 0 && v != version {
		p, files, err := s.load(ctx, v)
		if err != nil {
			return nil, err
		}
		if engine, err = policy.New(ctx, policy.Config{Bundle: files.FS(), Revision: p.Revision, Timeout: s.timeout}); err != nil {
			return nil, policyRefusal(err)
		}
		version = v
	}
	if in.Patient != "" {
		if in.Compiled, err = s.access.ConsentsOf(ctx, access.Committed{Vault: s.vault}, in.Patient); err != nil && !errors.Is(err, policy.ErrInvalidConsent) {
			return nil, err
		}
	}
	d, fired, err := engine.Explain(ctx, in)
	if err != nil {
		s.log.WarnContext(ctx, "policy dry run failed", slog.String("err", err.Error()))
	}
	out := &fhiranchorv1.EvaluateResponse{Allow: d.Allow, Reasons: d.Reasons, PolicyRevision: d.PolicyRevision,
		PolicyVersion: version, BreakGlass: d.BreakGlass}
	for _, o := range d.Obligations {
		out.Obligations = append(out.Obligations, &fhiranchorv1.Obligation{Type: o.Type, SecurityLabels: codingStrings(o.SecurityLabels)})
	}
	for _, c := range d.BasedOn {
		out.BasedOn = append(out.BasedOn, &fhiranchorv1.ConsentVersion{Id: c.ID, VersionId: c.VersionID})
	}
	for _, f := range fired {
		out.Fired = append(out.Fired, f.Rule+" ("+f.Location+")")
	}
	return out, nil
}

// evaluateInput reads a dry-run request.
func evaluateInput(req *fhiranchorv1.EvaluateRequest) (policy.Input, error) {
	in := policy.Input{
		Action: req.GetAction(), Purpose: req.GetPurpose(),
		Actor:               policy.Actor{ClientID: "dry-run", Reference: req.GetActor(), Roles: req.GetActorRoles(), Organization: req.GetActorOrganization()},
		PatientOrganization: req.GetPatientOrganization(),
		Resource:            policy.ResourceRef{Type: req.GetResourceType(), ID: req.GetResourceId(), Date: req.GetDate()},
	}
	var err error
	if in.Patient, err = normPatient(req.GetPatient()); err != nil {
		return in, err
	}
	if in.Resource.Type != "" {
		in.Resource.Reference = in.Resource.Type + "/" + in.Resource.ID
	}
	if t := req.GetTime(); t != "" {
		at, err := time.Parse(time.RFC3339, t)
		if err != nil {
			return in, failure(http.StatusBadRequest, "invalid", "time", "time must be RFC 3339")
		}
		in.Time = at
	}
	if in.Resource.SecurityLabels, err = parseCodings(req.GetSecurityLabels(), "security_labels"); err != nil {
		return in, err
	}
	if in.Resource.Codes, err = parseCodings(req.GetCodes(), "codes"); err != nil {
		return in, err
	}
	return in, nil
}

func parseCodings(ss []string, field string) ([]policy.Coding, error) {
	var out []policy.Coding
	for _, s := range ss {
		system, code, ok := strings.Cut(s, "|")
		if !ok || code == "" {
			return nil, failure(http.StatusBadRequest, "invalid", field, field+" entries must be system|code")
		}
		out = append(out, policy.Coding{System: system, Code: code})
	}
	return out, nil
}

func codingStrings(cs []policy.Coding) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.System + "|" + c.Code
	}
	return out
}

func failedTests(results []policy.TestResult) []string {
	var out []string
	for _, r := range results {
		if !r.Pass {
			msg := r.Name
			if r.Message != "" {
				msg += ": " + r.Message
			}
			out = append(out, msg)
		}
	}
	return out
}

func testMessages(results []policy.TestResult) []*fhiranchorv1.TestResult {
	out := make([]*fhiranchorv1.TestResult, len(results))
	for i, r := range results {
		out[i] = &fhiranchorv1.TestResult{Name: r.Name, Pass: r.Pass, Message: r.Message, DurationMicros: r.Duration.Microseconds()}
	}
	return out
}

func policyMessage(p vault.Policy, active int64, files policy.Files) *fhiranchorv1.Policy {
	return &fhiranchorv1.Policy{Version: p.Version, Revision: p.Revision, Created: p.Created.Format(time.RFC3339Nano),
		Author: p.Author, Active: p.Version == active, Files: files}
}

func activationMessage(a access.PolicyActivation, seq int64) *fhiranchorv1.Activation {
	return &fhiranchorv1.Activation{Version: a.Version, Revision: a.Revision, Time: a.Time, Client: a.Client,
		LeafIndex: uint64(seq - 1), Rollback: a.Rollback, Previous: a.Previous}
}

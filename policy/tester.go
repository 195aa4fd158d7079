package policy

import (
	"context"
	"fmt"
	"io/fs"
	"sort"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/tester"
)

// TestResult is the outcome of one Rego test rule.
type TestResult struct {
	// Name is the test's package-qualified name, e.g. "data.fhiranchor.consent.test_optout_denies".
	Name     string
	Pass     bool
	Message  string // why it failed, empty when it passed
	Duration time.Duration
}

// RunTests runs the bundle's test_ rules (from *_test.rego files) as `opa test`
// would, with builtin errors raised as the engine raises them. It returns an
// error only when the bundle cannot be read or compiled.
func RunTests(ctx context.Context, fsys fs.FS) ([]TestResult, error) {
	if fsys == nil {
		fsys = DefaultBundle()
	}
	b, err := loadBundle(fsys, true)
	if err != nil {
		return nil, err
	}
	store := b.store()
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return nil, fmt.Errorf("run policy tests: %w", err)
	}
	defer store.Abort(ctx, txn)
	ch, err := tester.NewRunner().
		SetDefaultRegoVersion(ast.RegoV1).
		SetCompiler(ast.NewCompiler().WithDefaultRegoVersion(ast.RegoV1)).
		SetStore(store).
		SetModules(b.modules).
		RaiseBuiltinErrors(true).
		SetTimeout(10*time.Second).
		RunTests(ctx, txn)
	if err != nil {
		return nil, fmt.Errorf("compile policy tests: %w", err)
	}
	var out []TestResult
	for r := range ch {
		tr := TestResult{Name: r.Package + "." + r.Name, Pass: r.Pass(), Duration: r.Duration}
		switch {
		case r.Error != nil:
			tr.Message = "error: " + r.Error.Error()
		case r.Fail && r.FailedAt != nil:
			tr.Message = fmt.Sprintf("failed at %s: %s", r.FailedAt.Location, r.FailedAt)
		case r.Fail:
			tr.Message = "failed"
		}
		out = append(out, tr)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

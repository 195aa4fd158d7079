package policy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// TestResult is the outcome of one Rego test rule.
type TestResult struct {
	// Name is the test's package-qualified name, e.g. "data.fhiranchor.consent.test_optout_denies".
	Name     string
	Pass     bool
	Message  string // why it failed, empty when it passed
	Duration time.Duration

	skipped bool // a todo_test_ rule: neither passing nor counting as a test
}

// TestFailureError reports the tests that kept a bundle from being activated.
type TestFailureError struct {
	Failed []TestResult
}

func (e *TestFailureError) Error() string {
	msg := "policy tests failed:"
	for i, r := range e.Failed {
		if i > 0 {
			msg += ";"
		}
		msg += " " + r.Name
		if r.Message != "" {
			msg += " (" + r.Message + ")"
		}
	}
	return msg
}

// Check vets a bundle for activation without activating anything: it compiles
// the bundle, which MUST define data.fhiranchor.consent.decision, and runs its
// test_ rules (from *_test.rego files) as `opa test` would. It returns the
// bundle's revision (the hex SHA-256 of its files, tests included) and every
// test's result, sorted by name. A bundle that does not compile, or has no
// test at all (an untested policy must not become active), yields a
// *CompileError. Failing tests do not make err non-nil: they are the results
// with Pass false. Other errors (reading fsys) are returned wrapped.
func Check(ctx context.Context, fsys fs.FS) (revision string, results []TestResult, err error) {
	b, _, results, err := check(ctx, fsys, "")
	if err != nil {
		return "", nil, err
	}
	return b.digest, results, nil
}

// check is Check that also returns what Replace activates.
func check(ctx context.Context, fsys fs.FS, revision string) (*bundle, *prepared, []TestResult, error) {
	if fsys == nil {
		return nil, nil, nil, errors.New("check policy: nil bundle")
	}
	b, err := loadBundle(fsys)
	if err != nil {
		return nil, nil, nil, err
	}
	p, err := b.prepare(ctx, revision)
	if err != nil {
		return nil, nil, nil, err
	}
	results, err := b.runTests(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	ran := 0
	for _, r := range results {
		if !r.skipped {
			ran++
		}
	}
	if ran == 0 {
		return nil, nil, nil, &CompileError{Messages: []string{"bundle has no tests"}}
	}
	return b, p, results, nil
}

// RunTests runs the bundle's test_ rules as Check does, with builtin errors
// raised as the engine raises them; a nil fsys means the embedded default
// bundle. It returns an error only when the bundle cannot be read or compiled
// (then a *CompileError).
func RunTests(ctx context.Context, fsys fs.FS) ([]TestResult, error) {
	if fsys == nil {
		fsys = DefaultBundle()
	}
	b, err := loadBundle(fsys)
	if err != nil {
		return nil, err
	}
	return b.runTests(ctx)
}

// runner is an `opa test` runner over the bundle's modules, raising builtin
// errors as the engine does.
func (b *bundle) runner(store storage.Store) *tester.Runner {
	return tester.NewRunner().
		SetDefaultRegoVersion(ast.RegoV1).
		SetCompiler(ast.NewCompiler().WithDefaultRegoVersion(ast.RegoV1)).
		SetStore(store).
		SetModules(b.modules).
		RaiseBuiltinErrors(true).
		SetTimeout(10 * time.Second)
}

// runTests runs the test rules of all the bundle's modules, tests included.
func (b *bundle) runTests(ctx context.Context) ([]TestResult, error) {
	store := b.store()
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return nil, fmt.Errorf("run policy tests: %w", err)
	}
	defer store.Abort(ctx, txn)
	ch, err := b.runner(store).RunTests(ctx, txn)
	if err != nil {
		var errs ast.Errors
		if errors.As(err, &errs) {
			return nil, compileError(errs)
		}
		return nil, fmt.Errorf("run policy tests: %w", err)
	}
	var out []TestResult
	var failed []string
	for r := range ch {
		tr := TestResult{Name: r.Package + "." + r.Name, Pass: r.Pass(), Duration: r.Duration, skipped: r.Skip}
		switch {
		case r.Error != nil:
			tr.Message = "error: " + r.Error.Error()
		case r.Fail:
			tr.Message = "failed"
			failed = append(failed, tr.Name)
		case r.Skip:
			tr.Message = "skipped (todo_test_): not a passing test"
		}
		out = append(out, tr)
	}
	if len(failed) > 0 {
		at := b.failedAt(ctx, failed)
		for i, r := range out {
			if loc, ok := at[r.Name]; ok {
				out[i].Message = "failed at " + loc
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// failedAt runs the named failing tests again, traced, and returns for each the
// last expression of its body that failed, as "file:row: source text". Tests
// whose failure it cannot place are left out. Only failures pay for tracing.
func (b *bundle) failedAt(ctx context.Context, names []string) map[string]string {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = regexp.QuoteMeta(n)
	}
	store := b.store()
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return nil
	}
	defer store.Abort(ctx, txn)
	ch, err := b.runner(store).
		EnableTracing(true).
		Filter("^("+strings.Join(quoted, "|")+")$").
		RunTests(ctx, txn)
	if err != nil {
		return nil
	}
	at := map[string]string{}
	for r := range ch {
		// The test rule's body runs under the query of the first rule entered;
		// its last failing expression is where the test gave up.
		var body uint64
		var last *topdown.Event
		for _, ev := range r.Trace {
			if _, ok := ev.Node.(*ast.Rule); ok && ev.Op == topdown.EnterOp && body == 0 {
				body = ev.QueryID
			}
			if _, ok := ev.Node.(*ast.Expr); ok && ev.Op == topdown.FailOp && body != 0 && ev.QueryID == body && ev.Location != nil {
				last = ev
			}
		}
		if last != nil {
			text := strings.Join(strings.Fields(string(last.Location.Text)), " ")
			at[r.Package+"."+r.Name] = fmt.Sprintf("%s:%d: %s", last.Location.File, last.Location.Row, text)
		}
	}
	return at
}

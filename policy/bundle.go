package policy

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// CompileError reports why a policy bundle cannot be used: one message per
// problem, each naming its file and, for Rego errors, the row
// ("consent.rego:12: rego_parse_error: ..."). The bundle's own text is the
// only source of these messages; they hold no request data.
type CompileError struct {
	Messages []string
}

func (e *CompileError) Error() string {
	return "compile policy: " + strings.Join(e.Messages, "; ")
}

// compileError turns Rego compiler or parser errors into a CompileError, one
// message per error; any other error becomes a single message.
func compileError(err error) *CompileError {
	var errs ast.Errors
	if !errors.As(err, &errs) {
		return &CompileError{Messages: []string{err.Error()}}
	}
	ce := &CompileError{Messages: make([]string, len(errs))}
	for i, e := range errs {
		// e.Error() would append the parser's multi-line excerpt; one line each.
		ce.Messages[i] = fmt.Sprintf("%s: %s", e.Code, e.Message)
		if loc := e.Location; loc != nil {
			ce.Messages[i] = fmt.Sprintf("%s:%d: %s", loc.File, loc.Row, ce.Messages[i])
		}
	}
	return ce
}

// bundle is a policy bundle read from an fs.FS.
type bundle struct {
	modules map[string]*ast.Module // every *.rego file, tests included
	tests   map[string]bool        // which modules come from *_test.rego files
	data    map[string]any
	digest  string
	// rules is the SHA-256 of the policy modules alone (not the tests, not
	// data.json): what the decision's rules are, whatever the data.
	rules string
}

func (b *bundle) store() storage.Store {
	return inmem.NewFromObjectWithOpts(b.data, inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))
}

// loadBundle parses every *.rego file with v1 syntax and merges every
// data.json at its directory's path. The digest covers all regular files, tests
// included, so a revision pins exactly what was tested. Defects of the bundle
// (parse errors, bad data.json, no Rego at all) come back as one *CompileError
// listing all of them; failures to read fsys are plain errors.
func loadBundle(fsys fs.FS) (*bundle, error) {
	b := &bundle{modules: map[string]*ast.Module{}, tests: map[string]bool{}, data: map[string]any{}}
	var names []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			names = append(names, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read policy bundle: %w", err)
	}
	sort.Strings(names)
	h, rules := sha256.New(), sha256.New()
	var problems []string
	for _, name := range names {
		src, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("read policy bundle: %w", err)
		}
		hashFile(h, name, src)
		switch {
		case strings.HasSuffix(name, ".rego"):
			if !strings.HasSuffix(name, "_test.rego") {
				hashFile(rules, name, src)
			}
			m, err := ast.ParseModuleWithOpts(name, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
			if err != nil {
				problems = append(problems, compileError(err).Messages...)
				continue
			}
			b.modules[name] = m
			b.tests[name] = strings.HasSuffix(name, "_test.rego")
		case path.Base(name) == "data.json":
			var v map[string]any
			if err := json.Unmarshal(src, &v); err != nil {
				problems = append(problems, fmt.Sprintf("%s: not a JSON object: %v", name, err))
				continue
			}
			if err := mergeAt(b.data, dirSegments(name), v); err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", name, err))
			}
		}
	}
	if len(b.modules) == 0 && len(problems) == 0 {
		problems = append(problems, "bundle has no .rego files")
	}
	if len(problems) > 0 {
		return nil, &CompileError{Messages: problems}
	}
	b.digest = hex.EncodeToString(h.Sum(nil))
	b.rules = hex.EncodeToString(rules.Sum(nil))
	return b, nil
}

// hashFile adds a file, its name and content each length-prefixed, to h.
func hashFile(h hash.Hash, name string, src []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(name)))
	h.Write(n[:])
	h.Write([]byte(name))
	binary.BigEndian.PutUint64(n[:], uint64(len(src)))
	h.Write(n[:])
	h.Write(src)
}

var queryRef = ast.MustParseRef(Query)

// prepare compiles the bundle's policy modules (not its tests, which never
// take part in a decision) and prepares the decision query.
func (b *bundle) prepare(ctx context.Context, revision string) (*prepared, error) {
	if revision == "" {
		revision = b.digest
	}
	mods := make(map[string]*ast.Module, len(b.modules))
	for name, m := range b.modules {
		if !b.tests[name] {
			mods[name] = m
		}
	}
	if len(mods) == 0 {
		return nil, &CompileError{Messages: []string{"bundle has only test files"}}
	}
	store := b.store()
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return nil, fmt.Errorf("compile policy: %w", err)
	}
	defer store.Abort(ctx, txn)
	c := ast.NewCompiler().
		WithDefaultRegoVersion(ast.RegoV1).
		WithPathConflictsCheck(storage.NonEmpty(ctx, store, txn))
	if c.Compile(mods); c.Failed() {
		return nil, compileError(c.Errors)
	}
	if len(c.GetRulesExact(queryRef)) == 0 {
		return nil, &CompileError{Messages: []string{"bundle does not define " + Query}}
	}
	q, err := rego.New(
		rego.Query(Query),
		rego.SetRegoVersion(ast.RegoV1),
		rego.StrictBuiltinErrors(true),
		rego.Store(store),
		rego.Compiler(c),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("prepare policy query: %w", err)
	}
	return &prepared{query: q, revision: revision, defaultRules: b.rules == defaultRules()}, nil
}

func dirSegments(name string) []string {
	dir := path.Dir(name)
	if dir == "." {
		return nil
	}
	return strings.Split(dir, "/")
}

func mergeAt(dst map[string]any, at []string, v map[string]any) error {
	for _, seg := range at {
		next, ok := dst[seg].(map[string]any)
		if !ok {
			if _, taken := dst[seg]; taken {
				return fmt.Errorf("conflict at %q", seg)
			}
			next = map[string]any{}
			dst[seg] = next
		}
		dst = next
	}
	for k, val := range v {
		if old, ok := dst[k].(map[string]any); ok {
			if nv, ok := val.(map[string]any); ok {
				if err := mergeAt(old, nil, nv); err != nil {
					return err
				}
				continue
			}
		}
		if _, taken := dst[k]; taken {
			return fmt.Errorf("conflict at %q", k)
		}
		dst[k] = val
	}
	return nil
}

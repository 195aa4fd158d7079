package policy

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// bundle is a policy bundle read from an fs.FS.
type bundle struct {
	modules map[string]*ast.Module
	data    map[string]any
	digest  string
}

func (b *bundle) store() storage.Store {
	return inmem.NewFromObjectWithOpts(b.data, inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))
}

// loadBundle parses every *.rego file (test files only when withTests) with v1
// syntax and merges every data.json at its directory's path. The digest covers
// all regular files, tests included, so a revision pins exactly what was tested.
func loadBundle(fsys fs.FS, withTests bool) (*bundle, error) {
	b := &bundle{modules: map[string]*ast.Module{}, data: map[string]any{}}
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
	h := sha256.New()
	for _, name := range names {
		src, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("read policy bundle: %w", err)
		}
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(name)))
		h.Write(n[:])
		h.Write([]byte(name))
		binary.BigEndian.PutUint64(n[:], uint64(len(src)))
		h.Write(n[:])
		h.Write(src)
		switch {
		case strings.HasSuffix(name, ".rego"):
			if strings.HasSuffix(name, "_test.rego") && !withTests {
				continue
			}
			m, err := ast.ParseModuleWithOpts(name, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
			if err != nil {
				return nil, fmt.Errorf("compile policy: %w", err)
			}
			b.modules[name] = m
		case path.Base(name) == "data.json":
			var v map[string]any
			if err := json.Unmarshal(src, &v); err != nil {
				return nil, fmt.Errorf("parse policy data %s: %w", name, err)
			}
			if err := mergeAt(b.data, dirSegments(name), v); err != nil {
				return nil, fmt.Errorf("merge policy data %s: %w", name, err)
			}
		}
	}
	if len(b.modules) == 0 {
		return nil, fmt.Errorf("compile policy: bundle has no .rego files")
	}
	b.digest = hex.EncodeToString(h.Sum(nil))
	return b, nil
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

package testonly_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/fhiranchor/fhiranchor"

// TestLayout enforces the dependency direction of STYLE.md section 1 on the
// non-test Go files of the repository: cmd -> gateway -> {access, research}
// -> {fhir, policy, vault, anchor, cohort} -> stdlib/third party, and the rules on who may
// read flags and the environment.
func TestLayout(t *testing.T) {
	root := filepath.Join("..", "..")
	files := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "node_modules", "third_party", ".git", "testdata":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		pkg := filepath.ToSlash(filepath.Dir(rel))
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		files++
		for _, spec := range f.Imports {
			imp, _ := strconv.Unquote(spec.Path.Value)
			if msg := violation(pkg, imp); msg != "" {
				t.Errorf("%s imports %s: %s", rel, imp, msg)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 20 {
		t.Fatalf("checked only %d files; is the walk rooted right?", files)
	}
}

func violation(pkg, imp string) string {
	own := strings.HasPrefix(imp, module+"/")
	inner := strings.TrimPrefix(imp, module+"/")
	under := func(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }
	backend := "" // the vault backend pkg belongs to, if any
	for _, b := range []string{"vault/sqlite", "vault/postgres"} {
		if under(pkg, b) {
			backend = b
		}
	}
	switch {
	case imp == "flag" && !under(pkg, "cmd") && !under(pkg, "tools"):
		// tools/ holds developer programs (the 10x Synthea generator): mains too.
		return "only cmd/ and tools/ define flags"
	case strings.HasPrefix(imp, "github.com/ethereum/go-ethereum") && !under(pkg, "anchor/eth"):
		return "only anchor/eth imports go-ethereum"
	case own && under(inner, "cmd"):
		return "nothing imports cmd/"
	case own && under(inner, "internal/testonly") && pkg != "internal/testonly" && pkg != "internal/browsertest":
		return "internal/testonly is for _test.go files only"
	case own && under(inner, "internal/browsertest"):
		return "internal/browsertest is for _test.go files only"
	case pkg == "console" && strings.Contains(strings.Split(imp, "/")[0], "."):
		return "console/ (the embedded web console) uses the standard library only"
	case own && under(inner, "console") && !under(pkg, "gateway") && !under(pkg, "cmd"):
		return "only gateway/ (which mounts it) and cmd/ import console/"
	case own && under(inner, "gateway") && !under(pkg, "cmd") && !under(pkg, "gateway") && pkg != "internal/testonly" && pkg != "internal/browsertest":
		return "only cmd/ imports gateway/"
	case own && (under(inner, "access") || under(inner, "research")) && !under(pkg, "cmd") && !under(pkg, "gateway") &&
		!under(pkg, "access") && !under(pkg, "research") && pkg != "internal/testonly":
		return "only cmd/, gateway/ and the verticals import access/ and research/"
	case own && under(pkg, "access") && under(inner, "research"), own && under(pkg, "research") && under(inner, "gateway"):
		return "access/ does not import research/, and the verticals never import gateway/"
	case own && (under(pkg, "fhir") || under(pkg, "vault") || under(pkg, "anchor") || under(pkg, "policy") || under(pkg, "cohort")) &&
		(under(inner, "access") || under(inner, "research")):
		return "fhir, policy, vault, anchor and cohort do not depend on access or research"
	case pkg == "vault" && strings.Contains(strings.Split(imp, "/")[0], ".") &&
		imp != "github.com/klauspost/compress/zstd" && imp != "github.com/klauspost/compress/s2":
		// The one exception is the codecs of stored values (vault/pack.go):
		// S2 and Zstandard are not ours to write, and compress/flate's
		// preset dictionary cost most of the CPU of packing a body.
		return "vault/ uses the standard library (and klauspost/compress's s2 and zstd to pack values) only"
	case own && backend != "" && under(inner, "vault/") && !under(inner, backend):
		return "a vault backend imports only its parent contract"
	case own && (under(pkg, "fhir") || under(pkg, "vault") || under(pkg, "anchor")) &&
		(under(inner, "policy") || under(inner, "cohort")):
		return "fhir, vault and anchor do not depend on policy or cohort"
	case under(pkg, "fhir/search") && (own || strings.HasPrefix(imp, "net/") || strings.HasPrefix(imp, "database/")):
		return "fhir/search is pure: no storage, no transport, none of the module's packages"
	}
	return ""
}

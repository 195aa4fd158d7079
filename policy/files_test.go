package policy

import (
	"bytes"
	"errors"
	"io/fs"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

func TestFilesRoundTrip(t *testing.T) {
	f, err := ReadFiles(DefaultBundle())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"consent.rego", "consent_test.rego", "data.json"}; !slices.Equal(f.names(), want) {
		t.Fatalf("ReadFiles(DefaultBundle()) names = %q, want %q", f.names(), want)
	}
	enc, err := f.Encode()
	if err != nil {
		t.Fatal(err)
	}
	// Same content built in another order encodes to the same bytes.
	g := Files{}
	for _, name := range slices.Backward(f.names()) {
		g[name] = f[name]
	}
	enc2, err := g.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, enc2) {
		t.Error("Encode is not deterministic")
	}
	if !bytes.Contains(enc, []byte("<=")) {
		t.Error("Encode escaped Rego's <= (want HTML escaping off)")
	}
	dec, err := DecodeFiles(enc)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(f, dec); diff != "" {
		t.Errorf("DecodeFiles(Encode()) differs (-want +got):\n%s", diff)
	}
	// The FS view is the same bundle: same revision as the embedded one.
	e, err := New(t.Context(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	rev, _, err := Check(t.Context(), dec.FS())
	if err != nil {
		t.Fatal(err)
	}
	if rev != e.Revision() {
		t.Errorf("Check revision = %q, want the embedded bundle's %q", rev, e.Revision())
	}
}

func TestFilesFS(t *testing.T) {
	f := Files{
		"a.rego":                "package a\n",
		"sub/data.json":         `{"x": 1}`,
		"sub/deeper/b.rego":     "package b\n",
		"sub/deeper/data.json":  "{}",
		"other/c_test.rego":     "package c\n",
		"other/deeper/e/f.rego": "package f\n",
	}
	if err := fstest.TestFS(f.FS(), f.names()...); err != nil {
		t.Fatal(err)
	}
	fsys := f.FS()
	f["a.rego"] = "changed"
	if b, err := fs.ReadFile(fsys, "a.rego"); err != nil || string(b) != "package a\n" {
		t.Errorf("FS changed with its Files: %q, %v", b, err)
	}
	if _, err := fs.ReadFile(fsys, "missing.rego"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: err = %v, want ErrNotExist", err)
	}
	if err := fstest.TestFS(Files{}.FS()); err != nil {
		t.Errorf("empty Files: %v", err)
	}
}

func TestFilesValidate(t *testing.T) {
	tests := []struct {
		name  string
		files Files
		want  string // in the error; "" means valid
	}{
		{"rego and data.json", Files{"p.rego": "", "x/y/data.json": "{}"}, ""},
		{"absolute", Files{"/etc/p.rego": ""}, `"/etc/p.rego": name is absolute`},
		{"dot dot", Files{"../p.rego": ""}, `"../p.rego": name contains ".."`},
		{"inner dot dot", Files{"a/../p.rego": ""}, `name contains ".."`},
		{"unclean", Files{"./p.rego": ""}, "not a clean slash-separated relative path"},
		{"double slash", Files{"a//p.rego": ""}, "not a clean slash-separated relative path"},
		{"backslash", Files{`a\p.rego`: ""}, "not a clean slash-separated relative path"},
		{"empty name", Files{"": ""}, "name is empty"},
		{"other file", Files{"README.md": ""}, `"README.md": neither a .rego file nor data.json`},
		{"other json", Files{"config.json": ""}, "neither a .rego file nor data.json"},
		{"file as directory", Files{"x.rego": "", "x.rego/y/data.json": "{}"}, `"x.rego" is both a file and a directory`},
		{"not UTF-8", Files{"p.rego": "\xff"}, "not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.files.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.want)
			}
			if _, err := tt.files.Encode(); err == nil {
				t.Error("Encode accepted an invalid bundle")
			}
			// FS refuses to serve it, so Check refuses the bundle.
			if _, _, err := Check(t.Context(), tt.files.FS()); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Check(FS()) = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestReadFilesRejectsOtherFiles(t *testing.T) {
	_, err := ReadFiles(fstest.MapFS{"p.rego": {}, "notes/README.md": {}})
	if err == nil || !strings.Contains(err.Error(), `"notes/README.md": neither a .rego file nor data.json`) {
		t.Fatalf("ReadFiles = %v, want it to reject notes/README.md", err)
	}
}

func TestDecodeFilesRejects(t *testing.T) {
	tests := []struct{ in, want string }{
		{`[]`, "not a JSON object"},
		{`null`, "not a JSON object"},
		{``, "not a JSON object"},
		{`{"p.rego": 1}`, `file "p.rego"`},
		{`{"p.rego": "a", "p.rego": "b"}`, `file "p.rego" appears twice`},
		{`{"p.rego": "a"} {}`, "data after the JSON object"},
		{`{"p.rego": "a"`, "decode policy bundle"},
		{`{"../p.rego": "a"}`, `name contains ".."`},
		{`{"p.txt": "a"}`, "neither a .rego file nor data.json"},
	}
	for _, tt := range tests {
		if _, err := DecodeFiles([]byte(tt.in)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("DecodeFiles(%s) = %v, want an error containing %q", tt.in, err, tt.want)
		}
	}
	f, err := DecodeFiles([]byte(` {} `))
	if err != nil || len(f) != 0 {
		t.Errorf("DecodeFiles({}) = %v, %v, want an empty bundle", f, err)
	}
}

const testAllows = "package fhiranchor.consent_test\nimport data.fhiranchor.consent\ntest_allows if consent.decision.allow\n"

func TestCheck(t *testing.T) {
	ctx := t.Context()
	t.Run("default bundle passes", func(t *testing.T) {
		rev, results, err := Check(ctx, DefaultBundle())
		if err != nil {
			t.Fatal(err)
		}
		if len(rev) != 64 || len(results) < 15 {
			t.Fatalf("revision %q, %d results", rev, len(results))
		}
		for _, r := range results {
			if !r.Pass {
				t.Errorf("%s: %s", r.Name, r.Message)
			}
		}
	})
	t.Run("failing tests are results, not errors", func(t *testing.T) {
		_, results, err := Check(ctx, Files{
			"p.rego":      allowAll,
			"p_test.rego": testAllows + "test_denies if not consent.decision.allow\n",
		}.FS())
		if err != nil {
			t.Fatal(err)
		}
		if len(results) != 2 || !results[0].Pass || results[1].Pass || results[1].Name != "data.fhiranchor.consent_test.test_denies" ||
			!strings.HasPrefix(results[1].Message, "failed at p_test.rego:4") {
			t.Errorf("results = %+v", results)
		}
	})
	compileErrs := []struct {
		name  string
		files Files
		want  []string // regexps, one per message
	}{
		{"parse error with file and row", Files{"p.rego": "package fhiranchor.consent\n\ndecision := {\n", "p_test.rego": testAllows},
			[]string{`^p\.rego:4: rego_parse_error: unexpected eof token$`, `^p\.rego:4: rego_parse_error: unexpected eof token: expected rule value term`}},
		{"every error is a message", Files{"p.rego": allowAll + "x := y\nz := w\n", "p_test.rego": testAllows},
			[]string{`^p\.rego:3: rego_unsafe_var_error: var y is unsafe$`, `^p\.rego:4: rego_unsafe_var_error: var w is unsafe$`}},
		{"error in a test file", Files{"p.rego": allowAll, "p_test.rego": testAllows + "test_bad if nope\n"},
			[]string{`^p_test\.rego:4: rego_unsafe_var_error: var nope is unsafe$`}},
		{"no decision", Files{"p.rego": "package fhiranchor.other\nx := 1\n", "p_test.rego": "package t\ntest_x if data.fhiranchor.other.x == 1\n"},
			[]string{`^bundle does not define data\.fhiranchor\.consent\.decision$`}},
		{"decision only in a test file", Files{"p.rego": "package fhiranchor.other\n", "p_test.rego": allowAll + "test_x if decision.allow\n"},
			[]string{`^bundle does not define data\.fhiranchor\.consent\.decision$`}},
		{"no tests", Files{"p.rego": allowAll}, []string{`^bundle has no tests$`}},
		{"only todo tests", Files{"p.rego": allowAll, "p_test.rego": "package t\ntodo_test_x if false\n"}, []string{`^bundle has no tests$`}},
		{"bad data.json", Files{"p.rego": allowAll, "p_test.rego": testAllows, "a/data.json": "[1]"},
			[]string{`^a/data\.json: not a JSON object: `}},
		{"no rego", Files{"data.json": "{}"}, []string{`^bundle has no \.rego files$`}},
	}
	for _, tt := range compileErrs {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Check(ctx, tt.files.FS())
			var ce *CompileError
			if !errors.As(err, &ce) {
				t.Fatalf("Check err = %v, want a *CompileError", err)
			}
			if len(ce.Messages) != len(tt.want) {
				t.Fatalf("messages = %q, want %d matching %q", ce.Messages, len(tt.want), tt.want)
			}
			for i, re := range tt.want {
				if !regexp.MustCompile(re).MatchString(ce.Messages[i]) {
					t.Errorf("message %d = %q, want it to match %q", i, ce.Messages[i], re)
				}
			}
			if !strings.HasPrefix(err.Error(), "compile policy: ") {
				t.Errorf("Error() = %q", err.Error())
			}
		})
	}
}

func TestReplaceErrors(t *testing.T) {
	ctx := t.Context()
	e, err := New(ctx, Config{})
	if err != nil {
		t.Fatal(err)
	}
	orig := e.Revision()
	err = e.Replace(ctx, Files{"p.rego": "package fhiranchor.consent\ndecision := {\n"}.FS(), "bad")
	var ce *CompileError
	if !errors.As(err, &ce) || !strings.HasPrefix(ce.Messages[0], "p.rego:3: rego_parse_error") {
		t.Errorf("Replace with a parse error = %v, want a *CompileError at p.rego:3", err)
	}
	err = e.Replace(ctx, Files{"p.rego": allowAll}.FS(), "untested")
	if !errors.As(err, &ce) || ce.Messages[0] != "bundle has no tests" {
		t.Errorf("Replace of an untested bundle = %v, want CompileError \"bundle has no tests\"", err)
	}
	err = e.Replace(ctx, Files{
		"p.rego":      allowAll,
		"p_test.rego": testAllows + "test_a if not consent.decision.allow\ntest_b if 1 == 2\n",
	}.FS(), "failing")
	var tf *TestFailureError
	if !errors.As(err, &tf) || len(tf.Failed) != 2 {
		t.Fatalf("Replace with failing tests = %v, want a TestFailureError with 2 tests", err)
	}
	want := "policy tests failed: data.fhiranchor.consent_test.test_a (failed at p_test.rego:4: not consent.decision.allow); " +
		"data.fhiranchor.consent_test.test_b (failed at p_test.rego:5: 1 == 2)"
	if err.Error() != want {
		t.Errorf("Error() = %q\nwant        %q", err.Error(), want)
	}
	if e.Revision() != orig {
		t.Errorf("revision changed to %q after refused replaces", e.Revision())
	}
}

func TestExplain(t *testing.T) {
	e, err := New(t.Context(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	in := hl7Case{patient: "Patient/f001", actor: "Organization/f001"}.input(loadConsent(t, "Out"))
	want, err := e.Decide(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	d, fired, err := e.Explain(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, d); diff != "" {
		t.Errorf("Explain decision differs from Decide (-want +got):\n%s", diff)
	}
	loc := regexp.MustCompile(`^consent\.rego:[0-9]+$`)
	seen := map[Fired]bool{}
	rules := map[string]bool{}
	for _, f := range fired {
		if seen[f] {
			t.Errorf("%v listed twice", f)
		}
		seen[f] = true
		rules[f.Rule] = true
		if !loc.MatchString(f.Location) {
			t.Errorf("%v: location not file:row", f)
		}
	}
	for _, r := range []string{"data.fhiranchor.consent.decision", "data.fhiranchor.consent.any_deny", "data.fhiranchor.consent.provision_matches"} {
		if !rules[r] {
			t.Errorf("fired rules lack %s: %v", r, fired)
		}
	}
	// consent_allow did not succeed: the Out consent denies Organization/f001.
	if rules["data.fhiranchor.consent.consent_allow"] {
		t.Errorf("consent_allow reported as fired for a denied request")
	}
	// A decision failing closed is explained the same way.
	bad := in
	bad.Consents = []map[string]any{{"status": 1}}
	d, _, err = e.Explain(t.Context(), bad)
	if err == nil || d.Allow || d.Reasons[0] != "invalid consent" {
		t.Errorf("Explain of an invalid consent = %+v, %v", d, err)
	}
}

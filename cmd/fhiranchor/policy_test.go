package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
	"github.com/fhiranchor/fhiranchor/policy"
)

// runPolicyTest runs 'fhiranchor policy ARGS' with a getenv that knows only env.
func runPolicyTest(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(t.Context(), append([]string{"policy"}, args...), &out, &errOut, func(k string) string { return env[k] })
	return out.String(), errOut.String(), err
}

// defaultBundle is the embedded default policy bundle.
func defaultBundle(t *testing.T) policy.Files {
	t.Helper()
	f, err := policy.ReadFiles(policy.DefaultBundle())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// writeBundleDir writes files into a new temp dir (plus a README the
// commands must ignore) and returns it.
func writeBundleDir(t *testing.T, files policy.Files) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte("not part of the bundle\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// failingTest is the default bundle's test that failingBundle breaks.
const failingTest = "test_no_consent_uses_configured_default"

// failingBundle is the default bundle with one assertion of failingTest
// inverted.
func failingBundle(t *testing.T) policy.Files {
	t.Helper()
	f := defaultBundle(t)
	src := f["consent_test.rego"]
	start := strings.Index(src, failingTest+" if {")
	if start < 0 {
		t.Fatalf("consent_test.rego has no %s", failingTest)
	}
	const assertion = "\tnot d.allow\n"
	i := strings.Index(src[start:], assertion)
	if i < 0 {
		t.Fatalf("%s does not assert %q", failingTest, assertion)
	}
	i += start
	f["consent_test.rego"] = src[:i] + "\td.allow\n" + src[i+len(assertion):]
	return f
}

// tableRows returns the data rows of a table (after its header), split into
// fields.
func tableRows(out string) [][]string {
	var rows [][]string
	for i, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if i > 0 {
			rows = append(rows, strings.Fields(line))
		}
	}
	return rows
}

// TestPolicyLifecycle drives a real gateway through the policy commands:
// list, test of a passing and a failing bundle, a refused push, push,
// activate, history, rollback, get and a dry-run evaluate. The token is the
// dev token minted from the gateway's data dir, as on a developer's machine.
func TestPolicyLifecycle(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	common := []string{"--server", g.Root, "--data", g.Dir}
	pol := func(args ...string) (string, error) {
		t.Helper()
		out, _, err := runPolicyTest(t, nil, append(args, common...)...)
		return out, err
	}

	out, err := pol("list")
	if err != nil {
		t.Fatalf("list: %v\n%s", err, out)
	}
	rows := tableRows(out)
	if len(rows) != 1 || rows[0][0] != "1" || rows[0][1] != "*" || rows[0][len(rows[0])-1] != "fhiranchor" {
		t.Fatalf("list on first start, want version 1 active by fhiranchor:\n%s", out)
	}

	passing := writeBundleDir(t, defaultBundle(t))
	out, err = pol("test", passing)
	if err != nil {
		t.Fatalf("test of the default bundle: %v\n%s", err, out)
	}
	if !strings.Contains(out, "PASS  ") || strings.Contains(out, "FAIL") || !regexp.MustCompile(`\n\d+ passed, 0 failed`).MatchString(out) {
		t.Errorf("test of the default bundle printed:\n%s", out)
	}

	failing := writeBundleDir(t, failingBundle(t))
	out, err = pol("test", failing)
	if err == nil || !regexp.MustCompile(`FAIL  \S*`+failingTest).MatchString(out) || !strings.Contains(out, ", 1 failed") {
		t.Errorf("test of a failing bundle: err %v, printed:\n%s", err, out)
	}
	out, err = pol("push", failing)
	if err == nil || !strings.Contains(out, failingTest) || !strings.Contains(err.Error(), "422") {
		t.Errorf("push of a failing bundle: err %v, printed:\n%s", err, out)
	}

	broken := writeBundleDir(t, policy.Files{"x.rego": "package x\n\nallow if {"})
	out, err = pol("test", broken)
	if err == nil || !strings.Contains(out, "does not compile") {
		t.Errorf("test of a bundle that does not compile: err %v, printed:\n%s", err, out)
	}

	// A passing variant: the default plus a trivial test file in a subfolder.
	variant := defaultBundle(t)
	variant["extra/extra_test.rego"] = "package fhiranchor.extra_test\n\ntest_trivial if {\n\ttrue\n}\n"
	variantDir := writeBundleDir(t, variant)
	out, err = pol("push", variantDir)
	if err != nil || !strings.Contains(out, "stored version 2 ") || !strings.Contains(out, " 0 failed") {
		t.Fatalf("push of a passing bundle: err %v, printed:\n%s", err, out)
	}
	out, err = pol("push", variantDir)
	if err == nil || !strings.Contains(err.Error(), "409") {
		t.Errorf("second push of the same bundle: err %v, printed:\n%s", err, out)
	}

	out, err = pol("activate", "2")
	if err != nil || !strings.Contains(out, "activated version 2\n") {
		t.Fatalf("activate 2: err %v, printed:\n%s", err, out)
	}
	m := regexp.MustCompile(`leaf index: (\d+)\nreceipt:    (/v1/receipts/leaves/(\d+))\n`).FindStringSubmatch(out)
	if m == nil || m[1] != m[3] {
		t.Fatalf("activate 2 printed no leaf index and receipt path:\n%s", out)
	}
	resp := apiGet(t, g, g.Token(t), m[2])
	if resp.Status != http.StatusOK {
		t.Errorf("GET %s: %d %s", m[2], resp.Status, resp.Body)
	}

	out, err = pol("history")
	if err != nil {
		t.Fatalf("history: %v\n%s", err, out)
	}
	rows = tableRows(out)
	if len(rows) != 2 || rows[0][0] != m[1] || rows[0][2] != "2" || rows[0][5] != "activate" || rows[1][2] != "1" {
		t.Errorf("history after activating 2, want 2 then 1, newest first:\n%s", out)
	}
	out, _ = pol("list")
	if rows = tableRows(out); len(rows) != 2 || rows[0][0] != "2" || rows[0][1] != "*" || rows[0][len(rows[0])-1] != "dev-client" {
		t.Errorf("list after activating 2:\n%s", out)
	}

	out, err = pol("rollback")
	if err != nil || !strings.Contains(out, "rolled back to version 1\n") || !strings.Contains(out, "receipt:    /v1/receipts/leaves/") {
		t.Fatalf("rollback: err %v, printed:\n%s", err, out)
	}
	out, _ = pol("history")
	if rows = tableRows(out); len(rows) != 3 || rows[0][2] != "1" || rows[0][5] != "rollback" || rows[1][2] != "2" {
		t.Errorf("history after rollback, want 1 (rollback), 2, 1:\n%s", out)
	}

	// get prints a version, or writes it back into a directory unchanged.
	out, err = pol("get", "2")
	if err != nil || !strings.Contains(out, "==> extra/extra_test.rego <==\npackage fhiranchor.extra_test") || !strings.Contains(out, "# version 2, inactive") {
		t.Errorf("get 2: err %v, printed:\n%s", err, out)
	}
	back := filepath.Join(t.TempDir(), "v2")
	if out, err = pol("get", "2", "--out", back); err != nil {
		t.Fatalf("get 2 --out: %v\n%s", err, out)
	}
	got, err := readBundle(back)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(variant, got); diff != "" {
		t.Errorf("get 2 --out wrote other files (-pushed +got):\n%s", diff)
	}
	if out, err = pol("get", "2", "--out", back); err == nil {
		t.Errorf("get --out into a non-empty directory succeeded:\n%s", out)
	}
	if out, err = pol("get", "99"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("get 99: err %v, printed:\n%s", err, out)
	}

	// Dry runs for a patient without consent: the default bundle implies
	// consent to read for treatment, and to nothing for research.
	evaluate := []string{"evaluate", "--patient", "Patient/p1", "--actor", "Practitioner/x", "--organization", "Organization/a",
		"--type", "Observation", "--id", "o1", "--labels", "http://terminology.hl7.org/CodeSystem/v3-ActCode|PSY", "--date", "2024-01-01"}
	out, err = pol(evaluate...)
	if err != nil {
		t.Fatalf("evaluate: %v\n%s", err, out)
	}
	if !strings.Contains(out, "decision:    ALLOW\n") || !strings.Contains(out, "policy:      version 1, revision ") ||
		!strings.Contains(out, "implied consent to read for TREAT") ||
		!regexp.MustCompile(`fired:\n(  - \S+ \(\S+:\d+\)\n)*  - data\.fhiranchor\.consent\.decision \(consent\.rego:\d+\)`).MatchString(out) {
		t.Errorf("evaluate printed:\n%s", out)
	}
	out, err = pol(append(evaluate, "--purpose", "HRESCH", "--version", "2")...)
	if err != nil || !strings.Contains(out, "decision:    DENY\n") || !strings.Contains(out, "policy:      version 2, revision ") {
		t.Errorf("evaluate --purpose HRESCH --version 2: err %v, printed:\n%s", err, out)
	}
	if out, err = pol("evaluate", "--labels", "nobar"); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("evaluate with a malformed label: err %v, printed:\n%s", err, out)
	}

	// An auditor may read the policies but not change them.
	audit := map[string]string{"FHIRANCHOR_TOKEN": g.TokenFor(t, auth.Claims{ClientID: "auditor", Scopes: []string{"fhiranchor/audit"}, TTL: time.Hour})}
	if out, _, err = runPolicyTest(t, audit, "list", "--server", g.Root); err != nil || len(tableRows(out)) != 2 {
		t.Errorf("list as an auditor: err %v, printed:\n%s", err, out)
	}
	if out, _, err = runPolicyTest(t, audit, "push", variantDir, "--server", g.Root); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("push as an auditor: err %v, printed:\n%s", err, out)
	}
}

// TestPolicyCommandErrors covers what fails before any request is sent.
func TestPolicyCommandErrors(t *testing.T) {
	noKey := t.TempDir()
	for _, args := range [][]string{
		{},
		{"nope"},
		{"get"},
		{"get", "x", "--token", "t"},
		{"activate", "1", "2", "--token", "t"},
		{"list", "--server", "ftp://x", "--token", "t"},
		{"list", "--data", noKey},
		{"test", noKey, "--token", "t"},
		{"decisions", "--limit", "0", "--token", "t", "--server", "http://127.0.0.1:1"},
	} {
		out, errOut, err := runPolicyTest(t, nil, args...)
		if err == nil {
			t.Errorf("policy %q succeeded:\n%s%s", args, out, errOut)
		}
	}
}

// apiGet sends an authenticated GET to the gateway's REST root.
func apiGet(t *testing.T, g *testonly.Gateway, tok, p string) testonly.Response {
	t.Helper()
	return g.DoRoot(t, http.MethodGet, p, nil, "Authorization", "Bearer "+tok)
}

// TestPolicyDecisionsAndVerifyRecord makes access decisions on a real
// gateway, lists them with 'policy decisions', saves one entry of GET
// /v1/decisions/N as evidence and checks it against its receipt with
// 'fhiranchor verify'.
func TestPolicyDecisionsAndVerifyRecord(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	ehr := g.TokenFor(t, auth.Claims{ClientID: "ehr", Scopes: []string{"system/*.read", "system/*.write"}, TTL: time.Hour,
		PurposeOfUse: "TREAT", Organization: "Organization/a"})
	put := g.Do(t, http.MethodPut, "/Patient/p1", []byte(`{"resourceType":"Patient","id":"p1","managingOrganization":{"reference":"Organization/a"}}`),
		"Authorization", "Bearer "+ehr)
	if put.Status != http.StatusCreated && put.Status != http.StatusOK {
		t.Fatalf("PUT Patient/p1: %d %s", put.Status, put.Body)
	}
	read := g.Do(t, http.MethodGet, "/Patient/p1", nil, "Authorization", "Bearer "+ehr)
	t.Logf("GET Patient/p1 as ehr: %d", read.Status)

	auditor := g.TokenFor(t, auth.Claims{ClientID: "auditor", Scopes: []string{"fhiranchor/audit"}, TTL: time.Hour})
	env := map[string]string{"FHIRANCHOR_TOKEN": auditor}
	out, _, err := runPolicyTest(t, env, "decisions", "--server", g.Root, "--patient", "p1")
	if err != nil {
		t.Fatalf("decisions: %v\n%s", err, out)
	}
	rows := tableRows(out)
	if len(rows) == 0 {
		t.Fatalf("decisions listed none:\n%s", out)
	}
	newest := rows[0] // LEAF TIME CLIENT ACTION PURPOSE PATIENT RESOURCE DECISION
	if len(newest) != 8 || newest[2] != "ehr" || newest[3] != "read" || newest[4] != "TREAT" || newest[5] != "Patient/p1" ||
		!strings.HasPrefix(newest[6], "Patient/p1/_history/") || (newest[7] != "allow" && newest[7] != "deny") {
		t.Errorf("decisions, newest first, want the read of Patient/p1 by ehr:\n%s", out)
	}
	if out, _, err = runPolicyTest(t, env, "decisions", "--server", g.Root, "--client", "nobody"); err != nil || out != "no decisions\n" {
		t.Errorf("decisions --client nobody: err %v, printed:\n%s", err, out)
	}
	if out, _, err = runPolicyTest(t, env, "decisions", "--server", g.Root, "--limit", "1"); err != nil || len(tableRows(out)) != 1 {
		t.Errorf("decisions --limit 1: err %v, printed:\n%s", err, out)
	}

	leaf := newest[0]
	dec := apiGet(t, g, auditor, "/v1/decisions/"+leaf)
	if dec.Status != http.StatusOK {
		t.Fatalf("GET /v1/decisions/%s: %d %s", leaf, dec.Status, dec.Body)
	}
	var receipt []byte
	for deadline := time.Now().Add(30 * time.Second); ; {
		r := apiGet(t, g, auditor, "/v1/receipts/leaves/"+leaf)
		var st struct{ Status string }
		_ = json.Unmarshal(r.Body, &st)
		if r.Status == http.StatusOK && st.Status == "confirmed" {
			receipt = r.Body
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("receipt of leaf %s: %d %s", leaf, r.Status, r.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	dir := t.TempDir()
	receiptFile, evidenceFile := filepath.Join(dir, "receipt.json"), filepath.Join(dir, "decision.json")
	if err := os.WriteFile(receiptFile, receipt, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(evidenceFile, dec.Body, 0o600); err != nil {
		t.Fatal(err)
	}
	var vout bytes.Buffer
	if err := run(t.Context(), []string{"verify", receiptFile, "--evidence", evidenceFile}, &vout, io.Discard, noEnv); err != nil {
		t.Errorf("verify of GET /v1/decisions/%s saved as evidence: %v\n%s\nevidence:\n%s", leaf, err, vout.String(), dec.Body)
		// Say whether only the layout differs: the committed record is
		// compact JSON, and a server that re-indents it no longer returns
		// the committed bytes.
		var e struct {
			Record json.RawMessage `json:"record"`
			Salt   string          `json:"salt"`
		}
		var compact bytes.Buffer
		if json.Unmarshal(dec.Body, &e) == nil && json.Compact(&compact, e.Record) == nil {
			b, _ := json.Marshal(map[string]any{"record": json.RawMessage(compact.Bytes()), "salt": e.Salt})
			os.WriteFile(evidenceFile, b, 0o600)
			if run(t.Context(), []string{"verify", receiptFile, "--evidence", evidenceFile}, io.Discard, io.Discard, noEnv) == nil {
				t.Fatalf("the compacted record verifies: the server lists the record re-indented, not byte for byte as committed")
			}
		}
		t.FailNow()
	}
	if !strings.Contains(vout.String(), "content: ok, the record and salt") || !strings.Contains(vout.String(), "VERIFIED") {
		t.Errorf("verify said:\n%s", vout.String())
	}
}

// TestVerifyEvidenceForms checks what verify takes from an evidence file: a
// resource is canonicalised, a record is used byte for byte, and a file with
// both or neither is refused.
func TestVerifyEvidenceForms(t *testing.T) {
	dir := t.TempDir()
	salt := strings.Repeat("ab", 32)
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// The record's own layout (spacing, key order, escapes) is what was
	// committed, so it must reach the hash untouched.
	const record = `{"kind": "access-decision",  "b":1,"a":"\u003cx\u003e"}`
	got, gotSalt, what, err := content(write("record.json", `{
  "leafIndex": 7,
  "receipt": "/v1/receipts/leaves/7",
  "record": `+record+`,
  "salt": "`+salt+`"
}`), "", "")
	if err != nil || what != "record" || string(got) != record || len(gotSalt) != 32 {
		t.Errorf("record evidence: got %q, %q, err %v; want the record's exact bytes", got, what, err)
	}
	got, _, what, err = content(write("resource.json", `{"resource": {"resourceType": "Patient", "id": "p"}, "salt": "`+salt+`"}`), "", "")
	if err != nil || what != "resource" || string(got) != `{"id":"p","resourceType":"Patient"}` {
		t.Errorf("resource evidence: got %q, %q, err %v; want canonical JSON", got, what, err)
	}
	for name, body := range map[string]string{
		"both.json":    `{"resource": {}, "record": {}, "salt": "` + salt + `"}`,
		"neither.json": `{"salt": "` + salt + `"}`,
		"badsalt.json": `{"record": {}, "salt": "abcd"}`,
	} {
		if _, _, _, err := content(write(name, body), "", ""); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/bits"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/internal/browsertest"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

var updateConsole = flag.Bool("update-console", false, "rewrite console/test/testdata from a real gateway")

// consoleTestdata holds the receipts the console's verifier is tested on
// (console/test/verify.test.mjs): made by a real gateway, committed so the
// node tests need no server.
var consoleTestdata = filepath.Join("..", "..", "console", "test", "testdata")

// consoleFixture is one receipt of the fixture set with its evidence.
type consoleFixture struct {
	name     string // file name prefix
	receipt  []byte
	evidence []byte
}

// makeConsoleFixtures runs a real gateway and returns what an auditor and
// a patient would save from it: the receipt and evidence of a resource
// version and of an access decision, the log key, the checkpoint listing and
// a consistency proof between the first and last checkpoints.
func makeConsoleFixtures(t *testing.T, g *testonly.Gateway) (fixtures []consoleFixture, logKey, checkpoints, consistency []byte) {
	t.Helper()
	ehr := g.TokenFor(t, auth.Claims{ClientID: "ehr", Scopes: []string{"system/*.read", "system/*.write"}, TTL: time.Hour,
		PurposeOfUse: "TREAT", Organization: "Organization/a"})
	auditor := g.TokenFor(t, auth.Claims{ClientID: "auditor", Scopes: []string{"fhiranchor/audit"}, TTL: time.Hour})
	get := func(tok, path string) []byte {
		t.Helper()
		r := apiGet(t, g, tok, path)
		if r.Status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, r.Status, r.Body)
		}
		return r.Body
	}
	confirmed := func(tok, path string) []byte {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; {
			b := get(tok, path)
			var st struct{ Status string }
			_ = json.Unmarshal(b, &st)
			if st.Status == "confirmed" {
				return b
			}
			if time.Now().After(deadline) {
				t.Fatalf("receipt %s still %s", path, st.Status)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	put := func(path, body string) {
		t.Helper()
		r := g.Do(t, http.MethodPut, path, []byte(body), "Authorization", "Bearer "+ehr)
		if r.Status != http.StatusCreated && r.Status != http.StatusOK {
			t.Fatalf("PUT %s: %d %s", path, r.Status, r.Body)
		}
	}
	put("/Patient/p1", `{"resourceType":"Patient","id":"p1","managingOrganization":{"reference":"Organization/a"},"name":[{"family":"Ünïcødé \"Q\" 🙂","given":["Ann"]}]}`)
	// A checkpoint of its own, for the consistency proof; its name holds
	// escapes and characters beyond the BMP.
	fixtures = append(fixtures, consoleFixture{"patient",
		confirmed(ehr, "/v1/receipts/Patient/p1/_history/1"), get(ehr, "/v1/evidence/Patient/p1/_history/1")})
	// 1.50 keeps its trailing zero in the committed bytes: a verifier that
	// parses numbers as floats computes another commitment.
	put("/Observation/o1", `{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"weight"},"subject":{"reference":"Patient/p1"},"valueQuantity":{"value":71.50,"unit":"kg"}}`)
	if r := g.Do(t, http.MethodGet, "/Observation/o1", nil, "Authorization", "Bearer "+ehr); r.Status != http.StatusOK {
		t.Fatalf("GET Observation/o1: %d %s", r.Status, r.Body)
	}
	fixtures = append(fixtures, consoleFixture{"resource",
		confirmed(ehr, "/v1/receipts/Observation/o1/_history/1"), get(ehr, "/v1/evidence/Observation/o1/_history/1")})

	var list struct {
		Decisions []struct {
			LeafIndex uint64 `json:"leafIndex"`
		} `json:"decisions"`
	}
	if err := json.Unmarshal(get(auditor, "/v1/decisions?patient=p1&page_size=1"), &list); err != nil || len(list.Decisions) == 0 {
		t.Fatalf("no decision about Patient/p1: %v", err)
	}
	leaf := strconv.FormatUint(list.Decisions[0].LeafIndex, 10)
	fixtures = append(fixtures, consoleFixture{"decision", confirmed(auditor, "/v1/receipts/leaves/"+leaf), get(auditor, "/v1/decisions/"+leaf)})

	logKey = get(auditor, "/v1/log/key")
	checkpoints = get(auditor, "/v1/log/checkpoints")
	var cps struct {
		Checkpoints []anchor.Checkpoint `json:"checkpoints"`
	}
	if err := json.Unmarshal(checkpoints, &cps); err != nil || len(cps.Checkpoints) < 2 {
		t.Fatalf("want two checkpoints or more: %v\n%s", err, checkpoints)
	}
	from, to := cps.Checkpoints[0].Size, cps.Checkpoints[len(cps.Checkpoints)-1].Size
	consistency = get(auditor, "/v1/log/consistency?from="+strconv.FormatUint(from, 10)+"&to="+strconv.FormatUint(to, 10))
	return fixtures, logKey, checkpoints, consistency
}

// TestConsoleVerifyFixtures checks the console's committed test receipts
// with the Go code, so the node tests of the in-browser verifier (run by
// console's TestNodeUnit) start from receipts the CLI verifies. With
// -update-console it first makes them anew on a real gateway.
func TestConsoleVerifyFixtures(t *testing.T) {
	if *updateConsole {
		fixtures, logKey, checkpoints, consistency := makeConsoleFixtures(t, testonly.StartGateway(t, testonly.Options{}))
		write := func(name string, b []byte) {
			if err := os.WriteFile(filepath.Join(consoleTestdata, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for _, f := range fixtures {
			write(f.name+"-receipt.json", f.receipt)
			write(f.name+"-evidence.json", f.evidence)
		}
		write("log-key.txt", logKey)
		write("checkpoints.json", checkpoints)
		write("consistency.json", consistency)
	}
	read := func(name string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(consoleTestdata, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	keyFile := filepath.Join(consoleTestdata, "log-key.txt")
	for _, name := range []string{"patient", "resource", "decision"} {
		var out bytes.Buffer
		args := []string{"verify", filepath.Join(consoleTestdata, name+"-receipt.json"),
			"--evidence", filepath.Join(consoleTestdata, name+"-evidence.json"), "--log-key", keyFile}
		if err := run(t.Context(), args, &out, io.Discard, noEnv); err != nil || !strings.Contains(out.String(), "content: ok") {
			t.Errorf("fhiranchor verify %s: %v\n%s", name, err, out.String())
		}
	}
	// The checkpoints are signed by the log key and the consistency proof
	// holds between the first and the last.
	v, err := note.NewVerifier(strings.TrimSpace(string(read("log-key.txt"))))
	if err != nil {
		t.Fatal(err)
	}
	var cps struct {
		Checkpoints []anchor.Checkpoint `json:"checkpoints"`
	}
	if err := json.Unmarshal(read("checkpoints.json"), &cps); err != nil || len(cps.Checkpoints) < 2 {
		t.Fatalf("checkpoints.json: %v", err)
	}
	for _, cp := range cps.Checkpoints {
		body, err := anchor.VerifyCheckpoint([]byte(cp.Note), v)
		if err != nil || body.Size != cp.Size || !bytes.Equal(body.Root, cp.Root) {
			t.Errorf("checkpoint %d: %v", cp.Size, err)
		}
	}
	var cons struct {
		From, To uint64
		Proof    []anchor.Hex
	}
	if err := json.Unmarshal(read("consistency.json"), &cons); err != nil {
		t.Fatal(err)
	}
	first, last := cps.Checkpoints[0], cps.Checkpoints[len(cps.Checkpoints)-1]
	path := make([][]byte, len(cons.Proof))
	for i, h := range cons.Proof {
		path[i] = h
	}
	if cons.From != first.Size || cons.To != last.Size {
		t.Errorf("consistency.json is from %d to %d, want %d to %d", cons.From, cons.To, first.Size, last.Size)
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, first.Size, last.Size, path, first.Root, last.Root); err != nil {
		t.Errorf("consistency.json: %v", err)
	}

}

// agreementCase is a receipt, its evidence and a log key to verify both in
// the console and with `fhiranchor verify`.
type agreementCase struct {
	name     string
	receipt  []byte
	evidence []byte // nil: none given
	logKey   string // "": none given
	// verifies is what both must say. Every tampered case fails, except
	// the one the CLI's own documentation names: an inclusion proof alone
	// does not bind the tree size (leaf 5's path is the same in trees of 7
	// and 8 leaves); the signed checkpoint does, and with the key it fails.
	verifies bool
}

// agreementCases tampers with each field of real receipts and evidence, in
// Go, independently of the JS tests' own tampering.
func agreementCases(t *testing.T, fixtures []consoleFixture, logKey string) []agreementCase {
	t.Helper()
	edit := func(b []byte, fn func(map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		fn(m)
		out, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	flip := func(s string) string {
		if s[0] == '0' {
			return "1" + s[1:]
		}
		return "0" + s[1:]
	}
	_, otherKey, err := note.GenerateKey(nil, anchor.DefaultOrigin)
	if err != nil {
		t.Fatal(err)
	}
	var cases []agreementCase
	for _, f := range fixtures {
		add := func(name string, receipt, evidence []byte, key string, verifies bool) {
			cases = append(cases, agreementCase{f.name + ": " + name, receipt, evidence, key, verifies})
		}
		r, ev := f.receipt, f.evidence
		add("valid", r, ev, logKey, true)
		add("valid, no key, no evidence", r, nil, "", true)
		add("commitment", edit(r, func(m map[string]any) { m["commitment"] = flip(m["commitment"].(string)) }), ev, logKey, false)
		add("leaf type number", edit(r, func(m map[string]any) { m["leafTypeNumber"] = 6.0 }), ev, logKey, false)
		add("audit path node", edit(r, func(m map[string]any) {
			p := m["auditPath"].([]any)
			p[len(p)-1] = flip(p[len(p)-1].(string))
		}), ev, logKey, false)
		add("leaf index", edit(r, func(m map[string]any) { m["leafIndex"] = float64(int(m["leafIndex"].(float64)) ^ 1) }), ev, logKey, false)
		add("tree size", edit(r, func(m map[string]any) { m["treeSize"] = m["treeSize"].(float64) + 1 }), ev, logKey, false)
		add("root", edit(r, func(m map[string]any) { m["root"] = flip(m["root"].(string)) }), ev, logKey, false)
		add("root, no key", edit(r, func(m map[string]any) { m["root"] = flip(m["root"].(string)) }), nil, "", false)
		add("checkpoint signature", edit(r, func(m map[string]any) {
			cp := m["checkpoint"].(string)
			i := strings.LastIndex(cp, " ") + 10
			c := byte('A')
			if cp[i] == 'A' {
				c = 'B'
			}
			m["checkpoint"] = cp[:i] + string(c) + cp[i+1:]
		}), ev, logKey, false)
		add("checkpoint body", edit(r, func(m map[string]any) {
			size := strconv.Itoa(int(m["treeSize"].(float64)))
			m["checkpoint"] = strings.Replace(m["checkpoint"].(string), "\n"+size+"\n", "\n"+size+"0\n", 1)
		}), ev, logKey, false)
		add("checkpoint removed", edit(r, func(m map[string]any) { delete(m, "checkpoint") }), ev, logKey, false)
		add("another log key", r, ev, otherKey, false)
		add("pending", edit(r, func(m map[string]any) { m["status"] = "pending" }), ev, logKey, false)
		add("unknown field", edit(r, func(m map[string]any) { m["note"] = "x" }), ev, logKey, false)
		salt := saltOf(t, ev)
		add("salt", r, bytes.Replace(ev, []byte(salt), []byte(flip(salt)), 1), logKey, false)
		if f.name == "decision" {
			add("record outcome", r, bytes.Replace(ev, []byte(`"allow":true`), []byte(`"allow":false`), 1), logKey, false)
			add("record re-spaced", r, bytes.Replace(ev, []byte(`"allow":true`), []byte(`"allow": true`), 1), logKey, false)
		} else {
			add("resource content", r, bytes.Replace(ev, []byte(`"id":"`), []byte(`"id":"x`), 1), logKey, false)
			// Re-encoded by encoding/json: another layout, which verifies,
			// except that 71.50 becomes the float 71.5, which does not.
			add("resource re-encoded", r, edit(ev, func(map[string]any) {}), logKey, f.name == "patient")
		}
	}
	// An inclusion proof does not bind the tree size: leaf i's audit path
	// is the same in every tree whose size gives the same path shape (leaf 5
	// of 7 and of 8). Such a size is caught by the signed checkpoint only.
	for _, f := range fixtures {
		var m struct{ LeafIndex, TreeSize uint64 }
		_ = json.Unmarshal(f.receipt, &m)
		if other, ok := sameProofSize(m.LeafIndex, m.TreeSize); ok {
			grown := edit(f.receipt, func(r map[string]any) { r["treeSize"] = float64(other) })
			cases = append(cases, agreementCase{f.name + ": tree size " + strconv.FormatUint(other, 10) + ", no key", grown, nil, "", true},
				agreementCase{f.name + ": tree size " + strconv.FormatUint(other, 10) + ", with key", grown, nil, logKey, false})
		}
	}
	return cases
}

// sameProofSize returns a tree size other than size in which leaf index
// has an audit path of the same shape (RFC 6962: the same inner and border
// parts), so the same path and root verify there.
func sameProofSize(index, size uint64) (uint64, bool) {
	shape := func(n uint64) (int, int) {
		inner := bits.Len64(index ^ (n - 1))
		return inner, bits.OnesCount64(index >> inner)
	}
	i0, b0 := shape(size)
	for n := index + 1; n <= 2*size+2; n++ {
		if i, b := shape(n); n != size && i == i0 && b == b0 {
			return n, true
		}
	}
	return 0, false
}

// saltOf returns the hex salt of an evidence document.
func saltOf(t *testing.T, ev []byte) string {
	t.Helper()
	var e struct{ Salt string }
	if err := json.Unmarshal(ev, &e); err != nil || e.Salt == "" {
		t.Fatalf("evidence without salt: %v", err)
	}
	return e.Salt
}

// TestConsoleVerifyAgreesWithCLI verifies real receipts, valid and
// tampered one field at a time, in the console's Verify page in headless
// Chromium and with `fhiranchor verify` (run, the CLI's own code path): the
// verdicts must agree on every one, and match what each case must give.
func TestConsoleVerifyAgreesWithCLI(t *testing.T) {
	b := browsertest.New(t)
	g := testonly.StartGateway(t, testonly.Options{Quiet: true})
	fixtures, logKey, _, _ := makeConsoleFixtures(t, g)
	cases := agreementCases(t, fixtures, strings.TrimSpace(string(logKey)))

	s := &browsertest.Server{Gateway: g, Tokens: map[string]string{
		browsertest.RoleAuditor: g.TokenFor(t, auth.Claims{ClientID: "console-auditor", Scopes: []string{"fhiranchor/audit"}, TTL: time.Hour}),
	}}
	b.Open(s, browsertest.RoleAuditor)
	browsertest.Eval[bool](b, `location.hash = '#/verify', true`)
	b.Wait("the Verify page and its log key", `!!document.getElementById('v-key-note') && document.getElementById('v-key-note').textContent !== ''`)
	// The CLI without --rpc does not look at the anchor; neither does the
	// page for this comparison.
	browsertest.Eval[bool](b, `document.getElementById('v-compare').checked = false, true`)

	quote := func(b []byte) string {
		q, _ := json.Marshal(string(b))
		return string(q)
	}
	browserVerify := func(c agreementCase) (ok bool, steps string) {
		browsertest.Eval[bool](b, fmt.Sprintf(`(() => {
			document.getElementById('v-clear').click();
			document.getElementById('v-receipt').value = %s;
			document.getElementById('v-evidence').value = %s;
			document.getElementById('v-key').value = %s;
			document.getElementById('v-run').click();
			return true;
		})()`, quote(c.receipt), quote(c.evidence), quote([]byte(c.logKey))))
		b.Wait("the verdict", `!!document.getElementById('verdict')`)
		steps = browsertest.Eval[string](b, `[...document.querySelectorAll('#steps li')].map((li) => li.dataset.step + '=' + li.dataset.ok + ' (' + li.querySelector('.detail').textContent + ')').join('\n')`)
		return browsertest.Eval[string](b, `document.getElementById('verdict').dataset.ok`) == "true", steps
	}

	dir := t.TempDir()
	failed := 0
	for i, c := range cases {
		receiptFile := filepath.Join(dir, fmt.Sprintf("%02d-receipt.json", i))
		if err := os.WriteFile(receiptFile, c.receipt, 0o600); err != nil {
			t.Fatal(err)
		}
		args := []string{"verify", receiptFile}
		if c.evidence != nil {
			evidenceFile := filepath.Join(dir, fmt.Sprintf("%02d-evidence.json", i))
			if err := os.WriteFile(evidenceFile, c.evidence, 0o600); err != nil {
				t.Fatal(err)
			}
			args = append(args, "--evidence", evidenceFile)
		}
		if c.logKey != "" {
			args = append(args, "--log-key", c.logKey)
		}
		var out bytes.Buffer
		cliOK := run(t.Context(), args, &out, io.Discard, noEnv) == nil
		browserOK, steps := browserVerify(c)
		switch {
		case cliOK != browserOK:
			t.Errorf("%s: the CLI says verified=%v, the console %v\nCLI:\n%sconsole:\n%s", c.name, cliOK, browserOK, out.String(), steps)
		case cliOK != c.verifies:
			t.Errorf("%s: both say verified=%v, want %v\nCLI:\n%sconsole:\n%s", c.name, cliOK, c.verifies, out.String(), steps)
		}
		if !cliOK {
			failed++
		}
		if i == 0 || c.name == "decision: checkpoint signature" {
			b.Screenshot(c.name)
		}
	}
	t.Logf("%d cases, %d refused by both", len(cases), failed)

	// With the comparison on, the page also catches what only a chain
	// check (--rpc) would: a tree size the signed checkpoint does not back.
	for _, c := range cases {
		if strings.Contains(c.name, ": tree size ") && strings.HasSuffix(c.name, ", no key") {
			browsertest.Eval[bool](b, `document.getElementById('v-compare').checked = true, true`)
			if ok, steps := browserVerify(c); ok || !strings.Contains(steps, "anchor=false") {
				t.Errorf("%s with the anchor compared: verified=%v\n%s", c.name, ok, steps)
			}
		}
	}
}

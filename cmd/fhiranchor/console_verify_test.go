package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"os"
	"os/exec"
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
// with the Go code (so the node tests start from receipts the CLI verifies),
// then runs the node tests of the in-browser verifier on them. With
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

	runNodeTests(t, "verify.test.mjs", "canonical.test.mjs")
}

// runNodeTests runs console/test files with `node --test`. Without node the
// test is skipped, except in CI (FHIRANCHOR_INTEGRATION=1) where it fails.
func runNodeTests(t *testing.T, files ...string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("FHIRANCHOR_INTEGRATION") == "1" {
			t.Fatal("node is needed for the console's tests: not found")
		}
		t.Skip("node not found")
	}
	args := []string{"--test"}
	for _, f := range files {
		args = append(args, filepath.Join("..", "..", "console", "test", f))
	}
	cmd := exec.Command(node, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test: %v\n%s", err, out)
	}
	t.Logf("node --test:\n%s", out)
}

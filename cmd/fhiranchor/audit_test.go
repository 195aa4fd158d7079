package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	_ "modernc.org/sqlite" // to tamper with the vault file as an intruder would

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/internal/shareddata"
	"github.com/fhiranchor/fhiranchor/vault"
)

// TestVerifyAndAudit runs serve, pushes a Synthea Bundle, saves a receipt
// and its evidence as files and checks them with `fhiranchor verify`; then,
// with the server stopped, alters one row of the SQLite vault and expects
// `fhiranchor audit` to name it.
func TestVerifyAndAudit(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "fhiranchor.yaml")
	if err := os.WriteFile(cfg, []byte("anchor:\n  max_delay: 100ms\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	base, stop := startServe(t, data, noEnv, "--config", cfg)
	root := strings.TrimSuffix(base, "/fhir/r4")
	files, _ := filepath.Glob(filepath.Join(shareddata.Dir(t), "synthea", "*.json"))
	ctx := context.Background()
	if err := run(ctx, []string{"push", "--server", base, "--data", data, "--no-progress", files[0]}, io.Discard, io.Discard, noEnv); err != nil {
		t.Fatal(err)
	}
	var tok strings.Builder
	if err := run(ctx, []string{"token", "--data", data}, &tok, io.Discard, noEnv); err != nil {
		t.Fatal(err)
	}
	get := func(path string) []byte {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, root+path, nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(tok.String()))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		return b
	}
	// Find the Patient through the vault-independent log: the first leaf
	// of a Synthea Bundle is its Patient.
	var patientLoc string
	{
		db, err := sql.Open("sqlite", filepath.Join(data, "vault.db")+"?_pragma=query_only(1)")
		if err != nil {
			t.Fatal(err)
		}
		err = db.QueryRow(`SELECT ref FROM leaves WHERE ref LIKE 'Patient/%' ORDER BY seq LIMIT 1`).Scan(&patientLoc)
		db.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	var receipt []byte
	for deadline := time.Now().Add(30 * time.Second); ; {
		receipt = get("/v1/receipts/" + patientLoc)
		var st struct{ Status string }
		_ = json.Unmarshal(receipt, &st)
		if st.Status == "confirmed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("receipt still %s", st.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	receiptFile, evidenceFile := filepath.Join(dir, "receipt.json"), filepath.Join(dir, "evidence.json")
	os.WriteFile(receiptFile, receipt, 0o600)
	os.WriteFile(evidenceFile, get("/v1/evidence/"+patientLoc), 0o600)

	var out strings.Builder
	if err := run(ctx, []string{"verify", receiptFile, "--evidence", evidenceFile}, &out, io.Discard, noEnv); err != nil {
		t.Fatalf("verify: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "VERIFIED") || !strings.Contains(out.String(), "content: ok") {
		t.Errorf("verify said:\n%s", out.String())
	}
	// A receipt whose root was altered fails, clearly and with a non-zero exit.
	var rc map[string]any
	_ = json.Unmarshal(receipt, &rc)
	rootHex := rc["root"].(string)
	flipped := "0" + rootHex[1:]
	if flipped == rootHex {
		flipped = "1" + rootHex[1:]
	}
	os.WriteFile(receiptFile, []byte(strings.Replace(string(receipt), rootHex, flipped, 1)), 0o600)
	out.Reset()
	if err := run(ctx, []string{"verify", receiptFile}, &out, io.Discard, noEnv); err == nil || !strings.Contains(out.String(), "FAILED") {
		t.Errorf("a tampered receipt verified:\n%s", out.String())
	}

	// The log's published key, fetched without a token, verifies the
	// receipt and its evidence with the server stopped: no chain, no server.
	keyResp, err := http.Get(root + "/v1/log/key")
	if err != nil {
		t.Fatal(err)
	}
	logKey, _ := io.ReadAll(keyResp.Body)
	keyResp.Body.Close()
	if keyResp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/log/key: %d %s", keyResp.StatusCode, logKey)
	}
	keyFile := filepath.Join(dir, "log.key")
	os.WriteFile(keyFile, logKey, 0o600)
	os.WriteFile(receiptFile, receipt, 0o600)
	stop()
	verifySigned(t, dir, receipt, evidenceFile, keyFile, strings.TrimSpace(string(logKey)))

	out.Reset()
	if err := run(ctx, []string{"audit", "--data", data}, &out, io.Discard, noEnv); err != nil {
		t.Fatalf("audit of an untouched vault: %v\n%s", err, out.String())
	}
	db, err := sql.Open("sqlite", filepath.Join(data, "vault.db"))
	if err != nil {
		t.Fatal(err)
	}
	// An intruder with write access replaces one version's salt.
	res, err := db.Exec(`UPDATE versions SET salt = randomblob(32) WHERE seq = 5`)
	if n, _ := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("tamper: %v", err)
	}
	var ref string
	db.QueryRow(`SELECT ref FROM leaves WHERE seq = 5`).Scan(&ref)
	db.Close()
	out.Reset()
	err = run(ctx, []string{"audit", "--data", data}, &out, io.Discard, noEnv)
	if err == nil || !strings.Contains(out.String(), "TAMPERED leaf 4 ("+ref+")") {
		t.Errorf("audit did not report the tampered row (err %v):\n%s", err, out.String())
	}

	// ... and rewrites the first policy activation's record (leaf 0: the
	// default policy, activated on first start) to name another version.
	db, err = sql.Open("sqlite", filepath.Join(data, "vault.db"))
	if err != nil {
		t.Fatal(err)
	}
	// The record is stored compressed; the intruder decompresses it, edits it
	// and writes it back as plain JSON, which the vault still reads (the
	// form records had before they were packed).
	var stored []byte
	if err := db.QueryRow(`SELECT record FROM leaf_records WHERE seq = 1 AND type = 3`).Scan(&stored); err != nil {
		t.Fatalf("read a record: %v", err)
	}
	plain := vault.UnpackRecord(stored)
	if bytes.Equal(plain, stored) || !bytes.Contains(plain, []byte(`"version":1`)) {
		t.Fatalf("stored record %q: not a compressed policy activation of version 1", stored)
	}
	res, err = db.Exec(`UPDATE leaf_records SET record = ? WHERE seq = 1 AND type = 3`, bytes.Replace(plain, []byte(`"version":1`), []byte(`"version":2`), 1))
	if err != nil {
		t.Fatalf("tamper with a record: %v", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("tamper with a record: %d rows changed, want 1", n)
	}
	db.Close()
	out.Reset()
	err = run(ctx, []string{"audit", "--data", data}, &out, io.Discard, noEnv)
	if err == nil || !strings.Contains(out.String(), "TAMPERED leaf 0 (policy-activation/1)") {
		t.Errorf("audit did not report the tampered record (err %v):\n%s", err, out.String())
	}

	// ... hides a version by deleting its row (its leaf stays), and
	// plants a blind-index token: reads would answer 404 and lookups
	// mislead, and the audit names both.
	db, err = sql.Open("sqlite", filepath.Join(data, "vault.db"))
	if err != nil {
		t.Fatal(err)
	}
	var hidden string
	db.QueryRow(`SELECT ref FROM leaves WHERE seq = 7`).Scan(&hidden)
	if _, err := db.Exec(`DELETE FROM versions WHERE seq = 7`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO postings (token, seq) VALUES (randomblob(16), 999999)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	out.Reset()
	err = run(ctx, []string{"audit", "--data", data}, &out, io.Discard, noEnv)
	for _, want := range []string{"TAMPERED leaf 6 (" + hidden + "): the resource-version leaf has no version row",
		"TAMPERED tokens row (postings): the blind index's postings differ from its token sets"} {
		if err == nil || !strings.Contains(out.String(), want) {
			t.Errorf("audit did not report %q (err %v):\n%s", want, err, out.String())
		}
	}
}

// verifySigned checks `fhiranchor verify --log-key` on a receipt saved from
// a stopped server: it verifies with the published key (as a file or as the
// key itself, alone or beside an older key); a changed signature, tree size
// or root, or another key, fails with a clear message and an error.
func verifySigned(t *testing.T, dir string, receipt []byte, evidenceFile, keyFile, logKey string) {
	t.Helper()
	ctx := context.Background()
	receiptFile := filepath.Join(dir, "signed-receipt.json")
	_, otherKey, err := note.GenerateKey(rand.Reader, anchor.DefaultOrigin)
	if err != nil {
		t.Fatal(err)
	}
	verify := func(receipt []byte, keys ...string) (string, error) {
		os.WriteFile(receiptFile, receipt, 0o600)
		args := []string{"verify", receiptFile, "--evidence", evidenceFile}
		for _, k := range keys {
			args = append(args, "--log-key", k)
		}
		var out strings.Builder
		err := run(ctx, args, &out, io.Discard, noEnv)
		return out.String(), err
	}
	for _, keys := range [][]string{{keyFile}, {logKey}, {otherKey, keyFile}} {
		out, err := verify(receipt, keys...)
		if err != nil || !strings.Contains(out, "signed:  ok, the log key of "+anchor.DefaultOrigin) ||
			!strings.Contains(out, "content: ok") || !strings.Contains(out, "VERIFIED") {
			t.Errorf("verify --log-key %v: %v\n%s", keys, err, out)
		}
	}

	var rc map[string]any
	if err := json.Unmarshal(receipt, &rc); err != nil {
		t.Fatal(err)
	}
	cp, _ := rc["checkpoint"].(string)
	if cp == "" {
		t.Fatalf("the receipt carries no signed checkpoint:\n%s", receipt)
	}
	edit := func(change func(map[string]any)) []byte {
		var m map[string]any
		json.Unmarshal(receipt, &m)
		change(m)
		b, _ := json.Marshal(m)
		return b
	}
	sig := strings.LastIndex(cp, " ") + 10
	flipped := []byte(cp)
	flipped[sig] = map[bool]byte{true: 'B', false: 'A'}[flipped[sig] == 'A']
	rootHex := rc["root"].(string)
	otherRoot := map[bool]string{true: "1", false: "0"}[rootHex[0] == '0'] + rootHex[1:]
	for _, tt := range []struct {
		name    string
		receipt []byte
		key     string
		want    string
	}{
		{"signature", edit(func(m map[string]any) { m["checkpoint"] = string(flipped) }), keyFile, "checkpoint signature does not verify"},
		{"tree size", edit(func(m map[string]any) { m["treeSize"] = m["treeSize"].(float64) + 1 }), keyFile, "does not match its signed checkpoint"},
		{"root", edit(func(m map[string]any) { m["root"] = otherRoot }), keyFile, "does not match its signed checkpoint"},
		{"unsigned", edit(func(m map[string]any) { delete(m, "checkpoint") }), keyFile, "carries no signed checkpoint"},
		{"wrong key", receipt, otherKey, "signed by no trusted key"},
	} {
		out, err := verify(tt.receipt, tt.key)
		if err == nil || !strings.Contains(out, "FAILED: signed: ") || !strings.Contains(out, tt.want) || strings.Contains(out, "VERIFIED") {
			t.Errorf("changed %s: verify = %v\n%s\nwant FAILED with %q", tt.name, err, out, tt.want)
		}
	}
	if out, err := verify(receipt, filepath.Join(dir, "no-such.key")); err == nil || !strings.Contains(out, "FAILED: --log-key") {
		t.Errorf("verify with a missing key file = %v\n%s", err, out)
	}
}

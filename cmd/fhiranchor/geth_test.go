package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/anchor/eth"
	"github.com/fhiranchor/fhiranchor/internal/shareddata"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// TestGethEndToEnd anchors to a real `geth --dev` node (runs when
// FHIRANCHOR_INTEGRATION=1, as in CI): several Synthea Bundles pushed,
// their receipts checked with `fhiranchor verify --rpc`; then geth is stopped
// while the gateway keeps ingesting, and restarted: every leaf ends up
// anchored exactly once, in one unbroken chain of anchors.
func TestGethEndToEnd(t *testing.T) {
	geth := testonly.StartGeth(t)
	key := geth.FundedKey(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "fhiranchor.yaml")
	yaml := fmt.Sprintf("chain:\n  rpc_url: %s\nanchor:\n  max_delay: 200ms\n", geth.RPCURL)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(k string) string {
		if k == "FHIRANCHOR_CHAIN_KEY" {
			return fmt.Sprintf("%064x", key.D)
		}
		return ""
	}
	data := filepath.Join(dir, "data")
	base, _ := startServe(t, data, env, "--config", cfg)
	c := &client{t: t, root: strings.TrimSuffix(base, "/fhir/r4"), data: data}
	files, _ := filepath.Glob(filepath.Join(shareddata.Dir(t), "synthea", "*.json"))
	ctx := context.Background()
	push := func(fs ...string) {
		t.Helper()
		var out strings.Builder
		if err := run(ctx, append([]string{"push", "--server", base, "--data", data, "--no-progress"}, fs...), &out, io.Discard, noEnv); err != nil {
			t.Fatalf("push: %v\n%s", err, out.String())
		}
	}

	push(files[:3]...)
	c.waitAllAnchored()
	c.verifyRPC(geth.RPCURL, "Patient")

	geth.Stop()
	push(files[3:6]...) // acknowledged while the chain is down
	time.Sleep(500 * time.Millisecond)
	geth.Start()
	leaves := c.waitAllAnchored()
	c.verifyRPC(geth.RPCURL, "Observation")

	// Exactly once: the anchors form one chain 1..n on the contract, each
	// naming the previous root, sizes increasing to every leaf the vault holds.
	var cps struct{ Checkpoints []anchor.Checkpoint }
	c.getJSON("/v1/log/checkpoints", &cps)
	chain, err := eth.New(ctx, eth.Config{RPCURL: geth.RPCURL, ReadOnly: true, Contract: cps.Checkpoints[0].Anchor.Contract})
	if err != nil {
		t.Fatal(err)
	}
	defer chain.Close()
	latest, err := chain.Latest(ctx)
	if err != nil || latest != uint64(len(cps.Checkpoints)) {
		t.Fatalf("contract holds %d anchors, the log %d checkpoints (%v)", latest, len(cps.Checkpoints), err)
	}
	var prevRoot []byte = make([]byte, 32)
	prevSize := uint64(0)
	for i, cp := range cps.Checkpoints {
		a, _, err := chain.Lookup(ctx, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		if cp.Anchor == nil || cp.Anchor.Seq != uint64(i+1) || !bytes.Equal(a.Root[:], cp.Root) || a.TreeSize != cp.Size ||
			!bytes.Equal(a.PrevRoot[:], prevRoot) || cp.Size <= prevSize {
			t.Fatalf("anchor %d: chain %x/%d prev %x, log %+v", i+1, a.Root, a.TreeSize, a.PrevRoot, cp)
		}
		prevRoot, prevSize = cp.Root, cp.Size
	}
	if prevSize != leaves {
		t.Errorf("anchored tree size %d, vault leaves %d", prevSize, leaves)
	}
}

type client struct {
	t          *testing.T
	root, data string
}

func (c *client) token() string {
	var tok strings.Builder
	if err := run(context.Background(), []string{"token", "--data", c.data}, &tok, io.Discard, noEnv); err != nil {
		c.t.Fatal(err)
	}
	return strings.TrimSpace(tok.String())
}

func (c *client) get(path string) []byte {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, c.root+path, nil)
	req.Header.Set("Authorization", "Bearer "+c.token())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return b
}

func (c *client) getJSON(path string, v any) {
	c.t.Helper()
	if err := json.Unmarshal(c.get(path), v); err != nil {
		c.t.Fatal(err)
	}
}

// waitAllAnchored waits until the last checkpoint covers every leaf the
// vault holds and its anchor is confirmed, and returns that many leaves.
func (c *client) waitAllAnchored() uint64 {
	c.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var ready struct{ Vault struct{ Leaves uint64 } }
		c.getJSON("/readyz", &ready)
		var cps struct{ Checkpoints []anchor.Checkpoint }
		c.getJSON("/v1/log/checkpoints", &cps)
		if n := len(cps.Checkpoints); n > 0 {
			last := cps.Checkpoints[n-1]
			if last.Size == ready.Vault.Leaves && last.Anchor != nil && last.Anchor.Status == anchor.StatusConfirmed {
				return last.Size
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("not every leaf anchored after 2 minutes: %d leaves, checkpoints %+v", ready.Vault.Leaves, cps.Checkpoints)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// verifyRPC saves the receipt and evidence of the newest version of type typ
// and checks them with `fhiranchor verify --rpc`.
func (c *client) verifyRPC(rpc, typ string) {
	c.t.Helper()
	loc := c.latestRef(typ)
	dir := c.t.TempDir()
	receipt, evidence := filepath.Join(dir, "receipt.json"), filepath.Join(dir, "evidence.json")
	os.WriteFile(receipt, c.get("/v1/receipts/"+loc), 0o600)
	os.WriteFile(evidence, c.get("/v1/evidence/"+loc), 0o600)
	var out strings.Builder
	err := run(context.Background(), []string{"verify", receipt, "--evidence", evidence, "--rpc", rpc}, &out, io.Discard, noEnv)
	if err != nil || !strings.Contains(out.String(), "chain:   ok") || !strings.Contains(out.String(), "VERIFIED") {
		c.t.Fatalf("verify --rpc %s: %v\n%s", loc, err, out.String())
	}
}

// latestRef returns the location of the newest stored version of type typ,
// read from the vault's leaf queue (refs are opaque type/id/version).
func (c *client) latestRef(typ string) string {
	c.t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(c.data, "vault.db")+"?_pragma=query_only(1)")
	if err != nil {
		c.t.Fatal(err)
	}
	defer db.Close()
	var ref string
	if err := db.QueryRow(`SELECT ref FROM leaves WHERE ref LIKE ? ORDER BY seq DESC LIMIT 1`, typ+"/%").Scan(&ref); err != nil {
		c.t.Fatal(err)
	}
	return ref
}

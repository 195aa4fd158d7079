package gateway_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/internal/shareddata"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
	"github.com/fhiranchor/fhiranchor/vault"
)

// getJSON GETs a /v1 path (relative to the server root) into v.
func getJSON(t *testing.T, g *testonly.Gateway, tok, path string, v any) int {
	t.Helper()
	var r testonly.Response
	if tok == "" {
		r = g.DoRoot(t, http.MethodGet, path, nil)
	} else {
		r = g.DoRoot(t, http.MethodGet, path, nil, "Authorization", "Bearer "+tok)
	}
	if r.Status == http.StatusOK && v != nil {
		if err := json.Unmarshal(r.Body, v); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	return r.Status
}

// waitReceipt polls a receipt until it is confirmed.
func waitReceipt(t *testing.T, g *testonly.Gateway, tok, url string) anchor.Receipt {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var rc anchor.Receipt
		if st := getJSON(t, g, tok, strings.TrimPrefix(url, g.Root), &rc); st != http.StatusOK {
			t.Fatalf("GET %s: %d", url, st)
		}
		if rc.Status == anchor.StatusConfirmed {
			return rc
		}
		if time.Now().After(deadline) {
			t.Fatalf("receipt %s still %s after 30s", url, rc.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type evidenceDoc struct {
	Resource json.RawMessage `json:"resource"`
	Salt     string          `json:"salt"`
}

// TestReceipts ingests a Synthea Bundle, follows each entry's receipt link
// until it is confirmed on the simulated chain, and verifies it with the
// version's evidence; tampering with any part makes verification fail;
// successive checkpoints are consistent; after a restart the same receipts
// still verify; after erasing the patient they verify as "content erased"
// and nothing of the patient is left in the data dir.
func TestReceipts(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	tok := g.Token(t)
	files := shareddata.Files(t, "synthea")
	bundle := readFile(t, files[0])
	r := g.Do(t, http.MethodPost, "", bundle, "Authorization", "Bearer "+tok)
	mustStatus(t, r, http.StatusOK)
	var resp struct {
		Entry []struct {
			Response struct {
				Location  string
				Extension []struct{ URL, ValueURL string }
			}
		}
	}
	if err := json.Unmarshal(r.Body, &resp); err != nil {
		t.Fatal(err)
	}
	receipts := map[string]anchor.Receipt{} // by location
	evidence := map[string]evidenceDoc{}
	var patient string
	for _, e := range resp.Entry {
		loc := e.Response.Location
		if len(e.Response.Extension) != 1 || e.Response.Extension[0].URL != "https://fhiranchor.dev/fhir/StructureDefinition/receipt" {
			t.Fatalf("%s: no receipt extension: %+v", loc, e.Response.Extension)
		}
		rc := waitReceipt(t, g, tok, e.Response.Extension[0].ValueURL)
		var ev evidenceDoc
		if st := getJSON(t, g, tok, "/v1/evidence/"+loc, &ev); st != http.StatusOK {
			t.Fatalf("evidence %s: %d", loc, st)
		}
		salt, _ := hex.DecodeString(ev.Salt)
		if err := anchor.VerifyReceipt(rc); err != nil {
			t.Fatalf("%s: %v", loc, err)
		}
		if err := anchor.VerifyContent(rc, salt, ev.Resource); err != nil {
			t.Fatalf("%s: %v", loc, err)
		}
		if rc.Anchor == nil || rc.Anchor.ChainID != 1337 || len(rc.Anchor.TxHash) != 32 || rc.Anchor.BlockNumber == 0 {
			t.Fatalf("%s: anchor %+v", loc, rc.Anchor)
		}
		receipts[loc], evidence[loc] = rc, ev
		if strings.HasPrefix(loc, "Patient/") {
			patient = strings.Split(loc, "/")[1]
		}
	}
	if len(receipts) != countEntries(t, bundle) || patient == "" {
		t.Fatalf("%d receipts for %d entries", len(receipts), countEntries(t, bundle))
	}

	t.Run("tampering fails", func(t *testing.T) {
		loc := "Patient/" + patient + "/_history/1"
		rc, ev := receipts[loc], evidence[loc]
		salt, _ := hex.DecodeString(ev.Salt)
		flip := func(b []byte, i int) []byte { c := bytes.Clone(b); c[i%len(c)] ^= 1; return c }
		cases := map[string]func() error{
			"resource": func() error {
				res := bytes.Replace(ev.Resource, []byte(`"gender":"`), []byte(`"gender":"x`), 1)
				c, err := fhir.CanonicalJSON(res)
				if err != nil {
					return err
				}
				return anchor.VerifyContent(rc, salt, c)
			},
			"salt":       func() error { return anchor.VerifyContent(rc, flip(salt, 5), ev.Resource) },
			"root":       func() error { c := rc; c.Root = flip(rc.Root, 7); return anchor.VerifyReceipt(c) },
			"commitment": func() error { c := rc; c.Commitment = flip(rc.Commitment, 0); return anchor.VerifyReceipt(c) },
			"leaf type": func() error {
				c := rc
				c.LeafTypeNumber, c.LeafType = uint8(anchor.LeafConsentEvent), anchor.LeafConsentEvent.String()
				return anchor.VerifyReceipt(c)
			},
			"proof": func() error {
				if len(rc.AuditPath) == 0 {
					return errors.New("no path to flip")
				}
				c := rc
				c.AuditPath = append([]anchor.Hex{flip(rc.AuditPath[0], 3)}, rc.AuditPath[1:]...)
				return anchor.VerifyReceipt(c)
			},
		}
		for name, verify := range cases {
			if err := verify(); err == nil {
				t.Errorf("a flipped %s still verifies", name)
			}
		}
	})

	t.Run("consistency between checkpoints", func(t *testing.T) {
		r := g.Do(t, http.MethodPost, "", readFile(t, files[1]), "Authorization", "Bearer "+tok)
		mustStatus(t, r, http.StatusOK)
		var cps struct {
			Checkpoints []anchor.Checkpoint
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			getJSON(t, g, "", "/v1/log/checkpoints", &cps) // public: no token
			n := len(cps.Checkpoints)
			if n >= 2 && cps.Checkpoints[n-1].Anchor != nil && cps.Checkpoints[n-1].Anchor.Status == anchor.StatusConfirmed {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no second confirmed checkpoint: %+v", cps)
			}
			time.Sleep(50 * time.Millisecond)
		}
		for i := 1; i < len(cps.Checkpoints); i++ {
			a, b := cps.Checkpoints[i-1], cps.Checkpoints[i]
			var c struct{ Proof []anchor.Hex }
			if st := getJSON(t, g, "", fmt.Sprintf("/v1/log/consistency?from=%d&to=%d", a.Size, b.Size), &c); st != http.StatusOK {
				t.Fatalf("consistency %d..%d: %d", a.Size, b.Size, st)
			}
			path := make([][]byte, len(c.Proof))
			for j, p := range c.Proof {
				path[j] = p
			}
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, a.Size, b.Size, path, a.Root, b.Root); err != nil {
				t.Errorf("checkpoints %d and %d: %v", a.Size, b.Size, err)
			}
			if b.Anchor == nil || !bytes.Equal(b.Anchor.PrevRoot, a.Root) {
				t.Errorf("anchor of checkpoint %d does not name the previous root", b.Size)
			}
		}
	})

	t.Run("receipts survive a restart", func(t *testing.T) {
		g.Restart(t)
		tok := g.Token(t)
		for loc, before := range receipts {
			var after anchor.Receipt
			if st := getJSON(t, g, tok, "/v1/receipts/"+loc, &after); st != http.StatusOK {
				t.Fatalf("%s after restart: %d", loc, st)
			}
			if err := anchor.VerifyReceipt(after); err != nil {
				t.Fatalf("%s after restart: %v", loc, err)
			}
			if !bytes.Equal(after.Root, before.Root) || after.Anchor.Seq != before.Anchor.Seq {
				t.Errorf("%s: the receipt changed across the restart", loc)
			}
			// And the chain still holds the anchor the old receipt names.
			a, _, err := g.Chain.Lookup(t.Context(), before.Anchor.Seq)
			if err != nil || !bytes.Equal(a.Root[:], before.Root) {
				t.Fatalf("anchor %d after restart: %v", before.Anchor.Seq, err)
			}
		}
	})

	t.Run("erasure", func(t *testing.T) {
		tok := g.Token(t)
		admin := g.Token(t, "fhiranchor/admin")
		req := func(tok string) testonly.Response {
			return doRoot(t, g, http.MethodPost, "/v1/patients/"+patient+":erase", tok)
		}
		mustStatus(t, req(tok), http.StatusForbidden) // read/write scopes do not erase
		er := req(admin)
		mustStatus(t, er, http.StatusOK)
		var out struct {
			VersionsErased int64
			LeafIndex      uint64
			Receipt        string
			Record         json.RawMessage
			Salt           string
		}
		if err := json.Unmarshal(er.Body, &out); err != nil || out.VersionsErased < 2 {
			t.Fatalf("erase: %s", er.Body)
		}
		// The erasure's own leaf is anchored and its record verifies.
		rc := waitReceipt(t, g, tok, g.Root+out.Receipt)
		salt, _ := hex.DecodeString(out.Salt)
		if err := anchor.VerifyReceipt(rc); err != nil || rc.LeafType != "erasure" {
			t.Fatalf("erasure receipt: %v %+v", err, rc)
		}
		if err := anchor.VerifyContent(rc, salt, out.Record); err != nil {
			t.Fatalf("erasure record: %v", err)
		}
		loc := "Patient/" + patient + "/_history/1"
		mustStatus(t, g.Do(t, http.MethodGet, "/"+loc, nil, "Authorization", "Bearer "+tok), http.StatusGone)
		if st := getJSON(t, g, tok, "/v1/evidence/"+loc, nil); st != http.StatusGone {
			t.Errorf("evidence of an erased version: %d", st)
		}
		var after anchor.Receipt
		getJSON(t, g, tok, "/v1/receipts/"+loc, &after)
		if err := anchor.VerifyReceipt(after); err != nil || !after.Erased {
			t.Errorf("receipt after erasure: erased %v, %v", after.Erased, err)
		}
		// Not even the master key opens any of the patient's versions now.
		for l := range receipts {
			parts := strings.Split(l, "/")
			v, err := g.Vault.Store().Version(t.Context(), parts[0], parts[1], 1)
			if err != nil {
				t.Fatal(err)
			}
			if v.Compartment() != "Patient/"+patient {
				continue
			}
			if _, err := g.Vault.VRead(t.Context(), parts[0], parts[1], 1); !errors.Is(err, vault.ErrErased) || !v.Erased || len(v.Salt) != 0 {
				t.Errorf("%s after erasure: %v", l, err)
			}
		}
		// Nothing of the patient is left anywhere in the data dir.
		p := collectPHI(t, files[:1], 2)
		err := filepath.WalkDir(g.Dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			if found := p.leaks(readFile(t, path), false); len(found) > 0 {
				t.Errorf("%s holds %q", path, found[0])
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// doRoot sends a bodiless request to a path under the server root.
func doRoot(t *testing.T, g *testonly.Gateway, method, path, tok string) testonly.Response {
	t.Helper()
	req, _ := http.NewRequest(method, g.Root+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := g.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return testonly.Response{Status: resp.StatusCode, Header: resp.Header, Body: buf.Bytes()}
}

// TestSignedReceipts: the log signs its checkpoints with the key derived
// from the master key and publishes the verifier key at /v1/log/key, with
// no token; a receipt fetched from the gateway verifies against that key
// alone, with no chain, and so does every listed checkpoint. A changed
// signature, tree size or root, or another key, fails. The key survives a
// restart, and the receipt stays the same.
func TestSignedReceipts(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	tok := g.Token(t)
	id := seedRolePatient(t, g, tok, `{"resourceType":"Patient","gender":"female"}`)
	rc := waitReceipt(t, g, tok, g.Root+"/v1/receipts/Patient/"+id+"/_history/1")

	r := g.DoRoot(t, http.MethodGet, "/v1/log/key", nil) // public: no token
	if r.Status != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /v1/log/key: %d %s %s", r.Status, r.Header.Get("Content-Type"), r.Body)
	}
	vkey := strings.TrimSpace(string(r.Body))
	if vkey != g.Log.VerifierKey() || !strings.HasPrefix(vkey, anchor.DefaultOrigin+"+") {
		t.Fatalf("published key %q, the log's %q", vkey, g.Log.VerifierKey())
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Checkpoint == "" {
		t.Fatal("the receipt carries no signed checkpoint")
	}
	if err := anchor.VerifyReceiptSigned(rc, v); err != nil {
		t.Fatalf("VerifyReceiptSigned: %v\n%s", err, rc.Checkpoint)
	}

	_, otherKey, err := note.GenerateKey(rand.Reader, anchor.DefaultOrigin)
	if err != nil {
		t.Fatal(err)
	}
	other, err := note.NewVerifier(otherKey)
	if err != nil {
		t.Fatal(err)
	}
	size := fmt.Sprintf("\n%d\n", rc.TreeSize)
	sig := strings.LastIndex(rc.Checkpoint, " ") + 10
	for name, tt := range map[string]struct {
		change func(c *anchor.Receipt)
		key    note.Verifier
		want   error
	}{
		"signature": {func(c *anchor.Receipt) {
			b := []byte(c.Checkpoint)
			b[sig] = map[bool]byte{true: 'B', false: 'A'}[b[sig] == 'A']
			c.Checkpoint = string(b)
		}, v, anchor.ErrCheckpointSignature},
		"signed tree size": {func(c *anchor.Receipt) {
			c.Checkpoint = strings.Replace(c.Checkpoint, size, fmt.Sprintf("\n%d\n", c.TreeSize+1), 1)
		}, v, anchor.ErrCheckpointSignature},
		"receipt tree size": {func(c *anchor.Receipt) { c.TreeSize++ }, v, anchor.ErrCheckpointMismatch},
		"receipt root":      {func(c *anchor.Receipt) { c.Root[3] ^= 1 }, v, anchor.ErrCheckpointMismatch},
		"wrong key":         {func(c *anchor.Receipt) {}, other, anchor.ErrCheckpointSignature},
	} {
		c := rc
		c.Root, c.Checkpoint = bytes.Clone(rc.Root), rc.Checkpoint
		tt.change(&c)
		if err := anchor.VerifyReceiptSigned(c, tt.key); !errors.Is(err, tt.want) {
			t.Errorf("changed %s: VerifyReceiptSigned = %v, want %v", name, err, tt.want)
		}
	}

	var cps struct{ Checkpoints []anchor.Checkpoint }
	if st := getJSON(t, g, "", "/v1/log/checkpoints", &cps); st != http.StatusOK || len(cps.Checkpoints) == 0 {
		t.Fatalf("checkpoints: %d, %d", st, len(cps.Checkpoints))
	}
	for _, cp := range cps.Checkpoints {
		b, err := anchor.VerifyCheckpoint([]byte(cp.Note), v)
		if err != nil || b.Size != cp.Size || !bytes.Equal(b.Root, cp.Root) {
			t.Errorf("listed checkpoint %d: note signs %+v, %v", cp.Size, b, err)
		}
	}

	g.Restart(t)
	r = g.DoRoot(t, http.MethodGet, "/v1/log/key", nil)
	if got := strings.TrimSpace(string(r.Body)); got != vkey {
		t.Errorf("key after a restart = %q, want %q", got, vkey)
	}
	var after anchor.Receipt
	if st := getJSON(t, g, g.Token(t), "/v1/receipts/Patient/"+id+"/_history/1", &after); st != http.StatusOK {
		t.Fatalf("receipt after a restart: %d", st)
	}
	if after.Checkpoint != rc.Checkpoint || anchor.VerifyReceiptSigned(after, v) != nil {
		t.Errorf("receipt after a restart: checkpoint changed or does not verify")
	}
}

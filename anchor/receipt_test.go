package anchor_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/mod/sumdb/note"

	"github.com/fhiranchor/fhiranchor/anchor"
)

// testTree returns the leaf bytes of a tree of n leaves whose leaf 0 is the
// documented example version (docs/canonical-form.md) and the others
// various types.
func testTree(n int) [][]byte {
	leaves := [][]byte{anchor.LeafData(anchor.LeafResourceVersion,
		anchor.Commit(anchor.LeafResourceVersion, vectorSalt, vectorCanonical))}
	for i := 1; i < n; i++ {
		leaves = append(leaves, testLeaf(uint64(i)).Data)
	}
	return leaves
}

// receiptOf builds, from the reference functions, the confirmed receipt of
// leaf index in the tree of the given leaves.
func receiptOf(leaves [][]byte, index int) anchor.Receipt {
	leaf := leaves[index]
	r := anchor.Receipt{
		LeafIndex:      uint64(index),
		LeafType:       anchor.LeafType(leaf[0]).String(),
		LeafTypeNumber: leaf[0],
		Commitment:     bytes.Clone(leaf[1:]),
		Status:         anchor.StatusConfirmed,
		TreeSize:       uint64(len(leaves)),
		Root:           anchor.RefRoot(leaves),
		AuditPath:      []anchor.Hex{},
		Anchor: &anchor.ReceiptAnchor{
			Seq:         3,
			ChainID:     1337,
			Contract:    "0x5FbDB2315678afecb367f032d93F642f64180aa3",
			TxHash:      bytes.Repeat([]byte{0xab}, 32),
			BlockNumber: 42,
			BlockHash:   bytes.Repeat([]byte{0xcd}, 32),
			BlockTime:   time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		},
	}
	for _, h := range anchor.RefPath(index, leaves) {
		r.AuditPath = append(r.AuditPath, h)
	}
	return r
}

// clone deep-copies a receipt so a test can alter it.
func clone(r anchor.Receipt) anchor.Receipt {
	b, err := json.Marshal(r)
	if err != nil {
		panic(err)
	}
	var out anchor.Receipt
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}

func TestVerifyReceipt(t *testing.T) {
	for n := 1; n <= 33; n++ {
		leaves := testTree(n)
		for i := range n {
			if err := anchor.VerifyReceipt(receiptOf(leaves, i)); err != nil {
				t.Errorf("VerifyReceipt(leaf %d of %d) = %v", i, n, err)
			}
		}
	}
	r := receiptOf(testTree(5), 2)
	r.Status = anchor.StatusAnchored
	if err := anchor.VerifyReceipt(r); err != nil {
		t.Errorf("VerifyReceipt(anchored) = %v", err)
	}
	r.Erased = true // content erased: the leaf is still provably logged
	if err := anchor.VerifyReceipt(r); err != nil {
		t.Errorf("VerifyReceipt(erased) = %v", err)
	}
}

// TestVerifyReceiptFlippedBits: every single bit flipped in the root, the
// audit path or the commitment makes verification fail.
func TestVerifyReceiptFlippedBits(t *testing.T) {
	good := receiptOf(testTree(13), 6)
	flipAll := func(what string, field func(*anchor.Receipt) []byte) {
		t.Helper()
		for bit := range 8 * len(field(&good)) {
			r := clone(good)
			field(&r)[bit/8] ^= 1 << (bit % 8)
			if err := anchor.VerifyReceipt(r); !errors.Is(err, anchor.ErrInclusion) {
				t.Fatalf("VerifyReceipt with bit %d of the %s flipped = %v, want ErrInclusion", bit, what, err)
			}
		}
	}
	flipAll("root", func(r *anchor.Receipt) []byte { return r.Root })
	flipAll("commitment", func(r *anchor.Receipt) []byte { return r.Commitment })
	if len(good.AuditPath) != 4 {
		t.Fatalf("audit path of leaf 6 of 13 has %d hashes, want 4", len(good.AuditPath))
	}
	for i := range good.AuditPath {
		flipAll(fmt.Sprintf("audit path hash %d", i), func(r *anchor.Receipt) []byte { return r.AuditPath[i] })
	}
}

func TestVerifyReceiptTampered(t *testing.T) {
	good := receiptOf(testTree(13), 6) // leaf 6 is a consent event
	tests := []struct {
		name   string
		change func(r *anchor.Receipt)
		want   error
	}{
		{"type number changed", func(r *anchor.Receipt) { r.LeafTypeNumber = uint8(anchor.LeafResourceVersion) }, anchor.ErrLeafTypeMismatch},
		{"type name changed", func(r *anchor.Receipt) { r.LeafType = "resource-version" }, anchor.ErrLeafTypeMismatch},
		{"type bit flipped", func(r *anchor.Receipt) { r.LeafTypeNumber ^= 1 }, anchor.ErrLeafTypeMismatch},
		// Re-labelled consistently: the leaf bytes change, so the proof fails
		// (DESIGN.md invariant 3).
		{"re-labelled as another type", func(r *anchor.Receipt) {
			r.LeafTypeNumber, r.LeafType = uint8(anchor.LeafResourceVersion), anchor.LeafResourceVersion.String()
		}, anchor.ErrInclusion},
		{"other index", func(r *anchor.Receipt) { r.LeafIndex = 7 }, anchor.ErrInclusion},
		{"smaller tree", func(r *anchor.Receipt) { r.TreeSize = 8 }, anchor.ErrInclusion},
		{"leaf after the tree", func(r *anchor.Receipt) { r.TreeSize = 7 }, anchor.ErrInclusion},
		{"path hash dropped", func(r *anchor.Receipt) { r.AuditPath = r.AuditPath[:3] }, anchor.ErrInclusion},
		{"path hash added", func(r *anchor.Receipt) { r.AuditPath = append(r.AuditPath, r.Root) }, anchor.ErrInclusion},
		{"path hashes swapped", func(r *anchor.Receipt) { r.AuditPath[0], r.AuditPath[1] = r.AuditPath[1], r.AuditPath[0] }, anchor.ErrInclusion},
		{"another leaf's proof", func(r *anchor.Receipt) { r.AuditPath = receiptOf(testTree(13), 7).AuditPath }, anchor.ErrInclusion},
		{"pending", func(r *anchor.Receipt) { r.Status = anchor.StatusPending }, anchor.ErrNotAnchored},
		{"no status", func(r *anchor.Receipt) { r.Status = "" }, anchor.ErrMalformedReceipt},
		{"submitted", func(r *anchor.Receipt) { r.Status = anchor.StatusSubmitted }, anchor.ErrMalformedReceipt},
		{"no anchor", func(r *anchor.Receipt) { r.Anchor = nil }, anchor.ErrMalformedReceipt},
		{"index beyond tree", func(r *anchor.Receipt) { r.LeafIndex = 13 }, anchor.ErrMalformedReceipt},
		{"no tree", func(r *anchor.Receipt) { r.TreeSize = 0 }, anchor.ErrMalformedReceipt},
		{"short root", func(r *anchor.Receipt) { r.Root = r.Root[:31] }, anchor.ErrMalformedReceipt},
		{"no root", func(r *anchor.Receipt) { r.Root = nil }, anchor.ErrMalformedReceipt},
		{"short commitment", func(r *anchor.Receipt) { r.Commitment = r.Commitment[:31] }, anchor.ErrMalformedReceipt},
		{"long path hash", func(r *anchor.Receipt) { r.AuditPath[2] = append(r.AuditPath[2], 0) }, anchor.ErrMalformedReceipt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := clone(good)
			tt.change(&r)
			if err := anchor.VerifyReceipt(r); !errors.Is(err, tt.want) {
				t.Errorf("VerifyReceipt = %v, want %v", err, tt.want)
			}
		})
	}
	if err := anchor.VerifyReceipt(good); err != nil {
		t.Fatalf("the tests altered the good receipt: %v", err)
	}
}

// TestVerifyReceiptTreeSize pins a limit of RFC 6962 inclusion proofs: the
// audit path of leaf 6 has the same shape in every tree of 9 to 16 leaves, so
// another size in that range still verifies offline. Only the chain binds a
// root to its tree size: `verify --rpc` MUST compare both with the
// contract's anchor at the receipt's seq.
func TestVerifyReceiptTreeSize(t *testing.T) {
	r := receiptOf(testTree(13), 6)
	r.TreeSize = 16
	if err := anchor.VerifyReceipt(r); err != nil {
		t.Errorf("VerifyReceipt(tree size 13 -> 16) = %v; if this now fails, update the doc of VerifyReceipt", err)
	}
}

func TestVerifyContent(t *testing.T) {
	r := receiptOf(testTree(4), 0) // the documented example version
	if err := anchor.VerifyContent(r, vectorSalt, vectorCanonical); err != nil {
		t.Fatalf("VerifyContent(the example version) = %v", err)
	}
	flipped := bytes.Clone(vectorCanonical)
	flipped[len(flipped)-3] ^= 1
	otherSalt := bytes.Clone(vectorSalt)
	otherSalt[31] ^= 0x80
	relabelled := clone(r)
	relabelled.LeafType, relabelled.LeafTypeNumber = anchor.LeafConsentEvent.String(), uint8(anchor.LeafConsentEvent)
	mislabelled := clone(r)
	mislabelled.LeafTypeNumber = uint8(anchor.LeafConsentEvent)
	short := clone(r)
	short.Commitment = short.Commitment[:16]
	tests := []struct {
		name      string
		r         anchor.Receipt
		salt      []byte
		canonical []byte
		want      error
	}{
		{"a bit of the content flipped", r, vectorSalt, flipped, anchor.ErrContentMismatch},
		{"another salt", r, otherSalt, vectorCanonical, anchor.ErrContentMismatch},
		{"short salt", r, vectorSalt[:31], vectorCanonical, anchor.ErrContentMismatch},
		{"no salt", r, nil, vectorCanonical, anchor.ErrContentMismatch},
		{"no content", r, vectorSalt, nil, anchor.ErrContentMismatch},
		{"re-labelled as another type", relabelled, vectorSalt, vectorCanonical, anchor.ErrContentMismatch},
		{"type name and number disagree", mislabelled, vectorSalt, vectorCanonical, anchor.ErrLeafTypeMismatch},
		{"short commitment", short, vectorSalt, vectorCanonical, anchor.ErrMalformedReceipt},
	}
	for _, tt := range tests {
		if err := anchor.VerifyContent(tt.r, tt.salt, tt.canonical); !errors.Is(err, tt.want) {
			t.Errorf("%s: VerifyContent = %v, want %v", tt.name, err, tt.want)
		}
	}
}

var lowerHex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)

func TestReceiptJSON(t *testing.T) {
	r := receiptOf(testTree(13), 6)
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	anchorDoc := doc["anchor"].(map[string]any)
	hashes := []any{doc["commitment"], doc["root"], anchorDoc["txHash"], anchorDoc["blockHash"]}
	hashes = append(hashes, doc["auditPath"].([]any)...)
	for _, h := range hashes {
		if s, ok := h.(string); !ok || !lowerHex64.MatchString(s) {
			t.Errorf("hash %v is not 64 lowercase hex digits", h)
		}
	}
	if doc["leafType"] != "consent-event" || doc["leafTypeNumber"] != 2.0 || doc["status"] != "confirmed" {
		t.Errorf("leaf type, number, status = %v, %v, %v", doc["leafType"], doc["leafTypeNumber"], doc["status"])
	}
	if _, ok := doc["erased"]; ok {
		t.Error("erased is present though false")
	}
	var back anchor.Receipt
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r, back); diff != "" {
		t.Errorf("JSON round trip (-want +got):\n%s", diff)
	}

	// A tree of one leaf has an empty audit path, written as [].
	one := receiptOf(testTree(1), 0)
	b, err = json.Marshal(one)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"auditPath":[]`) {
		t.Errorf("receipt in a tree of one leaf: %s; want \"auditPath\":[]", b)
	}
	if err := json.Unmarshal(b, &back); err != nil || anchor.VerifyReceipt(back) != nil {
		t.Errorf("receipt in a tree of one leaf does not survive JSON: %v, %v", err, anchor.VerifyReceipt(back))
	}

	// A pending receipt carries no proof fields at all.
	pending := anchor.Receipt{LeafIndex: 9, LeafType: "erasure", LeafTypeNumber: 5, Commitment: r.Commitment, Status: anchor.StatusPending}
	b, err = json.Marshal(pending)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"treeSize", "root", "auditPath", "anchor"} {
		if strings.Contains(string(b), `"`+key+`"`) {
			t.Errorf("pending receipt %s has %q", b, key)
		}
	}
}

func TestHex(t *testing.T) {
	h := anchor.Hex{0x00, 0xab, 0xCD, 0xff}
	if h.String() != "00abcdff" {
		t.Errorf("String = %q", h.String())
	}
	text, err := h.MarshalText()
	if err != nil || string(text) != "00abcdff" {
		t.Errorf("MarshalText = %q, %v", text, err)
	}
	var got anchor.Hex
	for _, in := range []string{"00abcdff", "00ABCDFF"} {
		if err := got.UnmarshalText([]byte(in)); err != nil || !bytes.Equal(got, h) {
			t.Errorf("UnmarshalText(%q) = %x, %v; want %x", in, got, err, h)
		}
	}
	for _, in := range []string{"0x00ab", "abc", "zz", "00 ab"} {
		if err := got.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("UnmarshalText(%q) = nil error", in)
		}
	}
	var r anchor.Receipt
	if err := json.Unmarshal([]byte(`{"root":"not hex"}`), &r); err == nil {
		t.Error("a receipt with a non-hex root decodes")
	}
	if s := sha256.Sum256(nil); anchor.Hex(s[:]).String() != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Error("Hex of SHA-256(\"\") is not its lowercase hex")
	}
}

// signedReceiptOf is receiptOf with the checkpoint of its tree signed by
// the test vector's key.
func signedReceiptOf(t *testing.T, leaves [][]byte, index int) anchor.Receipt {
	t.Helper()
	r := receiptOf(leaves, index)
	msg, err := anchor.SignCheckpoint(anchor.CheckpointBody{Origin: vectorOrigin, Size: r.TreeSize, Root: r.Root}, mustSigner(t, vectorSKey))
	if err != nil {
		t.Fatal(err)
	}
	r.Checkpoint = string(msg)
	return r
}

// TestVerifyReceiptSigned: a receipt verifies offline against its signed
// checkpoint and the log's key alone; a changed signature, tree size or
// root, or another key, fails with its own sentinel.
func TestVerifyReceiptSigned(t *testing.T) {
	leaves := testTree(13)
	good := signedReceiptOf(t, leaves, 6)
	v := mustVerifier(t, vectorVKey)
	if err := anchor.VerifyReceiptSigned(good, v); err != nil {
		t.Fatalf("VerifyReceiptSigned(good): %v", err)
	}
	_, otherV, err := note.GenerateKey(rand.Reader, vectorOrigin)
	if err != nil {
		t.Fatal(err)
	}
	// A receipt rewritten consistently for a bigger tree, with that tree's
	// checkpoint properly signed: the signature and the match hold, the
	// inclusion proof does not.
	bigger := signedReceiptOf(t, testTree(14), 6)
	sig := strings.LastIndex(good.Checkpoint, " ") + 9
	tests := []struct {
		name   string
		change func(r *anchor.Receipt)
		keys   []note.Verifier
		want   error
	}{
		{"signature changed", func(r *anchor.Receipt) {
			c := []byte(r.Checkpoint)
			c[sig] ^= 'A' ^ 'B'
			r.Checkpoint = string(c)
		}, []note.Verifier{v}, anchor.ErrCheckpointSignature},
		{"signed tree size changed", func(r *anchor.Receipt) {
			r.Checkpoint = strings.Replace(r.Checkpoint, "\n13\n", "\n14\n", 1)
		}, []note.Verifier{v}, anchor.ErrCheckpointSignature},
		{"signed root changed", func(r *anchor.Receipt) {
			root := base64.StdEncoding.EncodeToString(r.Root)
			r.Checkpoint = strings.Replace(r.Checkpoint, root, base64.StdEncoding.EncodeToString(flipBit(r.Root, 3)), 1)
		}, []note.Verifier{v}, anchor.ErrCheckpointSignature},
		{"receipt tree size changed", func(r *anchor.Receipt) { r.TreeSize = 14 }, []note.Verifier{v}, anchor.ErrCheckpointMismatch},
		{"receipt root changed", func(r *anchor.Receipt) { r.Root = flipBit(r.Root, 200) }, []note.Verifier{v}, anchor.ErrCheckpointMismatch},
		{"checkpoint of another tree", func(r *anchor.Receipt) { r.Checkpoint = bigger.Checkpoint }, []note.Verifier{v}, anchor.ErrCheckpointMismatch},
		{"wrong key", func(r *anchor.Receipt) {}, []note.Verifier{mustVerifier(t, otherV)}, anchor.ErrCheckpointSignature},
		{"no key", func(r *anchor.Receipt) {}, nil, anchor.ErrCheckpointSignature},
		{"unsigned", func(r *anchor.Receipt) { r.Checkpoint = "" }, []note.Verifier{v}, anchor.ErrUnsignedReceipt},
		{"not a note", func(r *anchor.Receipt) { r.Checkpoint = "hello\n" }, []note.Verifier{v}, anchor.ErrMalformedCheckpoint},
		{"consistent rewrite for a bigger tree", func(r *anchor.Receipt) {
			r.TreeSize, r.Root, r.Checkpoint = bigger.TreeSize, bigger.Root, bigger.Checkpoint
		}, []note.Verifier{v}, anchor.ErrInclusion},
		{"audit path changed", func(r *anchor.Receipt) { r.AuditPath[0] = flipBit(r.AuditPath[0], 0) }, []note.Verifier{v}, anchor.ErrInclusion},
		{"commitment changed", func(r *anchor.Receipt) { r.Commitment = flipBit(r.Commitment, 9) }, []note.Verifier{v}, anchor.ErrInclusion},
		{"pending", func(r *anchor.Receipt) {
			*r = anchor.Receipt{LeafIndex: 6, LeafType: r.LeafType, LeafTypeNumber: r.LeafTypeNumber, Commitment: r.Commitment, Status: anchor.StatusPending}
		}, []note.Verifier{v}, anchor.ErrNotAnchored},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := clone(good)
			tt.change(&r)
			if err := anchor.VerifyReceiptSigned(r, tt.keys...); !errors.Is(err, tt.want) {
				t.Errorf("VerifyReceiptSigned = %v, want %v", err, tt.want)
			}
		})
	}
	// The checkpoint survives JSON, as `fhiranchor verify` reads it.
	if err := anchor.VerifyReceiptSigned(clone(good), v); err != nil {
		t.Errorf("VerifyReceiptSigned after a JSON round trip: %v", err)
	}
}

// flipBit returns a copy of b with bit i flipped.
func flipBit(b []byte, i int) anchor.Hex {
	out := bytes.Clone(b)
	out[i/8] ^= 1 << (i % 8)
	return out
}

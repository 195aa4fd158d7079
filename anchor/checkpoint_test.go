package anchor_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/mod/sumdb/note"

	"github.com/fhiranchor/fhiranchor/anchor"
)

// The checkpoint test vector: the Ed25519 key whose seed is the bytes 0 to
// 31, named "fhiranchor.example/log", signs the checkpoint of a tree of 7
// leaves whose root is SHA-256("fhiranchor checkpoint test vector"). The
// keys and the note were computed apart from this code, from the specs
// alone (Python's cryptography package: key ID = SHA-256(name || 0x0A ||
// 0x01 || public key)[:4]; the signature covers the note text).
const (
	vectorOrigin = "fhiranchor.example/log"
	vectorSKey   = "PRIVATE+KEY+fhiranchor.example/log+f26c2370+AQABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f"
	vectorVKey   = "fhiranchor.example/log+f26c2370+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
	vectorNote   = "fhiranchor.example/log\n" +
		"7\n" +
		"Rx+01tJZeOzpapH49RRMOQW3a6no529HkTdVOgxKFKw=\n" +
		"\n" +
		"— fhiranchor.example/log 8mwjcB+EPnBbDNW9T1bXREukQ58xDAFs2LddGvUnPF8ijk+gugGidGho61KDSziIMVdJ7Zk1RZXcMu2Sl8m8xOQWHQ8=\n"
)

func vectorSeed() []byte {
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = byte(i)
	}
	return seed
}

func vectorBody() anchor.CheckpointBody {
	root := sha256.Sum256([]byte("fhiranchor checkpoint test vector"))
	return anchor.CheckpointBody{Origin: vectorOrigin, Size: 7, Root: root[:]}
}

func mustSigner(t *testing.T, skey string) note.Signer {
	t.Helper()
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustVerifier(t *testing.T, vkey string) note.Verifier {
	t.Helper()
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestCheckpointVector(t *testing.T) {
	skey, vkey, err := anchor.NewCheckpointKey(vectorOrigin, vectorSeed())
	if err != nil || skey != vectorSKey || vkey != vectorVKey {
		t.Fatalf("NewCheckpointKey = %q, %q, %v; want the vector's keys", skey, vkey, err)
	}
	if got, err := anchor.CheckpointVerifierKey(vectorSKey); err != nil || got != vectorVKey {
		t.Errorf("CheckpointVerifierKey = %q, %v; want %q", got, err, vectorVKey)
	}
	msg, err := anchor.SignCheckpoint(vectorBody(), mustSigner(t, vectorSKey))
	if err != nil {
		t.Fatal(err)
	}
	if string(msg) != vectorNote {
		t.Errorf("SignCheckpoint =\n%s\nwant\n%s", msg, vectorNote)
	}
	got, err := anchor.VerifyCheckpoint([]byte(vectorNote), mustVerifier(t, vectorVKey))
	if err != nil {
		t.Fatalf("VerifyCheckpoint(vector): %v", err)
	}
	if diff := cmp.Diff(vectorBody(), got); diff != "" {
		t.Errorf("VerifyCheckpoint(vector) (-want +got):\n%s", diff)
	}
}

// TestNewCheckpointKeyMatchesNote: a key made from a seed is the key
// golang.org/x/mod/sumdb/note's own test vector holds.
func TestNewCheckpointKeyMatchesNote(t *testing.T) {
	const (
		skey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
		vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
	)
	raw, _ := base64.StdEncoding.DecodeString(strings.SplitN(skey, "+", 5)[4]) // the base64 holds a '+'
	gs, gv, err := anchor.NewCheckpointKey("PeterNeumann", raw[1:])
	if err != nil || gs != skey || gv != vkey {
		t.Errorf("NewCheckpointKey(PeterNeumann's seed) = %q, %q, %v", gs, gv, err)
	}
	if got, err := anchor.CheckpointVerifierKey(" " + skey + "\n"); err != nil || got != vkey {
		t.Errorf("CheckpointVerifierKey = %q, %v; want %q", got, err, vkey)
	}
	for _, bad := range []string{"", vkey, "PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"} {
		if _, err := anchor.CheckpointVerifierKey(bad); err == nil {
			t.Errorf("CheckpointVerifierKey(%q) = nil error", bad)
		} else if strings.Contains(err.Error(), "AYEK") {
			t.Errorf("CheckpointVerifierKey error quotes the key: %v", err)
		}
	}
	for _, bad := range []struct {
		name string
		seed []byte
	}{{"a b", vectorSeed()}, {"a+b", vectorSeed()}, {"", vectorSeed()}, {"ok", []byte{1, 2, 3}}} {
		if _, _, err := anchor.NewCheckpointKey(bad.name, bad.seed); err == nil {
			t.Errorf("NewCheckpointKey(%q, %d bytes) = nil error", bad.name, len(bad.seed))
		}
	}
}

func TestParseCheckpointBody(t *testing.T) {
	root := base64.StdEncoding.EncodeToString(vectorBody().Root)
	ok := []struct {
		text string
		want anchor.CheckpointBody
	}{
		{vectorOrigin + "\n7\n" + root + "\n", vectorBody()},
		{"o\n0\n" + root + "\n", anchor.CheckpointBody{Origin: "o", Size: 0, Root: vectorBody().Root}},
		{"o\n18446744073709551615\n" + root + "\next one\next two\n",
			anchor.CheckpointBody{Origin: "o", Size: 1<<64 - 1, Root: vectorBody().Root, Extensions: []string{"ext one", "ext two"}}},
	}
	for _, tt := range ok {
		got, err := anchor.ParseCheckpointBody([]byte(tt.text))
		if err != nil {
			t.Errorf("ParseCheckpointBody(%q): %v", tt.text, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseCheckpointBody(%q) (-want +got):\n%s", tt.text, diff)
		}
		back, err := got.Marshal()
		if err != nil || string(back) != tt.text {
			t.Errorf("Marshal(ParseCheckpointBody(%q)) = %q, %v", tt.text, back, err)
		}
	}
	for _, text := range []string{
		"",
		vectorOrigin + "\n7\n" + root,              // no final newline
		vectorOrigin + "\n7\n",                     // two lines
		"\n7\n" + root + "\n",                      // empty origin
		vectorOrigin + "\n07\n" + root + "\n",      // leading zero
		vectorOrigin + "\n+7\n" + root + "\n",      // sign
		vectorOrigin + "\n-7\n" + root + "\n",      // negative
		vectorOrigin + "\n7 \n" + root + "\n",      // trailing space
		vectorOrigin + "\n0x7\n" + root + "\n",     // hex
		vectorOrigin + "\n7\n" + root[:43] + "\n",  // unpadded
		vectorOrigin + "\n7\nAAAA\n",               // 3-byte root
		vectorOrigin + "\n7\n" + root + "\n\n",     // empty extension line
		vectorOrigin + "\n7\n" + root + "\nx\ty\n", // control character
		vectorOrigin + "\n18446744073709551616\n" + root + "\n",
	} {
		if _, err := anchor.ParseCheckpointBody([]byte(text)); !errors.Is(err, anchor.ErrMalformedCheckpoint) {
			t.Errorf("ParseCheckpointBody(%q) = %v, want ErrMalformedCheckpoint", text, err)
		}
	}
	for _, b := range []anchor.CheckpointBody{
		{Origin: "", Size: 1, Root: vectorBody().Root},
		{Origin: "a\nb", Size: 1, Root: vectorBody().Root},
		{Origin: "o", Size: 1, Root: vectorBody().Root[:31]},
		{Origin: "o", Size: 1, Root: vectorBody().Root, Extensions: []string{""}},
	} {
		if _, err := b.Marshal(); err == nil {
			t.Errorf("Marshal(%+v) = nil error", b)
		}
	}
}

func TestSignCheckpointRefusesOtherOrigin(t *testing.T) {
	b := vectorBody()
	b.Origin = "other.example/log"
	if _, err := anchor.SignCheckpoint(b, mustSigner(t, vectorSKey)); err == nil {
		t.Error("SignCheckpoint with a key not named after the origin = nil error")
	}
	if _, err := anchor.SignCheckpoint(vectorBody(), nil); err == nil {
		t.Error("SignCheckpoint without a signer = nil error")
	}
}

func TestVerifyCheckpointFails(t *testing.T) {
	v := mustVerifier(t, vectorVKey)
	otherS, otherV, err := note.GenerateKey(rand.Reader, vectorOrigin)
	if err != nil {
		t.Fatal(err)
	}
	// The vector's body with another origin, signed by the vector's key
	// anyway (note.Sign does not look at the text).
	foreign, err := note.Sign(&note.Note{Text: strings.Replace(vectorNote[:strings.Index(vectorNote, "\n\n")+1], vectorOrigin, "other.example/log", 1)},
		mustSigner(t, vectorSKey))
	if err != nil {
		t.Fatal(err)
	}
	sigAt := strings.LastIndex(vectorNote, " ") + 10
	tests := []struct {
		name      string
		msg       string
		verifiers []note.Verifier
		want      error
	}{
		{"size changed", strings.Replace(vectorNote, "\n7\n", "\n8\n", 1), []note.Verifier{v}, anchor.ErrCheckpointSignature},
		{"root changed", strings.Replace(vectorNote, "Rx+01", "Rx+02", 1), []note.Verifier{v}, anchor.ErrCheckpointSignature},
		{"signature changed", vectorNote[:sigAt] + "A" + vectorNote[sigAt+1:], []note.Verifier{v}, anchor.ErrCheckpointSignature},
		{"wrong key", vectorNote, []note.Verifier{mustVerifier(t, otherV)}, anchor.ErrCheckpointSignature},
		{"no key", vectorNote, nil, anchor.ErrCheckpointSignature},
		{"origin is not the key's name", string(foreign), []note.Verifier{v}, anchor.ErrCheckpointSignature},
		{"no signature", vectorNote[:strings.Index(vectorNote, "\n\n")+1], []note.Verifier{v}, anchor.ErrMalformedCheckpoint},
		{"garbage", "not a note", []note.Verifier{v}, anchor.ErrMalformedCheckpoint},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := anchor.VerifyCheckpoint([]byte(tt.msg), tt.verifiers...); !errors.Is(err, tt.want) {
				t.Errorf("VerifyCheckpoint = %v, want %v", err, tt.want)
			}
		})
	}

	// After a key rotation a verifier trusts both keys: notes of either verify.
	newer, err := anchor.SignCheckpoint(vectorBody(), mustSigner(t, otherS))
	if err != nil {
		t.Fatal(err)
	}
	both := []note.Verifier{v, mustVerifier(t, otherV)}
	for _, msg := range [][]byte{[]byte(vectorNote), newer} {
		if _, err := anchor.VerifyCheckpoint(msg, both...); err != nil {
			t.Errorf("VerifyCheckpoint with both keys: %v", err)
		}
	}
	// A cosignature by a key the verifier does not know is ignored.
	n, err := note.Open([]byte(vectorNote), note.VerifierList(v))
	if err != nil {
		t.Fatal(err)
	}
	witnessS, _, _ := note.GenerateKey(rand.Reader, "witness.example")
	cosigned, err := note.Sign(n, mustSigner(t, witnessS))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(cosigned, []byte("— witness.example ")) {
		t.Fatalf("no cosignature in\n%s", cosigned)
	}
	if _, err := anchor.VerifyCheckpoint(cosigned, v); err != nil {
		t.Errorf("VerifyCheckpoint of a cosigned note: %v", err)
	}
}

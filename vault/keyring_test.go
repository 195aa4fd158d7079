package vault

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// testMaster is the master key 00 01 02 ... 1f.
func testMaster() []byte {
	m := make([]byte, MasterKeySize)
	for i := range m {
		m[i] = byte(i)
	}
	return m
}

func testKeyring(t testing.TB, master []byte) *Keyring {
	t.Helper()
	kr, err := NewKeyring(master)
	if err != nil {
		t.Fatalf("NewKeyring: %v", err)
	}
	return kr
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNewKeyringSize(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := NewKeyring(make([]byte, n)); err == nil {
			t.Errorf("NewKeyring(%d bytes) = nil error, want an error", n)
		}
	}
}

// The golden values below were computed independently (Python hmac and
// cryptography's AESGCM) from the documented derivation. A change that breaks
// them breaks every stored token and every wrapped key.
const (
	goldenDataKey = "599fe7ff6296a3b60ad685bfe99f1ec73701fd6187822998b342f2e1fded77b1"
	goldenWrapped = "1ca5c404cd934766896d137f3f6078dd2a1b0ae9bb617951ce25ad92885ecbd8" +
		"9ca45b5f212002afff87ca5fc24806acdc0a1044250a5aaa9c51b116" // key id "patient:123"
)

func TestTokenGolden(t *testing.T) {
	kr := testKeyring(t, testMaster())
	tests := []struct {
		parts []string
		want  string
	}{
		{[]string{"identifier", "http://hospital.example/mrn", "12345"}, "a6fd4c2d234e2688a3a1b81d0438813a46e3f4fc939c9c317304f45da4ba9a50"},
		{nil, "c303719039c92b5c673963079458e660c50c1544f6de13615c71958c1a54ed34"},
		{[]string{strings.Repeat("x", 200)}, "e1bf38322ba19473b9c866ecfd90fb2b822a44b1305f377c6ae63a19e3fdaf28"}, // two-byte uvarint
	}
	for _, tt := range tests {
		if got := hex.EncodeToString(kr.Token(tt.parts...)); got != tt.want {
			t.Errorf("Token(%q) = %s, want %s", tt.parts, got, tt.want)
		}
	}
}

// TestTokenScratch: tokens of messages long and short, one after another
// (each reusing, or dropping, the scratch the last one left), are the
// HMAC of their encoding computed afresh.
func TestTokenScratch(t *testing.T) {
	kr := testKeyring(t, testMaster())
	for _, n := range []int{0, 5, 200, 1500, 3, 5000, 40, 1021, 1022, 7} {
		parts := []string{"identifier", strings.Repeat("y", n), "z"}
		msg := []byte{}
		for _, p := range parts {
			msg = binary.AppendUvarint(msg, uint64(len(p)))
			msg = append(msg, p...)
		}
		m := hmac.New(sha256.New, kr.indexKey)
		m.Write(msg)
		if got, want := kr.Token(parts...), m.Sum(nil); !bytes.Equal(got, want) {
			t.Errorf("Token of a %d-byte part = %x, want %x", n, got, want)
		}
	}
}

func TestTokenSeparation(t *testing.T) {
	kr := testKeyring(t, testMaster())
	distinct := [][]string{
		{"ab", "c"},
		{"a", "bc"},
		{"abc"},
		{"abc", ""},
		{"", "abc"},
		{},
		{""},
	}
	seen := make(map[string][]string)
	for _, parts := range distinct {
		tok := string(kr.Token(parts...))
		if len(tok) != 32 {
			t.Errorf("Token(%q) is %d bytes, want 32", parts, len(tok))
		}
		if prev, ok := seen[tok]; ok {
			t.Errorf("Token(%q) == Token(%q)", parts, prev)
		}
		seen[tok] = parts
	}
	if !bytes.Equal(kr.Token("a", "b"), kr.Token("a", "b")) {
		t.Errorf("Token is not deterministic")
	}
	other := make([]byte, MasterKeySize)
	if bytes.Equal(kr.Token("a"), testKeyring(t, other).Token("a")) {
		t.Errorf("two master keys give the same token")
	}
}

func TestDataKeyWrap(t *testing.T) {
	kr := testKeyring(t, testMaster())
	plain, wrapped, err := kr.NewDataKey("patient:1")
	if err != nil {
		t.Fatalf("NewDataKey: %v", err)
	}
	if len(plain) != 32 || len(wrapped) != 12+32+16 {
		t.Fatalf("NewDataKey: %d-byte key, %d-byte wrapped; want 32 and 60", len(plain), len(wrapped))
	}
	got, err := kr.Unwrap("patient:1", wrapped)
	if err != nil || !bytes.Equal(got, plain) {
		t.Errorf("Unwrap = %x, %v; want %x", got, err, plain)
	}
	plain2, wrapped2, _ := kr.NewDataKey("patient:1")
	if bytes.Equal(plain, plain2) || bytes.Equal(wrapped, wrapped2) {
		t.Errorf("two data keys are equal")
	}

	tampered := bytes.Clone(wrapped)
	tampered[len(tampered)-1] ^= 1
	other := make([]byte, MasterKeySize)
	fails := []struct {
		name    string
		kr      *Keyring
		keyID   string
		wrapped []byte
	}{
		{"another key id", kr, "patient:2", wrapped},
		{"another master key", testKeyring(t, other), "patient:1", wrapped},
		{"tampered", kr, "patient:1", tampered},
		{"truncated", kr, "patient:1", wrapped[:20]},
		{"empty", kr, "patient:1", nil},
	}
	for _, tt := range fails {
		if _, err := tt.kr.Unwrap(tt.keyID, tt.wrapped); err == nil {
			t.Errorf("Unwrap with %s = nil error, want an error", tt.name)
		}
	}
}

func TestUnwrapGolden(t *testing.T) {
	kr := testKeyring(t, testMaster())
	got, err := kr.Unwrap("patient:123", mustHex(t, goldenWrapped))
	if err != nil {
		t.Fatalf("Unwrap(golden): %v", err)
	}
	if want := mustHex(t, goldenDataKey); !bytes.Equal(got, want) {
		t.Errorf("Unwrap(golden) = %x, want %x", got, want)
	}
}

func TestParseMasterKey(t *testing.T) {
	key := testMaster()
	hexKey := hex.EncodeToString(key)
	ok := []string{
		hexKey,
		strings.ToUpper(hexKey),
		"  " + hexKey + "\n",
		base64.StdEncoding.EncodeToString(key),
		base64.RawStdEncoding.EncodeToString(key) + "\r\n",
	}
	for _, s := range ok {
		got, err := ParseMasterKey(s)
		if err != nil || !bytes.Equal(got, key) {
			t.Errorf("ParseMasterKey(%q) = %x, %v; want %x", s, got, err, key)
		}
	}
	bad := []string{
		"",
		hexKey[:62],
		hexKey + "00",
		"zz" + hexKey[2:],
		base64.StdEncoding.EncodeToString(key[:31]),
		base64.StdEncoding.EncodeToString(append(key, 0)),
		base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32)),
	}
	for _, s := range bad {
		_, err := ParseMasterKey(s)
		if err == nil {
			t.Errorf("ParseMasterKey(%q) = nil error, want an error", s)
			continue
		}
		if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("ParseMasterKey error %q quotes the key", err)
		}
	}
}

func TestLoadOrCreateMasterKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secrets", "fhiranchor")
	path := filepath.Join(dir, "master.key")
	key, err := LoadOrCreateMasterKey(path)
	if err != nil {
		t.Fatalf("LoadOrCreateMasterKey (create): %v", err)
	}
	if len(key) != MasterKeySize {
		t.Fatalf("created key is %d bytes", len(key))
	}
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := hex.EncodeToString(key) + "\n"; string(text) != want {
		t.Errorf("key file holds %d bytes, want 64 hex digits and a newline", len(text))
	}
	for p, want := range map[string]os.FileMode{path: 0o600, dir: 0o700} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s has mode %#o, want %#o", p, got, want)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("key directory holds %d entries, want only the key file", len(entries))
	}

	again, err := LoadOrCreateMasterKey(path)
	if err != nil || !bytes.Equal(again, key) {
		t.Errorf("LoadOrCreateMasterKey (load) = %x, %v; want the created key", again, err)
	}

	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateMasterKey(path); err == nil {
		t.Errorf("LoadOrCreateMasterKey accepted a group-readable key file")
	}

	b64 := filepath.Join(dir, "b64.key")
	if err := os.WriteFile(b64, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadOrCreateMasterKey(b64); err != nil || !bytes.Equal(got, key) {
		t.Errorf("LoadOrCreateMasterKey(base64 file) = %x, %v; want %x", got, err, key)
	}

	garbage := filepath.Join(dir, "garbage.key")
	if err := os.WriteFile(garbage, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateMasterKey(garbage); err == nil {
		t.Errorf("LoadOrCreateMasterKey accepted a malformed key file")
	}
}

// TestTokenConcurrent: the pooled HMAC states give every goroutine the same
// tokens as one goroutine computing them alone, and as a fresh hmac.New.
func TestTokenConcurrent(t *testing.T) {
	kr := testKeyring(t, bytes.Repeat([]byte{7}, MasterKeySize))
	want := make([][]byte, 200)
	for i := range want {
		m := hmac.New(sha256.New, kr.indexKey)
		for _, p := range []string{"search/v1", "Observation", strconv.Itoa(i)} {
			m.Write(binary.AppendUvarint(nil, uint64(len(p))))
			m.Write([]byte(p))
		}
		want[i] = m.Sum(nil)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for round := range 5 {
				for i := range want {
					if got := kr.Token("search/v1", "Observation", strconv.Itoa(i)); !bytes.Equal(got, want[i]) {
						t.Errorf("round %d token %d = %x, want %x", round, i, got, want[i])
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkToken(b *testing.B) {
	kr := testKeyring(b, bytes.Repeat([]byte{7}, MasterKeySize))
	b.ReportAllocs()
	for b.Loop() {
		kr.Token("search/v1", "Observation", "code|http://loinc.org|8302-2")
	}
}

// TestOpenResponseUnpacked: a response sealed before responses were
// deflated (the plain JSON under the AEAD) still opens; one whose packed
// stream is damaged under a valid seal is ErrCorrupt, not a panic.
func TestOpenResponseUnpacked(t *testing.T) {
	kr, err := NewKeyring(bytes.Repeat([]byte{7}, MasterKeySize))
	if err != nil {
		t.Fatal(err)
	}
	s := NewSealed(nil, kr)
	key, body := []byte("k"), []byte(`{"resourceType":"Bundle","type":"transaction-response"}`)
	if got, err := s.OpenResponse(key, kr.sealResponse(key, body)); err != nil || !bytes.Equal(got, body) {
		t.Errorf("OpenResponse(sealed plain JSON) = %q, %v; want it as it is", got, err)
	}
	if _, err := s.OpenResponse(key, kr.sealResponse(key, []byte{packedDeflate, 0xff, 0xff})); !errors.Is(err, ErrCorrupt) {
		t.Errorf("OpenResponse(sealed broken stream) = %v; want ErrCorrupt", err)
	}
	// What the previous version sealed (DEFLATE against body.dict) opens
	// after the upgrade to Zstandard, then S2; a damaged block does not.
	if got, err := s.OpenResponse(key, kr.sealResponse(key, flatePack(t, packedBodyDict, body))); err != nil || !bytes.Equal(got, body) {
		t.Errorf("OpenResponse(sealed DEFLATE with body.dict) = %q, %v; want the body", got, err)
	}
	frame := pack(body)
	if frame[0] != packedS2Body {
		t.Fatalf("pack = %x...; want an S2 block", frame[:1])
	}
	if _, err := s.OpenResponse(key, kr.sealResponse(key, frame[:len(frame)-2])); !errors.Is(err, ErrCorrupt) {
		t.Errorf("OpenResponse(sealed frame cut short) = %v; want ErrCorrupt", err)
	}
}

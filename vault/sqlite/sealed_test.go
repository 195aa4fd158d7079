package sqlite_test

// Tests of vault.Sealed over the SQLite store. They live here rather than in
// package vault, which must not import its backends.

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/fhiranchor/fhiranchor/vault"
	"github.com/fhiranchor/fhiranchor/vault/sqlite"
)

// marker stands for PHI: it must never reach the database file in clear.
const marker = "MARKER-PHI-7f3a9c1e-Doe-Jane"

var errBoom = errors.New("boom")

func openStore(t testing.TB, dir string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.New(t.Context(), sqlite.Config{Path: filepath.Join(dir, "vault.db")})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func newKeyring(t *testing.T, seed byte) *vault.Keyring {
	t.Helper()
	master := bytes.Repeat([]byte{seed}, vault.MasterKeySize)
	kr, err := vault.NewKeyring(master)
	if err != nil {
		t.Fatalf("NewKeyring: %v", err)
	}
	return kr
}

func newSealed(t *testing.T) (*vault.Sealed, *sqlite.Store) {
	t.Helper()
	s := openStore(t, t.TempDir())
	t.Cleanup(func() { s.Close() })
	return vault.NewSealed(s, newKeyring(t, 1)), s
}

// version returns a version of typ/id in compartment whose body carries
// marker. Body and copy are short and do not repeat themselves, so the
// vault seals them as they are rather than deflated (vault/pack.go): what
// keeps the marker off the disk in TestSealedNoPlaintextOnDisk is the seal.
func version(typ, id string, v int64, compartment string) vault.Version {
	ref := fmt.Sprintf("%s/%s/_history/%d", typ, id, v)
	return vault.Version{
		Type:        typ,
		ID:          id,
		Version:     v,
		LastUpdated: time.Date(2025, 1, 2, 3, 4, 5, 6007000, time.UTC),
		Compartment: compartment,
		Body:        fmt.Appendf(nil, `{"resourceType":%q,"id":%q,"name":[{"text":%q}],"v":%d}`, typ, id, marker, v),
		Salt:        bytes.Repeat([]byte{byte(v)}, 32),
		Commitment:  bytes.Repeat([]byte{byte(v + 1)}, 32),
		// The de-identified copy is sealed too: TestSealedNoPlaintextOnDisk
		// looks for the marker in it as well.
		Deid: fmt.Appendf(nil, `{"resourceType":%q,"id":"pseudonym","note":%q,"v":%d}`, typ, marker, v),
		Leaf: vault.Leaf{Type: 1, Data: []byte("leaf " + ref), Ref: ref},
	}
}

func sealedPut(t *testing.T, s *vault.Sealed, vs ...vault.Version) {
	t.Helper()
	err := s.Update(t.Context(), func(tx *vault.SealedTx) error {
		for _, v := range vs {
			if err := tx.Put(t.Context(), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
}

var versionOpts = cmp.Options{
	cmpopts.EquateEmpty(),
	cmpopts.IgnoreFields(vault.Version{}, "Tokens", "Packed"),
	// Reads leave the copy out; TestSealedRoundTrip reads it with OpenCopy.
	cmpopts.IgnoreFields(vault.Version{}, "Deid"),
	cmpopts.IgnoreFields(vault.Leaf{}, "Seq"),
}

func TestSealedRoundTrip(t *testing.T) {
	s, store := newSealed(t)
	ctx := t.Context()
	v1 := version("Patient", "p1", 1, "Patient/p1")
	v1.Tokens = [][]byte{s.Token("identifier", "mrn", "1")}
	v2 := version("Patient", "p1", 2, "Patient/p1")
	v3 := version("Patient", "p1", 3, "Patient/p1")
	v3.Deleted = true
	v3.Body = []byte(`{"resourceType":"Patient","id":"p1","deleted":true}`)
	obs := version("Observation", "o1", 1, "Patient/p1")
	obs.Pack() // deflated ahead of Put: reads the same
	org := version("Organization", "org1", 1, "")
	sealedPut(t, s, v1, obs, org)
	sealedPut(t, s, v2)
	sealedPut(t, s, v3)

	got, err := s.Read(ctx, "Patient", "p1")
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if diff := cmp.Diff(v3, got, versionOpts); diff != "" {
		t.Errorf("Read mismatch (-want +got):\n%s", diff)
	}
	for _, want := range []vault.Version{v1, v2, v3, obs, org} {
		got, err := s.VRead(ctx, want.Type, want.ID, want.Version)
		if err != nil {
			t.Fatalf("VRead(%s): %v", want.Leaf.Ref, err)
		}
		if diff := cmp.Diff(want, got, versionOpts); diff != "" {
			t.Errorf("VRead(%s) mismatch (-want +got):\n%s", want.Leaf.Ref, diff)
		}
		if got.Leaf.Seq < 1 {
			t.Errorf("VRead(%s).Leaf.Seq = %d, want >= 1", want.Leaf.Ref, got.Leaf.Seq)
		}
		if got.Deid != nil {
			t.Errorf("VRead(%s) decrypted the research copy", want.Leaf.Ref)
		}
		r, err := store.Version(ctx, want.Type, want.ID, want.Version)
		if err != nil {
			t.Fatal(err)
		}
		if copy, err := s.OpenCopy(ctx, r); err != nil || !bytes.Equal(copy, want.Deid) {
			t.Errorf("OpenCopy(%s) = %q, %v; want %q", want.Leaf.Ref, copy, err, want.Deid)
		}
	}
	hist, err := s.History(ctx, "Patient", "p1")
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	if diff := cmp.Diff([]vault.Version{v3, v2, v1}, hist, versionOpts); diff != "" {
		t.Errorf("History mismatch (-want +got):\n%s", diff)
	}

	_, err = s.Read(ctx, "Patient", "nope")
	if !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Read of a missing resource: err = %v, want ErrNotFound", err)
	}
	_, err = s.VRead(ctx, "Patient", "p1", 4)
	if !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("VRead of a missing version: err = %v, want ErrNotFound", err)
	}
	_, err = s.History(ctx, "Patient", "nope")
	if !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("History of a missing resource: err = %v, want ErrNotFound", err)
	}

	// In a transaction: Find by token, read own writes in clear.
	err = s.Update(ctx, func(tx *vault.SealedTx) error {
		p2 := version("Patient", "p2", 1, "Patient/p2")
		p2.Tokens = [][]byte{s.Token("identifier", "mrn", "2")}
		if err := tx.Put(ctx, p2); err != nil {
			return err
		}
		got, err := tx.Read(ctx, "Patient", "p2")
		if err != nil {
			return err
		}
		if diff := cmp.Diff(p2, got, versionOpts); diff != "" {
			t.Errorf("SealedTx.Read after Put mismatch (-want +got):\n%s", diff)
		}
		cur, err := tx.Current(ctx, "Patient", "p1")
		if err != nil || cur.Version != 3 || !cur.Deleted {
			t.Errorf("SealedTx.Current = version %d deleted %v, %v; want version 3 deleted", cur.Version, cur.Deleted, err)
		}
		ids, err := tx.Find(ctx, "Patient", s.Token("identifier", "mrn", "2"))
		if err != nil || len(ids) != 1 || ids[0] != "p2" {
			t.Errorf("SealedTx.Find = %v, %v; want [p2]", ids, err)
		}
		if err := tx.PutResponse(ctx, []byte("k"), []byte("r")); err != nil {
			return err
		}
		body, err := tx.Response(ctx, []byte("k"))
		if err != nil || string(body) != "r" {
			t.Errorf("SealedTx.Response = %q, %v; want r", body, err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
}

func TestSealedPutInvalid(t *testing.T) {
	s, store := newSealed(t)
	ctx := t.Context()
	bad := []vault.Version{
		version("Patient", "p1", 1, "Group/g1"),
		version("Patient", "p1", 1, "Patient/"),
		version("Patient", "p1", 1, "Patient/p1/_history/1"),
		version("Patient", "", 1, ""),
		version("", "p1", 1, ""),
		version("Patient", "p1", 0, ""),
	}
	for _, v := range bad {
		err := s.Update(ctx, func(tx *vault.SealedTx) error { return tx.Put(ctx, v) })
		if err == nil {
			t.Errorf("Put(%q, %q, %d, compartment %q) = nil error", v.Type, v.ID, v.Version, v.Compartment)
		}
	}
	if st, err := store.Stats(ctx); err != nil || st != (vault.Stats{}) {
		t.Errorf("Stats after invalid Puts = %+v, %v; want zero", st, err)
	}
}

// TestSealedGolden pins the sealed body format: a body sealed by an
// independent AES-GCM implementation under the golden data key (see
// keyring_test.go) with additional data "fhiranchor/v1|Patient|123|1".
func TestSealedGolden(t *testing.T) {
	store := openStore(t, t.TempDir())
	defer store.Close()
	ctx := t.Context()
	master := make([]byte, vault.MasterKeySize)
	for i := range master {
		master[i] = byte(i)
	}
	kr, err := vault.NewKeyring(master)
	if err != nil {
		t.Fatal(err)
	}
	wrapped, _ := hex.DecodeString("1ca5c404cd934766896d137f3f6078dd2a1b0ae9bb617951ce25ad92885ecbd8" +
		"9ca45b5f212002afff87ca5fc24806acdc0a1044250a5aaa9c51b116")
	ct, _ := hex.DecodeString("000102030405060708090a0b42233bda485493388b3c52201c2a36962083492f" +
		"cbbf55742011f30513786b7984543e875890cdae354bdde83dafd3e1a84320da0e")
	err = store.Update(ctx, func(tx vault.Tx) error {
		if err := tx.PutDataKey(ctx, "patient:123", wrapped); err != nil {
			return err
		}
		return tx.Put(ctx, vault.Record{Type: "Patient", ID: "123", Version: 1, KeyID: "patient:123", Ciphertext: ct})
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	got, err := vault.NewSealed(store, kr).Read(ctx, "Patient", "123")
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if want := `{"resourceType":"Patient","id":"123"}`; string(got.Body) != want || got.Compartment != "Patient/123" {
		t.Errorf("Read = %q in %q, want %q in Patient/123", got.Body, got.Compartment, want)
	}
}

func TestSealedWrongMasterKey(t *testing.T) {
	s, store := newSealed(t)
	ctx := t.Context()
	sealedPut(t, s, version("Patient", "p1", 1, "Patient/p1"), version("Organization", "o1", 1, ""))

	wrong := vault.NewSealed(store, newKeyring(t, 2))
	for _, typ := range []string{"Patient", "Organization"} {
		id := map[string]string{"Patient": "p1", "Organization": "o1"}[typ]
		_, err := wrong.Read(ctx, typ, id)
		if err == nil || errors.Is(err, vault.ErrNotFound) {
			t.Fatalf("Read(%s) with the wrong master key: err = %v, want a decryption error", typ, err)
		}
		if strings.Contains(err.Error(), marker) || strings.Contains(err.Error(), id) {
			t.Errorf("error %q reveals content or the resource id", err)
		}
	}
	// Writing with the wrong master key must fail too, not create a second
	// key for the compartment.
	err := wrong.Update(ctx, func(tx *vault.SealedTx) error { return tx.Put(ctx, version("Patient", "p1", 2, "Patient/p1")) })
	if err == nil {
		t.Errorf("Put with the wrong master key = nil error")
	}
}

// TestCheckMasterKey: the first check on an empty vault records the key;
// later checks with it pass, with another key fail before anything is
// written; a vault written before the check existed is checked against its
// shared data key.
func TestCheckMasterKey(t *testing.T) {
	ctx := t.Context()
	s, store := newSealed(t)
	for range 2 {
		if err := s.CheckMasterKey(ctx); err != nil {
			t.Fatalf("CheckMasterKey with the vault's key: %v", err)
		}
	}
	before, _ := store.Stats(ctx)
	if err := vault.NewSealed(store, newKeyring(t, 2)).CheckMasterKey(ctx); !errors.Is(err, vault.ErrWrongMasterKey) {
		t.Fatalf("CheckMasterKey with another key = %v, want ErrWrongMasterKey", err)
	}
	if after, _ := store.Stats(ctx); after != before {
		t.Errorf("a failed check changed the store: %+v -> %+v", before, after)
	}

	old, oldStore := newSealed(t) // written before the check existed
	sealedPut(t, old, version("Organization", "o1", 1, ""))
	if err := vault.NewSealed(oldStore, newKeyring(t, 2)).CheckMasterKey(ctx); !errors.Is(err, vault.ErrWrongMasterKey) {
		t.Errorf("CheckMasterKey with another key on an older vault = %v, want ErrWrongMasterKey", err)
	}
	if err := old.CheckMasterKey(ctx); err != nil {
		t.Errorf("CheckMasterKey with its key on an older vault: %v", err)
	}
}

func TestSealedMovedCiphertext(t *testing.T) {
	s, store := newSealed(t)
	ctx := t.Context()
	sealedPut(t, s, version("Patient", "p1", 1, "Patient/p1"), version("Observation", "o1", 1, "Patient/p1"))
	src, err := store.Current(ctx, "Patient", "p1")
	if err != nil {
		t.Fatalf("Current: %v", err)
	}
	// Copies of a valid ciphertext, under the right data key, in other rows.
	moves := []vault.Record{
		{Type: "Patient", ID: "p1", Version: 2},     // another version
		{Type: "Patient", ID: "p9", Version: 1},     // another resource
		{Type: "Observation", ID: "p1", Version: 1}, // another type
		{Type: "Observation", ID: "o1", Version: 2}, // another resource's next version
	}
	for _, m := range moves {
		r := src
		r.Type, r.ID, r.Version = m.Type, m.ID, m.Version
		r.Leaf = vault.Leaf{Ref: fmt.Sprintf("%s/%s/_history/%d", m.Type, m.ID, m.Version)}
		if err := store.Update(ctx, func(tx vault.Tx) error { return tx.Put(ctx, r) }); err != nil {
			t.Fatalf("Update: %v", err)
		}
		_, err := s.VRead(ctx, m.Type, m.ID, m.Version)
		if err == nil {
			t.Errorf("VRead(%s) of a ciphertext moved from Patient/p1/_history/1 = nil error", r.Leaf.Ref)
		}
	}
	if _, err := s.VRead(ctx, "Patient", "p1", 1); err != nil {
		t.Errorf("VRead of the original row: %v", err)
	}
}

// TestSealedSwappedDeid: a version's body and its de-identified copy are
// sealed with different additional data, so neither opens as the other.
func TestSealedSwappedDeid(t *testing.T) {
	s, store := newSealed(t)
	ctx := t.Context()
	sealedPut(t, s, version("Patient", "p1", 1, "Patient/p1"))
	r, err := store.Current(ctx, "Patient", "p1")
	if err != nil {
		t.Fatalf("Current: %v", err)
	}
	if len(r.Deid) == 0 {
		t.Fatal("the stored record has no de-identified copy")
	}
	r.Version = 2
	r.Ciphertext, r.Deid = r.Deid, r.Ciphertext
	r.Leaf = vault.Leaf{Ref: "Patient/p1/_history/2"}
	if err := store.Update(ctx, func(tx vault.Tx) error { return tx.Put(ctx, r) }); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if _, err := s.VRead(ctx, "Patient", "p1", 2); err == nil {
		t.Error("VRead of a row whose body and de-identified copy were swapped = nil error")
	}
	if _, err := s.OpenCopy(ctx, r); err == nil {
		t.Error("OpenCopy of a row whose body and de-identified copy were swapped = nil error")
	}
	// No copy at all reads back as nil.
	v := version("Patient", "p2", 1, "Patient/p2")
	v.Deid = nil
	sealedPut(t, s, v)
	r2, err := store.Current(ctx, "Patient", "p2")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.OpenCopy(ctx, r2); err != nil || got != nil {
		t.Errorf("OpenCopy of a version without a copy = %d bytes, %v; want none", len(got), err)
	}
}

func TestSealedNoPlaintextOnDisk(t *testing.T) {
	dir := t.TempDir()
	store := openStore(t, dir)
	s := vault.NewSealed(store, newKeyring(t, 1))
	ctx := t.Context()
	for i := range 20 {
		sealedPut(t, s, version("Patient", fmt.Sprint("p", i), 1, fmt.Sprint("Patient/p", i)))
	}
	// A control: a record stored unsealed must be found by the same scan.
	const control = "CONTROL-unsealed-4242"
	err := store.Update(ctx, func(tx vault.Tx) error {
		return tx.Put(ctx, vault.Record{Type: "Basic", ID: "c", Version: 1, KeyID: "shared", Ciphertext: []byte(control)})
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}

	scan := func(when string) {
		var all []byte
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, b...)
		}
		if !bytes.Contains(all, []byte(control)) {
			t.Fatalf("%s: the control string is not in the database files; the scan proves nothing", when)
		}
		if bytes.Contains(all, []byte(marker)) {
			t.Errorf("%s: the database files contain a resource body in clear", when)
		}
	}
	scan("open") // the data sits in the WAL
	if err := store.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	scan("closed") // checkpointed into the main file
}

func TestSealedDataKeyPerCompartment(t *testing.T) {
	s, store := newSealed(t)
	ctx := t.Context()
	sealedPut(t, s,
		version("Patient", "1", 1, "Patient/1"),
		version("Observation", "a", 1, "Patient/1"),
		version("Patient", "2", 1, "Patient/2"),
		version("Organization", "org", 1, ""),
	)
	sealedPut(t, s,
		version("Encounter", "b", 1, "Patient/1"),
		version("Observation", "c", 1, "Patient/2"),
		version("Practitioner", "pr", 1, ""),
		version("Patient", "1", 2, "Patient/1"),
	)
	st, err := store.Stats(ctx)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if st.DataKeys != 3 {
		t.Errorf("Stats.DataKeys = %d, want 3 (patient:1, patient:2, shared)", st.DataKeys)
	}
	wantKey := map[string]string{
		"Patient/1": "patient:1", "Observation/a": "patient:1", "Encounter/b": "patient:1",
		"Patient/2": "patient:2", "Observation/c": "patient:2",
		"Organization/org": "shared", "Practitioner/pr": "shared",
	}
	for ref, keyID := range wantKey {
		typ, id, _ := strings.Cut(ref, "/")
		r, err := store.Current(ctx, typ, id)
		if err != nil {
			t.Fatalf("Current(%s): %v", ref, err)
		}
		if r.KeyID != keyID {
			t.Errorf("%s sealed under %q, want %q", ref, r.KeyID, keyID)
		}
	}
	wrapped := make(map[string]bool)
	for _, id := range []string{"patient:1", "patient:2", "shared"} {
		w, err := store.DataKey(ctx, id)
		if err != nil {
			t.Fatalf("DataKey(%s): %v", id, err)
		}
		wrapped[string(w)] = true
	}
	if len(wrapped) != 3 {
		t.Errorf("data keys are not distinct")
	}
}

// TestSealedRollbackNoPhantomKey checks that a data key created by an Update
// that rolled back is not reused as if it had been stored.
func TestSealedRollbackNoPhantomKey(t *testing.T) {
	s, store := newSealed(t)
	ctx := t.Context()
	v := version("Patient", "p9", 1, "Patient/p9")
	err := s.Update(ctx, func(tx *vault.SealedTx) error {
		if err := tx.Put(ctx, v); err != nil {
			return err
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("Update: err = %v, want errBoom", err)
	}
	if _, err := store.DataKey(ctx, "patient:p9"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("DataKey after rollback: err = %v, want ErrNotFound", err)
	}

	sealedPut(t, s, v)
	if _, err := store.DataKey(ctx, "patient:p9"); err != nil {
		t.Fatalf("DataKey after a committed Put: %v", err)
	}
	// A fresh Sealed has no cache: it must open the version with the key
	// the store holds.
	got, err := vault.NewSealed(store, newKeyring(t, 1)).Read(ctx, "Patient", "p9")
	if err != nil {
		t.Fatalf("Read with a fresh Sealed: %v", err)
	}
	if !bytes.Equal(got.Body, v.Body) {
		t.Errorf("Read with a fresh Sealed: wrong body")
	}
}

// TestSealedConcurrent runs sealed writes and reads from several goroutines,
// for the race detector and the key cache.
func TestSealedConcurrent(t *testing.T) {
	s, store := newSealed(t)
	ctx := t.Context()
	const workers, n = 4, 25
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range n {
				v := version("Observation", fmt.Sprintf("w%d-%d", w, i), 1, fmt.Sprintf("Patient/%d", i%5))
				if err := s.Update(ctx, func(tx *vault.SealedTx) error { return tx.Put(ctx, v) }); err != nil {
					t.Errorf("Update: %v", err)
					return
				}
				got, err := s.Read(ctx, v.Type, v.ID)
				if err != nil {
					t.Errorf("Read: %v", err)
					return
				}
				if !bytes.Equal(got.Body, v.Body) {
					t.Errorf("Read: wrong body")
				}
			}
		})
	}
	wg.Wait()
	if st, err := store.Stats(ctx); err != nil || st.DataKeys != 5 || st.Versions != workers*n {
		t.Errorf("Stats = %+v, %v; want 5 data keys, %d versions", st, err, workers*n)
	}
}

// BenchmarkSealedPut is BenchmarkPut through Sealed: 500 versions of 2 KiB
// per Update, spread over 50 patient compartments, sealed with AES-GCM.
func BenchmarkSealedPut(b *testing.B) {
	const batch = 500
	s := openStore(b, b.TempDir())
	defer s.Close()
	master := bytes.Repeat([]byte{7}, vault.MasterKeySize)
	kr, err := vault.NewKeyring(master)
	if err != nil {
		b.Fatal(err)
	}
	sealed := vault.NewSealed(s, kr)
	ctx := b.Context()
	body := bytes.Repeat([]byte("x"), 2048)
	salt := bytes.Repeat([]byte{1}, 32)
	n := 0
	for b.Loop() {
		err := sealed.Update(ctx, func(tx *vault.SealedTx) error {
			for range batch {
				n++
				id := fmt.Sprint("obs-", n)
				v := vault.Version{
					Type: "Observation", ID: id, Version: 1, LastUpdated: time.Now(),
					Compartment: fmt.Sprint("Patient/", n%50), Body: body, Salt: salt, Commitment: salt,
					Tokens: [][]byte{sealed.Token("identifier", id)},
					Leaf:   vault.Leaf{Type: 1, Data: salt, Ref: "Observation/" + id + "/_history/1"},
				}
				if err := tx.Put(ctx, v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatalf("Update: %v", err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "versions/s")
}

// TestSealedErase crypto-shreds one patient: their versions no longer open
// (ErrErased), none of their ciphertext, salt or wrapped key bytes remain
// anywhere in the database files, and another patient is untouched.
func TestSealedErase(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	defer st.Close()
	s := vault.NewSealed(st, newKeyring(t, 1))
	vs := []vault.Version{version("Patient", "a", 1, "Patient/a"), version("Observation", "o", 1, "Patient/a"),
		version("Patient", "b", 1, "Patient/b")}
	for i := range vs {
		vs[i].Salt = bytes.Repeat([]byte{byte(0xa0 + i)}, 32) // distinct, so a hit means this version's salt
	}
	sealedPut(t, s, vs...)
	var secrets [][]byte // what erasure must destroy, as stored
	for _, ref := range [][2]string{{"Patient", "a"}, {"Observation", "o"}} {
		r, err := st.Version(t.Context(), ref[0], ref[1], 1)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, r.Ciphertext, r.Salt)
	}
	wrapped, err := st.DataKey(t.Context(), "patient:a")
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, wrapped)

	var n int64
	err = s.Update(t.Context(), func(tx *vault.SealedTx) error {
		n, err = tx.Erase(t.Context(), "Patient/a")
		return err
	})
	if err != nil || n != 2 {
		t.Fatalf("Erase = %d, %v; want 2", n, err)
	}
	if _, err := s.VRead(t.Context(), "Observation", "o", 1); !errors.Is(err, vault.ErrErased) {
		t.Errorf("erased version read: %v", err)
	}
	if v, err := s.Read(t.Context(), "Patient", "b"); err != nil || !bytes.Contains(v.Body, []byte(marker)) {
		t.Errorf("the other patient: %v", err)
	}
	// A new version for the erased compartment gets a new key.
	sealedPut(t, s, version("Patient", "a", 2, "Patient/a"))
	if _, err := s.Read(t.Context(), "Patient", "a"); err != nil {
		t.Errorf("write after erasure: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "vault.db*"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, secret := range secrets {
			if len(secret) >= 16 && bytes.Contains(data, secret) {
				t.Errorf("%s still holds erased secret %d", filepath.Base(f), i)
			}
		}
	}
}

// TestSealedSharedStoreErasure: two Sealed vaults over one Store, as two
// gateway processes on one database, each with its own key cache. After one
// erases a patient, the other must neither seal new versions under the
// shredded key it still caches, nor fail to read versions sealed under the
// new key made under the same id.
func TestSealedSharedStoreErasure(t *testing.T) {
	ctx := t.Context()
	a, store := newSealed(t)
	b := vault.NewSealed(store, newKeyring(t, 1))
	erase := func() {
		t.Helper()
		if err := a.Update(ctx, func(tx *vault.SealedTx) error { _, err := tx.Erase(ctx, "Patient/p1"); return err }); err != nil {
			t.Fatalf("Erase: %v", err)
		}
	}
	read := func(s *vault.Sealed, who string, v int64) {
		t.Helper()
		got, err := s.VRead(ctx, "Patient", "p1", v)
		if err != nil || got.Version != v {
			t.Fatalf("%s: VRead(p1, %d) = %v, %v", who, v, got.Version, err)
		}
	}

	sealedPut(t, a, version("Patient", "p1", 1, "Patient/p1"))
	read(b, "b", 1) // b caches the first key
	erase()
	// b writes after the erasure: a new key, which a (and a restart) can read.
	sealedPut(t, b, version("Patient", "p1", 2, "Patient/p1"))
	read(a, "a", 2)
	read(vault.NewSealed(store, newKeyring(t, 1)), "a fresh process", 2)

	read(b, "b", 2) // b caches the second key
	erase()
	sealedPut(t, a, version("Patient", "p1", 3, "Patient/p1")) // a third key, made by a
	read(b, "b", 3)                                            // b's cached second key is stale
	sealedPut(t, b, version("Patient", "p1", 4, "Patient/p1"))
	read(a, "a", 4)
}

// TestSealedPacksBodies: a FHIR body and its copy are stored deflated (in
// well under their plain size, with the AEAD's 28 bytes) and open to
// exactly the bytes put; TestSealedGolden opens a body sealed before
// packing.
func TestSealedPacksBodies(t *testing.T) {
	s, store := newSealed(t)
	obs := `{"category":[{"coding":[{"code":"vital-signs","display":"vital-signs","system":"http://terminology.hl7.org/CodeSystem/observation-category"}]}],` +
		`"code":{"coding":[{"code":"8302-2","display":"Body Height","system":"http://loinc.org"}],"text":"Body Height"},` +
		`"effectiveDateTime":"2000-12-24T03:11:33+00:00","encounter":{"reference":"Encounter/6c8d6fb2-f037-4dc7-a8f1-0c74b3601cad"},` +
		`"id":"o1","issued":"2000-12-24T03:11:33.548+00:00","meta":{"tag":[{"code":"synthea-5-2019","system":"https://smarthealthit.org/tags"}]},` +
		`"resourceType":"Observation","status":"final","subject":{"reference":"Patient/829bb06a-42b9-433d-a8f6-560727c63da9"},` +
		`"valueQuantity":{"code":"cm","system":"http://unitsofmeasure.org","unit":"cm","value":189.34136216482673}}`
	v := version("Observation", "o1", 1, "Patient/p1")
	v.Body = []byte(obs)
	v.Deid = []byte(strings.ReplaceAll(obs, "o1", "pseudonym"))
	sealedPut(t, s, v)
	rec, err := store.Current(t.Context(), "Observation", "o1")
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Ciphertext) > len(v.Body)*7/10 || len(rec.Deid) > len(v.Deid)*7/10 {
		t.Errorf("stored %d and %d bytes for a %d-byte body and a %d-byte copy: not packed", len(rec.Ciphertext), len(rec.Deid), len(v.Body), len(v.Deid))
	}
	got, err := s.Read(t.Context(), "Observation", "o1")
	if err != nil || string(got.Body) != obs {
		t.Errorf("Read = %q, %v; want the body put", got.Body, err)
	}
	cp, err := s.OpenCopy(t.Context(), rec)
	if err != nil || !bytes.Equal(cp, v.Deid) {
		t.Errorf("OpenCopy = %q, %v; want the copy put", cp, err)
	}
}

// TestSealedPacksResponses: a remembered transaction-response (one entry
// shape repeated per resource) is deflated before it is sealed, and opens
// to exactly the bytes put.
func TestSealedPacksResponses(t *testing.T) {
	s, store := newSealed(t)
	var b strings.Builder
	b.WriteString(`{"resourceType":"Bundle","type":"transaction-response","entry":[`)
	for i := range 200 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"response":{"status":"201 Created","location":"Observation/%08x-4dc7-a8f1-0c74b3601cad/_history/1","etag":"W/\"1\"","lastModified":"2026-12-06T14:05:05.372216Z"}}`, i*7919)
	}
	b.WriteString(`]}`)
	body := []byte(b.String())
	key := []byte("idempotency-key-1")
	err := s.Update(t.Context(), func(tx *vault.SealedTx) error { return tx.PutResponse(t.Context(), key, body) })
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	stored, err := store.Response(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) > len(body)/4 {
		t.Errorf("stored %d bytes for a %d-byte response: not packed", len(stored), len(body))
	}
	got, err := s.Response(t.Context(), key)
	if err != nil || !bytes.Equal(got, body) {
		t.Errorf("Response = %d bytes, %v; want the %d bytes put", len(got), err, len(body))
	}
}

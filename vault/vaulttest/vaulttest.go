// Package vaulttest checks that a vault.Store keeps its contract, as
// testing/fstest does for file systems. Every backend runs the same suite
// from its own tests:
//
//	func TestStore(t *testing.T) {
//		vaulttest.Exercise(t, func(t *testing.T) vault.Store {
//			s, err := sqlite.New(t.Context(), sqlite.Config{Path: filepath.Join(t.TempDir(), "vault.db")})
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
package vaulttest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/fhiranchor/fhiranchor/vault"
)

// Exercise runs the conformance suite against the stores newStore returns.
// Each subtest calls newStore once and needs a fresh, empty store; Exercise
// closes it when the subtest ends.
func Exercise(t *testing.T, newStore func(t *testing.T) vault.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s vault.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"LastUpdated", testLastUpdated},
		{"NotFound", testNotFound},
		{"Conflict", testConflict},
		{"Rollback", testRollback},
		{"Panic", testPanic},
		{"Find", testFind},
		{"DataKeys", testDataKeys},
		{"Responses", testResponses},
		{"Leaves", testLeaves},
		{"Isolation", testIsolation},
		{"Concurrent", testConcurrent},
		{"Context", testContext},
		{"Versions", testVersions},
		{"AddLeaf", testAddLeaf},
		{"Erase", testErase},
		{"LeafRecords", testLeafRecords},
		{"FindLeaves", testFindLeaves},
		{"Policies", testPolicies},
		{"StoreFind", testStoreFind},
		{"AuditListings", testAuditListings},
		{"FindAny", testFindAny},
		{"FindAll", testFindAll},
		{"Currents", testCurrents},
		{"Changes", testChanges},
		{"Sealed", testSealed},
		{"SetTokens", testSetTokens},
		{"IDs", testIDs},
		{"DropTokens", testDropTokens},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tt.fn(t, s)
		})
	}
}

// errBoom is the error test functions return to make an Update roll back.
var errBoom = errors.New("vaulttest: boom")

// base is the LastUpdated of version 0 of every test record.
var base = time.Date(2025, 3, 14, 15, 9, 26, 535897000, time.UTC)

// record returns a distinct, deterministic record for a version of typ/id.
func record(typ, id string, version int64) vault.Record {
	name := fmt.Sprintf("%s/%s/_history/%d", typ, id, version)
	salt := sha256.Sum256([]byte("salt " + name))
	commitment := sha256.Sum256([]byte("commitment " + name))
	return vault.Record{
		Type:        typ,
		ID:          id,
		Version:     version,
		LastUpdated: base.Add(time.Duration(version) * time.Second),
		KeyID:       "key-" + id,
		Ciphertext:  []byte("ciphertext " + name),
		Salt:        salt[:],
		Commitment:  commitment[:],
		Deid:        []byte("sealed de-identified copy " + name),
		Client:      "client-" + id,
		Leaf:        vault.Leaf{Type: 1, Data: []byte("leaf " + name), Ref: name},
	}
}

// tombstone returns the deletion tombstone of typ/id at version.
func tombstone(typ, id string, version int64) vault.Record {
	r := record(typ, id, version)
	r.Deleted = true
	r.Ciphertext = []byte("sealed tombstone " + r.Leaf.Ref)
	return r
}

// withTokens returns r carrying tokens.
func withTokens(r vault.Record, tokens ...string) vault.Record {
	r.Tokens = nil
	for _, tok := range tokens {
		r.Tokens = append(r.Tokens, []byte(tok))
	}
	return r
}

// recordOpts compares records as a Store returns them: without tokens, with
// a Seq the Store assigned, and nil and empty slices alike.
var recordOpts = cmp.Options{
	cmpopts.EquateEmpty(),
	cmpopts.IgnoreFields(vault.Record{}, "Tokens"),
	cmpopts.IgnoreFields(vault.Leaf{}, "Seq"),
}

// put stores each record in its own Update.
func put(t *testing.T, s vault.Store, rs ...vault.Record) {
	t.Helper()
	for _, r := range rs {
		if err := s.Update(t.Context(), func(tx vault.Tx) error { return tx.Put(t.Context(), r) }); err != nil {
			t.Fatalf("Update(Put %s): %v", r.Leaf.Ref, err)
		}
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: err = %v, want %v", what, err, want)
	}
}

func wantStats(t *testing.T, s vault.Store, want vault.Stats) {
	t.Helper()
	got, err := s.Stats(t.Context())
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

func wantCurrent(t *testing.T, s vault.Store, want vault.Record) {
	t.Helper()
	got, err := s.Current(t.Context(), want.Type, want.ID)
	if err != nil {
		t.Fatalf("Current(%s, %s): %v", want.Type, want.ID, err)
	}
	if diff := cmp.Diff(want, got, recordOpts); diff != "" {
		t.Errorf("Current(%s, %s) mismatch (-want +got):\n%s", want.Type, want.ID, diff)
	}
}

// find runs Tx.Find in its own Update and returns the ids sorted.
func find(t *testing.T, s vault.Store, typ, token string) []string {
	t.Helper()
	var ids []string
	err := s.Update(t.Context(), func(tx vault.Tx) error {
		var err error
		ids, err = tx.Find(t.Context(), typ, []byte(token))
		return err
	})
	if err != nil {
		t.Fatalf("Find(%s, %q): %v", typ, token, err)
	}
	slices.Sort(ids)
	return ids
}

func wantFind(t *testing.T, s vault.Store, typ, token string, want ...string) {
	t.Helper()
	got := find(t, s, typ, token)
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Find(%s, %q) mismatch (-want +got):\n%s", typ, token, diff)
	}
}

func testRoundTrip(t *testing.T, s vault.Store) {
	ctx := t.Context()
	v1 := withTokens(record("Patient", "p1", 1), "t1")
	v2 := withTokens(record("Patient", "p1", 2), "t2")
	v3 := tombstone("Patient", "p1", 3)
	other := record("Observation", "p1", 1) // same id, another type
	put(t, s, v1, other, v2, v3)

	wantCurrent(t, s, v3)
	wantCurrent(t, s, other)
	var seqs []int64
	for _, want := range []vault.Record{v1, v2, v3} {
		got, err := s.Version(ctx, want.Type, want.ID, want.Version)
		if err != nil {
			t.Fatalf("Version(%d): %v", want.Version, err)
		}
		if diff := cmp.Diff(want, got, recordOpts); diff != "" {
			t.Errorf("Version(%d) mismatch (-want +got):\n%s", want.Version, diff)
		}
		seqs = append(seqs, got.Leaf.Seq)
	}
	if seqs[0] < 1 || seqs[0] >= seqs[1] || seqs[1] >= seqs[2] {
		t.Errorf("Leaf.Seq of versions 1..3 = %v, want increasing from >= 1", seqs)
	}

	hist, err := s.History(ctx, "Patient", "p1")
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	if diff := cmp.Diff([]vault.Record{v3, v2, v1}, hist, recordOpts); diff != "" {
		t.Errorf("History mismatch (-want +got):\n%s", diff)
	}
	for i, r := range hist {
		if want := seqs[2-i]; r.Leaf.Seq != want {
			t.Errorf("History[%d].Leaf.Seq = %d, want %d as from Version", i, r.Leaf.Seq, want)
		}
	}
	wantStats(t, s, vault.Stats{Versions: 4, Leaves: 4})

	// A transaction reads its own writes.
	v4 := record("Patient", "p1", 4)
	err = s.Update(ctx, func(tx vault.Tx) error {
		if err := tx.Put(ctx, v4); err != nil {
			return err
		}
		got, err := tx.Current(ctx, "Patient", "p1")
		if err != nil {
			return err
		}
		if diff := cmp.Diff(v4, got, recordOpts); diff != "" {
			t.Errorf("Tx.Current after Tx.Put mismatch (-want +got):\n%s", diff)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	wantCurrent(t, s, v4)
}

func testLastUpdated(t *testing.T, s vault.Store) {
	ctx := t.Context()
	times := []time.Time{
		time.Date(2024, 2, 29, 13, 14, 15, 123456789, time.FixedZone("UTC+5:30", 5*3600+1800)),
		time.Date(1969, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(2038, 1, 19, 3, 14, 8, 1000, time.Local),
	}
	for i, lu := range times {
		r := record("Patient", fmt.Sprint("lu", i), 1)
		r.LastUpdated = lu
		put(t, s, r)
		want := lu.Truncate(time.Microsecond)
		cur, err := s.Current(ctx, r.Type, r.ID)
		if err != nil {
			t.Fatalf("Current: %v", err)
		}
		ver, err := s.Version(ctx, r.Type, r.ID, 1)
		if err != nil {
			t.Fatalf("Version: %v", err)
		}
		hist, err := s.History(ctx, r.Type, r.ID)
		if err != nil {
			t.Fatalf("History: %v", err)
		}
		for _, got := range []time.Time{cur.LastUpdated, ver.LastUpdated, hist[0].LastUpdated} {
			if !got.Equal(want) || got.Location() != time.UTC {
				t.Errorf("LastUpdated of %v = %v (%v), want %v in UTC", lu, got, got.Location(), want.UTC())
			}
		}
	}
}

func testNotFound(t *testing.T, s vault.Store) {
	ctx := t.Context()
	check := func(when string) {
		t.Helper()
		_, err := s.Current(ctx, "Patient", "nope")
		wantErr(t, when+" Current", err, vault.ErrNotFound)
		_, err = s.Version(ctx, "Patient", "nope", 1)
		wantErr(t, when+" Version", err, vault.ErrNotFound)
		_, err = s.History(ctx, "Patient", "nope")
		wantErr(t, when+" History", err, vault.ErrNotFound)
		_, err = s.DataKey(ctx, "nope")
		wantErr(t, when+" DataKey", err, vault.ErrNotFound)
		_, err = s.Leaf(ctx, 1000)
		wantErr(t, when+" Leaf", err, vault.ErrNotFound)
		_, err = s.Policy(ctx, 1)
		wantErr(t, when+" Policy", err, vault.ErrNotFound)
		if ids, err := s.Find(ctx, "Patient", []byte("nope")); err != nil || len(ids) != 0 {
			t.Errorf("%s Find = %v, %v; want none, nil", when, ids, err)
		}
		if ls, err := s.FindLeaves(ctx, vault.LeafFilter{}); err != nil || len(ls) != 0 {
			t.Errorf("%s FindLeaves = %v, %v; want none, nil", when, ls, err)
		}
		err = s.Update(ctx, func(tx vault.Tx) error {
			_, err := tx.Current(ctx, "Patient", "nope")
			wantErr(t, when+" Tx.Current", err, vault.ErrNotFound)
			_, err = tx.DataKey(ctx, "nope")
			wantErr(t, when+" Tx.DataKey", err, vault.ErrNotFound)
			_, err = tx.Response(ctx, []byte("nope"))
			wantErr(t, when+" Tx.Response", err, vault.ErrNotFound)
			ids, err := tx.Find(ctx, "Patient", []byte("nope"))
			if err != nil || len(ids) != 0 {
				t.Errorf("%s Tx.Find = %v, %v; want none, nil", when, ids, err)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("Update: %v", err)
		}
	}

	check("empty store:")
	leaves, err := s.Leaves(ctx, 0, 10)
	if err != nil || len(leaves) != 0 {
		t.Errorf("empty store: Leaves(0, 10) = %v, %v; want none, nil", leaves, err)
	}
	wantStats(t, s, vault.Stats{})

	r := withTokens(record("Patient", "p1", 1), "tok")
	put(t, s, r)
	if err := s.Update(ctx, func(tx vault.Tx) error { return tx.PutDataKey(ctx, "k", []byte("w")) }); err != nil {
		t.Fatalf("Update(PutDataKey): %v", err)
	}
	check("after writes:")
	for _, v := range []int64{0, 2} {
		_, err := s.Version(ctx, "Patient", "p1", v)
		wantErr(t, fmt.Sprintf("Version(p1, %d)", v), err, vault.ErrNotFound)
	}
	_, err = s.Current(ctx, "Observation", "p1")
	wantErr(t, "Current(Observation, p1)", err, vault.ErrNotFound)
	_, err = s.History(ctx, "Observation", "p1")
	wantErr(t, "History(Observation, p1)", err, vault.ErrNotFound)
	_, err = s.Version(ctx, "Observation", "p1", 1)
	wantErr(t, "Version(Observation, p1, 1)", err, vault.ErrNotFound)
}

func testConflict(t *testing.T, s vault.Store) {
	ctx := t.Context()
	v1 := withTokens(record("Patient", "p1", 1), "t1")
	put(t, s, v1)

	other := withTokens(record("Patient", "p1", 1), "t-other")
	other.Ciphertext = []byte("other ciphertext")
	err := s.Update(ctx, func(tx vault.Tx) error { return tx.Put(ctx, other) })
	wantErr(t, "Put of a stored version", err, vault.ErrConflict)

	// Also within one transaction; the whole Update then rolls back.
	v2 := record("Patient", "p1", 2)
	err = s.Update(ctx, func(tx vault.Tx) error {
		if err := tx.Put(ctx, v2); err != nil {
			return err
		}
		return tx.Put(ctx, v2)
	})
	wantErr(t, "second Put of a version in one Update", err, vault.ErrConflict)

	// An older version is still a conflict once a newer one is stored.
	put(t, s, v2)
	err = s.Update(ctx, func(tx vault.Tx) error { return tx.Put(ctx, other) })
	wantErr(t, "Put of a stored, older version", err, vault.ErrConflict)

	wantCurrent(t, s, v2)
	got, err := s.Version(ctx, "Patient", "p1", 1)
	if err != nil {
		t.Fatalf("Version(1): %v", err)
	}
	if diff := cmp.Diff(v1, got, recordOpts); diff != "" {
		t.Errorf("version 1 changed by a conflicting Put (-want +got):\n%s", diff)
	}
	wantFind(t, s, "Patient", "t-other")
	wantStats(t, s, vault.Stats{Versions: 2, Leaves: 2})
}

func testRollback(t *testing.T, s vault.Store) {
	ctx := t.Context()
	err := s.Update(ctx, func(tx vault.Tx) error {
		for _, r := range []vault.Record{withTokens(record("Patient", "p1", 1), "t1"), record("Patient", "p1", 2), record("Observation", "o1", 1)} {
			if err := tx.Put(ctx, r); err != nil {
				return err
			}
		}
		if err := tx.PutDataKey(ctx, "k1", []byte("wrapped")); err != nil {
			return err
		}
		if err := tx.PutResponse(ctx, []byte("idem"), []byte("response")); err != nil {
			return err
		}
		return fmt.Errorf("wrapped: %w", errBoom)
	})
	wantErr(t, "Update whose fn fails", err, errBoom)
	wantStats(t, s, vault.Stats{})
	_, err = s.Current(ctx, "Patient", "p1")
	wantErr(t, "Current after rollback", err, vault.ErrNotFound)
	_, err = s.DataKey(ctx, "k1")
	wantErr(t, "DataKey after rollback", err, vault.ErrNotFound)
	if leaves, err := s.Leaves(ctx, 0, 10); err != nil || len(leaves) != 0 {
		t.Errorf("Leaves after rollback = %v, %v; want none", leaves, err)
	}
	wantFind(t, s, "Patient", "t1")

	// A rolled-back new version leaves the current one and its tokens.
	v1 := withTokens(record("Patient", "p1", 1), "t1")
	put(t, s, v1)
	err = s.Update(ctx, func(tx vault.Tx) error {
		if err := tx.Put(ctx, withTokens(record("Patient", "p1", 2), "t2")); err != nil {
			return err
		}
		return errBoom
	})
	wantErr(t, "Update whose fn fails", err, errBoom)
	wantCurrent(t, s, v1)
	wantFind(t, s, "Patient", "t1", "p1")
	wantFind(t, s, "Patient", "t2")
	wantStats(t, s, vault.Stats{Versions: 1, Leaves: 1})

	leaves, err := s.Leaves(ctx, 0, 10)
	if err != nil {
		t.Fatalf("Leaves: %v", err)
	}
	if len(leaves) != 1 || leaves[0].Ref != v1.Leaf.Ref {
		t.Errorf("Leaves = %+v, want only the leaf of %s", leaves, v1.Leaf.Ref)
	}
}

func testPanic(t *testing.T, s vault.Store) {
	func() {
		defer func() {
			if recover() == nil {
				t.Errorf("Update swallowed the panic of fn")
			}
		}()
		s.Update(t.Context(), func(tx vault.Tx) error {
			if err := tx.Put(t.Context(), record("Patient", "p1", 1)); err != nil {
				t.Errorf("Put: %v", err)
			}
			panic("vaulttest: panic in fn")
		})
	}()
	// The store must still accept Updates (the transaction was released)
	// and must not have kept anything of the panicking one.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	r := record("Patient", "p2", 1)
	if err := s.Update(ctx, func(tx vault.Tx) error { return tx.Put(ctx, r) }); err != nil {
		t.Fatalf("Update after a panicking Update: %v", err)
	}
	_, err := s.Current(ctx, "Patient", "p1")
	wantErr(t, "Current of a version put before a panic", err, vault.ErrNotFound)
	wantStats(t, s, vault.Stats{Versions: 1, Leaves: 1})
}

func testFind(t *testing.T, s vault.Store) {
	ctx := t.Context()
	put(t, s,
		withTokens(record("Patient", "a", 1), "t1", "t2", "t1"), // a duplicate token is harmless
		withTokens(record("Patient", "b", 1), "t1"),
		withTokens(record("Observation", "a", 1), "t1"),
		record("Patient", "c", 1),
	)
	wantFind(t, s, "Patient", "t1", "a", "b")
	wantFind(t, s, "Patient", "t2", "a")
	wantFind(t, s, "Observation", "t1", "a")
	wantFind(t, s, "Encounter", "t1")
	wantFind(t, s, "Patient", "t3")

	// A new version replaces the tokens of the previous one.
	put(t, s, withTokens(record("Patient", "a", 2), "t3"))
	wantFind(t, s, "Patient", "t1", "b")
	wantFind(t, s, "Patient", "t2")
	wantFind(t, s, "Patient", "t3", "a")
	wantFind(t, s, "Observation", "t1", "a")

	// A tombstone clears them, even if it carries tokens.
	put(t, s, withTokens(tombstone("Patient", "b", 2), "t1"))
	wantFind(t, s, "Patient", "t1")

	// A version after a tombstone brings the resource back.
	put(t, s, withTokens(record("Patient", "b", 3), "t1"))
	wantFind(t, s, "Patient", "t1", "b")

	// A transaction finds its own writes and no longer finds replaced ones.
	err := s.Update(ctx, func(tx vault.Tx) error {
		if err := tx.Put(ctx, withTokens(record("Patient", "d", 1), "t4")); err != nil {
			return err
		}
		if err := tx.Put(ctx, withTokens(record("Patient", "a", 3), "t5")); err != nil {
			return err
		}
		for tok, want := range map[string][]string{"t4": {"d"}, "t3": nil, "t5": {"a"}} {
			got, err := tx.Find(ctx, "Patient", []byte(tok))
			if err != nil {
				return err
			}
			slices.Sort(got)
			if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Tx.Find(Patient, %q) after Tx.Put mismatch (-want +got):\n%s", tok, diff)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	wantFind(t, s, "Patient", "t4", "d")
}

func testDataKeys(t *testing.T, s vault.Store) {
	ctx := t.Context()
	w1 := []byte("wrapped key one")
	err := s.Update(ctx, func(tx vault.Tx) error {
		if err := tx.PutDataKey(ctx, "patient:1", w1); err != nil {
			return err
		}
		got, err := tx.DataKey(ctx, "patient:1")
		if err != nil {
			return err
		}
		if !slices.Equal(got, w1) {
			t.Errorf("Tx.DataKey after Tx.PutDataKey = %q, want %q", got, w1)
		}
		return tx.PutDataKey(ctx, "shared", []byte("wrapped shared key"))
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	got, err := s.DataKey(ctx, "patient:1")
	if err != nil || !slices.Equal(got, w1) {
		t.Errorf("DataKey = %q, %v; want %q", got, err, w1)
	}
	err = s.Update(ctx, func(tx vault.Tx) error { return tx.PutDataKey(ctx, "patient:1", []byte("another key")) })
	wantErr(t, "PutDataKey of an existing key id", err, vault.ErrConflict)
	err = s.Update(ctx, func(tx vault.Tx) error {
		got, err := tx.DataKey(ctx, "patient:1")
		if err != nil || !slices.Equal(got, w1) {
			t.Errorf("Tx.DataKey = %q, %v; want %q", got, err, w1)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	wantStats(t, s, vault.Stats{DataKeys: 2})
}

func testResponses(t *testing.T, s vault.Store) {
	ctx := t.Context()
	key := []byte{0, 1, 2, 0xff, 0}
	body := []byte(`{"resourceType":"Bundle","type":"transaction-response"}`)
	err := s.Update(ctx, func(tx vault.Tx) error {
		if _, err := tx.Response(ctx, key); !errors.Is(err, vault.ErrNotFound) {
			t.Errorf("Tx.Response before PutResponse: err = %v, want ErrNotFound", err)
		}
		if err := tx.PutResponse(ctx, key, body); err != nil {
			return err
		}
		got, err := tx.Response(ctx, key)
		if err != nil || !slices.Equal(got, body) {
			t.Errorf("Tx.Response after PutResponse = %q, %v; want %q", got, err, body)
		}
		// Committed state does not see it yet.
		if _, err := s.Response(ctx, key); !errors.Is(err, vault.ErrNotFound) {
			t.Errorf("Store.Response of an uncommitted response: err = %v, want ErrNotFound", err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if got, err := s.Response(ctx, key); err != nil || !slices.Equal(got, body) {
		t.Errorf("Store.Response after commit = %q, %v; want %q", got, err, body)
	}
	if _, err := s.Response(ctx, key[:4]); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Store.Response of a key prefix: err = %v, want ErrNotFound", err)
	}
	err = s.Update(ctx, func(tx vault.Tx) error {
		got, err := tx.Response(ctx, key)
		if err != nil || !slices.Equal(got, body) {
			t.Errorf("Tx.Response = %q, %v; want %q", got, err, body)
		}
		if _, err := tx.Response(ctx, key[:4]); !errors.Is(err, vault.ErrNotFound) {
			t.Errorf("Tx.Response of a key prefix: err = %v, want ErrNotFound", err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	err = s.Update(ctx, func(tx vault.Tx) error { return tx.PutResponse(ctx, key, []byte("second")) })
	wantErr(t, "PutResponse of a remembered key", err, vault.ErrConflict)
	wantStats(t, s, vault.Stats{Responses: 1})
}

func testLeaves(t *testing.T, s vault.Store) {
	ctx := t.Context()
	var want []vault.Leaf
	var recs []vault.Record
	for i := range 10 {
		r := record("Observation", fmt.Sprint("o", i%4), int64(i/4+1))
		r.Leaf.Type = uint8(i%3 + 1)
		recs = append(recs, r)
		l := r.Leaf
		l.Seq = int64(i + 1)
		want = append(want, l)
	}
	// Three Updates of several versions each.
	for _, batch := range [][]vault.Record{recs[:3], recs[3:4], recs[4:]} {
		err := s.Update(ctx, func(tx vault.Tx) error {
			for _, r := range batch {
				if err := tx.Put(ctx, r); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("Update: %v", err)
		}
	}

	tests := []struct {
		after int64
		limit int
		want  []vault.Leaf
	}{
		{0, 100, want},
		{0, 10, want},
		{0, 3, want[:3]},
		{3, 4, want[3:7]},
		{7, 100, want[7:]},
		{9, 1, want[9:]},
		{10, 5, nil},
		{1000, 5, nil},
		{0, 0, nil},
	}
	for _, tt := range tests {
		got, err := s.Leaves(ctx, tt.after, tt.limit)
		if err != nil {
			t.Fatalf("Leaves(%d, %d): %v", tt.after, tt.limit, err)
		}
		if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("Leaves(%d, %d) mismatch (-want +got):\n%s", tt.after, tt.limit, diff)
		}
	}
	for i, r := range recs {
		got, err := s.Version(ctx, r.Type, r.ID, r.Version)
		if err != nil {
			t.Fatalf("Version: %v", err)
		}
		if diff := cmp.Diff(want[i], got.Leaf); diff != "" {
			t.Errorf("Version(%s).Leaf mismatch (-want +got):\n%s", r.Leaf.Ref, diff)
		}
	}
	wantStats(t, s, vault.Stats{Versions: 10, Leaves: 10})
}

// testIsolation checks that reads outside an Update see only committed state
// and do not wait for the open Update.
func testIsolation(t *testing.T, s vault.Store) {
	ctx := t.Context()
	v1 := record("Patient", "p1", 1)
	put(t, s, v1)
	err := s.Update(ctx, func(tx vault.Tx) error {
		if err := tx.Put(ctx, record("Patient", "p1", 2)); err != nil {
			return err
		}
		if err := tx.Put(ctx, record("Patient", "p2", 1)); err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		got, err := s.Current(rctx, "Patient", "p1")
		if err != nil {
			t.Errorf("Current during an open Update: %v (reads must not wait for writers)", err)
		} else if got.Version != 1 {
			t.Errorf("Current during an open Update: version %d, want the committed 1", got.Version)
		}
		_, err = s.Current(rctx, "Patient", "p2")
		wantErr(t, "Current of a resource put by an open Update", err, vault.ErrNotFound)
		if st, err := s.Stats(rctx); err != nil || st.Versions != 1 {
			t.Errorf("Stats during an open Update = %+v, %v; want 1 version", st, err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	wantStats(t, s, vault.Stats{Versions: 3, Leaves: 3})
}

// testConcurrent runs Updates from several goroutines: some put distinct
// resources, all contend on one resource by reading its current version and
// putting the next. Every Put succeeds or fails with ErrConflict, and the
// contended history has neither gaps nor duplicates.
func testConcurrent(t *testing.T, s vault.Store) {
	const (
		workers  = 8
		distinct = 50 // Updates of distinct resources per worker
		rounds   = 10 // Updates of the contended resource per worker
	)
	ctx := t.Context()
	var won, lost atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range distinct {
				r := record("Observation", fmt.Sprintf("w%d-%d", w, i), 1)
				if err := s.Update(ctx, func(tx vault.Tx) error { return tx.Put(ctx, r) }); err != nil {
					t.Errorf("Put %s: %v", r.Leaf.Ref, err)
					return
				}
				if i%(distinct/rounds) != 0 {
					continue
				}
				err := s.Update(ctx, func(tx vault.Tx) error {
					var next int64 = 1
					cur, err := tx.Current(ctx, "Patient", "hot")
					switch {
					case err == nil:
						next = cur.Version + 1
					case !errors.Is(err, vault.ErrNotFound):
						return err
					}
					return tx.Put(ctx, record("Patient", "hot", next))
				})
				switch {
				case err == nil:
					won.Add(1)
				case errors.Is(err, vault.ErrConflict):
					lost.Add(1)
				default:
					t.Errorf("contended Put: %v", err)
					return
				}
			}
		})
	}
	// A reader checks, while the writers run, that it never sees a gap.
	stop := make(chan struct{})
	var rwg sync.WaitGroup
	rwg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			hist, err := s.History(ctx, "Patient", "hot")
			if errors.Is(err, vault.ErrNotFound) {
				continue
			}
			if err != nil {
				t.Errorf("History during writes: %v", err)
				return
			}
			for i, r := range hist {
				if want := int64(len(hist) - i); r.Version != want {
					t.Errorf("History during writes: versions %v, want %d..1", versions(hist), len(hist))
					return
				}
			}
		}
	})
	wg.Wait()
	close(stop)
	rwg.Wait()
	if t.Failed() {
		return
	}

	hist, err := s.History(ctx, "Patient", "hot")
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	n := won.Load()
	if got := versions(hist); int64(len(got)) != n || (n > 0 && (got[0] != n || got[len(got)-1] != 1)) {
		t.Errorf("history of the contended resource = %v, want %d..1 (%d Puts won, %d lost)", got, n, n, lost.Load())
	}
	for i := 1; i < len(hist); i++ {
		if hist[i].Version != hist[i-1].Version-1 {
			t.Errorf("history of the contended resource has a gap or duplicate: %v", versions(hist))
			break
		}
	}
	total := int64(workers*distinct) + n
	wantStats(t, s, vault.Stats{Versions: total, Leaves: total})

	leaves, err := s.Leaves(ctx, 0, int(total)+10)
	if err != nil {
		t.Fatalf("Leaves: %v", err)
	}
	refs := make(map[string]bool)
	for i, l := range leaves {
		if i > 0 && l.Seq <= leaves[i-1].Seq {
			t.Fatalf("Leaves: Seq %d after %d, want strictly increasing", l.Seq, leaves[i-1].Seq)
		}
		if refs[l.Ref] {
			t.Fatalf("Leaves: %s queued twice", l.Ref)
		}
		refs[l.Ref] = true
	}
	if int64(len(leaves)) != total {
		t.Errorf("Leaves: %d leaves, want %d", len(leaves), total)
	}
}

func versions(rs []vault.Record) []int64 {
	var vs []int64
	for _, r := range rs {
		vs = append(vs, r.Version)
	}
	return vs
}

func testContext(t *testing.T, s vault.Store) {
	put(t, s, record("Patient", "p1", 1))

	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	err := s.Update(canceled, func(tx vault.Tx) error { return tx.Put(canceled, record("Patient", "p2", 1)) })
	if err == nil {
		t.Errorf("Update(canceled ctx) = nil, want an error")
	}
	if _, err := s.Current(canceled, "Patient", "p1"); err == nil {
		t.Errorf("Current(canceled ctx) = nil error")
	}
	if _, err := s.Version(canceled, "Patient", "p1", 1); err == nil {
		t.Errorf("Version(canceled ctx) = nil error")
	}
	if _, err := s.History(canceled, "Patient", "p1"); err == nil {
		t.Errorf("History(canceled ctx) = nil error")
	}
	if _, err := s.DataKey(canceled, "k"); err == nil || errors.Is(err, vault.ErrNotFound) {
		t.Errorf("DataKey(canceled ctx) = %v, want a context error", err)
	}
	if _, err := s.Leaves(canceled, 0, 10); err == nil {
		t.Errorf("Leaves(canceled ctx) = nil error")
	}
	if _, err := s.Stats(canceled); err == nil {
		t.Errorf("Stats(canceled ctx) = nil error")
	}
	if _, err := s.Find(canceled, "Patient", []byte("t")); err == nil {
		t.Errorf("Find(canceled ctx) = nil error")
	}
	if _, err := s.Leaf(canceled, 1); err == nil || errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Leaf(canceled ctx) = %v, want a context error", err)
	}
	if _, err := s.FindLeaves(canceled, vault.LeafFilter{}); err == nil {
		t.Errorf("FindLeaves(canceled ctx) = nil error")
	}
	if _, err := s.Policy(canceled, 1); err == nil || errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Policy(canceled ctx) = %v, want a context error", err)
	}
	if _, err := s.Policies(canceled); err == nil {
		t.Errorf("Policies(canceled ctx) = nil error")
	}

	// Canceled while fn runs: the Update fails and keeps nothing.
	ctx, cancel := context.WithCancel(t.Context())
	err = s.Update(ctx, func(tx vault.Tx) error {
		if err := tx.Put(ctx, record("Patient", "p3", 1)); err != nil {
			return err
		}
		cancel()
		return nil
	})
	if err == nil {
		t.Errorf("Update canceled during fn = nil, want an error")
	}
	_, err = s.Current(t.Context(), "Patient", "p3")
	wantErr(t, "Current of a version put by a canceled Update", err, vault.ErrNotFound)
	_, err = s.Current(t.Context(), "Patient", "p2")
	wantErr(t, "Current of a version put by a canceled Update", err, vault.ErrNotFound)

	// The store still works.
	put(t, s, record("Patient", "p4", 1))
	wantStats(t, s, vault.Stats{Versions: 2, Leaves: 2})
}

// testVersions: Store.Versions walks every version of every resource in leaf
// order, with paging.
func testVersions(t *testing.T, s vault.Store) {
	a1, b1, a2 := record("Patient", "a", 1), record("Observation", "b", 1), tombstone("Patient", "a", 2)
	put(t, s, a1, b1, a2)
	var got []vault.Record
	after := int64(0)
	for {
		page, err := s.Versions(t.Context(), after, 2)
		if err != nil {
			t.Fatalf("Versions: %v", err)
		}
		if len(page) == 0 {
			break
		}
		got = append(got, page...)
		after = page[len(page)-1].Leaf.Seq
	}
	if diff := cmp.Diff([]vault.Record{a1, b1, a2}, got, recordOpts); diff != "" {
		t.Errorf("Versions (-want +got):\n%s", diff)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Leaf.Seq <= got[i-1].Leaf.Seq {
			t.Errorf("Versions out of Seq order: %d then %d", got[i-1].Leaf.Seq, got[i].Leaf.Seq)
		}
	}
	if page, err := s.Versions(t.Context(), 0, 0); err != nil || len(page) != 0 {
		t.Errorf("Versions(limit 0) = %d, %v", len(page), err)
	}
}

// testAddLeaf: a leaf without a version takes the next Seq and is listed
// with the others; it rolls back with its transaction.
func testAddLeaf(t *testing.T, s vault.Store) {
	put(t, s, record("Patient", "a", 1))
	var seq int64
	err := s.Update(t.Context(), func(tx vault.Tx) error {
		var err error
		seq, err = tx.AddLeaf(t.Context(), vault.Leaf{Type: 5, Data: []byte("erasure"), Ref: "erasure/1"})
		return err
	})
	if err != nil || seq != 2 {
		t.Fatalf("AddLeaf = %d, %v; want Seq 2", seq, err)
	}
	_ = s.Update(t.Context(), func(tx vault.Tx) error {
		if _, err := tx.AddLeaf(t.Context(), vault.Leaf{Type: 5, Data: []byte("x")}); err != nil {
			return err
		}
		return errors.New("roll back")
	})
	ls, err := s.Leaves(t.Context(), 0, 10)
	if err != nil || len(ls) != 2 || ls[1].Type != 5 || string(ls[1].Data) != "erasure" || ls[1].Ref != "erasure/1" {
		t.Fatalf("Leaves = %+v, %v", ls, err)
	}
	wantStats(t, s, vault.Stats{Versions: 1, Leaves: 2})
}

// testErase: erasing a key empties the ciphertext and salt of every version
// it sealed, drops their tokens and the key, keeps commitments and leaves,
// and leaves other keys alone.
func testErase(t *testing.T, s vault.Store) {
	a1 := withTokens(record("Patient", "a", 1), "mrn-a")
	a2 := withTokens(record("Patient", "a", 2), "mrn-a")
	o1 := record("Observation", "o", 1)
	o1.KeyID = a1.KeyID // the patient's observation, under the patient's key
	b1 := withTokens(record("Patient", "b", 1), "mrn-b")
	put(t, s, a1, a2, o1, b1)
	err := s.Update(t.Context(), func(tx vault.Tx) error {
		for _, k := range []string{a1.KeyID, b1.KeyID} {
			if err := tx.PutDataKey(t.Context(), k, []byte("wrapped "+k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	err = s.Update(t.Context(), func(tx vault.Tx) error {
		n, err = tx.Erase(t.Context(), a1.KeyID)
		return err
	})
	if err != nil || n != 3 {
		t.Fatalf("Erase = %d, %v; want 3 versions", n, err)
	}
	for _, want := range []vault.Record{a1, a2, o1} {
		got, err := s.Version(t.Context(), want.Type, want.ID, want.Version)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Erased || len(got.Ciphertext) != 0 || len(got.Salt) != 0 || len(got.Deid) != 0 {
			t.Errorf("%s: erased %v, %d ciphertext, %d salt and %d de-identified bytes left", want.Leaf.Ref, got.Erased, len(got.Ciphertext), len(got.Salt), len(got.Deid))
		}
		if string(got.Commitment) != string(want.Commitment) || string(got.Leaf.Data) != string(want.Leaf.Data) {
			t.Errorf("%s: commitment or leaf changed by erasure", want.Leaf.Ref)
		}
	}
	if _, err := s.DataKey(t.Context(), a1.KeyID); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("erased key still readable: %v", err)
	}
	wantFind(t, s, "Patient", "mrn-a")
	wantFind(t, s, "Patient", "mrn-b", "b")
	if got, err := s.Version(t.Context(), "Patient", "b", 1); err != nil || got.Erased || string(got.Ciphertext) != string(b1.Ciphertext) {
		t.Errorf("another key's version was touched: %+v, %v", got, err)
	}
	err = s.Update(t.Context(), func(tx vault.Tx) error { _, err := tx.Erase(t.Context(), a1.KeyID); return err })
	wantErr(t, "Erase of an erased key", err, vault.ErrNotFound)
	wantStats(t, s, vault.Stats{Versions: 4, Leaves: 4, DataKeys: 1})
}

// recordLeaf returns a distinct leaf that carries a record: type typ, about
// subject, by actor, made at base plus n seconds and some nanoseconds.
func recordLeaf(n int, typ uint8, subject, actor string) vault.Leaf {
	name := fmt.Sprintf("record/%d", n)
	salt := sha256.Sum256([]byte("salt " + name))
	return vault.Leaf{
		Type:    typ,
		Data:    []byte("leaf " + name),
		Ref:     name,
		Record:  fmt.Appendf(nil, `{"n":%d,"subject":%q,"actor":%q}`, n, subject, actor),
		Salt:    salt[:],
		Subject: subject,
		Actor:   actor,
		Time:    base.Add(time.Duration(n)*time.Second + 789*time.Nanosecond),
	}
}

// addLeaves queues ls in one Update and returns them with the Seqs the
// Store assigned and their Times as a Store returns them.
func addLeaves(t *testing.T, s vault.Store, ls ...vault.Leaf) []vault.Leaf {
	t.Helper()
	out := make([]vault.Leaf, len(ls))
	err := s.Update(t.Context(), func(tx vault.Tx) error {
		for i, l := range ls {
			seq, err := tx.AddLeaf(t.Context(), l)
			if err != nil {
				return err
			}
			l.Seq = seq
			if !l.Time.IsZero() {
				l.Time = l.Time.Truncate(time.Microsecond).UTC()
			}
			out[i] = l
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Update(AddLeaf): %v", err)
	}
	return out
}

// leafOpts compares leaves with nil and empty slices alike; cmp compares
// Times with Equal, so wantLeaf checks their location separately.
var leafOpts = cmpopts.EquateEmpty()

func wantLeaf(t *testing.T, s vault.Store, want vault.Leaf) {
	t.Helper()
	got, err := s.Leaf(t.Context(), want.Seq)
	if err != nil {
		t.Fatalf("Leaf(%d): %v", want.Seq, err)
	}
	if diff := cmp.Diff(want, got, leafOpts); diff != "" {
		t.Errorf("Leaf(%d) mismatch (-want +got):\n%s", want.Seq, diff)
	}
	if !got.Time.IsZero() && got.Time.Location() != time.UTC {
		t.Errorf("Leaf(%d).Time in %v, want UTC", want.Seq, got.Time.Location())
	}
}

// testLeafRecords: a leaf's record round-trips through AddLeaf and Leaf,
// with its Time cut to microseconds in UTC; version leaves carry none; a
// record rolls back with its transaction and survives an erasure.
func testLeafRecords(t *testing.T, s vault.Store) {
	ctx := t.Context()
	v := record("Patient", "a", 1)
	put(t, s, v)

	odd := recordLeaf(1, 2, "Patient/a", "client-1")
	odd.Time = time.Date(2024, 2, 29, 13, 14, 15, 123456789, time.FixedZone("UTC+5:30", 5*3600+1800))
	plain := vault.Leaf{Type: 5, Data: []byte("erasure"), Ref: "erasure/Patient/a"}
	noTime := recordLeaf(2, 3, "", "")
	noTime.Time = time.Time{}
	ls := addLeaves(t, s, odd, plain, noTime)
	if ls[0].Seq != 2 || ls[1].Seq != 3 || ls[2].Seq != 4 {
		t.Errorf("AddLeaf Seqs = %d, %d, %d; want 2, 3, 4", ls[0].Seq, ls[1].Seq, ls[2].Seq)
	}
	if want := time.Date(2024, 2, 29, 7, 44, 15, 123456000, time.UTC); !ls[0].Time.Equal(want) {
		t.Fatalf("vaulttest: expected time %v, want %v", ls[0].Time, want)
	}
	for _, l := range ls {
		wantLeaf(t, s, l)
	}
	// A version's leaf carries no record.
	vl := v.Leaf
	vl.Seq = 1
	wantLeaf(t, s, vl)

	// The anchoring path still lists every leaf, in Seq order.
	got, err := s.Leaves(ctx, 0, 10)
	if err != nil {
		t.Fatalf("Leaves: %v", err)
	}
	all := append([]vault.Leaf{vl}, ls...)
	if len(got) != len(all) {
		t.Fatalf("Leaves = %d leaves, want %d", len(got), len(all))
	}
	for i, l := range got {
		want := all[i]
		if l.Seq != want.Seq || l.Type != want.Type || string(l.Data) != string(want.Data) || l.Ref != want.Ref {
			t.Errorf("Leaves[%d] = %+v, want the leaf of Seq %d", i, l, want.Seq)
		}
	}

	for _, seq := range []int64{0, -1, 5, 1000} {
		_, err := s.Leaf(ctx, seq)
		wantErr(t, fmt.Sprintf("Leaf(%d)", seq), err, vault.ErrNotFound)
	}

	// Record fields without a Record, or a record on a version's leaf, are
	// refused, and nothing of the Update is kept.
	bad := []vault.Leaf{
		{Type: 2, Subject: "Patient/a"},
		{Type: 2, Actor: "client-1"},
		{Type: 2, Salt: make([]byte, 32)},
		{Type: 2, Time: base},
	}
	for _, l := range bad {
		err := s.Update(ctx, func(tx vault.Tx) error { _, err := tx.AddLeaf(ctx, l); return err })
		if err == nil {
			t.Errorf("AddLeaf(%+v) without a Record = nil error", l)
		}
	}
	v2 := record("Patient", "a", 2)
	v2.Leaf.Record, v2.Leaf.Subject = []byte(`{}`), "Patient/a"
	if err := s.Update(ctx, func(tx vault.Tx) error { return tx.Put(ctx, v2) }); err == nil {
		t.Errorf("Put of a version whose leaf carries a record = nil error")
	}

	// A record rolls back with its transaction.
	err = s.Update(ctx, func(tx vault.Tx) error {
		if _, err := tx.AddLeaf(ctx, recordLeaf(3, 2, "Patient/a", "client-1")); err != nil {
			return err
		}
		return errBoom
	})
	wantErr(t, "Update whose fn fails", err, errBoom)
	_, err = s.Leaf(ctx, 5)
	wantErr(t, "Leaf of a rolled-back AddLeaf", err, vault.ErrNotFound)
	if got, err := s.FindLeaves(ctx, vault.LeafFilter{Subject: "Patient/a"}); err != nil || len(got) != 1 {
		t.Errorf("FindLeaves(Patient/a) after a rollback = %d leaves, %v; want 1", len(got), err)
	}
	wantStats(t, s, vault.Stats{Versions: 1, Leaves: 4})

	// Erasing the patient's key leaves the records about the patient.
	err = s.Update(ctx, func(tx vault.Tx) error {
		if err := tx.PutDataKey(ctx, v.KeyID, []byte("wrapped")); err != nil {
			return err
		}
		_, err := tx.Erase(ctx, v.KeyID)
		return err
	})
	if err != nil {
		t.Fatalf("Update(Erase): %v", err)
	}
	wantLeaf(t, s, ls[0])
	got, err = s.FindLeaves(ctx, vault.LeafFilter{Subject: "Patient/a"})
	if err != nil {
		t.Fatalf("FindLeaves: %v", err)
	}
	if diff := cmp.Diff(ls[:1], got, leafOpts); diff != "" {
		t.Errorf("FindLeaves(Patient/a) after Erase mismatch (-want +got):\n%s", diff)
	}

	// A record packed ahead (vault.PackLeaf, off the writer's critical
	// section) reads back byte for byte.
	ahead := recordLeaf(4, 3, "Patient/b", "client-2")
	vault.PackLeaf(&ahead)
	if len(ahead.Packed) == 0 {
		t.Fatal("PackLeaf packed nothing")
	}
	added := addLeaves(t, s, ahead)[0]
	added.Packed = nil // never returned
	wantLeaf(t, s, added)
}

// testFindLeaves: FindLeaves lists the leaves with a record, newest first,
// by type, subject and actor, and pages backwards with Before and Limit.
func testFindLeaves(t *testing.T, s vault.Store) {
	ctx := t.Context()
	subjects := []string{"Patient/a", "Patient/b", ""}
	actors := []string{"client-1", "client-2"}
	var in []vault.Leaf
	for i := range 24 {
		in = append(in, recordLeaf(i, uint8(i%3+2), subjects[i%3], actors[i%4/2]))
	}
	// Interleave version leaves and record-less leaves, which FindLeaves
	// never returns, and spread the records over several Updates.
	var all []vault.Leaf
	for i := 0; i < len(in); i += 5 {
		put(t, s, record("Patient", fmt.Sprint("p", i), 1))
		addLeaves(t, s, vault.Leaf{Type: uint8(i%3 + 2), Data: []byte("no record"), Ref: "plain"})
		all = append(all, addLeaves(t, s, in[i:min(i+5, len(in))]...)...)
	}
	slices.Reverse(all) // newest first

	match := func(f vault.LeafFilter) []vault.Leaf {
		var out []vault.Leaf
		for _, l := range all {
			if (f.Type == 0 || l.Type == f.Type) && (f.Subject == "" || l.Subject == f.Subject) &&
				(f.Actor == "" || l.Actor == f.Actor) && (f.Before == 0 || l.Seq < f.Before) {
				out = append(out, l)
			}
		}
		if f.Limit > 0 && len(out) > f.Limit {
			out = out[:f.Limit]
		}
		return out
	}
	var filters []vault.LeafFilter
	for _, typ := range []uint8{0, 2, 3, 9} {
		for _, subject := range []string{"", "Patient/a", "Patient/b", "Patient/none"} {
			for _, actor := range []string{"", "client-1", "client-2", "client-none"} {
				filters = append(filters, vault.LeafFilter{Type: typ, Subject: subject, Actor: actor})
			}
		}
	}
	mid := all[len(all)/2].Seq
	filters = append(filters,
		vault.LeafFilter{Limit: 3},
		vault.LeafFilter{Limit: -1},
		vault.LeafFilter{Limit: 1000},
		vault.LeafFilter{Before: mid},
		vault.LeafFilter{Before: mid, Limit: 2},
		vault.LeafFilter{Before: mid, Subject: "Patient/a", Limit: 2},
		vault.LeafFilter{Before: mid, Actor: "client-2", Type: 4},
		vault.LeafFilter{Before: 1},
		vault.LeafFilter{Before: -5}, // no bound, like 0
	)
	for _, f := range filters {
		got, err := s.FindLeaves(ctx, f)
		if err != nil {
			t.Fatalf("FindLeaves(%+v): %v", f, err)
		}
		want := match(f)
		if f.Before < 0 {
			want = match(vault.LeafFilter{})
		}
		if diff := cmp.Diff(want, got, leafOpts); diff != "" {
			t.Errorf("FindLeaves(%+v) mismatch (-want +got):\n%s", f, diff)
		}
	}
	if got, _ := s.FindLeaves(ctx, vault.LeafFilter{Subject: "Patient/a"}); len(got) != 8 {
		t.Errorf("FindLeaves(Patient/a) = %d leaves, want 8", len(got))
	}

	// Paging backwards with the last Seq seen visits every match once.
	for _, f := range []vault.LeafFilter{{Limit: 5}, {Subject: "Patient/b", Limit: 3}, {Actor: "client-1", Type: 2, Limit: 1}} {
		var got []vault.Leaf
		for page := 0; ; page++ {
			ls, err := s.FindLeaves(ctx, f)
			if err != nil {
				t.Fatalf("FindLeaves(%+v): %v", f, err)
			}
			if len(ls) > f.Limit {
				t.Fatalf("FindLeaves(%+v) = %d leaves, more than the limit", f, len(ls))
			}
			if len(ls) == 0 || page > len(all) {
				break
			}
			got = append(got, ls...)
			f.Before = ls[len(ls)-1].Seq
		}
		f.Before, f.Limit = 0, 0
		if diff := cmp.Diff(match(f), got, leafOpts); diff != "" {
			t.Errorf("paging FindLeaves(%+v) mismatch (-want +got):\n%s", f, diff)
		}
	}
}

// testPolicies: PutPolicy numbers versions 1, 2, 3... without gaps, refuses
// a revision already stored, and rolls back with its transaction; Policies
// lists them newest first without bundles.
func testPolicies(t *testing.T, s vault.Store) {
	ctx := t.Context()
	if ps, err := s.Policies(ctx); err != nil || len(ps) != 0 {
		t.Errorf("Policies of an empty store = %v, %v; want none", ps, err)
	}
	_, err := s.Policy(ctx, 1)
	wantErr(t, "Policy(1) of an empty store", err, vault.ErrNotFound)

	policy := func(n int) vault.Policy {
		rev := sha256.Sum256(fmt.Appendf(nil, "bundle %d", n))
		return vault.Policy{
			Version:  99, // ignored
			Revision: fmt.Sprintf("%x", rev),
			Bundle:   fmt.Appendf(nil, `{"files":{"policy.rego":"package fhiranchor # %d"}}`, n),
			Created:  time.Date(2025, 6, 1, 12, 0, n, 123456789, time.FixedZone("CET", 3600)),
			Author:   fmt.Sprint("admin-", n),
		}
	}
	stored := func(p vault.Policy, v int64) vault.Policy {
		p.Version = v
		p.Created = p.Created.Truncate(time.Microsecond).UTC()
		return p
	}
	putPolicy := func(p vault.Policy) (int64, error) {
		var v int64
		err := s.Update(ctx, func(tx vault.Tx) error {
			var err error
			v, err = tx.PutPolicy(ctx, p)
			return err
		})
		return v, err
	}

	var want []vault.Policy
	v, err := putPolicy(policy(1))
	if err != nil || v != 1 {
		t.Fatalf("PutPolicy = %d, %v; want version 1", v, err)
	}
	want = append(want, stored(policy(1), 1))

	// A failed Update uses up no version.
	err = s.Update(ctx, func(tx vault.Tx) error {
		if v, err := tx.PutPolicy(ctx, policy(2)); err != nil || v != 2 {
			t.Errorf("PutPolicy in a failing Update = %d, %v; want version 2", v, err)
		}
		return errBoom
	})
	wantErr(t, "Update whose fn fails", err, errBoom)
	_, err = s.Policy(ctx, 2)
	wantErr(t, "Policy of a rolled-back PutPolicy", err, vault.ErrNotFound)

	// A stored revision conflicts, and the transaction can go on.
	_, err = putPolicy(policy(1))
	wantErr(t, "PutPolicy of a stored revision", err, vault.ErrConflict)
	err = s.Update(ctx, func(tx vault.Tx) error {
		for i, p := range []vault.Policy{policy(2), policy(1), policy(2), policy(3)} {
			v, err := tx.PutPolicy(ctx, p)
			switch i {
			case 1, 2:
				if !errors.Is(err, vault.ErrConflict) {
					t.Errorf("PutPolicy of a stored revision: %d, %v; want ErrConflict", v, err)
				}
			default:
				if err != nil {
					return err
				}
				want = append(want, stored(p, v))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if _, err := putPolicy(vault.Policy{Bundle: []byte("x")}); err == nil || errors.Is(err, vault.ErrConflict) {
		t.Errorf("PutPolicy without a revision = %v, want an error other than ErrConflict", err)
	}

	for i, w := range want {
		if w.Version != int64(i+1) {
			t.Errorf("versions assigned = %v, want 1, 2, 3", want)
			break
		}
	}
	for _, w := range want {
		got, err := s.Policy(ctx, w.Version)
		if err != nil {
			t.Fatalf("Policy(%d): %v", w.Version, err)
		}
		if diff := cmp.Diff(w, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("Policy(%d) mismatch (-want +got):\n%s", w.Version, diff)
		}
		if got.Created.Location() != time.UTC {
			t.Errorf("Policy(%d).Created in %v, want UTC", w.Version, got.Created.Location())
		}
	}
	for _, v := range []int64{0, -1, 4} {
		_, err := s.Policy(ctx, v)
		wantErr(t, fmt.Sprintf("Policy(%d)", v), err, vault.ErrNotFound)
	}

	list, err := s.Policies(ctx)
	if err != nil {
		t.Fatalf("Policies: %v", err)
	}
	var wantList []vault.Policy
	for _, w := range slices.Backward(want) {
		w.Bundle = nil
		wantList = append(wantList, w)
	}
	if diff := cmp.Diff(wantList, list); diff != "" {
		t.Errorf("Policies mismatch (-want +got):\n%s", diff)
	}
	wantStats(t, s, vault.Stats{Policies: 3})
}

// testStoreFind: Store.Find answers as Tx.Find does once the Update has
// committed, and does not see an open one.
func testStoreFind(t *testing.T, s vault.Store) {
	ctx := t.Context()
	put(t, s,
		withTokens(record("Patient", "a", 1), "t1", "t2"),
		withTokens(record("Patient", "b", 1), "t1"),
		withTokens(record("Observation", "a", 1), "t1"),
		withTokens(record("Patient", "c", 1), "t3"),
		withTokens(record("Patient", "c", 2), "t4"),
		withTokens(tombstone("Patient", "b", 2), "t1"),
	)
	storeFind := func(typ, token string) []string {
		t.Helper()
		ids, err := s.Find(ctx, typ, []byte(token))
		if err != nil {
			t.Fatalf("Find(%s, %q): %v", typ, token, err)
		}
		slices.Sort(ids)
		return ids
	}
	cases := []struct{ typ, token string }{
		{"Patient", "t1"}, {"Patient", "t2"}, {"Patient", "t3"}, {"Patient", "t4"},
		{"Observation", "t1"}, {"Observation", "t2"}, {"Encounter", "t1"}, {"Patient", ""},
	}
	for _, c := range cases {
		if diff := cmp.Diff(find(t, s, c.typ, c.token), storeFind(c.typ, c.token), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("Find(%s, %q) differs from Tx.Find (-tx +store):\n%s", c.typ, c.token, diff)
		}
	}
	if diff := cmp.Diff([]string{"a"}, storeFind("Patient", "t1")); diff != "" {
		t.Errorf("Find(Patient, t1) mismatch (-want +got):\n%s", diff)
	}

	err := s.Update(ctx, func(tx vault.Tx) error {
		if err := tx.Put(ctx, withTokens(record("Patient", "d", 1), "t1")); err != nil {
			return err
		}
		if err := tx.Put(ctx, withTokens(record("Patient", "a", 2), "t5")); err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		ids, err := s.Find(rctx, "Patient", []byte("t1"))
		if err != nil {
			t.Errorf("Find during an open Update: %v (reads must not wait for writers)", err)
		} else if !slices.Equal(ids, []string{"a"}) {
			t.Errorf("Find during an open Update = %v, want the committed [a]", ids)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if diff := cmp.Diff([]string{"d"}, storeFind("Patient", "t1")); diff != "" {
		t.Errorf("Find(Patient, t1) after commit mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"a"}, storeFind("Patient", "t5")); diff != "" {
		t.Errorf("Find(Patient, t5) after commit mismatch (-want +got):\n%s", diff)
	}
}

// testAuditListings: Records, IndexEntries, Responses and DataKeys list
// every row, page by page, in their order; Records keeps the record row's
// own type and skips leaves without a record.
func testAuditListings(t *testing.T, s vault.Store) {
	ctx := t.Context()
	put(t, s, withTokens(record("Patient", "b", 1), "t2", "t1"), withTokens(record("Patient", "a", 1), "t3"),
		withTokens(record("Observation", "c", 1), "t1"))
	put(t, s, tombstone("Observation", "c", 2)) // drops its tokens
	recs := addLeaves(t, s, recordLeaf(1, 2, "Patient/a", "client"), vault.Leaf{Type: 5, Data: []byte("bare"), Ref: "bare"},
		recordLeaf(2, 4, "", "client"), recordLeaf(3, 3, "Patient/b", ""))
	var gotRecs []vault.Leaf
	for after := int64(0); ; {
		page, err := s.Records(ctx, after, 2)
		if err != nil {
			t.Fatalf("Records: %v", err)
		}
		if len(page) == 0 {
			break
		}
		gotRecs = append(gotRecs, page...)
		after = page[len(page)-1].Seq
	}
	var wantRecs []vault.Leaf
	for _, l := range []vault.Leaf{recs[0], recs[2], recs[3]} {
		l.Data, l.Ref = nil, ""
		wantRecs = append(wantRecs, l)
	}
	if diff := cmp.Diff(wantRecs, gotRecs, leafOpts); diff != "" {
		t.Errorf("Records (-want +got):\n%s", diff)
	}

	var gotIdx []vault.IndexEntry
	for after := (vault.IndexEntry{}); ; {
		page, err := s.IndexEntries(ctx, after, 2)
		if err != nil {
			t.Fatalf("IndexEntries: %v", err)
		}
		if len(page) == 0 {
			break
		}
		gotIdx = append(gotIdx, page...)
		after = page[len(page)-1]
	}
	// Seqs: b 1, a 2, c 3 (its tombstone 4 dropped its postings).
	wantIdx := []vault.IndexEntry{{Token: []byte("t1"), Seq: 1}, {Token: []byte("t2"), Seq: 1}, {Token: []byte("t3"), Seq: 2}}
	if diff := cmp.Diff(wantIdx, gotIdx); diff != "" {
		t.Errorf("IndexEntries (-want +got):\n%s", diff)
	}
	// WalkPostings passes the same postings, in an order of its own; a
	// token is the walk's only during the call.
	var walked []vault.IndexEntry
	walk := func(token []byte, seq int64) {
		walked = append(walked, vault.IndexEntry{Token: bytes.Clone(token), Seq: seq})
	}
	if err := s.WalkPostings(ctx, walk); err != nil {
		t.Fatalf("WalkPostings: %v", err)
	}
	slices.SortFunc(walked, func(a, b vault.IndexEntry) int {
		if c := bytes.Compare(a.Token, b.Token); c != 0 {
			return c
		}
		return int(a.Seq - b.Seq)
	})
	if diff := cmp.Diff(wantIdx, walked); diff != "" {
		t.Errorf("WalkPostings (-want +got):\n%s", diff)
	}
	var gotSets []vault.TokenSet
	for after := int64(0); ; {
		page, err := s.TokenSets(ctx, after, 1)
		if err != nil {
			t.Fatalf("TokenSets: %v", err)
		}
		if len(page) == 0 {
			break
		}
		gotSets = append(gotSets, page...)
		after = page[len(page)-1].Seq
	}
	// Seqs 1 (b), 2 (a); c's set went with its tombstone. Sets are sorted.
	wantSets := []vault.TokenSet{{Seq: 1, Tokens: [][]byte{[]byte("t1"), []byte("t2")}}, {Seq: 2, Tokens: [][]byte{[]byte("t3")}}}
	if diff := cmp.Diff(wantSets, gotSets); diff != "" {
		t.Errorf("TokenSets (-want +got):\n%s", diff)
	}

	err := s.Update(ctx, func(tx vault.Tx) error {
		for _, k := range []string{"k2", "k1", "k3"} {
			if err := tx.PutResponse(ctx, []byte(k), []byte("body "+k)); err != nil {
				return err
			}
			if err := tx.PutDataKey(ctx, "key "+k, []byte("wrapped "+k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	var gotResp []string
	for after := []byte(nil); ; {
		page, err := s.Responses(ctx, after, 2)
		if err != nil {
			t.Fatalf("Responses: %v", err)
		}
		if len(page) == 0 {
			break
		}
		for _, r := range page {
			gotResp = append(gotResp, string(r.Key)+"="+string(r.Body))
			if r.Created.IsZero() || r.Created.Location() != time.UTC {
				t.Errorf("Responses: Created = %v, want a UTC time", r.Created)
			}
		}
		after = page[len(page)-1].Key
	}
	if diff := cmp.Diff([]string{"k1=body k1", "k2=body k2", "k3=body k3"}, gotResp); diff != "" {
		t.Errorf("Responses (-want +got):\n%s", diff)
	}
	var gotKeys []vault.WrappedKey
	for after := ""; ; {
		page, err := s.DataKeys(ctx, after, 2)
		if err != nil {
			t.Fatalf("DataKeys: %v", err)
		}
		if len(page) == 0 {
			break
		}
		gotKeys = append(gotKeys, page...)
		after = page[len(page)-1].ID
	}
	wantKeys := []vault.WrappedKey{{ID: "key k1", Wrapped: []byte("wrapped k1")}, {ID: "key k2", Wrapped: []byte("wrapped k2")}, {ID: "key k3", Wrapped: []byte("wrapped k3")}}
	if diff := cmp.Diff(wantKeys, gotKeys); diff != "" {
		t.Errorf("DataKeys (-want +got):\n%s", diff)
	}
	for name, n := range map[string]func() (int, error){
		"Records":      func() (int, error) { p, err := s.Records(ctx, 0, 0); return len(p), err },
		"IndexEntries": func() (int, error) { p, err := s.IndexEntries(ctx, vault.IndexEntry{}, 0); return len(p), err },
		"TokenSets":    func() (int, error) { p, err := s.TokenSets(ctx, 0, 0); return len(p), err },
		"Responses":    func() (int, error) { p, err := s.Responses(ctx, nil, 0); return len(p), err },
		"DataKeys":     func() (int, error) { p, err := s.DataKeys(ctx, "", 0); return len(p), err },
	} {
		if got, err := n(); got != 0 || err != nil {
			t.Errorf("%s(limit 0) = %d, %v; want none", name, got, err)
		}
	}
}

// testFindAny: FindAny, in a transaction and on committed state, returns the
// distinct ids, ascending, of the live resources of a type whose current
// version carries any of the tokens, also for more tokens than one query of
// some backends binds.
func testFindAny(t *testing.T, s vault.Store) {
	ctx := t.Context()
	put(t, s,
		withTokens(record("Patient", "b", 1), "t1", "t2"),
		withTokens(record("Patient", "a", 1), "t1"),
		withTokens(record("Patient", "c", 1), "t3"),
		withTokens(record("Patient", "c", 2), "t4"), // replaces t3
		withTokens(record("Patient", "d", 1), "t2"),
		withTokens(tombstone("Patient", "d", 2), "t2"), // drops t2
		withTokens(record("Observation", "e", 1), "t1"),
	)
	// Many tokens that match nothing, with the ones that do at both ends.
	many := [][]byte{[]byte("t4")}
	for i := range 1200 {
		many = append(many, fmt.Appendf(nil, "none-%d", i))
	}
	many = append(many, []byte("t2"), []byte("t1"))
	cases := []struct {
		typ    string
		tokens [][]byte
		want   []string
	}{
		{"Patient", [][]byte{[]byte("t1")}, []string{"a", "b"}},
		{"Patient", [][]byte{[]byte("t1"), []byte("t2"), []byte("t1")}, []string{"a", "b"}},
		{"Patient", [][]byte{[]byte("t2"), []byte("t4")}, []string{"b", "c"}},
		{"Patient", [][]byte{[]byte("t3")}, nil},
		{"Patient", nil, nil},
		{"Observation", [][]byte{[]byte("t1"), []byte("t4")}, []string{"e"}},
		{"Encounter", [][]byte{[]byte("t1")}, nil},
		{"Patient", many, []string{"a", "b", "c"}},
	}
	for _, c := range cases {
		got, err := s.FindAny(ctx, c.typ, c.tokens)
		if err != nil {
			t.Fatalf("FindAny(%s, %d tokens): %v", c.typ, len(c.tokens), err)
		}
		if diff := cmp.Diff(c.want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("FindAny(%s, %d tokens) mismatch (-want +got):\n%s", c.typ, len(c.tokens), diff)
		}
		err = s.Update(ctx, func(tx vault.Tx) error {
			got, err := tx.FindAny(ctx, c.typ, c.tokens)
			if err != nil {
				return err
			}
			if diff := cmp.Diff(c.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Tx.FindAny(%s, %d tokens) mismatch (-want +got):\n%s", c.typ, len(c.tokens), diff)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("Update(FindAny): %v", err)
		}
	}
	// A transaction sees its own writes; committed state does not until it
	// commits.
	err := s.Update(ctx, func(tx vault.Tx) error {
		if err := tx.Put(ctx, withTokens(record("Patient", "f", 1), "t5")); err != nil {
			return err
		}
		got, err := tx.FindAny(ctx, "Patient", [][]byte{[]byte("t5"), []byte("t4")})
		if err != nil {
			return err
		}
		if !slices.Equal(got, []string{"c", "f"}) {
			t.Errorf("Tx.FindAny after Put = %v, want [c f]", got)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
}

// testFindAll: FindAll returns the ids, ascending, of the live resources
// of a type whose current version carries a token of every clause, checked
// against a model of what each resource's current version carries (not
// against FindAny): skewed tokens (one on nearly every resource, others on
// few) so that either clause may drive, versions that replace their
// tokens, tombstones, two types sharing tokens, a token repeated within a
// clause and across clauses, and clauses of more tokens than one query of
// some backends binds.
func testFindAll(t *testing.T, s vault.Store) {
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(16, 18))
	pool := []string{"common", "half", "r0", "r1", "r2", "r3", "r4", "r5"}
	type state struct {
		version int64
		tokens  map[string]bool // nil once deleted
	}
	model := map[string]*state{} // "type/id"
	var batch []vault.Record
	for step := range 160 {
		typ := "Observation"
		if step%4 == 0 {
			typ = "Patient"
		}
		id := fmt.Sprintf("r%02d", rng.IntN(40))
		st := model[typ+"/"+id]
		if st == nil {
			st = &state{}
			model[typ+"/"+id] = st
		}
		st.version++
		if st.version > 1 && rng.IntN(6) == 0 {
			st.tokens = nil
			batch = append(batch, withTokens(tombstone(typ, id, st.version), "common"))
			continue
		}
		st.tokens = map[string]bool{}
		var toks []string
		for i, tok := range pool {
			if (i == 0 && rng.IntN(10) > 0) || (i == 1 && rng.IntN(2) == 0) || (i > 1 && rng.IntN(8) == 0) {
				st.tokens[tok] = true
				toks = append(toks, tok)
			}
		}
		batch = append(batch, withTokens(record(typ, id, st.version), toks...))
	}
	put(t, s, batch...)

	want := func(typ string, clauses [][]string) []string {
		var ids []string
		for key, st := range model {
			rtyp, id, _ := strings.Cut(key, "/")
			if rtyp != typ || st.tokens == nil {
				continue
			}
			if !slices.ContainsFunc(clauses, func(c []string) bool {
				return !slices.ContainsFunc(c, func(tok string) bool { return st.tokens[tok] })
			}) {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
		return ids
	}
	bytesOf := func(clauses [][]string) [][][]byte {
		out := make([][][]byte, len(clauses))
		for i, c := range clauses {
			out[i] = [][]byte{}
			for _, tok := range c {
				out[i] = append(out[i], []byte(tok))
			}
		}
		return out
	}
	many := []string{"r3"}
	for i := range 1200 {
		many = append(many, fmt.Sprintf("none-%d", i))
	}
	many = append(many, "r1")
	cases := [][][]string{
		{},
		{{"common"}},
		{{"common"}, {"r0"}},
		{{"r0"}, {"common"}},
		{{"half"}, {"r1", "r2"}},
		{{"r1", "r2"}, {"half"}, {"common"}},
		{{"r0", "r0"}, {"r0"}},
		{{"common"}, {"half"}, {"r3", "r4", "r5"}, {"r2", "r1"}},
		{{"common"}, {}},
		{{"common"}, {"absent"}},
		{{"absent"}, {"common"}},
		{many, {"common"}},
		{{"half"}, many},
	}
	for range 40 { // and random conjunctions
		var c [][]string
		for range 2 + rng.IntN(3) {
			var clause []string
			for range 1 + rng.IntN(3) {
				clause = append(clause, pool[rng.IntN(len(pool))])
			}
			c = append(c, clause)
		}
		cases = append(cases, c)
	}
	for _, typ := range []string{"Patient", "Observation", "Encounter"} {
		for _, c := range cases {
			got, err := s.FindAll(ctx, typ, bytesOf(c))
			if err != nil {
				t.Fatalf("FindAll(%s, %d clauses): %v", typ, len(c), err)
			}
			w := []string(nil)
			if len(c) > 0 {
				w = want(typ, c)
			}
			if diff := cmp.Diff(w, got, cmpopts.EquateEmpty()); diff != "" {
				desc := fmt.Sprint(c)
				if len(desc) > 100 {
					desc = desc[:100] + "..."
				}
				t.Errorf("FindAll(%s, %s) mismatch (-want +got):\n%s", typ, desc, diff)
			}
		}
	}
}

// testCurrents: Currents returns what Current returns for each id that has
// a version (tombstones included), of that type only, and nothing for the
// others, also for more ids than one query of some backends binds.
func testCurrents(t *testing.T, s vault.Store) {
	ctx := t.Context()
	put(t, s,
		record("Patient", "a", 1), record("Patient", "a", 2), record("Patient", "a", 3),
		record("Patient", "b", 1), tombstone("Patient", "b", 2),
		record("Patient", "c", 1),
		record("Observation", "a", 1), record("Observation", "d", 1), record("Observation", "d", 2),
	)
	ids := []string{"c", "a", "missing", "b", "d", "a"}
	for i := range 1200 {
		ids = append(ids, fmt.Sprintf("none-%d", i))
	}
	ids = append(ids, "c")
	for _, typ := range []string{"Patient", "Observation", "Encounter"} {
		for _, ask := range [][]string{ids, ids[:2], nil} {
			got, err := s.Currents(ctx, typ, ask)
			if err != nil {
				t.Fatalf("Currents(%s, %d ids): %v", typ, len(ask), err)
			}
			var want []vault.Record
			seen := map[string]bool{}
			for _, id := range ask {
				if seen[id] {
					continue
				}
				seen[id] = true
				r, err := s.Current(ctx, typ, id)
				if errors.Is(err, vault.ErrNotFound) {
					continue
				}
				if err != nil {
					t.Fatalf("Current(%s/%s): %v", typ, id, err)
				}
				want = append(want, r)
			}
			byID := func(a, b vault.Record) int { return strings.Compare(a.ID, b.ID) }
			slices.SortFunc(want, byID)
			slices.SortFunc(got, byID)
			if diff := cmp.Diff(want, got, recordOpts); diff != "" {
				t.Errorf("Currents(%s, %d ids) mismatch (-want +got):\n%s", typ, len(ask), diff)
			}
		}
	}
}

// testChanges: Changes lists versions newest first, of one type or all,
// tombstones and erased versions included, bounded by Since and Before and
// paged by the last Seq seen.
func testChanges(t *testing.T, s vault.Store) {
	ctx := t.Context()
	p1, o1, p2, q1, o2 := withTokens(record("Patient", "p", 1), "t"), record("Observation", "o", 1),
		tombstone("Patient", "p", 2), record("Patient", "q", 1), record("Observation", "o", 2)
	// LastUpdated follows the version number: q1 is older than p2.
	put(t, s, p1, o1, p2, q1, o2)
	changes := func(f vault.ChangeFilter) []vault.Record {
		t.Helper()
		rs, err := s.Changes(ctx, f)
		if err != nil {
			t.Fatalf("Changes(%+v): %v", f, err)
		}
		for _, r := range rs {
			if len(r.Tokens) > 0 {
				t.Errorf("Changes returned tokens for %s", r.Leaf.Ref)
			}
		}
		return rs
	}
	cases := []struct {
		f    vault.ChangeFilter
		want []vault.Record
	}{
		{vault.ChangeFilter{}, []vault.Record{o2, q1, p2, o1, p1}},
		{vault.ChangeFilter{Type: "Patient"}, []vault.Record{q1, p2, p1}},
		{vault.ChangeFilter{Type: "Observation", Limit: 1}, []vault.Record{o2}},
		{vault.ChangeFilter{Type: "Encounter"}, nil},
		{vault.ChangeFilter{Since: p2.LastUpdated}, []vault.Record{o2, p2}},
		{vault.ChangeFilter{Type: "Patient", Since: p1.LastUpdated}, []vault.Record{q1, p2, p1}},
		{vault.ChangeFilter{Since: p2.LastUpdated.Add(time.Microsecond)}, nil},
	}
	for _, c := range cases {
		if diff := cmp.Diff(c.want, changes(c.f), recordOpts); diff != "" {
			t.Errorf("Changes(%+v) mismatch (-want +got):\n%s", c.f, diff)
		}
	}
	// Paging backwards by the last Seq seen walks everything once, newest
	// first.
	for _, typ := range []string{"", "Patient"} {
		var got []vault.Record
		before := int64(0)
		for {
			page := changes(vault.ChangeFilter{Type: typ, Before: before, Limit: 2})
			got = append(got, page...)
			if len(page) < 2 {
				break
			}
			before = page[len(page)-1].Leaf.Seq
		}
		want := changes(vault.ChangeFilter{Type: typ})
		if diff := cmp.Diff(want, got, recordOpts); diff != "" {
			t.Errorf("Changes(%q) paged mismatch (-all +paged):\n%s", typ, diff)
		}
		for i := 1; i < len(got); i++ {
			if got[i].Leaf.Seq >= got[i-1].Leaf.Seq {
				t.Errorf("Changes(%q) not newest first: Seq %d then %d", typ, got[i-1].Leaf.Seq, got[i].Leaf.Seq)
			}
		}
	}
	// An erased version is listed, marked, without content.
	err := s.Update(ctx, func(tx vault.Tx) error { return tx.PutDataKey(ctx, q1.KeyID, []byte("wrapped")) })
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(ctx, func(tx vault.Tx) error { _, err := tx.Erase(ctx, q1.KeyID); return err })
	if err != nil {
		t.Fatal(err)
	}
	got := changes(vault.ChangeFilter{Type: "Patient", Limit: 1})
	if len(got) != 1 || got[0].ID != "q" || !got[0].Erased || len(got[0].Ciphertext) != 0 {
		t.Errorf("Changes after erasure = %+v, want q erased and empty", got)
	}
}

// testSealed: Sealed lists the current version of each resource whose
// current version is sealed under the key, by type and id: not a version
// superseded by one under another key (a resource that moved
// compartments), tombstones and erased versions included, marked.
func testSealed(t *testing.T, s vault.Store) {
	ctx := t.Context()
	under := func(r vault.Record, key string) vault.Record { r.KeyID = key; return r }
	o1, o2 := under(record("Observation", "o", 1), "k"), under(record("Observation", "o", 2), "k")
	e1 := under(record("Encounter", "e", 1), "k")
	m1, m2 := under(record("Observation", "m", 1), "k"), under(record("Observation", "m", 2), "other")
	n1, n2 := under(record("Observation", "n", 1), "other"), under(record("Observation", "n", 2), "k")
	d1, d2 := under(record("Condition", "d", 1), "k"), under(tombstone("Condition", "d", 2), "k")
	x1 := under(record("Patient", "x", 1), "gone")
	put(t, s, o1, e1, m1, n1, d1, o2, m2, n2, d2, x1)
	sealed := func(key string) []vault.Record {
		t.Helper()
		rs, err := s.Sealed(ctx, key)
		if err != nil {
			t.Fatalf("Sealed(%q): %v", key, err)
		}
		return rs
	}
	if diff := cmp.Diff([]vault.Record{d2, e1, n2, o2}, sealed("k"), recordOpts); diff != "" {
		t.Errorf("Sealed(k) mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]vault.Record{m2}, sealed("other"), recordOpts); diff != "" {
		t.Errorf("Sealed(other) mismatch (-want +got):\n%s", diff)
	}
	if got := sealed("none"); len(got) != 0 {
		t.Errorf("Sealed(none) = %d records, want none", len(got))
	}
	// An erased version is listed, marked, without content.
	err := s.Update(ctx, func(tx vault.Tx) error { return tx.PutDataKey(ctx, "gone", []byte("wrapped")) })
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(ctx, func(tx vault.Tx) error { _, err := tx.Erase(ctx, "gone"); return err })
	if err != nil {
		t.Fatal(err)
	}
	got := sealed("gone")
	if len(got) != 1 || got[0].ID != "x" || !got[0].Erased || len(got[0].Ciphertext) != 0 {
		t.Errorf("Sealed after erasure = %+v, want x erased and empty", got)
	}
}

// testSetTokens: SetTokens replaces the tokens of the current live version
// only; any other version, a tombstone, an erased version or a resource
// without versions is refused and changes nothing.
// testIDs: every resource of the type with a version, whatever its state,
// once, ascending, up to the limit; none of another type.
func testIDs(t *testing.T, s vault.Store) {
	ctx := t.Context()
	put(t, s,
		record("Patient", "m", 1), record("Patient", "m", 2),
		record("Patient", "b", 1), tombstone("Patient", "b", 2),
		record("Patient", "z", 1),
		record("Observation", "c", 1),
		record("Patient", "a", 1),
	)
	for _, c := range []struct {
		typ   string
		limit int
		want  []string
	}{
		{"Patient", 10, []string{"a", "b", "m", "z"}},
		{"Patient", 2, []string{"a", "b"}},
		{"Observation", 10, []string{"c"}},
		{"Encounter", 10, nil},
	} {
		got, err := s.IDs(ctx, c.typ, c.limit)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("IDs(%s, %d) = %q, want %q", c.typ, c.limit, got, c.want)
		}
	}
}

func testSetTokens(t *testing.T, s vault.Store) {
	ctx := t.Context()
	put(t, s,
		withTokens(record("Patient", "a", 1), "old"),
		withTokens(record("Patient", "a", 2), "a2"),
		withTokens(record("Patient", "b", 1), "b1"),
		tombstone("Patient", "b", 2),
		withTokens(record("Patient", "c", 1), "c1"),
	)
	set := func(typ, id string, version int64, tokens ...string) error {
		return s.Update(ctx, func(tx vault.Tx) error {
			var toks [][]byte
			for _, tok := range tokens {
				toks = append(toks, []byte(tok))
			}
			return tx.SetTokens(ctx, typ, id, version, toks)
		})
	}
	if err := set("Patient", "a", 2, "n1", "n2", "n1"); err != nil {
		t.Fatalf("SetTokens(a, 2): %v", err)
	}
	wantFind(t, s, "Patient", "a2")
	wantFind(t, s, "Patient", "n1", "a")
	wantFind(t, s, "Patient", "n2", "a")
	// Replacing with the same or fewer tokens.
	if err := set("Patient", "a", 2, "n2"); err != nil {
		t.Fatalf("SetTokens(a, 2) again: %v", err)
	}
	wantFind(t, s, "Patient", "n1")
	wantFind(t, s, "Patient", "n2", "a")
	if err := set("Patient", "c", 1); err != nil {
		t.Fatalf("SetTokens(c, 1, none): %v", err)
	}
	wantFind(t, s, "Patient", "c1")

	wantErr(t, "SetTokens of an older version", set("Patient", "a", 1, "x"), vault.ErrConflict)
	wantErr(t, "SetTokens of a newer version", set("Patient", "a", 3, "x"), vault.ErrConflict)
	wantErr(t, "SetTokens of a tombstone", set("Patient", "b", 2, "x"), vault.ErrConflict)
	wantErr(t, "SetTokens of a version before a tombstone", set("Patient", "b", 1, "x"), vault.ErrConflict)
	wantErr(t, "SetTokens of no resource", set("Patient", "z", 1, "x"), vault.ErrNotFound)
	wantErr(t, "SetTokens of another type", set("Observation", "a", 2, "x"), vault.ErrNotFound)
	wantFind(t, s, "Patient", "x")
	wantFind(t, s, "Patient", "n2", "a")

	// A refused SetTokens leaves the transaction usable.
	err := s.Update(ctx, func(tx vault.Tx) error {
		if err := tx.SetTokens(ctx, "Patient", "a", 1, nil); !errors.Is(err, vault.ErrConflict) {
			t.Errorf("SetTokens of an older version in a transaction: %v, want ErrConflict", err)
		}
		return tx.SetTokens(ctx, "Patient", "a", 2, [][]byte{[]byte("n3")})
	})
	if err != nil {
		t.Fatalf("Update after a refused SetTokens: %v", err)
	}
	wantFind(t, s, "Patient", "n3", "a")

	// An erased version is refused.
	c := record("Patient", "c", 1)
	if err := s.Update(ctx, func(tx vault.Tx) error { return tx.PutDataKey(ctx, c.KeyID, []byte("wrapped")) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, func(tx vault.Tx) error { _, err := tx.Erase(ctx, c.KeyID); return err }); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "SetTokens of an erased version", set("Patient", "c", 1, "x"), vault.ErrConflict)
	wantFind(t, s, "Patient", "x")
	wantStats(t, s, vault.Stats{Versions: 5, Leaves: 5})
}

// testDropTokens: DropTokens and DropTokenSet refuse, removing nothing,
// what belongs to a current live version, and remove what does not (an
// index damaged or built by older rules; the gateway's tamper and reindex
// tests damage it with SQL, which this suite cannot). A new version moves
// its resource's set to its own Seq and the postings with it; the index
// version is "" until set.
func testDropTokens(t *testing.T, s vault.Store) {
	ctx := t.Context()
	put(t, s, withTokens(record("Patient", "a", 1), "a1", "shared"), withTokens(record("Patient", "b", 1), "b1", "shared"),
		tombstone("Patient", "b", 2), withTokens(record("Patient", "a", 2), "a2", "shared"))
	wantFind(t, s, "Patient", "a1")
	wantFind(t, s, "Patient", "a2", "a")
	wantFind(t, s, "Patient", "shared", "a")
	wantFind(t, s, "Patient", "b1")
	sets, err := s.TokenSets(ctx, 0, 10)
	if err != nil {
		t.Fatalf("TokenSets: %v", err)
	}
	if diff := cmp.Diff([]vault.TokenSet{{Seq: 4, Tokens: [][]byte{[]byte("a2"), []byte("shared")}}}, sets); diff != "" {
		t.Errorf("TokenSets after a new version and a tombstone (-want +got):\n%s", diff)
	}

	update := func(fn func(tx vault.Tx) error) error { return s.Update(ctx, fn) }
	wantErr(t, "DropTokens of a posting that belongs", update(func(tx vault.Tx) error {
		return tx.DropTokens(ctx, vault.IndexEntry{Token: []byte("shared"), Seq: 4})
	}), vault.ErrConflict)
	wantErr(t, "DropTokenSet of the current live version", update(func(tx vault.Tx) error { return tx.DropTokenSet(ctx, 4) }), vault.ErrConflict)
	wantFind(t, s, "Patient", "shared", "a")
	for _, e := range []vault.IndexEntry{
		{Token: []byte("nothing"), Seq: 4}, // not in the set: a no-op here
		{Token: []byte("b1"), Seq: 2},      // a version before a tombstone
		{Token: []byte("a1"), Seq: 1},      // an older version
		{Token: []byte("x"), Seq: 99},      // no version
	} {
		if err := update(func(tx vault.Tx) error { return tx.DropTokens(ctx, e) }); err != nil {
			t.Errorf("DropTokens(%s at %d): %v", e.Token, e.Seq, err)
		}
	}
	for _, seq := range []int64{1, 2, 3, 99} { // older versions, a tombstone, no version: no set, a no-op
		if err := update(func(tx vault.Tx) error { return tx.DropTokenSet(ctx, seq) }); err != nil {
			t.Errorf("DropTokenSet(%d): %v", seq, err)
		}
	}
	wantFind(t, s, "Patient", "shared", "a")
	wantFind(t, s, "Patient", "a2", "a")

	if v, err := s.IndexVersion(ctx); err != nil || v != "" {
		t.Errorf("IndexVersion of a new store = %q, %v; want \"\"", v, err)
	}
	if err := update(func(tx vault.Tx) error { return tx.SetIndexVersion(ctx, "rules/2") }); err != nil {
		t.Fatalf("SetIndexVersion: %v", err)
	}
	if v, err := s.IndexVersion(ctx); err != nil || v != "rules/2" {
		t.Errorf("IndexVersion = %q, %v; want rules/2", v, err)
	}
}

// RawRecord reads and writes the stored bytes of a leaf record, beside the
// Store: what a backend's own test passes to RecordStorage.
type RawRecord struct {
	Get func(t *testing.T, seq int64) []byte
	Set func(t *testing.T, seq int64, stored []byte)
}

// RecordStorage checks how s, a fresh Store, keeps leaf records: compressed
// with vault.PackRecord, read back to the exact bytes put by Leaf,
// FindLeaves and Records; a record stored before packing (plain JSON)
// reads as it is; and a stored record cut short reads, without an error,
// as bytes other than the record, which an audit then reports.
func RecordStorage(t *testing.T, s vault.Store, raw RawRecord) {
	t.Helper()
	ctx := t.Context()
	rec := []byte(`{"kind":"deidentification","time":"2026-12-06T14:05:05.372216Z",` +
		`"resource":"Condition/tok-e575a56c032dbeeda8a64210a946c841/_history/1",` +
		`"source":"2613d8ef2370c19c4f8bfae3e5e2712a7b2ce48fa706f96bc183cb4e7f70ea01",` +
		`"output":"2c290f81ddd2e773678df48b243cb3ade95c04b198a093d6ae9b658abe516e5a","profile":"safe-harbor",` +
		`"labels":["REDACTED","CRYTOHASH","PERTURBED"],"rules":[{"rule":"date-times","method":"dateShift",` +
		`"paths":["onsetDateTime","recordedDate"]},{"rule":"ids","method":"cryptoHash","paths":["id"]},` +
		`{"rule":"meta-last-updated","method":"redact","paths":["meta.lastUpdated"]},` +
		`{"rule":"references","method":"cryptoHash","paths":["encounter.reference","subject.reference"]}]}`)
	l := recordLeaf(1, 6, "Patient/p1", "client-1")
	l.Record = rec
	// A record that starts with a marker byte and does not compress is
	// kept as it is, escaped, and reads back too.
	odd := recordLeaf(2, 6, "Patient/p1", "client-1")
	odd.Record = []byte{2, 0xfe, 0x11}
	ls := addLeaves(t, s, l, odd)
	wantAll := func(what string, want ...vault.Leaf) {
		t.Helper()
		for _, w := range want {
			wantLeaf(t, s, w)
		}
		found, err := s.FindLeaves(ctx, vault.LeafFilter{Subject: "Patient/p1"})
		if err != nil {
			t.Fatalf("%s: FindLeaves: %v", what, err)
		}
		listed, err := s.Records(ctx, 0, 10)
		if err != nil {
			t.Fatalf("%s: Records: %v", what, err)
		}
		if len(found) != len(want) || len(listed) != len(want) {
			t.Fatalf("%s: FindLeaves gave %d leaves, Records %d; want %d", what, len(found), len(listed), len(want))
		}
		for i, w := range want {
			if got := found[len(want)-1-i].Record; string(got) != string(w.Record) {
				t.Errorf("%s: FindLeaves record of leaf %d = %q, want %q", what, w.Seq, got, w.Record)
			}
			if got := listed[i].Record; string(got) != string(w.Record) {
				t.Errorf("%s: Records record of leaf %d = %q, want %q", what, w.Seq, got, w.Record)
			}
		}
	}
	wantAll("packed", ls...)
	stored := raw.Get(t, ls[0].Seq)
	if len(stored) == 0 || stored[0] != 0x07 || len(stored) > len(rec)/2 {
		t.Errorf("a %d-byte record is stored as %d bytes starting %x; want it compressed with the record dictionary (marker 07)", len(rec), len(stored), stored[:min(len(stored), 1)])
	}
	if got := raw.Get(t, ls[1].Seq); string(got) != "\x00\x02\xfe\x11" {
		t.Errorf("record 02fe11 stored as %x, want it escaped (00 02fe11)", got)
	}

	// A row written before records were packed.
	raw.Set(t, ls[0].Seq, rec)
	wantAll("plain", ls...)

	// A packed row cut short: no error, no panic, and not the record.
	raw.Set(t, ls[0].Seq, stored[:len(stored)-1])
	got, err := s.Leaf(ctx, ls[0].Seq)
	if err != nil {
		t.Fatalf("Leaf of a damaged record: %v", err)
	}
	if string(got.Record) == string(rec) {
		t.Error("Leaf of a damaged record returns the record")
	}
	listed, err := s.Records(ctx, 0, 10)
	if err != nil || len(listed) != 2 {
		t.Fatalf("Records with a damaged record = %d records, %v; want 2 records", len(listed), err)
	}
	if string(listed[0].Record) == string(rec) {
		t.Error("Records lists a damaged record as the record")
	}
}

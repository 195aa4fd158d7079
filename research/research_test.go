package research

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/access"
	"github.com/fhiranchor/fhiranchor/vault"
	"github.com/fhiranchor/fhiranchor/vault/sqlite"
)

// newTestService returns a Service over a fresh SQLite vault, logging as
// JSON into the returned buffer.
func newTestService(t *testing.T) (*Service, *bytes.Buffer) {
	t.Helper()
	store, err := sqlite.New(t.Context(), sqlite.Config{Path: filepath.Join(t.TempDir(), "vault.db")})
	if err != nil {
		t.Fatalf("sqlite.New: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	kr, err := vault.NewKeyring(bytes.Repeat([]byte{7}, vault.MasterKeySize))
	if err != nil {
		t.Fatalf("NewKeyring: %v", err)
	}
	v := vault.NewSealed(store, kr)
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	s, err := New(Config{Vault: v, Access: access.New(access.Config{Vault: v, Log: log, Now: time.Now}), Log: log,
		ExportDir: t.TempDir()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s, &logs
}

// put stores one version of typ/id in compartment with copy as its
// research copy.
func put(t *testing.T, s *Service, typ, id, compartment string, copy []byte) {
	t.Helper()
	ref := typ + "/" + id + "/_history/1"
	err := s.vault.Update(t.Context(), func(tx *vault.SealedTx) error {
		return tx.Put(t.Context(), vault.Version{
			Type: typ, ID: id, Version: 1, LastUpdated: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
			Compartment: compartment, Body: fmt.Appendf(nil, `{"resourceType":%q,"id":%q}`, typ, id),
			Salt: bytes.Repeat([]byte{1}, 32), Commitment: bytes.Repeat([]byte{2}, 32),
			Deid: copy, Leaf: vault.Leaf{Type: 1, Data: []byte("leaf " + ref), Ref: ref},
		})
	})
	if err != nil {
		t.Fatalf("put %s/%s: %v", typ, id, err)
	}
}

// TestApplySkipsUnreadableCopy: a research copy that does not decode is
// left out of the index, counted and logged by type and leaf only, and the
// index keeps following the vault past it.
func TestApplySkipsUnreadableCopy(t *testing.T) {
	s, logs := newTestService(t)
	const secret = "Quillfeather-078-05-1120"
	put(t, s, "Patient", "p1", "Patient/p1", []byte(`{"resourceType":"Patient","id":"x","gender":"female"}`))
	put(t, s, "Observation", "o1", "Patient/p1", []byte(`not JSON `+secret))
	put(t, s, "Patient", "p2", "Patient/p2", []byte(`{"resourceType":"Patient","id":"y","gender":"male"}`))
	if err := s.catchUp(t.Context()); err != nil {
		t.Fatalf("catchUp: %v", err)
	}
	if got := s.Skipped(); got != 1 {
		t.Errorf("Skipped() = %d, want 1", got)
	}
	if got := s.idx().Resources("Patient/p1"); !slices.Equal(got, []string{"Patient/p1"}) {
		t.Errorf("Resources(Patient/p1) = %v, want [Patient/p1]", got)
	}
	if got := s.idx().Resources("Patient/p2"); !slices.Equal(got, []string{"Patient/p2"}) {
		t.Errorf("Resources(Patient/p2) = %v: the index stopped at the unreadable copy", got)
	}
	if bytes.Contains(logs.Bytes(), []byte(secret)) {
		t.Errorf("the log quotes the copy: %s", logs.Bytes())
	}
	var warned bool
	for _, line := range bytes.Split(bytes.TrimSpace(logs.Bytes()), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["level"] != "WARN" {
			continue
		}
		warned = true
		delete(m, "time")
		delete(m, "level")
		delete(m, "msg")
		if len(m) != 2 || m["type"] != "Observation" || m["leaf"] == nil {
			t.Errorf("warning attributes = %v, want type and leaf only", m)
		}
	}
	if !warned {
		t.Error("no warning for the skipped copy")
	}
}

func TestCriteriaSealRoundTrip(t *testing.T) {
	c, err := newCriteriaSeal(bytes.Repeat([]byte{3}, 32))
	if err != nil {
		t.Fatal(err)
	}
	criteria := []byte(`{"gender":"female"}`)
	sealed := c.seal(criteria)
	if bytes.Contains([]byte(sealed), []byte("female")) {
		t.Errorf("sealed criteria hold the criteria in clear: %s", sealed)
	}
	if got, err := c.open(sealed); err != nil || !bytes.Equal(got, criteria) {
		t.Errorf("open(seal(x)) = %q, %v; want %q", got, err, criteria)
	}
	other, err := newCriteriaSeal(bytes.Repeat([]byte{4}, 32))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.open(sealed); err == nil {
		t.Error("another key opened the sealed criteria")
	}
	if _, err := c.open("not base64!"); err == nil {
		t.Error("malformed input opened")
	}
}

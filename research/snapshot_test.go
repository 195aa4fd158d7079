package research

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/access"
	"github.com/fhiranchor/fhiranchor/cohort"
	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/fhir/deid"
	"github.com/fhiranchor/fhiranchor/internal/shareddata"
	"github.com/fhiranchor/fhiranchor/vault"
	"github.com/fhiranchor/fhiranchor/vault/sqlite"
)

// snapVault is a vault with Synthea patients' research copies, made by a
// service's real de-identifier.
type snapVault struct {
	v       *vault.Sealed
	nonce   string // in every leaf, as a real leaf holds a salted commitment
	entries []snapEntry
}

type snapEntry struct {
	typ, id, compartment string
	tree                 map[string]any
}

func newSnapVault(t *testing.T, patients int) *snapVault {
	t.Helper()
	store, err := sqlite.New(t.Context(), sqlite.Config{Path: filepath.Join(t.TempDir(), "vault.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	kr, err := vault.NewKeyring(bytes.Repeat([]byte{7}, vault.MasterKeySize))
	if err != nil {
		t.Fatal(err)
	}
	sv := &snapVault{v: vault.NewSealed(store, kr), nonce: rand.Text()}
	for _, f := range shareddata.Files(t, "synthea") {
		if patients == 0 {
			break
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b, err := fhir.DecodeObject(data)
		if err != nil {
			t.Fatal(err)
		}
		var pid string
		var entries []snapEntry
		for _, e := range b["entry"].([]any) {
			r := e.(map[string]any)["resource"].(map[string]any)
			id := strings.TrimPrefix(e.(map[string]any)["fullUrl"].(string), "urn:uuid:")
			typ := r["resourceType"].(string)
			if typ == "Patient" {
				pid = id
			}
			entries = append(entries, snapEntry{typ: typ, id: id, tree: r})
		}
		if pid == "" {
			continue
		}
		for _, e := range entries {
			e.compartment = "Patient/" + pid
			sv.entries = append(sv.entries, e)
		}
		patients--
	}
	return sv
}

// service returns a new service over the vault keeping its snapshot in
// file ("" none), and its log.
func (sv *snapVault) service(t *testing.T, file string) (*Service, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	s, err := New(Config{Vault: sv.v, Access: access.New(access.Config{Vault: sv.v, Log: log, Now: time.Now}), Log: log,
		ExportDir: t.TempDir(), IndexFile: file})
	if err != nil {
		t.Fatal(err)
	}
	return s, &logs
}

// write stores version 1 of entries[from:to] with research copies made by
// s's de-identifier (which leaves s its notes), or a deletion tombstone.
func (sv *snapVault) write(t *testing.T, s *Service, from, to int, deleted bool) {
	t.Helper()
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	err := sv.v.Update(t.Context(), func(tx *vault.SealedTx) error {
		for _, e := range sv.entries[from:to] {
			version := int64(1)
			if deleted {
				version = 2
			}
			ref := fmt.Sprintf("%s/%s/_history/%d", e.typ, e.id, version)
			sum := sha256.Sum256([]byte(ref))
			v := vault.Version{Type: e.typ, ID: e.id, Version: version, LastUpdated: at, Compartment: e.compartment,
				Body: []byte(`{}`), Salt: bytes.Repeat([]byte{1}, 32), Commitment: sum[:], Deleted: deleted,
				Leaf: vault.Leaf{Type: 1, Data: []byte("leaf " + ref + sv.nonce), Ref: ref}}
			if !deleted {
				v.Deid, _ = s.deid.Copy(t.Context(), e.typ, e.tree, e.compartment, deid.Subject{}, at, ref, sum[:])
			}
			if err := tx.Put(t.Context(), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

var snapQueries = []string{
	`{"criteria":{"gender":"female"}}`,
	`{"criteria":{"age":{"ge":40}}}`,
	`{"criteria":{"condition":{}}}`,
	`{"criteria":{"observation":{"code":[{"system":"http://loinc.org","code":"8302-2"}],"value":{"gt":150}}}}`,
	`{"criteria":{"all":[{"encounter":{},"as":"e"},{"procedure":{},"within":{"of":"e","from":{"days":0},"to":{"days":30}}}]}}`,
	`{"criteria":{"not":{"immunization":{}}}}`,
}

// answers are the true counts of snapQueries and the patients' resources.
func answers(t *testing.T, s *Service) string {
	t.Helper()
	if err := s.catchUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	all := func(string) bool { return true }
	var b strings.Builder
	fmt.Fprintf(&b, "%+v\n", s.idx().Stats())
	for _, qs := range snapQueries {
		q, err := cohort.ParseQuery([]byte(qs))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%d %v\n", s.idx().Count(q, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), all), s.idx().Match(q, time.Time{}, all))
	}
	s.idx().Patients(func(p string) { fmt.Fprintf(&b, "%s %v\n", p, s.idx().Resources(p)) })
	return b.String()
}

// TestSnapshotRestart: a service started on a snapshot and the versions
// committed after it answers exactly as one that rebuilt its index from
// every research copy, and as the one that fed its index from the writer's
// notes.
func TestSnapshotRestart(t *testing.T) {
	sv := newSnapVault(t, 4)
	file := filepath.Join(t.TempDir(), "cohort-index")
	first, _ := sv.service(t, file)
	n := len(sv.entries)
	sv.write(t, first, 0, n*3/4, false)
	if err := first.catchUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	if first.Ready() {
		t.Error("Ready before Run loaded the index")
	}
	first.saveSnapshot(t.Context())
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("no snapshot written: %v", err)
	}
	// The tail: more versions, and some deletions of earlier ones.
	sv.write(t, first, n*3/4, n, false)
	sv.write(t, first, 0, n/10, true)
	want := answers(t, first)
	if first.fromCopies.Load() != 0 || first.fromNotes.Load() == 0 {
		t.Errorf("the writer's service indexed %d versions from notes and %d by opening the copy; want all from notes",
			first.fromNotes.Load(), first.fromCopies.Load())
	}

	restarted, logs := sv.service(t, file)
	if got := answers(t, restarted); got != want {
		t.Errorf("restarted on the snapshot:\n%s\nwant (fed from notes):\n%s", got, want)
	}
	if !strings.Contains(logs.String(), "cohort index snapshot loaded") {
		t.Errorf("the snapshot was not used: %s", logs)
	}
	rebuilt, _ := sv.service(t, "")
	if got := answers(t, rebuilt); got != want {
		t.Errorf("rebuilt from the copies (%d opened):\n%s\nwant:\n%s", rebuilt.fromCopies.Load(), got, want)
	}
	if !strings.Contains(want, "Patient/") || strings.HasPrefix(want, "{Patients:0") {
		t.Fatalf("nothing indexed: %s", want)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	// Sealed: no key, code or pseudonym of the index in clear.
	for _, clear := range []string{sv.entries[0].id, "http://loinc.org", "female", "Patient/"} {
		if bytes.Contains(data, []byte(clear)) {
			t.Errorf("the snapshot holds %q in clear", clear)
		}
	}
}

// TestSnapshotTampered: a snapshot that was altered, cut, or belongs to
// another vault is never trusted: the index is rebuilt from the research
// copies, and answers as a rebuilt one.
func TestSnapshotTampered(t *testing.T) {
	sv := newSnapVault(t, 2)
	file := filepath.Join(t.TempDir(), "cohort-index")
	s, _ := sv.service(t, file)
	sv.write(t, s, 0, len(sv.entries), false)
	if err := s.catchUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	s.saveSnapshot(t.Context())
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	rebuilt, _ := sv.service(t, "")
	want := answers(t, rebuilt)

	// Another vault, same master key, its own log: a genuine snapshot of
	// it opens but is not of this log.
	other := newSnapVault(t, 1)
	otherFile := filepath.Join(t.TempDir(), "cohort-index")
	os2, _ := other.service(t, otherFile)
	other.write(t, os2, 0, len(other.entries), false)
	if err := os2.catchUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	os2.saveSnapshot(t.Context())
	foreign, err := os.ReadFile(otherFile)
	if err != nil {
		t.Fatal(err)
	}

	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 1; return b }
	for name, data := range map[string][]byte{
		"flipped in the header":    flip(len(snapshotFileMagic) + 3),
		"flipped in the body":      flip(len(good) / 2),
		"flipped at the end":       flip(len(good) - 1),
		"truncated":                good[:len(good)-20],
		"extended":                 append(bytes.Clone(good), good[len(good)-40:]...),
		"another vault's snapshot": foreign,
		"not a snapshot":           []byte("hello"),
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(file, data, 0o600); err != nil {
				t.Fatal(err)
			}
			s, logs := sv.service(t, file)
			if got := answers(t, s); got != want {
				t.Errorf("answers:\n%s\nwant (rebuilt):\n%s", got, want)
			}
			if !strings.Contains(logs.String(), "snapshot not used") {
				t.Errorf("the damage went unnoticed: %s", logs)
			}
		})
	}
}

// TestReadyAfterLoad: Ready is false until Run has loaded the index and
// caught it up.
func TestReadyAfterLoad(t *testing.T) {
	sv := newSnapVault(t, 1)
	file := filepath.Join(t.TempDir(), "cohort-index")
	s, _ := sv.service(t, file)
	sv.write(t, s, 0, len(sv.entries), false)
	if s.Ready() {
		t.Fatal("Ready before Run")
	}
	done := make(chan struct{})
	runCtx, stop := context.WithCancel(t.Context())
	go func() { defer close(done); _ = s.Run(runCtx) }()
	deadline := time.Now().Add(10 * time.Second)
	for !s.Ready() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !s.Ready() {
		t.Fatal("not Ready after Run's first round")
	}
	if got := s.idx().Stats().Resources; got != len(sv.entries) {
		t.Errorf("Ready with %d resources indexed, want %d", got, len(sv.entries))
	}
	stop()
	<-done
	// Run writes a snapshot on the way out.
	if _, err := os.Stat(file); err != nil {
		t.Errorf("no snapshot after Run stopped: %v", err)
	}
}

// TestSnapshotErasure: an erasure committed after a snapshot is applied on
// restart, and the snapshot is rewritten without the erased patient at
// once, since shredding the patient's key does not reach it.
func TestSnapshotErasure(t *testing.T) {
	sv := newSnapVault(t, 2)
	file := filepath.Join(t.TempDir(), "cohort-index")
	s, _ := sv.service(t, file)
	sv.write(t, s, 0, len(sv.entries), false)
	if err := s.catchUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	s.saveSnapshot(t.Context())
	erased := sv.entries[0].compartment
	err := sv.v.Update(t.Context(), func(tx *vault.SealedTx) error {
		if _, err := tx.Erase(t.Context(), erased); err != nil {
			return err
		}
		subject := access.Ref(tx, erased)
		_, _, err := access.Add(t.Context(), tx, access.KindErasure, "erasure/"+subject, subject, "test", time.Now(),
			[]byte(`{"kind":"erasure"}`))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	restarted, _ := sv.service(t, file)
	if err := restarted.catchUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := restarted.idx().Resources(erased); len(got) != 0 {
		t.Fatalf("the erased patient still has %d resources indexed after the restart", len(got))
	}
	if !restarted.shouldSave(0) {
		t.Fatal("no snapshot due right after an erasure was applied")
	}
	restarted.saveSnapshot(t.Context())
	_, ix, err := readSnapshot(file, restarted.snapshotKey)
	if err != nil {
		t.Fatal(err)
	}
	if got := ix.Resources(erased); len(got) != 0 {
		t.Errorf("the rewritten snapshot still holds %d resources of the erased patient", len(got))
	}
	if ix.Stats().Patients != 1 {
		t.Errorf("the rewritten snapshot holds %d patients, want the other one", ix.Stats().Patients)
	}
}

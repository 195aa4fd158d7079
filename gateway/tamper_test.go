package gateway_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/cohort"
	"github.com/fhiranchor/fhiranchor/gateway"
	"github.com/fhiranchor/fhiranchor/internal/pgtest"
	"github.com/fhiranchor/fhiranchor/internal/shareddata"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
	"github.com/fhiranchor/fhiranchor/vault"
	vaultpg "github.com/fhiranchor/fhiranchor/vault/postgres"
	"github.com/fhiranchor/fhiranchor/vault/sqlite"
)

// tamperFixture is a vault a real gateway wrote, at rest, and the rows the
// tamper cases aim at.
type tamperFixture struct {
	dir   string            // the gateway's data dir: master.key
	roots map[uint64][]byte // every anchored checkpoint

	patient, patient2 string // live patients with identifiers (blind-index tokens)
	patientSeq        int64  // Seq of the patient's current version
	obs, obs2         int64  // Seqs of two live Observations of the patient, with research copies
	tombstone         int64  // Seq of a deletion tombstone
	erased            int64  // Seq of an erased version
	consentEvent      int64  // Seqs of record leaves
	decision          int64
	deidentification  int64
	erasure           int64
}

// buildTamperFixture runs a gateway over two Synthea Bundles, a Consent, a
// deletion, an erasure and idempotent replays (of a Bundle and of a
// create), waits until every leaf is anchored, and stops it.
func buildTamperFixture(t *testing.T, dsn string) *tamperFixture {
	t.Helper()
	g := testonly.StartGateway(t, testonly.Options{Quiet: true, PostgresDSN: dsn})
	ehr := []string{"Authorization", "Bearer " + g.Token(t)}
	files := shareddata.Files(t, "synthea")
	pick := func(prefix string) string {
		for _, f := range files {
			if strings.HasPrefix(filepath.Base(f), prefix) {
				return f
			}
		}
		t.Fatalf("no Synthea Bundle %s*", prefix)
		return ""
	}
	idOf := func(body []byte, typ string) []string {
		var ids []string
		for _, e := range decodeBundle(t, body).Entry {
			loc := relativeLocation(e.Response.Location)
			if strings.HasPrefix(loc, typ+"/") {
				ids = append(ids, strings.Split(loc, "/")[1])
			}
		}
		return ids
	}
	r := g.Do(t, http.MethodPost, "", readFile(t, pick("Clemente_")), ehr...)
	mustStatus(t, r, http.StatusOK)
	f := &tamperFixture{dir: g.Dir, patient: idOf(r.Body, "Patient")[0]}
	observations := idOf(r.Body, "Observation")

	// A replayed Bundle and a replayed create.
	bundleB := readFile(t, pick("Buster_"))
	r = g.Do(t, http.MethodPost, "", bundleB, append(ehr, "Idempotency-Key", "bundle-1")...)
	mustStatus(t, r, http.StatusOK)
	erasedPatient := idOf(r.Body, "Patient")[0]
	if again := g.Do(t, http.MethodPost, "", bundleB, append(ehr, "Idempotency-Key", "bundle-1")...); again.Status != http.StatusOK || string(again.Body) != string(r.Body) {
		t.Fatalf("replayed Bundle: %d", again.Status)
	}
	patient := []byte(`{"resourceType": "Patient", "identifier": [{"system": "urn:test:mrn", "value": "tamper-2"}], "gender": "female"}`)
	r = g.Do(t, http.MethodPost, "/Patient", patient, append(ehr, "Idempotency-Key", "create-1")...)
	mustStatus(t, r, http.StatusCreated)
	if again := g.Do(t, http.MethodPost, "/Patient", patient, append(ehr, "Idempotency-Key", "create-1")...); again.Status != http.StatusCreated || again.Header.Get("Location") != r.Header.Get("Location") {
		t.Fatalf("replayed create: %d %s", again.Status, again.Header.Get("Location"))
	}
	f.patient2 = strings.Split(relativeLocation(r.Header.Get("Location")), "/")[1]

	consent := `{"resourceType": "Consent", "status": "active",
		"scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
		"category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
		"patient": {"reference": "Patient/` + f.patient + `"},
		"policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
		"provision": {"type": "deny", "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HRESCH"}]}}`
	mustStatus(t, g.Do(t, http.MethodPost, "/Consent", []byte(consent), ehr...), http.StatusCreated)
	deleted := observations[len(observations)-1]
	mustStatus(t, g.Do(t, http.MethodDelete, "/Observation/"+deleted, nil, ehr...), http.StatusOK)
	mustStatus(t, doRoot(t, g, http.MethodPost, "/v1/patients/"+erasedPatient+":erase", g.Token(t, "fhiranchor/admin")), http.StatusOK)
	mustStatus(t, g.Do(t, http.MethodGet, "/Patient/"+f.patient, nil, ehr...), http.StatusOK)

	// Every leaf anchored: the audit then compares every checkpoint.
	ctx := t.Context()
	st := g.Vault.Store()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		stats, err := st.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		f.roots = map[uint64][]byte{}
		var last uint64
		for after := uint64(0); ; {
			cps, err := g.Log.Checkpoints(ctx, after, 1000)
			if err != nil {
				t.Fatal(err)
			}
			for _, cp := range cps {
				f.roots[cp.Size], last = cp.Root, cp.Size
			}
			if len(cps) < 1000 {
				break
			}
			after = last
		}
		if last == uint64(stats.Leaves) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d leaves anchored after 60s", last, stats.Leaves)
		}
	}

	for after := int64(0); ; {
		rs, err := st.Versions(ctx, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			switch {
			case r.Erased:
				if f.erased == 0 {
					f.erased = r.Leaf.Seq
				}
			case r.Deleted:
				f.tombstone = r.Leaf.Seq
			case r.Type == "Patient" && r.ID == f.patient:
				f.patientSeq = r.Leaf.Seq
			case r.Type == "Observation" && r.ID != deleted && len(r.Deid) > 0 && r.Compartment() == "Patient/"+f.patient:
				if f.obs == 0 {
					f.obs = r.Leaf.Seq
				} else if f.obs2 == 0 {
					f.obs2 = r.Leaf.Seq
				}
			}
		}
		if len(rs) < 1000 {
			break
		}
		after = rs[len(rs)-1].Leaf.Seq
	}
	for _, x := range []struct {
		typ anchor.LeafType
		seq *int64
	}{{anchor.LeafConsentEvent, &f.consentEvent}, {anchor.LeafAccessDecision, &f.decision},
		{anchor.LeafDeidentification, &f.deidentification}, {anchor.LeafErasure, &f.erasure}} {
		ls, err := st.FindLeaves(ctx, vault.LeafFilter{Type: uint8(x.typ), Limit: 1})
		if err != nil || len(ls) != 1 {
			t.Fatalf("no %s leaf: %v", x.typ, err)
		}
		*x.seq = ls[0].Seq
	}
	if f.patientSeq == 0 || f.obs2 == 0 || f.tombstone == 0 || f.erased == 0 {
		t.Fatalf("fixture lacks a target: %+v", f)
	}
	g.Stop()
	return f
}

// tamperCase is one edit an intruder with write access to the database
// (but not the master key) makes, in the SQL of each backend. %[1]d and
// the like are replaced by the fixture's targets (see args), %% by %.
type tamperCase struct {
	name     string
	sqlite   string
	postgres string
	want     string // a part of the problem the audit must report
}

// args are the fixture's targets, in the order the cases' SQL names them:
// %[1]d patient's current version, %[2]d an Observation, %[3]d another,
// %[4]d a tombstone, %[5]d an erased version, %[6]d a consent event,
// %[7]d an access decision, %[8]d a deidentification record, %[9]d an
// erasure record, %[10]s the patient's id, %[11]s another patient's id.
func (f *tamperFixture) args() *strings.Replacer {
	pairs := []string{"%%", "%"}
	for i, seq := range []int64{f.patientSeq, f.obs, f.obs2, f.tombstone, f.erased, f.consentEvent, f.decision,
		f.deidentification, f.erasure} {
		pairs = append(pairs, fmt.Sprintf("%%[%d]d", i+1), fmt.Sprint(seq))
	}
	return strings.NewReplacer(append(pairs, "%[10]s", f.patient, "%[11]s", f.patient2)...)
}

// Both backends: the same edit, in each one's SQL. The PostgreSQL edits
// run with session_replication_role = replica, which (as a superuser can)
// switches off the foreign keys an intruder would drop anyway.
var tamperCases = []tamperCase{
	{name: "version row deleted, its leaf kept",
		sqlite: `DELETE FROM versions WHERE seq = %[2]d`, want: "has no version row"},
	{name: "leaf deleted, its version row kept",
		sqlite: `DELETE FROM leaves WHERE seq = %[2]d`, want: "gap"},
	{name: "last leaf and its row deleted (rollback of the tail)",
		sqlite: `DELETE FROM leaf_records WHERE seq = (SELECT max(seq) FROM leaves);
DELETE FROM versions WHERE seq = (SELECT max(seq) FROM leaves);
DELETE FROM leaves WHERE seq = (SELECT max(seq) FROM leaves)`, want: "checkpoints are larger"},
	{name: "record row deleted, its leaf kept",
		sqlite: `DELETE FROM leaf_records WHERE seq = %[6]d`, want: "has no record row"},
	{name: "live version flagged deleted",
		sqlite:   `UPDATE versions SET deleted = 1 WHERE seq = %[1]d`,
		postgres: `UPDATE versions SET deleted = true WHERE seq = %[1]d`, want: "deleted flag"},
	{name: "tombstone flagged live",
		sqlite:   `UPDATE versions SET deleted = 0 WHERE seq = %[4]d`,
		postgres: `UPDATE versions SET deleted = false WHERE seq = %[4]d`, want: "deleted flag"},
	{name: "live version flagged erased",
		sqlite:   `UPDATE versions SET erased = 1 WHERE seq = %[2]d`,
		postgres: `UPDATE versions SET erased = true WHERE seq = %[2]d`, want: "still holds"},
	{name: "live version shredded without an erasure",
		sqlite:   `UPDATE versions SET erased = 1, ciphertext = X'', salt = X'', deid = X'' WHERE seq = %[2]d`,
		postgres: `UPDATE versions SET erased = true, ciphertext = '', salt = '', deid = '' WHERE seq = %[2]d`, want: "no erasure record"},
	{name: "erased version flagged live",
		sqlite:   `UPDATE versions SET erased = 0 WHERE seq = %[5]d`,
		postgres: `UPDATE versions SET erased = false WHERE seq = %[5]d`, want: "erasure record's count"},
	{name: "ciphertext changed",
		sqlite:   `UPDATE versions SET ciphertext = randomblob(length(ciphertext)) WHERE seq = %[2]d`,
		postgres: `UPDATE versions SET ciphertext = set_byte(ciphertext, 20, (get_byte(ciphertext, 20) + 1) %% 256) WHERE seq = %[2]d`, want: "does not open"},
	{name: "salt changed",
		sqlite:   `UPDATE versions SET salt = randomblob(32) WHERE seq = %[2]d`,
		postgres: `UPDATE versions SET salt = set_byte(salt, 3, (get_byte(salt, 3) + 1) %% 256) WHERE seq = %[2]d`, want: "do not hash to the stored commitment"},
	{name: "commitment changed",
		sqlite:   `UPDATE versions SET commitment = randomblob(32) WHERE seq = %[2]d`,
		postgres: `UPDATE versions SET commitment = set_byte(commitment, 3, (get_byte(commitment, 3) + 1) %% 256) WHERE seq = %[2]d`, want: "does not match the stored commitment"},
	{name: "research copy changed",
		sqlite:   `UPDATE versions SET deid = randomblob(length(deid)) WHERE seq = %[2]d`,
		postgres: `UPDATE versions SET deid = set_byte(deid, 20, (get_byte(deid, 20) + 1) %% 256) WHERE seq = %[2]d`, want: "research copy does not open"},
	{name: "research copy removed",
		sqlite:   `UPDATE versions SET deid = X'' WHERE seq = %[2]d`,
		postgres: `UPDATE versions SET deid = '' WHERE seq = %[2]d`, want: "research copy named by a de-identification record is missing"},
	{name: "wrapped data key changed",
		sqlite:   `UPDATE data_keys SET wrapped = randomblob(length(wrapped)) WHERE key_id = 'patient:%[10]s'`,
		postgres: `UPDATE data_keys SET wrapped = set_byte(wrapped, 20, (get_byte(wrapped, 20) + 1) %% 256) WHERE key_id = 'patient:%[10]s'`, want: "does not unwrap"},
	{name: "data key of live versions deleted",
		sqlite: `DELETE FROM data_keys WHERE key_id = 'patient:%[10]s'`, want: "data key of a version that is not erased is missing"},
	{name: "leaf data changed",
		sqlite:   `UPDATE leaves SET data = CAST(X'01' || randomblob(32) AS BLOB) WHERE seq = %[2]d`,
		postgres: `UPDATE leaves SET data = set_byte(data, 9, (get_byte(data, 9) + 1) %% 256) WHERE seq = %[2]d`, want: "does not match the stored commitment"},
	{name: "leaf type changed",
		sqlite: `UPDATE leaves SET type = 4 WHERE seq = %[2]d`, want: "type column"},
	{name: "leaf reference changed",
		sqlite:   `UPDATE leaves SET ref = 'Observation/other/_history/1' WHERE seq = %[2]d`,
		postgres: `UPDATE leaves SET ref = 'Observation/other/_history/1' WHERE seq = %[2]d`, want: "reference does not name"},
	// Records are stored compressed (vault.PackRecord): a frame cut short
	// does not decompress, and the stored bytes are what the audit then sees.
	// cmd/fhiranchor's TestVerifyAndAudit rewrites a record as plain JSON instead.
	{name: "record changed",
		sqlite:   `UPDATE leaf_records SET record = substr(record, 1, length(record) - 1) WHERE seq = %[7]d`,
		postgres: `UPDATE leaf_records SET record = substring(record from 1 for length(record) - 1) WHERE seq = %[7]d`, want: "no longer matches its leaf"},
	{name: "record salt changed",
		sqlite:   `UPDATE leaf_records SET salt = randomblob(32) WHERE seq = %[6]d`,
		postgres: `UPDATE leaf_records SET salt = set_byte(salt, 3, (get_byte(salt, 3) + 1) %% 256) WHERE seq = %[6]d`, want: "no longer matches its leaf"},
	{name: "record's subject changed (hidden from the patient's listing)",
		sqlite: `UPDATE leaf_records SET subject = 'Patient/tok-00000000000000000000000000000000' WHERE seq = %[7]d`, want: "subject"},
	{name: "record's time changed",
		sqlite:   `UPDATE leaf_records SET time = time - 86400000000 WHERE seq = %[6]d`,
		postgres: `UPDATE leaf_records SET time = time - interval '1 day' WHERE seq = %[6]d`, want: "time disagrees"},
	{name: "erasure record deleted with its leaf",
		sqlite: `DELETE FROM leaf_records WHERE seq = %[9]d; DELETE FROM leaves WHERE seq = %[9]d`, want: "no erasure record"},
	{name: "de-identification record deleted",
		sqlite: `DELETE FROM leaf_records WHERE seq = %[8]d`, want: "has no record row"},
	{name: "remembered response changed",
		sqlite:   `UPDATE responses SET body = randomblob(length(body)) WHERE key = (SELECT key FROM responses ORDER BY key LIMIT 1)`,
		postgres: `UPDATE responses SET body = set_byte(body, 20, (get_byte(body, 20) + 1) %% 256) WHERE key = (SELECT key FROM responses ORDER BY key LIMIT 1)`, want: "remembered response does not open"},
	{name: "remembered responses swapped between keys",
		sqlite: `CREATE TEMP TABLE k AS SELECT (SELECT key FROM responses ORDER BY key LIMIT 1) AS lo, (SELECT key FROM responses ORDER BY key DESC LIMIT 1) AS hi;
UPDATE responses SET key = X'00' WHERE key = (SELECT lo FROM k);
UPDATE responses SET key = (SELECT lo FROM k) WHERE key = (SELECT hi FROM k);
UPDATE responses SET key = (SELECT hi FROM k) WHERE key = X'00'`,
		postgres: `CREATE TEMP TABLE k AS SELECT (SELECT key FROM responses ORDER BY key LIMIT 1) AS lo, (SELECT key FROM responses ORDER BY key DESC LIMIT 1) AS hi;
UPDATE responses SET key = '\x00' WHERE key = (SELECT lo FROM k);
UPDATE responses SET key = (SELECT lo FROM k) WHERE key = (SELECT hi FROM k);
UPDATE responses SET key = (SELECT hi FROM k) WHERE key = '\x00'`, want: "remembered response does not open"},
	{name: "unsealed response planted",
		sqlite:   `INSERT INTO responses (key, body, created) VALUES (randomblob(32), CAST('{"status":201,"type":"Patient","id":"x","version":1}' AS BLOB), 0)`,
		postgres: `INSERT INTO responses (key, body, created) VALUES ('\x0101', convert_to('{"status":201,"type":"Patient","id":"x","version":1}', 'UTF8'), now())`, want: "remembered response does not open"},
	{name: "index posting removed",
		sqlite: `DELETE FROM postings WHERE seq = %[1]d AND token = (SELECT token FROM postings WHERE seq = %[1]d ORDER BY token LIMIT 1)`, want: "postings differ"},
	{name: "index posting added",
		sqlite:   `INSERT INTO postings (token, seq) VALUES (randomblob(16), %[1]d)`,
		postgres: `INSERT INTO postings (token, seq) VALUES ('\xdeadbeef', %[1]d)`, want: "postings differ"},
	{name: "index postings moved to another version",
		sqlite: `UPDATE postings SET seq = %[2]d WHERE seq = %[1]d AND token NOT IN (SELECT token FROM postings WHERE seq = %[2]d)`, want: "postings differ"},
	{name: "token set and its postings deleted together (the patient hidden from search)",
		// Consistent with each other: only the tokens derived again from
		// the sealed body can tell.
		sqlite: `DELETE FROM postings WHERE seq = %[1]d; DELETE FROM token_sets WHERE seq = %[1]d`, want: "lacks a token"},
	{name: "token set and postings swapped between two versions",
		sqlite: `UPDATE postings SET seq = -seq WHERE seq IN (%[2]d, %[3]d);
UPDATE postings SET seq = CASE seq WHEN -%[2]d THEN %[3]d ELSE %[2]d END WHERE seq < 0;
UPDATE token_sets SET seq = -seq WHERE seq IN (%[2]d, %[3]d);
UPDATE token_sets SET seq = CASE seq WHEN -%[2]d THEN %[3]d ELSE %[2]d END WHERE seq < 0`, want: "token"},
	{name: "token set deleted",
		sqlite: `DELETE FROM token_sets WHERE seq = %[1]d`, want: "lacks a token"},
	{name: "token set lost its last token",
		// The tail cut may also leave a set that does not decode: both are
		// reports about the patient's tokens.
		sqlite:   `UPDATE token_sets SET tokens = substr(tokens, 1, length(tokens) - 17) WHERE seq = %[1]d`,
		postgres: `UPDATE token_sets SET tokens = tokens[1:cardinality(tokens) - 1] WHERE seq = %[1]d`, want: "token"},
	{name: "token set bytes changed",
		sqlite:   `UPDATE token_sets SET tokens = CAST(X'05' || substr(tokens, 2) AS BLOB) WHERE seq = %[1]d`,
		postgres: `UPDATE token_sets SET tokens[1] = '\x05' WHERE seq = %[1]d`, want: "token"},
	{name: "index rules version changed",
		sqlite: `UPDATE index_state SET version = 'older rules'`, want: "built by other rules"},
	{name: "token set planted for a tombstone",
		sqlite: `INSERT INTO token_sets (seq, tokens) SELECT %[4]d, tokens FROM token_sets WHERE seq = %[1]d`, want: "token set for no current live version"},
	{name: "rows of two versions swapped",
		sqlite: `UPDATE versions SET seq = -seq WHERE seq IN (%[2]d, %[3]d);
UPDATE versions SET seq = CASE seq WHEN -%[2]d THEN %[3]d ELSE %[2]d END WHERE seq < 0`, want: "does not match the stored commitment"},
	{name: "last_updated changed",
		sqlite:   `UPDATE versions SET last_updated = last_updated + 1000000 WHERE seq = %[1]d`,
		postgres: `UPDATE versions SET last_updated = last_updated + interval '1 second' WHERE seq = %[1]d`, want: "last_updated"},
	{name: "version number changed",
		sqlite: `UPDATE versions SET version = version + 100 WHERE seq = %[1]d`, want: "does not open"},
	{name: "id changed",
		sqlite: `UPDATE versions SET id = id || 'x' WHERE seq = %[2]d`, want: "does not open"},
	{name: "type changed",
		sqlite: `UPDATE versions SET type = 'Condition' WHERE seq = %[2]d`, want: "does not open"},
	{name: "policy bundle's revision changed",
		sqlite: `UPDATE policies SET revision = CASE WHEN substr(revision, 1, 1) = '0' THEN '1' ELSE '0' END || substr(revision, 2) WHERE version = 1`, want: "revision"},
}

// tamperBackend opens fresh copies of one fixture and edits them.
type tamperBackend interface {
	// open returns a store over a fresh copy of the fixture with edit applied.
	open(t *testing.T, edit string) vault.Store
}

// sqliteTamper copies the fixture's vault file.
type sqliteTamper struct{ base string }

func (b sqliteTamper) open(t *testing.T, edit string) vault.Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vault.db")
	copyFile(t, b.base, path)
	if edit != "" {
		db, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		_, err = db.Exec(edit)
		db.Close()
		if err != nil {
			t.Fatalf("tamper: %v", err)
		}
	}
	s, err := sqlite.New(t.Context(), sqlite.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// postgresTamper copies the fixture's database (CREATE DATABASE ...
// TEMPLATE) for each case.
type postgresTamper struct {
	c    *pgtest.Cluster
	base string // database name
}

func (b *postgresTamper) open(t *testing.T, edit string) vault.Store {
	t.Helper()
	ctx := t.Context()
	name := fmt.Sprintf("tamper_%d", time.Now().UnixNano())
	admin, err := pgx.Connect(ctx, b.c.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = admin.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE "+b.base)
	admin.Close(ctx)
	if err != nil {
		t.Fatalf("copy the fixture: %v", err)
	}
	if edit != "" {
		conn, err := pgx.Connect(ctx, b.c.DSN(name))
		if err != nil {
			t.Fatal(err)
		}
		tx, err := conn.Begin(ctx)
		if err == nil {
			if _, err = tx.Exec(ctx, "SET LOCAL session_replication_role = replica"); err == nil {
				if _, err = tx.Exec(ctx, edit); err == nil {
					err = tx.Commit(ctx)
				}
			}
		}
		conn.Close(ctx)
		if err != nil {
			t.Fatalf("tamper: %v", err)
		}
	}
	s, err := vaultpg.New(ctx, vaultpg.Config{DSN: b.c.DSN(name)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// runTamperSuite audits the untouched fixture (no findings), then each
// edit on a fresh copy (at least one finding, and the expected one).
func runTamperSuite(t *testing.T, f *tamperFixture, b tamperBackend, postgres bool) {
	master, err := vault.LoadOrCreateMasterKey(filepath.Join(f.dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	kr, err := vault.NewKeyring(master)
	if err != nil {
		t.Fatal(err)
	}
	var audited vault.Store
	audit := func(t *testing.T, edit string) gateway.AuditReport {
		t.Helper()
		audited = b.open(t, edit)
		rep, err := gateway.Audit(context.Background(), vault.NewSealed(audited, kr), f.roots)
		if err != nil {
			t.Fatalf("audit: %v", err)
		}
		return rep
	}
	// resourceAt is the resource of the version row at seq in the vault
	// last audited: what a finding about a resource's tokens must name (the
	// audit keeps resources by a hash, and reads the row again to name one).
	resourceAt := func(t *testing.T, seq int64) string {
		rs, err := audited.Versions(context.Background(), seq-1, 1)
		if err != nil || len(rs) == 0 || rs[0].Leaf.Seq != seq {
			t.Fatalf("the version row at seq %d: %v, %v", seq, rs, err)
		}
		return rs[0].Type + "/" + rs[0].ID
	}
	rep := audit(t, "")
	if len(rep.Findings) > 0 {
		t.Fatalf("audit of the untouched vault found %d problems: %+v", len(rep.Findings), rep.Findings)
	}
	if rep.Versions == 0 || rep.Erased == 0 || rep.Copies == 0 || rep.Tokens == 0 || rep.Responses < 2 ||
		rep.Records == 0 || rep.DataKeys == 0 || rep.Policies == 0 || rep.Checkpoints == 0 || rep.Leaves != rep.Versions+rep.Records {
		t.Fatalf("the untouched vault's audit checked too little: %+v", rep)
	}
	t.Logf("untouched: %d versions (%d erased), %d records, %d leaves, %d checkpoints, %d copies, %d tokens, %d keys, %d responses, %d policies",
		rep.Versions, rep.Erased, rep.Records, rep.Leaves, rep.Checkpoints, rep.Copies, rep.Tokens, rep.DataKeys, rep.Responses, rep.Policies)
	cases := tamperCases
	if !postgres {
		cases = everyPostingLevel(cases)
		// The merges the posting cases begin with change nothing the audit
		// checks: a case's finding is its edit's.
		for _, merge := range []string{mergePostingsSQL, midPostingsSQL} {
			merged := audit(t, merge)
			if len(merged.Findings) > 0 || merged.Tokens != rep.Tokens {
				t.Fatalf("audit after a merge: %d tokens (untouched %d), findings %+v", merged.Tokens, rep.Tokens, merged.Findings)
			}
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			edit := tc.sqlite
			if postgres && tc.postgres != "" {
				edit = tc.postgres
			}
			rep := audit(t, f.args().Replace(edit))
			if len(rep.Findings) == 0 {
				t.Fatalf("audit found nothing")
			}
			found := false
			for _, fd := range rep.Findings {
				found = found || strings.Contains(fd.Problem, tc.want)
				t.Logf("%s %d (%s): %s", fd.Table, fd.LeafIndex, fd.Ref, fd.Problem)
				if fd.Table == "tokens" && fd.Ref != "" && fd.Ref != "postings" && fd.Ref != "index_state" {
					if want := resourceAt(t, int64(fd.LeafIndex)+1); fd.Ref != want {
						t.Errorf("a tokens finding at seq %d names %q, want the resource of that version, %q", fd.LeafIndex+1, fd.Ref, want)
					}
				}
			}
			if !found {
				t.Errorf("no finding says %q", tc.want)
			}
		})
	}
}

// fromTokenSetsSQL writes the postings of the token sets above SQLite's
// watermark, which the Store keeps in memory (vault/sqlite recent.go),
// into the table named by %[1]s, and moves the watermark past them, as a
// merge does: the fixture is too small to have merged any. A set is each
// token's length as a uvarint, one byte for tokens shorter than 128 (8 or
// 32 bytes here), then its bytes (vault.EncodeTokenSet): t walks them, pos
// at a length byte, n its value.
const fromTokenSetsSQL = `WITH RECURSIVE t(seq, tokens, pos, n) AS (
	SELECT seq, tokens, 1, %[2]s FROM token_sets WHERE seq > (SELECT merged FROM index_state)
	UNION ALL SELECT seq, tokens, pos + 1 + n, %[3]s FROM t WHERE pos + 1 + n <= length(tokens))
INSERT INTO %[1]s (token, seq) SELECT substr(tokens, pos + 1, n), seq FROM t;
UPDATE index_state SET merged = (SELECT max(seq) FROM token_sets);
`

// byteAtSQL is the value of the byte of tokens at position %s (from 1).
const byteAtSQL = `((instr('0123456789ABCDEF', substr(hex(tokens), 2 * (%[1]s) - 1, 1)) - 1) * 16 +
	instr('0123456789ABCDEF', substr(hex(tokens), 2 * (%[1]s), 1)) - 1)`

func fromTokenSets(table string) string {
	return fmt.Sprintf(fromTokenSetsSQL, table, fmt.Sprintf(byteAtSQL, "1"), fmt.Sprintf(byteAtSQL, "pos + 1 + n"))
}

var (
	mergePostingsSQL = fromTokenSets("postings")
	midPostingsSQL   = fromTokenSets("postings_mid")
)

// everyPostingLevel turns each SQLite edit of the postings into two: one
// of postings after a merge, one of postings_mid. A posting lives in one
// of the levels; an edit of either must be found, and so must a posting
// copied into a second level (the lookups would still answer right; the
// index would not be as written). The recent level is memory, rebuilt
// from the token sets above the watermark: what can be edited of it is
// those sets (the token set cases) and the watermark itself.
func everyPostingLevel(cases []tamperCase) []tamperCase {
	word := regexp.MustCompile(`\bpostings\b`)
	var out []tamperCase
	for _, tc := range cases {
		if !word.MatchString(tc.sqlite) {
			out = append(out, tc)
			continue
		}
		merged, mid := tc, tc
		merged.name += " (merged postings)"
		merged.sqlite = mergePostingsSQL + tc.sqlite
		mid.name += " (middle level)"
		mid.sqlite = midPostingsSQL + word.ReplaceAllString(tc.sqlite, "postings_mid")
		out = append(out, merged, mid)
	}
	return append(out,
		tamperCase{name: "index posting copied into a second level",
			sqlite: mergePostingsSQL + `INSERT INTO postings_mid (token, seq) SELECT token, seq FROM postings WHERE seq = %[1]d LIMIT 1`,
			want:   "postings differ"},
		tamperCase{name: "watermark of the in-memory postings moved past unmerged token sets",
			sqlite: `UPDATE index_state SET merged = (SELECT max(seq) FROM token_sets)`,
			want:   "postings differ"},
		tamperCase{name: "watermark of the in-memory postings moved back over merged ones",
			sqlite: mergePostingsSQL + `UPDATE index_state SET merged = 0`,
			want:   "postings differ"})
}

// TestAuditTamperSQLite is the tamper suite on SQLite: every kind of edit
// to the vault file is reported by the audit; the untouched vault passes.
func TestAuditTamperSQLite(t *testing.T) {
	f := buildTamperFixture(t, "")
	runTamperSuite(t, f, sqliteTamper{base: filepath.Join(f.dir, "vault.db")}, false)
}

// TestAuditTamperPostgres is the same suite on PostgreSQL.
func TestAuditTamperPostgres(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{})
	dsn := c.NewDatabase(t)
	f := buildTamperFixture(t, dsn)
	u := dsn[strings.LastIndex(dsn, "/")+1:]
	if i := strings.Index(u, "?"); i >= 0 {
		u = u[:i]
	}
	runTamperSuite(t, f, &postgresTamper{c: c, base: u}, true)
}

// TestCorruptResearchCopy: a research copy altered at rest is left out of
// the cohort index, with a warning that names its type and leaf only and
// a counter, while cohort counts still answer; the audit names it.
func TestCorruptResearchCopy(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{Quiet: true, Research: gateway.ResearchConfig{
		Privacy: cohort.Privacy{Threshold: 1, Noise: cohort.NoiseNone, RoundTo: 1, RepeatLimit: 100},
	}})
	ehr := []string{"Authorization", "Bearer " + g.Token(t)}
	files := shareddata.Files(t, "synthea")
	var bundle string
	for _, f := range files {
		if strings.HasPrefix(filepath.Base(f), "Clemente_") {
			bundle = f
		}
	}
	r := g.Do(t, http.MethodPost, "", readFile(t, bundle), ehr...)
	mustStatus(t, r, http.StatusOK)
	var patient string
	for _, e := range decodeBundle(t, r.Body).Entry {
		if loc := relativeLocation(e.Response.Location); strings.HasPrefix(loc, "Patient/") {
			patient = strings.Split(loc, "/")[1]
		}
	}
	g.Stop()

	db, err := sql.Open("sqlite", filepath.Join(g.Dir, "vault.db"))
	if err != nil {
		t.Fatal(err)
	}
	var seq int64
	var typ string
	err = db.QueryRow(`SELECT seq, type FROM versions WHERE type = 'Condition' AND length(deid) > 0 ORDER BY seq LIMIT 1`).Scan(&seq, &typ)
	if err == nil {
		_, err = db.Exec(`UPDATE versions SET deid = randomblob(length(deid)) WHERE seq = ?`, seq)
	}
	db.Close()
	if err != nil {
		t.Fatalf("tamper: %v", err)
	}

	g.Restart(t)
	hdr := researcher(t, g, "research-team")
	for _, criteria := range []string{diabetes, hypertension, `{"gender": "male"}`} {
		if _, r := askCohort(t, g, "count", `{"criteria": `+criteria+`}`, hdr); r.Status != http.StatusOK {
			t.Errorf("count of %s = %d %s, want 200", criteria, r.Status, r.Body)
		}
	}
	if n := g.Server.ResearchCopiesSkipped(); n != 1 {
		t.Errorf("ResearchCopiesSkipped = %d, want 1", n)
	}
	logs := string(g.Logs.Bytes())
	want := fmt.Sprintf(`msg="research copy skipped: it does not open or decode" type=%s leaf=%d`, typ, seq-1)
	if !strings.Contains(logs, want) {
		t.Errorf("no warning %q in the log:\n%s", want, logs)
	}
	if strings.Contains(logs, patient) {
		t.Errorf("the log names the patient's id")
	}

	rep, err := gateway.Audit(t.Context(), g.Vault, nil)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range rep.Findings {
		found = found || (f.LeafIndex == uint64(seq-1) && f.Problem == "the research copy does not open")
	}
	if !found || len(rep.Findings) != 1 {
		t.Errorf("audit findings %+v, want one naming leaf %d's research copy", rep.Findings, seq-1)
	}
}

// TestChangedReplayNotServed: a remembered response altered at rest is
// neither replayed nor applied again: the retry fails closed with a 500
// and writes nothing.
func TestChangedReplayNotServed(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{Quiet: true})
	ehr := []string{"Authorization", "Bearer " + g.Token(t), "Idempotency-Key", "k1"}
	patient := []byte(`{"resourceType": "Patient", "gender": "female"}`)
	mustStatus(t, g.Do(t, http.MethodPost, "/Patient", patient, ehr...), http.StatusCreated)
	mustStatus(t, g.Do(t, http.MethodPost, "/Patient", patient, ehr...), http.StatusCreated) // replayed
	g.Stop()
	db, err := sql.Open("sqlite", filepath.Join(g.Dir, "vault.db"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.Exec(`UPDATE responses SET body = CAST('{"status":201,"type":"Patient","id":"someone-else","version":1}' AS BLOB)`)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	g.Restart(t)
	before := g.Stats(t)
	r := g.Do(t, http.MethodPost, "/Patient", patient, ehr...)
	if r.Status != http.StatusInternalServerError || strings.Contains(string(r.Body), "someone-else") {
		t.Errorf("retry with an altered remembered response = %d %s, want 500", r.Status, r.Body)
	}
	if after := g.Stats(t); after.Versions != before.Versions {
		t.Errorf("the retry wrote %d versions", after.Versions-before.Versions)
	}
}

package postgres

import (
	"context"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fhiranchor/fhiranchor/internal/pgdb"
	"github.com/fhiranchor/fhiranchor/vault"
)

// schemaV1 is the first schema migration.
//
//go:embed schema.sql
var schemaV1 string

// schemaV2 drops the responses remembered before they were sealed.
//
//go:embed schema_v2.sql
var schemaV2 string

// schemaV3 indexes versions by type, for history listings.
//
//go:embed schema_v3.sql
var schemaV3 string

// schemaV4 keeps the client that wrote each version.
//
//go:embed schema_v4.sql
var schemaV4 string

// schemaV5 stores the blind index as postings and token sets.
//
//go:embed schema_v5.sql
var schemaV5 string

// migrations are applied in order, each once. Never edit a released
// migration; append a new one.
var migrations = []string{schemaV1, schemaV2, schemaV3, schemaV4, schemaV5}

// component names the vault's row of pgdb's schema versions.
const component = "vault"

// Config configures a Store.
type Config struct {
	// DSN is the PostgreSQL connection string (URL or key=value). The
	// password may come from PGPASSWORD or a .pgpass file instead.
	DSN string
	// MaxConns bounds the pool; 0 means pgx's default.
	MaxConns int32
}

// Validate reports whether c can be used to open a Store.
func (c Config) Validate() error {
	if c.DSN == "" {
		return errors.New("postgres: DSN is empty")
	}
	if c.MaxConns < 0 {
		return errors.New("postgres: MaxConns is negative")
	}
	return nil
}

// Store is a vault.Store on PostgreSQL. It is safe for concurrent use, also
// by several Stores in several processes on one database.
type Store struct {
	pool *pgxpool.Pool
}

var _ vault.Store = (*Store)(nil)

// New connects to the database and applies any pending schema migrations.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pool, err := pgdb.Open(ctx, pgdb.Options{DSN: cfg.DSN, MaxConns: cfg.MaxConns, Component: component, Migrations: migrations})
	if err != nil {
		return nil, err
	}
	return &Store{pool: pool}, nil
}

// Close closes the pool, waiting for connections in use to be returned.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

const recordColumns = `v.seq, v.version, v.last_updated, v.deleted, v.erased, v.key_id,
	v.ciphertext, v.salt, v.commitment, v.deid, l.type, l.data, l.ref, v.client`

const selectRecord = `SELECT ` + recordColumns + `
FROM versions v JOIN leaves l ON l.seq = v.seq
WHERE v.type = $1 AND v.id = $2`

// changesSQL selects what Versions and Changes return: every version row,
// also one whose leaf is gone.
const changesSQL = `SELECT v.type, v.id, v.seq, v.version, v.last_updated, v.deleted, v.erased, v.key_id,
	v.ciphertext, v.salt, v.commitment, v.deid, coalesce(l.type, 0::smallint), coalesce(l.data, ''::bytea), coalesce(l.ref, ''), v.client
FROM versions v LEFT JOIN leaves l ON l.seq = v.seq`

// Statements. pgx prepares each on first use on a connection and keeps it.
const (
	// sqlSealed: versions_by_key finds the key's versions, the unique
	// (type, id, version) index says whether each is its resource's latest.
	sqlSealed = changesSQL + ` WHERE v.key_id = $1 AND v.version =
	(SELECT max(w.version) FROM versions w WHERE w.type = v.type AND w.id = v.id) ORDER BY v.type, v.id`
	sqlCurrent = selectRecord + ` ORDER BY v.version DESC LIMIT 1`
	sqlVersion = selectRecord + ` AND v.version = $3`
	sqlHistory = selectRecord + ` ORDER BY v.version DESC`

	// Every version row, also one whose leaf is gone: an audit must see it.
	sqlVersions = changesSQL + ` WHERE v.seq > $1 ORDER BY v.seq LIMIT $2`
	// Changes: Before (exclusive), Since (NULL for no bound), the limit
	// (NULL for none), then the type for sqlChangesOfType, which
	// versions_by_type serves without a sort.
	sqlChanges       = changesSQL + ` WHERE v.seq < $1 AND ($2::timestamptz IS NULL OR v.last_updated >= $2) ORDER BY v.seq DESC LIMIT $3`
	sqlChangesOfType = changesSQL + ` WHERE v.type = $4 AND v.seq < $1 AND ($2::timestamptz IS NULL OR v.last_updated >= $2) ORDER BY v.seq DESC LIMIT $3`
	// sqlFind and sqlFindAny map the postings' Seqs to resources by an
	// index-only scan of versions_ident. The token is an HMAC over the
	// type; the type test keeps them exact all the same.
	sqlFindAny = `SELECT DISTINCT v.id FROM postings p JOIN versions v ON v.seq = p.seq
WHERE v.type = $1 AND p.token = ANY ($2::bytea[]) ORDER BY v.id`
	// sqlSetTokens replaces the tokens of the resource's current version if
	// it is version $3 and live, in one statement (the two posting
	// statements touch disjoint rows, as in sqlPut; $4 is sorted and
	// distinct). The result counts the resource's versions found (0 or 1)
	// and those that qualified.
	sqlSetTokens = `WITH cur AS (
	SELECT seq, version, deleted, erased FROM versions WHERE type = $1 AND id = $2 ORDER BY version DESC LIMIT 1
), ok AS (
	SELECT seq FROM cur WHERE version = $3 AND NOT deleted AND NOT erased
), old AS (
	SELECT s.seq, s.tokens FROM token_sets s JOIN ok ON s.seq = ok.seq
), dropped AS (
	DELETE FROM postings p USING old
	WHERE p.token = ANY (old.tokens) AND p.seq = old.seq AND p.token <> ALL ($4::bytea[])
), added AS (
	INSERT INTO postings (token, seq)
	SELECT t, ok.seq FROM ok, unnest($4::bytea[]) AS t
	ON CONFLICT DO NOTHING
), setrow AS (
	INSERT INTO token_sets (seq, tokens) SELECT seq, $4::bytea[] FROM ok WHERE cardinality($4::bytea[]) > 0
	ON CONFLICT (seq) DO UPDATE SET tokens = excluded.tokens
), noset AS (
	DELETE FROM token_sets s USING ok WHERE s.seq = ok.seq AND cardinality($4::bytea[]) = 0
)
SELECT (SELECT count(*) FROM cur), (SELECT count(*) FROM ok)`
	// sqlCurrentLive is the current live version at $1, if it is one.
	sqlCurrentLive = `WITH v AS (
	SELECT type, id FROM versions WHERE seq = $1
), cur AS (
	SELECT w.seq, w.deleted, w.erased FROM versions w JOIN v ON w.type = v.type AND w.id = v.id
	ORDER BY w.version DESC LIMIT 1
)
SELECT seq FROM cur WHERE seq = $1 AND NOT deleted AND NOT erased`
	// sqlDropTokens removes the posting ($1, $2) unless $2 is a current
	// live version whose token set holds $1; the result counts such
	// versions (0 or 1).
	sqlDropTokens = `WITH belongs AS (
	SELECT FROM (` + sqlCurrentLive + `) live JOIN token_sets s ON s.seq = live.seq WHERE $2 = ANY (s.tokens)
), dropped AS (
	DELETE FROM postings WHERE seq = $1 AND token = $2 AND NOT EXISTS (SELECT FROM belongs)
)
SELECT count(*) FROM belongs`
	// sqlDropTokenSet removes the token set at $1 and its postings unless
	// $1 is its resource's current live version. The result counts the
	// live versions at $1 (0 or 1).
	sqlDropTokenSet = `WITH live AS (` + sqlCurrentLive + `
), gone AS (
	DELETE FROM token_sets WHERE seq = $1 AND NOT EXISTS (SELECT FROM live) RETURNING tokens
), dropped AS (
	DELETE FROM postings p USING gone WHERE p.token = ANY (gone.tokens) AND p.seq = $1
)
SELECT count(*) FROM live`
	sqlTokenSets       = `SELECT seq, tokens FROM token_sets WHERE seq > $1 ORDER BY seq LIMIT $2`
	sqlIDs             = `SELECT DISTINCT id FROM versions WHERE type = $1 ORDER BY id LIMIT $2`
	sqlIndexVersion    = `SELECT version FROM index_state`
	sqlSetIndexVersion = `UPDATE index_state SET version = $1`
	sqlRecords         = `SELECT seq, type, record, salt, subject, actor, time FROM leaf_records
WHERE seq > $1 ORDER BY seq LIMIT $2`
	sqlWalkPostings = `SELECT token, seq FROM postings`
	sqlIndexEntries = `SELECT token, seq FROM postings WHERE (token, seq) > ($1, $2) ORDER BY token, seq LIMIT $3`
	sqlResponses    = `SELECT key, body, created FROM responses WHERE key > $1 ORDER BY key LIMIT $2`
	sqlDataKeys     = `SELECT key_id, wrapped FROM data_keys WHERE key_id > $1 ORDER BY key_id LIMIT $2`
	sqlLeaves       = `SELECT seq, type, data, ref FROM leaves WHERE seq > $1 ORDER BY seq LIMIT $2`
	sqlLeaf         = `SELECT l.seq, l.type, l.data, l.ref, r.record, r.salt, coalesce(r.subject, ''), coalesce(r.actor, ''), r.time
FROM leaves l LEFT JOIN leaf_records r ON r.seq = l.seq WHERE l.seq = $1`
	sqlFind     = `SELECT v.id FROM postings p JOIN versions v ON v.seq = p.seq WHERE v.type = $1 AND p.token = $2`
	sqlDataKey  = `SELECT wrapped FROM data_keys WHERE key_id = $1`
	sqlResponse = `SELECT body FROM responses WHERE key = $1`
	sqlStats    = `SELECT (SELECT count(*) FROM versions), (SELECT count(*) FROM leaves),
	(SELECT count(*) FROM data_keys), (SELECT count(*) FROM responses), (SELECT count(*) FROM policies)`
	sqlPolicy   = `SELECT version, revision, bundle, created, author FROM policies WHERE version = $1`
	sqlPolicies = `SELECT version, revision, created, author FROM policies ORDER BY version DESC`

	sqlLock = `SELECT pg_advisory_xact_lock($1)`

	// sqlLockSeq takes the lock that every transaction which queues leaves
	// or stores policies holds from its first such write to its commit (see
	// schema.sql). A statement that runs after it sees every leaf and
	// policy committed before, so the largest Seq or version plus one is
	// the next, and no one else takes one until this transaction ends.
	sqlLockSeq = `SELECT FROM seq_lock FOR UPDATE`
	// sqlNextSeq runs after sqlLockSeq: the transaction then numbers its
	// leaves itself, from this Seq on.
	sqlNextSeq = `SELECT coalesce(max(seq), 0) + 1 FROM leaves`

	// sqlPut stores a version and its leaf at Seq $16, the transaction's
	// next, under the Seq lock. ON CONFLICT turns a version already stored into no row rather
	// than an error that would abort the transaction, so the caller can go
	// on. (Every Put holds the Seq lock and so sees every version committed
	// before; ON CONFLICT also covers a writer that did not, at no
	// measurable cost.) The version becomes current if it is newer than the
	// latest: its token set and postings then replace the latest
	// version's, none for a tombstone. The two posting statements touch
	// disjoint rows (the old Seq's; the new Seq's), since the
	// sub-statements of one WITH run in no defined order and do not see
	// each other's writes. $14 is sorted and distinct. The result is the
	// Seq of the version, or no row on a conflict.
	//
	// $1 type, $2 id, $3 version, $4 last_updated, $5 deleted, $6 key_id,
	// $7 ciphertext, $8 salt, $9 commitment, $10 deid, $11 leaf type,
	// $12 leaf data, $13 ref, $14 tokens, $15 client, $16 seq.
	sqlPut = `WITH latest AS (
	SELECT seq, version FROM versions WHERE type = $1 AND id = $2 ORDER BY version DESC LIMIT 1
), stored AS (
	INSERT INTO versions (seq, type, id, version, last_updated, deleted, key_id, ciphertext, salt, commitment, deid, client)
	VALUES ($16, $1, $2, $3, $4, $5::boolean, $6, $7, $8, $9, $10, $15)
	ON CONFLICT (type, id, version) DO NOTHING
	RETURNING seq
), leaf AS (
	INSERT INTO leaves (seq, type, data, ref) SELECT seq, $11, $12, $13 FROM stored
), newest AS (
	SELECT stored.seq FROM stored WHERE NOT EXISTS (SELECT FROM latest WHERE latest.version >= $3)
), oldset AS (
	DELETE FROM token_sets s USING newest, latest WHERE s.seq = latest.seq RETURNING s.seq, s.tokens
), dropped AS (
	DELETE FROM postings p USING oldset WHERE p.token = ANY (oldset.tokens) AND p.seq = oldset.seq
), added AS (
	INSERT INTO postings (token, seq)
	SELECT t, newest.seq FROM newest, unnest($14::bytea[]) AS t WHERE NOT $5::boolean
), newset AS (
	INSERT INTO token_sets (seq, tokens)
	SELECT seq, $14::bytea[] FROM newest WHERE NOT $5::boolean AND cardinality($14::bytea[]) > 0
)
SELECT seq FROM stored`

	// sqlAddLeaf queues a leaf at Seq $10, the transaction's next, under
	// the Seq lock and, if $8, its record.
	sqlAddLeaf = `WITH leaf AS (
	INSERT INTO leaves (seq, type, data, ref) VALUES ($10, $1, $2, $3)
)
INSERT INTO leaf_records (seq, type, record, salt, subject, actor, time)
SELECT $10, $1, $4, $5, $6, $7, $9 WHERE $8::boolean`

	sqlPutDataKey  = `INSERT INTO data_keys (key_id, wrapped) VALUES ($1, $2) ON CONFLICT DO NOTHING`
	sqlPutResponse = `INSERT INTO responses (key, body, created) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`

	// sqlPolicyExists and sqlPutPolicy run under the Seq lock, which every
	// writer of policies holds until it commits: the check sees every
	// policy committed before, and the version is the next.
	sqlPolicyExists = `SELECT EXISTS (SELECT FROM policies WHERE revision = $1)`
	sqlPutPolicy    = `INSERT INTO policies (version, revision, bundle, created, author)
SELECT coalesce(max(version), 0) + 1, $1, $2, $3, $4 FROM policies RETURNING version`

	sqlDeleteKey = `DELETE FROM data_keys WHERE key_id = $1`
	// Erasure overwrites: the UPDATE writes row versions without the
	// content. PostgreSQL keeps the old row versions as dead tuples until
	// VACUUM reclaims them; see schema.sql.
	sqlEraseTokens = `WITH gone AS (
	DELETE FROM token_sets s USING versions v WHERE v.key_id = $1 AND s.seq = v.seq RETURNING s.seq, s.tokens
)
DELETE FROM postings p USING gone WHERE p.token = ANY (gone.tokens) AND p.seq = gone.seq`
	sqlEraseVersions = `UPDATE versions SET ciphertext = '', salt = '', deid = '', erased = true
WHERE key_id = $1 AND NOT erased`
)

// Filters of FindLeaves, as bits of a mask.
const (
	filterType = 1 << iota
	filterSubject
	filterActor
	numFindLeaves
)

// findLeavesSQL holds the FindLeaves query for each set of filters. Each
// set gets its own statement rather than one whose terms match anything
// when a parameter is empty, so that the planner sees which columns are
// constrained and reads the matching index backwards: its trailing seq gives
// the order, the Before bound and the LIMIT without a sort.
var findLeavesSQL = func() (qs [numFindLeaves]string) {
	for mask := range qs {
		q := `SELECT l.seq, l.type, l.data, l.ref, r.record, r.salt, r.subject, r.actor, r.time
FROM leaf_records r JOIN leaves l ON l.seq = r.seq
WHERE r.seq < $1`
		n := 1
		for _, f := range []struct {
			bit int
			col string
		}{{filterType, "type"}, {filterSubject, "subject"}, {filterActor, "actor"}} {
			if mask&f.bit != 0 {
				n++
				q += fmt.Sprintf(` AND r.%s = $%d`, f.col, n)
			}
		}
		qs[mask] = q + fmt.Sprintf(` ORDER BY r.seq DESC LIMIT $%d`, n+1)
	}
	return qs
}()

// beginSQL begins an Update's transaction, in one round trip. Its
// statements are few, prepared, and look rows up by key, yet with the
// default plan_cache_mode PostgreSQL plans the CTEs of Put afresh on every
// execution, which doubles its cost; a generic plan is as good.
const beginSQL = `BEGIN; SET LOCAL plan_cache_mode = force_generic_plan`

// Update runs fn in one transaction and commits it if fn returns nil. It
// rolls back if fn fails or panics, or if ctx ends first.
func (s *Store) Update(ctx context.Context, fn func(vault.Tx) error) error {
	ptx, err := s.pool.BeginTx(ctx, pgx.TxOptions{BeginQuery: beginSQL})
	if err != nil {
		return fmt.Errorf("begin postgres transaction: %w", mapErr(err))
	}
	done := false
	defer func() {
		if done {
			return
		}
		// Also when fn panics. Rolling back must not depend on ctx, which
		// may be what ended the Update; a connection that cannot roll back
		// is closed by the pool, which ends the transaction too.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		ptx.Rollback(rctx)
	}()
	t := &tx{tx: ptx}
	if err := fn(t); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("commit postgres transaction: %w", err)
	}
	if err := t.flush(ctx); err != nil {
		return fmt.Errorf("commit postgres transaction: %w", err)
	}
	done = true
	if err := ptx.Commit(ctx); err != nil {
		// Commit of a transaction in which a statement failed rolls back and
		// reports pgx.ErrTxCommitRollback.
		return fmt.Errorf("commit postgres transaction: %w", mapErr(err))
	}
	return nil
}

// Current returns the latest version of a resource, tombstones included.
func (s *Store) Current(ctx context.Context, typ, id string) (vault.Record, error) {
	r, err := scanRecord(s.pool.QueryRow(ctx, sqlCurrent, typ, id), typ, id)
	if err != nil {
		return vault.Record{}, fmt.Errorf("get current %s: %w", typ, err)
	}
	return r, nil
}

// Currents returns the latest version of each of ids of type typ that
// has one, in one query.
func (s *Store) Currents(ctx context.Context, typ string, ids []string) ([]vault.Record, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, _ := s.pool.Query(ctx, `SELECT DISTINCT ON (v.id) v.id, `+recordColumns+`
FROM versions v JOIN leaves l ON l.seq = v.seq
WHERE v.type = $1 AND v.id = ANY ($2::text[]) ORDER BY v.id, v.version DESC`, typ, ids)
	out, err := collect(rows, func(row pgx.Row) (vault.Record, error) {
		var id string
		r, err := scanRecord(prefixRow{row, &id}, typ, "")
		r.ID = id
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("get current %s: %w", typ, err)
	}
	return out, nil
}

// prefixRow scans a row's first column into first and the rest as
// scanRecord asks.
type prefixRow struct {
	row   pgx.Row
	first any
}

func (p prefixRow) Scan(dest ...any) error {
	return p.row.Scan(append([]any{p.first}, dest...)...)
}

// Version returns one version of a resource.
func (s *Store) Version(ctx context.Context, typ, id string, version int64) (vault.Record, error) {
	r, err := scanRecord(s.pool.QueryRow(ctx, sqlVersion, typ, id, version), typ, id)
	if err != nil {
		return vault.Record{}, fmt.Errorf("get %s version %d: %w", typ, version, err)
	}
	return r, nil
}

// History returns every version of a resource, newest first.
func (s *Store) History(ctx context.Context, typ, id string) ([]vault.Record, error) {
	rows, _ := s.pool.Query(ctx, sqlHistory, typ, id)
	rs, err := collect(rows, func(row pgx.Row) (vault.Record, error) { return scanRecord(row, typ, id) })
	if err != nil {
		return nil, fmt.Errorf("get %s history: %w", typ, err)
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("get %s history: %w", typ, vault.ErrNotFound)
	}
	return rs, nil
}

// DataKey returns a wrapped data key.
func (s *Store) DataKey(ctx context.Context, keyID string) ([]byte, error) {
	return queryBlob(s.pool.QueryRow(ctx, sqlDataKey, keyID), "get data key")
}

// Versions returns up to limit versions of any resource whose leaf Seq is
// > after, in Seq order.
func (s *Store) Versions(ctx context.Context, after int64, limit int) ([]vault.Record, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, _ := s.pool.Query(ctx, sqlVersions, after, limit)
	rs, err := collect(rows, scanTypedRecord)
	if err != nil {
		return nil, fmt.Errorf("list versions: %w", err)
	}
	return rs, nil
}

// Changes returns the versions that match f, newest first.
func (s *Store) Changes(ctx context.Context, f vault.ChangeFilter) ([]vault.Record, error) {
	before := f.Before
	if before <= 0 {
		before = math.MaxInt64
	}
	var since *time.Time // NULL: no bound
	if !f.Since.IsZero() {
		since = &f.Since
	}
	var limit *int64 // NULL: LIMIT ALL
	if f.Limit > 0 {
		n := int64(f.Limit)
		limit = &n
	}
	q, args := sqlChanges, []any{before, since, limit}
	if f.Type != "" {
		q, args = sqlChangesOfType, append(args, f.Type)
	}
	rows, _ := s.pool.Query(ctx, q, args...)
	rs, err := collect(rows, scanTypedRecord)
	if err != nil {
		return nil, fmt.Errorf("list changes: %w", err)
	}
	return rs, nil
}

// Sealed returns the current versions sealed under keyID, by type and id.
func (s *Store) Sealed(ctx context.Context, keyID string) ([]vault.Record, error) {
	rows, _ := s.pool.Query(ctx, sqlSealed, keyID)
	rs, err := collect(rows, scanTypedRecord)
	if err != nil {
		return nil, fmt.Errorf("list sealed versions: %w", err)
	}
	return rs, nil
}

// scanTypedRecord reads a row of changesSQL.
func scanTypedRecord(row pgx.Row) (vault.Record, error) {
	var typ, id string
	r, err := scanRecord(prefixed{row, []any{&typ, &id}}, "", "")
	r.Type, r.ID = typ, id
	return r, err
}

// Records returns the leaf records as stored, in Seq order.
func (s *Store) Records(ctx context.Context, after int64, limit int) ([]vault.Leaf, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, _ := s.pool.Query(ctx, sqlRecords, after, limit)
	ls, err := collect(rows, func(row pgx.Row) (vault.Leaf, error) {
		var l vault.Leaf
		var typ int16
		err := row.Scan(&l.Seq, &typ, &l.Record, &l.Salt, &l.Subject, &l.Actor, &l.Time)
		l.Record = vault.UnpackRecord(l.Record)
		l.Type, l.Time = uint8(typ), l.Time.UTC()
		return l, err
	})
	if err != nil {
		return nil, fmt.Errorf("list records: %w", err)
	}
	return ls, nil
}

// IndexEntries returns blind-index entries in (type, id, token) order.
func (s *Store) IndexEntries(ctx context.Context, after vault.IndexEntry, limit int) ([]vault.IndexEntry, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, _ := s.pool.Query(ctx, sqlIndexEntries, nonNil(after.Token), after.Seq, limit)
	es, err := collect(rows, func(row pgx.Row) (vault.IndexEntry, error) {
		var e vault.IndexEntry
		err := row.Scan(&e.Token, &e.Seq)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("list index entries: %w", err)
	}
	return es, nil
}

// WalkPostings calls fn with every posting, in the order of one scan of
// the table (a single statement reads one snapshot).
func (s *Store) WalkPostings(ctx context.Context, fn func(token []byte, seq int64)) error {
	rows, _ := s.pool.Query(ctx, sqlWalkPostings)
	defer rows.Close()
	var token []byte
	var seq int64
	for rows.Next() {
		if err := rows.Scan(&token, &seq); err != nil {
			return fmt.Errorf("walk postings: %w", mapErr(err))
		}
		fn(token, seq)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("walk postings: %w", mapErr(err))
	}
	return nil
}

// IDs returns the ids of the resources of type typ, ascending.
func (s *Store) IDs(ctx context.Context, typ string, limit int) ([]string, error) {
	rows, _ := s.pool.Query(ctx, sqlIDs, typ, limit)
	ids, err := collect(rows, scanString)
	if err != nil {
		return nil, fmt.Errorf("list %s ids: %w", typ, err)
	}
	return ids, nil
}

// TokenSets returns token sets in Seq order.
func (s *Store) TokenSets(ctx context.Context, after int64, limit int) ([]vault.TokenSet, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, _ := s.pool.Query(ctx, sqlTokenSets, after, limit)
	sets, err := collect(rows, func(row pgx.Row) (vault.TokenSet, error) {
		var t vault.TokenSet
		err := row.Scan(&t.Seq, &t.Tokens)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("list token sets: %w", err)
	}
	return sets, nil
}

// IndexVersion returns the version of the rules the index was built by.
func (s *Store) IndexVersion(ctx context.Context) (string, error) {
	var v string
	if err := s.pool.QueryRow(ctx, sqlIndexVersion).Scan(&v); err != nil {
		return "", fmt.Errorf("get index version: %w", mapErr(err))
	}
	return v, nil
}

// Response returns the committed response remembered for an idempotency key.
func (s *Store) Response(ctx context.Context, key []byte) ([]byte, error) {
	return queryBlob(s.pool.QueryRow(ctx, sqlResponse, nonNil(key)), "get response")
}

// Responses returns remembered responses in key order.
func (s *Store) Responses(ctx context.Context, after []byte, limit int) ([]vault.Response, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, _ := s.pool.Query(ctx, sqlResponses, nonNil(after), limit)
	out, err := collect(rows, func(row pgx.Row) (vault.Response, error) {
		var r vault.Response
		err := row.Scan(&r.Key, &r.Body, &r.Created)
		r.Created = r.Created.UTC()
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("list responses: %w", err)
	}
	return out, nil
}

// DataKeys returns wrapped data keys in the database's order of ids.
func (s *Store) DataKeys(ctx context.Context, after string, limit int) ([]vault.WrappedKey, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, _ := s.pool.Query(ctx, sqlDataKeys, after, limit)
	out, err := collect(rows, func(row pgx.Row) (vault.WrappedKey, error) {
		var k vault.WrappedKey
		err := row.Scan(&k.ID, &k.Wrapped)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("list data keys: %w", err)
	}
	return out, nil
}

// prefixed scans extra leading columns before the ones scanRecord reads.
type prefixed struct {
	row   pgx.Row
	first []any
}

func (p prefixed) Scan(dest ...any) error { return p.row.Scan(append(p.first, dest...)...) }

// Leaves returns up to limit leaves with Seq > after, in Seq order, with
// Seq, Type, Data and Ref.
func (s *Store) Leaves(ctx context.Context, after int64, limit int) ([]vault.Leaf, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, _ := s.pool.Query(ctx, sqlLeaves, after, limit)
	ls, err := collect(rows, func(row pgx.Row) (vault.Leaf, error) {
		var l vault.Leaf
		var typ int16
		err := row.Scan(&l.Seq, &typ, &l.Data, &l.Ref)
		l.Type = uint8(typ)
		return l, err
	})
	if err != nil {
		return nil, fmt.Errorf("get leaves: %w", err)
	}
	return ls, nil
}

// Leaf returns one leaf with its record, if it has one.
func (s *Store) Leaf(ctx context.Context, seq int64) (vault.Leaf, error) {
	l, err := scanLeaf(s.pool.QueryRow(ctx, sqlLeaf, seq))
	if pgdb.IsNoRows(err) {
		err = vault.ErrNotFound
	}
	if err != nil {
		return vault.Leaf{}, fmt.Errorf("get leaf %d: %w", seq, mapErr(err))
	}
	return l, nil
}

// FindLeaves returns the leaves with a record that match f, newest first.
func (s *Store) FindLeaves(ctx context.Context, f vault.LeafFilter) ([]vault.Leaf, error) {
	before := f.Before
	if before <= 0 {
		before = math.MaxInt64
	}
	mask := 0
	args := []any{before}
	if f.Type != 0 {
		mask |= filterType
		args = append(args, int16(f.Type))
	}
	if f.Subject != "" {
		mask |= filterSubject
		args = append(args, f.Subject)
	}
	if f.Actor != "" {
		mask |= filterActor
		args = append(args, f.Actor)
	}
	var limit *int64 // NULL: LIMIT ALL
	if f.Limit > 0 {
		n := int64(f.Limit)
		limit = &n
	}
	args = append(args, limit)
	rows, _ := s.pool.Query(ctx, findLeavesSQL[mask], args...)
	ls, err := collect(rows, scanLeaf)
	if err != nil {
		return nil, fmt.Errorf("find leaves: %w", err)
	}
	return ls, nil
}

// Find returns the ids of the live resources of type typ whose current
// version carries token, as committed.
func (s *Store) Find(ctx context.Context, typ string, token []byte) ([]string, error) {
	rows, _ := s.pool.Query(ctx, sqlFind, typ, nonNil(token))
	ids, err := collect(rows, scanString)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", typ, err)
	}
	return ids, nil
}

// FindAny returns the ids, ascending, of the live resources of type typ
// whose current version carries any of tokens, as committed.
func (s *Store) FindAny(ctx context.Context, typ string, tokens [][]byte) ([]string, error) {
	if len(tokens) == 0 {
		return nil, nil
	}
	rows, _ := s.pool.Query(ctx, sqlFindAny, typ, nonNilAll(tokens))
	ids, err := collect(rows, scanString)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", typ, err)
	}
	return ids, nil
}

// FindAll returns the ids, ascending, of the live resources of type typ
// whose current version carries at least one token of every clause. The
// clause with the fewest postings (vault.ByFewest; token
// statistics cannot tell a patient's reference from a common code) drives
// one query that probes the other clauses' (token, seq) keys for each of
// its Seqs.
func (s *Store) FindAll(ctx context.Context, typ string, clauses [][][]byte) ([]string, error) {
	switch {
	case len(clauses) == 0:
		return nil, nil
	case len(clauses) == 1:
		return s.FindAny(ctx, typ, clauses[0])
	}
	order, err := vault.ByFewest(clauses, func(tokens [][]byte) (int, error) {
		var n int
		err := s.pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM postings WHERE token = ANY ($1::bytea[]) LIMIT $2) c`,
			nonNilAll(tokens), vault.FindAllCap).Scan(&n)
		return n, err
	})
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", typ, err)
	}
	if order == nil {
		return nil, nil
	}
	args := []any{typ, nonNilAll(clauses[order[0]])}
	q := `SELECT DISTINCT v.id FROM postings p JOIN versions v ON v.seq = p.seq WHERE v.type = $1 AND p.token = ANY ($2::bytea[])`
	for k, i := range order[1:] {
		args = append(args, nonNilAll(clauses[i]))
		a := "q" + strconv.Itoa(k)
		q += ` AND EXISTS (SELECT 1 FROM postings ` + a + ` WHERE ` + a + `.seq = p.seq AND ` + a + `.token = ANY ($` + strconv.Itoa(len(args)) + `::bytea[]))`
	}
	rows, _ := s.pool.Query(ctx, q+` ORDER BY v.id`, args...)
	ids, err := collect(rows, scanString)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", typ, err)
	}
	return ids, nil
}

// nonNilAll binds each of tokens as a bytea, none as NULL.
func nonNilAll(tokens [][]byte) [][]byte {
	out := make([][]byte, len(tokens))
	for i, tok := range tokens {
		out[i] = nonNil(tok)
	}
	return out
}

// Policy returns one version of the policy bundle.
func (s *Store) Policy(ctx context.Context, version int64) (vault.Policy, error) {
	var p vault.Policy
	err := s.pool.QueryRow(ctx, sqlPolicy, version).Scan(&p.Version, &p.Revision, &p.Bundle, &p.Created, &p.Author)
	if pgdb.IsNoRows(err) {
		err = vault.ErrNotFound
	}
	if err != nil {
		return vault.Policy{}, fmt.Errorf("get policy version %d: %w", version, mapErr(err))
	}
	p.Created = p.Created.UTC()
	return p, nil
}

// Policies returns every policy version, newest first, without bundles.
func (s *Store) Policies(ctx context.Context) ([]vault.Policy, error) {
	rows, _ := s.pool.Query(ctx, sqlPolicies)
	ps, err := collect(rows, func(row pgx.Row) (vault.Policy, error) {
		var p vault.Policy
		err := row.Scan(&p.Version, &p.Revision, &p.Created, &p.Author)
		p.Created = p.Created.UTC()
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("list policies: %w", err)
	}
	return ps, nil
}

// Stats counts what the store holds. It counts every row of five tables, so
// it is meant for health checks and tests, not hot paths.
func (s *Store) Stats(ctx context.Context) (vault.Stats, error) {
	var st vault.Stats
	err := s.pool.QueryRow(ctx, sqlStats).Scan(&st.Versions, &st.Leaves, &st.DataKeys, &st.Responses, &st.Policies)
	if err != nil {
		return vault.Stats{}, fmt.Errorf("get stats: %w", mapErr(err))
	}
	return st, nil
}

// tx is a vault.Tx on one PostgreSQL transaction.
//
// Once it holds the Seq lock, the transaction numbers its leaves itself
// (nextSeq), so that AddLeaf, whose leaves never collide with another's,
// need not wait for the server: its statements are held in pending and
// sent ahead of a later statement of the transaction (the next Put's, say;
// Find and FindAny, which read no leaves, leave them pending) or of its
// commit, in the same round trip. A failure of one of them fails that
// statement, so the Update fails and rolls back as if AddLeaf had
// failed.
type tx struct {
	tx pgx.Tx
	// seqLocked is set once the transaction holds the Seq lock; nextSeq is
	// then the Seq of its next leaf.
	seqLocked bool
	nextSeq   int64
	// pending holds statements not yet sent (see batch).
	pending []pendingQuery
	// conflict is set when a Put, sent after it returned, found its
	// version already stored: the transaction then fails every call and
	// cannot commit (the Seq it numbered is not used, and Seqs commit
	// without gaps).
	conflict error
}

// pendingQuery is a statement held for the next round trip: AddLeaf's,
// and Put's.
type pendingQuery struct {
	sql  string
	args []any
	// put names the version a sqlPut stores, whose answer (a row, or none
	// for a version already stored) sets tx.conflict.
	put *putOf
}

type putOf struct {
	typ     string
	version int64
}

// batch starts a batch with the pending statements, which it hands over.
func (t *tx) batch() *pgx.Batch {
	b := &pgx.Batch{}
	for _, q := range t.pending {
		if q.put == nil {
			b.Queue(q.sql, q.args...).Exec(func(pgconn.CommandTag) error { return nil })
			continue
		}
		put := q.put
		b.Queue(q.sql, q.args...).Query(func(rows pgx.Rows) error {
			// Not an error here: pgx drops the prepared statements of a
			// batch whose callback fails. sendBatch reports it.
			if !rows.Next() && t.conflict == nil {
				t.conflict = fmt.Errorf("put %s version %d: %w", put.typ, put.version, vault.ErrConflict)
			}
			return nil
		})
	}
	t.pending = nil
	return b
}

// flush sends the pending statements, if any.
func (t *tx) flush(ctx context.Context) error {
	if t.conflict != nil {
		return t.conflict
	}
	if len(t.pending) == 0 {
		return nil
	}
	return t.send(ctx, t.batch())
}

// sendBatch sends a batch in one round trip; a Put among its statements
// that found its version stored fails it.
func (t *tx) sendBatch(ctx context.Context, b *pgx.Batch) error {
	if t.conflict != nil {
		return t.conflict
	}
	if err := t.tx.SendBatch(ctx, b).Close(); err != nil {
		return mapErr(err)
	}
	return t.conflict
}

// queueSeqLock queues taking the Seq lock, and reading the next Seq,
// unless the transaction holds it; send notes that it does once the batch
// succeeded.
func (t *tx) queueSeqLock(b *pgx.Batch) {
	if !t.seqLocked {
		b.Queue(sqlLockSeq).Exec(func(pgconn.CommandTag) error { return nil })
		b.Queue(sqlNextSeq).QueryRow(func(row pgx.Row) error { return row.Scan(&t.nextSeq) })
	}
}

// lockSeq takes the Seq lock, with any pending statements, unless the
// transaction holds it.
func (t *tx) lockSeq(ctx context.Context) error {
	if t.seqLocked {
		return nil
	}
	b := t.batch()
	t.queueSeqLock(b)
	return t.send(ctx, b)
}

// Current locks the resource for the rest of the transaction, then returns
// its latest version. The read is a statement of its own, after the lock,
// so it sees what a transaction that held the lock before committed.
func (t *tx) Current(ctx context.Context, typ, id string) (vault.Record, error) {
	var r vault.Record
	var scanErr error
	b := t.batch()
	queueLock(b, resourceLock(typ, id))
	b.Queue(sqlCurrent, typ, id).QueryRow(func(row pgx.Row) error {
		// Not returned: pgx drops the prepared statements of a batch whose
		// callback fails, and ErrNotFound is a common answer.
		r, scanErr = scanRecord(row, typ, id)
		return nil
	})
	err := t.sendBatch(ctx, b)
	if err == nil {
		err = scanErr
	}
	if err != nil {
		return vault.Record{}, fmt.Errorf("get current %s: %w", typ, err) // sendBatch and scanRecord map
	}
	return r, nil
}

// Find locks the type and token for the rest of the transaction, then
// returns the ids of the live resources of type typ whose current version
// carries token. A concurrent transaction that found nothing under the same
// lock and then created a resource has committed by the time the read runs.
func (t *tx) Find(ctx context.Context, typ string, token []byte) ([]string, error) {
	var ids []string
	b := t.batch() // what this transaction wrote, it finds
	queueLock(b, lockKey("vault/find", []byte(typ), token))
	b.Queue(sqlFind, typ, nonNil(token)).Query(func(rows pgx.Rows) error {
		var err error
		ids, err = collect(rows, scanString)
		return err
	})
	if err := t.sendBatch(ctx, b); err != nil {
		return nil, fmt.Errorf("find %s: %w", typ, err)
	}
	return ids, nil
}

// FindAny locks each distinct token of type typ, in order, for the rest of
// the transaction (the locks Find takes), then returns the ids, ascending,
// of the live resources of type typ whose current version carries any of
// tokens.
func (t *tx) FindAny(ctx context.Context, typ string, tokens [][]byte) ([]string, error) {
	if len(tokens) == 0 {
		return nil, nil
	}
	keys := make([]int64, 0, len(tokens))
	for _, tok := range tokens {
		keys = append(keys, lockKey("vault/find", []byte(typ), tok))
	}
	// One order for every transaction, so that two taking overlapping sets
	// cannot deadlock.
	slices.Sort(keys)
	keys = slices.Compact(keys)
	var ids []string
	b := t.batch() // what this transaction wrote, it finds
	for _, k := range keys {
		queueLock(b, k)
	}
	b.Queue(sqlFindAny, typ, nonNilAll(tokens)).Query(func(rows pgx.Rows) error {
		var err error
		ids, err = collect(rows, scanString)
		return err
	})
	if err := t.sendBatch(ctx, b); err != nil {
		return nil, fmt.Errorf("find %s: %w", typ, err)
	}
	return ids, nil
}

// SetTokens locks the resource for the rest of the transaction, then
// replaces the tokens of its current version if that is version and live.
// Nothing is written otherwise, and the transaction stays usable.
func (t *tx) SetTokens(ctx context.Context, typ, id string, version int64, tokens [][]byte) error {
	var found, ok int64
	b := t.batch()
	queueLock(b, resourceLock(typ, id))
	b.Queue(sqlSetTokens, typ, id, version, vault.SortTokens(nonNilAll(tokens))).QueryRow(func(row pgx.Row) error {
		return row.Scan(&found, &ok)
	})
	if err := t.sendBatch(ctx, b); err != nil {
		return fmt.Errorf("set %s tokens: %w", typ, err)
	}
	switch {
	case found == 0:
		return fmt.Errorf("set %s tokens: %w", typ, vault.ErrNotFound)
	case ok == 0:
		return fmt.Errorf("set %s version %d tokens: %w", typ, version, vault.ErrConflict)
	}
	return nil
}

// DropTokens takes the Seq lock (so that no Put makes another version
// current meanwhile), then removes the posting unless it belongs.
func (t *tx) DropTokens(ctx context.Context, e vault.IndexEntry) error {
	var belongs int64
	b := t.batch()
	t.queueSeqLock(b)
	b.Queue(sqlDropTokens, e.Seq, nonNil(e.Token)).QueryRow(func(row pgx.Row) error { return row.Scan(&belongs) })
	if err := t.send(ctx, b); err != nil {
		return fmt.Errorf("drop posting: %w", err)
	}
	if belongs > 0 {
		return fmt.Errorf("drop posting: %w", vault.ErrConflict)
	}
	return nil
}

// DropTokenSet takes the Seq lock (so that no Put makes another version
// current meanwhile), then removes the token set at seq and its postings
// unless seq is its resource's current live version.
func (t *tx) DropTokenSet(ctx context.Context, seq int64) error {
	var live int64
	b := t.batch()
	t.queueSeqLock(b)
	b.Queue(sqlDropTokenSet, seq).QueryRow(func(row pgx.Row) error { return row.Scan(&live) })
	if err := t.send(ctx, b); err != nil {
		return fmt.Errorf("drop token set: %w", err)
	}
	if live > 0 {
		return fmt.Errorf("drop token set: %w", vault.ErrConflict)
	}
	return nil
}

// SetIndexVersion records the version of the rules the index is built by.
func (t *tx) SetIndexVersion(ctx context.Context, version string) error {
	if err := t.flush(ctx); err != nil {
		return fmt.Errorf("set index version: %w", err)
	}
	if _, err := t.tx.Exec(ctx, sqlSetIndexVersion, version); err != nil {
		return fmt.Errorf("set index version: %w", mapErr(err))
	}
	return nil
}

// Put queues a new version and its leaf for the transaction's next round
// trip (the Seq lock is taken first, if the transaction does not hold it
// yet), so that the versions of a request go to the server together rather
// than one round trip each, all under the Seq lock. A version already
// stored is reported by the call that sends it, or by Update, as
// vault.ErrConflict, and the transaction cannot commit.
func (t *tx) Put(ctx context.Context, r vault.Record) error {
	if r.Type == "" || r.ID == "" || r.Version < 1 {
		return fmt.Errorf("put %s version %d: missing type, id or version", r.Type, r.Version)
	}
	if len(r.Leaf.Record) > 0 || hasRecordFields(r.Leaf) {
		return fmt.Errorf("put %s version %d: a version leaf carries a record", r.Type, r.Version)
	}
	if t.conflict != nil {
		return t.conflict
	}
	tokens := vault.SortTokens(nonNilAll(r.Tokens))
	if err := t.lockSeq(ctx); err != nil {
		return fmt.Errorf("put %s version %d: %w", r.Type, r.Version, err)
	}
	t.pending = append(t.pending, pendingQuery{sql: sqlPut, args: []any{r.Type, r.ID, r.Version, r.LastUpdated, r.Deleted,
		r.KeyID, nonNil(r.Ciphertext), nonNil(r.Salt), nonNil(r.Commitment), nonNil(r.Deid), int16(r.Leaf.Type),
		nonNil(r.Leaf.Data), r.Leaf.Ref, tokens, r.Client, t.nextSeq}, put: &putOf{r.Type, r.Version}})
	t.nextSeq++
	return nil
}

// send sends a batch in one round trip and notes that the transaction holds
// the Seq lock if the batch took it.
func (t *tx) send(ctx context.Context, b *pgx.Batch) error {
	if err := t.sendBatch(ctx, b); err != nil {
		return err
	}
	if !t.seqLocked && slices.ContainsFunc(b.QueuedQueries, func(q *pgx.QueuedQuery) bool { return q.SQL == sqlLockSeq }) {
		t.seqLocked = true
	}
	return nil
}

// DataKey returns a wrapped data key as this transaction sees it.
func (t *tx) DataKey(ctx context.Context, keyID string) ([]byte, error) {
	if err := t.flush(ctx); err != nil {
		return nil, fmt.Errorf("get data key: %w", err)
	}
	return queryBlob(t.tx.QueryRow(ctx, sqlDataKey, keyID), "get data key")
}

// PutDataKey stores a wrapped data key. A key id already stored, also by a
// concurrent transaction that commits meanwhile, is a conflict that leaves
// the transaction usable.
func (t *tx) PutDataKey(ctx context.Context, keyID string, wrapped []byte) error {
	if err := t.flush(ctx); err != nil {
		return fmt.Errorf("put data key: %w", err)
	}
	tag, err := t.tx.Exec(ctx, sqlPutDataKey, keyID, nonNil(wrapped))
	if err != nil {
		return fmt.Errorf("put data key: %w", mapErr(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("put data key: %w", vault.ErrConflict)
	}
	return nil
}

// Response returns the response remembered for an idempotency key.
func (t *tx) Response(ctx context.Context, key []byte) ([]byte, error) {
	if err := t.flush(ctx); err != nil {
		return nil, fmt.Errorf("get response: %w", err)
	}
	return queryBlob(t.tx.QueryRow(ctx, sqlResponse, nonNil(key)), "get response")
}

// PutResponse remembers the response body for an idempotency key. Of two
// concurrent transactions with one key, the second waits for the first and
// gets ErrConflict if it commits.
func (t *tx) PutResponse(ctx context.Context, key, body []byte) error {
	if err := t.flush(ctx); err != nil {
		return fmt.Errorf("put response: %w", err)
	}
	tag, err := t.tx.Exec(ctx, sqlPutResponse, nonNil(key), nonNil(body), time.Now())
	if err != nil {
		return fmt.Errorf("put response: %w", mapErr(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("put response: %w", vault.ErrConflict)
	}
	return nil
}

// AddLeaf queues a leaf that stands for no version, and its record if it
// has one.
func (t *tx) AddLeaf(ctx context.Context, l vault.Leaf) (int64, error) {
	hasRecord := len(l.Record) > 0
	if !hasRecord && hasRecordFields(l) {
		return 0, errors.New("add leaf: salt, subject, actor or time without a record")
	}
	if err := t.lockSeq(ctx); err != nil {
		return 0, fmt.Errorf("add leaf: %w", err)
	}
	seq := t.nextSeq
	t.pending = append(t.pending, pendingQuery{sql: sqlAddLeaf, args: []any{int16(l.Type), nonNil(l.Data), l.Ref,
		nonNil(vault.StoredRecord(&l)), nonNil(l.Salt), l.Subject, l.Actor, hasRecord, l.Time, seq}})
	t.nextSeq++
	return seq, nil
}

// PutPolicy stores the next version of the policy bundle. It takes the Seq
// lock and looks the revision up before it writes, so a conflict leaves the
// transaction as it was.
func (t *tx) PutPolicy(ctx context.Context, p vault.Policy) (int64, error) {
	if p.Revision == "" {
		return 0, errors.New("put policy: missing revision")
	}
	var exists bool
	b := t.batch()
	t.queueSeqLock(b)
	b.Queue(sqlPolicyExists, p.Revision).QueryRow(func(row pgx.Row) error { return row.Scan(&exists) })
	if err := t.send(ctx, b); err != nil {
		return 0, fmt.Errorf("put policy: %w", err)
	}
	if exists {
		return 0, fmt.Errorf("put policy: %w", vault.ErrConflict)
	}
	var v int64
	err := t.tx.QueryRow(ctx, sqlPutPolicy, p.Revision, nonNil(p.Bundle), p.Created, p.Author).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("put policy: %w", mapErr(err))
	}
	return v, nil
}

// Erase crypto-shreds what a data key sealed. The key is deleted first, in
// a statement of its own, so that the versions are overwritten as committed
// once the DELETE has waited out any transaction that holds the key's row.
func (t *tx) Erase(ctx context.Context, keyID string) (int64, error) {
	if err := t.flush(ctx); err != nil {
		return 0, fmt.Errorf("erase data key: %w", err)
	}
	tag, err := t.tx.Exec(ctx, sqlDeleteKey, keyID)
	if err != nil {
		return 0, fmt.Errorf("erase data key: %w", mapErr(err))
	}
	if tag.RowsAffected() == 0 {
		return 0, fmt.Errorf("erase data key: %w", vault.ErrNotFound)
	}
	var n int64
	b := &pgx.Batch{}
	b.Queue(sqlEraseTokens, keyID)
	b.Queue(sqlEraseVersions, keyID).Exec(func(tag pgconn.CommandTag) error {
		n = tag.RowsAffected()
		return nil
	})
	if err := t.tx.SendBatch(ctx, b).Close(); err != nil {
		return 0, fmt.Errorf("erase versions: %w", mapErr(err))
	}
	return n, nil
}

// queueLock queues taking an advisory lock, with a callback so that a
// failure to take it (a deadlock, a lock timeout) is the batch's error.
func queueLock(b *pgx.Batch, key int64) {
	b.Queue(sqlLock, key).Exec(func(pgconn.CommandTag) error { return nil })
}

// resourceLock is the advisory lock key of a resource.
func resourceLock(typ, id string) int64 {
	return lockKey("vault/resource", []byte(typ), []byte(id))
}

// lockKey hashes a domain and parts, each length-prefixed, into an advisory
// lock key. A collision only makes two transactions queue needlessly.
func lockKey(domain string, parts ...[]byte) int64 {
	h := fnv.New64a()
	buf := []byte(domain)
	for _, p := range parts {
		buf = binary.AppendUvarint(buf, uint64(len(p)))
		buf = append(buf, p...)
	}
	h.Write(buf)
	return int64(h.Sum64())
}

// scanRecord reads a row of selectRecord.
func scanRecord(row pgx.Row, typ, id string) (vault.Record, error) {
	r := vault.Record{Type: typ, ID: id}
	var leafType int16
	err := row.Scan(&r.Leaf.Seq, &r.Version, &r.LastUpdated, &r.Deleted, &r.Erased, &r.KeyID,
		&r.Ciphertext, &r.Salt, &r.Commitment, &r.Deid, &leafType, &r.Leaf.Data, &r.Leaf.Ref, &r.Client)
	if pgdb.IsNoRows(err) {
		return vault.Record{}, vault.ErrNotFound
	}
	if err != nil {
		return vault.Record{}, mapErr(err)
	}
	r.LastUpdated = r.LastUpdated.UTC()
	r.Leaf.Type = uint8(leafType)
	return r, nil
}

// scanLeaf reads a row of sqlLeaf or of a FindLeaves query; the record
// columns are NULL for a leaf without a record.
func scanLeaf(row pgx.Row) (vault.Leaf, error) {
	var l vault.Leaf
	var typ int16
	var at *time.Time
	if err := row.Scan(&l.Seq, &typ, &l.Data, &l.Ref, &l.Record, &l.Salt, &l.Subject, &l.Actor, &at); err != nil {
		return vault.Leaf{}, err
	}
	l.Record = vault.UnpackRecord(l.Record)
	l.Type = uint8(typ)
	if at != nil {
		l.Time = at.UTC()
	}
	return l, nil
}

func scanString(row pgx.Row) (string, error) {
	var s string
	err := row.Scan(&s)
	return s, err
}

// collect reads every row with scan and closes rows.
func collect[T any](rows pgx.Rows, scan func(pgx.Row) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, mapErr(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr(err)
	}
	return out, nil
}

// queryBlob reads a one-column, at most one-row result.
func queryBlob(row pgx.Row, what string) ([]byte, error) {
	var b []byte
	err := row.Scan(&b)
	if pgdb.IsNoRows(err) {
		return nil, fmt.Errorf("%s: %w", what, vault.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, mapErr(err))
	}
	return b, nil
}

// hasRecordFields reports whether l sets any field that belongs with a
// Record.
func hasRecordFields(l vault.Leaf) bool {
	return len(l.Salt) > 0 || l.Subject != "" || l.Actor != "" || !l.Time.IsZero()
}

// mapErr marks the errors of a collision with another transaction (a
// unique violation, a serialization failure, a deadlock, a lock timeout) as
// vault.ErrConflict, those of an unreachable server (refused or lost
// connection, shutdown, no connection slot) as vault.ErrUnavailable, and strips PostgreSQL's errors down to their SQLSTATE,
// primary message and object names: the detail of, say, a unique violation
// quotes the values of the row, which may be tokens or ids. The primary
// messages name constraints and columns, never values (the statements bind
// every value as a parameter in binary, so none is ever parsed from text).
func mapErr(err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		if pgdb.IsUnavailable(err) && !errors.Is(err, vault.ErrUnavailable) {
			return fmt.Errorf("%w: %w", vault.ErrUnavailable, err)
		}
		return err
	}
	clean := &pgconn.PgError{
		Severity: pe.Severity, SeverityUnlocalized: pe.SeverityUnlocalized, Code: pe.Code, Message: pe.Message,
		SchemaName: pe.SchemaName, TableName: pe.TableName, ColumnName: pe.ColumnName,
		DataTypeName: pe.DataTypeName, ConstraintName: pe.ConstraintName,
	}
	switch {
	case pgdb.IsConflict(clean):
		return fmt.Errorf("%w: %w", vault.ErrConflict, clean)
	case pgdb.IsUnavailable(clean):
		return fmt.Errorf("%w: %w", vault.ErrUnavailable, clean)
	}
	return clean
}

// nonNil binds a nil slice as an empty bytea: pgx binds nil as NULL, which
// the NOT NULL columns refuse.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// Package sqlite implements vault.Store on an embedded SQLite database through
// the cgo-free modernc.org/sqlite driver.
//
// The database runs in WAL mode with synchronous=FULL, so an Update that
// returned nil survives a crash or a power loss. Writes go through one
// connection and begin with BEGIN IMMEDIATE, which serialises Updates; reads
// use a separate pool of query-only connections and never wait for the
// writer.
package sqlite

import (
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"time"

	"github.com/fhiranchor/fhiranchor/internal/sqlitedb"
	"github.com/fhiranchor/fhiranchor/vault"
	// The driver registers itself as "sqlite". This package is its only
	// user, so the import lives here rather than in cmd/; the named import
	// also gives access to its error codes.
	sqlitedriver "modernc.org/sqlite"
)

// schemaV1 is the first schema migration.
//
//go:embed schema.sql
var schemaV1 string

// schemaV2 adds crypto-shredding.
//
//go:embed schema_v2.sql
var schemaV2 string

// migrations are applied in order, each once, in one transaction per open.
// Never edit a released migration; append a new one.
var migrations = []string{schemaV1, schemaV2}

// Result codes of modernc.org/sqlite/lib (extended result codes are on).
const (
	sqliteConstraintPrimaryKey = 1555 // SQLITE_CONSTRAINT_PRIMARYKEY
	sqliteConstraintUnique     = 2067 // SQLITE_CONSTRAINT_UNIQUE
)

// Config configures a Store.
type Config struct {
	// Path is the database file. It and its parent directory are created if
	// missing (mode 0600 and 0700); SQLite keeps its -wal and -shm files
	// beside it with the same mode.
	Path string
}

// Validate reports whether c can be used to open a Store.
func (c Config) Validate() error { return sqlitedb.ValidatePath(c.Path) }

// Store is a vault.Store on SQLite. It is safe for concurrent use.
type Store struct {
	w     *sql.DB // one connection: every Update
	r     *sql.DB // query-only connections: reads outside Update
	wstmt [numWriteStmts]*sql.Stmt
	rstmt [numReadStmts]*sql.Stmt
}

var _ vault.Store = (*Store)(nil)

// Statements prepared once per Store; Update binds the write ones to its
// transaction.
const (
	stLatest = iota
	stExists
	stInsertLeaf
	stInsertVersion
	stDeleteTokens
	stInsertToken
	stFind
	stCurrentTx
	stDataKeyTx
	stPutDataKey
	stResponseTx
	stPutResponse
	stInsertLeafOnly
	stDeleteKey
	stEraseTokens
	stEraseVersions
	numWriteStmts
)

const (
	stCurrent = iota
	stVersion
	stHistory
	stDataKey
	stLeaves
	stStats
	stVersions
	numReadStmts
)

const recordColumns = `v.seq, v.version, v.last_updated, v.deleted, v.erased, v.key_id,
	v.ciphertext, v.salt, v.commitment, l.type, l.data, l.ref`

const selectRecord = `SELECT ` + recordColumns + `
FROM versions v JOIN leaves l ON l.seq = v.seq
WHERE v.type = ? AND v.id = ?`

var writeSQL = [numWriteStmts]string{
	stLatest:         `SELECT max(version) FROM versions WHERE type = ? AND id = ?`,
	stExists:         `SELECT 1 FROM versions WHERE type = ? AND id = ? AND version = ?`,
	stInsertLeaf:     `INSERT INTO leaves (type, data, ref) VALUES (?, ?, ?)`,
	stInsertVersion:  `INSERT INTO versions (seq, type, id, version, last_updated, deleted, key_id, ciphertext, salt, commitment) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
	stDeleteTokens:   `DELETE FROM tokens WHERE type = ? AND id = ?`,
	stInsertToken:    `INSERT OR IGNORE INTO tokens (type, token, id) VALUES (?, ?, ?)`,
	stFind:           `SELECT id FROM tokens WHERE type = ? AND token = ?`,
	stCurrentTx:      selectRecord + ` ORDER BY v.version DESC LIMIT 1`,
	stDataKeyTx:      `SELECT wrapped FROM data_keys WHERE key_id = ?`,
	stPutDataKey:     `INSERT INTO data_keys (key_id, wrapped) VALUES (?, ?)`,
	stResponseTx:     `SELECT body FROM responses WHERE key = ?`,
	stPutResponse:    `INSERT INTO responses (key, body, created) VALUES (?, ?, ?)`,
	stInsertLeafOnly: `INSERT INTO leaves (type, data, ref) VALUES (?, ?, ?)`,
	stDeleteKey:      `DELETE FROM data_keys WHERE key_id = ?`,
	stEraseTokens: `DELETE FROM tokens WHERE EXISTS (SELECT 1 FROM versions v
	WHERE v.key_id = ? AND v.type = tokens.type AND v.id = tokens.id)`,
	stEraseVersions: `UPDATE versions SET ciphertext = X'', salt = X'', erased = 1 WHERE key_id = ? AND erased = 0`,
}

var readSQL = [numReadStmts]string{
	stCurrent: selectRecord + ` ORDER BY v.version DESC LIMIT 1`,
	stVersion: selectRecord + ` AND v.version = ?`,
	stHistory: selectRecord + ` ORDER BY v.version DESC`,
	stDataKey: `SELECT wrapped FROM data_keys WHERE key_id = ?`,
	stLeaves:  `SELECT seq, type, data, ref FROM leaves WHERE seq > ? ORDER BY seq LIMIT ?`,
	stStats: `SELECT (SELECT count(*) FROM versions), (SELECT count(*) FROM leaves),
	(SELECT count(*) FROM data_keys), (SELECT count(*) FROM responses)`,
	stVersions: `SELECT v.type, v.id, ` + recordColumns + `
FROM versions v JOIN leaves l ON l.seq = v.seq WHERE v.seq > ? ORDER BY v.seq LIMIT ?`,
}

// New opens the database at cfg.Path, creating it if needed, and applies any
// pending schema migrations.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Store{}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	var err error
	s.w, s.r, err = sqlitedb.Open(ctx, sqlitedb.Options{Path: cfg.Path, Migrations: migrations,
		WriterPragmas: "&_pragma=secure_delete(1)&_pragma=cache_size(-32000)", ReaderPragmas: "&_pragma=cache_size(-16000)"})
	if err != nil {
		return nil, err
	}
	for i, q := range writeSQL {
		if s.wstmt[i], err = s.w.PrepareContext(ctx, q); err != nil {
			return nil, fmt.Errorf("prepare statement %d: %w", i, err)
		}
	}
	for i, q := range readSQL {
		if s.rstmt[i], err = s.r.PrepareContext(ctx, q); err != nil {
			return nil, fmt.Errorf("prepare read statement %d: %w", i, err)
		}
	}
	ok = true
	return s, nil
}

// Close closes the database. Updates and reads in flight fail.
func (s *Store) Close() error { return sqlitedb.Close(s.w, s.r) }

// Update runs fn in one immediate transaction on the writer connection and
// commits it, durably, if fn returns nil. Updates queue for that connection,
// so they never run concurrently.
func (s *Store) Update(ctx context.Context, fn func(vault.Tx) error) error {
	sqlTx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin sqlite transaction: %w", err)
	}
	// A no-op after Commit; otherwise it discards everything fn did, also
	// when fn panics, and frees the writer connection.
	defer sqlTx.Rollback()
	t := &tx{s: s, tx: sqlTx}
	if err := fn(t); err != nil {
		return err
	}
	// database/sql rolls back once ctx is done; report that rather than the
	// ErrTxDone of Commit.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("commit sqlite transaction: %w", err)
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("commit sqlite transaction: %w", err)
	}
	if t.erased {
		// The WAL still holds the erased pages as they were; fold it into
		// the database (where secure_delete zeroed them) and truncate it.
		if _, err := s.w.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			return fmt.Errorf("checkpoint after erasure: %w", err)
		}
	}
	return nil
}

// Versions returns versions of any resource in leaf Seq order.
func (s *Store) Versions(ctx context.Context, after int64, limit int) ([]vault.Record, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.rstmt[stVersions].QueryContext(ctx, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list versions: %w", err)
	}
	defer rows.Close()
	var out []vault.Record
	for rows.Next() {
		var typ, id string
		r, err := scanRecord(prefixed{rows, []any{&typ, &id}}, "", "")
		if err != nil {
			return nil, fmt.Errorf("list versions: %w", err)
		}
		r.Type, r.ID = typ, id
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list versions: %w", err)
	}
	return out, nil
}

// prefixed scans extra leading columns before the ones scanRecord reads.
type prefixed struct {
	rows  *sql.Rows
	first []any
}

func (p prefixed) Scan(dest ...any) error { return p.rows.Scan(append(p.first, dest...)...) }

// Current returns the latest version of a resource, tombstones included.
func (s *Store) Current(ctx context.Context, typ, id string) (vault.Record, error) {
	r, err := scanRecord(s.rstmt[stCurrent].QueryRowContext(ctx, typ, id), typ, id)
	if err != nil {
		return vault.Record{}, fmt.Errorf("get current %s: %w", typ, err)
	}
	return r, nil
}

// Version returns one version of a resource.
func (s *Store) Version(ctx context.Context, typ, id string, version int64) (vault.Record, error) {
	r, err := scanRecord(s.rstmt[stVersion].QueryRowContext(ctx, typ, id, version), typ, id)
	if err != nil {
		return vault.Record{}, fmt.Errorf("get %s version %d: %w", typ, version, err)
	}
	return r, nil
}

// History returns every version of a resource, newest first.
func (s *Store) History(ctx context.Context, typ, id string) ([]vault.Record, error) {
	rows, err := s.rstmt[stHistory].QueryContext(ctx, typ, id)
	if err != nil {
		return nil, fmt.Errorf("get %s history: %w", typ, err)
	}
	defer rows.Close()
	var rs []vault.Record
	for rows.Next() {
		r, err := scanRecord(rows, typ, id)
		if err != nil {
			return nil, fmt.Errorf("get %s history: %w", typ, err)
		}
		rs = append(rs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("get %s history: %w", typ, err)
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("get %s history: %w", typ, vault.ErrNotFound)
	}
	return rs, nil
}

// DataKey returns a wrapped data key.
func (s *Store) DataKey(ctx context.Context, keyID string) ([]byte, error) {
	return queryBlob(ctx, s.rstmt[stDataKey], "get data key", keyID)
}

// Leaves returns up to limit leaves with Seq > after, in Seq order.
func (s *Store) Leaves(ctx context.Context, after int64, limit int) ([]vault.Leaf, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.rstmt[stLeaves].QueryContext(ctx, after, limit)
	if err != nil {
		return nil, fmt.Errorf("get leaves: %w", err)
	}
	defer rows.Close()
	var ls []vault.Leaf
	for rows.Next() {
		var l vault.Leaf
		var typ int64
		if err := rows.Scan(&l.Seq, &typ, &l.Data, &l.Ref); err != nil {
			return nil, fmt.Errorf("get leaves: %w", err)
		}
		l.Type = uint8(typ)
		ls = append(ls, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("get leaves: %w", err)
	}
	return ls, nil
}

// Stats counts what the store holds. It scans each table's smallest index,
// so it is meant for health checks and tests, not hot paths.
func (s *Store) Stats(ctx context.Context) (vault.Stats, error) {
	var st vault.Stats
	err := s.rstmt[stStats].QueryRowContext(ctx).Scan(&st.Versions, &st.Leaves, &st.DataKeys, &st.Responses)
	if err != nil {
		return vault.Stats{}, fmt.Errorf("get stats: %w", err)
	}
	return st, nil
}

// tx is a vault.Tx on one SQLite transaction. It binds the Store's prepared
// statements to the transaction on first use.
type tx struct {
	s      *Store
	tx     *sql.Tx
	stmts  [numWriteStmts]*sql.Stmt
	erased bool // Erase ran: checkpoint the WAL after commit
}

// AddLeaf queues a leaf that stands for no version.
func (t *tx) AddLeaf(ctx context.Context, l vault.Leaf) (int64, error) {
	res, err := t.stmt(ctx, stInsertLeafOnly).ExecContext(ctx, int64(l.Type), nonNil(l.Data), l.Ref)
	if err != nil {
		return 0, fmt.Errorf("add leaf: %w", err)
	}
	seq, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("add leaf: %w", err)
	}
	return seq, nil
}

// Erase crypto-shreds what a data key sealed.
func (t *tx) Erase(ctx context.Context, keyID string) (int64, error) {
	res, err := t.stmt(ctx, stDeleteKey).ExecContext(ctx, keyID)
	if err != nil {
		return 0, fmt.Errorf("erase data key: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return 0, fmt.Errorf("erase data key: %w", vault.ErrNotFound)
	}
	if _, err := t.stmt(ctx, stEraseTokens).ExecContext(ctx, keyID); err != nil {
		return 0, fmt.Errorf("erase tokens: %w", err)
	}
	res, err = t.stmt(ctx, stEraseVersions).ExecContext(ctx, keyID)
	if err != nil {
		return 0, fmt.Errorf("erase versions: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("erase versions: %w", err)
	}
	t.erased = true
	return n, nil
}

func (t *tx) stmt(ctx context.Context, i int) *sql.Stmt {
	if t.stmts[i] == nil {
		// Closed by database/sql when the transaction ends; the connection's
		// prepared statement itself stays for the next transaction.
		t.stmts[i] = t.tx.StmtContext(ctx, t.s.wstmt[i])
	}
	return t.stmts[i]
}

// Current returns the latest version of a resource as this transaction sees
// it.
func (t *tx) Current(ctx context.Context, typ, id string) (vault.Record, error) {
	r, err := scanRecord(t.stmt(ctx, stCurrentTx).QueryRowContext(ctx, typ, id), typ, id)
	if err != nil {
		return vault.Record{}, fmt.Errorf("get current %s: %w", typ, err)
	}
	return r, nil
}

// Find returns the ids of the live resources of type typ whose current
// version carries token.
func (t *tx) Find(ctx context.Context, typ string, token []byte) ([]string, error) {
	rows, err := t.stmt(ctx, stFind).QueryContext(ctx, typ, nonNil(token))
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", typ, err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("find %s: %w", typ, err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find %s: %w", typ, err)
	}
	return ids, nil
}

// Put stores a new version and its leaf. The version row is keyed by the
// Seq of its leaf. Conflicts are found before anything is written, so a Put
// that returns ErrConflict leaves the transaction as it was.
func (t *tx) Put(ctx context.Context, r vault.Record) error {
	if r.Type == "" || r.ID == "" || r.Version < 1 {
		return fmt.Errorf("put %s version %d: missing type, id or version", r.Type, r.Version)
	}
	var latest sql.NullInt64
	if err := t.stmt(ctx, stLatest).QueryRowContext(ctx, r.Type, r.ID).Scan(&latest); err != nil {
		return fmt.Errorf("put %s version %d: %w", r.Type, r.Version, err)
	}
	becomesCurrent := !latest.Valid || r.Version > latest.Int64
	if !becomesCurrent {
		var one int
		err := t.stmt(ctx, stExists).QueryRowContext(ctx, r.Type, r.ID, r.Version).Scan(&one)
		switch {
		case err == nil:
			return fmt.Errorf("put %s version %d: %w", r.Type, r.Version, vault.ErrConflict)
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("put %s version %d: %w", r.Type, r.Version, err)
		}
	}

	res, err := t.stmt(ctx, stInsertLeaf).ExecContext(ctx, int64(r.Leaf.Type), nonNil(r.Leaf.Data), r.Leaf.Ref)
	if err != nil {
		return fmt.Errorf("put %s version %d leaf: %w", r.Type, r.Version, err)
	}
	seq, err := res.LastInsertId()
	if err != nil {
		return fmt.Errorf("put %s version %d leaf: %w", r.Type, r.Version, err)
	}
	deleted := int64(0)
	if r.Deleted {
		deleted = 1
	}
	_, err = t.stmt(ctx, stInsertVersion).ExecContext(ctx, seq, r.Type, r.ID, r.Version,
		r.LastUpdated.UnixMicro(), deleted, r.KeyID, nonNil(r.Ciphertext), nonNil(r.Salt), nonNil(r.Commitment))
	if err != nil {
		return fmt.Errorf("put %s version %d: %w", r.Type, r.Version, mapErr(err))
	}

	if !becomesCurrent {
		return nil
	}
	if latest.Valid {
		if _, err := t.stmt(ctx, stDeleteTokens).ExecContext(ctx, r.Type, r.ID); err != nil {
			return fmt.Errorf("put %s version %d tokens: %w", r.Type, r.Version, err)
		}
	}
	if r.Deleted {
		return nil
	}
	for _, tok := range r.Tokens {
		if _, err := t.stmt(ctx, stInsertToken).ExecContext(ctx, r.Type, nonNil(tok), r.ID); err != nil {
			return fmt.Errorf("put %s version %d tokens: %w", r.Type, r.Version, err)
		}
	}
	return nil
}

// DataKey returns a wrapped data key as this transaction sees it.
func (t *tx) DataKey(ctx context.Context, keyID string) ([]byte, error) {
	return queryBlob(ctx, t.stmt(ctx, stDataKeyTx), "get data key", keyID)
}

// PutDataKey stores a wrapped data key.
func (t *tx) PutDataKey(ctx context.Context, keyID string, wrapped []byte) error {
	if _, err := t.stmt(ctx, stPutDataKey).ExecContext(ctx, keyID, nonNil(wrapped)); err != nil {
		return fmt.Errorf("put data key: %w", mapErr(err))
	}
	return nil
}

// Response returns the response remembered for an idempotency key.
func (t *tx) Response(ctx context.Context, key []byte) ([]byte, error) {
	return queryBlob(ctx, t.stmt(ctx, stResponseTx), "get response", nonNil(key))
}

// PutResponse remembers the response body for an idempotency key.
func (t *tx) PutResponse(ctx context.Context, key, body []byte) error {
	_, err := t.stmt(ctx, stPutResponse).ExecContext(ctx, nonNil(key), nonNil(body), time.Now().UnixMicro())
	if err != nil {
		return fmt.Errorf("put response: %w", mapErr(err))
	}
	return nil
}

// rowScanner is *sql.Row or *sql.Rows.
type rowScanner interface {
	Scan(dest ...any) error
}

// scanRecord reads a row of selectRecord.
func scanRecord(row rowScanner, typ, id string) (vault.Record, error) {
	r := vault.Record{Type: typ, ID: id}
	var lastUpdated, leafType int64
	err := row.Scan(&r.Leaf.Seq, &r.Version, &lastUpdated, &r.Deleted, &r.Erased, &r.KeyID,
		&r.Ciphertext, &r.Salt, &r.Commitment, &leafType, &r.Leaf.Data, &r.Leaf.Ref)
	if errors.Is(err, sql.ErrNoRows) {
		return vault.Record{}, vault.ErrNotFound
	}
	if err != nil {
		return vault.Record{}, err
	}
	r.LastUpdated = time.UnixMicro(lastUpdated).UTC()
	r.Leaf.Type = uint8(leafType)
	return r, nil
}

// queryBlob runs a one-column, at most one-row query.
func queryBlob(ctx context.Context, st *sql.Stmt, what string, args ...any) ([]byte, error) {
	var b []byte
	err := st.QueryRowContext(ctx, args...).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%s: %w", what, vault.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return b, nil
}

// mapErr turns a unique-constraint violation into vault.ErrConflict. SQLite
// names the columns in its message, never the values.
func mapErr(err error) error {
	var se *sqlitedriver.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqliteConstraintPrimaryKey, sqliteConstraintUnique:
			return vault.ErrConflict
		}
	}
	return err
}

// nonNil binds a nil slice as an empty BLOB: database/sql drivers bind nil as
// NULL, which the NOT NULL columns refuse.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

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
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync"
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

// schemaV3 adds leaf records and policy bundle versions.
//
//go:embed schema_v3.sql
var schemaV3 string

// schemaV4 adds the de-identified copy of each version.
//
//go:embed schema_v4.sql
var schemaV4 string

// schemaV5 drops the responses remembered before they were sealed.
//
//go:embed schema_v5.sql
var schemaV5 string

// schemaV6 indexes versions by type, for history listings.
//
//go:embed schema_v6.sql
var schemaV6 string

// schemaV7 keeps the client that wrote each version.
//
//go:embed schema_v7.sql
var schemaV7 string

// schemaV8 stores the blind index as postings and token sets.
//
//go:embed schema_v8.sql
var schemaV8 string

// schemaV9 keeps postings in three levels, merged in bulk.
//
//go:embed schema_v9.sql
var schemaV9 string

// schemaV10 moves the recent level of the postings to memory.
//
//go:embed schema_v10.sql
var schemaV10 string

// schemaV11 adds the leaf journal's watermark.
//
//go:embed schema_v11.sql
var schemaV11 string

// migrations are applied in order, each once, in one transaction per open.
// Never edit a released migration; append a new one.
var migrations = []string{schemaV1, schemaV2, schemaV3, schemaV4, schemaV5, schemaV6, schemaV7, schemaV8, schemaV9, schemaV10, schemaV11}

// Result codes of modernc.org/sqlite/lib (extended result codes are on).
const (
	sqliteConstraintPrimaryKey = 1555 // SQLITE_CONSTRAINT_PRIMARYKEY
	sqliteConstraintUnique     = 2067 // SQLITE_CONSTRAINT_UNIQUE
	sqliteBusy                 = 5    // SQLITE_BUSY and its extended codes
	sqliteLocked               = 6    // SQLITE_LOCKED and its extended codes
)

// Config configures a Store.
type Config struct {
	// Path is the database file. It and its parent directory are created if
	// missing (mode 0600 and 0700); SQLite keeps its -wal and -shm files
	// beside it with the same mode.
	Path string
	// MergeRows is how many postings the in-memory recent level holds
	// before a commit writes them to postings_mid, which the next commits
	// move into postings, at most MergeRows and mergeChunkRows postings
	// each (mergeChunk), once it holds midFanout times as many
	// (schema_v9.sql, schema_v10.sql); 0 means DefaultMergeRows. Larger
	// holds more in memory (some 50 bytes a posting) and merges rarer.
	MergeRows int
}

// DefaultMergeRows is Config.MergeRows when it is 0: some sixteen thousand
// writes' postings, some 13 MB of memory; postings_mid, merged into once
// per sixteen thousand writes, holds up to two million postings (some 30
// MB), and postings, the big tree, takes them once per 130,000 writes,
// mergeChunkRows postings a commit.
//
// Why so many: a merge into a level rewrites nearly every page of it (the
// postings it brings are spread over all its tokens), so a posting costs
// about pages(mid)/R page writes on its way into postings_mid and
// pages(big)/size(mid) on its way into postings, R being this many. At a
// million resources (17 million postings in 80,000 pages) that came to
// 0.09 pages a posting with R = 1 << 16 and a mid level of a million; the
// first tenth of the store, its big tree small, paid a third of that, and
// the last tenth ingested at 0.70-0.79 of the first's rate (BenchmarkScale,
// paired). Four times as many postings in memory, and a mid level near
// sqrt(R x size(big)), halve it: 0.044, and the last tenth at 0.85 of the
// first in two runs. The price is a larger commit once per sixteen
// thousand writes (the recent level into postings_mid), which the writes
// behind it wait for: a Bundle's POST at p99 took 0.8-1.2 s in each tenth
// of BenchmarkScale, 0.5-0.8 s before.
const DefaultMergeRows = 1 << 18

// midFanout is how many merges of the recent level postings_mid takes
// before it is merged into postings.
const midFanout = 8

// mergeChunkRows bounds the postings one commit moves from postings_mid
// into postings: a commit that moves more holds every write waiting behind
// it longer, and the merge costs the same in total however it is cut (each
// chunk is a range of tokens, and rewrites the pages of that range).
const mergeChunkRows = 1 << 16

// postingTables are the stored levels of the inverted index, oldest
// first: a posting is in one of them or in the recent level (recent.go),
// and every lookup reads them all.
var postingTables = []string{"postings", "postings_mid"}

// Validate reports whether c can be used to open a Store.
func (c Config) Validate() error { return sqlitedb.ValidatePath(c.Path) }

// Store is a vault.Store on SQLite. It is safe for concurrent use.
type Store struct {
	w     *sql.DB // one connection: every Update
	r     *sql.DB // query-only connections: reads outside Update
	wstmt [numWriteStmts + postingSizes]*sql.Stmt
	rstmt [numReadStmts]*sql.Stmt
	// fstmt are the FindLeaves queries, indexed by which filters are set
	// (see findLeavesSQL).
	fstmt [numFindLeaves]*sql.Stmt

	ckpt *sqlitedb.Checkpointer // copies the WAL into the database file

	mergeRows int
	chunkRows int // mergeChunkRows; tests make it smaller
	// mid is how many rows postings_mid holds as last committed, counted
	// by the first group that writes (counted): a count reads a million
	// rows, which a store opened to be read, or a restart, need not wait
	// for. Only the Update leading a group reads and writes it (runGroup);
	// the lead passes under mu.
	mid     int
	counted bool
	// merging says a merge of postings_mid into postings is under way:
	// each group moves the next chunkRows or so postings, by token,
	// from mergeFrom on (mergeChunk), so that no one commit rewrites the
	// whole of postings. Only the group's lead reads and writes them.
	merging   bool
	mergeFrom []byte
	// recentLevel holds the postings of the newest token sets.
	recentLevel *recentLevel
	// journal holds leaves made durable ahead of their transaction
	// (journal.go); nil if another Store owns it. The folder moves them
	// into leaves when no Update does; stopFolder ends it.
	journal    *journal
	stopFolder chan struct{}
	folderDone chan struct{}
	closing    sync.Once

	mu      sync.Mutex
	queue   []*update // Updates waiting for the writer, oldest first
	leading bool      // a caller is running a group (queue empty when false)
}

var _ vault.Store = (*Store)(nil)

// Statements prepared once per Store; Update binds the write ones to its
// transaction.
const (
	stLatest = iota
	stExists
	stInsertLeaf
	stInsertVersion
	stTokenSetTx
	stDeleteTokenSet
	stInsertTokenSet
	stDeletePosting
	stDeleteMidPosting
	stMidChunkEnd
	stMidFirstToken
	stMidNextToken
	stMergeMidRange
	stClearMidRange
	stMergeMidFrom
	stClearMidFrom
	stFind
	stCurrentTx
	stDataKeyTx
	stPutDataKey
	stResponseTx
	stPutResponse
	stInsertLeafOnly
	stDeleteKey
	stEraseSets
	stEraseVersions
	stInsertLeafRecord
	stPolicyExists
	stInsertPolicy
	stCurrentState
	stVersionAt
	stSetIndexVersion
	stSetGen
	stJournalFolded
	stSetJournalFolded
	stSetMerged
	stGenTx
	stSavepoint
	stRelease
	stRollbackTo
	numWriteStmts
)

// postingRows bounds the rows of one postings INSERT: an Update's postings
// (a Synthea Bundle has some three thousand) go in sorted, postingRows a
// statement, then halves of that for the rest. The INSERT of 2^i rows
// (0 <= i <= postingSizes-1) is write statement numWriteStmts+i.
const (
	postingSizes = 7
	postingRows  = 1 << (postingSizes - 1)
)

// insertPostingsSQL inserts k postings into postings_mid: (token, seq)
// pairs bound in order.
func insertPostingsSQL(k int) string {
	return `INSERT OR IGNORE INTO postings_mid (token, seq) VALUES (?, ?)` + strings.Repeat(`, (?, ?)`, k-1)
}

const (
	stCurrent = iota
	stVersion
	stHistory
	stDataKey
	stLeaves
	stStats
	stVersions
	stFindCommitted
	stLeaf
	stPolicy
	stPolicies
	stRecords
	stIndexEntries
	stTokenSets
	stIDs
	stIndexVersion
	stResponses
	stResponse
	stDataKeys
	stChanges
	stChangesOfType
	stSealed
	stGen
	numReadStmts
)

const recordColumns = `v.seq, v.version, v.last_updated, v.deleted, v.erased, v.key_id,
	v.ciphertext, v.salt, v.commitment, v.deid, l.type, l.data, l.ref, v.client`

const selectRecord = `SELECT ` + recordColumns + `
FROM versions v JOIN leaves l ON l.seq = v.seq
WHERE v.type = ? AND v.id = ?`

var writeSQL = [numWriteStmts]string{
	stLatest:         `SELECT seq, version FROM versions WHERE type = ? AND id = ? ORDER BY version DESC LIMIT 1`,
	stExists:         `SELECT 1 FROM versions WHERE type = ? AND id = ? AND version = ?`,
	stInsertLeaf:     `INSERT INTO leaves (type, data, ref) VALUES (?, ?, ?)`,
	stInsertVersion:  `INSERT INTO versions (seq, type, id, version, last_updated, deleted, key_id, ciphertext, salt, commitment, deid, client) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
	stTokenSetTx:     `SELECT tokens FROM token_sets WHERE seq = ?`,
	stDeleteTokenSet: `DELETE FROM token_sets WHERE seq = ?`,
	stInsertTokenSet: `INSERT OR REPLACE INTO token_sets (seq, tokens) VALUES (?, ?)`,
	stDeletePosting:  `DELETE FROM postings WHERE token = ? AND seq = ?`,
	// A posting is in one level; a damaged index may hold it in several,
	// and removing it removes it from all.
	stDeleteMidPosting: `DELETE FROM postings_mid WHERE token = ? AND seq = ?`,
	// mergeChunk's: where a chunk ends, and moving it. Merges read the
	// source in key order, so that each page of the target is dirtied by
	// one run of inserts.
	stMidChunkEnd:      `SELECT token FROM postings_mid WHERE token >= ?1 ORDER BY token LIMIT 1 OFFSET ?2`,
	stMidFirstToken:    `SELECT token FROM postings_mid WHERE token >= ?1 ORDER BY token LIMIT 1`,
	stMidNextToken:     `SELECT token FROM postings_mid WHERE token > ?1 ORDER BY token LIMIT 1`,
	stMergeMidRange:    `INSERT OR IGNORE INTO postings (token, seq) SELECT token, seq FROM postings_mid WHERE token >= ?1 AND token < ?2 ORDER BY token, seq`,
	stClearMidRange:    `DELETE FROM postings_mid WHERE token >= ?1 AND token < ?2`,
	stMergeMidFrom:     `INSERT OR IGNORE INTO postings (token, seq) SELECT token, seq FROM postings_mid WHERE token >= ?1 ORDER BY token, seq`,
	stClearMidFrom:     `DELETE FROM postings_mid WHERE token >= ?1`,
	stFind:             findSQL,
	stCurrentTx:        selectRecord + ` ORDER BY v.version DESC LIMIT 1`,
	stDataKeyTx:        `SELECT wrapped FROM data_keys WHERE key_id = ?`,
	stPutDataKey:       `INSERT INTO data_keys (key_id, wrapped) VALUES (?, ?)`,
	stResponseTx:       `SELECT body FROM responses WHERE key = ?`,
	stPutResponse:      `INSERT INTO responses (key, body, created) VALUES (?, ?, ?)`,
	stInsertLeafOnly:   `INSERT INTO leaves (type, data, ref) VALUES (?, ?, ?)`,
	stDeleteKey:        `DELETE FROM data_keys WHERE key_id = ?`,
	stEraseSets:        `SELECT s.seq, s.tokens FROM versions v JOIN token_sets s ON s.seq = v.seq WHERE v.key_id = ?`,
	stEraseVersions:    `UPDATE versions SET ciphertext = X'', salt = X'', deid = X'', erased = 1 WHERE key_id = ? AND erased = 0`,
	stInsertLeafRecord: `INSERT INTO leaf_records (seq, type, record, salt, subject, actor, time) VALUES (?, ?, ?, ?, ?, ?, ?)`,
	stPolicyExists:     `SELECT 1 FROM policies WHERE revision = ?`,
	// The writer holds the database from BEGIN IMMEDIATE to commit, so max+1
	// cannot race another PutPolicy.
	stInsertPolicy: `INSERT INTO policies (version, revision, bundle, created, author)
	SELECT coalesce(max(version), 0) + 1, ?, ?, ?, ? FROM policies`,
	stCurrentState: `SELECT seq, version, deleted, erased FROM versions WHERE type = ? AND id = ?
ORDER BY version DESC LIMIT 1`,
	stVersionAt:        `SELECT type, id FROM versions WHERE seq = ?`,
	stSetIndexVersion:  `UPDATE index_state SET version = ? WHERE one = 1`,
	stSetGen:           `UPDATE index_state SET gen = ? WHERE one = 1`,
	stJournalFolded:    `SELECT folded FROM journal_state WHERE id = 1`,
	stSetJournalFolded: `UPDATE journal_state SET folded = ? WHERE id = 1`,
	stSetMerged:        `UPDATE index_state SET merged = ? WHERE one = 1`,
	stGenTx:            genSQL,
	// A group commit's per-Update savepoints, prepared like the rest:
	// parsing them again for every Update cost as much as a small write.
	stSavepoint:  `SAVEPOINT u`,
	stRelease:    `RELEASE u`,
	stRollbackTo: `ROLLBACK TO u`,
}

// genSQL reads the generation of the in-memory postings (recent.go).
const genSQL = `SELECT gen FROM index_state WHERE one = 1`

var readSQL = [numReadStmts]string{
	stCurrent: selectRecord + ` ORDER BY v.version DESC LIMIT 1`,
	stVersion: selectRecord + ` AND v.version = ?`,
	stHistory: selectRecord + ` ORDER BY v.version DESC`,
	stDataKey: `SELECT wrapped FROM data_keys WHERE key_id = ?`,
	stLeaves: `SELECT ` + rowsFunc + `(?, seq, type, data, ref)
FROM (SELECT seq, type, data, ref FROM leaves WHERE seq > ? ORDER BY seq LIMIT ?)`,
	// Leaves are only appended, numbered from 1 by AUTOINCREMENT (an insert
	// rolled back takes its number back with it): the last seq is their
	// count, read from the end of the tree rather than by walking every row
	// (a tenth of a second at a million resources, on each /readyz probe).
	stStats: `SELECT (SELECT count(*) FROM versions), (SELECT coalesce(max(seq), 0) FROM leaves),
	(SELECT count(*) FROM data_keys), (SELECT count(*) FROM responses), (SELECT count(*) FROM policies)`,
	// Every version row, also one whose leaf is gone: an audit must see it.
	stVersions: `SELECT ` + rowsFunc + `(?, type, id, seq, version, last_updated, deleted, erased, key_id,
	ciphertext, salt, commitment, deid, leaf_type, leaf_data, leaf_ref, client)
FROM (` + changesSQL + ` WHERE v.seq > ? ORDER BY v.seq LIMIT ?)`,
	stFindCommitted: findSQL,
	stLeaf: `SELECT l.seq, l.type, l.data, l.ref, r.record, r.salt, coalesce(r.subject, ''), coalesce(r.actor, ''), r.time
FROM leaves l LEFT JOIN leaf_records r ON r.seq = l.seq WHERE l.seq = ?`,
	stPolicy:   `SELECT version, revision, bundle, created, author FROM policies WHERE version = ?`,
	stPolicies: `SELECT version, revision, created, author FROM policies ORDER BY version DESC`,
	stRecords: `SELECT ` + rowsFunc + `(?, seq, type, record, salt, subject, actor, time)
FROM (SELECT seq, type, record, salt, subject, actor, time FROM leaf_records WHERE seq > ? ORDER BY seq LIMIT ?)`,
	// Every level in one ordered walk: a compound ORDER BY merges their
	// index orders (no sort), and the LIMIT stops it early.
	stIndexEntries: `SELECT token, seq FROM postings WHERE (token, seq) > (?1, ?2)
UNION ALL SELECT token, seq FROM postings_mid WHERE (token, seq) > (?1, ?2) ORDER BY 1, 2 LIMIT ?3`,
	stTokenSets: `SELECT ` + rowsFunc + `(?, seq, tokens)
FROM (SELECT seq, tokens FROM token_sets WHERE seq > ? ORDER BY seq LIMIT ?)`,
	// The (type, id, version) index alone: no versions row is read.
	stIDs:          `SELECT DISTINCT id FROM versions WHERE type = ? ORDER BY id LIMIT ?`,
	stIndexVersion: `SELECT version FROM index_state WHERE one = 1`,
	stResponses:    `SELECT key, body, created FROM responses WHERE key > ? ORDER BY key LIMIT ?`,
	stResponse:     `SELECT body FROM responses WHERE key = ?`,
	stDataKeys:     `SELECT key_id, wrapped FROM data_keys WHERE key_id > ? ORDER BY key_id LIMIT ?`,
	// Changes: the parameters are Before (exclusive), Since (microseconds,
	// inclusive) and the limit (-1 for none), after the type for
	// stChangesOfType, which versions_by_type serves without a sort.
	stChanges:       changesSQL + ` WHERE v.seq < ? AND v.last_updated >= ? ORDER BY v.seq DESC LIMIT ?`,
	stChangesOfType: changesSQL + ` WHERE v.type = ? AND v.seq < ? AND v.last_updated >= ? ORDER BY v.seq DESC LIMIT ?`,
	// Sealed: versions_by_key finds the key's versions, the unique (type,
	// id, version) index says whether each is its resource's latest.
	stGen: genSQL,
	stSealed: changesSQL + ` WHERE v.key_id = ? AND v.version =
	(SELECT max(w.version) FROM versions w WHERE w.type = v.type AND w.id = v.id) ORDER BY v.type, v.id`,
}

// findSQL is Find: the postings of a token, mapped to their resources by
// versions_ident (a few bytes per version) rather than by the versions
// rows themselves. The token is an HMAC over the type; the type test keeps
// Find exact all the same.
const findSQL = `SELECT v.id FROM (SELECT seq FROM postings WHERE token = ?1
UNION ALL SELECT seq FROM postings_mid WHERE token = ?1) p
JOIN versions v INDEXED BY versions_ident ON v.seq = p.seq WHERE v.type = ?2`

// postingsIn is a subquery of the Seqs of the postings, in every level, of
// the n tokens bound in its place (once per level: tokensArgs).
func postingsIn(n int) string {
	in := "(?" + strings.Repeat(", ?", n-1) + ")"
	arms := make([]string, len(postingTables))
	for i, table := range postingTables {
		arms[i] = "SELECT seq FROM " + table + " WHERE token IN " + in
	}
	return "(" + strings.Join(arms, " UNION ALL ") + ")"
}

// tokensArgs appends the arguments of postingsIn: the tokens, once per
// level.
func tokensArgs(args []any, tokens [][]byte) []any {
	for range postingTables {
		for _, tok := range tokens {
			args = append(args, nonNil(tok))
		}
	}
	return args
}

// changesSQL selects what Versions and Changes return: every version row,
// also one whose leaf is gone.
const changesSQL = `SELECT v.type, v.id, v.seq, v.version, v.last_updated, v.deleted, v.erased, v.key_id,
	v.ciphertext, v.salt, v.commitment, v.deid, coalesce(l.type, 0) AS leaf_type, coalesce(l.data, X'') AS leaf_data,
	coalesce(l.ref, '') AS leaf_ref, v.client
FROM versions v LEFT JOIN leaves l ON l.seq = v.seq`

// Filters of FindLeaves, as bits of the index into Store.fstmt.
const (
	filterType = 1 << iota
	filterSubject
	filterActor
	numFindLeaves
)

// findLeavesSQL returns the FindLeaves query for the filters in mask. Each
// set of filters gets its own statement rather than one whose terms match
// anything when a parameter is empty, which would keep SQLite from choosing
// an index. The most selective filter given (subject, else actor, else type)
// drives the query through its index, whose trailing seq, read backwards,
// gives the order, the Before bound and the LIMIT without a sort; the unary
// + on the other filters keeps SQLite, which has no statistics, from driving
// by a less selective index instead, such as type for a patient's consents.
// The parameters are Before (exclusive), then the set filters in the order
// type, subject, actor, then the limit (-1 for none).
func findLeavesSQL(mask int) string {
	q := `SELECT l.seq, l.type, l.data, l.ref, r.record, r.salt, r.subject, r.actor, r.time
FROM leaf_records r JOIN leaves l ON l.seq = r.seq
WHERE r.seq < ?`
	drive := filterType
	switch {
	case mask&filterSubject != 0:
		drive = filterSubject
	case mask&filterActor != 0:
		drive = filterActor
	}
	term := func(f int, col string) {
		if mask&f == 0 {
			return
		}
		if f == drive {
			q += ` AND r.` + col + ` = ?`
		} else {
			q += ` AND +r.` + col + ` = ?`
		}
	}
	term(filterType, "type")
	term(filterSubject, "subject")
	term(filterActor, "actor")
	return q + ` ORDER BY r.seq DESC LIMIT ?`
}

// New opens the database at cfg.Path, creating it if needed, and applies any
// pending schema migrations.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Store{mergeRows: cfg.MergeRows, chunkRows: mergeChunkRows}
	if s.mergeRows <= 0 {
		s.mergeRows = DefaultMergeRows
	}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	var err error
	s.w, s.r, err = sqlitedb.Open(ctx, sqlitedb.Options{Path: cfg.Path, Migrations: migrations,
		// temp_store in memory: an Update of a group runs in a savepoint,
		// and every page it first changes is copied to the savepoint's
		// journal, a temporary file otherwise (a write(2) per page).
		// The writer's cache holds up to 128 MiB: at a million resources
		// the indexes a write lands at random in (versions by type and
		// id, by data key) are 62 and 58 MB, and with 32 MB each write
		// read most of their pages back (a pread each); the last tenth of
		// a million then cost 0.89 of the first's CPU instead of 0.82-0.85
		// (BenchmarkScalePaired, three runs each). The cache grows only
		// as pages are read: a small vault does not pay for it.
		WriterPragmas: "&_pragma=secure_delete(1)&_pragma=cache_size(-131072)&_pragma=temp_store(MEMORY)" + sqlitedb.CheckpointerPragma,
		ReaderPragmas: "&_pragma=cache_size(-16000)"})
	if err != nil {
		return nil, err
	}
	// Checkpoints run beside the writer, not in its commits (sqlitedb.Checkpointer).
	if s.ckpt, err = sqlitedb.StartCheckpointer(cfg.Path, checkpointPause); err != nil {
		return nil, err
	}
	for i, q := range writeSQL {
		if s.wstmt[i], err = s.w.PrepareContext(ctx, q); err != nil {
			return nil, fmt.Errorf("prepare statement %d: %w", i, err)
		}
	}
	for i := range postingSizes {
		if s.wstmt[numWriteStmts+i], err = s.w.PrepareContext(ctx, insertPostingsSQL(1<<i)); err != nil {
			return nil, fmt.Errorf("prepare postings insert of %d rows: %w", 1<<i, err)
		}
	}
	for i, q := range readSQL {
		if s.rstmt[i], err = s.r.PrepareContext(ctx, q); err != nil {
			return nil, fmt.Errorf("prepare read statement %d: %w", i, err)
		}
	}
	for i := range s.fstmt {
		if s.fstmt[i], err = s.r.PrepareContext(ctx, findLeavesSQL(i)); err != nil {
			return nil, fmt.Errorf("prepare find leaves statement %d: %w", i, err)
		}
	}
	if s.recentLevel, err = loadLevel(ctx, s.w); err != nil {
		return nil, err
	}
	if err := s.openJournal(ctx, cfg.Path); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// openJournal opens the leaf journal, if no other Store holds it, folds
// what a crash left in it, and starts the folder.
func (s *Store) openJournal(ctx context.Context, path string) error {
	var folded int64
	if err := s.wstmt[stJournalFolded].QueryRowContext(ctx).Scan(&folded); err != nil {
		return fmt.Errorf("open leaf journal: %w", err)
	}
	j, err := openJournal(path, uint64(folded))
	if err != nil || j == nil {
		return err
	}
	s.journal = j
	if err := s.fold(ctx); err != nil {
		return fmt.Errorf("fold leaf journal: %w", err)
	}
	// Numbers the journal skips (those of a torn write, which may be left
	// in a file) are folded as none: the next record found must follow
	// the watermark.
	if skip := j.skipped(); skip != 0 {
		if _, err := s.wstmt[stSetJournalFolded].ExecContext(ctx, int64(skip)); err != nil {
			return fmt.Errorf("open leaf journal: %w", err)
		}
		j.done(skip)
	}
	s.stopFolder, s.folderDone = make(chan struct{}), make(chan struct{})
	go s.folder()
	return nil
}

// folder folds the journal foldDelay after a leaf is journalled, unless an
// Update did meanwhile.
func (s *Store) folder() {
	defer close(s.folderDone)
	t := time.NewTimer(foldDelay)
	t.Stop()
	for {
		select {
		case <-s.stopFolder:
			return
		case <-s.journal.kick:
		}
		t.Reset(foldDelay)
		select {
		case <-s.stopFolder:
			return
		case <-t.C:
		}
		// A failed fold is tried again at the next leaf, Update or read
		// of leaves; its Updates' callers heard of the failure.
		_ = s.fold(context.Background())
	}
}

// fold moves the journalled leaves into leaves, if there are any, in an
// Update of its own (runGroup folds them first in every transaction).
// Every read of leaves folds first, so that a leaf journalled before it
// began is in what it reads.
func (s *Store) fold(ctx context.Context) error {
	if s.journal == nil || !s.journal.waiting() {
		return nil
	}
	return s.Update(ctx, func(vault.Tx) error { return nil })
}

// JournalLeaves makes ls durable in the leaf journal and returns; a later
// transaction adds them to leaves, in order, before any read of leaves
// and before any Update that begins after it returns. It returns false,
// and does nothing, if this Store has no journal: add them in an Update.
func (s *Store) JournalLeaves(ctx context.Context, ls []vault.Leaf) (bool, error) {
	if s.journal == nil {
		return false, nil
	}
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("journal leaves: %w", err)
	}
	for _, l := range ls {
		if err := checkLeaf(l); err != nil {
			return false, fmt.Errorf("journal leaf: %w", err)
		}
	}
	err := s.journal.add(ls)
	if errors.Is(err, errJournalStopped) {
		return false, nil
	}
	return err == nil, err
}

// Close closes the database. Updates and reads in flight fail.
func (s *Store) Close() error {
	var errs []error
	if s.journal != nil {
		s.closing.Do(func() {
			if s.stopFolder != nil {
				close(s.stopFolder)
				<-s.folderDone
			}
			// What is left in the journal is folded at the next open if
			// not now; what is appended meanwhile fails or is left.
			errs = append(errs, s.fold(context.Background()), s.journal.close())
		})
	}
	if s.ckpt != nil {
		errs = append(errs, s.ckpt.Close())
	}
	return errors.Join(append(errs, sqlitedb.Close(s.w, s.r))...)
}

// checkpointPause is the least time between two background checkpoints:
// about as often as SQLite's own every 1000 pages when a read's decision
// record commits every half millisecond, and each copies a page once
// however many commits rewrote it meanwhile.
const checkpointPause = 100 * time.Millisecond

// groupMax bounds how many queued Updates one transaction runs.
const groupMax = 32

// update is one Update waiting for the writer.
type update struct {
	ctx  context.Context
	fn   func(vault.Tx) error
	done chan error    // its outcome, once its group committed or it failed
	lead chan struct{} // closed when it is to run the next group
}

// panicked carries a panic of an Update's fn to the goroutine that called
// Update, which panics again with it.
type panicked struct{ v any }

func (p panicked) Error() string { return fmt.Sprint("sqlite update panicked: ", p.v) }

// Update runs fn in one immediate transaction on the writer connection and
// commits it, durably, if fn returns nil; if fn returns an error, nothing fn
// did is kept and that error is returned.
//
// Updates queue for that connection and are committed in groups (group
// commit): the caller at the head of the queue runs up to groupMax queued
// Updates in one transaction, each inside its own savepoint, so that an
// Update that fails is rolled back alone, and commits them together; then
// it hands the next group to the new head and returns. Each caller returns
// only once its own work is durable or failed. One commit, and one write
// of each page the group dirtied, then serve several requests: with
// synchronous=FULL a commit is an fsync and every page it dirtied written
// again to the WAL, and the blind index spreads a write over as many pages
// as it has tokens.
//
// Statements never watch a caller's context (see point): the driver would
// interrupt the statement, and SQLite then rolls back the whole
// transaction, the group's other Updates with it. An Update whose context
// ends before it runs, or while it runs, is rolled back to its savepoint
// and returns the context's error.
func (s *Store) Update(ctx context.Context, fn func(vault.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("begin sqlite transaction: %w", err)
	}
	u := &update{ctx: ctx, fn: fn, done: make(chan error, 1), lead: make(chan struct{})}
	s.mu.Lock()
	s.queue = append(s.queue, u)
	if !s.leading {
		s.leading = true
		close(u.lead)
	}
	s.mu.Unlock()
	select {
	case err := <-u.done:
		return rethrow(err)
	case <-u.lead:
	}
	// u is the head of the queue: run its group, then pass the lead on.
	s.mu.Lock()
	n := min(len(s.queue), groupMax)
	group := slices.Clone(s.queue[:n])
	s.queue = slices.Delete(s.queue, 0, n)
	s.mu.Unlock()
	s.runGroup(group)
	s.mu.Lock()
	if len(s.queue) > 0 {
		close(s.queue[0].lead)
	} else {
		s.leading = false
	}
	s.mu.Unlock()
	return rethrow(<-u.done)
}

// rethrow panics again with a panic of the caller's own fn.
func rethrow(err error) error {
	if p, ok := err.(panicked); ok {
		panic(p.v)
	}
	return err
}

// runGroup runs the Updates of a group in one transaction and tells each
// its outcome.
func (s *Store) runGroup(group []*update) {
	fail := func(us []*update, err error) {
		for _, u := range us {
			u.done <- err
		}
	}
	// The transaction is the group's: no one caller's context may end it.
	ctx := context.WithoutCancel(group[0].ctx)
	sqlTx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		fail(group, fmt.Errorf("begin sqlite transaction: %w", mapErr(err)))
		return
	}
	// A no-op after Commit; otherwise it discards everything and frees the
	// writer connection.
	defer sqlTx.Rollback()
	t := &tx{s: s, tx: sqlTx}
	if err := s.syncLevel(ctx, t); err != nil {
		fail(group, err)
		return
	}
	// Journalled leaves first: each was acknowledged before this group
	// began, so the log has them before the leaves the group adds.
	folded, err := t.fold(ctx)
	if err != nil {
		fail(group, err)
		return
	}
	// Nothing changes the level while the group holds the write lock: no
	// other commit, and so no reader's newer load (replace).
	rl := s.recentLevel
	rl.mu.Lock()
	t.gen, t.merged, t.live = rl.gen, rl.merged, rl.live
	rl.mu.Unlock()
	var ok, erasers []*update
	for i, u := range group {
		if err := u.ctx.Err(); err != nil {
			u.done <- fmt.Errorf("begin sqlite transaction: %w", err)
			continue
		}
		// One Update alone needs no savepoint: on failure the whole
		// transaction, its own, is rolled back.
		alone := len(group) == 1
		if !alone {
			if _, err := t.stmt(ctx, stSavepoint).ExecContext(ctx); err != nil {
				fail(append(ok, group[i:]...), fmt.Errorf("sqlite savepoint: %w", mapErr(err)))
				return
			}
		}
		t.erased = false
		mark := len(t.staged)
		err := runFn(u, t)
		if err == nil {
			err = t.flush(ctx)
		}
		t.dropPending() // a failed Update's go with it
		if err != nil {
			t.staged = t.staged[:mark]
		}
		if err == nil && u.ctx.Err() != nil {
			err = fmt.Errorf("commit sqlite transaction: %w", u.ctx.Err())
		}
		if err != nil && alone {
			u.done <- err
			return
		}
		if err != nil {
			_, rerr := t.stmt(ctx, stRollbackTo).ExecContext(ctx)
			if rerr == nil {
				_, rerr = t.stmt(ctx, stRelease).ExecContext(ctx)
			}
			if rerr != nil {
				// The transaction itself is gone (SQLite rolls back all of
				// it on some errors): nothing of the group is kept.
				u.done <- err
				fail(append(ok, group[i+1:]...), fmt.Errorf("sqlite transaction: %w", mapErr(rerr)))
				return
			}
			u.done <- err
			continue
		}
		if !alone {
			if _, err := t.stmt(ctx, stRelease).ExecContext(ctx); err != nil {
				fail(append(ok, group[i:]...), fmt.Errorf("sqlite savepoint: %w", mapErr(err)))
				return
			}
		}
		ok = append(ok, u)
		if t.erased {
			erasers = append(erasers, u)
		}
	}
	if len(ok) == 0 {
		return
	}
	// Merges run in the group's transaction: at every commit each posting
	// is in one level.
	if !s.counted {
		err := sqlTx.QueryRowContext(ctx, `SELECT count(*) FROM postings_mid`).Scan(&s.mid)
		if err != nil {
			fail(ok, fmt.Errorf("count postings: %w", mapErr(err)))
			return
		}
		// What this group inserted is in the count already.
		s.mid, s.counted = s.mid-t.inserted, true
	}
	mid := s.mid + t.inserted
	gen := t.gen + 1
	var merged int64
	if t.recentRows() >= s.mergeRows {
		ps := rl.livePostings(t.staged)
		for _, p := range ps {
			merged = max(merged, p.seq)
		}
		t.pending = ps
		n := t.inserted
		err := t.flush(ctx)
		if err == nil {
			_, err = t.stmt(ctx, stSetMerged).ExecContext(ctx, merged)
		}
		if err != nil {
			fail(ok, fmt.Errorf("merge recent postings: %w", mapErr(err)))
			return
		}
		mid += t.inserted - n
	}
	changed := len(t.staged) > 0 || merged != 0
	if changed {
		if _, err := t.stmt(ctx, stSetGen).ExecContext(ctx, int64(gen)); err != nil {
			fail(ok, fmt.Errorf("index generation: %w", mapErr(err)))
			return
		}
	}
	merging, mergeFrom := s.merging || mid >= midFanout*s.mergeRows, s.mergeFrom
	if merging {
		moved, next, err := t.mergeChunk(ctx, mergeFrom, min(s.mergeRows, s.chunkRows))
		if err != nil {
			fail(ok, fmt.Errorf("merge postings: %w", err))
			return
		}
		mid -= moved
		merging, mergeFrom = next != nil, next
	}
	if changed {
		rl.begin(gen)
	}
	if err := sqlTx.Commit(); err != nil {
		if changed {
			s.settle(ctx, gen, t.staged, merged)
		}
		fail(ok, fmt.Errorf("commit sqlite transaction: %w", mapErr(err)))
		return
	}
	s.ckpt.Kick()
	if folded != 0 {
		s.journal.done(folded)
	}
	if changed {
		rl.apply(t.staged, gen, merged)
	}
	s.mid = mid
	if s.merging && !merging {
		// Count postings_mid again at the next group: deletions of its
		// postings are not counted as they happen.
		s.counted = false
	}
	s.merging, s.mergeFrom = merging, mergeFrom
	var cerr error
	if len(erasers) > 0 {
		// The WAL still holds the erased pages as they were; fold it into
		// the database (where secure_delete zeroed them) and truncate it.
		// Only an erasure's caller hears of a failure here: the others'
		// work is committed.
		if err := s.ckpt.Truncate(ctx); err != nil {
			cerr = fmt.Errorf("checkpoint after erasure: %w", err)
		}
	}
	for _, u := range ok {
		if slices.Contains(erasers, u) {
			u.done <- cerr
		} else {
			u.done <- nil
		}
	}
}

// fold adds the leaves waiting in the journal to leaves, those above the
// watermark only (a fold whose commit reported an error may have
// committed), and moves the watermark. It returns the last number folded,
// 0 for none.
func (t *tx) fold(ctx context.Context) (uint64, error) {
	if t.s.journal == nil {
		return 0, nil
	}
	js := t.s.journal.take()
	if len(js) == 0 {
		return 0, nil
	}
	var w int64
	if err := t.stmt(ctx, stJournalFolded).QueryRowContext(ctx).Scan(&w); err != nil {
		return 0, fmt.Errorf("fold leaf journal: %w", mapErr(err))
	}
	last := uint64(w)
	for _, j := range js {
		if j.n <= last {
			continue
		}
		if _, err := t.AddLeaf(ctx, j.leaf); err != nil {
			return 0, fmt.Errorf("fold leaf journal: %w", err)
		}
		last = j.n
	}
	if _, err := t.stmt(ctx, stSetJournalFolded).ExecContext(ctx, int64(last)); err != nil {
		return 0, fmt.Errorf("fold leaf journal: %w", mapErr(err))
	}
	return last, nil
}

// runFn runs an Update's fn, turning a panic into a panicked error for its
// caller, and a failure after its context ended into the context's error.
func runFn(u *update, t *tx) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = panicked{v}
		}
	}()
	if err := u.fn(t); err != nil {
		if u.ctx.Err() != nil {
			return fmt.Errorf("sqlite transaction: %w", u.ctx.Err())
		}
		return err
	}
	return nil
}

// Versions returns versions of any resource in leaf Seq order.
func (s *Store) Versions(ctx context.Context, after int64, limit int) ([]vault.Record, error) {
	if limit <= 0 {
		return nil, nil
	}
	var out []vault.Record
	err := eachRow(func(vals []driver.Value) error {
		r, err := recordOfRow(vals)
		out = append(out, r)
		return err
	}, func(h int64) *sql.Row { return s.rstmt[stVersions].QueryRowContext(ctx, h, after, limit) })
	if err != nil {
		return nil, fmt.Errorf("list versions: %w", err)
	}
	sortBySeq(out, func(r vault.Record) int64 { return r.Leaf.Seq })
	return out, nil
}

// recordOfRow reads the values of a row of changesSQL, as queryRecords
// would scan it. It repeats scanRecord's columns rather than call it
// through a Scan over the values: that way (tried) every row's fields
// escaped through the interface and the audit of a million resources took
// 5 % more CPU. TestListingsOfAnEditedFile holds the two together.
func recordOfRow(vals []driver.Value) (r vault.Record, err error) {
	if len(vals) != 16 {
		return r, errRowsArgs
	}
	var lastUpdated, leafType int64
	errs := [...]error{
		take(&r.Type, vals[0], takeString), take(&r.ID, vals[1], takeString),
		take(&r.Leaf.Seq, vals[2], takeInt), take(&r.Version, vals[3], takeInt),
		take(&lastUpdated, vals[4], takeInt), take(&r.Deleted, vals[5], takeBool),
		take(&r.Erased, vals[6], takeBool), take(&r.KeyID, vals[7], takeString),
		take(&r.Ciphertext, vals[8], takeBytes), take(&r.Salt, vals[9], takeBytes),
		take(&r.Commitment, vals[10], takeBytes), take(&r.Deid, vals[11], takeBytes),
		take(&leafType, vals[12], takeInt), take(&r.Leaf.Data, vals[13], takeBytes),
		take(&r.Leaf.Ref, vals[14], takeString), take(&r.Client, vals[15], takeString),
	}
	if err := errors.Join(errs[:]...); err != nil {
		return vault.Record{}, err
	}
	r.LastUpdated = time.UnixMicro(lastUpdated).UTC()
	r.Leaf.Type = uint8(leafType)
	return r, nil
}

// Changes returns the versions that match f, newest first.
func (s *Store) Changes(ctx context.Context, f vault.ChangeFilter) ([]vault.Record, error) {
	before := f.Before
	if before <= 0 {
		before = math.MaxInt64
	}
	since := int64(math.MinInt64)
	if !f.Since.IsZero() {
		since = f.Since.UnixMicro()
	}
	limit := int64(f.Limit)
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	st, args := s.rstmt[stChanges], []any{before, since, limit}
	if f.Type != "" {
		st, args = s.rstmt[stChangesOfType], append([]any{f.Type}, args...)
	}
	out, err := queryRecords(ctx, st, args...)
	if err != nil {
		return nil, fmt.Errorf("list changes: %w", err)
	}
	return out, nil
}

// Sealed returns the current versions sealed under keyID, by type and id.
func (s *Store) Sealed(ctx context.Context, keyID string) ([]vault.Record, error) {
	out, err := queryRecords(ctx, s.rstmt[stSealed], keyID)
	if err != nil {
		return nil, fmt.Errorf("list sealed versions: %w", err)
	}
	return out, nil
}

// queryRecords runs a query of changesSQL.
func queryRecords(ctx context.Context, st *sql.Stmt, args ...any) ([]vault.Record, error) {
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []vault.Record
	for rows.Next() {
		var typ, id string
		r, err := scanRecord(prefixed{rows, []any{&typ, &id}}, "", "")
		if err != nil {
			return nil, err
		}
		r.Type, r.ID = typ, id
		out = append(out, r)
	}
	return out, rows.Err()
}

// Records returns the leaf records as stored, in Seq order.
func (s *Store) Records(ctx context.Context, after int64, limit int) ([]vault.Leaf, error) {
	if err := s.fold(ctx); err != nil {
		return nil, fmt.Errorf("fold leaf journal: %w", err)
	}
	if limit <= 0 {
		return nil, nil
	}
	var ls []vault.Leaf
	err := eachRow(func(vals []driver.Value) error {
		if len(vals) != 7 {
			return errRowsArgs
		}
		var l vault.Leaf
		var typ, at int64
		err := errors.Join(take(&l.Seq, vals[0], takeInt), take(&typ, vals[1], takeInt),
			take(&l.Record, vals[2], takeBytes), take(&l.Salt, vals[3], takeBytes),
			take(&l.Subject, vals[4], takeString), take(&l.Actor, vals[5], takeString),
			take(&at, vals[6], takeInt))
		l.Record = vault.UnpackRecord(l.Record)
		l.Type, l.Time = uint8(typ), time.UnixMicro(at).UTC()
		ls = append(ls, l)
		return err
	}, func(h int64) *sql.Row { return s.rstmt[stRecords].QueryRowContext(ctx, h, after, limit) })
	if err != nil {
		return nil, fmt.Errorf("list records: %w", err)
	}
	sortBySeq(ls, func(l vault.Leaf) int64 { return l.Seq })
	return ls, nil
}

// IndexEntries returns postings in (token, type, id) order.
func (s *Store) IndexEntries(ctx context.Context, after vault.IndexEntry, limit int) ([]vault.IndexEntry, error) {
	if limit <= 0 {
		return nil, nil
	}
	sn, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("list index entries: %w", err)
	}
	defer sn.end()
	rows, err := sn.tx.StmtContext(ctx, s.rstmt[stIndexEntries]).QueryContext(ctx, nonNil(after.Token), after.Seq, limit)
	if err != nil {
		return nil, fmt.Errorf("list index entries: %w", err)
	}
	defer rows.Close()
	es := make([]vault.IndexEntry, 0, min(limit, 4096))
	for rows.Next() {
		var e vault.IndexEntry
		if err := rows.Scan(&e.Token, &e.Seq); err != nil {
			return nil, fmt.Errorf("list index entries: %w", err)
		}
		es = append(es, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list index entries: %w", err)
	}
	var more []vault.IndexEntry
	err = sn.read(ctx, func(rl *recentLevel) (err error) {
		more, err = rl.entries(sn.gen, after, limit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list index entries: %w", err)
	}
	if len(more) == 0 {
		return es, nil
	}
	// Both are sorted; a posting in both (a damaged table) is listed
	// twice, as the tables' levels list it.
	return mergeEntries(es, more, limit), nil
}

// mergeEntries merges two lists of entries sorted by compareEntries into
// the first limit of both.
func mergeEntries(a, b []vault.IndexEntry, limit int) []vault.IndexEntry {
	out := make([]vault.IndexEntry, 0, min(len(a)+len(b), limit))
	for len(out) < limit && (len(a) > 0 || len(b) > 0) {
		if len(b) == 0 || len(a) > 0 && compareEntries(a[0], b[0]) <= 0 {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return out
}

// IDs returns the ids of the resources of type typ, ascending.
func (s *Store) IDs(ctx context.Context, typ string, limit int) ([]string, error) {
	rows, err := s.rstmt[stIDs].QueryContext(ctx, typ, limit)
	if err != nil {
		return nil, fmt.Errorf("list %s ids: %w", typ, mapErr(err))
	}
	ids, err := scanIDs(rows)
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
	var out []vault.TokenSet
	err := eachRow(func(vals []driver.Value) error {
		if len(vals) != 2 {
			return errRowsArgs
		}
		var seq int64
		var b []byte
		if err := errors.Join(take(&seq, vals[0], takeInt), take(&b, vals[1], takeBytes)); err != nil {
			return err
		}
		tokens, err := vault.DecodeTokenSet(b)
		out = append(out, vault.TokenSet{Seq: seq, Tokens: tokens, Bad: err != nil})
		return nil
	}, func(h int64) *sql.Row { return s.rstmt[stTokenSets].QueryRowContext(ctx, h, after, limit) })
	if err != nil {
		return nil, fmt.Errorf("list token sets: %w", err)
	}
	sortBySeq(out, func(t vault.TokenSet) int64 { return t.Seq })
	return out, nil
}

// IndexVersion returns the version of the rules the index was built by.
func (s *Store) IndexVersion(ctx context.Context) (string, error) {
	var v string
	if err := s.rstmt[stIndexVersion].QueryRowContext(ctx).Scan(&v); err != nil {
		return "", fmt.Errorf("get index version: %w", mapErr(err))
	}
	return v, nil
}

// Response returns the committed response remembered for an idempotency key.
func (s *Store) Response(ctx context.Context, key []byte) ([]byte, error) {
	return queryBlob(ctx, s.rstmt[stResponse], "get response", nonNil(key))
}

// Responses returns remembered responses in key order.
func (s *Store) Responses(ctx context.Context, after []byte, limit int) ([]vault.Response, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.rstmt[stResponses].QueryContext(ctx, nonNil(after), limit)
	if err != nil {
		return nil, fmt.Errorf("list responses: %w", err)
	}
	defer rows.Close()
	var out []vault.Response
	for rows.Next() {
		var r vault.Response
		var created int64
		if err := rows.Scan(&r.Key, &r.Body, &created); err != nil {
			return nil, fmt.Errorf("list responses: %w", err)
		}
		r.Created = time.UnixMicro(created).UTC()
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list responses: %w", err)
	}
	return out, nil
}

// DataKeys returns wrapped data keys in id order.
func (s *Store) DataKeys(ctx context.Context, after string, limit int) ([]vault.WrappedKey, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.rstmt[stDataKeys].QueryContext(ctx, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list data keys: %w", err)
	}
	defer rows.Close()
	var out []vault.WrappedKey
	for rows.Next() {
		var k vault.WrappedKey
		if err := rows.Scan(&k.ID, &k.Wrapped); err != nil {
			return nil, fmt.Errorf("list data keys: %w", err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list data keys: %w", err)
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

// Currents returns the latest version of each of ids of type typ that
// has one, in one query per findAnyChunk distinct ids.
func (s *Store) Currents(ctx context.Context, typ string, ids []string) ([]vault.Record, error) {
	// Distinct, or an id in two chunks would be returned twice.
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	var out []vault.Record
	for chunk := range slices.Chunk(ids, findAnyChunk) {
		args := make([]any, 0, len(chunk)+1)
		args = append(args, typ)
		for _, id := range chunk {
			args = append(args, id)
		}
		rows, err := s.r.QueryContext(ctx, `SELECT v.id, `+recordColumns+`
FROM versions v JOIN leaves l ON l.seq = v.seq
WHERE v.type = ?1 AND v.id IN (?`+strings.Repeat(", ?", len(chunk)-1)+`)
AND v.version = (SELECT max(w.version) FROM versions w WHERE w.type = ?1 AND w.id = v.id)`, args...)
		if err != nil {
			return nil, fmt.Errorf("get current %s: %w", typ, mapErr(err))
		}
		for rows.Next() {
			var id string
			r, err := scanRecord(prefixScanner{rows, &id}, typ, "")
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("get current %s: %w", typ, err)
			}
			r.ID = id
			out = append(out, r)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("get current %s: %w", typ, mapErr(err))
		}
	}
	return out, nil
}

// prefixScanner scans a row's first column into first and the rest as
// scanRecord asks.
type prefixScanner struct {
	row   rowScanner
	first any
}

func (p prefixScanner) Scan(dest ...any) error {
	return p.row.Scan(append([]any{p.first}, dest...)...)
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
	if err := s.fold(ctx); err != nil {
		return nil, fmt.Errorf("fold leaf journal: %w", err)
	}
	if limit <= 0 {
		return nil, nil
	}
	var ls []vault.Leaf
	err := eachRow(func(vals []driver.Value) error {
		if len(vals) != 4 {
			return errRowsArgs
		}
		var l vault.Leaf
		var typ int64
		err := errors.Join(take(&l.Seq, vals[0], takeInt), take(&typ, vals[1], takeInt),
			take(&l.Data, vals[2], takeBytes), take(&l.Ref, vals[3], takeString))
		l.Type = uint8(typ)
		ls = append(ls, l)
		return err
	}, func(h int64) *sql.Row { return s.rstmt[stLeaves].QueryRowContext(ctx, h, after, limit) })
	if err != nil {
		return nil, fmt.Errorf("get leaves: %w", err)
	}
	sortBySeq(ls, func(l vault.Leaf) int64 { return l.Seq })
	return ls, nil
}

// Stats counts what the store holds. It scans each table's smallest index,
// so it is meant for health checks and tests, not hot paths.
func (s *Store) Stats(ctx context.Context) (vault.Stats, error) {
	if err := s.fold(ctx); err != nil {
		return vault.Stats{}, fmt.Errorf("fold leaf journal: %w", err)
	}
	var st vault.Stats
	err := s.rstmt[stStats].QueryRowContext(ctx).Scan(&st.Versions, &st.Leaves, &st.DataKeys, &st.Responses, &st.Policies)
	if err != nil {
		return vault.Stats{}, fmt.Errorf("get stats: %w", err)
	}
	return st, nil
}

// Find returns the ids of the live resources of type typ whose current
// version carries token, as committed.
func (s *Store) Find(ctx context.Context, typ string, token []byte) ([]string, error) {
	sn, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", typ, err)
	}
	defer sn.end()
	ids, err := queryIDs(ctx, sn.tx.StmtContext(ctx, s.rstmt[stFindCommitted]), typ, token)
	if err != nil {
		return nil, err
	}
	return sn.withRecent(ctx, ids, typ, [][]byte{token})
}

// FindAny returns the ids, ascending, of the live resources of type typ
// whose current version carries any of tokens, as committed.
func (s *Store) FindAny(ctx context.Context, typ string, tokens [][]byte) ([]string, error) {
	sn, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", typ, err)
	}
	defer sn.end()
	return sn.findAny(ctx, typ, tokens)
}

// findAny is FindAny in the snapshot.
func (sn *snapshot) findAny(ctx context.Context, typ string, tokens [][]byte) ([]string, error) {
	ids, err := findAny(ctx, sn.tx, typ, tokens)
	if err != nil {
		return nil, err
	}
	return sn.withRecent(ctx, ids, typ, tokens)
}

// withRecent adds to ids, found in the tables, those the recent level
// holds for tokens in the snapshot.
func (sn *snapshot) withRecent(ctx context.Context, ids []string, typ string, tokens [][]byte) ([]string, error) {
	var more []string
	err := sn.read(ctx, func(rl *recentLevel) (err error) {
		more, err = rl.findAny(sn.gen, typ, tokens, nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", typ, err)
	}
	return mergeIDs(ids, more), nil
}

// findAnyChunk bounds the tokens of one FindAny query, well under SQLite's
// limit on bound variables (32766 in modernc.org/sqlite).
const findAnyChunk = 500

// queryer is *sql.DB or *sql.Tx.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// findAnySQL is the FindAny query of n tokens, then the type.
func findAnySQL(n int) string {
	return `SELECT DISTINCT v.id FROM ` + postingsIn(n) + ` p
JOIN versions v INDEXED BY versions_ident ON v.seq = p.seq WHERE v.type = ? ORDER BY v.id`
}

// countPostingsSQL counts the postings of n tokens, up to a limit bound last.
func countPostingsSQL(n int) string {
	return `SELECT count(*) FROM (SELECT 1 FROM ` + postingsIn(n) + ` LIMIT ?)`
}

// findAny runs FindAny as one query per findAnyChunk tokens.
func findAny(ctx context.Context, q queryer, typ string, tokens [][]byte) ([]string, error) {
	var ids []string
	for chunk := range slices.Chunk(tokens, findAnyChunk) {
		args := tokensArgs(make([]any, 0, 2*len(chunk)+1), chunk)
		args = append(args, typ)
		query := findAnySQL(len(chunk))
		rows, err := q.QueryContext(ctx, query, args...)
		if err != nil {
			return nil, fmt.Errorf("find %s: %w", typ, mapErr(err))
		}
		got, err := scanIDs(rows)
		if err != nil {
			return nil, fmt.Errorf("find %s: %w", typ, err)
		}
		ids = append(ids, got...)
	}
	if len(tokens) > findAnyChunk {
		slices.Sort(ids)
		ids = slices.Compact(ids)
	}
	return ids, nil
}

// FindAll returns the ids, ascending, of the live resources of type typ
// whose current version carries at least one token of every clause. The
// clause with the fewest postings (vault.ByFewest) drives one
// query that, for each of its Seqs, probes the other clauses' (token, seq)
// keys: a patient's few postings narrow a code every patient has without
// reading the code's postings, nor mapping them to ids.
//
// The recent level answers for its own postings (a version's postings
// are all in one level) and the tables for theirs, in one snapshot.
func (s *Store) FindAll(ctx context.Context, typ string, clauses [][][]byte) ([]string, error) {
	if len(clauses) == 0 {
		return nil, nil
	}
	sn, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", typ, err)
	}
	defer sn.end()
	if len(clauses) == 1 {
		return sn.findAny(ctx, typ, clauses[0])
	}
	total := 0
	for _, c := range clauses {
		if len(c) == 0 {
			return nil, nil
		}
		total += len(c)
	}
	if total > findAnyChunk {
		// More tokens than one query binds: each clause alone.
		return vault.FindEach(ctx, typ, clauses, sn.findAny)
	}
	ids, err := findAllStored(ctx, sn.tx, typ, clauses)
	if err != nil {
		return nil, err
	}
	var more []string
	err = sn.read(ctx, func(rl *recentLevel) (err error) {
		more, err = rl.findAll(sn.gen, typ, clauses)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", typ, err)
	}
	return mergeIDs(ids, more), nil
}

// findAllStored is FindAll over the tables' postings.
func findAllStored(ctx context.Context, q queryer, typ string, clauses [][][]byte) ([]string, error) {
	order, err := vault.ByFewest(clauses, func(tokens [][]byte) (int, error) {
		return countPostings(ctx, q, tokens, vault.FindAllCap)
	})
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", typ, err)
	}
	if order == nil {
		return nil, nil
	}
	query, args := findAllQuery(typ, clauses, order)
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", typ, mapErr(err))
	}
	ids, err := scanIDs(rows)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", typ, err)
	}
	return ids, nil
}

// findAllQuery is FindAll's query: the postings of the clause order[0]
// drive, and each of the others is probed by its (token, seq) keys.
func findAllQuery(typ string, clauses [][][]byte, order []int) (string, []any) {
	var q strings.Builder
	args := make([]any, 0, 64)
	q.WriteString("SELECT DISTINCT v.id FROM " + postingsIn(len(clauses[order[0]])) +
		" p JOIN versions v INDEXED BY versions_ident ON v.seq = p.seq WHERE v.type = ?")
	args = tokensArgs(args, clauses[order[0]])
	args = append(args, typ)
	for k, i := range order[1:] {
		in := "(?" + strings.Repeat(", ?", len(clauses[i])-1) + ")"
		for j, table := range postingTables {
			a := "q" + strconv.Itoa(k) + "_" + strconv.Itoa(j)
			if j == 0 {
				q.WriteString(" AND (")
			} else {
				q.WriteString(" OR ")
			}
			q.WriteString("EXISTS (SELECT 1 FROM " + table + " " + a + " WHERE " + a + ".seq = p.seq AND " + a + ".token IN " + in + ")")
		}
		q.WriteString(")")
		args = tokensArgs(args, clauses[i])
	}
	q.WriteString(" ORDER BY v.id")
	return q.String(), args
}

// countPostings counts the postings of tokens, up to limit.
func countPostings(ctx context.Context, q queryer, tokens [][]byte, limit int) (int, error) {
	args := tokensArgs(make([]any, 0, 2*len(tokens)+1), tokens)
	args = append(args, limit)
	rows, err := q.QueryContext(ctx, countPostingsSQL(len(tokens)), args...)
	if err != nil {
		return 0, mapErr(err)
	}
	defer rows.Close()
	n := 0
	if rows.Next() {
		if err := rows.Scan(&n); err != nil {
			return 0, err
		}
	}
	return n, rows.Err()
}

// scanIDs reads a one-column result of ids and closes rows.
func scanIDs(rows *sql.Rows) ([]string, error) {
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// Leaf returns one leaf with its record, if it has one.
func (s *Store) Leaf(ctx context.Context, seq int64) (vault.Leaf, error) {
	if err := s.fold(ctx); err != nil {
		return vault.Leaf{}, fmt.Errorf("fold leaf journal: %w", err)
	}
	l, err := scanLeaf(s.rstmt[stLeaf].QueryRowContext(ctx, seq))
	if errors.Is(err, sql.ErrNoRows) {
		err = vault.ErrNotFound
	}
	if err != nil {
		return vault.Leaf{}, fmt.Errorf("get leaf %d: %w", seq, err)
	}
	return l, nil
}

// FindLeaves returns the leaves with a record that match f, newest first.
func (s *Store) FindLeaves(ctx context.Context, f vault.LeafFilter) ([]vault.Leaf, error) {
	if err := s.fold(ctx); err != nil {
		return nil, fmt.Errorf("fold leaf journal: %w", err)
	}
	before := f.Before
	if before <= 0 {
		before = math.MaxInt64
	}
	mask := 0
	args := []any{before}
	if f.Type != 0 {
		mask |= filterType
		args = append(args, int64(f.Type))
	}
	if f.Subject != "" {
		mask |= filterSubject
		args = append(args, f.Subject)
	}
	if f.Actor != "" {
		mask |= filterActor
		args = append(args, f.Actor)
	}
	limit := int64(f.Limit)
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	args = append(args, limit)
	rows, err := s.fstmt[mask].QueryContext(ctx, args...)
	if err != nil {
		return nil, fmt.Errorf("find leaves: %w", err)
	}
	defer rows.Close()
	var ls []vault.Leaf
	for rows.Next() {
		l, err := scanLeaf(rows)
		if err != nil {
			return nil, fmt.Errorf("find leaves: %w", err)
		}
		ls = append(ls, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find leaves: %w", err)
	}
	return ls, nil
}

// Policy returns one version of the policy bundle.
func (s *Store) Policy(ctx context.Context, version int64) (vault.Policy, error) {
	var p vault.Policy
	var created int64
	err := s.rstmt[stPolicy].QueryRowContext(ctx, version).Scan(&p.Version, &p.Revision, &p.Bundle, &created, &p.Author)
	if errors.Is(err, sql.ErrNoRows) {
		err = vault.ErrNotFound
	}
	if err != nil {
		return vault.Policy{}, fmt.Errorf("get policy version %d: %w", version, err)
	}
	p.Created = time.UnixMicro(created).UTC()
	return p, nil
}

// Policies returns every policy version, newest first, without bundles.
func (s *Store) Policies(ctx context.Context) ([]vault.Policy, error) {
	rows, err := s.rstmt[stPolicies].QueryContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("list policies: %w", err)
	}
	defer rows.Close()
	var ps []vault.Policy
	for rows.Next() {
		var p vault.Policy
		var created int64
		if err := rows.Scan(&p.Version, &p.Revision, &created, &p.Author); err != nil {
			return nil, fmt.Errorf("list policies: %w", err)
		}
		p.Created = time.UnixMicro(created).UTC()
		ps = append(ps, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list policies: %w", err)
	}
	return ps, nil
}

// tx is a vault.Tx on one SQLite transaction. It binds the Store's prepared
// statements to the transaction on first use.
type tx struct {
	s      *Store
	tx     *sql.Tx
	stmts  [numWriteStmts + postingSizes]*sql.Stmt
	erased bool // Erase ran: checkpoint the WAL after commit
	// inserted counts the postings_mid rows the transaction's inserts
	// wrote (or tried to: rolled back or ignored ones too), which is
	// enough to tell when to merge. The levels' counts are estimates in
	// the same way (a merge's ignored duplicates are counted).
	inserted int
	// pending are postings on their way to postings_mid: those of token
	// sets rewritten at or below the watermark (reindex), not inserted
	// yet, and a merge's. They go in at the end of the Update (or before
	// the first statement of it that reads or deletes postings) sorted, 64
	// rows a statement: a posting row costs a B-tree seek and insert
	// however it comes, and a statement per few rows adds a fifth to that.
	pending []posting
	// staged are the group's changes to the recent level, in order,
	// applied to it once the group commits (recent.go); gen, merged and
	// live are the level's as the group began.
	staged []recentOp
	gen    uint64
	merged int64
	live   int
}

// recentRows estimates the postings the recent level holds after the
// group: removals staged are counted as if each removed one.
func (t *tx) recentRows() int {
	n := t.live
	for _, op := range t.staged {
		if op.remove {
			n--
		} else {
			n++
		}
	}
	return n
}

// posting is a postings row.
type posting struct {
	token []byte
	seq   int64
}

// flush inserts the pending postings.
func (t *tx) flush(ctx context.Context) error {
	ps := t.pending
	if len(ps) == 0 {
		return nil
	}
	if !slices.IsSortedFunc(ps, comparePostings) { // a merge's are
		slices.SortFunc(ps, comparePostings)
	}
	args := make([]any, 0, 2*min(len(ps), postingRows))
	for len(ps) > 0 {
		i := min(bits.Len(uint(len(ps))), postingSizes) - 1
		k := 1 << i
		args = args[:0]
		for _, p := range ps[:k] {
			args = append(args, p.token, p.seq)
		}
		if _, err := t.stmt(ctx, numWriteStmts+i).ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("insert postings: %w", mapErr(err))
		}
		t.inserted += k
		ps = ps[k:]
	}
	t.dropPending()
	return nil
}

// dropPending forgets the pending postings, keeping their array.
func (t *tx) dropPending() {
	clear(t.pending)
	t.pending = t.pending[:0]
}

// point returns the context for a statement of the transaction: ctx
// without its cancellation. The driver watches a cancellable context with a
// goroutine per statement, and interrupts the statement when it ends, which
// makes SQLite roll back the whole transaction, the other Updates of its
// group with it (see Update). An Update whose context ends is rolled back
// to its savepoint once its fn returns, instead. Each method of tx rebinds
// its ctx once, on entry; the helpers it calls take that ctx as it is.
func point(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }

// AddLeaf queues a leaf that stands for no version, and its record if it
// has one.
func (t *tx) AddLeaf(ctx context.Context, l vault.Leaf) (int64, error) {
	ctx = point(ctx)
	if err := checkLeaf(l); err != nil {
		return 0, fmt.Errorf("add leaf: %w", err)
	}
	res, err := t.stmt(ctx, stInsertLeafOnly).ExecContext(ctx, int64(l.Type), nonNil(l.Data), l.Ref)
	if err != nil {
		return 0, fmt.Errorf("add leaf: %w", err)
	}
	seq, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("add leaf: %w", err)
	}
	if len(l.Record) == 0 {
		return seq, nil
	}
	_, err = t.stmt(ctx, stInsertLeafRecord).ExecContext(ctx, seq, int64(l.Type), vault.StoredRecord(&l), nonNil(l.Salt),
		l.Subject, l.Actor, l.Time.UnixMicro())
	if err != nil {
		return 0, fmt.Errorf("add leaf record: %w", err)
	}
	return seq, nil
}

// PutPolicy stores the next version of the policy bundle. The revision is
// looked up first, so a conflict leaves the transaction as it was.
func (t *tx) PutPolicy(ctx context.Context, p vault.Policy) (int64, error) {
	ctx = point(ctx)
	if p.Revision == "" {
		return 0, errors.New("put policy: missing revision")
	}
	var one int
	err := t.stmt(ctx, stPolicyExists).QueryRowContext(ctx, p.Revision).Scan(&one)
	switch {
	case err == nil:
		return 0, fmt.Errorf("put policy: %w", vault.ErrConflict)
	case !errors.Is(err, sql.ErrNoRows):
		return 0, fmt.Errorf("put policy: %w", err)
	}
	res, err := t.stmt(ctx, stInsertPolicy).ExecContext(ctx, p.Revision, nonNil(p.Bundle), p.Created.UnixMicro(), p.Author)
	if err != nil {
		return 0, fmt.Errorf("put policy: %w", mapErr(err))
	}
	// version is the rowid, so the last insert id is the version assigned.
	v, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("put policy: %w", err)
	}
	return v, nil
}

// Erase crypto-shreds what a data key sealed.
func (t *tx) Erase(ctx context.Context, keyID string) (int64, error) {
	ctx = point(ctx)
	res, err := t.stmt(ctx, stDeleteKey).ExecContext(ctx, keyID)
	if err != nil {
		return 0, fmt.Errorf("erase data key: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return 0, fmt.Errorf("erase data key: %w", vault.ErrNotFound)
	}
	if err := t.eraseTokens(ctx, keyID); err != nil {
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

// eraseTokens removes the token sets of the versions sealed under keyID,
// and their postings.
func (t *tx) eraseTokens(ctx context.Context, keyID string) error {
	rows, err := t.stmt(ctx, stEraseSets).QueryContext(ctx, keyID)
	if err != nil {
		return mapErr(err)
	}
	var sets []vault.TokenSet
	for rows.Next() {
		var e vault.TokenSet
		var b []byte
		if err := rows.Scan(&e.Seq, &b); err != nil {
			rows.Close()
			return err
		}
		// A set that does not decode still goes; its postings are the
		// audit's to find.
		e.Tokens, _ = vault.DecodeTokenSet(b)
		sets = append(sets, e)
	}
	if err := rows.Close(); err != nil {
		return err
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for _, e := range sets {
		if err := t.removeSet(ctx, e.Seq, e.Tokens, true); err != nil {
			return err
		}
	}
	return nil
}

// removeSet deletes the token set at seq and the postings of its tokens
// at seq (thorough: see deletePosting).
func (t *tx) removeSet(ctx context.Context, seq int64, tokens [][]byte, thorough bool) error {
	for _, tok := range tokens {
		if err := t.deletePosting(ctx, tok, seq, thorough); err != nil {
			return err
		}
	}
	if _, err := t.stmt(ctx, stDeleteTokenSet).ExecContext(ctx, seq); err != nil {
		return mapErr(err)
	}
	return nil
}

// tokenSet returns the token set stored at seq, or none.
func (t *tx) tokenSet(ctx context.Context, seq int64) ([][]byte, error) {
	var b []byte
	err := t.stmt(ctx, stTokenSetTx).QueryRowContext(ctx, seq).Scan(&b)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, mapErr(err)
	}
	// A set that does not decode is replaced all the same: its postings,
	// if any are left, are the audit's to find and reindex's to drop.
	tokens, _ := vault.DecodeTokenSet(b)
	return tokens, nil
}

// setTokens stores the token set of the version at seq, of resource
// typ/id, and its postings.
func (t *tx) setTokens(ctx context.Context, seq int64, typ, id string, tokens [][]byte) error {
	tokens = vault.SortTokens(slices.Clone(tokens))
	if len(tokens) == 0 {
		return nil // no set: a version without tokens has none
	}
	if _, err := t.stmt(ctx, stInsertTokenSet).ExecContext(ctx, seq, vault.EncodeTokenSet(tokens)); err != nil {
		return mapErr(err)
	}
	t.insertTokens(seq, typ, id, tokens)
	return nil
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
	ctx = point(ctx)
	r, err := scanRecord(t.stmt(ctx, stCurrentTx).QueryRowContext(ctx, typ, id), typ, id)
	if err != nil {
		return vault.Record{}, fmt.Errorf("get current %s: %w", typ, err)
	}
	return r, nil
}

// Find returns the ids of the live resources of type typ whose current
// version carries token.
func (t *tx) Find(ctx context.Context, typ string, token []byte) ([]string, error) {
	ctx = point(ctx)
	if err := t.flush(ctx); err != nil {
		return nil, fmt.Errorf("find %s: %w", typ, err)
	}
	ids, err := queryIDs(ctx, t.stmt(ctx, stFind), typ, token)
	if err != nil {
		return nil, err
	}
	return t.withRecent(ids, typ, [][]byte{token})
}

// FindAny returns the ids, ascending, of the live resources of type typ
// whose current version carries any of tokens, as this transaction sees
// them.
func (t *tx) FindAny(ctx context.Context, typ string, tokens [][]byte) ([]string, error) {
	ctx = point(ctx)
	if err := t.flush(ctx); err != nil {
		return nil, fmt.Errorf("find %s: %w", typ, err)
	}
	ids, err := findAny(ctx, t.tx, typ, tokens)
	if err != nil {
		return nil, err
	}
	return t.withRecent(ids, typ, tokens)
}

// withRecent adds to ids, found in the tables, those the recent level
// holds for tokens as this transaction sees it: as committed (the lead's
// generation) and then changed by its staged ops.
func (t *tx) withRecent(ids []string, typ string, tokens [][]byte) ([]string, error) {
	more, err := t.s.recentLevel.findAny(t.gen, typ, tokens, t.staged)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", typ, err)
	}
	return mergeIDs(ids, more), nil
}

// mergeIDs returns the union of a and b, ascending.
func mergeIDs(a, b []string) []string {
	if len(b) == 0 {
		return a
	}
	a = append(a, b...)
	slices.Sort(a)
	return slices.Compact(a)
}

// SetTokens replaces the tokens of the current live version of a resource.
// The state is checked before anything is written, so an error leaves the
// transaction as it was.
func (t *tx) SetTokens(ctx context.Context, typ, id string, version int64, tokens [][]byte) error {
	ctx = point(ctx)
	var seq, current int64
	var deleted, erased bool
	err := t.stmt(ctx, stCurrentState).QueryRowContext(ctx, typ, id).Scan(&seq, &current, &deleted, &erased)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("set %s tokens: %w", typ, vault.ErrNotFound)
	case err != nil:
		return fmt.Errorf("set %s tokens: %w", typ, mapErr(err))
	case current != version || deleted || erased:
		return fmt.Errorf("set %s version %d tokens: %w", typ, version, vault.ErrConflict)
	}
	old, err := t.tokenSet(ctx, seq)
	if err != nil {
		return fmt.Errorf("set %s tokens: %w", typ, err)
	}
	// The new tokens' postings are removed too: one the set did not list
	// (a damaged index) is then written again rather than left.
	if err := t.removeSet(ctx, seq, append(old, tokens...), true); err != nil {
		return fmt.Errorf("set %s tokens: %w", typ, err)
	}
	if err := t.setTokens(ctx, seq, typ, id, tokens); err != nil {
		return fmt.Errorf("set %s tokens: %w", typ, err)
	}
	return nil
}

// DropTokens removes a posting that does not belong.
func (t *tx) DropTokens(ctx context.Context, e vault.IndexEntry) error {
	ctx = point(ctx)
	live, err := t.isCurrentLive(ctx, e.Seq)
	if err != nil {
		return fmt.Errorf("drop posting: %w", err)
	}
	if live {
		set, err := t.tokenSet(ctx, e.Seq)
		if err != nil {
			return fmt.Errorf("drop posting: %w", err)
		}
		if slices.ContainsFunc(set, func(tok []byte) bool { return bytes.Equal(tok, e.Token) }) {
			return fmt.Errorf("drop posting: %w", vault.ErrConflict)
		}
	}
	if err := t.deletePosting(ctx, e.Token, e.Seq, true); err != nil {
		return fmt.Errorf("drop posting: %w", err)
	}
	return nil
}

// DropTokenSet removes a token set that belongs to no current live
// version, and its postings.
func (t *tx) DropTokenSet(ctx context.Context, seq int64) error {
	ctx = point(ctx)
	live, err := t.isCurrentLive(ctx, seq)
	if err != nil {
		return fmt.Errorf("drop token set: %w", err)
	}
	if live {
		return fmt.Errorf("drop token set: %w", vault.ErrConflict)
	}
	tokens, err := t.tokenSet(ctx, seq)
	if err == nil {
		err = t.removeSet(ctx, seq, tokens, true)
	}
	if err != nil {
		return fmt.Errorf("drop token set: %w", err)
	}
	return nil
}

// isCurrentLive reports whether the version row at seq is its resource's
// current version and neither a tombstone nor erased.
func (t *tx) isCurrentLive(ctx context.Context, seq int64) (bool, error) {
	var typ, id string
	err := t.stmt(ctx, stVersionAt).QueryRowContext(ctx, seq).Scan(&typ, &id)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, mapErr(err)
	}
	var cur, version int64
	var deleted, erased bool
	if err := t.stmt(ctx, stCurrentState).QueryRowContext(ctx, typ, id).Scan(&cur, &version, &deleted, &erased); err != nil {
		return false, mapErr(err)
	}
	return cur == seq && !deleted && !erased, nil
}

// SetIndexVersion records the version of the rules the index is built by.
func (t *tx) SetIndexVersion(ctx context.Context, version string) error {
	ctx = point(ctx)
	if _, err := t.stmt(ctx, stSetIndexVersion).ExecContext(ctx, version); err != nil {
		return fmt.Errorf("set index version: %w", mapErr(err))
	}
	return nil
}

// queryIDs runs a Find statement.
func queryIDs(ctx context.Context, st *sql.Stmt, typ string, token []byte) ([]string, error) {
	rows, err := st.QueryContext(ctx, nonNil(token), typ)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", typ, err)
	}
	ids, err := scanIDs(rows)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", typ, err)
	}
	return ids, nil
}

// Put stores a new version and its leaf. The version row is keyed by the
// Seq of its leaf. Conflicts are found before anything is written, so a Put
// that returns ErrConflict leaves the transaction as it was.
func (t *tx) Put(ctx context.Context, r vault.Record) error {
	ctx = point(ctx)
	if r.Type == "" || r.ID == "" || r.Version < 1 {
		return fmt.Errorf("put %s version %d: missing type, id or version", r.Type, r.Version)
	}
	if len(r.Leaf.Record) > 0 || hasRecordFields(r.Leaf) {
		return fmt.Errorf("put %s version %d: a version leaf carries a record", r.Type, r.Version)
	}
	var latestSeq, latest int64
	err := t.stmt(ctx, stLatest).QueryRowContext(ctx, r.Type, r.ID).Scan(&latestSeq, &latest)
	exists := err == nil
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("put %s version %d: %w", r.Type, r.Version, err)
	}
	becomesCurrent := !exists || r.Version > latest
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
		r.LastUpdated.UnixMicro(), deleted, r.KeyID, nonNil(r.Ciphertext), nonNil(r.Salt), nonNil(r.Commitment), nonNil(r.Deid), r.Client)
	if err != nil {
		return fmt.Errorf("put %s version %d: %w", r.Type, r.Version, mapErr(err))
	}

	if !becomesCurrent {
		return nil
	}
	if exists {
		old, err := t.tokenSet(ctx, latestSeq)
		if err == nil {
			err = t.removeSet(ctx, latestSeq, old, false)
		}
		if err != nil {
			return fmt.Errorf("put %s version %d tokens: %w", r.Type, r.Version, err)
		}
	}
	if r.Deleted {
		return nil
	}
	if err := t.setTokens(ctx, seq, r.Type, r.ID, r.Tokens); err != nil {
		return fmt.Errorf("put %s version %d tokens: %w", r.Type, r.Version, err)
	}
	return nil
}

// deletePosting removes the posting (token, seq) from every level. A
// posting above the watermark is in the recent level only, unless the
// tables were damaged: thorough removes it from the tables too, as the
// audit's repairs and erasures do (a new version's Put need not).
func (t *tx) deletePosting(ctx context.Context, token []byte, seq int64, thorough bool) error {
	if seq > t.merged {
		t.staged = append(t.staged, recentOp{token: string(token), seq: seq, remove: true})
		if !thorough {
			return nil
		}
	}
	if err := t.flush(ctx); err != nil {
		return err
	}
	for _, st := range []int{stDeletePosting, stDeleteMidPosting} {
		if _, err := t.stmt(ctx, st).ExecContext(ctx, nonNil(token), seq); err != nil {
			return mapErr(err)
		}
	}
	return nil
}

// mergeChunk moves the postings of postings_mid whose tokens are at least
// from and below the token some n postings on (all of them if fewer are
// left, and at least one token's) into postings, and returns how many it
// moved and the token the next chunk starts at: nil when none is left.
//
// Merging all of postings_mid at once rewrote most pages of postings in one
// commit: at a million resources 1.8 to 2.6 seconds (measured) and some 300
// MB of WAL (estimated), every write waiting, and a checkpoint of those
// pages inside a later commit. A chunk of postings_mid's token order lands
// on that share of postings' pages, so the same work goes in slices
// between other writes. A posting is in one table at every commit, as
// lookups need; postings added to postings_mid meanwhile, before the
// cursor, wait for the next merge.
func (t *tx) mergeChunk(ctx context.Context, from []byte, n int) (moved int, next []byte, err error) {
	from = nonNil(from)
	err = t.stmt(ctx, stMidChunkEnd).QueryRowContext(ctx, from, n).Scan(&next)
	if err == nil {
		var first []byte
		err = t.stmt(ctx, stMidFirstToken).QueryRowContext(ctx, from).Scan(&first)
		if err == nil && bytes.Equal(next, first) {
			// The first token left holds more than n postings: the chunk
			// is that token's.
			from = first
			err = t.stmt(ctx, stMidNextToken).QueryRowContext(ctx, first).Scan(&next)
		}
	}
	var res sql.Result
	switch {
	case errors.Is(err, sql.ErrNoRows):
		next = nil
		if _, err = t.stmt(ctx, stMergeMidFrom).ExecContext(ctx, from); err == nil {
			res, err = t.stmt(ctx, stClearMidFrom).ExecContext(ctx, from)
		}
	case err == nil:
		if _, err = t.stmt(ctx, stMergeMidRange).ExecContext(ctx, from, next); err == nil {
			res, err = t.stmt(ctx, stClearMidRange).ExecContext(ctx, from, next)
		}
	}
	if err != nil {
		return 0, nil, mapErr(err)
	}
	rows, err := res.RowsAffected()
	if err != nil {
		return 0, nil, mapErr(err)
	}
	return int(rows), next, nil
}

// insertTokens adds the postings of the version at seq, of resource
// typ/id: to the recent level's staged ones above the watermark, to the
// pending ones for postings_mid at or below it.
func (t *tx) insertTokens(seq int64, typ, id string, tokens [][]byte) {
	if seq > t.merged {
		for _, tok := range tokens {
			t.staged = append(t.staged, recentOp{token: string(tok), seq: seq, typ: typ, id: id})
		}
		return
	}
	for _, tok := range tokens {
		t.pending = append(t.pending, posting{nonNil(tok), seq})
	}
}

// DataKey returns a wrapped data key as this transaction sees it.
func (t *tx) DataKey(ctx context.Context, keyID string) ([]byte, error) {
	ctx = point(ctx)
	return queryBlob(ctx, t.stmt(ctx, stDataKeyTx), "get data key", keyID)
}

// PutDataKey stores a wrapped data key.
func (t *tx) PutDataKey(ctx context.Context, keyID string, wrapped []byte) error {
	ctx = point(ctx)
	if _, err := t.stmt(ctx, stPutDataKey).ExecContext(ctx, keyID, nonNil(wrapped)); err != nil {
		return fmt.Errorf("put data key: %w", mapErr(err))
	}
	return nil
}

// Response returns the response remembered for an idempotency key.
func (t *tx) Response(ctx context.Context, key []byte) ([]byte, error) {
	return queryBlob(point(ctx), t.stmt(ctx, stResponseTx), "get response", nonNil(key))
}

// PutResponse remembers the response body for an idempotency key.
func (t *tx) PutResponse(ctx context.Context, key, body []byte) error {
	ctx = point(ctx)
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
		&r.Ciphertext, &r.Salt, &r.Commitment, &r.Deid, &leafType, &r.Leaf.Data, &r.Leaf.Ref, &r.Client)
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

// scanLeaf reads a row of stLeaf or of a FindLeaves query; the record
// columns are NULL for a leaf without a record.
func scanLeaf(row rowScanner) (vault.Leaf, error) {
	var l vault.Leaf
	var typ int64
	var at sql.NullInt64
	if err := row.Scan(&l.Seq, &typ, &l.Data, &l.Ref, &l.Record, &l.Salt, &l.Subject, &l.Actor, &at); err != nil {
		return vault.Leaf{}, err
	}
	l.Record = vault.UnpackRecord(l.Record)
	l.Type = uint8(typ)
	if at.Valid {
		l.Time = time.UnixMicro(at.Int64).UTC()
	}
	return l, nil
}

// checkLeaf refuses a leaf a Store would add (AddLeaf) or journal
// (JournalLeaves) inconsistently: record fields without a record.
func checkLeaf(l vault.Leaf) error {
	if len(l.Record) == 0 && hasRecordFields(l) {
		return errors.New("salt, subject, actor or time without a record")
	}
	return nil
}

// hasRecordFields reports whether l sets any field that belongs with a
// Record.
func hasRecordFields(l vault.Leaf) bool {
	return len(l.Salt) > 0 || l.Subject != "" || l.Actor != "" || !l.Time.IsZero()
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

// mapErr turns a unique-constraint violation into vault.ErrConflict, and a
// database still locked by another process after busy_timeout into
// vault.ErrUnavailable. SQLite names the columns in its message, never the
// values.
func mapErr(err error) error {
	var se *sqlitedriver.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqliteConstraintPrimaryKey, sqliteConstraintUnique:
			return vault.ErrConflict
		}
		switch se.Code() & 0xff { // the primary result code
		case sqliteBusy, sqliteLocked:
			return fmt.Errorf("%w: %w", vault.ErrUnavailable, err)
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

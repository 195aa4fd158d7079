package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math"

	"github.com/fhiranchor/fhiranchor/vault"
)

// WalkPostings calls fn with every posting of every level, as of one
// snapshot: the tables' in their key order, then the recent level's.
//
// An audit digests some twenty postings a resource. Listed through
// database/sql (IndexEntries), each was a row: a step, two column reads
// under the connection's mutex, a copy of its token, a Scan, and a merge
// of the levels' orders the digest does not need; that was 14 % of an
// audit's CPU. Here SQLite scans each table and hands every row to
// rowsFunc (rows.go), which calls fn with the token in SQLite's own
// memory: a third of the cost per posting (BenchmarkWalkPostings).
func (s *Store) WalkPostings(ctx context.Context, fn func(token []byte, seq int64)) error {
	sn, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("walk postings: %w", err)
	}
	defer sn.end()
	step := func(vals []driver.Value) error {
		if len(vals) != 2 {
			return errRowsArgs
		}
		seq, ok := vals[1].(int64)
		if !ok {
			return errNotASeq
		}
		// The tables are STRICT, but a file edited outside SQLite can hold
		// anything: a token that is not a blob is passed as its bytes (as
		// IndexEntries' Scan would), to be found different from its set.
		switch token := vals[0].(type) {
		case []byte:
			fn(token, seq)
		case string:
			fn([]byte(token), seq)
		case nil:
			fn(nil, seq)
		default:
			return errNotAToken
		}
		return nil
	}
	for _, table := range postingTables {
		err := eachRow(step, func(h int64) *sql.Row {
			return sn.tx.QueryRowContext(ctx, `SELECT `+rowsFunc+`(?, token, seq) FROM `+table, h)
		})
		if err != nil {
			return fmt.Errorf("walk postings: %w", err)
		}
	}
	err = sn.read(ctx, func(rl *recentLevel) error {
		es, err := rl.entries(sn.gen, vault.IndexEntry{}, math.MaxInt)
		for _, e := range es {
			fn(e.Token, e.Seq)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("walk postings: %w", err)
	}
	return nil
}

var (
	errNotASeq   = errors.New("a posting's seq is not an integer")
	errNotAToken = errors.New("a posting's token is not bytes")
)

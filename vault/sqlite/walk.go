package sqlite

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	sqlitedriver "modernc.org/sqlite"

	"github.com/fhiranchor/fhiranchor/vault"
)

// WalkPostings calls fn with every posting of every level, as of one
// snapshot: the tables' in their key order, then the recent level's.
//
// An audit digests some twenty postings a resource. Listed through
// database/sql (IndexEntries), each was a row: a step, two column reads
// under the connection's mutex, a copy of its token, a Scan, and a merge
// of the levels' orders the digest does not need; that was 14 % of an
// audit's CPU. Here SQLite scans each table and hands every row to an
// aggregate function (walkFunc) that calls fn with the token in SQLite's
// own memory: a third of the cost per posting (BenchmarkWalkPostings).
func (s *Store) WalkPostings(ctx context.Context, fn func(token []byte, seq int64)) error {
	sn, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("walk postings: %w", err)
	}
	defer sn.end()
	h := walkHandles.Add(1)
	walks.Store(h, fn)
	defer walks.Delete(h)
	for _, table := range postingTables {
		var n int64
		if err := sn.tx.QueryRowContext(ctx, `SELECT `+walkFunc+`(?, token, seq) FROM `+table, h).Scan(&n); err != nil {
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

// walkFunc is the aggregate function WalkPostings scans a table with:
// walkFunc(handle, token, seq) calls the fn walks holds under handle with
// each row's token and seq, and returns how many rows it saw. It is
// registered with the driver, for every connection, once; only
// WalkPostings' own query calls it.
const walkFunc = "fhiranchor_walk_postings"

var (
	// walks are the callbacks of the walks under way, by handle.
	walks       sync.Map // int64 -> func([]byte, int64)
	walkHandles atomic.Int64
)

func init() {
	sqlitedriver.MustRegisterFunction(walkFunc, &sqlitedriver.FunctionImpl{
		NArgs: 3,
		// The token is passed in SQLite's memory, not copied: fn must not
		// keep it (WalkPostings says so), and walkStep does not.
		VolatileArgs: true,
		MakeAggregate: func(sqlitedriver.FunctionContext) (sqlitedriver.AggregateFunction, error) {
			return &walkStep{}, nil
		},
	})
}

// walkStep is one evaluation of walkFunc.
type walkStep struct {
	fn func([]byte, int64)
	n  int64
}

var errWalkArgs = errors.New("walk postings: not a walk's arguments")

func (w *walkStep) Step(_ *sqlitedriver.FunctionContext, args []driver.Value) error {
	if w.fn == nil {
		h, _ := args[0].(int64)
		fn, ok := walks.Load(h)
		if !ok {
			return errWalkArgs
		}
		w.fn = fn.(func([]byte, int64))
	}
	seq, ok := args[2].(int64)
	if !ok {
		return errWalkArgs
	}
	// The tables are STRICT, but a file edited outside SQLite can hold
	// anything: a token that is not a blob is passed as its bytes (as
	// IndexEntries' Scan would), to be found different from its set.
	switch token := args[1].(type) {
	case []byte:
		w.fn(token, seq)
	case string:
		w.fn([]byte(token), seq)
	case nil:
		w.fn(nil, seq)
	default:
		return errWalkArgs
	}
	w.n++
	return nil
}

func (w *walkStep) WindowInverse(*sqlitedriver.FunctionContext, []driver.Value) error {
	return errors.New("walk postings: not a window function")
}

func (w *walkStep) WindowValue(*sqlitedriver.FunctionContext) (driver.Value, error) { return w.n, nil }

func (w *walkStep) Final(*sqlitedriver.FunctionContext) {}

package sqlite

import (
	"bytes"
	"cmp"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	sqlitedriver "modernc.org/sqlite"
)

// The listings an audit walks (versions, leaves, records, token sets: a
// million rows each at 1 M resources) hand their rows to an aggregate
// function instead of returning them through database/sql.
//
// Why: the driver opens every connection SQLITE_OPEN_FULLMUTEX, and each
// column a row is read through (its type, then its value) takes and
// releases the connection's mutex, an emulated pthread mutex; with a
// Scan's conversions on top, reading a 16-column version row cost more
// than finding it. An aggregate function is called once a row, inside the
// one sqlite3_step, with every value at hand: no mutex, no Scan.
//
// rowsFunc(handle, columns...) calls the function rowFuncs holds under
// handle with each row's values and returns how many rows it saw. Its
// arguments are SQLite's own memory (VolatileArgs): a row function copies
// what it keeps, and the take* helpers below do. A listing that pages
// selects from a subquery that orders and limits the rows (an aggregate
// query's own ORDER BY and LIMIT apply to its one result row); rowsFunc
// sees them in the order SQLite produces them, which for such a subquery
// is its ORDER BY, and the listings check it (sortBySeq).
const rowsFunc = "fhiranchor_rows"

var (
	// rowFuncs are the row functions of the queries under way, by handle.
	rowFuncs       sync.Map // int64 -> *rowFunc
	rowFuncHandles atomic.Int64
)

// rowFunc is one query's row function and the first error it returned.
type rowFunc struct {
	fn  func(vals []driver.Value) error
	err error
}

func init() {
	sqlitedriver.MustRegisterFunction(rowsFunc, &sqlitedriver.FunctionImpl{
		NArgs:        -1,
		VolatileArgs: true,
		MakeAggregate: func(sqlitedriver.FunctionContext) (sqlitedriver.AggregateFunction, error) {
			return &rowsStep{}, nil
		},
	})
}

// eachRow runs query, whose SQL selects rowsFunc(?, columns...) with
// handle as its first argument, and calls fn with the values of each row:
// what fn returns first ends the query and is returned.
func eachRow(fn func(vals []driver.Value) error, query func(handle int64) *sql.Row) error {
	h := rowFuncHandles.Add(1)
	rf := &rowFunc{fn: fn}
	rowFuncs.Store(h, rf)
	defer rowFuncs.Delete(h)
	var n sql.NullInt64
	err := query(h).Scan(&n)
	if rf.err != nil {
		return rf.err
	}
	return err
}

// rowsStep is one evaluation of rowsFunc.
type rowsStep struct {
	rf *rowFunc
	n  int64
}

var errRowsArgs = errors.New("not a row function's arguments")

func (r *rowsStep) Step(_ *sqlitedriver.FunctionContext, args []driver.Value) error {
	if r.rf == nil {
		h, _ := args[0].(int64)
		rf, ok := rowFuncs.Load(h)
		if !ok {
			return errRowsArgs
		}
		r.rf = rf.(*rowFunc)
	}
	if err := r.rf.fn(args[1:]); err != nil {
		r.rf.err = err
		return err
	}
	r.n++
	return nil
}

func (r *rowsStep) WindowInverse(*sqlitedriver.FunctionContext, []driver.Value) error {
	return errors.New("rows: not a window function")
}

func (r *rowsStep) WindowValue(*sqlitedriver.FunctionContext) (driver.Value, error) { return r.n, nil }

func (r *rowsStep) Final(*sqlitedriver.FunctionContext) {}

// The take* helpers store a row function's argument as Rows.Scan would
// store the same column (database/sql's conversions, NULL refused but for
// bytes), copying it out of SQLite's memory. The tables are STRICT, so the
// first case is the one taken; a file edited outside SQLite can hold any
// type anywhere, and gets Scan's verdict.

func takeInt(v driver.Value) (int64, error) {
	if i, ok := v.(int64); ok {
		return i, nil
	}
	return convert[int64](v)
}

func takeBool(v driver.Value) (bool, error) {
	if i, ok := v.(int64); ok && (i == 0 || i == 1) {
		return i == 1, nil
	}
	return convert[bool](v)
}

func takeString(v driver.Value) (string, error) {
	if s, ok := v.(string); ok {
		return strings.Clone(s), nil
	}
	return convert[string](v)
}

func takeBytes(v driver.Value) ([]byte, error) {
	switch b := v.(type) {
	case []byte:
		return bytes.Clone(b), nil
	case nil:
		return nil, nil
	}
	return convert[[]byte](v)
}

// convert is Scan's conversion of v into a T (sql.Null's Scan is
// database/sql's convertAssign), with NULL an error.
func convert[T any](v driver.Value) (T, error) {
	var n sql.Null[T]
	if v == nil {
		return n.V, fmt.Errorf("converting NULL to %T is unsupported", n.V)
	}
	if err := n.Scan(v); err != nil {
		return n.V, err
	}
	// Scan keeps a string's memory, which here is SQLite's.
	switch x := any(&n.V).(type) {
	case *string:
		*x = strings.Clone(*x)
	case *[]byte:
		*x = bytes.Clone(*x)
	}
	return n.V, nil
}

// take stores what conv makes of v in dst.
func take[T any](dst *T, v driver.Value, conv func(driver.Value) (T, error)) error {
	var err error
	*dst, err = conv(v)
	return err
}

// sortBySeq puts rows a row function saw in Seq order, which is the order
// SQLite produces them in from an ordered subquery: checked, not assumed.
func sortBySeq[T any](rows []T, seq func(T) int64) {
	bySeq := func(a, b T) int { return cmp.Compare(seq(a), seq(b)) }
	if !slices.IsSortedFunc(rows, bySeq) {
		slices.SortStableFunc(rows, bySeq)
	}
}

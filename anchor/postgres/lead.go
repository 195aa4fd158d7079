package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fhiranchor/fhiranchor/internal/pgdb"
)

// Advisory lock keys, per database. pgdb holds 0x66686972_616e6368
// ("fhiranch") while it migrates.
const (
	leadLock     = 0x66686972_6c656164 // "fhirlead": session lock of the anchoring leader
	contractLock = 0x66686972_6465706c // "fhirdepl": transaction lock of the contract deployer
)

// Leadership timings.
const (
	// defaultEvery is how often a follower tries the lock, and how often a
	// leader checks it still holds it.
	defaultEvery = time.Second
	// defaultPingTimeout bounds one lock attempt or check.
	defaultPingTimeout = time.Second
	// connectTimeout bounds opening the leadership connection.
	connectTimeout = 10 * time.Second
)

// Server-side TCP settings of the leadership session: PostgreSQL notices a
// leader whose host vanished without closing its connection (power loss, a
// partition) within about 5 + 2*3 = 11 s, or 15 s if it was sending to it,
// and then releases its lock.
var leadParams = map[string]string{
	"tcp_keepalives_idle":     "5",
	"tcp_keepalives_interval": "2",
	"tcp_keepalives_count":    "3",
	"tcp_user_timeout":        "15000", // ms
}

// grace is how long a new leader waits, holding the lock, before it runs:
// long enough for a previous leader whose session PostgreSQL ended (it was
// terminated, or its host vanished) to notice at its next check and cancel
// its run. A check may start up to one interval plus one slow check late
// and take one timeout to fail.
func (s *Store) grace() time.Duration { return 2 * (s.every + s.pingTimeout) }

// Lead runs run while this process holds the anchoring leadership, and
// returns when ctx ends (nil) or run returns (its error). Of all the Stores
// on one database calling Lead, one at a time leads.
//
// The leadership is a session-level PostgreSQL advisory lock held on a
// connection of its own, outside the pool. Followers try to take it every
// second. PostgreSQL releases it as soon as the leader's connection closes:
// when its process exits or dies, or, through TCP keepalives, about 11 s
// after its host vanished. A new leader waits a grace period (4 s) before it
// calls run, and the leader checks its connection every second: if the check
// fails, it cancels run's context, waits for run to return and goes back to
// following, without trying again for a few seconds so that another process
// takes over. So, if run returns promptly when its context is cancelled, two
// runs do not overlap; if they do, Append's and PutAnchor's checks still
// refuse the stale writer's writes (anchor.ErrConflict).
//
// When run returns, Lead releases the lock before it returns. Lead must not
// be called again on the same Store until it returned; Close does not end
// it.
func (s *Store) Lead(ctx context.Context, run func(context.Context) error) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("postgres: Lead is already running on this Store")
	}
	defer s.running.Store(false)
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			s.release(ctx, conn)
		}
	}()

	s.log.InfoContext(ctx, "anchoring leadership: following", slog.Bool("leader", false))
	failing := false
	var wait time.Duration
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		wait = s.every

		got, err := s.tryLock(ctx, &conn)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !failing {
				s.log.WarnContext(ctx, "anchoring leadership: database unavailable, retrying", slog.Any("err", err))
				failing = true
			}
			continue
		}
		if failing {
			s.log.InfoContext(ctx, "anchoring leadership: database available again")
			failing = false
		}
		if !got {
			continue
		}

		runErr, lost := s.hold(ctx, conn, run)
		switch {
		case ctx.Err() != nil:
			s.log.InfoContext(ctx, "anchoring leadership: released, shutting down", slog.Bool("leader", false))
			return nil
		case lost:
			// The connection is broken or the lock is gone: start over on a
			// new one, after the others had a chance to take over.
			s.close(ctx, conn)
			conn = nil
			wait = 3 * s.every
			continue
		}
		s.release(ctx, conn)
		conn = nil
		if runErr != nil {
			s.log.WarnContext(ctx, "anchoring leadership: released, run failed", slog.Bool("leader", false), slog.Any("err", runErr))
			return runErr
		}
		s.log.InfoContext(ctx, "anchoring leadership: released, run returned", slog.Bool("leader", false))
		return nil
	}
}

// Leading reports whether this Store currently holds the leadership and
// runs Lead's run.
func (s *Store) Leading() bool { return s.leading.Load() }

// tryLock tries to take the leadership lock on *conn, connecting first if
// *conn is nil or closed. On an error it closes *conn and sets it to nil.
func (s *Store) tryLock(ctx context.Context, conn **pgx.Conn) (bool, error) {
	if *conn == nil || (*conn).IsClosed() {
		c, err := s.connect(ctx)
		if err != nil {
			return false, err
		}
		*conn = c
	}
	qctx, cancel := context.WithTimeout(ctx, s.pingTimeout)
	defer cancel()
	var got bool
	if err := (*conn).QueryRow(qctx, `SELECT pg_try_advisory_lock($1)`, int64(leadLock)).Scan(&got); err != nil {
		s.close(ctx, *conn)
		*conn = nil
		return false, fmt.Errorf("try leadership lock: %w", err)
	}
	return got, nil
}

// connect opens the leadership connection: the pool's settings plus TCP
// keepalives, outside the pool so that the pool never closes or recycles it.
func (s *Store) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg := s.pool.Config().ConnConfig // a copy
	for k, v := range leadParams {
		cfg.RuntimeParams[k] = v
	}
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open leadership connection: %w", err)
	}
	return conn, nil
}

// check reports an error unless conn answers and still holds the lock.
func (s *Store) check(ctx context.Context, conn *pgx.Conn) error {
	qctx, cancel := context.WithTimeout(ctx, s.pingTimeout)
	defer cancel()
	var held bool
	err := conn.QueryRow(qctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'
	AND pid = pg_backend_pid() AND granted AND objsubid = 1 AND (classid::bigint << 32 | objid::bigint) = $1)`,
		int64(leadLock)).Scan(&held)
	switch {
	case err != nil:
		return fmt.Errorf("check leadership lock: %w", err)
	case !held:
		return errors.New("check leadership lock: not held")
	}
	return nil
}

// hold runs run while conn holds the lock. It returns run's error, or lost
// if the lock was lost (run was cancelled; its error is only logged), or
// nil when ctx ends (run was cancelled and returned).
func (s *Store) hold(ctx context.Context, conn *pgx.Conn, run func(context.Context) error) (runErr error, lost bool) {
	grace := s.grace()
	s.log.InfoContext(ctx, "anchoring leadership: acquired, waiting out the previous leader",
		slog.Bool("leader", false), slog.Duration("grace", grace))
	t := time.NewTimer(grace)
	select {
	case <-ctx.Done():
		t.Stop()
		return nil, false
	case <-t.C:
	}
	if err := s.check(ctx, conn); err != nil {
		if ctx.Err() != nil {
			return nil, false
		}
		s.log.WarnContext(ctx, "anchoring leadership: lost before leading", slog.Bool("leader", false), slog.Any("err", err))
		return nil, true
	}

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	s.leading.Store(true)
	defer s.leading.Store(false)
	s.log.InfoContext(ctx, "anchoring leadership: leading", slog.Bool("leader", true))
	go func() { done <- run(rctx) }()

	tick := time.NewTicker(s.every)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err, false
		case <-ctx.Done():
			cancel()
			<-done
			return nil, false
		case <-tick.C:
		}
		err := s.check(ctx, conn)
		if err == nil || ctx.Err() != nil {
			continue
		}
		s.log.WarnContext(ctx, "anchoring leadership: lost, stopping", slog.Bool("leader", true), slog.Any("err", err))
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			s.log.WarnContext(ctx, "anchoring leadership: run failed while stepping down", slog.Any("err", err))
		}
		s.log.InfoContext(ctx, "anchoring leadership: stepped down", slog.Bool("leader", false))
		return nil, true
	}
}

// release unlocks the leadership lock, so that a follower can take it at
// once, and closes conn. Closing alone would release it too, a moment
// later, when the server process ends.
func (s *Store) release(ctx context.Context, conn *pgx.Conn) {
	if !conn.IsClosed() {
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.pingTimeout)
		defer cancel()
		if _, err := conn.Exec(qctx, `SELECT pg_advisory_unlock_all()`); err != nil {
			s.log.DebugContext(ctx, "anchoring leadership: unlock", slog.Any("err", err))
		}
	}
	s.close(ctx, conn)
}

func (s *Store) close(ctx context.Context, conn *pgx.Conn) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.pingTimeout)
	defer cancel()
	conn.Close(cctx)
}

// Contract returns the contract address recorded in the database; if none is
// recorded, it calls deploy, records its result and returns it. Callers in
// several processes wait for each other: deploy runs once, and the others
// return the address it recorded. If deploy fails, nothing is recorded and
// its error is returned; the next caller deploys again.
//
// Deploy runs inside a transaction that holds a lock; it should give up when
// its context ends.
func (s *Store) Contract(ctx context.Context, deploy func(context.Context) (string, error)) (string, error) {
	var addr string
	deployed := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Deploying and mining may take longer than the pool's lock timeout
		// or the server's idle-in-transaction timeout: the waiters wait as
		// long as their context lets them.
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = 0`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SET LOCAL idle_in_transaction_session_timeout = 0`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(contractLock)); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		err := tx.QueryRow(ctx, `SELECT address FROM log_contract`).Scan(&addr)
		if !pgdb.IsNoRows(err) {
			return err
		}
		if addr, err = deploy(ctx); err != nil {
			return fmt.Errorf("deploy: %w", err)
		}
		if addr == "" {
			return errors.New("deploy returned no address")
		}
		deployed = true
		if _, err := tx.Exec(ctx, `INSERT INTO log_contract (address, recorded) VALUES ($1, now())`, addr); err != nil {
			return fmt.Errorf("record: %w", err)
		}
		return nil
	})
	switch {
	case err != nil && deployed:
		// The contract is on chain but not recorded: say where it is.
		return "", fmt.Errorf("contract %s deployed but not recorded: %w", addr, err)
	case err != nil:
		return "", fmt.Errorf("contract: %w", err)
	case deployed:
		s.log.InfoContext(ctx, "anchoring contract deployed and recorded", slog.String("contract", addr))
	}
	return addr, nil
}

package postgres

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fhiranchor/fhiranchor/internal/pgtest"
)

// eventually bounds the wait for something that should happen within a
// few seconds; it is not a claim about speed.
const eventually = 30 * time.Second

// event is a run starting or stopping.
type event struct {
	who   string
	start bool
	at    time.Time
}

// recorder records the runs Lead starts, across Stores, and fails the test
// if two overlap.
type recorder struct {
	t      *testing.T
	mu     sync.Mutex
	active string // who runs now; "" if none
	events chan event
}

func newRecorder(t *testing.T) *recorder {
	return &recorder{t: t, events: make(chan event, 100)}
}

// run returns the run func of gateway who on s: it leads until its context
// ends (it returns nil, as anchor.Log.Run does) or fail sends an error.
func (r *recorder) run(who string, s *Store, fail <-chan error) func(context.Context) error {
	return func(ctx context.Context) error {
		r.mu.Lock()
		if r.active != "" {
			r.t.Errorf("%s starts leading while %s leads", who, r.active)
		}
		r.active = who
		r.mu.Unlock()
		if !s.Leading() {
			r.t.Errorf("%s: Leading() = false in run", who)
		}
		r.events <- event{who, true, time.Now()}

		var err error
		select {
		case <-ctx.Done():
		case err = <-fail:
		}

		r.mu.Lock()
		if r.active == who {
			r.active = ""
		}
		r.mu.Unlock()
		r.events <- event{who, false, time.Now()}
		return err
	}
}

// next returns the next start or stop.
func (r *recorder) next(t *testing.T) event {
	t.Helper()
	select {
	case e := <-r.events:
		return e
	case <-time.After(eventually):
		t.Fatalf("no run started or stopped within %v", eventually)
		return event{}
	}
}

// expect returns the next event and fails unless it is who starting (start)
// or stopping.
func (r *recorder) expect(t *testing.T, who string, start bool) event {
	t.Helper()
	e := r.next(t)
	if e.who != who || e.start != start {
		t.Fatalf("event = %s start=%v, want %s start=%v", e.who, e.start, who, start)
	}
	return e
}

// gateway is one process calling Lead.
type gateway struct {
	name   string
	s      *Store
	fail   chan error
	cancel context.CancelFunc
	done   chan error // Lead's result
}

func (g *gateway) lead(t *testing.T, r *recorder) {
	ctx, cancel := context.WithCancel(t.Context())
	g.cancel, g.done = cancel, make(chan error, 1)
	go func() { g.done <- g.s.Lead(ctx, r.run(g.name, g.s, g.fail)) }()
}

// returned waits for Lead to return.
func (g *gateway) returned(t *testing.T) error {
	t.Helper()
	select {
	case err := <-g.done:
		return err
	case <-time.After(eventually):
		t.Fatalf("%s: Lead did not return within %v", g.name, eventually)
		return nil
	}
}

// running fails the test if Lead returned.
func (g *gateway) running(t *testing.T) {
	t.Helper()
	select {
	case err := <-g.done:
		t.Fatalf("%s: Lead returned %v, want it still following", g.name, err)
	default:
	}
}

// newGateway opens a Store (its own pool: another process) with short
// leadership timings.
func newGateway(t *testing.T, name, dsn string) *gateway {
	s := newStore(t, dsn)
	t.Cleanup(func() { s.Close() })
	s.every, s.pingTimeout = 100*time.Millisecond, 500*time.Millisecond
	return &gateway{name: name, s: s, fail: make(chan error, 1)}
}

// TestLead: of two gateways on one database, one leads at a time; the other
// takes over when the leader shuts down, when its lock session is
// terminated, and when its run fails.
func TestLead(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{})
	dsn := c.NewDatabase(t)
	r := newRecorder(t)
	gws := map[string]*gateway{"a": newGateway(t, "a", dsn), "b": newGateway(t, "b", dsn)}
	gws["a"].lead(t, r)
	gws["b"].lead(t, r)
	defer func() {
		for _, g := range gws {
			g.cancel()
		}
	}()

	first := r.next(t)
	if !first.start {
		t.Fatalf("first event is %s stopping", first.who)
	}
	leader, follower := gws[first.who], gws[map[string]string{"a": "b", "b": "a"}[first.who]]
	if err := leader.s.Lead(t.Context(), nil); err == nil {
		t.Errorf("a second Lead on one Store = nil, want an error")
	}
	if follower.s.Leading() {
		t.Errorf("%s leads, and %s: Leading() = true", leader.name, follower.name)
	}
	// The follower keeps trying and keeps failing.
	select {
	case e := <-r.events:
		t.Fatalf("unexpected event while %s leads: %+v", leader.name, e)
	case <-time.After(10 * follower.s.every):
	}
	swap := func() { leader, follower = follower, leader }

	// (1) The leader shuts down: Lead returns nil, the other takes over.
	leader.cancel()
	stop := r.expect(t, leader.name, false)
	if err := leader.returned(t); err != nil {
		t.Errorf("%s: Lead after its context ended = %v, want nil", leader.name, err)
	}
	start := r.expect(t, follower.name, true)
	t.Logf("takeover after a shutdown: %v (grace %v)", start.at.Sub(stop.at), leader.s.grace())
	if leader.s.Leading() {
		t.Errorf("%s: Leading() = true after Lead returned", leader.name)
	}
	leader.lead(t, r) // back as a follower
	swap()

	// (2) The leader's lock session is terminated (as if PostgreSQL saw its
	// host vanish): it steps down, keeps following, and the other takes
	// over.
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(t.Context(), `SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'
	AND granted AND objsubid = 1 AND (classid::bigint << 32 | objid::bigint) = $1`, int64(leadLock))
	if err != nil {
		t.Fatal(err)
	}
	killed, err := pgx.CollectRows(rows, pgx.RowTo[bool])
	if err != nil || len(killed) != 1 || !killed[0] {
		t.Fatalf("pg_terminate_backend of the lock holder = %v, %v; want one true", killed, err)
	}
	killedAt := time.Now()
	stop = r.expect(t, leader.name, false)
	start = r.expect(t, follower.name, true)
	t.Logf("step-down after the session was terminated: %v; takeover: %v", stop.at.Sub(killedAt), start.at.Sub(killedAt))
	leader.running(t)
	if leader.s.Leading() {
		t.Errorf("%s: Leading() = true after stepping down", leader.name)
	}
	swap()

	// (3) The leader's run fails: Lead returns its error and releases the
	// lock; the other takes over.
	boom := errors.New("boom")
	leader.fail <- boom
	stop = r.expect(t, leader.name, false)
	if err := leader.returned(t); !errors.Is(err, boom) {
		t.Errorf("%s: Lead after run failed = %v, want %v", leader.name, err, boom)
	}
	start = r.expect(t, follower.name, true)
	t.Logf("takeover after run failed: %v", start.at.Sub(stop.at))
	swap()

	// The last leader shuts down; the other Lead was done already.
	leader.cancel()
	r.expect(t, leader.name, false)
	if err := leader.returned(t); err != nil {
		t.Errorf("%s: Lead = %v, want nil", leader.name, err)
	}
}

// TestLeadCancelled: Lead on an ended context returns nil without running.
func TestLeadCancelled(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{})
	s := newStore(t, c.NewDatabase(t))
	defer s.Close()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := s.Lead(ctx, func(context.Context) error {
		t.Error("run called on an ended context")
		return nil
	})
	if err != nil {
		t.Errorf("Lead(ended ctx) = %v, want nil", err)
	}
}

// TestLeadSession: the lock session has the keepalives that let PostgreSQL
// notice a vanished leader, and the pool's settings.
func TestLeadSession(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{})
	s := newStore(t, c.NewDatabase(t))
	defer s.Close()
	conn, err := s.connect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	want := map[string]string{"TimeZone": "UTC", "lock_timeout": "1min"}
	for k, v := range leadParams {
		want[k] = v
	}
	for k, v := range want {
		var got string
		if err := conn.QueryRow(t.Context(), `SELECT current_setting($1)`, k).Scan(&got); err != nil || got != v {
			t.Errorf("%s = %q, %v; want %q", k, got, err, v)
		}
	}
}

// TestContract: gateways starting at once deploy the contract once and
// agree on its address; a failed deploy records nothing.
func TestContract(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{})
	dsn := c.NewDatabase(t)
	stores := []*Store{newStore(t, dsn), newStore(t, dsn)}
	for _, s := range stores {
		defer s.Close()
	}
	ctx := t.Context()

	boom := errors.New("no funds")
	if addr, err := stores[0].Contract(ctx, func(context.Context) (string, error) { return "", boom }); !errors.Is(err, boom) {
		t.Errorf("Contract with a failing deploy = %q, %v; want %v", addr, err, boom)
	}
	if _, err := stores[0].Contract(ctx, func(context.Context) (string, error) { return "", nil }); err == nil {
		t.Errorf("Contract with a deploy returning no address = nil error")
	}

	const want = "0xabc0000000000000000000000000000000000001"
	var calls atomic.Int32
	deploy := func(context.Context) (string, error) {
		calls.Add(1)
		time.Sleep(100 * time.Millisecond) // mining: the others wait
		return want, nil
	}
	addrs := make([]string, 4)
	errs := make([]error, 4)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range addrs {
		wg.Go(func() {
			<-start
			addrs[i], errs[i] = stores[i%2].Contract(ctx, deploy)
		})
	}
	close(start)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Errorf("deploy called %d times, want 1", n)
	}
	for i := range addrs {
		if addrs[i] != want || errs[i] != nil {
			t.Errorf("Contract #%d = %q, %v; want %q", i, addrs[i], errs[i], want)
		}
	}
	addr, err := stores[1].Contract(ctx, func(context.Context) (string, error) {
		t.Error("deploy called with an address recorded")
		return "0xdef", nil
	})
	if addr != want || err != nil {
		t.Errorf("Contract later = %q, %v; want %q", addr, err, want)
	}
	var n int
	if err := stores[0].pool.QueryRow(ctx, `SELECT count(*) FROM log_contract`).Scan(&n); err != nil || n != 1 {
		t.Errorf("log_contract rows = %d, %v; want 1", n, err)
	}
}

package gateway

import (
	"context"
	"errors"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
	"golang.org/x/time/rate"
)

// Limits bound what one client, and all clients together, may make the
// gateway hold. A zero field takes its default (the Default* constants); a
// negative count or rate turns that limit off. Every refusal is an
// OperationOutcome; docs/operations.md ("Limits") lists them.
type Limits struct {
	// MaxBodyBytesInFlight caps the request body bytes held by all requests
	// together, from before a body is read until its request is answered.
	// A request whose body does not fit within a second gets 503 with
	// Retry-After. It must be at least Config.MaxBodyBytes.
	MaxBodyBytesInFlight int64
	// MaxConcurrentPerClient caps the requests of one client (the token's
	// client id) in progress at once; more get 429 with Retry-After.
	MaxConcurrentPerClient int
	// RatePerClient is the sustained requests per second of one client, and
	// RateBurst how many it may send at once on top: a token bucket per
	// client. Beyond it, 429 with Retry-After. Requests without a valid
	// token, and to the public endpoints, are counted per remote IP.
	RatePerClient float64
	RateBurst     int
	// MaxBundleEntries caps the entries of a transaction or batch Bundle
	// (413), counted before the Bundle is parsed.
	MaxBundleEntries int
	// RequestTimeout is the deadline of every call, REST and gRPC: a call
	// that outlives it is answered 503 with Retry-After and its
	// transaction rolls back.
	RequestTimeout time.Duration
	// ReadHeaderTimeout bounds reading a request's headers, ReadTimeout its
	// headers and body, IdleTimeout a keep-alive connection's wait for the
	// next request.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	IdleTimeout       time.Duration
	// MaxHeaderBytes caps the request line and headers (431).
	MaxHeaderBytes int
}

// Defaults of Limits.
const (
	DefaultMaxBodyBytesInFlight   = 128 << 20
	DefaultMaxConcurrentPerClient = 16
	DefaultRatePerClient          = 100
	DefaultRateBurst              = 200
	DefaultMaxBundleEntries       = 10000
	DefaultRequestTimeout         = 60 * time.Second
	DefaultReadHeaderTimeout      = 10 * time.Second
	DefaultReadTimeout            = 60 * time.Second
	DefaultIdleTimeout            = 2 * time.Minute
	DefaultMaxHeaderBytes         = 64 << 10
)

// Retry-After values of the refusals that have no better estimate.
const (
	retryBusy        = time.Second     // body budget or a client's concurrency exhausted
	retryUnavailable = 5 * time.Second // the vault unreachable, a deadline passed
)

// budgetWait is how long a request waits for room in the body budget
// before it is refused: long enough to ride out a burst, short enough that
// waiting requests hold no more than their headers.
const budgetWait = time.Second

// hardMaxHeaderBytes is the header size at which net/http itself answers
// 431, before any handler runs; below it, the gateway answers 431 with an
// OperationOutcome at Limits.MaxHeaderBytes. It is net/http's default.
const hardMaxHeaderBytes = http.DefaultMaxHeaderBytes

// Bounds of the per-client state: idle entries are evicted when a map is
// full; if none is idle, newcomers are refused (429) rather than tracked.
const (
	maxTrackedClients = 1 << 16
	maxTrackedIPs     = 1 << 14
)

// withDefaults fills zero fields.
func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.MaxConcurrentPerClient, DefaultMaxConcurrentPerClient)
	def(&l.RateBurst, DefaultRateBurst)
	def(&l.MaxBundleEntries, DefaultMaxBundleEntries)
	def(&l.MaxHeaderBytes, DefaultMaxHeaderBytes)
	if l.MaxBodyBytesInFlight == 0 {
		l.MaxBodyBytesInFlight = DefaultMaxBodyBytesInFlight
	}
	if l.RatePerClient == 0 {
		l.RatePerClient = DefaultRatePerClient
	}
	for _, d := range []struct {
		v *time.Duration
		d time.Duration
	}{
		{&l.RequestTimeout, DefaultRequestTimeout}, {&l.ReadHeaderTimeout, DefaultReadHeaderTimeout},
		{&l.ReadTimeout, DefaultReadTimeout}, {&l.IdleTimeout, DefaultIdleTimeout},
	} {
		if *d.v == 0 {
			*d.v = d.d
		}
	}
	return l
}

// validate checks l after withDefaults, for a body limit of maxBody.
func (l Limits) validate(maxBody int64) error {
	switch {
	case l.MaxBodyBytesInFlight > 0 && l.MaxBodyBytesInFlight < maxBody:
		return errors.New("gateway: Limits.MaxBodyBytesInFlight must be at least MaxBodyBytes")
	case l.RateBurst < 0 && l.RatePerClient > 0:
		return errors.New("gateway: Limits.RateBurst must be positive")
	case math.IsNaN(l.RatePerClient) || math.IsInf(l.RatePerClient, 0):
		return errors.New("gateway: Limits.RatePerClient must be a number")
	case l.RequestTimeout < 0 || l.ReadHeaderTimeout < 0 || l.ReadTimeout < 0 || l.IdleTimeout < 0:
		return errors.New("gateway: Limits timeouts must not be negative")
	case l.MaxHeaderBytes > hardMaxHeaderBytes:
		return errors.New("gateway: Limits.MaxHeaderBytes must not exceed 1 MiB")
	}
	return nil
}

// throttled is the 429 of a client over its rate or concurrency.
func throttled(retry time.Duration, diagnostics string) *fhirError {
	fe := failure(http.StatusTooManyRequests, "throttled", "", diagnostics)
	fe.retryAfter = retry
	return fe
}

// clientState is one key's bucket and requests in progress.
type clientState struct {
	bucket *rate.Limiter // nil without a rate limit
	active int
}

// clientLimits admits requests per key (a client id, or a remote IP) by a
// token bucket and a cap on requests in progress. Its map is bounded:
// when full, keys with nothing in progress and a full bucket (as good as
// new) are evicted.
type clientLimits struct {
	rate      rate.Limit // 0: no rate limit
	burst     int
	maxActive int // 0: no cap
	maxKeys   int
	now       func() time.Time

	mu sync.Mutex
	m  map[string]*clientState
}

func newClientLimits(l Limits, maxKeys int, withConcurrency bool) *clientLimits {
	c := &clientLimits{maxKeys: maxKeys, now: time.Now, m: map[string]*clientState{}}
	if l.RatePerClient > 0 {
		c.rate, c.burst = rate.Limit(l.RatePerClient), l.RateBurst
	}
	if withConcurrency && l.MaxConcurrentPerClient > 0 {
		c.maxActive = l.MaxConcurrentPerClient
	}
	return c
}

// enter admits one request of key, or says why not. The caller calls
// leave when the request is answered.
func (c *clientLimits) enter(key string) (leave func(), fe *fhirError) {
	if c.rate == 0 && c.maxActive == 0 {
		return func() {}, nil
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.m[key]
	if st == nil {
		if len(c.m) >= c.maxKeys {
			c.evict(now)
		}
		if len(c.m) >= c.maxKeys {
			return nil, throttled(retryBusy, "too many clients are active; retry later")
		}
		st = &clientState{}
		if c.rate > 0 {
			st.bucket = rate.NewLimiter(c.rate, c.burst)
		}
		c.m[key] = st
	}
	if c.maxActive > 0 && st.active >= c.maxActive {
		return nil, throttled(retryBusy, "too many concurrent requests from this client; retry later")
	}
	if st.bucket != nil {
		r := st.bucket.ReserveN(now, 1)
		if d := r.DelayFrom(now); !r.OK() || d > 0 {
			r.CancelAt(now)
			return nil, throttled(d, "request rate limit exceeded; retry later")
		}
	}
	st.active++
	return func() {
		c.mu.Lock()
		st.active--
		c.mu.Unlock()
	}, nil
}

// evict drops the keys that hold nothing: no request in progress and a
// full bucket. Called with c.mu held.
func (c *clientLimits) evict(now time.Time) {
	for k, st := range c.m {
		if st.active == 0 && (st.bucket == nil || st.bucket.TokensAt(now) >= float64(c.burst)) {
			delete(c.m, k)
		}
	}
}

// bodyBudget is the global budget of request body bytes in flight.
type bodyBudget struct {
	sem *semaphore.Weighted // nil: no budget
	max int64
}

func newBodyBudget(max int64) *bodyBudget {
	if max <= 0 {
		return &bodyBudget{}
	}
	return &bodyBudget{sem: semaphore.NewWeighted(max), max: max}
}

// acquire reserves n bytes, waiting up to budgetWait; release gives back
// what is still held, and shrink gives back part of it early.
func (b *bodyBudget) acquire(ctx context.Context, n int64) (held *heldBytes, fe *fhirError) {
	if b.sem == nil || n <= 0 {
		return &heldBytes{}, nil
	}
	n = min(n, b.max)
	ctx, cancel := context.WithTimeout(ctx, budgetWait)
	defer cancel()
	if err := b.sem.Acquire(ctx, n); err != nil {
		fe := failure(http.StatusServiceUnavailable, "transient", "", "the server is receiving too much data; retry later")
		fe.retryAfter = retryBusy
		return nil, fe
	}
	return &heldBytes{sem: b.sem, n: n}, nil
}

// heldBytes is a part of the body budget one request holds.
type heldBytes struct {
	sem *semaphore.Weighted
	n   int64
}

// shrink keeps only n bytes.
func (h *heldBytes) shrink(n int64) {
	if h.sem != nil && n < h.n {
		h.sem.Release(h.n - n)
		h.n = n
	}
}

func (h *heldBytes) release() { h.shrink(0) }

// retryAfterSeconds renders a delay as Retry-After: whole seconds, at
// least 1.
func retryAfterSeconds(d time.Duration) string {
	return strconv.FormatInt(max(1, int64(math.Ceil(d.Seconds()))), 10)
}

// remoteIP is the host of r's peer; behind a proxy, the proxy's.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// headerBytes is the size of r's request line and headers as sent (give or
// take line endings).
func headerBytes(r *http.Request) int {
	n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + 4 + len(r.Host) + 8
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

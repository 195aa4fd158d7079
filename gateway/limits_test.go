package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/gateway"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// wantOutcome checks that r is an OperationOutcome with status st and,
// when code is not "", that issue code.
func wantOutcome(t *testing.T, what string, r testonly.Response, st int, code string) outcome {
	t.Helper()
	var oo outcome
	if r.Status != st {
		t.Fatalf("%s: status %d, want %d: %.300s", what, r.Status, st, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
		t.Errorf("%s: Content-Type %q, want application/fhir+json", what, ct)
	}
	if err := json.Unmarshal(r.Body, &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 {
		t.Fatalf("%s: body is not an OperationOutcome: %.300s", what, r.Body)
	}
	if code != "" && oo.Issue[0].Code != code {
		t.Errorf("%s: issue code %q, want %q", what, oo.Issue[0].Code, code)
	}
	return oo
}

// wantRetryAfter checks that r carries a Retry-After of whole seconds >= 1.
func wantRetryAfter(t *testing.T, what string, r testonly.Response) int {
	t.Helper()
	s, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || s < 1 {
		t.Errorf("%s: Retry-After %q, want whole seconds >= 1", what, r.Header.Get("Retry-After"))
	}
	return s
}

// countingBody produces n bytes of a JSON string body without holding
// them, and counts what the HTTP client took from it.
type countingBody struct {
	left int64
	read *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), b.left))
	for i := range n {
		p[i] = 'a'
	}
	b.left -= int64(n)
	b.read.Add(int64(n))
	return n, nil
}

// TestUnauthenticatedBodiesAreNotRead: 24 concurrent 31 MB uploads without
// a token all get 401, and the gateway reads (and allocates) next to none
// of the 744 MB: it checks the token before it reads a body.
func TestUnauthenticatedBodiesAreNotRead(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{Quiet: true})
	const uploads, size = 24, 31 << 20
	var sent atomic.Int64
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	var wg sync.WaitGroup
	results := make([]testonly.Response, uploads)
	errs := make([]error, uploads)
	for i := range uploads {
		wg.Go(func() {
			req, err := http.NewRequest("POST", g.URL+"/Patient", &countingBody{left: size, read: &sent})
			if err != nil {
				errs[i] = err
				return
			}
			req.ContentLength = size
			req.Header.Set("Content-Type", "application/fhir+json")
			resp, err := g.Client.Do(req)
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			results[i] = testonly.Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
			errs[i] = err
		})
	}
	wg.Wait()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)

	for i := range uploads {
		if errs[i] != nil {
			t.Fatalf("upload %d: %v", i, errs[i])
		}
		wantOutcome(t, fmt.Sprintf("upload %d", i), results[i], http.StatusUnauthorized, "login")
		if results[i].Header.Get("WWW-Authenticate") == "" {
			t.Errorf("upload %d: 401 without WWW-Authenticate", i)
		}
	}
	total := int64(uploads) * size
	// What the client managed to send fits in socket buffers; the server
	// read none of it into memory.
	if got := sent.Load(); got > total/4 {
		t.Errorf("the client could send %d of %d bytes: the server read the bodies", got, total)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(total/8) {
		t.Errorf("the process allocated %d MB while refusing %d MB of uploads: bodies were read", alloc>>20, total>>20)
	}
	t.Logf("client sent %d MB of %d MB; process allocated %d MB", sent.Load()>>20, total>>20, (after.TotalAlloc-before.TotalAlloc)>>20)
}

// bigTransaction is a transaction of n Patient creations.
func bigTransaction(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"resourceType":"Bundle","type":"transaction","entry":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"fullUrl":"urn:uuid:00000000-0000-4000-8000-%012d","resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}}`, i)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// TestBundleEntryCap: a 100,000-entry transaction is refused with 413 and
// stores nothing; one at the cap goes through the usual path.
func TestBundleEntryCap(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{Quiet: true, Limits: gateway.Limits{MaxBundleEntries: 5}})
	bearer := "Bearer " + g.Token(t)
	before := g.Stats(t)

	r := g.Do(t, "POST", "", bigTransaction(100000), "Authorization", bearer)
	oo := wantOutcome(t, "100,000 entries", r, http.StatusRequestEntityTooLarge, "too-costly")
	if len(oo.Issue[0].Expression) != 1 || oo.Issue[0].Expression[0] != "Bundle.entry" {
		t.Errorf("expression %v, want [Bundle.entry]", oo.Issue[0].Expression)
	}
	r = g.Do(t, "POST", "", bigTransaction(6), "Authorization", bearer)
	wantOutcome(t, "cap + 1 entries", r, http.StatusRequestEntityTooLarge, "too-costly")
	if after := g.Stats(t); after != before {
		t.Fatalf("refused Bundles changed the vault: %+v -> %+v", before, after)
	}
	if r := g.Do(t, "POST", "", bigTransaction(5), "Authorization", bearer); r.Status != http.StatusOK {
		t.Fatalf("a Bundle at the cap: status %d: %.300s", r.Status, r.Body)
	}
	if after := g.Stats(t); after.Versions != before.Versions+5 {
		t.Errorf("a Bundle of 5 stored %d versions", after.Versions-before.Versions)
	}
}

// TestDefaultBundleEntryCap: with the default cap, the probe's
// 100,000-entry transaction is refused and nothing is stored.
func TestDefaultBundleEntryCap(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{Quiet: true})
	before := g.Stats(t)
	r := g.Do(t, "POST", "", bigTransaction(100000), "Authorization", "Bearer "+g.Token(t))
	wantOutcome(t, "100,000 entries", r, http.StatusRequestEntityTooLarge, "too-costly")
	if after := g.Stats(t); after != before {
		t.Fatalf("a refused Bundle changed the vault: %+v -> %+v", before, after)
	}
}

// TestRateLimitPerClient: after its burst a client gets 429 with
// Retry-After; another client is unaffected; requests without a token are
// bounded per remote IP.
func TestRateLimitPerClient(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{Quiet: true, Limits: gateway.Limits{RatePerClient: 0.01, RateBurst: 5}})
	a := "Bearer " + g.TokenFor(t, auth.Claims{ClientID: "client-a", TTL: time.Hour})
	b := "Bearer " + g.TokenFor(t, auth.Claims{ClientID: "client-b", TTL: time.Hour})
	for i := range 5 {
		if r := g.Do(t, "GET", "/Patient/nobody", nil, "Authorization", a); r.Status != http.StatusNotFound {
			t.Fatalf("request %d within the burst: status %d: %s", i, r.Status, r.Body)
		}
	}
	r := g.Do(t, "GET", "/Patient/nobody", nil, "Authorization", a)
	wantOutcome(t, "over the burst", r, http.StatusTooManyRequests, "throttled")
	if s := wantRetryAfter(t, "over the burst", r); s < 50 {
		t.Errorf("Retry-After %d s; at 0.01/s the next token is ~100 s away", s)
	}
	// Writes too, before their body is read.
	r = g.Do(t, "POST", "/Patient", []byte(`{"resourceType":"Patient"}`), "Authorization", a)
	wantOutcome(t, "a write over the burst", r, http.StatusTooManyRequests, "throttled")
	if r := g.Do(t, "GET", "/Patient/nobody", nil, "Authorization", b); r.Status != http.StatusNotFound {
		t.Fatalf("another client: status %d, want 404: %s", r.Status, r.Body)
	}

	// Without a token: 401 within the IP's burst, then 429.
	var last testonly.Response
	for range 6 {
		last = g.Do(t, "GET", "/Patient/nobody", nil)
	}
	wantOutcome(t, "refused requests over the IP burst", last, http.StatusTooManyRequests, "throttled")
	wantRetryAfter(t, "refused requests over the IP burst", last)
	if r := g.Do(t, "GET", "/Patient/nobody", nil, "Authorization", b); r.Status != http.StatusNotFound {
		t.Fatalf("a client with a token after the IP's flood: status %d, want 404", r.Status)
	}
}

// TestConcurrencyPerClient: a client with a request in progress at its cap
// gets 429; another client is served meanwhile.
func TestConcurrencyPerClient(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{Quiet: true, Limits: gateway.Limits{MaxConcurrentPerClient: 1}})
	a := "Bearer " + g.TokenFor(t, auth.Claims{ClientID: "client-a", TTL: time.Hour})
	b := "Bearer " + g.TokenFor(t, auth.Claims{ClientID: "client-b", TTL: time.Hour})
	inside, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	defer gateway.SetTransactionHook(func(ctx context.Context) {
		once.Do(func() {
			close(inside)
			<-release
		})
	})()
	done := make(chan testonly.Response)
	go func() { done <- g.Do(t, "POST", "", bigTransaction(1), "Authorization", a) }()
	<-inside
	r := g.Do(t, "GET", "/Patient/nobody", nil, "Authorization", a)
	wantOutcome(t, "second request of a busy client", r, http.StatusTooManyRequests, "throttled")
	wantRetryAfter(t, "second request of a busy client", r)
	if r := g.Do(t, "GET", "/Patient/nobody", nil, "Authorization", b); r.Status != http.StatusNotFound {
		t.Fatalf("another client: status %d, want 404", r.Status)
	}
	close(release)
	if r := <-done; r.Status != http.StatusOK {
		t.Fatalf("the transaction: status %d: %s", r.Status, r.Body)
	}
	if r := g.Do(t, "GET", "/Patient/nobody", nil, "Authorization", a); r.Status != http.StatusNotFound {
		t.Fatalf("the client after its request ended: status %d, want 404", r.Status)
	}
}

// TestRequestDeadline: a transaction still running at the deadline is
// answered 503 with Retry-After and rolled back.
func TestRequestDeadline(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{Quiet: true, Limits: gateway.Limits{RequestTimeout: 2 * time.Second}})
	bearer := "Bearer " + g.Token(t)
	before := g.Stats(t)
	var sawDeadline atomic.Bool
	restore := gateway.SetTransactionHook(func(ctx context.Context) {
		// Written, not committed: stall past the deadline.
		select {
		case <-ctx.Done():
			sawDeadline.Store(errors.Is(ctx.Err(), context.DeadlineExceeded))
		case <-time.After(time.Minute):
		}
	})
	r := g.Do(t, "POST", "", bigTransaction(3), "Authorization", bearer)
	restore()
	wantOutcome(t, "past the deadline", r, http.StatusServiceUnavailable, "timeout")
	wantRetryAfter(t, "past the deadline", r)
	if !sawDeadline.Load() {
		t.Error("the transaction's context did not end with the deadline")
	}
	if after := g.Stats(t); after != before {
		t.Fatalf("a transaction past its deadline was kept: %+v -> %+v", before, after)
	}
}

// TestClientGoneMidTransaction: a client that disconnects while its
// transaction is written, before the commit, cancels it: nothing is stored.
func TestClientGoneMidTransaction(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{Quiet: true})
	bearer := "Bearer " + g.Token(t)
	before := g.Stats(t)
	inside, left := make(chan struct{}), make(chan error, 1)
	var once sync.Once
	restore := gateway.SetTransactionHook(func(ctx context.Context) {
		once.Do(func() {
			close(inside)
			select {
			case <-ctx.Done():
				left <- ctx.Err()
			case <-time.After(time.Minute):
				left <- errors.New("the request's context was not cancelled within a minute")
			}
		})
	})
	defer restore()

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "POST", g.URL, bytes.NewReader(bigTransaction(2000)))
		req.Header.Set("Content-Type", "application/fhir+json")
		req.Header.Set("Authorization", bearer)
		resp, err := g.Client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-inside // 2,000 Patients written in the open transaction
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("client: %v, want its cancellation", err)
	}
	if err := <-left; !errors.Is(err, context.Canceled) {
		t.Fatalf("handler: %v", err)
	}
	restore()
	// Writes are serialised: once this one is stored, the cancelled one has
	// ended one way or the other.
	if r := g.Do(t, "PUT", "/Patient/after", []byte(`{"resourceType":"Patient","id":"after"}`), "Authorization", bearer); r.Status != http.StatusCreated {
		t.Fatalf("a write after: status %d: %s", r.Status, r.Body)
	}
	if after := g.Stats(t); after.Versions != before.Versions+1 {
		t.Fatalf("the abandoned transaction was kept: %d versions before, %d after one more write", before.Versions, after.Versions)
	}
}

// TestHeaderLimits: headers over the limit get 431 as an OperationOutcome,
// from the handler, and beyond net/http's own limit as well.
func TestHeaderLimits(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{Quiet: true})
	r := g.Do(t, "GET", "/metadata", nil, "X-Padding", strings.Repeat("a", 100<<10))
	wantOutcome(t, "100 KiB of headers", r, http.StatusRequestHeaderFieldsTooLarge, "too-long")
	if r := g.Do(t, "GET", "/metadata", nil, "X-Padding", strings.Repeat("a", 32<<10)); r.Status != http.StatusOK {
		t.Fatalf("32 KiB of headers: status %d", r.Status)
	}

	// 2 MiB: net/http refuses it before any handler runs.
	for _, tc := range []struct {
		name, req string
		status    int
		code      string
	}{
		{"2 MiB of headers", "GET /fhir/r4/metadata HTTP/1.1\r\nHost: x\r\nX-Padding: " + strings.Repeat("a", 2<<20) + "\r\n\r\n", 431, "too-long"},
		{"malformed request", "GET /fhir/r4/metadata HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400, "structure"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", strings.TrimPrefix(g.Root, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			go func() { _, _ = io.WriteString(conn, tc.req) }()
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			wantOutcome(t, tc.name, testonly.Response{Status: resp.StatusCode, Header: resp.Header, Body: body}, tc.status, tc.code)
		})
	}
}

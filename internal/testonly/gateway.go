// Package testonly holds fixtures shared by tests and benchmarks: a real
// gateway on a temporary SQLite (or PostgreSQL) vault, tokens for it, and the shared test
// data. Import it from _test.go files only.
package testonly

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/anchor/eth"
	anchorpg "github.com/fhiranchor/fhiranchor/anchor/postgres"
	anchorsql "github.com/fhiranchor/fhiranchor/anchor/sqlite"
	"github.com/fhiranchor/fhiranchor/gateway"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/vault"
	vaultpg "github.com/fhiranchor/fhiranchor/vault/postgres"
	"github.com/fhiranchor/fhiranchor/vault/sqlite"
)

// Options tune StartGateway.
type Options struct {
	MaxBodyBytes int64
	// Quiet drops the gateway's per-request log lines (benchmarks); logs
	// are still captured for warnings and errors.
	Quiet bool
	// Anchor is the batch policy; zero MaxDelay means 100ms, so tests see
	// anchored receipts quickly. An empty SigningKey means the key serve
	// derives from the master key (gateway.DefaultSigningKey).
	Anchor anchor.Config
	// RPCURL anchors to a real node (geth --dev) instead of the in-process
	// simulated chain; ChainKey is then the funded anchorer key.
	RPCURL   string
	ChainKey *ecdsa.PrivateKey
	// WithoutPolicy serves without consent enforcement and decision records,
	// for the benchmark of what policy costs.
	WithoutPolicy bool
	// Research configures the research copy and cohort API; an empty
	// ExportDir is a directory under the test's temp dir.
	Research gateway.ResearchConfig
	// PostgresDSN keeps the vault and the log in that PostgreSQL database
	// (see internal/pgtest) instead of SQLite files in the data dir.
	PostgresDSN string
	// Limits are the gateway's limits. Unlike in production, a zero
	// RatePerClient or MaxConcurrentPerClient means none, so tests that
	// hammer the gateway as one client measure what they mean to; the other
	// zero fields take the defaults.
	Limits gateway.Limits
	// SMART serves the token endpoint and the client admin API, with these
	// configured clients; the gateway's dev key signs the access tokens.
	SMART *SMARTOptions
	// CORSOrigins are the origins browsers may call from.
	CORSOrigins []string
	// Tracing, if set, traces every call (gateway.Deps.Tracing).
	Tracing trace.TracerProvider
	// Dir, if set, is the data dir to start on (one a benchmark kept, say)
	// instead of a fresh temp dir; the gateway writes to it.
	Dir string
	// ProfileLabel, if set, labels every goroutine the gateway starts
	// (its servers, their requests, its background work) gateway=label in
	// CPU profiles, so that a profile of two gateways in one process can be
	// split (pprof -tagfocus).
	ProfileLabel string
}

// SMARTOptions configure SMART Backend Services in a test gateway.
type SMARTOptions struct {
	Clients  auth.StaticClients
	TokenURL string // empty: from the request's host
	Remote   *auth.RemoteKeys
}

// Gateway is a running gateway with everything a test inspects.
type Gateway struct {
	URL      string // FHIR base, http://127.0.0.1:port/fhir/r4
	Root     string // http://127.0.0.1:port
	GRPCAddr string
	Dir      string // data dir: vault.db, master.key, dev-signing-key.pem
	Vault    *vault.Sealed
	Log      *anchor.Log
	Chain    *eth.Chain
	Server   *gateway.Server
	Metrics  *gateway.Metrics // served at Root+"/metrics"
	Logs     *SyncBuffer      // everything the gateway logged
	Client   *http.Client
	key      *ecdsa.PrivateKey
	opt      Options
	stop     func() // stops this incarnation of the gateway
}

// StartGateway runs a gateway on 127.0.0.1 ephemeral ports with a fresh
// SQLite vault in a temp dir; it stops when the test ends.
func StartGateway(t testing.TB, opt Options) *Gateway {
	t.Helper()
	g := &Gateway{Dir: opt.Dir, Logs: &SyncBuffer{}, opt: opt}
	if g.Dir == "" {
		g.Dir = t.TempDir()
	}
	g.start(t)
	t.Cleanup(func() { g.stop() })
	return g
}

// Restart stops the gateway and starts it again on the same data dir (on
// new ports), as an operator's restart would.
func (g *Gateway) Restart(t testing.TB) {
	t.Helper()
	g.stop()
	g.start(t)
}

// Stop stops the gateway before the test ends, so that the test can work
// on its data at rest (copy or alter the vault); Restart starts it again.
func (g *Gateway) Stop() {
	g.stop()
	g.stop = func() {}
}

// RestartWith restarts the gateway with changed options, on the same data
// dir.
func (g *Gateway) RestartWith(t testing.TB, change func(*Options)) {
	t.Helper()
	g.stop()
	change(&g.opt)
	g.start(t)
}

func (g *Gateway) start(t testing.TB) {
	t.Helper()
	if g.opt.ProfileLabel == "" {
		g.startLabeled(t)
		return
	}
	// Goroutines inherit their creator's labels: everything the gateway
	// starts below, and every goroutine those start, carries the label.
	pprof.Do(context.Background(), pprof.Labels("gateway", g.opt.ProfileLabel), func(context.Context) { g.startLabeled(t) })
}

// startLabeled starts the gateway on the calling goroutine, whose profile
// labels its goroutines inherit.
func (g *Gateway) startLabeled(t testing.TB) {
	t.Helper()
	dir, opt := g.Dir, g.opt
	level := slog.LevelInfo
	if opt.Quiet {
		level = slog.LevelWarn
	}
	log := slog.New(slog.NewTextHandler(g.Logs, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log) // code that logs through the default logger is captured too

	kr := keyring(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	store, logStore := openStores(t, ctx, dir, opt.PostgresDSN)
	var err error
	g.key, err = auth.LoadOrCreateDevKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	g.Vault = vault.NewSealed(store, kr)
	g.Chain, err = eth.New(ctx, eth.Config{RPCURL: opt.RPCURL, Key: opt.ChainKey, Dir: filepath.Join(dir, "chain")})
	if err != nil {
		t.Fatal(err)
	}
	acfg := opt.Anchor
	if acfg.MaxDelay == 0 {
		acfg.MaxDelay = 100 * time.Millisecond
	}
	if acfg.Poll == 0 {
		acfg.Poll = 20 * time.Millisecond
	}
	if acfg.SigningKey == "" { // as serve does: the key derived from the master key
		if acfg.SigningKey, err = gateway.DefaultSigningKey(g.Vault, anchor.DefaultOrigin); err != nil {
			t.Fatal(err)
		}
	}
	g.Metrics = gateway.NewMetrics()
	acfg.Metrics = g.Metrics
	g.Log, err = anchor.New(ctx, acfg, logStore, gateway.LeafSource(store), g.Chain, log)
	if err != nil {
		t.Fatal(err)
	}
	if opt.Research.ExportDir == "" {
		opt.Research.ExportDir = filepath.Join(g.Dir, "exports")
	}
	if opt.Research.IndexFile == "" {
		opt.Research.IndexFile = filepath.Join(g.Dir, "cohort-index")
	}
	limits := opt.Limits
	if limits.RatePerClient == 0 {
		limits.RatePerClient = -1
	}
	if limits.MaxConcurrentPerClient == 0 {
		limits.MaxConcurrentPerClient = -1
	}
	deps := gateway.Deps{Vault: g.Vault, Verifier: auth.NewVerifier(auth.DevKeySet(g.key), auth.Config{}), Log: g.Log, Logger: log,
		Metrics: g.Metrics, Tracing: opt.Tracing}
	tokenURL := ""
	if opt.SMART != nil {
		tokenURL = opt.SMART.TokenURL
		deps.Clients = gateway.NewClientRegistry(g.Vault, opt.SMART.Clients)
		if deps.Tokens, err = auth.NewTokenServer(auth.TokenConfig{Key: g.key, Clients: deps.Clients, Remote: opt.SMART.Remote, Log: log}); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := gateway.New(ctx, gateway.Config{HTTPAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", MaxBodyBytes: opt.MaxBodyBytes,
		WithoutPolicy: opt.WithoutPolicy, Research: opt.Research, Limits: limits, TokenURL: tokenURL, CORSOrigins: opt.CORSOrigins,
		// Tests share two cores with other packages' tests: a decision that
		// waits for a core must not turn into a timeout denial.
		PolicyTimeout: 10 * time.Second},
		deps)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 2)
	go func() { done <- srv.Run(ctx) }()
	go func() { done <- g.Log.Run(ctx) }()
	g.stop = func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("gateway stopped: %v", err)
			}
		}
		g.Chain.Close()
		logStore.Close()
		store.Close()
	}
	g.Server = srv
	g.Root = "http://" + srv.HTTPAddr()
	g.URL = g.Root + "/fhir/r4"
	g.GRPCAddr = srv.GRPCAddr()
	g.Client = &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
}

// openStores opens the vault's and the log's stores: SQLite files in dir,
// or the PostgreSQL database dsn.
func openStores(t testing.TB, ctx context.Context, dir, dsn string) (vault.Store, anchor.Store) {
	t.Helper()
	if dsn != "" {
		store, err := vaultpg.New(ctx, vaultpg.Config{DSN: dsn})
		if err != nil {
			t.Fatal(err)
		}
		logStore, err := anchorpg.New(ctx, anchorpg.Config{DSN: dsn})
		if err != nil {
			t.Fatal(err)
		}
		return store, logStore
	}
	store, err := sqlite.New(ctx, sqlite.Config{Path: filepath.Join(dir, "vault.db")})
	if err != nil {
		t.Fatal(err)
	}
	logStore, err := anchorsql.New(ctx, anchorsql.Config{Path: filepath.Join(dir, "log.db")})
	if err != nil {
		t.Fatal(err)
	}
	return store, logStore
}

// keyring is the keyring of the data dir's master key, made if missing.
func keyring(t testing.TB, dir string) *vault.Keyring {
	t.Helper()
	master, err := vault.LoadOrCreateMasterKey(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	kr, err := vault.NewKeyring(master)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// OpenVault opens the SQLite vault of a data dir alone, with its master
// key, as `fhiranchor audit` does: no gateway, no research index, no
// anchoring. It is closed when the test ends.
func OpenVault(t testing.TB, dir string) *vault.Sealed {
	t.Helper()
	kr := keyring(t, dir)
	store, err := sqlite.New(t.Context(), sqlite.Config{Path: filepath.Join(dir, "vault.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return vault.NewSealed(store, kr)
}

// RecordRef is the token records use for typ/id, computed from its
// documented definition (docs/anchoring.md): "typ/tok-" and the first 16
// bytes, in hex, of the vault's keyed token of ("record-ref/v1", typ, id).
func (g *Gateway) RecordRef(typ, id string) string {
	return typ + "/tok-" + hex.EncodeToString(g.Vault.Token("record-ref/v1", typ, id)[:16])
}

// Token mints a token with the given scopes (default: system read and
// write) for client "test-client", an EHR client declaring purpose TREAT.
func (g *Gateway) Token(t testing.TB, scopes ...string) string {
	t.Helper()
	return g.TokenFor(t, auth.Claims{ClientID: "test-client", Scopes: scopes, TTL: time.Hour, PurposeOfUse: "TREAT"})
}

// TokenFor mints a token with explicit claims.
func (g *Gateway) TokenFor(t testing.TB, c auth.Claims) string {
	t.Helper()
	if len(c.Scopes) == 0 {
		c.Scopes = []string{"system/*.read", "system/*.write"}
	}
	tok, err := auth.MintToken(g.key, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// RecordLeaves counts the leaves that stand for no resource version:
// access decisions, consent events, policy activations, erasures.
func (g *Gateway) RecordLeaves(t testing.TB) int64 {
	t.Helper()
	ls, err := g.Vault.Store().FindLeaves(t.Context(), vault.LeafFilter{Limit: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	return int64(len(ls))
}

// Stats returns what the vault holds.
func (g *Gateway) Stats(t testing.TB) vault.Stats {
	t.Helper()
	st, err := g.Vault.Store().Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// Response is an HTTP response with its body read.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Do sends one request to the FHIR base URL + path. headers are key, value
// pairs; Content-Type defaults to application/fhir+json when there is a
// body.
func (g *Gateway) Do(t testing.TB, method, path string, body []byte, headers ...string) Response {
	t.Helper()
	return g.send(t, method, g.URL+path, "application/fhir+json", body, headers)
}

// DoRoot sends one request to a path under the server root, such as
// "/v1/policies"; Content-Type defaults to application/json when there is a
// body.
func (g *Gateway) DoRoot(t testing.TB, method, path string, body []byte, headers ...string) Response {
	t.Helper()
	return g.send(t, method, g.Root+path, "application/json", body, headers)
}

func (g *Gateway) send(t testing.TB, method, url, contentType string, body []byte, headers []string) Response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := g.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Bytes returns a copy of everything written so far.
func (b *SyncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

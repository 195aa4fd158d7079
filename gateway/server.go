package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/fhiranchor/fhiranchor/access"
	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/cohort"
	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/fhir/deid"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	fhiranchorv1 "github.com/fhiranchor/fhiranchor/proto/fhiranchor/v1"
	"github.com/fhiranchor/fhiranchor/research"
	"github.com/fhiranchor/fhiranchor/vault"
)

// Config is the gateway's listening configuration.
type Config struct {
	// HTTPAddr is the REST listen address, e.g. "127.0.0.1:8080".
	HTTPAddr string
	// GRPCAddr is the gRPC listen address, e.g. "127.0.0.1:9090"; empty
	// serves gRPC only to the in-process REST gateway.
	GRPCAddr string
	// MaxBodyBytes caps a request body (REST: 413; gRPC: RESOURCE_EXHAUSTED).
	MaxBodyBytes int64
	// BaseURL is the public FHIR base URL used in Location headers and
	// fullUrls, e.g. "https://fhir.example.org/fhir/r4". Empty derives it from
	// each request's Host.
	BaseURL string
	// WithoutPolicy serves with no consent enforcement, no decision log and
	// no policy administration. It exists so a benchmark can measure what
	// policy costs; the serve command never sets it.
	WithoutPolicy bool
	// Research configures the de-identified research copy and the cohort
	// API (off with WithoutPolicy: nobody may be counted without consent
	// decisions).
	Research ResearchConfig
	// PolicyTimeout bounds one consent decision (an evaluation that runs
	// longer denies); zero means policy.DefaultTimeout.
	PolicyTimeout time.Duration
	// Limits bound what clients may make the gateway hold: bodies in
	// flight, rates, concurrency, Bundle entries, deadlines, header size.
	// Zero fields take their defaults.
	Limits Limits
	// TokenURL is the SMART token endpoint's public URL, the aud client
	// assertions must name; empty derives it from BaseURL, or from each
	// request's host when BaseURL is empty too.
	TokenURL string
	// CORSOrigins are the origins browsers may call the API from ("*":
	// any); empty allows none.
	CORSOrigins []string
	// HideMetrics leaves GET /metrics out of the REST listener (the
	// metrics are kept all the same). It is served without a token: its
	// labels are fixed words, never ids or PHI, and Prometheus scrapers
	// rarely carry bearer tokens; hide it where the REST listener faces
	// clients that should not see request rates and the vault's size.
	HideMetrics bool
}

// ResearchConfig configures the research copy and cohort queries.
type ResearchConfig struct {
	// Profile is the de-identification profile; nil means deid.SafeHarbor().
	Profile *deid.Config
	// Privacy are the protections of released counts. Zero fields take
	// cohort's defaults (suppress counts under 11 and counts within 10
	// patients of the client's earlier releases, Gaussian noise of sigma 3,
	// rounding to 5, at most 7 near-identical queries per client per 30
	// days); an empty Key derives the noise key from the vault's keys.
	Privacy cohort.Privacy
	// ExportDir holds export files; required for the export API.
	ExportDir string
	// ExportTTL is how long finished exports are kept (default 24h).
	ExportTTL time.Duration
	// IndexFile keeps the cohort index's sealed snapshot, so that a
	// restart loads it instead of rebuilding the index from every research
	// copy; "" keeps none.
	IndexFile string
}

// DefaultMaxBodyBytes fits the largest Synthea patient Bundles with room.
const DefaultMaxBodyBytes = 32 << 20

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.HTTPAddr == "" {
		return errors.New("gateway: HTTPAddr is required")
	}
	if c.MaxBodyBytes < 0 {
		return errors.New("gateway: MaxBodyBytes must not be negative")
	}
	maxBody := c.MaxBodyBytes
	if maxBody == 0 {
		maxBody = DefaultMaxBodyBytes
	}
	return c.Limits.withDefaults().validate(maxBody)
}

// Deps are the parts the gateway serves from.
type Deps struct {
	Vault    *vault.Sealed
	Verifier *auth.Verifier
	// Log is the anchored log the vault's leaves go to; the caller runs it.
	Log *anchor.Log
	// Anchoring reports whether this process runs Log at the moment: of
	// several gateways on one database, one is elected to. Nil means it
	// always does. /readyz shows it.
	Anchoring func() bool
	Logger    *slog.Logger
	// Tokens, when set, serves the SMART Backend Services token endpoint
	// (POST /auth/token); its access tokens must verify under Verifier.
	Tokens *auth.TokenServer
	// Clients, when set, serves the client admin API (/v1/clients).
	Clients *ClientRegistry
	// Metrics are the metrics the gateway counts in and serves on
	// /metrics; nil makes new ones (the anchor log's then go uncounted:
	// pass the same Metrics to anchor.Config.Metrics).
	Metrics *Metrics
	// Tracing, if set, gets a span per gRPC call (REST calls included: they
	// are gRPC calls in process), named by method, continuing the caller's
	// W3C trace context (traceparent). Spans carry the method, the code and
	// the status message clients get, never bodies or metadata. Nil: none.
	Tracing trace.TracerProvider
}

// Server serves the FHIR API over gRPC and REST.
type Server struct {
	cfg      Config
	log      *slog.Logger
	grpc     *grpc.Server
	conn     *grpc.ClientConn
	inproc   *bufconn.Listener
	grpcLis  net.Listener
	httpLis  net.Listener
	http     *http.Server
	restRoot http.Handler
	policies *policyService    // nil without policy
	research *research.Service // nil without policy
	exports  *research.Exports // nil without policy
	bulk     *bulkService
}

// streamWorkers is how many gRPC calls run at once on long-lived workers
// (grpc.NumStreamWorkers): more than the REST clients a gateway serves
// at once, typically; an idle worker costs its stack only.
const streamWorkers = 64

// New builds a Server and opens its listeners, so their addresses are known
// (and ports taken) before Run.
func New(ctx context.Context, cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Vault == nil || deps.Verifier == nil || deps.Log == nil {
		return nil, errors.New("gateway: Vault, Verifier and Log are required")
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	cfg.Limits = cfg.Limits.withDefaults()
	log := deps.Logger
	if log == nil {
		log = slog.Default()
	}
	log = withRequestIDs(log)
	metrics := deps.Metrics
	if metrics == nil {
		metrics = NewMetrics()
	}
	parser, err := fhir.NewParser()
	if err != nil {
		return nil, err
	}
	// Before anything reads the blind index: a vault whose index was built
	// by other rules, or emptied by a migration, is rebuilt here.
	if err := EnsureIndex(ctx, deps.Vault, log); err != nil {
		return nil, err
	}
	tokenURL := tokenURLFor(cfg.TokenURL, cfg.BaseURL)
	caps, err := capabilityStatement(cfg.BaseURL, capSecurity{tokens: deps.Tokens != nil, tokenURL: tokenURL, cors: len(cfg.CORSOrigins) > 0})
	if err != nil {
		return nil, err
	}
	svc := &service{
		parser: parser, vault: deps.Vault, baseURL: cfg.BaseURL, capabilities: caps,
		writer: &writer{vault: deps.Vault, now: time.Now}, maxBundleEntries: cfg.Limits.MaxBundleEntries,
	}
	var policies *policyService
	if !cfg.WithoutPolicy {
		svc.access = access.New(access.Config{Vault: deps.Vault, Log: log, Now: time.Now, Metrics: metrics})
		svc.writer.access = svc.access
		if policies, err = newPolicyService(ctx, deps.Vault, svc.access, log, time.Now, cfg.PolicyTimeout); err != nil {
			return nil, err
		}
	}
	var res *research.Service
	var exp *research.Exports
	if !cfg.WithoutPolicy {
		res, err = research.New(research.Config{
			Vault: deps.Vault, Access: svc.access, Log: log, Now: time.Now,
			Profile: cfg.Research.Profile, Privacy: cfg.Research.Privacy,
			ExportDir: cfg.Research.ExportDir, ExportTTL: cfg.Research.ExportTTL,
			Stage: exportStage, Metrics: metrics, IndexFile: cfg.Research.IndexFile,
		})
		if err != nil {
			return nil, err
		}
		exp = res.Exports()
		svc.writer.deid = res.Deidentifier()
	}
	msgLimit := int(cfg.MaxBodyBytes) + 1<<20 // the body plus the request's own framing
	s := &Server{cfg: cfg, log: log, research: res, exports: exp}
	intercept := interceptor(deps.Verifier, log, cfg.Limits.RequestTimeout, newGRPCLimits(cfg.Limits), metrics)
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(msgLimit),
		grpc.MaxSendMsgSize(1 << 30),
		grpc.UnaryInterceptor(intercept),
		// Calls run on long-lived workers, not a new goroutine each: a
		// policy evaluation recurses deep, and on a fresh goroutine its
		// stack is grown, by copying, on every call (a tenth of a read's
		// CPU). Calls beyond the workers still get a goroutine of their own.
		grpc.NumStreamWorkers(streamWorkers),
	}
	if deps.Tracing != nil {
		opts = append(opts, grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(deps.Tracing),
			otelgrpc.WithPropagators(propagation.TraceContext{}))))
	}
	s.grpc = grpc.NewServer(opts...)
	names := &refNames{vault: deps.Vault}
	svc.names = names
	fhiranchorv1.RegisterFHIRServiceServer(s.grpc, svc)
	fhiranchorv1.RegisterLogServiceServer(s.grpc, &logService{log: deps.Log, vault: deps.Vault, access: svc.access, names: names,
		key: deps.Log.VerifierKey()})
	fhiranchorv1.RegisterAdminServiceServer(s.grpc, &adminService{vault: deps.Vault, now: time.Now, exports: exp, log: log})
	if policies != nil {
		fhiranchorv1.RegisterPolicyServiceServer(s.grpc, policies)
		fhiranchorv1.RegisterDecisionServiceServer(s.grpc, &decisionService{vault: deps.Vault, names: names})
		s.policies = policies
	}
	bulkDir, err := bulkDirectory(cfg.Research.ExportDir)
	if err != nil {
		return nil, err
	}
	ttl := cfg.Research.ExportTTL
	if ttl <= 0 {
		ttl = research.DefaultExportTTL
	}
	s.bulk = newBulkService(svc, exp, strings.TrimSuffix(strings.TrimSuffix(cfg.BaseURL, "/"), "/fhir/r4"), bulkDir, ttl, log)
	fhiranchorv1.RegisterBulkServiceServer(s.grpc, s.bulk)
	if res != nil {
		fhiranchorv1.RegisterCohortServiceServer(s.grpc, &cohortService{r: res, exports: exp,
			// Export file URLs, like Location headers, use the configured
			// public base when there is one, not the request's Host.
			base: strings.TrimSuffix(strings.TrimSuffix(cfg.BaseURL, "/"), "/fhir/r4")})
	}

	metrics.methods = map[string]bool{}
	for name, info := range s.grpc.GetServiceInfo() {
		for _, m := range info.Methods {
			metrics.methods["/"+name+"/"+m.Name] = true
		}
	}
	var index func() (int, int)
	if res != nil {
		index = func() (int, int) { st := res.IndexStats(); return st.Patients, st.Resources }
	}
	if err := metrics.reg.Register(newSizes(deps.Vault.Store(), deps.Log, index, log)); err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	openapi, err := openAPIDocument()
	if err != nil {
		return nil, err
	}

	// REST reaches the gRPC server through an in-memory connection, so every
	// REST call runs the same interceptors as a gRPC call without a network
	// hop or a second copy of the auth logic.
	s.inproc = bufconn.Listen(4 << 20)
	s.conn, err = grpc.NewClient("passthrough:///fhiranchor-inproc",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return s.inproc.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(msgLimit), grpc.MaxCallRecvMsgSize(1<<30)),
	)
	if err != nil {
		return nil, fmt.Errorf("connect REST gateway to gRPC: %w", err)
	}
	ready := func(ctx context.Context) (map[string]any, error) {
		// Not ready before cohort counts can answer: until the index is
		// loaded (or rebuilt) a count would wait for it. Asked first: a
		// probe polling a starting gateway must not load it further with
		// the vault's counts.
		if res != nil && !res.Ready() {
			return nil, errors.New("cohort index loading")
		}
		stats, err := deps.Vault.Store().Stats(ctx)
		if err != nil {
			return nil, err
		}
		anchoring := deps.Anchoring == nil || deps.Anchoring()
		return map[string]any{"status": "ready", "vault": stats, "anchoring": anchoring}, nil
	}
	rc := restConfig{maxBody: cfg.MaxBodyBytes, limits: cfg.Limits, verifier: deps.Verifier, ready: ready,
		tokens: deps.Tokens, tokenURL: tokenEndpoint(tokenURL), clients: deps.Clients, cors: cfg.CORSOrigins, log: log, openapi: openapi}
	if !cfg.HideMetrics {
		rc.metrics = metrics.Handler()
	}
	if deps.Tracing == nil {
		// With tracing, every call takes the gRPC route, where the stats
		// handler makes its span.
		rc.direct = &directReads{intercept: intercept, svc: svc}
	}
	s.restRoot, err = restHandler(ctx, s.conn, rc)
	if err != nil {
		return nil, err
	}
	s.http = &http.Server{
		Handler:           s.restRoot,
		ReadHeaderTimeout: cfg.Limits.ReadHeaderTimeout,
		ReadTimeout:       cfg.Limits.ReadTimeout,
		IdleTimeout:       cfg.Limits.IdleTimeout,
		// The handler answers 431 at Limits.MaxHeaderBytes; net/http
		// itself only beyond this (fhirErrorConn makes that FHIR too).
		MaxHeaderBytes: hardMaxHeaderBytes,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	lis, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("listen REST: %w", err)
	}
	s.httpLis = fhirErrorListener{lis}
	if cfg.GRPCAddr != "" {
		if s.grpcLis, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
			s.httpLis.Close()
			return nil, fmt.Errorf("listen gRPC: %w", err)
		}
	}
	return s, nil
}

// HTTPAddr is the address REST listens on.
func (s *Server) HTTPAddr() string { return s.httpLis.Addr().String() }

// ResearchCopiesSkipped returns how many research copies the cohort index
// has left out since start because they did not open or decode (0 without
// policy): a counter for the operator's metrics. `fhiranchor audit` names
// the versions.
func (s *Server) ResearchCopiesSkipped() int64 {
	if s.research == nil {
		return 0
	}
	return s.research.Skipped()
}

// GRPCAddr is the address gRPC listens on, or "".
func (s *Server) GRPCAddr() string {
	if s.grpcLis == nil {
		return ""
	}
	return s.grpcLis.Addr().String()
}

// Run serves until ctx ends, then drains in-flight requests.
func (s *Server) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.grpc.Serve(s.inproc) })
	if s.policies != nil {
		g.Go(func() error { return s.policies.Run(ctx) })
	}
	if s.research != nil {
		g.Go(func() error { return s.research.Run(ctx) })
		g.Go(func() error { return s.exports.Run(ctx) })
	}
	g.Go(func() error { return s.bulk.Run(ctx) })
	if s.grpcLis != nil {
		g.Go(func() error { return s.grpc.Serve(s.grpcLis) })
	}
	g.Go(func() error {
		if err := s.http.Serve(s.httpLis); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	s.log.InfoContext(ctx, "serving", slog.String("rest", s.HTTPAddr()), slog.String("grpc", s.GRPCAddr()))
	g.Go(func() error {
		<-ctx.Done()
		s.log.Info("shutting down: draining requests", slog.Duration("grace", 20*time.Second))
		shutdown, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		err := s.http.Shutdown(shutdown)
		s.conn.Close()
		s.grpc.GracefulStop()
		s.log.Info("stopped serving")
		return err
	})
	err := g.Wait()
	if errors.Is(err, grpc.ErrServerStopped) {
		err = nil
	}
	return err
}

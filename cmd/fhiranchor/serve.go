package main

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"gopkg.in/yaml.v3"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/anchor/eth"
	anchorpg "github.com/fhiranchor/fhiranchor/anchor/postgres"
	anchorsql "github.com/fhiranchor/fhiranchor/anchor/sqlite"
	"github.com/fhiranchor/fhiranchor/cohort"
	"github.com/fhiranchor/fhiranchor/fhir/deid"
	"github.com/fhiranchor/fhiranchor/gateway"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/vault"
	vaultpg "github.com/fhiranchor/fhiranchor/vault/postgres"
	"github.com/fhiranchor/fhiranchor/vault/sqlite"
)

// config is the YAML configuration of `fhiranchor serve`. Every key is
// optional: the zero config is the embedded default (./data, SQLite, dev
// token key). Secrets never live here; see the env variables in loadConfig.
type config struct {
	Data         string `yaml:"data"`           // data directory (default ./data)
	HTTP         string `yaml:"http"`           // REST listen address (default 127.0.0.1:8080)
	GRPC         string `yaml:"grpc"`           // gRPC listen address (default 127.0.0.1:9090)
	BaseURL      string `yaml:"base_url"`       // public FHIR base URL; default: from each request's Host
	MaxBodyBytes int64  `yaml:"max_body_bytes"` // request body limit (default 32 MiB)
	Auth         struct {
		Keys     []string `yaml:"keys"`     // PEM or JWKS files of trusted token keys; empty trusts the data dir's dev key
		Issuer   string   `yaml:"issuer"`   // required iss, when set (also the iss of the tokens the token endpoint issues)
		Audience string   `yaml:"audience"` // required aud, when set (also their aud)
		JWKSURL  string   `yaml:"jwks_url"` // an identity provider's JWKS endpoint, fetched, cached and refreshed on an unknown kid
		// SigningKeyFile is the gateway's own token signing key (P-256,
		// PKCS #8 PEM) for the token endpoint's access tokens; default the
		// data dir's dev-signing-key.pem (created on first start).
		SigningKeyFile string        `yaml:"signing_key_file"`
		TokenURL       string        `yaml:"token_url"`        // the token endpoint's public URL (the assertions' aud); default from base_url or the request
		TokenTTL       time.Duration `yaml:"token_ttl"`        // lifetime of issued access tokens (default 5m)
		JWKSMinRefresh time.Duration `yaml:"jwks_min_refresh"` // least time between refreshes an unknown kid triggers (default 30s)
		// Clients are the SMART Backend Services clients registered in the
		// configuration; the admin API (/v1/clients) adds, revokes and
		// strips keys of clients at run time.
		Clients []clientConfig `yaml:"clients"`
	} `yaml:"auth"`
	CORS struct {
		AllowedOrigins []string `yaml:"allowed_origins"` // origins browsers may call the API from ("*": any); default none
	} `yaml:"cors"`
	// Database, when set, keeps the vault and the log in PostgreSQL instead
	// of SQLite files in the data dir; any number of gateways may share it.
	Database struct {
		URL      string `yaml:"url"`       // PostgreSQL DSN without the password (PGPASSWORD, or FHIRANCHOR_DATABASE_URL overrides the whole DSN)
		MaxConns int32  `yaml:"max_conns"` // connections per store (default max(4, CPUs))
	} `yaml:"database"`
	Vault struct {
		MasterKeyFile string `yaml:"master_key_file"` // default <data>/master.key, created 0600 on first start
		SQLite        struct {
			Path string `yaml:"path"` // default <data>/vault.db
		} `yaml:"sqlite"`
	} `yaml:"vault"`
	Chain struct {
		RPCURL        string `yaml:"rpc_url"`          // EVM JSON-RPC endpoint; empty = in-process simulated chain in <data>/chain
		ChainID       uint64 `yaml:"chain_id"`         // the chain id the endpoint must report (0 = accept the node's)
		Name          string `yaml:"name"`             // shown in receipts' logs; default from the chain id
		Contract      string `yaml:"contract"`         // AnchorRegistry address; empty = deploy on first start
		KeyFile       string `yaml:"key_file"`         // keystore JSON of the anchorer; or FHIRANCHOR_CHAIN_KEY (hex)
		GasFeeCapGwei uint64 `yaml:"gas_fee_cap_gwei"` // cap on the EIP-1559 fee cap (0 = default)
		GasTipCapGwei uint64 `yaml:"gas_tip_cap_gwei"` // cap on the priority fee (0 = default)
	} `yaml:"chain"`
	Anchor struct {
		LogPath       string        `yaml:"log_path"`      // the log's tree and checkpoints (default <data>/log.db)
		MaxLeaves     int           `yaml:"max_leaves"`    // a batch anchors at most this many leaves (default 16384)
		MaxDelay      time.Duration `yaml:"max_delay"`     // anchor at latest this long after a leaf arrives (default 10s)
		Confirmations uint64        `yaml:"confirmations"` // depth at which receipts are "confirmed" (default 1)
		// Origin names the log on the first line of its signed checkpoints
		// (c2sp.org/tlog-checkpoint); default the signing key's name, else
		// anchor.DefaultOrigin.
		Origin string `yaml:"origin"`
		// SigningKeyFile holds the note signer key of the checkpoints
		// ("PRIVATE+KEY+<origin>+<hash>+<base64>"); or FHIRANCHOR_LOG_SIGNING_KEY.
		// Neither: a key derived from the master key.
		SigningKeyFile string `yaml:"signing_key_file"`
	} `yaml:"anchor"`
	Research struct {
		// Profile is a de-identification profile file (YAML or JSON) or the
		// name of an embedded one: safe-harbor (default), safe-harbor-strict, safe-harbor-text.
		Profile        string        `yaml:"profile"`
		Threshold      int           `yaml:"threshold"`       // counts under this are suppressed (default 11)
		Noise          string        `yaml:"noise"`           // gaussian (default), laplace or none
		NoiseScale     float64       `yaml:"noise_scale"`     // Laplace b or Gaussian sigma (default 3)
		RoundTo        int           `yaml:"round_to"`        // round released counts to a multiple (default 5; 1: no rounding)
		RepeatLimit    int           `yaml:"repeat_limit"`    // near-identical queries per client per window (default 7)
		RepeatWindow   time.Duration `yaml:"repeat_window"`   // default 720h (30 days); also the overlap control's window
		OverlapScope   string        `yaml:"overlap_scope"`   // whose earlier releases a count is compared with: all (default), client, off
		OverlapHistory int           `yaml:"overlap_history"` // how many earlier releases (default 256)
		ExportDir      string        `yaml:"export_dir"`      // default <data>/exports
		ExportTTL      time.Duration `yaml:"export_ttl"`      // default 24h
		IndexFile      string        `yaml:"index_file"`      // sealed cohort index snapshot; default <data>/cohort-index; "off": none
	} `yaml:"research"`
	// Limits bound what clients may make a gateway hold; zero or absent
	// keys take the defaults, a negative count or rate turns that limit
	// off. docs/operations.md "Limits" lists them with their answers.
	Limits struct {
		MaxBodyBytesInFlight   int64         `yaml:"max_body_bytes_in_flight"`  // request body bytes held by all requests (default 128 MiB; 503)
		MaxConcurrentPerClient int           `yaml:"max_concurrent_per_client"` // requests of one client in progress (default 16; 429)
		RatePerClient          float64       `yaml:"rate_per_client"`           // requests per second of one client (default 100; 429)
		RateBurst              int           `yaml:"rate_burst"`                // requests at once above the rate (default 200)
		MaxBundleEntries       int           `yaml:"max_bundle_entries"`        // entries of a transaction or batch (default 10000; 413)
		RequestTimeout         time.Duration `yaml:"request_timeout"`           // deadline of every call (default 60s; 503, rolled back)
		ReadHeaderTimeout      time.Duration `yaml:"read_header_timeout"`       // time to send the headers (default 10s)
		ReadTimeout            time.Duration `yaml:"read_timeout"`              // time to send headers and body (default 60s; 408 or closed)
		IdleTimeout            time.Duration `yaml:"idle_timeout"`              // keep-alive wait for the next request (default 2m)
		MaxHeaderBytes         int           `yaml:"max_header_bytes"`          // request line and headers (default 64 KiB, at most 1 MiB; 431)
	} `yaml:"limits"`
	Log struct {
		Level  string `yaml:"level"`  // debug, info (default), warn, error
		Format string `yaml:"format"` // text (default) or json
	} `yaml:"log"`
	Metrics struct {
		// Hide leaves GET /metrics off the REST listener, where it is
		// served without a token otherwise (its labels carry no ids or PHI).
		Hide bool `yaml:"hide"`
	} `yaml:"metrics"`
	// Telemetry sends OpenTelemetry traces (a span per gRPC and REST call)
	// to an OTLP/gRPC collector; off without an endpoint.
	Telemetry struct {
		OTLPEndpoint string `yaml:"otlp_endpoint"` // host:port of the collector; empty: no traces
		OTLPInsecure bool   `yaml:"otlp_insecure"` // plaintext to the collector (a local agent); default TLS
	} `yaml:"telemetry"`

	masterKey     string // from FHIRANCHOR_MASTER_KEY, never from the file
	databaseURL   string // from FHIRANCHOR_DATABASE_URL, else Database.URL
	chainKey      string // from FHIRANCHOR_CHAIN_KEY
	keyPassphrase string // from FHIRANCHOR_CHAIN_KEY_PASSPHRASE
	logSigningKey string // from FHIRANCHOR_LOG_SIGNING_KEY
}

// clientConfig is one registered SMART Backend Services client.
type clientConfig struct {
	ClientID     string   `yaml:"client_id"`
	Scopes       []string `yaml:"scopes"`         // the scopes it may be granted
	FHIRUser     string   `yaml:"fhir_user"`      // fhirUser claim of its tokens, optional
	Organization string   `yaml:"organization"`   // organization claim, optional
	PurposeOfUse string   `yaml:"purpose_of_use"` // purpose_of_use claim, optional
	Roles        []string `yaml:"roles"`          // subject_role claim, optional
	JWKSFile     string   `yaml:"jwks_file"`      // its public keys (JWKS); or
	JWKSURL      string   `yaml:"jwks_url"`       // where it publishes them
	RevokedKIDs  []string `yaml:"revoked_kids"`   // keys refused whatever the set holds
}

// clients reads the configured clients' registrations.
func (c *config) clients() (auth.StaticClients, error) {
	out := auth.StaticClients{}
	for i, cc := range c.Auth.Clients {
		cl := auth.Client{ID: cc.ClientID, Scopes: cc.Scopes, FHIRUser: cc.FHIRUser, Organization: cc.Organization,
			PurposeOfUse: cc.PurposeOfUse, Roles: cc.Roles, JWKSURL: cc.JWKSURL, RevokedKIDs: cc.RevokedKIDs}
		if cc.JWKSFile != "" {
			set, err := auth.LoadJWKSFile(cc.JWKSFile)
			if err != nil {
				return nil, fmt.Errorf("config: auth.clients[%d]: %w", i, err)
			}
			cl.JWKS = set
		}
		if err := cl.Validate(); err != nil {
			return nil, fmt.Errorf("config: auth.clients[%d]: %w", i, err)
		}
		if _, dup := out[cl.ID]; dup {
			return nil, fmt.Errorf("config: auth.clients[%d]: client_id registered twice", i)
		}
		out[cl.ID] = cl
	}
	return out, nil
}

// loadConfig reads the YAML file strictly (an unknown key is an error, not a
// silent default), lets FHIRANCHOR_* environment variables override its
// keys (see applyEnv; flags override both) and reads secrets from the
// environment.
func loadConfig(path string, getenv func(string) string) (*config, error) {
	var c config
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("open config: %w", err)
		}
		defer f.Close()
		dec := yaml.NewDecoder(f)
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("parse %s: %w", path, err)
		}
	}
	if err := applyEnv(&c, getenv); err != nil {
		return nil, err
	}
	c.masterKey = getenv("FHIRANCHOR_MASTER_KEY")
	c.databaseURL = c.Database.URL
	if u := getenv("FHIRANCHOR_DATABASE_URL"); u != "" {
		c.databaseURL = u
	}
	c.chainKey = getenv("FHIRANCHOR_CHAIN_KEY")
	c.keyPassphrase = getenv("FHIRANCHOR_CHAIN_KEY_PASSPHRASE")
	c.logSigningKey = getenv("FHIRANCHOR_LOG_SIGNING_KEY")
	return &c, nil
}

func (c *config) applyDefaults() {
	if c.Data == "" {
		c.Data = "./data"
	}
	if c.HTTP == "" {
		c.HTTP = "127.0.0.1:8080"
	}
	if c.GRPC == "" {
		c.GRPC = "127.0.0.1:9090"
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = gateway.DefaultMaxBodyBytes
	}
	if c.Vault.MasterKeyFile == "" {
		c.Vault.MasterKeyFile = filepath.Join(c.Data, "master.key")
	}
	if c.Vault.SQLite.Path == "" {
		c.Vault.SQLite.Path = filepath.Join(c.Data, "vault.db")
	}
	if c.Anchor.LogPath == "" {
		c.Anchor.LogPath = filepath.Join(c.Data, "log.db")
	}
	if c.Research.ExportDir == "" {
		c.Research.ExportDir = filepath.Join(c.Data, "exports")
	}
	if c.Research.IndexFile == "" {
		c.Research.IndexFile = filepath.Join(c.Data, "cohort-index")
	}
}

// research turns the research section into the gateway's configuration.
func (c *config) research() (gateway.ResearchConfig, error) {
	r := c.Research
	rc := gateway.ResearchConfig{
		Privacy: cohort.Privacy{
			Threshold: r.Threshold, Noise: r.Noise, Scale: r.NoiseScale, RoundTo: r.RoundTo,
			RepeatLimit: r.RepeatLimit, RepeatWindow: r.RepeatWindow,
			OverlapScope: r.OverlapScope, OverlapHistory: r.OverlapHistory,
		},
		ExportDir: r.ExportDir, ExportTTL: r.ExportTTL, IndexFile: r.IndexFile,
	}
	if r.IndexFile == "off" {
		rc.IndexFile = ""
	}
	switch {
	case r.Profile == "":
	case !strings.ContainsAny(r.Profile, "/.\\"):
		p, err := deid.Profile(r.Profile)
		if err != nil {
			return rc, fmt.Errorf("config: research.profile: %w", err)
		}
		rc.Profile = p
	default:
		data, err := os.ReadFile(r.Profile)
		if err != nil {
			return rc, fmt.Errorf("config: research.profile: %w", err)
		}
		p, err := deid.ParseConfig(data)
		if err != nil {
			return rc, fmt.Errorf("config: research.profile %s: %w", r.Profile, err)
		}
		rc.Profile = p
	}
	return rc, nil
}

func (c *config) validate() error {
	switch strings.ToLower(c.Log.Level) {
	case "", "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("config: log.level %q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "", "text", "json":
	default:
		return fmt.Errorf("config: log.format %q is not text or json", c.Log.Format)
	}
	if c.MaxBodyBytes < 0 {
		return errors.New("config: max_body_bytes must not be negative")
	}
	if err := c.gateway().Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// limits turns the limits section into the gateway's Limits.
func (c *config) limits() gateway.Limits {
	l := c.Limits
	return gateway.Limits{
		MaxBodyBytesInFlight: l.MaxBodyBytesInFlight, MaxConcurrentPerClient: l.MaxConcurrentPerClient,
		RatePerClient: l.RatePerClient, RateBurst: l.RateBurst, MaxBundleEntries: l.MaxBundleEntries,
		RequestTimeout: l.RequestTimeout, ReadHeaderTimeout: l.ReadHeaderTimeout, ReadTimeout: l.ReadTimeout,
		IdleTimeout: l.IdleTimeout, MaxHeaderBytes: l.MaxHeaderBytes,
	}
}

// gateway is the gateway's listening configuration, without research
// (which reads files).
func (c *config) gateway() gateway.Config {
	return gateway.Config{
		HTTPAddr: c.HTTP, GRPCAddr: c.GRPC, BaseURL: c.BaseURL, MaxBodyBytes: c.MaxBodyBytes, Limits: c.limits(),
		TokenURL: c.Auth.TokenURL, CORSOrigins: c.CORS.AllowedOrigins,
		HideMetrics: c.Metrics.Hide,
	}
}

func (c *config) logger(w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// configFlags adds --config and --data to fs. The function it returns,
// called after fs.Parse, reads the config file strictly, lets --data win
// over it, fills the defaults and validates the result.
func configFlags(fs *flag.FlagSet) func(getenv func(string) string) (*config, error) {
	path := fs.String("config", "", "YAML config file (optional)")
	data := fs.String("data", "", "data directory (default ./data)")
	return func(getenv func(string) string) (*config, error) {
		c, err := loadConfig(*path, getenv)
		if err != nil {
			return nil, err
		}
		if *data != "" {
			c.Data = *data
		}
		c.applyDefaults()
		if err := c.validate(); err != nil {
			return nil, err
		}
		return c, nil
	}
}

const serveUsage = `usage: fhiranchor serve [--config FILE] [--data DIR] [--http ADDR] [--grpc ADDR]

Runs the gateway: the FHIR R4 API under /fhir/r4 (REST) and gRPC, anchoring
to a chain, until SIGINT or SIGTERM. Config keys come from --config, then
FHIRANCHOR_<KEY> environment variables (the key upper-cased, dots as
underscores: FHIRANCHOR_HTTP, FHIRANCHOR_ANCHOR_MAX_DELAY), then the flags.

example:
  fhiranchor serve --config deploy/config/production.yaml --http 0.0.0.0:8080

flags:
`

// usageWith makes fs's -h print text (usage, what the command does, an
// example), then the flags.
func usageWith(fs *flag.FlagSet, stderr io.Writer, text string) {
	fs.Usage = func() {
		fmt.Fprint(stderr, text)
		fs.PrintDefaults()
	}
}

// runServe runs the gateway until ctx ends.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	usageWith(fs, stderr, serveUsage)
	load := configFlags(fs)
	httpAddr := fs.String("http", "", "REST listen address (default 127.0.0.1:8080)")
	grpcAddr := fs.String("grpc", "", "gRPC listen address (default 127.0.0.1:9090)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := load(getenv)
	if err != nil {
		return err
	}
	// Flags win over the file.
	if *httpAddr != "" {
		c.HTTP = *httpAddr
	}
	if *grpcAddr != "" {
		c.GRPC = *grpcAddr
	}
	log := c.logger(stderr)
	slog.SetDefault(log)

	d, err := openData(ctx, c)
	if err != nil {
		return err
	}
	defer d.Close()

	keys, err := tokenKeys(c)
	if err != nil {
		return err
	}
	tokenKey, err := tokenSigningKey(c)
	if err != nil {
		return err
	}
	remote, err := auth.NewRemoteKeys(ctx, auth.RemoteConfig{MinRefresh: c.Auth.JWKSMinRefresh})
	if err != nil {
		return err
	}
	if c.Auth.JWKSURL != "" {
		if err := remote.Add(ctx, c.Auth.JWKSURL); err != nil {
			// Not fatal: the cache fetches again when a token names a kid.
			slog.Warn("auth.jwks_url not reachable at start", slog.Any("err", err))
		}
	}
	// The gateway trusts the tokens its own token endpoint issues.
	verifier := auth.NewVerifier(auth.Merge(keys, auth.DevKeySet(tokenKey)), auth.Config{Issuer: c.Auth.Issuer, Audience: c.Auth.Audience,
		JWKSURL: c.Auth.JWKSURL, Remote: remote})
	static, err := c.clients()
	if err != nil {
		return err
	}
	if d.pgLog != nil {
		if c.Chain.RPCURL == "" {
			slog.Warn("database.url is set but chain.rpc_url is not: the simulated chain lives in this gateway's data dir, so run only one gateway")
		} else if c.Chain.Contract == "" {
			// Gateways starting at once against one database deploy the
			// contract once: the first records it, the others read it.
			addr, err := d.pgLog.Contract(ctx, func(ctx context.Context) (string, error) {
				ch, err := openChain(ctx, c)
				if err != nil {
					return "", err
				}
				defer ch.Close()
				return ch.Info().Contract, nil
			})
			if err != nil {
				return fmt.Errorf("chain contract: %w", err)
			}
			c.Chain.Contract = addr
		}
	}
	chain, err := openChain(ctx, c)
	if err != nil {
		return err
	}
	defer chain.Close()
	signingKey, keySource, err := checkpointKey(c, d.vault)
	if err != nil {
		return err
	}
	metrics := gateway.NewMetrics()
	tp, stopTracing, err := tracing(ctx, c)
	if err != nil {
		return err
	}
	defer func() {
		// The spans of the last requests, flushed after ctx ended.
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := stopTracing(sctx); err != nil {
			log.Warn("telemetry: flushing spans", slog.Any("err", err))
		}
	}()
	anchorLog, err := anchor.New(ctx, anchor.Config{
		MaxLeaves: c.Anchor.MaxLeaves, MaxDelay: c.Anchor.MaxDelay, Confirmations: c.Anchor.Confirmations,
		SigningKey: signingKey, Origin: c.Anchor.Origin, Metrics: metrics,
	}, d.logStore, gateway.LeafSource(d.vaultDB), chain, log)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	research, err := c.research()
	if err != nil {
		return err
	}
	gcfg := c.gateway()
	gcfg.Research = research
	clients := gateway.NewClientRegistry(d.vault, static)
	tokens, err := auth.NewTokenServer(auth.TokenConfig{Key: tokenKey, Issuer: c.Auth.Issuer, Audience: c.Auth.Audience,
		TTL: c.Auth.TokenTTL, Clients: clients, Remote: remote, Log: log})
	if err != nil {
		return err
	}
	srv, err := gateway.New(ctx, gcfg, gateway.Deps{Vault: d.vault, Verifier: verifier, Log: anchorLog, Anchoring: d.anchoring, Logger: log,
		Tokens: tokens, Clients: clients, Metrics: metrics, Tracing: tp})
	if err != nil {
		return err
	}
	info := chain.Info()
	where := "data in " + c.Data
	if d.pgLog != nil {
		where = "vault and log in PostgreSQL"
	}
	fmt.Fprintf(stdout, "fhiranchor serving FHIR R4 at http://%s/fhir/r4 (gRPC %s), %s, anchoring to %s (chain %d, contract %s)\n",
		srv.HTTPAddr(), srv.GRPCAddr(), where, info.Name, info.ChainID, info.Contract)
	// The public half only: verifiers pin it (fhiranchor verify --log-key).
	fmt.Fprintf(stdout, "checkpoints signed by %s (%s); served at GET /v1/log/key\n", anchorLog.VerifierKey(), keySource)
	log.Info("checkpoint signing key", slog.String("verifier_key", anchorLog.VerifierKey()), slog.String("source", keySource))
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Run(ctx) })
	g.Go(func() error {
		run := anchorLog.Run
		if d.pgLog != nil {
			// One gateway of those sharing the database anchors at a time.
			run = func(ctx context.Context) error { return d.pgLog.Lead(ctx, anchorLog.Run) }
		}
		if err := run(ctx); err != nil {
			return fmt.Errorf("anchoring stopped: %w", err)
		}
		return nil
	})
	err = g.Wait()
	log.Info("fhiranchor stopped", slog.Bool("clean", err == nil))
	return err
}

// openChain connects to the configured chain, or runs the in-process
// simulated chain kept in <data>/chain.
func openChain(ctx context.Context, c *config) (*eth.Chain, error) {
	cfg := eth.Config{Name: c.Chain.Name, RPCURL: c.Chain.RPCURL, ChainID: c.Chain.ChainID, Contract: c.Chain.Contract,
		Dir: filepath.Join(c.Data, "chain")}
	if c.Chain.GasFeeCapGwei > 0 {
		cfg.GasFeeCap = new(big.Int).Mul(new(big.Int).SetUint64(c.Chain.GasFeeCapGwei), big.NewInt(1e9))
	}
	if c.Chain.GasTipCapGwei > 0 {
		cfg.GasTipCap = new(big.Int).Mul(new(big.Int).SetUint64(c.Chain.GasTipCapGwei), big.NewInt(1e9))
	}
	var err error
	switch {
	case c.chainKey != "":
		cfg.Key, err = eth.ParseHexKey(c.chainKey)
	case c.Chain.KeyFile != "":
		cfg.Key, err = eth.LoadKey(c.Chain.KeyFile, c.keyPassphrase)
	case c.Chain.RPCURL != "":
		err = errors.New("an RPC chain needs the anchorer's key: chain.key_file or FHIRANCHOR_CHAIN_KEY")
	}
	if err != nil {
		return nil, fmt.Errorf("chain key: %w", err)
	}
	chain, err := eth.New(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open chain: %w", err)
	}
	return chain, nil
}

// checkpointKey returns the note signer key of the log's checkpoints and
// where it came from: FHIRANCHOR_LOG_SIGNING_KEY, else anchor.signing_key_file,
// else a key derived from the master key (so the embedded default signs
// too, and gateways sharing a master key sign alike), named
// anchor.origin or anchor.DefaultOrigin. Errors never quote the key.
func checkpointKey(c *config, v *vault.Sealed) (skey, source string, err error) {
	switch {
	case c.logSigningKey != "":
		skey, source = strings.TrimSpace(c.logSigningKey), "FHIRANCHOR_LOG_SIGNING_KEY"
	case c.Anchor.SigningKeyFile != "":
		b, err := os.ReadFile(c.Anchor.SigningKeyFile)
		if err != nil {
			return "", "", fmt.Errorf("checkpoint signing key: %w", err)
		}
		skey, source = strings.TrimSpace(string(b)), "anchor.signing_key_file"
	default:
		origin := c.Anchor.Origin
		if origin == "" {
			origin = anchor.DefaultOrigin
		}
		if skey, err = gateway.DefaultSigningKey(v, origin); err != nil {
			return "", "", fmt.Errorf("config: anchor.origin: %w", err)
		}
		return skey, "derived from the master key", nil
	}
	if _, err := anchor.CheckpointVerifierKey(skey); err != nil {
		return "", "", fmt.Errorf("%s: %w", source, err)
	}
	return skey, source, nil
}

// tokenKeys returns the keys trusted for bearer tokens: the configured
// ones, or the development key in the data dir (created on first start), so
// that `fhiranchor token` can mint tokens this server accepts.
func tokenKeys(c *config) (*auth.KeySet, error) {
	if len(c.Auth.Keys) > 0 {
		ks, err := auth.LoadKeySet(c.Auth.Keys...)
		if err != nil {
			return nil, fmt.Errorf("load token keys: %w", err)
		}
		return ks, nil
	}
	key, err := auth.LoadOrCreateDevKey(c.Data)
	if err != nil {
		return nil, fmt.Errorf("dev token key: %w", err)
	}
	slog.Warn("no auth.keys configured: trusting the development token key", slog.String("path", auth.DevKeyPath(c.Data)))
	return auth.DevKeySet(key), nil
}

// tokenSigningKey is the key the token endpoint signs access tokens with:
// auth.signing_key_file, or the data dir's dev key (created on first
// start).
func tokenSigningKey(c *config) (*ecdsa.PrivateKey, error) {
	if c.Auth.SigningKeyFile != "" {
		key, err := auth.LoadSigningKey(c.Auth.SigningKeyFile)
		if err != nil {
			return nil, fmt.Errorf("config: auth.signing_key_file: %w", err)
		}
		return key, nil
	}
	key, err := auth.LoadOrCreateDevKey(c.Data)
	if err != nil {
		return nil, fmt.Errorf("token signing key: %w", err)
	}
	return key, nil
}

// dataDir is the state `serve` and `audit` open: the sealed vault and the
// log's store, in SQLite files of the data dir or in PostgreSQL.
type dataDir struct {
	vault    *vault.Sealed
	vaultDB  vault.Store
	logStore anchor.Store
	// pgLog is the log's store when it lives in PostgreSQL: several
	// gateways may share it, so the anchoring worker runs under its
	// leadership and the chain contract is recorded there. Nil on SQLite.
	pgLog *anchorpg.Store
}

// openData opens (creating on first start) the master key, the vault and
// the log store of a data dir, or of the configured database.
func openData(ctx context.Context, c *config) (*dataDir, error) {
	if err := os.MkdirAll(c.Data, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	var master []byte
	var err error
	if c.masterKey != "" {
		master, err = vault.ParseMasterKey(c.masterKey)
	} else {
		master, err = vault.LoadOrCreateMasterKey(c.Vault.MasterKeyFile)
	}
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	kr, err := vault.NewKeyring(master)
	if err != nil {
		return nil, err
	}
	d := &dataDir{}
	if c.databaseURL != "" {
		if d.vaultDB, err = vaultpg.New(ctx, vaultpg.Config{DSN: c.databaseURL, MaxConns: c.Database.MaxConns}); err != nil {
			return nil, fmt.Errorf("open vault: %w", err)
		}
		if d.pgLog, err = anchorpg.New(ctx, anchorpg.Config{DSN: c.databaseURL, MaxConns: c.Database.MaxConns}); err != nil {
			d.vaultDB.Close()
			return nil, fmt.Errorf("open log: %w", err)
		}
		d.logStore = d.pgLog
	} else {
		if d.vaultDB, err = sqlite.New(ctx, sqlite.Config{Path: c.Vault.SQLite.Path}); err != nil {
			return nil, fmt.Errorf("open vault: %w", err)
		}
		if d.logStore, err = anchorsql.New(ctx, anchorsql.Config{Path: c.Anchor.LogPath}); err != nil {
			d.vaultDB.Close()
			return nil, fmt.Errorf("open log: %w", err)
		}
	}
	d.vault = vault.NewSealed(d.vaultDB, kr)
	// Refuse a master key the vault was not written with (a gateway whose
	// key file was lost or not copied), before it wraps anything.
	if err := d.vault.CheckMasterKey(ctx); err != nil {
		d.Close()
		return nil, fmt.Errorf("master key: %w", err)
	}
	return d, nil
}

// anchoring reports whether this process runs the log's worker now.
func (d *dataDir) anchoring() bool { return d.pgLog == nil || d.pgLog.Leading() }

// Close closes the stores.
func (d *dataDir) Close() error {
	return errors.Join(d.logStore.Close(), d.vaultDB.Close())
}

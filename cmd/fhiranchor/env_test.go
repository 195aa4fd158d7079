package main

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestEnvOverrides: FHIRANCHOR_<KEY> sets a config key over the file, and
// flags win over both; a malformed value names its variable.
func TestEnvOverrides(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(cfg, []byte("http: 10.0.0.1:1\ndata: /from/file\nanchor:\n  max_delay: 5s\n  max_leaves: 10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"FHIRANCHOR_HTTP":                             "127.0.0.1:9999",
		"FHIRANCHOR_DATA":                             "/from/env",
		"FHIRANCHOR_ANCHOR_MAX_DELAY":                 "250ms",
		"FHIRANCHOR_AUTH_KEYS":                        "a.pem, b.pem",
		"FHIRANCHOR_RESEARCH_NOISE_SCALE":             "1.5",
		"FHIRANCHOR_CHAIN_CHAIN_ID":                   "1337",
		"FHIRANCHOR_DATABASE_MAX_CONNS":               "9",
		"FHIRANCHOR_METRICS_HIDE":                     "true",
		"FHIRANCHOR_LIMITS_MAX_CONCURRENT_PER_CLIENT": "7",
		"FHIRANCHOR_LOG_FORMAT":                       "json",
	}
	getenv := func(k string) string { return env[k] }
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	load := configFlags(fs)
	if err := fs.Parse([]string{"--config", cfg, "--data", "/from/flag"}); err != nil {
		t.Fatal(err)
	}
	c, err := load(getenv)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case c.HTTP != "127.0.0.1:9999":
		t.Errorf("http = %q", c.HTTP)
	case c.Data != "/from/flag":
		t.Errorf("data = %q, want the flag's", c.Data)
	case c.Anchor.MaxDelay != 250*time.Millisecond || c.Anchor.MaxLeaves != 10:
		t.Errorf("anchor = %v, %d", c.Anchor.MaxDelay, c.Anchor.MaxLeaves)
	case !slices.Equal(c.Auth.Keys, []string{"a.pem", "b.pem"}):
		t.Errorf("auth.keys = %q", c.Auth.Keys)
	case c.Research.NoiseScale != 1.5 || c.Chain.ChainID != 1337 || c.Database.MaxConns != 9:
		t.Errorf("research.noise_scale %v, chain.chain_id %d, database.max_conns %d", c.Research.NoiseScale, c.Chain.ChainID, c.Database.MaxConns)
	case !c.Metrics.Hide || c.Limits.MaxConcurrentPerClient != 7 || c.Log.Format != "json":
		t.Errorf("metrics.hide %v, limits %d, log.format %q", c.Metrics.Hide, c.Limits.MaxConcurrentPerClient, c.Log.Format)
	}

	for name, bad := range map[string]string{
		"FHIRANCHOR_ANCHOR_MAX_DELAY": "soon",
		"FHIRANCHOR_CHAIN_CHAIN_ID":   "-1",
		"FHIRANCHOR_METRICS_HIDE":     "maybe",
		"FHIRANCHOR_MAX_BODY_BYTES":   "lots",
	} {
		_, err := loadConfig("", func(k string) string {
			if k == name {
				return bad
			}
			return ""
		})
		if err == nil || !strings.Contains(err.Error(), name) || strings.Contains(err.Error(), bad) {
			t.Errorf("%s=%s: %v", name, bad, err)
		}
	}
}

// TestEnvNames: every config key has one variable, none is a secret's, and
// the rule is the documented one.
func TestEnvNames(t *testing.T) {
	var c config
	keys := envKeys(&c)
	if len(keys) < 40 {
		t.Fatalf("only %d keys", len(keys))
	}
	secrets := []string{"FHIRANCHOR_MASTER_KEY", "FHIRANCHOR_CHAIN_KEY", "FHIRANCHOR_CHAIN_KEY_PASSPHRASE", "FHIRANCHOR_LOG_SIGNING_KEY", "FHIRANCHOR_TOKEN"}
	seen := map[string]string{}
	for key := range keys {
		name := envName(key)
		if other, dup := seen[name]; dup {
			t.Errorf("%s and %s share %s", key, other, name)
		}
		seen[name] = key
		if slices.Contains(secrets, name) {
			t.Errorf("key %s is read from secret variable %s", key, name)
		}
	}
	for key, want := range map[string]string{
		"http": "FHIRANCHOR_HTTP", "anchor.max_delay": "FHIRANCHOR_ANCHOR_MAX_DELAY",
		"vault.sqlite.path": "FHIRANCHOR_VAULT_SQLITE_PATH", "limits.rate_per_client": "FHIRANCHOR_LIMITS_RATE_PER_CLIENT",
	} {
		if _, ok := keys[key]; !ok {
			t.Errorf("no key %s", key)
		}
		if got := envName(key); got != want {
			t.Errorf("envName(%s) = %s, want %s", key, got, want)
		}
	}
	if _, ok := keys["database.url"]; ok {
		t.Error("database.url has a generic variable besides FHIRANCHOR_DATABASE_URL")
	}
}

package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/internal/shareddata"
)

// TestServeAndPush is the README's path end to end: `fhiranchor serve` on
// its defaults (a fresh data dir, dev key created on first start) and
// `fhiranchor push ../shared/testdata/synthea` with no token given. Every
// one of the 10,877 entries must be accepted; a second push is answered
// from the idempotency keys and accepts the same.
func TestServeAndPush(t *testing.T) {
	synthea := filepath.Join(shareddata.Dir(t), "synthea")
	dir := t.TempDir()
	ctx := context.Background()
	base, _ := startServe(t, dir, noEnv)
	for round := 1; round <= 2; round++ {
		var out strings.Builder
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Minute)
		err := run(pctx, []string{"push", "--server", base, "--data", dir, "--no-progress", synthea}, &out, io.Discard, noEnv)
		pcancel()
		if err != nil {
			t.Fatalf("push round %d: %v\n%s", round, err, out.String())
		}
		summary := out.String()
		for _, want := range []string{"files sent:          60", "resources accepted:  10,877", "resources rejected:  0"} {
			if !strings.Contains(summary, want) {
				t.Errorf("push round %d summary lacks %q:\n%s", round, want, summary)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "vault.db")); err != nil {
		t.Errorf("no vault in the data dir: %v", err)
	}
}

func noEnv(string) string { return "" }

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "data: /srv/fa\nhttp: 0.0.0.0:8080\nauth:\n  keys: [/etc/fa/jwks.json]\n  audience: fhiranchor\nvault:\n  sqlite:\n    path: /srv/fa/v.db\nlog:\n  format: json\n")
	c, err := loadConfig(good, func(k string) string {
		if k == "FHIRANCHOR_MASTER_KEY" {
			return "secret-from-env"
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	c.applyDefaults()
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	if c.Data != "/srv/fa" || c.HTTP != "0.0.0.0:8080" || c.GRPC != "127.0.0.1:9090" || c.Auth.Keys[0] != "/etc/fa/jwks.json" ||
		c.Vault.SQLite.Path != "/srv/fa/v.db" || c.Vault.MasterKeyFile != "/srv/fa/master.key" || c.masterKey != "secret-from-env" {
		t.Errorf("config %+v", c)
	}
	if _, err := loadConfig(write("typo.yaml", "data: x\nhtpp: 1.2.3.4:80\n"), noEnv); err == nil {
		t.Error("a misspelt key was accepted")
	}
	bad, err := loadConfig(write("level.yaml", "log:\n  level: chatty\n"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if bad.validate() == nil {
		t.Error("log.level chatty was accepted")
	}
}

// startServe runs `fhiranchor serve` on dir with extra args until the test
// ends or stop is called, and returns its FHIR base URL.
func startServe(t *testing.T, dir string, getenv func(string) string, args ...string) (base string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"serve", "--data", dir, "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"}, args...), pw, io.Discard, getenv)
		pw.Close()
	}()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}
	t.Cleanup(stop)
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("serve printed no address: %v", err)
	}
	go io.Copy(io.Discard, pr)
	base = regexp.MustCompile(`http://\S+/fhir/r4`).FindString(line)
	if base == "" {
		t.Fatalf("no base URL in %q", line)
	}
	return base, stop
}

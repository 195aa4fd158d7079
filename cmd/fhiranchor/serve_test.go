package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/mod/sumdb/note"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/cohort"
	"github.com/fhiranchor/fhiranchor/internal/shareddata"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
	"github.com/fhiranchor/fhiranchor/vault"
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

// TestResearchConfig: research.profile names an embedded profile or a
// file; a bad one fails at start, as do unsafe privacy settings.
func TestResearchConfig(t *testing.T) {
	dir := t.TempDir()
	profile := filepath.Join(dir, "profile.yaml")
	if err := os.WriteFile(profile, []byte("name: names-only\nrules:\n  - id: names\n    type: HumanName\n    method: redact\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		yaml, profile string // profile: the name the config must load; "" for an error
	}{
		{"research:\n  threshold: 5\n", "safe-harbor"},
		{"research:\n  profile: safe-harbor-strict\n", "safe-harbor-strict"},
		{"research:\n  profile: " + profile + "\n", "names-only"},
		{"research:\n  profile: no-such-profile\n", ""},
		{"research:\n  profile: " + filepath.Join(dir, "missing.yaml") + "\n", ""},
	} {
		path := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := loadConfig(path, noEnv)
		if err != nil {
			t.Fatal(err)
		}
		c.applyDefaults()
		rc, err := c.research()
		switch {
		case tt.profile == "" && err == nil:
			t.Errorf("%q: accepted", tt.yaml)
		case tt.profile != "" && err != nil:
			t.Errorf("%q: %v", tt.yaml, err)
		case tt.profile != "" && rc.Profile != nil && rc.Profile.Name != tt.profile:
			t.Errorf("%q: profile %q, want %q", tt.yaml, rc.Profile.Name, tt.profile)
		case tt.profile != "" && rc.Profile == nil && tt.profile != "safe-harbor":
			t.Errorf("%q: no profile, want %q", tt.yaml, tt.profile)
		}
		if err == nil && rc.ExportDir != filepath.Join(c.Data, "exports") {
			t.Errorf("%q: export dir %q", tt.yaml, rc.ExportDir)
		}
	}
}

// TestResearchPrivacyConfig: the research privacy keys reach
// cohort.Privacy; an unknown overlap scope or a scale with noise "none"
// fails validation (gateway.New refuses it at start).
func TestResearchPrivacyConfig(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	for _, tt := range []struct {
		yaml string
		want cohort.Privacy
		ok   bool
	}{
		{"research:\n  threshold: 11\n", cohort.Privacy{Threshold: 11}, true},
		{"research:\n  noise: none\n  round_to: 1\n  overlap_scope: all\n  overlap_history: 64\n",
			cohort.Privacy{Noise: cohort.NoiseNone, RoundTo: 1, OverlapScope: cohort.OverlapAll, OverlapHistory: 64}, true},
		{"research:\n  overlap_scope: everyone\n", cohort.Privacy{OverlapScope: "everyone"}, false},
		{"research:\n  noise: none\n  noise_scale: 2\n", cohort.Privacy{Noise: cohort.NoiseNone, Scale: 2}, false},
	} {
		path := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := loadConfig(path, noEnv)
		if err != nil {
			t.Fatal(err)
		}
		c.applyDefaults()
		rc, err := c.research()
		if err != nil {
			t.Fatalf("%q: %v", tt.yaml, err)
		}
		if diff := cmp.Diff(tt.want, rc.Privacy); diff != "" {
			t.Errorf("%q: privacy (-want +got):\n%s", tt.yaml, diff)
		}
		rc.Privacy.Key = key // the gateway derives it from the master key
		if err := rc.Privacy.Validate(); (err == nil) != tt.ok {
			t.Errorf("%q: Validate = %v, want ok %v", tt.yaml, err, tt.ok)
		}
	}
}

// TestServeWrongMasterKey: a gateway started with another master key than
// the one its vault was written with refuses to start, before it serves or
// writes anything.
func TestServeWrongMasterKey(t *testing.T) {
	dir := t.TempDir()
	keyA, keyB := strings.Repeat("a", 64), strings.Repeat("b", 64)
	env := func(key string) func(string) string {
		return func(k string) string {
			if k == "FHIRANCHOR_MASTER_KEY" {
				return key
			}
			return ""
		}
	}
	_, stop := startServe(t, dir, env(keyA))
	stop()
	err := run(t.Context(), []string{"serve", "--data", dir, "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"}, io.Discard, io.Discard, env(keyB))
	if err == nil || !strings.Contains(err.Error(), "master key does not open") {
		t.Fatalf("serve with another master key = %v, want a refusal", err)
	}
	_, stop = startServe(t, dir, env(keyA)) // the right key still works
	stop()
}

// TestCheckpointKey: FHIRANCHOR_LOG_SIGNING_KEY wins over
// anchor.signing_key_file; with neither, the key is derived from the master
// key: the same for the same master key, another for another, named
// anchor.origin. A bad key fails without quoting it.
func TestCheckpointKey(t *testing.T) {
	dir := t.TempDir()
	sealed := func(b byte) *vault.Sealed {
		kr, err := vault.NewKeyring(bytes.Repeat([]byte{b}, vault.MasterKeySize))
		if err != nil {
			t.Fatal(err)
		}
		return vault.NewSealed(nil, kr)
	}
	envKey, _, err := note.GenerateKey(rand.Reader, "env.example/log")
	if err != nil {
		t.Fatal(err)
	}
	fileKey, fileVKey, err := note.GenerateKey(rand.Reader, "file.example/log")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "log.key")
	os.WriteFile(keyFile, []byte(fileKey+"\n"), 0o600)
	badFile := filepath.Join(dir, "bad.key")
	os.WriteFile(badFile, []byte("PRIVATE+KEY+x+00000000+c2VjcmV0LXNlY3JldA==\n"), 0o600)

	c := &config{logSigningKey: envKey}
	c.Anchor.SigningKeyFile = keyFile
	if got, src, err := checkpointKey(c, sealed(1)); err != nil || got != envKey || src != "FHIRANCHOR_LOG_SIGNING_KEY" {
		t.Errorf("env and file: %q, %q, %v; want the env key", got, src, err)
	}
	c.logSigningKey = ""
	if got, src, err := checkpointKey(c, sealed(1)); err != nil || got != fileKey || src != "anchor.signing_key_file" {
		t.Errorf("file: %q, %q, %v; want the file's key", got, src, err)
	} else if v, _ := anchor.CheckpointVerifierKey(got); v != fileVKey {
		t.Errorf("file key's verifier = %q, want %q", v, fileVKey)
	}
	c.Anchor.SigningKeyFile = badFile
	if _, _, err := checkpointKey(c, sealed(1)); err == nil || strings.Contains(err.Error(), "c2VjcmV0") {
		t.Errorf("bad key file: %v; want an error that does not quote the key", err)
	}
	c.Anchor.SigningKeyFile = filepath.Join(dir, "missing.key")
	if _, _, err := checkpointKey(c, sealed(1)); err == nil {
		t.Error("missing key file: nil error")
	}

	c = &config{}
	a, _, err := checkpointKey(c, sealed(1))
	if err != nil {
		t.Fatal(err)
	}
	again, _, _ := checkpointKey(c, sealed(1))
	other, _, _ := checkpointKey(c, sealed(2))
	if a != again || a == other || !strings.HasPrefix(a, "PRIVATE+KEY+"+anchor.DefaultOrigin+"+") {
		t.Errorf("derived keys: same master %v, other master differs %v, named %s", a == again, a != other, anchor.DefaultOrigin)
	}
	c.Anchor.Origin = "fhir.example.org/log"
	if named, _, err := checkpointKey(c, sealed(1)); err != nil || !strings.HasPrefix(named, "PRIVATE+KEY+fhir.example.org/log+") {
		t.Errorf("derived key with anchor.origin: %v", err)
	}
	c.Anchor.Origin = "two words"
	if _, _, err := checkpointKey(c, sealed(1)); err == nil {
		t.Error("anchor.origin with a space: nil error")
	}
}

// TestServeOperatorDetails: serve logs why a token was refused (never the
// token) and its shutdown; /openapi.json is public; /metrics is too, unless
// FHIRANCHOR_METRICS_HIDE hides it.
func TestServeOperatorDetails(t *testing.T) {
	for _, hide := range []bool{false, true} {
		dir := t.TempDir()
		env := func(k string) string {
			if k == "FHIRANCHOR_METRICS_HIDE" && hide {
				return "true"
			}
			return ""
		}
		logs := &testonly.SyncBuffer{}
		ctx, cancel := context.WithCancel(context.Background())
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() {
			done <- run(ctx, []string{"serve", "--data", dir, "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"}, pw, logs, env)
			pw.Close()
		}()
		line, err := bufio.NewReader(pr).ReadString('\n')
		if err != nil {
			cancel()
			t.Fatalf("serve printed no address: %v", err)
		}
		go io.Copy(io.Discard, pr)
		base := regexp.MustCompile(`http://\S+/fhir/r4`).FindString(line)
		root := strings.TrimSuffix(base, "/fhir/r4")
		get := func(url string, header ...string) *http.Response {
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			for i := 0; i+1 < len(header); i += 2 {
				req.Header.Set(header[i], header[i+1])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp
		}
		const badToken = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.c2lnbmF0dXJl"
		if r := get(base+"/Patient/p1", "Authorization", "Bearer "+badToken); r.StatusCode != http.StatusUnauthorized {
			t.Errorf("bad token: %d", r.StatusCode)
		}
		if r := get(root + "/openapi.json"); r.StatusCode != http.StatusOK {
			t.Errorf("/openapi.json: %d", r.StatusCode)
		}
		want := http.StatusOK
		if hide {
			want = http.StatusNotFound
		}
		if r := get(root + "/metrics"); r.StatusCode != want {
			t.Errorf("hide %v: /metrics %d, want %d", hide, r.StatusCode, want)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("serve: %v", err)
		}
		out := string(logs.Bytes())
		for _, want := range []string{`msg="token refused"`, "reason=", `msg="shutting down: draining requests"`, `msg="stopped serving"`, `msg="fhiranchor stopped"`} {
			if !strings.Contains(out, want) {
				t.Errorf("the log lacks %s:\n%s", want, out)
			}
		}
		if strings.Contains(out, badToken) || strings.Contains(out, "mallory") {
			t.Error("the log quotes the refused token")
		}
	}
}

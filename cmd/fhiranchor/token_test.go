package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/gateway/auth"
)

func TestTokenMintsVerifiableToken(t *testing.T) {
	dir := t.TempDir() + "/data"
	var stdout, stderr bytes.Buffer
	// A data dir that does not exist is a mistake: no new key for it.
	err := runToken(t.Context(), []string{"--data", dir}, &stdout, &stderr, func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), "no data directory") {
		t.Fatalf("token without a data dir: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("token created the data dir: %v", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil { // as serve makes it
		t.Fatal(err)
	}
	args := []string{"--data", dir, "--scope", "system/Patient.read  system/Observation.rs", "--client", "ehr-1", "--ttl", "10m", "--aud", "https://gw.example/fhir/r4", "--iss", "dev"}
	if err := runToken(t.Context(), args, &stdout, &stderr, func(string) string { return "" }); err != nil {
		t.Fatalf("token: %v\n%s", err, stderr.String())
	}
	out := stdout.String()
	if !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 {
		t.Errorf("stdout = %q, want the token on one line", out)
	}
	if _, err := os.Stat(auth.DevKeyPath(dir)); err != nil {
		t.Fatalf("dev key not created: %v", err)
	}
	key, err := auth.LoadOrCreateDevKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	v := auth.NewVerifier(auth.DevKeySet(key), auth.Config{Issuer: "dev", Audience: "https://gw.example/fhir/r4"})
	p, err := v.Verify(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("token does not verify against the dev key: %v", err)
	}
	if p.ClientID != "ehr-1" {
		t.Errorf("ClientID = %q, want ehr-1", p.ClientID)
	}
	if got, want := p.Scopes.String(), "system/Patient.read system/Observation.rs"; got != want {
		t.Errorf("scopes = %q, want %q", got, want)
	}
	if left := time.Until(p.Expiry); left <= 5*time.Minute || left > 11*time.Minute {
		t.Errorf("token expires in %v, want about 10m", left)
	}
}

func TestTokenDefaultsAndErrors(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	if err := runToken(t.Context(), []string{"--data", dir}, &stdout, &stderr, func(string) string { return "" }); err != nil {
		t.Fatalf("token: %v", err)
	}
	key, err := auth.LoadOrCreateDevKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := auth.NewVerifier(auth.DevKeySet(key), auth.Config{}).Verify(strings.TrimSpace(stdout.String()))
	if err != nil {
		t.Fatal(err)
	}
	if p.ClientID != "dev-client" || !p.Scopes.Allows("Patient", auth.Read) || !p.Scopes.Allows("Patient", auth.Create) {
		t.Errorf("default token: client %q scopes %q, want dev-client with system/*.read system/*.write", p.ClientID, p.Scopes)
	}

	for _, args := range [][]string{
		{"--data", dir, "--ttl", "0s"},
		{"--data", dir, "--scope", " "},
		{"--data", dir, "--client", ""},
		{"--data", dir, "extra"},
		{"--data", dir, "--purpose", "care by Dr Quill"},
		{"--data", dir, "--purpose", "treat"},
		{"--data", dir, "--fhir-user", "Practitioner/Dr Quill"},
		{"--data", dir, "--organization", "Acme Steel"},
		{"--data", dir, "--fhir-user", "Patient?name=Quill"},
		{"--bogus"},
	} {
		if err := runToken(t.Context(), args, &stdout, &stderr, func(string) string { return "" }); err == nil {
			t.Errorf("runToken(%q) succeeded, want an error", args)
		}
	}
}

func TestTokenConsoleLink(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	args := []string{"--data", dir, "--scope", "fhiranchor/policy.admin", "--console", "http://127.0.0.1:8080"}
	if err := runToken(t.Context(), args, &stdout, &stderr, func(string) string { return "" }); err != nil {
		t.Fatalf("token --console: %v\n%s", err, stderr.String())
	}
	link, tok, ok := strings.Cut(strings.TrimSpace(stdout.String()), "#token=")
	if !ok || link != "http://127.0.0.1:8080/console/" {
		t.Fatalf("stdout = %q, want http://127.0.0.1:8080/console/#token=<token>", stdout.String())
	}
	key, err := auth.LoadOrCreateDevKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := auth.NewVerifier(auth.DevKeySet(key), auth.Config{}).Verify(tok)
	if err != nil || !p.Scopes.Has("fhiranchor/policy.admin") {
		t.Fatalf("the link's token: %v %v", p.Scopes, err)
	}
	for _, bad := range []string{"127.0.0.1:8080", "ftp://x", "http://x/?a=b", "http://x/#f"} {
		err := runToken(t.Context(), []string{"--data", dir, "--console", bad}, &stdout, &stderr, func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), "--console") {
			t.Errorf("--console %q: %v", bad, err)
		}
	}
}

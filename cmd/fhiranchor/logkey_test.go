package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhiranchor/fhiranchor/anchor"
)

// TestLogKey: log-key writes a signer key 0600 that serve loads, prints
// only its verifier key, and never overwrites a file.
func TestLogKey(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "log.key")
	var out strings.Builder
	if err := run(ctx, []string{"log-key", "--origin", "fhir.example.org/log", "--out", path}, &out, io.Discard, noEnv); err != nil {
		t.Fatal(err)
	}
	vkey := strings.TrimSpace(out.String())
	if !strings.HasPrefix(vkey, "fhir.example.org/log+") || strings.Contains(out.String(), "PRIVATE") {
		t.Errorf("log-key printed %q; want the verifier key only", out.String())
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v; want mode 0600", fi, err)
	}
	c := &config{}
	c.Anchor.SigningKeyFile = path
	skey, _, err := checkpointKey(c, nil)
	if err != nil {
		t.Fatalf("serve cannot load the key: %v", err)
	}
	if got, err := anchor.CheckpointVerifierKey(skey); err != nil || got != vkey {
		t.Errorf("the file's key verifies as %q, %v; log-key printed %q", got, err, vkey)
	}
	before, _ := os.ReadFile(path)
	if err := run(ctx, []string{"log-key", "--out", path}, io.Discard, io.Discard, noEnv); err == nil {
		t.Error("log-key overwrote an existing file")
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Error("the existing key file changed")
	}
	if err := run(ctx, []string{"log-key"}, io.Discard, io.Discard, noEnv); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("log-key without --out = %v, want usage", err)
	}
	if err := run(ctx, []string{"log-key", "--origin", "a b", "--out", filepath.Join(t.TempDir(), "k")}, io.Discard, io.Discard, noEnv); err == nil {
		t.Error("log-key with an origin holding a space = nil error")
	}
}

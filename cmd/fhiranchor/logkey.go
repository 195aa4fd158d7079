package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"os"

	"golang.org/x/mod/sumdb/note"

	"github.com/fhiranchor/fhiranchor/anchor"
)

const logKeyUsage = `usage: fhiranchor log-key --out FILE [--origin ORIGIN]

Makes a new Ed25519 key for signing the log's checkpoints: writes the signer
key (secret) to FILE, created with mode 0600 and never overwritten, for
anchor.signing_key_file or FHIRANCHOR_LOG_SIGNING_KEY, and prints the
verifier key (public) to publish and to pass to 'fhiranchor verify --log-key'.

example:
  fhiranchor log-key --out /etc/fhiranchor/log-signing.key --origin fhir.example.org/log

flags:
`

// runLogKey implements 'fhiranchor log-key'. The private key goes to a file
// only, never to the terminal.
func runLogKey(_ context.Context, args []string, stdout, stderr io.Writer, _ func(string) string) error {
	fs := flag.NewFlagSet("log-key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, logKeyUsage)
		fs.PrintDefaults()
	}
	origin := fs.String("origin", anchor.DefaultOrigin, "the log's `origin`, the key's name (anchor.origin), e.g. fhir.example.org/log")
	out := fs.String("out", "", "`file` to write the signer key to")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() > 0 {
		fs.Usage()
		return flag.ErrHelp
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, *origin)
	if err != nil {
		return fmt.Errorf("generate log key: %w", err)
	}
	if _, err := note.NewSigner(skey); err != nil {
		return fmt.Errorf("origin %q cannot name a key (no spaces or '+'): %w", *origin, err)
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write log key: %w", err)
	}
	if _, err := fmt.Fprintln(f, skey); err != nil {
		f.Close()
		return fmt.Errorf("write log key: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write log key: %w", err)
	}
	fmt.Fprintln(stdout, vkey)
	return nil
}

package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"github.com/fhiranchor/fhiranchor/gateway"
)

// runReindex rebuilds the blind index from the vault's content (see
// gateway.Reindex): every current live version's tokens are derived again
// and written where the index holds others, and the entries of resources
// that are not live are dropped. Run it after an upgrade that changes what a
// version is found by (search keys), or after an audit reported the index.
// It needs the master key and may run while the gateway serves.
const reindexUsage = `usage: fhiranchor reindex [--config FILE] [--data DIR] [--json]

Rebuilds the blind index (search and conditional-interaction tokens) from
the vault's content; safe while the gateway serves.

example:
  fhiranchor reindex --config deploy/config/production.yaml

flags:
`

func runReindex(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("reindex", flag.ContinueOnError)
	fs.SetOutput(stderr)
	usageWith(fs, stderr, reindexUsage)
	load := configFlags(fs)
	asJSON := fs.Bool("json", false, "print the counts as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := load(getenv)
	if err != nil {
		return err
	}
	d, err := openData(ctx, c)
	if err != nil {
		return err
	}
	defer d.Close()
	st, err := gateway.Reindex(ctx, d.vault, c.logger(stderr))
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(st)
	}
	fmt.Fprintf(stdout, "versions examined:   %d\n", st.Examined)
	fmt.Fprintf(stdout, "resources rewritten: %d\n", st.Rewritten)
	fmt.Fprintf(stdout, "entries dropped:     %d (token sets and postings of no live version)\n", st.Dropped)
	fmt.Fprintf(stdout, "unreadable:          %d (run audit)\n", st.Unreadable)
	return nil
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/fhiranchor/fhiranchor/gateway"
)

// runAudit re-derives every stored version's commitment from the vault and
// checks it, and the vault's leaves, against the log's checkpoints. It needs
// the master key (the vault owner's), and reports by leaf index and opaque
// reference only.
func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := configFlags(fs)
	asJSON := fs.Bool("json", false, "print the report as JSON")
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

	roots := map[uint64][]byte{}
	for after := uint64(0); ; {
		cps, err := d.logStore.Checkpoints(ctx, after, 1000)
		if err != nil {
			return fmt.Errorf("read checkpoints: %w", err)
		}
		for _, cp := range cps {
			roots[cp.Size] = cp.Root
		}
		if len(cps) < 1000 {
			break
		}
		after = cps[len(cps)-1].Size
	}
	rep, err := gateway.Audit(ctx, d.vault, roots)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "versions checked:     %d (%d erased)\n", rep.Versions, rep.Erased)
		fmt.Fprintf(stdout, "records checked:      %d (consent events, policy activations, decisions, erasures)\n", rep.Records)
		fmt.Fprintf(stdout, "leaves hashed:        %d\n", rep.Leaves)
		fmt.Fprintf(stdout, "checkpoints compared: %d\n", rep.Checkpoints)
		for _, f := range rep.Findings {
			fmt.Fprintf(stdout, "TAMPERED leaf %d (%s): %s\n", f.LeafIndex, f.Ref, f.Problem)
		}
		if len(rep.Findings) == 0 {
			fmt.Fprintln(stdout, "OK: every version matches its commitment, leaf and checkpoint")
		}
	}
	if len(rep.Findings) > 0 {
		return errors.New("audit found " + fmt.Sprint(len(rep.Findings)) + " problems")
	}
	return nil
}

package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/anchor/eth"
	"github.com/fhiranchor/fhiranchor/fhir"
)

// runVerify checks a receipt the way an auditor or a patient would, without
// trusting the gateway: the inclusion proof offline; with --log-key that the
// log's key signed the receipt's checkpoint, its tree size and root, so the
// proof needs no trust in whoever handed the receipt out; with --evidence (or
// --resource and --salt) that the content hashes to the receipt's
// commitment (a FHIR version's canonical JSON, or a decision or other
// record's exact bytes); with --rpc that the receipt's root is what the
// contract holds at its sequence number, with enough confirmations. It
// prints one line per check and a clear VERIFIED or FAILED; any failure is
// a non-zero exit.
const verifyUsage = `usage: fhiranchor verify RECEIPT [--log-key KEY|FILE]... [--evidence FILE | --resource FILE --salt HEX] [--rpc URL] [--confirmations N]

Checks a receipt: its inclusion proof offline, its signed checkpoint, the
content it commits to, and its anchor on chain.

example:
  curl -sH "Authorization: Bearer $FHIRANCHOR_TOKEN" http://127.0.0.1:8080/v1/receipts/Patient/p1/_history/1 > receipt.json
  fhiranchor verify receipt.json --log-key log-key.txt --rpc http://127.0.0.1:8545

flags:
`

func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer, _ func(string) string) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	usageWith(fs, stderr, verifyUsage)
	evidencePath := fs.String("evidence", "", "evidence file: from GET /v1/evidence/... ({\"resource\", \"salt\"}), or one entry of GET /v1/decisions ({\"record\", \"salt\"}, e.g. GET /v1/decisions/N)")
	resourcePath := fs.String("resource", "", "the resource version as JSON (any layout), with --salt")
	saltHex := fs.String("salt", "", "the version's salt, hex (with --resource)")
	rpc := fs.String("rpc", "", "EVM JSON-RPC endpoint to check the anchor on chain")
	confirmations := fs.Uint64("confirmations", 1, "blocks the anchor must be buried under (with --rpc)")
	timeout := fs.Duration("timeout", 30*time.Second, "time limit for the chain check")
	var logKeys []string
	fs.Func("log-key", "the log's checkpoint verifier key (from GET /v1/log/key, or published out of band), or a file of such keys, one a line; repeat for several (after a key rotation)",
		func(s string) error { logKeys = append(logKeys, s); return nil })
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		fmt.Fprintln(stderr, "usage: fhiranchor verify RECEIPT [--log-key KEY|FILE]... [--evidence FILE | --resource FILE --salt HEX] [--rpc URL] [--confirmations N]")
		return flag.ErrHelp
	}
	fail := func(format string, a ...any) error {
		msg := fmt.Sprintf(format, a...)
		fmt.Fprintln(stdout, "FAILED:", msg)
		return errors.New("verification failed: " + msg)
	}

	data, err := os.ReadFile(rest[0])
	if err != nil {
		return fail("read receipt: %v", err)
	}
	var r anchor.Receipt
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return fail("the receipt is not a fhiranchor receipt: %v", err)
	}
	verifiers, err := parseLogKeys(logKeys)
	if err != nil {
		return fail("--log-key: %v", err)
	}
	if len(verifiers) > 0 {
		// The signature first: a changed root or tree size is then reported
		// as not the signed one, rather than as a proof that fails.
		if err := anchor.VerifyReceiptSigned(r, verifiers...); err != nil {
			if errors.Is(err, anchor.ErrUnsignedReceipt) || errors.Is(err, anchor.ErrMalformedCheckpoint) ||
				errors.Is(err, anchor.ErrCheckpointSignature) || errors.Is(err, anchor.ErrCheckpointMismatch) {
				return fail("signed: %v", err)
			}
			return fail("proof: %v", err)
		}
	} else if err := anchor.VerifyReceipt(r); err != nil {
		return fail("proof: %v", err)
	}
	fmt.Fprintf(stdout, "proof:   ok, %s leaf %d is in the tree of %d leaves with root %s\n", r.LeafType, r.LeafIndex, r.TreeSize, r.Root)
	if len(verifiers) > 0 {
		origin := strings.SplitN(r.Checkpoint, "\n", 2)[0] // VerifyReceiptSigned checked it is the key's name
		fmt.Fprintf(stdout, "signed:  ok, the log key of %s signed this tree size and root\n", origin)
	} else {
		fmt.Fprintln(stdout, "signed:  not checked (no --log-key); the root is as the server sent it")
	}

	canonical, salt, what, err := content(*evidencePath, *resourcePath, *saltHex)
	switch {
	case err != nil:
		return fail("content: %v", err)
	case canonical != nil:
		if err := anchor.VerifyContent(r, salt, canonical); err != nil {
			return fail("content: %v", err)
		}
		fmt.Fprintf(stdout, "content: ok, the %s and salt hash to the receipt's commitment\n", what)
	case r.Erased:
		fmt.Fprintln(stdout, "content: erased; the leaf stays anchored but what it committed to was crypto-shredded")
	default:
		fmt.Fprintln(stdout, "content: not checked (no --evidence or --resource given)")
	}

	if *rpc != "" {
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		if err := onChain(ctx, r, *rpc, *confirmations, stdout); err != nil {
			return fail("chain: %v", err)
		}
	} else {
		fmt.Fprintf(stdout, "chain:   not checked (no --rpc); the receipt names anchor %d in contract %s on chain %d\n",
			r.Anchor.Seq, r.Anchor.Contract, r.Anchor.ChainID)
	}
	verdict := "VERIFIED"
	if r.Erased {
		verdict = "VERIFIED: anchored, content erased"
	}
	fmt.Fprintln(stdout, verdict)
	return nil
}

// parseLogKeys turns --log-key values into verifiers: each is a note
// verifier key ("<name>+<hash>+<base64>"), or a file holding such keys, one
// a line (blank lines and lines starting with # are skipped). A key given
// twice counts once.
func parseLogKeys(values []string) ([]note.Verifier, error) {
	var out []note.Verifier
	seen := map[string]bool{}
	add := func(key, where string) error {
		if seen[key] {
			return nil
		}
		v, err := note.NewVerifier(key)
		if err != nil {
			return fmt.Errorf("%s: %q is not a verifier key: %w", where, key, err)
		}
		seen[key] = true
		out = append(out, v)
		return nil
	}
	for _, val := range values {
		val = strings.TrimSpace(val)
		if _, err := note.NewVerifier(val); err == nil {
			if err := add(val, "--log-key"); err != nil {
				return nil, err
			}
			continue
		}
		data, err := os.ReadFile(val)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a verifier key nor a readable file: %w", val, err)
		}
		n := 0
		for i, line := range strings.Split(string(data), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if err := add(line, fmt.Sprintf("%s line %d", val, i+1)); err != nil {
				return nil, err
			}
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("%s holds no key", val)
		}
	}
	return out, nil
}

// content reads the committed bytes and salt to check, if any were given,
// and names what they are ("resource" or "record"). A resource is hashed in
// its canonical form, so any layout of it verifies; a record (an access
// decision, consent event, policy activation...) was committed as the exact
// bytes the server listed, so they are used unchanged, never re-encoded.
func content(evidencePath, resourcePath, saltHex string) (committed, salt []byte, what string, err error) {
	switch {
	case evidencePath != "" && resourcePath != "":
		return nil, nil, "", errors.New("give --evidence or --resource, not both")
	case evidencePath != "":
		data, err := os.ReadFile(evidencePath)
		if err != nil {
			return nil, nil, "", err
		}
		var ev struct {
			Resource json.RawMessage `json:"resource"`
			Record   json.RawMessage `json:"record"`
			Salt     string          `json:"salt"`
		}
		if err := json.Unmarshal(data, &ev); err != nil || (len(ev.Resource) == 0) == (len(ev.Record) == 0) {
			return nil, nil, "", errors.New(`the evidence file is neither {"resource": ..., "salt": ...} nor {"record": ..., "salt": ...}`)
		}
		if len(ev.Record) > 0 {
			salt, err := parseSalt(ev.Salt)
			if err != nil {
				return nil, nil, "", err
			}
			// ev.Record holds the record's bytes exactly as they are in the file.
			return ev.Record, salt, "record", nil
		}
		committed, saltHex = ev.Resource, ev.Salt
	case resourcePath != "":
		data, err := os.ReadFile(resourcePath)
		if err != nil {
			return nil, nil, "", err
		}
		committed = data
	default:
		return nil, nil, "", nil
	}
	if salt, err = parseSalt(saltHex); err != nil {
		return nil, nil, "", err
	}
	canonical, err := fhir.CanonicalJSON(committed)
	if err != nil {
		return nil, nil, "", fmt.Errorf("the resource is not JSON: %w", err)
	}
	return canonical, salt, "resource", nil
}

func parseSalt(saltHex string) ([]byte, error) {
	salt, err := hex.DecodeString(saltHex)
	if err != nil || len(salt) != anchor.SaltSize {
		return nil, fmt.Errorf("the salt must be %d bytes of hex", anchor.SaltSize)
	}
	return salt, nil
}

// onChain checks that the contract holds the receipt's root and tree size at
// its sequence number, in the block the receipt names or one that replaced
// it after a reorg, under enough confirmations.
func onChain(ctx context.Context, r anchor.Receipt, rpc string, confirmations uint64, stdout io.Writer) error {
	if r.Anchor == nil {
		return errors.New("the receipt names no anchor")
	}
	chain, err := eth.New(ctx, eth.Config{RPCURL: rpc, ChainID: r.Anchor.ChainID, Contract: r.Anchor.Contract, ReadOnly: true})
	if err != nil {
		return err
	}
	defer chain.Close()
	a, inc, err := chain.Lookup(ctx, r.Anchor.Seq)
	if errors.Is(err, anchor.ErrNotOnChain) {
		return fmt.Errorf("the contract holds no anchor %d", r.Anchor.Seq)
	}
	if err != nil {
		return err
	}
	if !bytes.Equal(a.Root[:], r.Root) || a.TreeSize != r.TreeSize {
		return fmt.Errorf("anchor %d on chain is root %x of %d leaves, not the receipt's", r.Anchor.Seq, a.Root, a.TreeSize)
	}
	if inc.Confirmations < confirmations {
		return fmt.Errorf("anchor %d has %d confirmations, fewer than %d", r.Anchor.Seq, inc.Confirmations, confirmations)
	}
	fmt.Fprintf(stdout, "chain:   ok, anchor %d in contract %s on chain %d holds this root, block %d (%s), %d confirmations\n",
		r.Anchor.Seq, r.Anchor.Contract, r.Anchor.ChainID, inc.BlockNumber, inc.BlockTime.UTC().Format(time.RFC3339), inc.Confirmations)
	return nil
}

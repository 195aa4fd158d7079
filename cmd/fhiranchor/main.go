// Command fhiranchor is the fhiranchor gateway and its tools in one binary.
//
//	fhiranchor serve   run the gateway (REST on 127.0.0.1:8080, gRPC on 127.0.0.1:9090)
//	fhiranchor push    send Bundle files or folders of them to a gateway
//	fhiranchor token   print a development bearer token
//	fhiranchor verify  check a receipt offline, against content, and on chain
//	fhiranchor log-key make a key for signing the log's checkpoints
//	fhiranchor audit   check the vault against its commitments and the log
//	fhiranchor reindex rebuild the blind index from the vault's content
//	fhiranchor policy  administer consent policies, dry-run decisions, read the decision log
//	fhiranchor version print the version (also --version)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		slog.Error("fhiranchor stopped", slog.Any("err", err))
		os.Exit(1)
	}
}

const usage = `usage: fhiranchor <command> [flags]

commands:
  serve   run the gateway (embedded defaults: ./data, REST 127.0.0.1:8080, gRPC 127.0.0.1:9090)
  push    send FHIR Bundle files (or folders of them, or NDJSON) to a gateway
  token   print a development token signed by the data dir's dev key
  verify  check a receipt: its proof offline, its signed checkpoint, its content,
          its anchor on chain
  log-key make a key for signing the log's checkpoints
  audit   re-derive every stored version's commitment and check it against the log
  reindex rebuild the blind index (search and conditional-interaction tokens) from
          the vault's content, after an upgrade or an audit finding about it
  policy  list, test, push, activate and roll back consent policies; dry-run a
          decision; list the decision log (REST API of a running gateway)
  version print the version (also: fhiranchor --version)

run 'fhiranchor <command> -h' for a command's flags and an example
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], stdout, stderr, getenv)
	case "push":
		return runPush(ctx, args[1:], stdout, stderr, getenv)
	case "token":
		return runToken(ctx, args[1:], stdout, stderr, getenv)
	case "audit":
		return runAudit(ctx, args[1:], stdout, stderr, getenv)
	case "reindex":
		return runReindex(ctx, args[1:], stdout, stderr, getenv)
	case "verify":
		return runVerify(ctx, args[1:], stdout, stderr, getenv)
	case "log-key":
		return runLogKey(ctx, args[1:], stdout, stderr, getenv)
	case "policy":
		return runPolicy(ctx, args[1:], stdout, stderr, getenv)
	case "version", "--version", "-version":
		return runVersion(stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
		return flag.ErrHelp
	}
}

// Command synthea10x writes N copies of every Synthea transaction Bundle in
// a directory, each with fresh ids, fullUrls and references and perturbed
// identifiers, deterministically for a seed (internal/synthea10x). For
// benchmarks at scale:
//
//	go run ./tools/synthea10x -n 10 -seed 1 -out /tmp/synthea10x
//
// With -out - the copies are streamed to standard output, one Bundle per
// line, in an order that can be pushed as it comes (each copy's shared
// organizations and practitioners first), and -resources stops the stream
// once that many entries were written; nothing is held in memory but the
// Bundles in flight:
//
//	go run ./tools/synthea10x -out - -resources 1000000 | ...
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/fhiranchor/fhiranchor/internal/synthea10x"
)

func main() {
	src := flag.String("in", "../shared/testdata/synthea", "directory of Synthea Bundles")
	dst := flag.String("out", "", "directory to write the copies to, or - for standard output (required)")
	n := flag.Int("n", 10, "copies of each Bundle")
	resources := flag.Int("resources", 0, "with -out -: stop after this many entries (0: all n copies)")
	seed := flag.Int64("seed", 1, "seed of the id derivation")
	flag.Parse()
	if *dst == "" || *n < 1 || *resources < 0 {
		flag.Usage()
		os.Exit(2)
	}
	if *dst == "-" {
		if err := stream(*src, *n, *resources, *seed); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	files, err := synthea10x.Generate(*src, *dst, *n, *seed)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("wrote %d Bundles to %s\n", len(files), *dst)
}

// stream writes the copies to standard output, one per line.
func stream(src string, n, resources int, seed int64) error {
	if resources > 0 {
		n = 1 << 30 // as many copies as the count needs
	}
	w := bufio.NewWriterSize(os.Stdout, 1<<20)
	written := 0
	enough := errors.New("enough")
	err := synthea10x.Stream(src, n, seed, 2, func(_ string, _ int, bundle []byte) error {
		if resources > 0 && written >= resources {
			return enough
		}
		written += bytes.Count(bundle, []byte(`"fullUrl":`))
		_, err := w.Write(bundle) // Copy ends each Bundle with a newline
		return err
	})
	if err != nil && !errors.Is(err, enough) {
		return err
	}
	return w.Flush()
}

// Command synthea10x writes N copies of every Synthea transaction Bundle in
// a directory, each with fresh ids, fullUrls and references and perturbed
// identifiers, deterministically for a seed (internal/synthea10x). For
// benchmarks at scale:
//
//	go run ./tools/synthea10x -n 10 -seed 1 -out /tmp/synthea10x
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/fhiranchor/fhiranchor/internal/synthea10x"
)

func main() {
	src := flag.String("in", "../shared/testdata/synthea", "directory of Synthea Bundles")
	dst := flag.String("out", "", "directory to write the copies to (required)")
	n := flag.Int("n", 10, "copies of each Bundle")
	seed := flag.Int64("seed", 1, "seed of the id derivation")
	flag.Parse()
	if *dst == "" || *n < 1 {
		flag.Usage()
		os.Exit(2)
	}
	files, err := synthea10x.Generate(*src, *dst, *n, *seed)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("wrote %d Bundles to %s\n", len(files), *dst)
}

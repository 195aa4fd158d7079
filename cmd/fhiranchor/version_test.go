package main

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/fhiranchor/fhiranchor/gateway"
)

// TestVersion: 'version' and '--version' print the gateway's version and
// what the build recorded.
func TestVersion(t *testing.T) {
	for _, arg := range []string{"version", "--version"} {
		var out bytes.Buffer
		if err := run(t.Context(), []string{arg}, &out, io.Discard, noEnv); err != nil {
			t.Fatalf("%s: %v", arg, err)
		}
		line := out.String()
		if !strings.HasPrefix(line, "fhiranchor "+gateway.Version+" (module ") || !strings.Contains(line, "go1.") || strings.Count(line, "\n") != 1 {
			t.Errorf("%s printed %q", arg, line)
		}
	}
}

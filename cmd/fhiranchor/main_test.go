package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
)

// TestHelp: every command's -h explains its flags and shows an example
// command line.
func TestHelp(t *testing.T) {
	commands := [][]string{{"serve"}, {"push"}, {"token"}, {"verify"}, {"log-key"}, {"audit"}, {"reindex"}}
	for name := range policySubcommands {
		commands = append(commands, []string{"policy", name})
	}
	slices.SortFunc(commands, func(a, b []string) int { return strings.Compare(strings.Join(a, " "), strings.Join(b, " ")) })
	for _, cmd := range commands {
		var stderr bytes.Buffer
		err := run(t.Context(), append(slices.Clone(cmd), "-h"), io.Discard, &stderr, noEnv)
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%v -h: %v", cmd, err)
		}
		help := stderr.String()
		_, example, _ := strings.Cut(help, "\nexample:\n")
		example, _, _ = strings.Cut(example, "\n\n")
		if !strings.HasPrefix(help, "usage: fhiranchor "+strings.Join(cmd, " ")) ||
			!strings.Contains(example, "fhiranchor "+strings.Join(cmd, " ")) || !strings.Contains(help, "\n  -") {
			t.Errorf("%v -h lacks its usage, an example or its flags:\n%s", cmd, help)
		}
	}
}

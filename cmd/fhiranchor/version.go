package main

import (
	"fmt"
	"io"
	"runtime/debug"

	"github.com/fhiranchor/fhiranchor/gateway"
)

// versionLine is what 'fhiranchor version' prints: the gateway's version,
// then the module version, VCS revision and Go version the binary was
// built with, when the build recorded them.
func versionLine() string {
	s := "fhiranchor " + gateway.Version
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return s
	}
	s += " (module " + bi.Main.Version
	for _, kv := range bi.Settings {
		switch kv.Key {
		case "vcs.revision":
			s += ", revision " + kv.Value
		case "vcs.modified":
			if kv.Value == "true" {
				s += ", modified"
			}
		}
	}
	return s + ", " + bi.GoVersion + ")"
}

// runVersion implements 'fhiranchor version' and '--version'.
func runVersion(stdout io.Writer) error {
	_, err := fmt.Fprintln(stdout, versionLine())
	return err
}

// Package shareddata finds the test data shared by the team (Synthea Bundles,
// HL7 examples): ../shared/testdata beside the repository, or the folder
// $FHIRANCHOR_TESTDATA names. Tests of every package use it; it has no
// dependencies so that even package fhir's own tests can.
package shareddata

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Dir returns the shared test data folder. A test that needs it fails, never
// skips, when it is missing: in CI a skip would hide a broken setup.
func Dir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("FHIRANCHOR_TESTDATA")
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", "..", "..", "shared", "testdata")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("shared test data not found at %s (set FHIRANCHOR_TESTDATA): %v", dir, err)
	}
	return dir
}

// Files returns the .json files of a subfolder ("synthea", "hl7-examples"),
// sorted; it fails the test if there are none.
func Files(t testing.TB, sub string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(Dir(t), sub, "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no test data in %s: %v", sub, err)
	}
	return paths
}

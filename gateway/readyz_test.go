package gateway_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/gateway"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// TestReadyzWaitsForCohortIndex: a gateway is not ready before its cohort
// index is loaded (from the snapshot the first gateway left) and caught
// up, and when /readyz turns green the index holds every resource.
func TestReadyzWaitsForCohortIndex(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{Quiet: true})
	tok := g.Token(t)
	for i := range 3 {
		body := `{"resourceType":"Patient","gender":"female","birthDate":"197` + string(rune('0'+i)) + `-01-01"}`
		if r := g.Do(t, http.MethodPost, "/Patient", []byte(body), "Authorization", "Bearer "+tok); r.Status != http.StatusCreated {
			t.Fatalf("create: %d %s", r.Status, r.Body)
		}
	}
	const want = 3 // the Patients: nothing else was written
	g.Restart(t)   // leaves a snapshot behind
	key, err := auth.LoadOrCreateDevKey(g.Dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := gateway.New(ctx, gateway.Config{HTTPAddr: "127.0.0.1:0", Research: gateway.ResearchConfig{
		ExportDir: t.TempDir(), IndexFile: filepath.Join(g.Dir, "cohort-index"),
	}}, gateway.Deps{Vault: g.Vault, Verifier: auth.NewVerifier(auth.DevKeySet(key), auth.Config{}), Log: g.Log,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	readyz := func() int {
		w := httptest.NewRecorder()
		srv.RESTHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return w.Code
	}
	if code := readyz(); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before the index is loaded: %d, want 503", code)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gateway stopped: %v", err)
		}
	})
	deadline := time.Now().Add(time.Minute)
	for readyz() != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("/readyz not green within a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := srv.CohortIndexResources(); got != want {
		t.Errorf("green with %d resources in the cohort index, want %d", got, want)
	}
}

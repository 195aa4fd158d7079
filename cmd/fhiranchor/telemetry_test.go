package main

import (
	"context"
	"testing"
	"time"
)

// TestTracing: no telemetry.otlp_endpoint, no tracer; with one, a provider
// that starts without a collector and stops by its deadline.
func TestTracing(t *testing.T) {
	var c config
	tp, stop, err := tracing(t.Context(), &c)
	if err != nil || tp != nil {
		t.Fatalf("no endpoint: %v, %v", tp, err)
	}
	if err := stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	c.Telemetry.OTLPEndpoint, c.Telemetry.OTLPInsecure = "127.0.0.1:1", true // nothing listens
	tp, stop, err = tracing(t.Context(), &c)
	if err != nil || tp == nil {
		t.Fatalf("with an endpoint: %v, %v", tp, err)
	}
	_, span := tp.Tracer("test").Start(t.Context(), "span")
	span.End()
	// The export fails (no collector): stopping gives up at its deadline,
	// as serve's does, rather than hang the exit.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	_ = stop(ctx)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("stopping the tracer took %v", took)
	}
}

package main

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/fhiranchor/fhiranchor/gateway"
)

// tracing returns the tracer provider of telemetry.otlp_endpoint, exporting
// spans over OTLP/gRPC in batches, and the function that flushes and stops
// it; nil and a no-op without an endpoint (the default: no traces).
func tracing(ctx context.Context, c *config) (trace.TracerProvider, func(context.Context) error, error) {
	if c.Telemetry.OTLPEndpoint == "" {
		return nil, func(context.Context) error { return nil }, nil
	}
	opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(c.Telemetry.OTLPEndpoint)}
	if c.Telemetry.OTLPInsecure {
		opts = append(opts, otlptracegrpc.WithInsecure())
	}
	// New does not dial: a collector that is down loses spans, never
	// stops the gateway.
	exp, err := otlptracegrpc.New(ctx, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("telemetry: OTLP exporter: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewSchemaless(
			attribute.String("service.name", "fhiranchor"),
			attribute.String("service.version", gateway.Version),
		)),
	)
	return tp, tp.Shutdown, nil
}

package gateway_test

import (
	"net/http"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// TestTracing: with Deps.Tracing, every call (REST ones too) is a span
// named by its gRPC method, in the trace of the caller's traceparent, and
// no span attribute holds the resource id of the request.
func TestTracing(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	g := testonly.StartGateway(t, testonly.Options{Quiet: true, Tracing: tp})
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	r := g.Do(t, http.MethodGet, "/Patient/some-patient-id", nil, "Authorization", "Bearer "+g.Token(t),
		"traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	if r.Status != http.StatusNotFound {
		t.Fatalf("read: %d %s", r.Status, r.Body)
	}
	if r := g.Do(t, http.MethodGet, "/metadata", nil); r.Status != http.StatusOK {
		t.Fatalf("metadata: %d", r.Status)
	}
	names := map[string]bool{}
	for _, s := range rec.Ended() {
		names[s.Name()] = true
		if s.Name() == "fhiranchor.v1.FHIRService/Read" && s.SpanContext().TraceID().String() != traceID {
			t.Errorf("the read's span is in trace %s, not the caller's", s.SpanContext().TraceID())
		}
		for _, a := range s.Attributes() {
			if strings.Contains(a.Value.Emit(), "some-patient-id") {
				t.Errorf("span %s: attribute %s holds the resource id", s.Name(), a.Key)
			}
		}
	}
	for _, want := range []string{"fhiranchor.v1.FHIRService/Read", "fhiranchor.v1.FHIRService/Capabilities"} {
		if !names[want] {
			t.Errorf("no span %s; spans: %v", want, names)
		}
	}
}

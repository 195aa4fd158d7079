package gateway_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fhiranchor/fhiranchor/gateway"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
	fhiranchorv1 "github.com/fhiranchor/fhiranchor/proto/fhiranchor/v1"
)

// TestRateLimitOverGRPC: the per-client rate limit holds for clients that
// speak gRPC to the gateway's port too (ResourceExhausted, with RetryInfo),
// not only for REST; another client is unaffected, and REST calls, which
// reach the same server over the in-process connection, are not counted
// twice.
func TestRateLimitOverGRPC(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{Quiet: true, Limits: gateway.Limits{RatePerClient: 0.01, RateBurst: 3}})
	conn, err := grpc.NewClient(g.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := fhiranchorv1.NewFHIRServiceClient(conn)
	as := func(client string) context.Context {
		tok := g.TokenFor(t, auth.Claims{ClientID: client, TTL: time.Hour})
		return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
	}
	a, b := as("grpc-a"), as("grpc-b")
	read := func(ctx context.Context) error {
		_, err := c.Read(ctx, &fhiranchorv1.ReadRequest{Type: "Patient", Id: "nobody"})
		return err
	}
	for i := range 3 {
		if err := read(a); status.Code(err) != codes.NotFound {
			t.Fatalf("call %d within the burst: %v", i, err)
		}
	}
	err = read(a)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("over the burst: %v, want ResourceExhausted", err)
	}
	if err := read(b); status.Code(err) != codes.NotFound {
		t.Fatalf("another client: %v", err)
	}
	// REST for a fresh client: its burst of 3 is its own, counted once.
	tok := g.TokenFor(t, auth.Claims{ClientID: "rest-c", TTL: time.Hour})
	for i := range 3 {
		if r := g.Do(t, "GET", "/Patient/nobody", nil, "Authorization", "Bearer "+tok); r.Status != http.StatusNotFound {
			t.Fatalf("REST call %d within the burst: %d %s", i, r.Status, r.Body)
		}
	}
}

// TestUnauthenticatedGRPCFloodIsBounded: calls without a valid token are
// refused (Unauthenticated) and, past the peer's burst, throttled.
func TestUnauthenticatedGRPCFloodIsBounded(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{Quiet: true, Limits: gateway.Limits{RatePerClient: 0.01, RateBurst: 3}})
	conn, err := grpc.NewClient(g.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := fhiranchorv1.NewFHIRServiceClient(conn)
	var last error
	for range 5 {
		_, last = c.Read(context.Background(), &fhiranchorv1.ReadRequest{Type: "Patient", Id: "nobody"})
	}
	if status.Code(last) != codes.ResourceExhausted {
		t.Fatalf("a flood without a token: %v, want ResourceExhausted", last)
	}
	tok := g.TokenFor(t, auth.Claims{ClientID: "after-flood", TTL: time.Hour})
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
	if _, err := c.Read(ctx, &fhiranchorv1.ReadRequest{Type: "Patient", Id: "nobody"}); status.Code(err) != codes.NotFound {
		t.Fatalf("a client with a token after the flood: %v", err)
	}
}

package gateway_test

import (
	"bytes"
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/fhiranchor/fhiranchor/internal/testonly"
	fhiranchorv1 "github.com/fhiranchor/fhiranchor/proto/fhiranchor/v1"
)

// TestRequestID: a well-formed X-Request-Id is echoed, over REST (refusals
// before the gRPC side included) and gRPC; a malformed or missing one is
// replaced by a generated id; and every log line of the request names it.
func TestRequestID(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	ehr := []string{"Authorization", "Bearer " + g.Token(t)}
	generated := regexp.MustCompile(`^[0-9a-f]{32}$`)

	// A read: the "rpc" line of the interceptor carries the id.
	r := g.Do(t, http.MethodGet, "/Patient/nobody", nil, append(ehr, "X-Request-Id", "client-1.A_b")...)
	if got := r.Header.Get("X-Request-Id"); got != "client-1.A_b" {
		t.Fatalf("echoed %q", got)
	}
	if !logLineWith(g, "client-1.A_b", `msg=rpc`, "FHIRService/Read") {
		t.Errorf("no rpc log line with the request id:\n%s", g.Logs.Bytes())
	}
	// Refused by the REST layer for its token: echoed and logged with why.
	r = g.Do(t, http.MethodGet, "/Patient/nobody", nil, "Authorization", "Bearer not-a-token", "X-Request-Id", "refused-2")
	if r.Status != http.StatusUnauthorized || r.Header.Get("X-Request-Id") != "refused-2" {
		t.Fatalf("refused: %d, id %q", r.Status, r.Header.Get("X-Request-Id"))
	}
	if !logLineWith(g, "refused-2", `msg="token refused"`, "reason=") {
		t.Errorf("no log line on the refused token:\n%s", g.Logs.Bytes())
	}
	if bytes.Contains(g.Logs.Bytes(), []byte("not-a-token")) {
		t.Error("the log quotes a refused token")
	}
	// Malformed ids are replaced, never echoed or logged.
	for _, bad := range []string{"has space", strings.Repeat("a", 129), "semi;colon", "line\tbreak"} {
		r := g.Do(t, http.MethodGet, "/metadata", nil, "X-Request-Id", bad)
		if got := r.Header.Get("X-Request-Id"); !generated.MatchString(got) {
			t.Errorf("for %q: echoed %q, want a generated id", bad, got)
		}
	}
	if bytes.Contains(g.Logs.Bytes(), []byte("semi;colon")) || bytes.Contains(g.Logs.Bytes(), []byte(strings.Repeat("a", 129))) {
		t.Error("a malformed request id reached the log")
	}
	r = g.Do(t, http.MethodGet, "/metadata", nil)
	if got := r.Header.Get("X-Request-Id"); !generated.MatchString(got) {
		t.Errorf("without an id: %q", got)
	} else if !logLineWith(g, got, `msg=rpc`, "FHIRService/Capabilities") {
		t.Errorf("the generated id %s is not in the rpc log line", got)
	}
	if r := g.DoRoot(t, http.MethodGet, "/healthz", nil, "X-Request-Id", "health-3"); r.Header.Get("X-Request-Id") != "health-3" {
		t.Errorf("/healthz: id %q", r.Header.Get("X-Request-Id"))
	}

	// gRPC: in the response header metadata.
	conn, err := grpc.NewClient(g.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := fhiranchorv1.NewFHIRServiceClient(conn)
	for _, tc := range []struct{ sent, want string }{{"grpc-4", "grpc-4"}, {"bad id", ""}, {"", ""}} {
		ctx := context.Background()
		if tc.sent != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", tc.sent)
		}
		var md metadata.MD
		if _, err := c.Capabilities(ctx, &fhiranchorv1.CapabilitiesRequest{}, grpc.Header(&md)); err != nil {
			t.Fatal(err)
		}
		got := md.Get("x-request-id")
		switch {
		case len(got) != 1:
			t.Errorf("sent %q: header %q", tc.sent, got)
		case tc.want != "" && got[0] != tc.want:
			t.Errorf("sent %q: got %q", tc.sent, got[0])
		case tc.want == "" && !generated.MatchString(got[0]):
			t.Errorf("sent %q: got %q, want a generated id", tc.sent, got[0])
		}
	}
	if !logLineWith(g, "grpc-4", `msg=rpc`) {
		t.Errorf("no rpc log line with the gRPC request id")
	}
}

// logLineWith reports whether one line of g's log holds request_id=id and
// every part.
func logLineWith(g *testonly.Gateway, id string, parts ...string) bool {
	for _, line := range strings.Split(string(g.Logs.Bytes()), "\n") {
		if !strings.Contains(line, "request_id="+id) {
			continue
		}
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			return true
		}
	}
	return false
}

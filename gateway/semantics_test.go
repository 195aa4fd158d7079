package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
	fhiranchorv1 "github.com/fhiranchor/fhiranchor/proto/fhiranchor/v1"
)

// TestVersioning walks one resource through create, update, If-Match,
// delete and re-create, checking versionId, ETag, Location, vread and
// history on the way.
func TestVersioning(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	auth := []string{"Authorization", "Bearer " + g.Token(t)}

	r := g.Do(t, "PUT", "/Patient/p1", []byte(`{"resourceType":"Patient","id":"p1","gender":"female"}`), auth...)
	mustStatus(t, r, 201)
	if r.Header.Get("ETag") != `W/"1"` || !strings.HasSuffix(r.Header.Get("Location"), "/fhir/r4/Patient/p1/_history/1") {
		t.Errorf("create headers: ETag %q Location %q", r.Header.Get("ETag"), r.Header.Get("Location"))
	}
	r = g.Do(t, "PUT", "/Patient/p1", []byte(`{"resourceType":"Patient","id":"p1","gender":"male"}`), append(auth, "If-Match", `W/"1"`)...)
	mustStatus(t, r, 200)
	var p struct {
		Gender string
		Meta   struct{ VersionID, LastUpdated string }
	}
	if err := json.Unmarshal(r.Body, &p); err != nil || p.Meta.VersionID != "2" || p.Gender != "male" || p.Meta.LastUpdated == "" {
		t.Fatalf("update body: %s", r.Body)
	}
	mustStatus(t, g.Do(t, "PUT", "/Patient/p1", []byte(`{"resourceType":"Patient","id":"p1"}`), append(auth, "If-Match", `W/"1"`)...), 412)

	r = g.Do(t, "GET", "/Patient/p1/_history/1", nil, auth...)
	mustStatus(t, r, 200)
	if !strings.Contains(string(r.Body), `"gender":"female"`) || r.Header.Get("ETag") != `W/"1"` {
		t.Errorf("vread 1: %s", r.Body)
	}
	mustStatus(t, g.Do(t, "DELETE", "/Patient/p1", nil, auth...), 200)
	mustStatus(t, g.Do(t, "GET", "/Patient/p1", nil, auth...), 410)
	mustStatus(t, g.Do(t, "DELETE", "/Patient/p1", nil, auth...), 204) // deleting again changes nothing
	mustStatus(t, g.Do(t, "PUT", "/Patient/p1", []byte(`{"resourceType":"Patient","id":"p1"}`), auth...), 201)

	r = g.Do(t, "GET", "/Patient/p1/_history", nil, auth...)
	mustStatus(t, r, 200)
	var h struct {
		Type  string
		Total int
		Entry []struct {
			Request  struct{ Method string }
			Response struct{ Etag string }
		}
	}
	if err := json.Unmarshal(r.Body, &h); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range h.Entry {
		got = append(got, e.Request.Method+" "+e.Response.Etag)
	}
	want := `PUT W/"4",DELETE W/"3",PUT W/"2",POST W/"1"`
	if h.Type != "history" || h.Total != 4 || strings.Join(got, ",") != want {
		t.Errorf("history %s total %d: %s, want %s", h.Type, h.Total, strings.Join(got, ","), want)
	}
	if st := g.Stats(t); st.Versions != 4 || st.Leaves != 4+g.RecordLeaves(t) {
		t.Errorf("vault %+v, want 4 versions and one leaf each besides %d records", st, g.RecordLeaves(t))
	}
}

// TestTransactionAllOrNothing: an entry that fails only when applied (a
// version conflict, found after the other entries were resolved) rolls the
// whole transaction back; the same entries as a batch succeed one by one.
func TestTransactionAllOrNothing(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	auth := []string{"Authorization", "Bearer " + g.Token(t)}
	mustStatus(t, g.Do(t, "PUT", "/Patient/v1", []byte(`{"resourceType":"Patient","id":"v1"}`), auth...), 201)
	before := g.Stats(t)
	entries := `[
	 {"fullUrl":"urn:uuid:11111111-1111-4111-8111-111111111111","resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}},
	 {"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:11111111-1111-4111-8111-111111111111"}},"request":{"method":"POST","url":"Observation"}},
	 {"resource":{"resourceType":"Patient","id":"v1"},"request":{"method":"PUT","url":"Patient/v1","ifMatch":"W/\"5\""}}]`
	r := g.Do(t, "POST", "", []byte(`{"resourceType":"Bundle","type":"transaction","entry":`+entries+`}`), auth...)
	mustStatus(t, r, 412)
	if !strings.Contains(string(r.Body), "Bundle.entry[2].request.ifMatch") {
		t.Errorf("outcome does not point at the entry: %s", r.Body)
	}
	if after := g.Stats(t); after != before {
		t.Fatalf("a failed transaction stored something: %+v -> %+v", before, after)
	}
	// As a batch: the first two stand alone (the urn:uuid reference is then
	// stored as sent), the third fails alone.
	r = g.Do(t, "POST", "", []byte(`{"resourceType":"Bundle","type":"batch","entry":`+entries+`}`), auth...)
	mustStatus(t, r, 200)
	br := decodeBundle(t, r.Body)
	var got []string
	for _, e := range br.Entry {
		got = append(got, e.Response.Status)
	}
	if strings.Join(got, ",") != "201 Created,201 Created,412 Precondition Failed" || br.Type != "batch-response" {
		t.Errorf("batch-response %s: %v", br.Type, got)
	}
	if after := g.Stats(t); after.Versions != before.Versions+2 {
		t.Errorf("batch stored %d versions, want 2", after.Versions-before.Versions)
	}
}

// TestConditionalCreate: If-None-Exist as a header and as
// entry.request.ifNoneExist makes a retried create create nothing.
func TestConditionalCreate(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	auth := []string{"Authorization", "Bearer " + g.Token(t)}
	body := []byte(`{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"42"}]}`)
	first := g.Do(t, "POST", "/Patient", body, append(auth, "If-None-Exist", "identifier=urn:mrn|42")...)
	mustStatus(t, first, 201)
	again := g.Do(t, "POST", "/Patient", body, append(auth, "If-None-Exist", "identifier=urn:mrn|42")...)
	mustStatus(t, again, 200)
	if first.Header.Get("Location") != again.Header.Get("Location") {
		t.Errorf("retry points elsewhere: %s vs %s", first.Header.Get("Location"), again.Header.Get("Location"))
	}
	// A value without a system matches any system.
	mustStatus(t, g.Do(t, "POST", "/Patient", body, append(auth, "If-None-Exist", "identifier=42")...), 200)

	txn := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[
	 {"fullUrl":"urn:uuid:22222222-2222-4222-8222-222222222222","resource":{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"43"}]},
	  "request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=urn:mrn|43"}},
	 {"fullUrl":"urn:uuid:33333333-3333-4333-8333-333333333333","resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},
	  "subject":{"reference":"urn:uuid:22222222-2222-4222-8222-222222222222"}},
	  "request":{"method":"POST","url":"Observation","ifNoneExist":"identifier=urn:obs|1"}}]}`)
	txn = []byte(strings.Replace(string(txn), `"code":{"text":"x"},`, `"code":{"text":"x"},"identifier":[{"system":"urn:obs","value":"1"}],`, 1))
	r1 := decodeBundle(t, g.Do(t, "POST", "", txn, auth...).Body)
	before := g.Stats(t)
	r2 := decodeBundle(t, g.Do(t, "POST", "", txn, auth...).Body)
	if after := g.Stats(t); after != before {
		t.Errorf("the retried transaction stored something: %+v -> %+v", before, after)
	}
	for i := range r1.Entry {
		if r1.Entry[i].Response.Status != "201 Created" || r2.Entry[i].Response.Status != "200 OK" ||
			r1.Entry[i].Response.Location != r2.Entry[i].Response.Location {
			t.Errorf("entry %d: first %+v, retry %+v", i, r1.Entry[i].Response, r2.Entry[i].Response)
		}
	}
}

// TestConditionalReferences: within a transaction, "Patient?identifier=…"
// is resolved to the one patient it matches, so the resource lands in that
// patient's compartment (and under their consent); no match, several
// matches, or a conditional reference outside a transaction fail and store
// nothing.
func TestConditionalReferences(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	auth := []string{"Authorization", "Bearer " + g.Token(t)}
	mustStatus(t, g.Do(t, "PUT", "/Patient/cr1", []byte(`{"resourceType":"Patient","id":"cr1","identifier":[{"system":"urn:mrn","value":"c1"}]}`), auth...), 201)
	for _, id := range []string{"twin1", "twin2"} {
		mustStatus(t, g.Do(t, "PUT", "/Patient/"+id, []byte(`{"resourceType":"Patient","id":"`+id+`","identifier":[{"system":"urn:mrn","value":"twin"}]}`), auth...), 201)
	}
	obs := func(ref string) string {
		return `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"` + ref + `"}}`
	}
	txn := func(ref string) []byte {
		return []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:44444444-4444-4444-8444-444444444444","resource":` +
			obs(ref) + `,"request":{"method":"POST","url":"Observation"}}]}`)
	}
	r := g.Do(t, "POST", "", txn("Patient?identifier=urn:mrn|c1"), auth...)
	mustStatus(t, r, 200)
	loc := relativeLocation(decodeBundle(t, r.Body).Entry[0].Response.Location)
	v, err := g.Vault.Read(t.Context(), "Observation", strings.Split(loc, "/")[1])
	if err != nil {
		t.Fatal(err)
	}
	if v.Compartment != "Patient/cr1" || !strings.Contains(string(v.Body), `"reference":"Patient/cr1"`) {
		t.Errorf("stored in compartment %q: %s", v.Compartment, v.Body)
	}
	for _, tc := range []struct {
		name string
		path string
		body []byte
		want int
	}{
		{"no match", "", txn("Patient?identifier=urn:mrn|nobody"), 400},
		{"two matches", "", txn("Patient?identifier=urn:mrn|twin"), 412},
		{"unsupported parameter", "", txn("Patient?name=Quill"), 400},
		{"outside a transaction", "/Observation", []byte(obs("Patient?identifier=urn:mrn|c1")), 400},
	} {
		before := g.Stats(t)
		r := g.Do(t, "POST", tc.path, tc.body, auth...)
		if r.Status != tc.want || !strings.Contains(string(r.Body), "OperationOutcome") {
			t.Errorf("%s: %d %s, want %d and an OperationOutcome", tc.name, r.Status, r.Body, tc.want)
		}
		if after := g.Stats(t); after != before {
			t.Errorf("%s: the vault changed: %+v -> %+v", tc.name, before, after)
		}
	}
}

// TestIdempotencyKey: the same key answers the first response again, for a
// create and for a Bundle; another client's identical key is its own.
func TestIdempotencyKey(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	auth := []string{"Authorization", "Bearer " + g.Token(t), "Idempotency-Key", "k1"}
	body := []byte(`{"resourceType":"Patient","active":true}`)
	a := g.Do(t, "POST", "/Patient", body, auth...)
	b := g.Do(t, "POST", "/Patient", body, auth...)
	mustStatus(t, a, 201)
	mustStatus(t, b, 201)
	if a.Header.Get("Location") != b.Header.Get("Location") || string(a.Body) != string(b.Body) {
		t.Errorf("replay differs: %s vs %s", a.Header.Get("Location"), b.Header.Get("Location"))
	}
	other := g.Do(t, "POST", "/Patient", body, "Authorization", "Bearer "+g.TokenFor(t, authClaims("other-client")), "Idempotency-Key", "k1")
	mustStatus(t, other, 201)
	if other.Header.Get("Location") == a.Header.Get("Location") {
		t.Error("another client's request was answered from this client's key")
	}
	if st := g.Stats(t); st.Versions != 2 {
		t.Errorf("%d versions stored, want 2", st.Versions)
	}
}

// TestGRPC calls the FHIR service over gRPC directly: the same
// authentication and the same OperationOutcomes as REST.
func TestGRPC(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	conn, err := grpc.NewClient(g.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := fhiranchorv1.NewFHIRServiceClient(conn)
	ctx := context.Background()
	body := &httpbody.HttpBody{ContentType: "application/fhir+json", Data: []byte(`{"resourceType":"Patient","gender":"other"}`)}

	_, err = c.Create(ctx, &fhiranchorv1.CreateRequest{Type: "Patient", Body: body})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no token: %v", err)
	}
	var oo *httpbody.HttpBody
	for _, d := range status.Convert(err).Details() {
		if hb, ok := d.(*httpbody.HttpBody); ok {
			oo = hb
		}
	}
	if oo == nil || !strings.Contains(string(oo.Data), `"OperationOutcome"`) {
		t.Errorf("no OperationOutcome detail on the gRPC error: %v", status.Convert(err).Details())
	}

	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+g.Token(t))
	var hdr metadata.MD
	created, err := c.Create(ctx, &fhiranchorv1.CreateRequest{Type: "Patient", Body: body}, grpc.Header(&hdr))
	if err != nil {
		t.Fatal(err)
	}
	loc := hdr.Get("location")
	if len(loc) != 1 || hdr.Get("etag")[0] != `W/"1"` {
		t.Fatalf("headers %v", hdr)
	}
	var p struct{ ID string }
	_ = json.Unmarshal(created.Data, &p)
	read, err := c.Read(ctx, &fhiranchorv1.ReadRequest{Type: "Patient", Id: p.ID})
	if err != nil || !strings.Contains(string(read.Data), `"gender":"other"`) {
		t.Fatalf("read over gRPC: %v %s", err, read.GetData())
	}
	_, err = c.Create(ctx, &fhiranchorv1.CreateRequest{Type: "Patient", Body: &httpbody.HttpBody{Data: []byte(`{"resourceType":"Patient","birthDate":"x"}`)}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("invalid resource over gRPC: %v", err)
	}
	if resp, err := http.Get(g.Root + "/readyz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("readyz: %v", err)
	}
}

func authClaims(client string) auth.Claims {
	return auth.Claims{ClientID: client, TTL: time.Hour}
}

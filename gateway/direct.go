package gateway

import (
	"context"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/fhiranchor/fhiranchor/fhir"
	fhiranchorv1 "github.com/fhiranchor/fhiranchor/proto/fhiranchor/v1"
)

// Direct reads. A REST call normally reaches the service through the
// in-process gRPC connection: grpc-gateway encodes it as a gRPC request,
// HTTP/2 carries it over a bufconn pipe, the gRPC server decodes it and
// runs the interceptor, and the answer makes the same trip back. For the
// hottest calls, a read or vread of one resource (GET [type]/[id] and
// [type]/[id]/_history/[vid]), that trip is most of what a read costs
// besides its decision. Those calls are served in process instead, the way
// grpc-gateway's generated RegisterFHIRServiceHandlerServer serves calls,
// but through the very interceptor the gRPC server runs (authentication,
// deadline, recover, purpose check, the caller, logs and metrics) and the
// same service methods, error mapping and response forwarding: only the
// transport differs. Anything else, and any read whose path is not plainly
// one of those two shapes, takes the gRPC route.

// directReads serves reads and vreads of one resource in process.
type directReads struct {
	mux       *runtime.ServeMux // the REST mux: its marshalers, header matchers, error handler and response options
	intercept grpc.UnaryServerInterceptor
	svc       fhiranchorv1.FHIRServiceServer
	admit     func(runtime.HandlerFunc) runtime.HandlerFunc // the REST admission middleware
}

// The gRPC names and REST patterns of the calls served directly, as the
// generated gateway names them.
const (
	readMethod   = "/fhiranchor.v1.FHIRService/Read"
	readPattern  = "/fhir/r4/{type}/{id}"
	vreadMethod  = "/fhiranchor.v1.FHIRService/VRead"
	vreadPattern = "/fhir/r4/{type}/{id}/_history/{version_id}"
)

// directKey marks the context of a call served directly: it came from the
// REST layer, which admitted it, as a call over the in-process connection
// does.
type directKey struct{}

// handler returns next with reads and vreads of one resource served
// directly.
func (d *directReads) handler(next http.Handler) http.Handler {
	read := d.admit(func(w http.ResponseWriter, r *http.Request, p map[string]string) {
		d.serve(w, r, readMethod, readPattern, &fhiranchorv1.ReadRequest{Type: p["type"], Id: p["id"]},
			func(ctx context.Context, req any) (any, error) {
				return d.svc.Read(ctx, req.(*fhiranchorv1.ReadRequest))
			})
	})
	vread := d.admit(func(w http.ResponseWriter, r *http.Request, p map[string]string) {
		d.serve(w, r, vreadMethod, vreadPattern, &fhiranchorv1.VReadRequest{Type: p["type"], Id: p["id"], VersionId: p["version_id"]},
			func(ctx context.Context, req any) (any, error) {
				return d.svc.VRead(ctx, req.(*fhiranchorv1.VReadRequest))
			})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		segs, ok := directPath(r)
		switch {
		case ok && len(segs) == 2:
			read(w, r, map[string]string{"type": segs[0], "id": segs[1]})
		case ok && len(segs) == 4:
			vread(w, r, map[string]string{"type": segs[0], "id": segs[1], "version_id": segs[3]})
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// directPath returns the path segments after the FHIR base of a GET that
// grpc-gateway would route to Read ([type]/[id]) or VRead
// ([type]/[id]/_history/[vid]), when its path needs no unescaping and it
// has no query left (guard took _format and _pretty): a resource type, an
// id of the id grammar (no other GET route of the API has such a segment
// there: theirs begin with "_" or "$") and, for a vread, a version of
// digits.
func directPath(r *http.Request) ([]string, bool) {
	if r.Method != http.MethodGet || r.URL.RawPath != "" || r.URL.RawQuery != "" {
		return nil, false
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/fhir/r4/")
	if !ok {
		return nil, false
	}
	segs := strings.Split(rest, "/")
	if len(segs) != 2 && len(segs) != 4 {
		return nil, false
	}
	if !fhir.IsResourceType(segs[0]) || !idPattern.MatchString(segs[1]) {
		return nil, false
	}
	if len(segs) == 4 && (segs[2] != "_history" || !digits(segs[3])) {
		return nil, false
	}
	return segs, true
}

// digits reports whether s is one or more ASCII digits.
func digits(s string) bool {
	if s == "" || len(s) > 18 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// serve runs one call through the interceptor and answers it as
// grpc-gateway answers a call: the handler's response metadata become
// headers (forwardResponse applies its status), an error becomes an
// OperationOutcome (httpErrorHandler).
func (d *directReads) serve(w http.ResponseWriter, r *http.Request, method, pattern string, req proto.Message, call grpc.UnaryHandler) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	var stream runtime.ServerTransportStream
	ctx = grpc.NewContextWithServerTransportStream(ctx, &stream)
	ctx = context.WithValue(ctx, directKey{}, true)
	_, outbound := runtime.MarshalerForRequest(d.mux, r)
	annotated, err := runtime.AnnotateIncomingContext(ctx, d.mux, r, method, runtime.WithHTTPPathPattern(pattern))
	if err != nil {
		runtime.HTTPError(ctx, d.mux, outbound, w, r, err)
		return
	}
	resp, err := d.intercept(annotated, req, &grpc.UnaryServerInfo{Server: d.svc, FullMethod: method}, call)
	annotated = runtime.NewServerMetadataContext(annotated, runtime.ServerMetadata{HeaderMD: stream.Header(), TrailerMD: stream.Trailer()})
	msg, ok := resp.(proto.Message)
	if err == nil && !ok {
		err = toStatus(annotated, failure(http.StatusInternalServerError, "exception", "", "internal error"))
	}
	if err != nil {
		runtime.HTTPError(annotated, d.mux, outbound, w, r, err)
		return
	}
	runtime.ForwardResponseMessage(annotated, d.mux, outbound, w, r, msg, d.mux.GetForwardResponseOptions()...)
}

package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	fhiranchorv1 "github.com/fhiranchor/fhiranchor/proto/fhiranchor/v1"
)

// httpCodeKey is the response metadata key by which a handler tells the
// REST side its HTTP status (201 Created, 204, 410...); it is not forwarded
// as a header.
const httpCodeKey = "x-http-code"

// restHandler builds the REST API: grpc-gateway over conn, behind the
// checks that must happen before a body is decoded.
func restHandler(ctx context.Context, conn *grpc.ClientConn, maxBody int64, ready func(context.Context) (map[string]any, error)) (http.Handler, error) {
	gw := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, rawBody{}),
		runtime.WithIncomingHeaderMatcher(incomingHeader),
		runtime.WithOutgoingHeaderMatcher(outgoingHeader),
		runtime.WithForwardResponseOption(forwardResponse),
		runtime.WithErrorHandler(httpErrorHandler),
		runtime.WithRoutingErrorHandler(routingErrorHandler),
	)
	for _, register := range []func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error{
		fhiranchorv1.RegisterFHIRServiceHandler,
		fhiranchorv1.RegisterLogServiceHandler,
		fhiranchorv1.RegisterAdminServiceHandler,
		fhiranchorv1.RegisterPolicyServiceHandler,
		fhiranchorv1.RegisterDecisionServiceHandler,
		fhiranchorv1.RegisterCohortServiceHandler,
	} {
		if err := register(ctx, gw, conn); err != nil {
			return nil, fmt.Errorf("register REST handlers: %w", err)
		}
	}
	fhirAPI := guard(gw, maxBody)
	mux := http.NewServeMux()
	mux.Handle("/fhir/r4", fhirAPI)
	mux.Handle("/fhir/r4/", fhirAPI)
	mux.Handle("/v1/", guard(gw, maxBody))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		status, err := ready(r.Context())
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"status":"unavailable"}`)
			return
		}
		_ = json.NewEncoder(w).Encode(status)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeOutcome(w, http.StatusNotFound, outcomeJSON(issue{Severity: "error", Code: "not-found", Diagnostics: "no such endpoint; the FHIR API is under /fhir/r4"}))
	})
	return mux, nil
}

// guard enforces, before grpc-gateway decodes anything, what REST clients
// get wrong most: the body size (413) and the content type (415). The body
// is read here once and handed to the raw-body decoder without a copy.
func guard(next http.Handler, maxBody int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fhir/r4/" {
			r.URL.Path = "/fhir/r4"
		}
		if r.Method == http.MethodPost || r.Method == http.MethodPut {
			if r.ContentLength > maxBody {
				tooLarge(w, maxBody)
				return
			}
			if r.ContentLength != 0 && !fhirContentType(r.Header.Get("Content-Type")) {
				writeOutcome(w, http.StatusUnsupportedMediaType, outcomeJSON(issue{Severity: "error", Code: "not-supported",
					Diagnostics: "send FHIR JSON: Content-Type application/fhir+json"}))
				return
			}
			data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				tooLarge(w, maxBody)
				return
			}
			if err != nil {
				writeOutcome(w, http.StatusBadRequest, outcomeJSON(issue{Severity: "error", Code: "structure", Diagnostics: "could not read the request body"}))
				return
			}
			r.Body = &bodyBytes{Reader: bytes.NewReader(data), data: data}
			// One marshaler serves every FHIR media type; tell grpc-gateway
			// it is this one.
			r.Header.Set("Content-Type", fhirJSON)
		}
		next.ServeHTTP(w, r)
	})
}

func tooLarge(w http.ResponseWriter, maxBody int64) {
	writeOutcome(w, http.StatusRequestEntityTooLarge, outcomeJSON(issue{Severity: "error", Code: "too-costly",
		Diagnostics: "the request body exceeds the limit of " + strconv.FormatInt(maxBody, 10) + " bytes"}))
}

// fhirContentType accepts the FHIR JSON media types, including the DSTU2
// name older clients still send, and plain JSON.
func fhirContentType(ct string) bool {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return false
	}
	switch mt {
	case "application/fhir+json", "application/json+fhir", "application/json":
		return true
	}
	return false
}

type bodyBytes struct {
	*bytes.Reader
	data []byte
}

func (*bodyBytes) Close() error { return nil }

// rawBody carries request and response bodies unchanged as
// google.api.HttpBody. grpc-gateway's default JSONPb marshaler would decode
// the FHIR JSON as the HttpBody message itself and lose it (feasibility.md
// Q3).
type rawBody struct{}

var httpBodyMarshaler = &runtime.HTTPBodyMarshaler{Marshaler: &runtime.JSONPb{}}

func (rawBody) ContentType(v any) string { return httpBodyMarshaler.ContentType(v) }

func (rawBody) Marshal(v any) ([]byte, error) { return httpBodyMarshaler.Marshal(v) }

func (rawBody) Unmarshal(data []byte, v any) error {
	return rawBody{}.NewDecoder(bytes.NewReader(data)).Decode(v)
}

func (rawBody) NewEncoder(w io.Writer) runtime.Encoder { return httpBodyMarshaler.NewEncoder(w) }

func (rawBody) NewDecoder(r io.Reader) runtime.Decoder {
	return runtime.DecoderFunc(func(v any) error {
		var hb *httpbody.HttpBody
		switch t := v.(type) {
		case *httpbody.HttpBody:
			hb = t
		case **httpbody.HttpBody:
			if *t == nil {
				*t = &httpbody.HttpBody{}
			}
			hb = *t
		case proto.Message:
			return httpBodyMarshaler.NewDecoder(r).Decode(v)
		default:
			return fmt.Errorf("unexpected request message %T", v)
		}
		hb.ContentType = fhirJSON
		if bb, ok := r.(*bodyBytes); ok {
			hb.Data = bb.data
			return nil
		}
		data, err := io.ReadAll(r)
		hb.Data = data
		return err
	})
}

// incomingHeader forwards the FHIR request headers handlers read, under
// their lower-case names; grpc-gateway forwards Authorization itself.
func incomingHeader(key string) (string, bool) {
	switch k := strings.ToLower(key); k {
	case "if-none-exist", "if-match", "if-none-match", "prefer", "idempotency-key", "x-request-id", purposeHeader:
		return k, true
	}
	return runtime.DefaultHeaderMatcher(key)
}

// outgoingHeader turns the response metadata handlers set into HTTP headers.
func outgoingHeader(key string) (string, bool) {
	switch key {
	case "location":
		return "Location", true
	case "etag":
		return "ETag", true
	case "last-modified":
		return "Last-Modified", true
	case "link":
		return "Link", true
	case "content-location":
		return "Content-Location", true
	case "x-progress":
		return "X-Progress", true
	case "retry-after":
		return "Retry-After", true
	}
	return "", false
}

// forwardResponse applies the HTTP status a handler chose.
func forwardResponse(ctx context.Context, w http.ResponseWriter, _ proto.Message) error {
	md, ok := runtime.ServerMetadataFromContext(ctx)
	if !ok {
		return nil
	}
	if v := md.HeaderMD.Get(httpCodeKey); len(v) > 0 {
		if code, err := strconv.Atoi(v[0]); err == nil && code >= 200 && code < 300 {
			w.WriteHeader(code)
		}
	}
	return nil
}

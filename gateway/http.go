package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/fhiranchor/fhiranchor/console"
	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	fhiranchorv1 "github.com/fhiranchor/fhiranchor/proto/fhiranchor/v1"
)

// httpCodeKey is the response metadata key by which a handler tells the
// REST side its HTTP status (201 Created, 204, 410...); it is not forwarded
// as a header.
const httpCodeKey = "x-http-code"

// restConfig is what the REST layer needs besides the gRPC connection.
type restConfig struct {
	maxBody  int64
	limits   Limits // with defaults applied
	verifier tokenVerifier
	ready    func(context.Context) (map[string]any, error)
	tokens   *auth.TokenServer // nil: no token endpoint
	tokenURL tokenEndpoint
	clients  *ClientRegistry // nil: no client admin API
	cors     []string
	log      *slog.Logger
	openapi  []byte       // the merged OpenAPI document, served at /openapi.json
	metrics  http.Handler // nil: no /metrics
	// direct, if set, serves reads of one resource in process (direct.go);
	// restHandler completes it with the REST mux and admission.
	direct *directReads
}

// restHandler builds the REST API: grpc-gateway over conn, behind the
// checks that must happen before a body is decoded.
func restHandler(ctx context.Context, conn *grpc.ClientConn, rc restConfig) (http.Handler, error) {
	adm := newAdmission(rc)
	gw := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, rawBody{}),
		runtime.WithMarshalerOption(jsonPatchType, rawBody{contentType: jsonPatchType}),
		runtime.WithMarshalerOption(formType, rawBody{contentType: formType}),
		runtime.WithIncomingHeaderMatcher(incomingHeader),
		runtime.WithOutgoingHeaderMatcher(outgoingHeader),
		runtime.WithForwardResponseOption(forwardResponse),
		runtime.WithErrorHandler(httpErrorHandler),
		runtime.WithRoutingErrorHandler(routingErrorHandler),
		// After routing, before anything is decoded: who asks, whether
		// they may ask now, and only then the body.
		runtime.WithMiddlewares(adm.middleware),
	)
	for _, register := range []func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error{
		fhiranchorv1.RegisterFHIRServiceHandler,
		fhiranchorv1.RegisterLogServiceHandler,
		fhiranchorv1.RegisterAdminServiceHandler,
		fhiranchorv1.RegisterPolicyServiceHandler,
		fhiranchorv1.RegisterDecisionServiceHandler,
		fhiranchorv1.RegisterCohortServiceHandler,
		// Last: its $export paths win over [type] and [type]/[id].
		fhiranchorv1.RegisterBulkServiceHandler,
	} {
		if err := register(ctx, gw, conn); err != nil {
			return nil, fmt.Errorf("register REST handlers: %w", err)
		}
	}
	var routed http.Handler = gw
	if rc.direct != nil {
		rc.direct.mux, rc.direct.admit = gw, adm.middleware
		routed = rc.direct.handler(gw)
	}
	api := guard(routed, rc.maxBody)
	mux := http.NewServeMux()
	mux.Handle("/fhir/r4", api)
	mux.Handle("/fhir/r4/", api)
	mux.Handle("/v1/", api)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		status, err := rc.ready(r.Context())
		if err != nil {
			w.Header().Set("Retry-After", retryAfterSeconds(retryUnavailable))
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"status":"unavailable"}`)
			return
		}
		_ = json.NewEncoder(w).Encode(status)
	})
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(rc.openapi)
	})
	if rc.metrics != nil {
		mux.Handle("GET /metrics", rc.metrics)
	}
	if rc.tokens != nil {
		// SMART Backend Services: discovery at the server root and at the
		// FHIR base, as the specification asks, and the token endpoint.
		mux.Handle("GET /.well-known/smart-configuration", smartConfiguration(rc.tokenURL))
		mux.Handle("GET /fhir/r4/.well-known/smart-configuration", smartConfiguration(rc.tokenURL))
		mux.Handle("POST "+TokenPath, tokenHandler(rc.tokens, rc.tokenURL, adm.ips, rc.log))
	}
	mux.Handle("GET "+WhoAmIPath, whoAmIHandler(rc.verifier, adm.ips, rc.log))
	// The web console: static files, no token needed to load them; every
	// API call its pages make carries the signed-in token.
	mux.Handle("/console/", console.Handler())
	mux.Handle("GET /console", http.RedirectHandler("/console/", http.StatusMovedPermanently))
	if rc.clients != nil {
		(&clientAdmin{reg: rc.clients, verifier: rc.verifier, ips: adm.ips, log: rc.log}).routes(mux)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeOutcome(w, http.StatusNotFound, outcomeJSON(issue{Severity: "error", Code: "not-found", Diagnostics: "no such endpoint; the FHIR API is under /fhir/r4"}))
	})
	maxHeader := rc.limits.MaxHeaderBytes
	return cors(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Every answer names its request, refusals included; the
		// checked id travels on to the gRPC side as metadata.
		id := requestID(r.Header.Get("X-Request-Id"))
		r.Header.Set("X-Request-Id", id)
		w.Header().Set("X-Request-Id", id)
		r = r.WithContext(withRequestID(r.Context(), id))
		if maxHeader > 0 && headerBytes(r) > maxHeader {
			w.Header().Set("Connection", "close")
			writeOutcome(w, http.StatusRequestHeaderFieldsTooLarge, outcomeJSON(issue{Severity: "error", Code: "too-long",
				Diagnostics: "the request line and headers exceed the limit of " + strconv.Itoa(maxHeader) + " bytes"}))
			return
		}
		mux.ServeHTTP(w, r)
	}), rc.cors), nil
}

// guard enforces, before routing, what REST clients get wrong most and
// needs no body: its declared size (413), its content type (415) and the
// response format it accepts (406). It answers FHIR's _format and _pretty
// itself (see format.go) and hands a type-level PUT or DELETE's query to
// the conditional handlers as their criteria. Admission
// (admission.middleware) reads the body after routing.
func guard(next http.Handler, maxBody int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fhir/r4/" {
			r.URL.Path = "/fhir/r4"
		}
		fp := takeFormatParams(r)
		if fp.pretty {
			pw := &prettyWriter{ResponseWriter: w}
			defer pw.finish()
			w = pw
		}
		if hasBody(r) {
			if r.ContentLength > maxBody {
				tooLarge(w, maxBody)
				return
			}
			if searchPost(r) {
				if r.ContentLength != 0 && !formContentType(r.Header.Get("Content-Type")) {
					writeOutcome(w, http.StatusUnsupportedMediaType, outcomeJSON(issue{Severity: "error", Code: "not-supported",
						Diagnostics: "POST _search takes a form: Content-Type application/x-www-form-urlencoded"}))
					return
				}
				r.Header.Set("Content-Type", formType)
			} else if r.Method == http.MethodPatch {
				if r.ContentLength != 0 && !jsonPatchContentType(r.Header.Get("Content-Type")) {
					writeOutcome(w, http.StatusUnsupportedMediaType, outcomeJSON(issue{Severity: "error", Code: "not-supported",
						Diagnostics: "send a JSON Patch: Content-Type application/json-patch+json (FHIRPath Patch is not supported)"}))
					return
				}
				// Decoded by the JSON Patch marshaler, which tells the
				// handler what it carries.
				r.Header.Set("Content-Type", jsonPatchType)
			} else {
				if r.ContentLength != 0 && !fhirContentType(r.Header.Get("Content-Type")) {
					writeOutcome(w, http.StatusUnsupportedMediaType, outcomeJSON(issue{Severity: "error", Code: "not-supported",
						Diagnostics: "send FHIR JSON: Content-Type application/fhir+json"}))
					return
				}
				// One marshaler serves every FHIR media type; tell
				// grpc-gateway it is this one.
				r.Header.Set("Content-Type", fhirJSON)
			}
		}
		if strings.HasPrefix(r.URL.Path, "/fhir/r4") {
			if (fp.hasFormat && !jsonFormat(fp.format)) || (!fp.hasFormat && !acceptsJSON(r.Header.Values("Accept"))) {
				writeError(w, notAcceptable())
				return
			}
			if searchGet(r) || searchPost(r) || bulkKickOff(r) {
				// A search's parameters are open-ended: the whole query
				// travels as one field, parsed by the search itself.
				r.URL.RawQuery = "query=" + url.QueryEscape(r.URL.RawQuery)
			}
			if typeLevel(r) && (r.Method == http.MethodPut || r.Method == http.MethodDelete) {
				// PUT/DELETE [type]?[criteria]: the whole query is the
				// criteria, however the client wrote it.
				r.URL.RawQuery = "criteria=" + url.QueryEscape(r.URL.RawQuery)
			}
		}
		next.ServeHTTP(w, r)
	})
}

// searchGet reports whether r is a GET search: [base]?, [type]?,
// Patient/[id]/[type]? or Patient/[id]/$everything.
func searchGet(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	if r.URL.Path == "/fhir/r4" {
		return true
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/fhir/r4/")
	if !ok {
		return false
	}
	segs := strings.Split(rest, "/")
	switch len(segs) {
	case 1:
		return segs[0] != "metadata" && segs[0] != "_history"
	case 3:
		return segs[0] == "Patient" && (segs[2] == "$everything" || fhir.IsResourceType(segs[2]))
	}
	return false
}

// bulkKickOff reports whether r is a Bulk Data kick-off, whose parameters
// travel as one field like a search's.
func bulkKickOff(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodPost) && strings.HasSuffix(r.URL.Path, "/$export")
}

// searchPost reports whether r is a POST [type]/_search, [base]/_search or
// Patient/[id]/[type]/_search.
func searchPost(r *http.Request) bool {
	return r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/fhir/r4/") && strings.HasSuffix(r.URL.Path, "/_search")
}

// formType is the media type of a POST _search body.
const formType = "application/x-www-form-urlencoded"

func formContentType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == formType
}

// typeLevel reports whether r's path is /fhir/r4/{type}.
func typeLevel(r *http.Request) bool {
	rest, ok := strings.CutPrefix(r.URL.Path, "/fhir/r4/")
	return ok && rest != "" && !strings.Contains(rest, "/")
}

// hasBody reports whether r is a request whose body the gateway reads.
func hasBody(r *http.Request) bool {
	return r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch
}

// admission decides, per routed request and before its body is read,
// whether to serve it: the bearer token (public routes excepted), the
// client's rate and concurrency, and room in the global body budget. Only
// then is the body read, once, and handed to the raw-body decoder without
// a copy. The gRPC interceptor authenticates again (gRPC clients come
// straight to it); this layer's job is that nobody without a valid token
// makes the gateway read, or hold, a body.
type admission struct {
	log      *slog.Logger
	verifier tokenVerifier
	maxBody  int64
	clients  *clientLimits // by client id
	ips      *clientLimits // by remote IP: refused tokens and public routes
	budget   *bodyBudget
}

func newAdmission(rc restConfig) *admission {
	return &admission{
		log:      rc.log,
		verifier: rc.verifier,
		maxBody:  rc.maxBody,
		clients:  newClientLimits(rc.limits, maxTrackedClients, true),
		ips:      newClientLimits(rc.limits, maxTrackedIPs, false),
		budget:   newBodyBudget(rc.limits.MaxBodyBytesInFlight),
	}
}

func (a *admission) middleware(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		var leave func()
		var fe *fhirError
		if isPublicRoute(r) {
			leave, fe = a.ips.enter(remoteIP(r))
		} else if p, err := authenticate(r.Context(), a.verifier, r.Header.Get("Authorization")); err != nil {
			// The reason only: never the token or its claims.
			a.log.WarnContext(r.Context(), "token refused", slog.String("reason", err.Error()))
			// Refused without reading the body. Floods of refusals are
			// bounded per remote IP, before the answer is rendered.
			if leave, fe = a.ips.enter(remoteIP(r)); fe == nil {
				leave()
				fe = asFHIRError(r.Context(), err)
			}
		} else {
			leave, fe = a.clients.enter(p.ClientID)
		}
		if fe != nil {
			writeError(w, fe)
			return
		}
		defer leave()
		if hasBody(r) {
			held, fe := a.readBody(w, r)
			if fe != nil {
				writeError(w, fe)
				return
			}
			defer held.release()
		}
		next(w, r, params)
	}
}

// readBody takes room for r's body in the budget (its Content-Length, or
// the body limit when it is chunked), reads it, and replaces r.Body with
// the bytes read. The room is held until the request is answered: the
// body, and what is decoded from it, live that long.
func (a *admission) readBody(w http.ResponseWriter, r *http.Request) (*heldBytes, *fhirError) {
	want := r.ContentLength
	if want < 0 {
		want = a.maxBody
	}
	held, fe := a.budget.acquire(r.Context(), want)
	if fe != nil {
		return nil, fe
	}
	body := http.MaxBytesReader(w, r.Body, a.maxBody)
	var data []byte
	var err error
	if r.ContentLength > 0 {
		// One allocation of the declared size, not ReadAll's doublings.
		data = make([]byte, r.ContentLength)
		_, err = io.ReadFull(body, data)
	} else {
		data, err = io.ReadAll(body)
	}
	var mbe *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &mbe):
		held.release()
		return nil, tooLargeError(a.maxBody)
	case errors.As(err, &ne) && ne.Timeout():
		held.release()
		return nil, failure(http.StatusRequestTimeout, "timeout", "", "the request body did not arrive in time")
	case err != nil:
		held.release()
		return nil, failure(http.StatusBadRequest, "structure", "", "could not read the request body")
	}
	held.shrink(int64(len(data)))
	r.Body = &bodyBytes{Reader: bytes.NewReader(data), data: data}
	return held, nil
}

// publicRoutes are "METHOD /path" of the REST routes of publicMethods,
// read from their google.api.http options so the two cannot disagree.
var publicRoutes = func() map[string]bool {
	routes := map[string]bool{}
	for m := range publicMethods {
		name := protoreflect.FullName(strings.ReplaceAll(strings.TrimPrefix(m, "/"), "/", "."))
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(name)
		if err != nil {
			panic(fmt.Sprintf("public method %s: %v", m, err))
		}
		rule, _ := proto.GetExtension(d.(protoreflect.MethodDescriptor).Options(), annotations.E_Http).(*annotations.HttpRule)
		switch {
		case rule.GetGet() != "":
			routes["GET "+rule.GetGet()] = true
		default:
			panic(fmt.Sprintf("public method %s: not a GET route", m))
		}
	}
	return routes
}()

// isPublicRoute reports whether the route r was matched to serves a
// method of publicMethods.
func isPublicRoute(r *http.Request) bool {
	pat, ok := runtime.HTTPPattern(r.Context())
	return ok && publicRoutes[r.Method+" "+pat.String()]
}

func tooLarge(w http.ResponseWriter, maxBody int64) { writeError(w, tooLargeError(maxBody)) }

func tooLargeError(maxBody int64) *fhirError {
	return failure(http.StatusRequestEntityTooLarge, "too-costly", "",
		"the request body exceeds the limit of "+strconv.FormatInt(maxBody, 10)+" bytes")
}

// jsonPatchContentType accepts the JSON Patch media type (in UTF-8).
func jsonPatchContentType(ct string) bool {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return false
	}
	return mt == jsonPatchType
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
// Q3). contentType is the media type a decoded body carries: FHIR JSON
// unless set (JSON Patch for PATCH).
type rawBody struct{ contentType string }

var httpBodyMarshaler = &runtime.HTTPBodyMarshaler{Marshaler: &runtime.JSONPb{}}

func (rawBody) ContentType(v any) string { return httpBodyMarshaler.ContentType(v) }

func (rawBody) Marshal(v any) ([]byte, error) { return httpBodyMarshaler.Marshal(v) }

func (m rawBody) Unmarshal(data []byte, v any) error {
	return m.NewDecoder(bytes.NewReader(data)).Decode(v)
}

func (rawBody) NewEncoder(w io.Writer) runtime.Encoder { return httpBodyMarshaler.NewEncoder(w) }

func (m rawBody) NewDecoder(r io.Reader) runtime.Decoder {
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
		if m.contentType != "" {
			hb.ContentType = m.contentType
		}
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
	case "if-none-exist", "if-match", "if-none-match", "prefer", "idempotency-key", "x-request-id", purposeHeader,
		"traceparent", "tracestate": // W3C trace context, for Deps.Tracing
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

// rawErrors are the answers net/http writes straight to the connection,
// in plain text, when a request fails before any handler runs: headers over
// hardMaxHeaderBytes, or a malformed request. fhirErrorConn sends an
// OperationOutcome instead. The texts are net/http's (server.go, c.serve);
// TestRawErrorsAreOperationOutcomes fails if they change.
var rawErrors = func() map[string][]byte {
	const plain = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
	m := map[string][]byte{}
	for _, e := range []struct {
		status      int
		code, diags string
	}{
		{http.StatusRequestHeaderFieldsTooLarge, "too-long", "the request line and headers are too large"},
		{http.StatusBadRequest, "structure", "the request is not valid HTTP"},
	} {
		line := strconv.Itoa(e.status) + " " + http.StatusText(e.status)
		body := outcomeJSON(issue{Severity: "error", Code: e.code, Diagnostics: e.diags})
		m["HTTP/1.1 "+line+plain+line] = fmt.Appendf(nil, "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
			line, fhirJSON, len(body), body)
	}
	return m
}()

// fhirErrorListener hands out connections whose raw net/http errors are
// OperationOutcomes.
type fhirErrorListener struct{ net.Listener }

func (l fhirErrorListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return fhirErrorConn{c}, nil
}

// fhirErrorConn rewrites a write that is exactly one of rawErrors. net/http
// writes those in one call on the bare connection, while responses of
// handlers always carry a Date header, so nothing else matches.
type fhirErrorConn struct{ net.Conn }

func (c fhirErrorConn) Write(p []byte) (int, error) {
	if len(p) < 256 && bytes.HasPrefix(p, []byte("HTTP/1.1 4")) {
		if alt, ok := rawErrors[string(p)]; ok {
			if _, err := c.Conn.Write(alt); err != nil {
				return 0, err
			}
			return len(p), nil
		}
	}
	return c.Conn.Write(p)
}

// CloseWrite half-closes the connection, as net/http does after a raw
// error so the client can read it before the connection goes.
func (c fhirErrorConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// ReadFrom keeps the connection's sendfile/splice path for bodies
// handlers copy from files.
func (c fhirErrorConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

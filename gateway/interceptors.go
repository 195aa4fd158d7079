package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"runtime/debug"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/fhiranchor/fhiranchor/access"
	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/policy"
)

// purposeHeader lets a client state the purpose of one request; it
// overrides the token's purpose_of_use claim.
const purposeHeader = "x-purpose-of-use"

type principalKey struct{}

func principalFrom(ctx context.Context) (auth.Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(auth.Principal)
	return p, ok
}

// tokenVerifier checks bearer tokens; *auth.Verifier is one. ctx bounds
// a fetch of an identity provider's keys.
type tokenVerifier interface {
	VerifyContext(ctx context.Context, token string) (auth.Principal, error)
}

// publicMethods need no token: a CapabilityStatement tells clients how to
// authenticate, so it must be readable without authenticating.
var publicMethods = map[string]bool{
	"/fhiranchor.v1.FHIRService/Capabilities": true,
	// Checkpoints and consistency proofs are public, as a transparency
	// log's are: they hold roots and sizes only.
	"/fhiranchor.v1.LogService/ListCheckpoints": true,
	"/fhiranchor.v1.LogService/GetConsistency":  true,
	// The key that verifies the signed checkpoints is public by nature.
	"/fhiranchor.v1.LogService/GetLogKey": true,
}

// interceptor is the one unary interceptor chain every call passes through,
// gRPC and REST alike: deadline, recover, authenticate, call, map errors to
// FHIR outcomes, log. Logs carry the method, status, duration and client
// id, never request or response content. timeout (if positive) is every
// call's deadline: the handler's context, and so its vault transaction,
// ends with it. direct (nil: none) admits the calls of clients that speak
// gRPC to the gateway's port, per client id (and per peer IP before a
// token is checked), as the REST layer admits REST calls before it reads
// a body; REST calls arrive over the in-process connection and are not
// counted twice.
func interceptor(v tokenVerifier, log *slog.Logger, timeout time.Duration, direct *grpcLimits, m *Metrics) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		start := time.Now()
		// The REST layer has checked (or made) the id of a REST call; a
		// gRPC client's is checked here, and echoed in the response header.
		id := requestID(header(ctx, requestIDHeader))
		ctx = withRequestID(ctx, id)
		_ = grpc.SetHeader(ctx, metadata.Pairs(requestIDHeader, id))
		var tally *ingestTally
		if m != nil {
			tally = &ingestTally{} // its map is made by the first add: reads store nothing
			ctx = context.WithValue(ctx, ingestKey{}, tally)
		}
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		client := ""
		defer func() {
			if r := recover(); r != nil {
				// The panic value may quote input; log only where it happened.
				log.ErrorContext(ctx, "panic in handler", slog.String("method", info.FullMethod), slog.String("stack", string(debug.Stack())))
				err = toStatus(ctx, failure(500, "exception", "", "internal error"))
			}
			code := status.Code(err)
			level := slog.LevelInfo
			if code == codes.Internal || code == codes.Unknown {
				level = slog.LevelError
			}
			took := time.Since(start)
			log.LogAttrs(ctx, level, "rpc",
				slog.String("method", info.FullMethod),
				slog.String("code", code.String()),
				slog.String("client", client),
				slog.Duration("took", took))
			if m != nil {
				m.request(info.FullMethod, code.String(), took)
				if err == nil {
					m.stored(tally.types)
				}
			}
		}()
		// Direct gRPC calls are admitted like REST ones: by client id once
		// the token checks out; by peer IP for public methods and refused
		// tokens, so floods without a token are bounded too.
		viaGRPC := direct != nil && !inProcess(ctx)
		byIP := func() *fhirError {
			leave, fe := direct.ips.enter(peerIP(ctx))
			if fe == nil {
				leave()
			}
			return fe
		}
		if viaGRPC && publicMethods[info.FullMethod] {
			if fe := byIP(); fe != nil {
				return nil, toStatus(ctx, fe)
			}
		}
		if !publicMethods[info.FullMethod] {
			p, err := authenticate(ctx, v, header(ctx, "authorization"))
			if err != nil {
				// The reason only: the auth package's reasons are fixed
				// phrases, never a token or its claims.
				log.WarnContext(ctx, "token refused", slog.String("method", info.FullMethod), slog.String("reason", err.Error()))
				if viaGRPC {
					if fe := byIP(); fe != nil {
						return nil, toStatus(ctx, fe)
					}
				}
				return nil, toStatus(ctx, err)
			}
			client = p.ClientID
			if viaGRPC {
				leave, fe := direct.clients.enter(p.ClientID)
				if fe != nil {
					return nil, toStatus(ctx, fe)
				}
				defer leave()
			}
			if err := admit(info.FullMethod, p); err != nil {
				return nil, toStatus(ctx, err)
			}
			if h := header(ctx, purposeHeader); h != "" && !policy.ValidPurpose(h) {
				return nil, toStatus(ctx, failure(http.StatusBadRequest, "code-invalid", "",
					"the X-Purpose-Of-Use header is not a code of the v3 PurposeOfUse value set"))
			}
			ctx = context.WithValue(ctx, principalKey{}, p)
			ctx = context.WithValue(ctx, callerKey{}, callerOf(ctx, p))
		}
		resp, err = handler(ctx, req)
		return resp, toStatus(ctx, err)
	}
}

// ingestTally counts the versions a call stores, by type, for
// Metrics.stored; the interceptor puts one in a call's context.
type ingestTally struct {
	mu    sync.Mutex
	types map[string]int
}

type ingestKey struct{}

// tallyFrom returns the call's tally, or nil.
func tallyFrom(ctx context.Context) *ingestTally {
	t, _ := ctx.Value(ingestKey{}).(*ingestTally)
	return t
}

// reset forgets what an attempt stored: a vault transaction may run again.
func (t *ingestTally) reset() {
	if t == nil {
		return
	}
	t.mu.Lock()
	clear(t.types)
	t.mu.Unlock()
}

func (t *ingestTally) add(typ string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	if t.types == nil {
		t.types = map[string]int{}
	}
	t.types[typ]++
	t.mu.Unlock()
}

// authenticate verifies the bearer token of an Authorization header and
// its claims. The REST layer calls it before it reads a body, the
// interceptor for every call.
func authenticate(ctx context.Context, v tokenVerifier, authorization string) (auth.Principal, error) {
	tok, err := auth.FromAuthorizationHeader(authorization)
	if err != nil {
		return auth.Principal{}, err
	}
	p, err := v.VerifyContext(ctx, tok)
	if err != nil {
		return auth.Principal{}, err
	}
	if err := checkClaims(p); err != nil {
		return auth.Principal{}, err
	}
	return p, nil
}

// checkClaims refuses a token whose claims would put free text where the
// gateway records codes and references forever: the purpose, the FHIR user,
// the organization and the roles are copied into every anchored decision
// record.
func checkClaims(p auth.Principal) error {
	switch {
	case p.PurposeOfUse != "" && !policy.ValidPurpose(p.PurposeOfUse):
		return fmt.Errorf("%w: purpose_of_use is not a code of the v3 PurposeOfUse value set", auth.ErrInvalidToken)
	case p.FHIRUser != "" && !fhir.ValidLiteralReference(p.FHIRUser):
		return fmt.Errorf("%w: fhirUser is not a FHIR reference", auth.ErrInvalidToken)
	case p.Organization != "" && !fhir.ValidLiteralReference(p.Organization):
		return fmt.Errorf("%w: organization is not a FHIR reference", auth.ErrInvalidToken)
	}
	for _, r := range p.Roles {
		if !roleCode.MatchString(r) {
			return fmt.Errorf("%w: subject_role holds something other than codes", auth.ErrInvalidToken)
		}
	}
	return nil
}

// roleCode is a role of the subject_role claim: a code or a system|code,
// no whitespace.
var roleCode = regexp.MustCompile(`^[A-Za-z0-9\-._:/|]{1,128}$`)

// callerOf is the access.Caller of an authenticated request: the token's
// claims, with the purpose of the X-Purpose-Of-Use header when one is sent.
func callerOf(ctx context.Context, p auth.Principal) access.Caller {
	c := access.Caller{ClientID: p.ClientID, Actor: p.FHIRUser, Organization: p.Organization, Roles: p.Roles, Purpose: p.PurposeOfUse}
	if h := header(ctx, purposeHeader); h != "" {
		c.Purpose = h
	}
	return c
}

// grpcLimits are the per-client and per-IP limits of direct gRPC calls.
type grpcLimits struct {
	clients *clientLimits
	ips     *clientLimits
}

func newGRPCLimits(l Limits) *grpcLimits {
	return &grpcLimits{clients: newClientLimits(l, maxTrackedClients, true), ips: newClientLimits(l, maxTrackedIPs, false)}
}

// inProcess reports whether a call came from the REST layer, which admits
// its calls itself: over the in-process connection it forwards through (a
// bufconn listener), or served directly (direct.go).
func inProcess(ctx context.Context) bool {
	if ctx.Value(directKey{}) != nil {
		return true
	}
	p, ok := peer.FromContext(ctx)
	return ok && p.Addr != nil && p.Addr.Network() == "bufconn"
}

// peerIP is the host of a direct gRPC call's peer.
func peerIP(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(p.Addr.String())
	if err != nil {
		return p.Addr.String()
	}
	return host
}

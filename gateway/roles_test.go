package gateway_test

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/gateway"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
	"github.com/fhiranchor/fhiranchor/policy"
	fhiranchorv1 "github.com/fhiranchor/fhiranchor/proto/fhiranchor/v1"
)

// The roles of the matrix, in the order they are tried.
const (
	roleEHR         = "ehr"
	rolePolicyAdmin = "policy-admin"
	roleAuditor     = "auditor"
	rolePatient     = "patient"
	roleOperator    = "operator"
	roleResearcher  = "researcher"
	roleNoScope     = "no-scope"
)

var matrixRoles = []string{roleEHR, rolePolicyAdmin, roleAuditor, rolePatient, roleOperator, roleResearcher, roleNoScope}

// matrixRow is what one method expects of every role.
type matrixRow struct {
	// req would succeed for an admitted caller, as far as one request can.
	req proto.Message
	// public methods admit every role and callers without a token.
	public bool
	// allow lists the admitted roles of a non-public method.
	allow []string
	// ok are the codes an admitted caller may get; nil means OK only. A
	// code other than OK proves the call passed the role check (a 404 for
	// a patient that does not exist, a 409 for a duplicate).
	ok []codes.Code
}

// TestRoleMatrix calls every gRPC method of the server with every role's
// token and with none: admitted roles are never refused, every other role
// gets 403 with an OperationOutcome, and callers without a token get 401
// except on public methods. The methods are read from the generated
// descriptors, so a method added without a row here fails the test.
func TestRoleMatrix(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	mint := func(client string, fhirUser string, scopes ...string) string {
		return g.TokenFor(t, auth.Claims{ClientID: client, Scopes: scopes, TTL: time.Hour, PurposeOfUse: "TREAT", FHIRUser: fhirUser})
	}
	ehr := mint("ehr-client", "", "system/*.read", "system/*.write")
	seeded := seedRolePatient(t, g, ehr, `{"resourceType":"Patient","gender":"female"}`)
	throwaway := seedRolePatient(t, g, ehr, `{"resourceType":"Patient","gender":"male"}`)
	tokens := map[string]string{
		roleEHR:         ehr,
		rolePolicyAdmin: mint("policy-admin", "", gateway.PolicyAdminScope),
		roleAuditor:     mint("auditor", "", gateway.AuditScope),
		rolePatient:     mint("patient-app", "Patient/"+seeded, gateway.PatientSelfScope),
		roleOperator:    mint("operator", "", gateway.AdminScope),
		roleResearcher:  mint("researcher", "", gateway.CohortQueryScope, gateway.CohortExportScope),
		roleNoScope:     mint("no-scope", "", "openid"),
	}

	// A read, so the seeded patient has a read decision too.
	if r := g.Do(t, http.MethodGet, "/Patient/"+seeded, nil, "Authorization", "Bearer "+ehr); r.Status != http.StatusOK {
		t.Fatalf("read the seeded patient: %d %s", r.Status, r.Body)
	}
	ownDecision := firstDecision(t, g, tokens[roleAuditor], "Patient/"+seeded)
	otherDecision := firstDecision(t, g, tokens[roleAuditor], "Patient/"+throwaway)

	// Public consistency proofs need checkpoint sizes.
	waitReceipt(t, g, ehr, g.Root+"/v1/receipts/Patient/"+seeded+"/_history/1")
	var cps struct{ Checkpoints []anchor.Checkpoint }
	if st := getJSON(t, g, "", "/v1/log/checkpoints", &cps); st != http.StatusOK || len(cps.Checkpoints) == 0 {
		t.Fatalf("checkpoints: %d, %d", st, len(cps.Checkpoints))
	}
	from, to := cps.Checkpoints[0].Size, cps.Checkpoints[len(cps.Checkpoints)-1].Size

	files, err := policy.ReadFiles(policy.DefaultBundle())
	if err != nil {
		t.Fatal(err)
	}
	fhirBody := func(s string) *httpbody.HttpBody {
		return &httpbody.HttpBody{ContentType: "application/fhir+json", Data: []byte(s)}
	}
	everyone := matrixRoles
	smart := []string{roleEHR}
	policyReaders := []string{rolePolicyAdmin, roleAuditor}
	policyAdmins := []string{rolePolicyAdmin}
	recordReaders := []string{roleAuditor, rolePatient}
	researchers := []string{roleResearcher}
	jsonBody := func(s string) *httpbody.HttpBody {
		return &httpbody.HttpBody{ContentType: "application/json", Data: []byte(s)}
	}
	matrix := map[string]matrixRow{
		"/fhiranchor.v1.FHIRService/Capabilities": {req: &fhiranchorv1.CapabilitiesRequest{}, public: true},
		"/fhiranchor.v1.FHIRService/Transaction": {allow: smart, req: fhirBody(`{"resourceType":"Bundle","type":"transaction","entry":[
			{"resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}}]}`)},
		"/fhiranchor.v1.FHIRService/Create": {allow: smart,
			req: &fhiranchorv1.CreateRequest{Type: "Patient", Body: fhirBody(`{"resourceType":"Patient","active":true}`)}},
		"/fhiranchor.v1.FHIRService/Update": {allow: smart,
			req: &fhiranchorv1.UpdateRequest{Type: "Patient", Id: seeded, Body: fhirBody(`{"resourceType":"Patient","id":"` + seeded + `","gender":"female"}`)}},
		// The first delete answers 200, the next ones 204: both OK.
		"/fhiranchor.v1.FHIRService/Delete": {allow: smart, req: &fhiranchorv1.DeleteRequest{Type: "Patient", Id: throwaway}},
		"/fhiranchor.v1.FHIRService/ConditionalUpdate": {allow: smart, req: &fhiranchorv1.ConditionalUpdateRequest{Type: "Patient",
			Criteria: "_id=" + seeded, Body: fhirBody(`{"resourceType":"Patient","id":"` + seeded + `","gender":"female"}`)}},
		// Matches nothing: 204, OK.
		"/fhiranchor.v1.FHIRService/ConditionalDelete": {allow: smart, req: &fhiranchorv1.ConditionalDeleteRequest{Type: "Patient", Criteria: "_id=nobody"}},
		"/fhiranchor.v1.FHIRService/Patch": {allow: smart, req: &fhiranchorv1.PatchRequest{Type: "Patient", Id: seeded,
			Body: &httpbody.HttpBody{ContentType: "application/json-patch+json", Data: []byte(`[{"op":"add","path":"/gender","value":"female"}]`)}}},
		"/fhiranchor.v1.FHIRService/Read":              {allow: smart, req: &fhiranchorv1.ReadRequest{Type: "Patient", Id: seeded}},
		"/fhiranchor.v1.FHIRService/VRead":             {allow: smart, req: &fhiranchorv1.VReadRequest{Type: "Patient", Id: seeded, VersionId: "1"}},
		"/fhiranchor.v1.FHIRService/History":           {allow: smart, req: &fhiranchorv1.HistoryRequest{Type: "Patient", Id: seeded}},
		"/fhiranchor.v1.FHIRService/TypeHistory":       {allow: smart, req: &fhiranchorv1.TypeHistoryRequest{Type: "Patient"}},
		"/fhiranchor.v1.FHIRService/SystemHistory":     {allow: smart, req: &fhiranchorv1.SystemHistoryRequest{}},
		"/fhiranchor.v1.FHIRService/Search":            {allow: smart, req: &fhiranchorv1.SearchRequest{Type: "Patient", Query: "_id=" + seeded}},
		"/fhiranchor.v1.FHIRService/SearchSystem":      {allow: smart, req: &fhiranchorv1.SearchRequest{Query: "_type=Patient"}},
		"/fhiranchor.v1.FHIRService/SearchSystemPost":  {allow: smart, req: &fhiranchorv1.SearchRequest{Query: "_type=Patient"}},
		"/fhiranchor.v1.FHIRService/SearchCompartment": {allow: smart, req: &fhiranchorv1.CompartmentSearchRequest{Id: seeded, Type: "Observation"}},
		"/fhiranchor.v1.FHIRService/Everything":        {allow: smart, req: &fhiranchorv1.EverythingRequest{Id: seeded}},

		"/fhiranchor.v1.LogService/GetReceipt":      {allow: smart, req: &fhiranchorv1.GetReceiptRequest{Type: "Patient", Id: seeded, VersionId: "1"}},
		"/fhiranchor.v1.LogService/GetEvidence":     {allow: smart, req: &fhiranchorv1.GetEvidenceRequest{Type: "Patient", Id: seeded, VersionId: "1"}},
		"/fhiranchor.v1.LogService/GetLeafReceipt":  {allow: everyone, req: &fhiranchorv1.GetLeafReceiptRequest{LeafIndex: 0}},
		"/fhiranchor.v1.LogService/GetLeafEvidence": {allow: recordReaders, req: &fhiranchorv1.GetLeafEvidenceRequest{LeafIndex: ownDecision}},
		"/fhiranchor.v1.LogService/ListCheckpoints": {public: true, req: &fhiranchorv1.ListCheckpointsRequest{}},
		"/fhiranchor.v1.LogService/GetConsistency":  {public: true, req: &fhiranchorv1.GetConsistencyRequest{From: from, To: to}},
		"/fhiranchor.v1.LogService/GetLogKey":       {public: true, req: &fhiranchorv1.GetLogKeyRequest{}},

		// A patient never stored: 404 proves the operator was admitted.
		"/fhiranchor.v1.AdminService/ErasePatient": {allow: []string{roleOperator}, ok: []codes.Code{codes.NotFound},
			req: &fhiranchorv1.ErasePatientRequest{Id: "never-stored"}},

		"/fhiranchor.v1.PolicyService/ListPolicies":    {allow: policyReaders, req: &fhiranchorv1.ListPoliciesRequest{}},
		"/fhiranchor.v1.PolicyService/GetPolicy":       {allow: policyReaders, req: &fhiranchorv1.GetPolicyRequest{Version: 1}},
		"/fhiranchor.v1.PolicyService/ListActivations": {allow: policyReaders, req: &fhiranchorv1.ListActivationsRequest{}},
		// The default bundle is stored as version 1 already: 409 duplicate.
		"/fhiranchor.v1.PolicyService/CreatePolicy": {allow: policyAdmins, ok: []codes.Code{codes.OK, codes.Aborted},
			req: &fhiranchorv1.CreatePolicyRequest{Files: files}},
		"/fhiranchor.v1.PolicyService/TestPolicy": {allow: policyAdmins, req: &fhiranchorv1.TestPolicyRequest{Files: files}},
		// Version 1 is the active one: 409 proves the admin was admitted.
		"/fhiranchor.v1.PolicyService/ActivatePolicy": {allow: policyAdmins, ok: []codes.Code{codes.Aborted},
			req: &fhiranchorv1.ActivatePolicyRequest{Version: 1}},
		"/fhiranchor.v1.PolicyService/RollbackPolicy": {allow: policyAdmins, ok: []codes.Code{codes.OK, codes.Aborted},
			req: &fhiranchorv1.RollbackPolicyRequest{}},
		"/fhiranchor.v1.PolicyService/Evaluate": {allow: policyAdmins,
			req: &fhiranchorv1.EvaluateRequest{Action: "read", Purpose: "TREAT", Patient: "Patient/" + seeded}},

		"/fhiranchor.v1.CohortService/CountCohort":     {allow: researchers, req: jsonBody(`{"criteria": {"gender": "female"}}`)},
		"/fhiranchor.v1.CohortService/BreakdownCohort": {allow: researchers, req: jsonBody(`{"criteria": {"gender": "female"}, "breakdown": ["ageBand"]}`)},
		"/fhiranchor.v1.CohortService/ExportCohort":    {allow: researchers, req: jsonBody(`{"criteria": {"gender": "female"}, "type": ["Patient"]}`)},
		// Exports that do not exist: 404 proves the researcher was admitted.
		"/fhiranchor.v1.CohortService/GetExport": {allow: researchers, ok: []codes.Code{codes.NotFound},
			req: &fhiranchorv1.GetExportRequest{Id: strings.Repeat("0", 32)}},
		"/fhiranchor.v1.CohortService/GetExportFile": {allow: researchers, ok: []codes.Code{codes.NotFound},
			req: &fhiranchorv1.GetExportFileRequest{Id: strings.Repeat("0", 32), Name: "Patient.ndjson"}},
		"/fhiranchor.v1.CohortService/DeleteExport": {allow: researchers, ok: []codes.Code{codes.NotFound},
			req: &fhiranchorv1.DeleteExportRequest{Id: strings.Repeat("0", 32)}},

		// Kick-offs without Prefer: respond-async: 400 proves admission.
		"/fhiranchor.v1.BulkService/ExportSystem": {allow: smart, ok: []codes.Code{codes.InvalidArgument},
			req: &fhiranchorv1.BulkExportRequest{Query: "_type=Patient"}},
		"/fhiranchor.v1.BulkService/ExportPatients": {allow: smart, ok: []codes.Code{codes.InvalidArgument},
			req: &fhiranchorv1.BulkExportRequest{Query: "_type=Patient"}},
		"/fhiranchor.v1.BulkService/ExportGroup": {allow: []string{roleEHR, roleResearcher}, ok: []codes.Code{codes.InvalidArgument},
			req: &fhiranchorv1.BulkExportRequest{Id: "nobody"}},
		// Any client may ask after its own exports; none exists: 404.
		"/fhiranchor.v1.BulkService/GetBulkStatus": {allow: everyone, ok: []codes.Code{codes.NotFound},
			req: &fhiranchorv1.GetBulkStatusRequest{Id: strings.Repeat("0", 32)}},
		"/fhiranchor.v1.BulkService/GetBulkFile": {allow: everyone, ok: []codes.Code{codes.NotFound},
			req: &fhiranchorv1.GetBulkFileRequest{Id: strings.Repeat("0", 32), Name: "Patient.ndjson"}},
		"/fhiranchor.v1.BulkService/DeleteBulk": {allow: everyone, ok: []codes.Code{codes.NotFound},
			req: &fhiranchorv1.DeleteBulkRequest{Id: strings.Repeat("0", 32)}},

		"/fhiranchor.v1.DecisionService/ListDecisions":     {allow: recordReaders, req: &fhiranchorv1.ListDecisionsRequest{}},
		"/fhiranchor.v1.DecisionService/GetDecision":       {allow: recordReaders, req: &fhiranchorv1.GetDecisionRequest{LeafIndex: ownDecision}},
		"/fhiranchor.v1.DecisionService/ListConsentEvents": {allow: recordReaders, req: &fhiranchorv1.ListConsentEventsRequest{PatientId: seeded}},
	}

	conn, err := grpc.NewClient(g.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	call := func(method protoreflect.MethodDescriptor, name, tok string, req proto.Message) (proto.Message, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if tok != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
		}
		mt, err := protoregistry.GlobalTypes.FindMessageByName(method.Output().FullName())
		if err != nil {
			t.Fatalf("%s: output type: %v", name, err)
		}
		out := mt.New().Interface()
		return out, conn.Invoke(ctx, name, req, out)
	}

	methods := serverMethods(t)
	for _, name := range slices.Sorted(maps.Keys(matrix)) {
		if _, ok := methods[name]; !ok {
			t.Errorf("matrix row %s names no method of the server", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(methods)) {
		md := methods[name]
		row, ok := matrix[name]
		if !ok {
			t.Errorf("%s has no row in the role matrix: say which roles may call it", name)
			continue
		}
		if got, want := row.req.ProtoReflect().Descriptor().FullName(), md.Input().FullName(); got != want {
			t.Errorf("%s: the row's request is a %s, the method takes a %s", name, got, want)
			continue
		}
		t.Run(string(md.Parent().Name())+"."+string(md.Name()), func(t *testing.T) {
			okCodes := row.ok
			if okCodes == nil {
				okCodes = []codes.Code{codes.OK}
			}
			_, err := call(md, name, "", row.req)
			if row.public {
				if c := status.Code(err); !slices.Contains(okCodes, c) {
					t.Errorf("no token on a public method: %v", err)
				}
			} else {
				checkRefusal(t, "no token", err, codes.Unauthenticated, http.StatusUnauthorized)
			}
			for _, role := range matrixRoles {
				_, err := call(md, name, tokens[role], row.req)
				if row.public || slices.Contains(row.allow, role) {
					if c := status.Code(err); c == codes.PermissionDenied || c == codes.Unauthenticated || !slices.Contains(okCodes, c) {
						t.Errorf("%s is admitted but got %v", role, err)
					}
					continue
				}
				checkRefusal(t, role, err, codes.PermissionDenied, http.StatusForbidden)
			}
		})
	}

	t.Run("patient sees only their own records", func(t *testing.T) {
		md := methods["/fhiranchor.v1.DecisionService/ListDecisions"]
		out, err := call(md, "/fhiranchor.v1.DecisionService/ListDecisions", tokens[rolePatient], &fhiranchorv1.ListDecisionsRequest{})
		if err != nil {
			t.Fatalf("list own decisions: %v", err)
		}
		var page struct {
			Decisions []struct {
				Record struct{ Patient string }
			}
		}
		if err := json.Unmarshal(out.(*httpbody.HttpBody).GetData(), &page); err != nil {
			t.Fatal(err)
		}
		if len(page.Decisions) == 0 {
			t.Error("the patient sees none of their own decisions")
		}
		for _, d := range page.Decisions {
			if d.Record.Patient != g.RecordRef("Patient", seeded) {
				t.Errorf("the patient was shown a decision about %s", d.Record.Patient)
			}
		}
		_, err = call(md, "/fhiranchor.v1.DecisionService/ListDecisions", tokens[rolePatient],
			&fhiranchorv1.ListDecisionsRequest{Patient: "Patient/other"})
		checkRefusal(t, "another patient's decisions", err, codes.PermissionDenied, http.StatusForbidden)
		_, err = call(methods["/fhiranchor.v1.DecisionService/GetDecision"], "/fhiranchor.v1.DecisionService/GetDecision",
			tokens[rolePatient], &fhiranchorv1.GetDecisionRequest{LeafIndex: otherDecision})
		checkRefusal(t, "another patient's decision", err, codes.PermissionDenied, http.StatusForbidden)
		_, err = call(methods["/fhiranchor.v1.LogService/GetLeafEvidence"], "/fhiranchor.v1.LogService/GetLeafEvidence",
			tokens[rolePatient], &fhiranchorv1.GetLeafEvidenceRequest{LeafIndex: otherDecision})
		checkRefusal(t, "another patient's record evidence", err, codes.PermissionDenied, http.StatusForbidden)
		// Leaf 0 is the default policy's activation: about no patient.
		_, err = call(methods["/fhiranchor.v1.LogService/GetLeafEvidence"], "/fhiranchor.v1.LogService/GetLeafEvidence",
			tokens[rolePatient], &fhiranchorv1.GetLeafEvidenceRequest{LeafIndex: 0})
		checkRefusal(t, "a record about no patient", err, codes.PermissionDenied, http.StatusForbidden)
		_, err = call(methods["/fhiranchor.v1.DecisionService/ListConsentEvents"], "/fhiranchor.v1.DecisionService/ListConsentEvents",
			tokens[rolePatient], &fhiranchorv1.ListConsentEventsRequest{PatientId: throwaway})
		checkRefusal(t, "another patient's consent events", err, codes.PermissionDenied, http.StatusForbidden)
	})

	t.Run("REST", func(t *testing.T) {
		cases := []struct {
			role, method, path string
			want               int
		}{
			{roleEHR, http.MethodGet, "/v1/policies", http.StatusForbidden},
			{roleEHR, http.MethodGet, "/v1/decisions", http.StatusForbidden},
			{roleAuditor, http.MethodPost, "/v1/patients/never-stored:erase", http.StatusForbidden},
			{roleAuditor, http.MethodGet, "/fhir/r4/Patient/" + seeded, http.StatusForbidden},
			{roleOperator, http.MethodPost, "/v1/policies:rollback", http.StatusForbidden},
			{rolePatient, http.MethodGet, "/v1/decisions?patient=Patient/other", http.StatusForbidden},
			{"", http.MethodGet, "/v1/policies", http.StatusUnauthorized},
			{"", http.MethodGet, "/fhir/r4/Patient/" + seeded, http.StatusUnauthorized},
		}
		for _, c := range cases {
			var body []byte
			if c.method == http.MethodPost {
				body = []byte("{}")
			}
			r := sendRoot(t, g, c.method, c.path, tokens[c.role], body)
			if r.Status != c.want {
				t.Errorf("%s %s as %q: %d, want %d: %s", c.method, c.path, c.role, r.Status, c.want, r.Body)
				continue
			}
			var oo struct{ ResourceType string }
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") ||
				json.Unmarshal(r.Body, &oo) != nil || oo.ResourceType != "OperationOutcome" {
				t.Errorf("%s %s as %q: %s %s, want an OperationOutcome", c.method, c.path, c.role, ct, r.Body)
			}
			if c.want == http.StatusUnauthorized && r.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s: 401 without WWW-Authenticate", c.method, c.path)
			}
		}
		if r := sendRoot(t, g, http.MethodGet, "/fhir/r4/metadata", "", nil); r.Status != http.StatusOK {
			t.Errorf("metadata without a token: %d", r.Status)
		}
	})
}

// serverMethods lists every method of every fhiranchor.v1 service by its
// full gRPC name ("/fhiranchor.v1.FHIRService/Read").
func serverMethods(t *testing.T) map[string]protoreflect.MethodDescriptor {
	t.Helper()
	out := map[string]protoreflect.MethodDescriptor{}
	add := func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			svc := fd.Services().Get(i)
			for j := range svc.Methods().Len() {
				m := svc.Methods().Get(j)
				out["/"+string(svc.FullName())+"/"+string(m.Name())] = m
			}
		}
		return true
	}
	for _, fd := range []protoreflect.FileDescriptor{fhiranchorv1.File_fhiranchor_v1_fhir_proto,
		fhiranchorv1.File_fhiranchor_v1_log_proto, fhiranchorv1.File_fhiranchor_v1_policy_proto} {
		add(fd)
	}
	// A new .proto file of the package counts too.
	protoregistry.GlobalFiles.RangeFilesByPackage("fhiranchor.v1", add)
	if len(out) < 20 {
		t.Fatalf("found only %d methods", len(out))
	}
	return out
}

// checkRefusal checks that err is a refusal with code want, whose details
// carry the HTTP status and an OperationOutcome.
func checkRefusal(t *testing.T, who string, err error, want codes.Code, httpStatus int) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != want {
		t.Errorf("%s: %v, want %v", who, err, want)
		return
	}
	var info *errdetails.ErrorInfo
	var body *httpbody.HttpBody
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			info = d
		case *httpbody.HttpBody:
			body = d
		}
	}
	if info == nil || info.GetDomain() != "fhiranchor.dev" || info.GetMetadata()["http_status"] != strconv.Itoa(httpStatus) {
		t.Errorf("%s: ErrorInfo %v, want http_status %d", who, info, httpStatus)
	}
	var oo struct {
		ResourceType string
		Issue        []struct{ Severity, Code string }
	}
	if body == nil || body.GetContentType() != "application/fhir+json" || json.Unmarshal(body.GetData(), &oo) != nil ||
		oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 || oo.Issue[0].Severity != "error" {
		t.Errorf("%s: no OperationOutcome in the details: %v", who, body)
	}
}

// seedRolePatient creates a Patient with the EHR token and returns its id.
func seedRolePatient(t *testing.T, g *testonly.Gateway, tok, body string) string {
	t.Helper()
	r := g.Do(t, http.MethodPost, "/Patient", []byte(body), "Authorization", "Bearer "+tok)
	if r.Status != http.StatusCreated {
		t.Fatalf("seed a patient: %d %s", r.Status, r.Body)
	}
	loc := r.Header.Get("Location")
	_, rest, _ := strings.Cut(loc, "/Patient/")
	id, _, _ := strings.Cut(rest, "/")
	if id == "" {
		t.Fatalf("seed a patient: Location %q", loc)
	}
	return id
}

// firstDecision returns the leaf index of the newest decision about patient.
func firstDecision(t *testing.T, g *testonly.Gateway, auditor, patient string) uint64 {
	t.Helper()
	var page struct{ Decisions []struct{ LeafIndex uint64 } }
	if st := getJSON(t, g, auditor, "/v1/decisions?patient="+patient, &page); st != http.StatusOK || len(page.Decisions) == 0 {
		t.Fatalf("decisions about %s: %d, %d", patient, st, len(page.Decisions))
	}
	return page.Decisions[0].LeafIndex
}

// sendRoot sends a request to a path under the server root; tok and body
// may be empty.
func sendRoot(t *testing.T, g *testonly.Gateway, method, path, tok string, body []byte) testonly.Response {
	t.Helper()
	if tok == "" {
		return g.DoRoot(t, method, path, body)
	}
	return g.DoRoot(t, method, path, body, "Authorization", "Bearer "+tok)
}

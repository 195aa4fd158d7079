package gateway

import (
	"net/http"
	"slices"
	"strings"

	"github.com/fhiranchor/fhiranchor/gateway/auth"
)

// Roles. A role is a set of scopes in the caller's token:
//
//   - EHR client: SMART system/ resource scopes (system/*.cruds,
//     system/Observation.rs...). The FHIR API and the receipts and evidence
//     of resource versions check them per resource type, in the handlers.
//   - Policy admin: PolicyAdminScope, for every PolicyService method.
//   - Auditor: AuditScope, to read policies and their history and to list
//     every decision and consent event.
//   - Patient: PatientSelfScope with a fhirUser claim Patient/<id>, to list
//     the decisions and consent events about that patient only.
//   - Operator: AdminScope, for AdminService (erasure).
//   - Researcher: CohortQueryScope for counts and breakdowns (aggregate
//     answers only), CohortExportScope for de-identified exports.
//
// Every other method needs
// one of the scopes methodScopes lists for it; a method in no table is
// refused, so an endpoint added without a rule fails closed.
const (
	PolicyAdminScope = "fhiranchor/policy.admin"
	AuditScope       = "fhiranchor/audit"
	PatientSelfScope = "fhiranchor/patient.self"
)

// resourceMethods check SMART resource scopes per type in their handlers.
var resourceMethods = map[string]bool{
	"/fhiranchor.v1.FHIRService/Transaction":       true,
	"/fhiranchor.v1.FHIRService/Create":            true,
	"/fhiranchor.v1.FHIRService/Update":            true,
	"/fhiranchor.v1.FHIRService/Delete":            true,
	"/fhiranchor.v1.FHIRService/ConditionalUpdate": true,
	"/fhiranchor.v1.FHIRService/ConditionalDelete": true,
	"/fhiranchor.v1.FHIRService/Patch":             true,
	"/fhiranchor.v1.FHIRService/Read":              true,
	"/fhiranchor.v1.FHIRService/VRead":             true,
	"/fhiranchor.v1.FHIRService/History":           true,
	"/fhiranchor.v1.FHIRService/Search":            true,
	"/fhiranchor.v1.FHIRService/SearchSystem":      true,
	"/fhiranchor.v1.FHIRService/SearchSystemPost":  true,
	"/fhiranchor.v1.FHIRService/SearchCompartment": true,
	"/fhiranchor.v1.FHIRService/Everything":        true,
	"/fhiranchor.v1.FHIRService/TypeHistory":       true,
	"/fhiranchor.v1.FHIRService/SystemHistory":     true,
	"/fhiranchor.v1.LogService/GetReceipt":         true,
	"/fhiranchor.v1.LogService/GetEvidence":        true,
	// Bulk Data export: the handlers check read scopes per type, or the
	// research scope for a cohort Group; status and files are the
	// kicking-off client's only.
	"/fhiranchor.v1.BulkService/ExportSystem":   true,
	"/fhiranchor.v1.BulkService/ExportPatients": true,
	"/fhiranchor.v1.BulkService/ExportGroup":    true,
	"/fhiranchor.v1.BulkService/GetBulkStatus":  true,
	"/fhiranchor.v1.BulkService/GetBulkFile":    true,
	"/fhiranchor.v1.BulkService/DeleteBulk":     true,
	// A leaf receipt holds hashes and an index only; any client may ask.
	"/fhiranchor.v1.LogService/GetLeafReceipt": true,
}

// methodScopes lists, for every other authenticated method, the scopes any
// one of which admits the caller.
var methodScopes = map[string][]string{
	"/fhiranchor.v1.PolicyService/ListPolicies":        {PolicyAdminScope, AuditScope},
	"/fhiranchor.v1.PolicyService/GetPolicy":           {PolicyAdminScope, AuditScope},
	"/fhiranchor.v1.PolicyService/ListActivations":     {PolicyAdminScope, AuditScope},
	"/fhiranchor.v1.PolicyService/CreatePolicy":        {PolicyAdminScope},
	"/fhiranchor.v1.PolicyService/TestPolicy":          {PolicyAdminScope},
	"/fhiranchor.v1.PolicyService/ActivatePolicy":      {PolicyAdminScope},
	"/fhiranchor.v1.PolicyService/RollbackPolicy":      {PolicyAdminScope},
	"/fhiranchor.v1.PolicyService/Evaluate":            {PolicyAdminScope},
	"/fhiranchor.v1.DecisionService/ListDecisions":     {AuditScope, PatientSelfScope},
	"/fhiranchor.v1.DecisionService/GetDecision":       {AuditScope, PatientSelfScope},
	"/fhiranchor.v1.DecisionService/ListConsentEvents": {AuditScope, PatientSelfScope},
	"/fhiranchor.v1.LogService/GetLeafEvidence":        {AuditScope, PatientSelfScope},
	"/fhiranchor.v1.AdminService/ErasePatient":         {AdminScope},
	"/fhiranchor.v1.CohortService/CountCohort":         {CohortQueryScope},
	"/fhiranchor.v1.CohortService/BreakdownCohort":     {CohortQueryScope},
	"/fhiranchor.v1.CohortService/ExportCohort":        {CohortExportScope},
	"/fhiranchor.v1.CohortService/GetExport":           {CohortExportScope},
	"/fhiranchor.v1.CohortService/GetExportFile":       {CohortExportScope},
	"/fhiranchor.v1.CohortService/DeleteExport":        {CohortExportScope},
}

// admit checks that the caller's role may call method at all. Handlers then
// narrow further (resource types, a patient's own records).
func admit(method string, p auth.Principal) error {
	if resourceMethods[method] {
		return nil
	}
	scopes, ok := methodScopes[method]
	if !ok {
		return failure(http.StatusForbidden, "forbidden", "", "no role may call this method")
	}
	if slices.ContainsFunc(scopes, p.Scopes.Has) {
		return nil
	}
	return failure(http.StatusForbidden, "forbidden", "", "this operation needs one of the scopes: "+strings.Join(scopes, ", "))
}

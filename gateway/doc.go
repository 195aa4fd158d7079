// Package gateway serves fhiranchor's FHIR R4 API over gRPC and, through
// grpc-gateway, over REST under /fhir/r4, with the /v1 services beside it:
// receipts and evidence, policy administration, the decision log, erasure.
// REST requests are forwarded to the same gRPC server over an in-process
// connection, so authentication, admission by role and logging run in the
// gRPC interceptors for both.
//
// A request's path: http.go (size, content type) -> grpc-gateway ->
// interceptors.go (recover, log, authenticate, admit by role: roles.go; the
// access.Caller is built here, once) -> service.go (one interaction) or
// bundle.go (transaction/batch) -> write.go (ids, references, canonical
// bytes, commitments) -> package access (the consent decision for each
// patient written or read, on stored state, recorded as an access-decision
// leaf; verdict.go turns a refusal into a 403) -> vault.Sealed.Update (one
// commit). Consent decisions are made in the handlers, not the
// interceptors, because they need what the request touches (the patient
// compartment, the resource's labels and codes), which is known only once
// it is parsed or read. A refused write is a verdict, not an error: its
// decision record commits alone. write.go also has package research's
// Deidentifier make the research copy of each version in a patient
// compartment, in the same commit.
//
// Research requests go interceptors.go -> cohort_service.go, a thin
// transport over package research (cohort counts, breakdowns and exports,
// decided per patient and recorded there); errors.go turns a
// *research.Error into an OperationOutcome, as it does gateway's own.
package gateway

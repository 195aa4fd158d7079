// Package gateway serves fhiranchor's FHIR R4 API over gRPC and, through
// grpc-gateway, over REST under /fhir/r4, with the /v1 services beside it:
// receipts and evidence, policy administration, the decision log, erasure.
// REST requests are forwarded to the same gRPC server over an in-process
// connection, so authentication, admission by role and logging run in the
// gRPC interceptors for both.
//
// A request's path: http.go (size, content type) -> grpc-gateway ->
// interceptors.go (recover, log, authenticate, admit by role: roles.go) ->
// service.go (one interaction) or bundle.go (transaction/batch) -> write.go
// (ids, references, canonical bytes, commitments) -> access.go (the consent
// decision for each patient written or read, recorded as an access-decision
// leaf) -> vault.Sealed.Update (one commit). Consent decisions are made in the
// handlers, not the interceptors, because they need what the request touches
// (the patient compartment, the resource's labels and codes), which is known
// only once it is parsed or read.
package gateway

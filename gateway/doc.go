// Package gateway serves fhiranchor's FHIR R4 API over gRPC and, through
// grpc-gateway, over REST under /fhir/r4. REST requests are forwarded to the
// same gRPC server over an in-process connection, so authentication, logging
// and (later) consent run in the gRPC interceptors for both.
//
// A request's path: http.go (size, content type) -> grpc-gateway ->
// interceptors.go (recover, log, authenticate) -> fhir_service.go (one
// interaction) or bundle.go (transaction/batch) -> write.go (ids, references,
// canonical bytes, commitments) -> vault.Sealed.Update (one commit).
package gateway

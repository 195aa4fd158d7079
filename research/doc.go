// Package research is fhiranchor's research vertical: the de-identified
// copy made of every version written in a patient compartment (Deidentifier),
// the cohort index that follows the vault's versions and erasures, cohort
// counts and breakdowns decided per patient by consent and released through
// cohort's privacy rules (Service), and row-level de-identified exports in
// the manner of FHIR Bulk Data $export (Exports). Every research action is
// recorded as an anchored access.ResearchDecision.
//
// It knows no transport: callers pass the access.Caller that asks, failures
// the client must hear about are *Error values (an HTTP status and a FHIR
// issue type), and export interactions return a Response that tells the
// transport what to send. Package gateway maps both onto gRPC and REST.
package research

// Package fhir parses and validates FHIR R4 JSON with google/fhir/go's
// jsonformat, and defines what the rest of fhiranchor needs to know about a
// resource without reading PHI: its type and id, the patient compartment it
// belongs to, its references, its identifiers, and its canonical bytes.
//
// A parsed resource is kept as a generic JSON tree (map[string]any with
// json.Number leaves), not as a proto: the gateway only rewrites ids, meta and
// references, and the tree keeps the client's JSON exactly as sent, decimal
// precision included. jsonformat is the gate: nothing reaches the tree that it
// did not accept.
package fhir

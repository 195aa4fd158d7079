// Package fhir parses and validates FHIR R4 JSON the way google/fhir/go's
// jsonformat does, and defines what the rest of fhiranchor needs to know about
// a resource without reading PHI: its type and id, the patient compartment it
// belongs to, its references, its identifiers, and its canonical bytes.
//
// A parsed resource is kept as a generic JSON tree (map[string]any with
// json.Number leaves), not as a proto: the gateway only rewrites ids, meta and
// references, and the tree keeps the client's JSON exactly as sent, decimal
// precision included. jsonformat's verdict is the gate: nothing reaches the
// tree that it would not accept. Parse reaches that verdict by walking the
// tree with plans built from the same R4 descriptors jsonformat reads
// (validate.go), several times faster than building the proto; a
// differential test and fuzz target hold it to jsonformat itself, which
// ParseJSONFormat still runs.
package fhir

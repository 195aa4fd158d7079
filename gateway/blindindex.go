package gateway

import (
	"sync/atomic"

	"github.com/fhiranchor/fhiranchor/access"
	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/vault"
)

// versionTokens returns the blind-index tokens of a live version of a
// resource of type typ, tree being its stored body: what conditional
// interactions and searches (searchTokens) find it by. The write path stores them; audit derives them
// again from the decrypted body and compares them with the index.
func versionTokens(v *vault.Sealed, typ string, tree map[string]any) [][]byte {
	var tokens [][]byte
	for _, id := range fhir.Identifiers(tree) {
		tokens = append(tokens, v.Token("identifier", typ, id.System, id.Value),
			v.Token("identifier-any", typ, id.Value))
	}
	if compartment := fhir.PatientCompartment(typ, tree); typ == "Consent" && compartment != "" {
		tokens = append(tokens, access.ConsentToken(v, compartment))
	}
	if searchIndexOff.Load() {
		return tokens
	}
	return append(tokens, searchTokens(v, typ, tree)...)
}

// searchIndexOff leaves the search tokens out of what writes store, so a
// benchmark can measure what the search index costs ingest. Only tests set
// it (SetSearchIndex); no configuration reaches it. A vault written with it
// set cannot be searched, and audit would find its index short.
var searchIndexOff atomic.Bool

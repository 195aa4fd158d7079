package gateway

import (
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
	return append(tokens, searchTokens(v, typ, tree)...)
}

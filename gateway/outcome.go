package gateway

import (
	"encoding/json"

	"github.com/fhiranchor/fhiranchor/fhir"
)

// issue is one OperationOutcome.issue. Diagnostics and expression are built
// from fixed phrases and element paths only, never from input values.
type issue struct {
	Severity    string   `json:"severity"`
	Code        string   `json:"code"`
	Diagnostics string   `json:"diagnostics,omitempty"`
	Expression  []string `json:"expression,omitempty"`
}

type operationOutcome struct {
	ResourceType string  `json:"resourceType"`
	Issue        []issue `json:"issue"`
}

// outcomeJSON renders an OperationOutcome.
func outcomeJSON(issues ...issue) []byte {
	b, err := json.Marshal(operationOutcome{ResourceType: "OperationOutcome", Issue: issues})
	if err != nil {
		// Marshalling these plain structs cannot fail.
		panic(err)
	}
	return b
}

// validationIssues converts parse and validation failures into issues.
func validationIssues(errs fhir.ValidationErrors, prefix string) []issue {
	out := make([]issue, 0, len(errs))
	for _, e := range errs {
		is := issue{Severity: "error", Code: "invalid", Diagnostics: e.Reason}
		if e.Path != "" {
			is.Expression = []string{joinPath(prefix, e.Path)}
		}
		switch {
		case e.Err == fhir.ErrInvalidJSON:
			is.Code = "structure"
		case e.Err == fhir.ErrUnknownResource:
			is.Code = "not-supported"
		}
		out = append(out, is)
	}
	return out
}

// joinPath prefixes an element path found inside an entry's resource (which
// starts with the resource type) with the entry's path.
func joinPath(prefix, path string) string {
	if prefix == "" {
		return path
	}
	// "Patient.birthDate" inside Bundle.entry[3].resource -> Bundle.entry[3].resource.birthDate
	for i := 0; i < len(path); i++ {
		if path[i] == '.' {
			return prefix + path[i:]
		}
	}
	return prefix
}

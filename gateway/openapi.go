package gateway

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"reflect"
	"slices"

	fhiranchorv1 "github.com/fhiranchor/fhiranchor/proto/fhiranchor/v1"
)

// openAPI merges the generated OpenAPI (Swagger 2.0) documents of the
// proto files into one: their paths, definitions and tags, under one info
// block naming the gateway's version. Two files defining a path, or one
// definition differently, is an error: the REST API would be ambiguous.
func openAPI(files fs.FS) ([]byte, error) {
	names, err := fs.Glob(files, "*.swagger.json")
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	paths, defs := map[string]any{}, map[string]any{}
	var tags []any
	for _, name := range names {
		data, err := fs.ReadFile(files, name)
		if err != nil {
			return nil, err
		}
		var doc struct {
			Paths       map[string]any `json:"paths"`
			Definitions map[string]any `json:"definitions"`
			Tags        []any          `json:"tags"`
		}
		if err := json.Unmarshal(data, &doc); err != nil {
			return nil, fmt.Errorf("openapi: %s: %w", name, err)
		}
		for p, v := range doc.Paths {
			if _, dup := paths[p]; dup {
				return nil, fmt.Errorf("openapi: path %s is defined twice (%s)", p, name)
			}
			paths[p] = v
		}
		for d, v := range doc.Definitions {
			if prev, dup := defs[d]; dup && !reflect.DeepEqual(prev, v) {
				return nil, fmt.Errorf("openapi: definition %s differs in %s", d, name)
			}
			defs[d] = v
		}
		tags = append(tags, doc.Tags...)
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("openapi: no paths in %d files", len(names))
	}
	return json.MarshalIndent(map[string]any{
		"swagger": "2.0",
		"info": map[string]any{
			"title":       "fhiranchor",
			"version":     Version,
			"description": "The gRPC services of fhiranchor as served over REST. The FHIR API is under /fhir/r4; its bodies are FHIR JSON (application/fhir+json).",
		},
		"tags":        tags,
		"consumes":    []string{"application/json"},
		"produces":    []string{"application/json"},
		"paths":       paths,
		"definitions": defs,
	}, "", "  ")
}

// openAPIDocument is the merged document of the embedded proto files.
func openAPIDocument() ([]byte, error) { return openAPI(fhiranchorv1.SwaggerFS) }

package fhiranchorv1

import "embed"

// SwaggerFS holds the OpenAPI (Swagger 2.0) documents protoc-gen-openapiv2
// writes beside the generated code, one per .proto file: the gateway merges
// them into the /openapi.json it serves.
//
//go:embed *.swagger.json
var SwaggerFS embed.FS

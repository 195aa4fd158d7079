// Package deid de-identifies FHIR R4 resources held as JSON trees (the form
// fhir.Decode returns). Apply takes a validated resource and returns a new
// tree, never touching its input, with a record of every element a rule
// changed (by path, never by value) and v3-ObservationValue security labels
// in meta.security.
//
// # Profiles
//
// A profile (Config) is YAML or JSON, decoded strictly (unknown keys fail):
// an ordered list of rules and some parameters. The first rule that matches
// an element decides what happens to it and, except for methods that
// transform primitives, to its children; an element no rule matches is kept
// and its children are examined in turn.
//
//	name: my-profile
//	parameters:
//	  dateShiftRange: 30          # days; the offset is never 0
//	rules:
//	  - id: names                 # every HumanName, anywhere
//	    type: HumanName
//	    method: redact
//	  - id: geolocation
//	    url: http://hl7.org/fhir/StructureDefinition/geolocation
//	    method: redact
//	  - id: zip
//	    path: Address.postalCode  # a data type first: at any Address
//	    method: generalize
//	    to: zip3
//	  - id: birth
//	    path: Patient.birthDate   # a resource type first: from the root
//	    method: generalize
//	    to: birthYear
//	  - id: dates
//	    type: dateTime
//	    method: dateShift
//	  - id: refs
//	    path: Reference.reference
//	    method: cryptoHash
//
// A rule selects by Path (element names from a resource root, from the
// nearest enclosing element of a data type, or "Resource"/"DomainResource";
// choice elements by name, "Observation.value", or option,
// "Observation.valueQuantity"), by Type (the FHIR type: HumanName, date,
// string, Age; a Quantity profile also matches "Quantity"), by extension URL,
// or by several (all must hold). Element types come from the google/fhir R4
// descriptors, so they are exact inside extensions (valueAddress is an
// Address), choice elements (effectivePeriod is a Period), primitive
// extensions (_birthDate is walked as Patient.birthDate), backbone elements,
// contained resources and Bundle entries (walked with their own type's
// rules, same patient). Paths and types are checked against the schema when
// the profile is parsed, so a typo is an error.
//
// # Methods
//
//   - redact: remove the element (and its primitive extension).
//   - keep: copy the element unchanged; its children are not examined.
//   - dateShift: move date, dateTime and instant values by the patient's
//     offset (HMAC of Options.Patient under the DateShift key, in
//     [-range,-1]∪[1,range] days), keeping the time and zone as written. A
//     year alone is kept (Safe Harbor allows years); a year-month becomes
//     the year.
//   - cryptoHash: hex HMAC-SHA256 under the CryptoHash key. References
//     hash only their id ("Patient/123" -> "Patient/"+Pseudonym("123"),
//     "#c" -> "#"+Pseudonym("c"), an absolute URL loses its base);
//     urn:uuid and urn:oid values and uuid/oid elements stay UUIDs and OIDs.
//   - encrypt: AES-256-GCM, random nonce, base64; Decrypt reverses it.
//   - substitute: replaceWith, a primitive or a JSON object.
//   - perturb: add uniform random noise (span, rangeType fixed or
//     proportional, roundTo); integers stay integers. The noise differs on
//     every call.
//   - generalize: to year (dates), zip3 (3 characters; the 17 restricted
//     ZIP3 areas become "000"), age90 (Age over 89 years -> ">= 90 years"),
//     birthYear (a birth date to its year; when the person is over 89 at
//     Options.Now or at deceasedDateTime, the date is removed and the
//     resource gets the AgeBandURL extension "90+"), state (an Address.state
//     is kept unless it repeats the city, as in city-states).
//   - clean: free text keeps its words but loses e-mail addresses, URLs,
//     dates, SSN- and phone-like numbers, runs of 5+ digits, and every name,
//     address, telecom, identifier and reference display string of the same
//     resource, each replaced by the marker ("[REDACTED]").
//
// A method that does not fit the type of the element a rule names (dateShift
// on a string) removes the value: the engine fails closed. On a complex
// element, a transforming method applies to the primitives below it whose
// type fits (dateShift on a Period shifts start and end) and leaves the
// others. Members outside the R4 schema are removed.
//
// After the rules, what became empty or invalid is pruned: empty objects and
// arrays, elements left with only an id, extensions with neither value nor
// extension, and data types missing a required element (an Annotation
// without text). A required element of a resource or backbone element that a
// rule removed is replaced by a data-absent-reason extension ("masked"), so
// the output stays valid FHIR R4.
//
// Labels: REDACTED (redact, clean), CRYTOHASH, MASKED (encrypt), PERTURBED
// (dateShift, perturb), SUBSTITUTED, GENERALIZED; added without duplicates
// next to existing labels, on each nested resource and on the root.
//
// # Safe Harbor
//
// SafeHarbor (profiles/safe-harbor.yaml) covers the 18 identifiers of 45 CFR
// 164.514(b)(2); each rule lists those it covers in "covers".
// Profile("safe-harbor-strict") generalizes dates to their year instead.
//
//	A  names                     HumanName redacted anywhere; Reference.display and
//	                             other free strings redacted; text cleaned
//	B  geography below state     Address line/city/district/text redacted, postalCode
//	                             to zip3 (restricted -> 000), geolocation removed
//	C  dates, ages over 89       all date/dateTime/instant shifted per patient; birthDate
//	                             to year or "90+" band; Age > 89 -> >= 90
//	D  telephone, E fax,         ContactPoint redacted; free text cleaned
//	F  e-mail
//	G..M SSN, MRN, plan, account, Identifier redacted whole (system and value)
//	   license, vehicle, device  Device.udiCarrier redacted
//	N  URLs                      url-typed values, Attachment.url, Meta.source,
//	                             Bundle.link redacted; absolute references lose their base
//	O  IP addresses              free strings (e.g. AuditEvent network address) redacted
//	P  biometrics, Q photos      Patient/Practitioner/... photo, Attachment data and
//	                             hash, Signature data, base64Binary redacted
//	R  other unique numbers      ids and references cryptoHashed; free text and
//	                             narratives removed
//
// Kept for research: gender, marital status and communication codings,
// us-core race/ethnicity/birthsex codes (their free-text parts go),
// Coding.display, Quantity units, state and country, numbers, codes,
// meta.versionId. CodeableConcept.text and Dosage.text are cleaned.
package deid

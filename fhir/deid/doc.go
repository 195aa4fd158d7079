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
//	  dateShiftRange: 30          # days: offsets in [-30,-10] U [10,30]
//	  dateShiftMin: 10
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
//     [-range,-min]∪[min,range] days: dateShiftRange, default 90, and
//     dateShiftMin, default 15), keeping the time and zone as written. A
//     year alone is kept (Safe Harbor allows years); a year-month becomes
//     the year. For a patient over 89 (below) every shifted date keeps only
//     its year, and an instant is removed.
//   - cryptoHash: hex HMAC-SHA256 under the CryptoHash key. References
//     hash only their id ("Patient/123" -> "Patient/"+Pseudonym("123"),
//     "#c" -> "#"+Pseudonym("c"), an absolute URL loses its base, a
//     versioned reference its "/_history/n");
//     urn:uuid and urn:oid values and uuid/oid elements stay UUIDs and OIDs.
//   - encrypt: AES-256-GCM, random nonce, base64; Decrypt reverses it.
//   - substitute: replaceWith, a primitive or a JSON object.
//   - perturb: add uniform random noise (span, rangeType fixed or
//     proportional, roundTo); integers stay integers. The noise differs on
//     every call.
//   - generalize: to year (dates), zip3 (3 characters; the 17 restricted
//     ZIP3 areas become "000"), age90 (an Age over 89 years -> ">= 90
//     years"; a Range of ages with a bound over 89 -> low 90 years),
//     birthYear (a birth date to its year; when the person is over 89 at
//     Options.Now or at their death, the date is removed, and a Patient,
//     RelatedPerson, Person or Practitioner gets the AgeBandURL extension
//     "90+"; on FamilyMemberHistory.born the relative's age or age at death
//     over 89 counts too), state (an Address.state is kept unless it
//     repeats the city, as in city-states), ageValue and birthValue (below).
//   - clean: free text keeps its words but loses what the scrubber finds,
//     each replaced by the marker ("[REDACTED]").
//   - vet: keep a value only when it is provably not identifying, else
//     remove it: a Coding.display of a standard terminology (SNOMED CT with
//     a Verhoeff-valid 6-18 digit code, LOINC with a valid mod-10 check
//     digit, RxNorm, CVX, ICD-9-CM, ICD-10(-CM), NDC, UCUM, the CDC race &
//     ethnicity OID, BCP-47 languages, terminology.hl7.org code systems,
//     FHIR's own http://hl7.org/fhir/<name> and US Core code systems), with
//     a well-formed code, no title before a name ("Dr. X"), and nothing the
//     scrubber would change; a CodeableConcept.text equal (ignoring case and
//     spacing) to a kept display of its own codings; a Coding.version of
//     such a coding without spaces; a Quantity.unit equal to its UCUM code,
//     or a unit of time; a Reference.type naming a resource type; a uri,
//     url or canonical under http://hl7.org/fhir/ or
//     http://terminology.hl7.org/. On an Extension: one whose url HL7
//     publishes (http://hl7.org/fhir/StructureDefinition/...,
//     http://hl7.org/fhir/us/..., http://terminology.hl7.org/...), or a
//     relative sub-extension of one ("ombCategory"), is walked; any other
//     is removed whole. On other complex elements vet has no effect.
//
// The scrubber (clean, and the "unchanged" test of vet) removes e-mail
// addresses, URLs, IPv4 and IPv6 addresses, dates (ISO, numeric, with
// month names, month and year), SSN- and phone-like numbers, runs of 5+
// digits, ages over 89 ("95 years", "aged 92"), and every identifying
// string the engine knows: the Lexicon of the resource (with every
// reference display of it) and Options.Subject.Known. Terms match on word
// boundaries, ignoring case (Unicode); a term of several words matches
// them next to each other in any order ("Smith, John" for "John Smith");
// a single word must have 3 or more characters. A name the engine was
// never told about (a neighbour named only in a note) is not found: that
// is why the default profile drops free text instead of cleaning it.
//
// ageValue and birthValue apply to the value of an Observation or
// component whose code is an age (LOINC 30525-0, 21612-7, 29553-5,
// 21611-9, 63900-5, 39016-1, 35659-2; SNOMED CT 424144002, 397659008) or a
// birth date (LOINC 21112-8, SNOMED CT 184099003): an age over 89 years
// (valueQuantity in any UCUM unit of time, or valueInteger, which becomes
// a valueQuantity) becomes ">= 90 years"; a birth date is generalized as
// birthYear. Elsewhere the rule does not match and the next matching rule
// decides.
//
// Patients over 89: when Options.Subject.BirthDate (or, on a Patient, its
// own birthDate) makes the patient over 89 at Options.Now, every date of
// their copies keeps only its shifted year (a dateShift rule cuts its
// result to the year; an optional instant is removed). With the date of
// an event and an age at it, a date finer than the year tells a 90+
// patient's age, which Safe Harbor removes with all elements of dates
// indicative of it.
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
// without text). A required element of a resource or backbone element that
// a rule removed is put back in a form JSON-schema validators accept (the
// npm fhir validator included): a complex element as a data-absent-reason
// extension ("masked"); a string or markdown as the marker; a uri as an
// opaque urn:uuid; a date as its (shifted) year, an instant as the first
// instant of that year; other primitives as a "_x" data-absent-reason.
//
// Labels: REDACTED (redact, clean, vet), CRYTOHASH, MASKED (encrypt),
// PERTURBED (dateShift, perturb), SUBSTITUTED, GENERALIZED; added without
// duplicates next to existing labels, on each nested resource and on the
// root.
//
// # Safe Harbor
//
// SafeHarbor (profiles/safe-harbor.yaml) covers the 18 identifiers of 45 CFR
// 164.514(b)(2); each rule lists those it covers in "covers".
// Profile("safe-harbor-strict") generalizes dates to their year instead;
// Profile("safe-harbor-text") keeps free text scrubbed by clean instead of
// dropping it.
//
//	A  names                     HumanName redacted anywhere; free text dropped unless
//	                             vetted; non-HL7 extensions dropped whole
//	B  geography below state     Address line/city/district/text redacted, postalCode
//	                             to zip3 (restricted -> 000), geolocation removed
//	C  dates, ages over 89       all date/dateTime/instant shifted per patient (15..90
//	                             days either way); meta.lastUpdated, Bundle.timestamp and
//	                             record times removed; birth dates (Patient, RelatedPerson,
//	                             relatives, birth-date Observations, patient-birthTime) to
//	                             the year or removed over 89; Age, age Observations and age
//	                             Ranges over 89 -> >= 90; a patient over 89: dates to the year
//	D  telephone, E fax,         ContactPoint redacted; free text dropped
//	F  e-mail
//	G..M SSN, MRN, plan, account, Identifier redacted whole (system and value); Device
//	   license, vehicle, device  udiCarrier, serialNumber, lotNumber, distinctIdentifier
//	N  URLs                      url values, Attachment.url, Meta.source, Bundle.link,
//	                             Device.url redacted; uri and canonical values kept only
//	                             when HL7-published; absolute references lose their base
//	O  IP addresses              AuditEvent network address, Device.url, free strings
//	P  biometrics, Q photos      Patient/Practitioner/... photo, Attachment data and
//	                             hash, Signature, base64Binary redacted
//	R  other unique numbers      ids and references cryptoHashed; free text and
//	                             narratives removed
//
// What a researcher keeps under the default profile: gender, codes of every
// coding (system and code, whatever the system), the displays of standard
// terminologies and the CodeableConcept.text that repeats one, numbers,
// UCUM units, state and country, ZIP3, birth year (or the 90+ band),
// shifted dates, marital status and language codings, us-core
// race/ethnicity/birthsex codes, HL7 profiles, meta.versionId.
//
// What the default profile drops: every other free text (Dosage.text and
// patientInstruction, Annotation notes, descriptions, titles, comments,
// string and markdown values, names of organizations and locations,
// reference displays, the text of a concept that is not one of its
// standard displays, the display of a local or mis-coded coding, non-UCUM
// units), every extension HL7 does not publish (Synthea's utilization,
// QALY/DALY extensions among them) and the free-text parts of kept ones
// (us-core-race "text"), modifierExtensions not published by HL7, non-HL7
// profiles and uris, meta.lastUpdated, the version of versioned
// references, and for patients over 89 the month and day of every date.
// safe-harbor-text keeps the free text above, cleaned, for deployments
// whose reviewers accept that a name the engine does not know may remain.
package deid

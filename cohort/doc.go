// Package cohort is fhiranchor's de-identified research index: an in-memory
// index of facts taken from de-identified FHIR resources, a JSON cohort query
// language over it, and the privacy protections applied to released counts.
//
// # Data
//
// The gateway feeds the index with resources that another package has
// already de-identified: ids and references are pseudonyms, dates are shifted
// by a per-patient offset, Patient.birthDate is only a year (or absent, with
// the extension AgeBandURL valueString "90+"), postalCode has 3 digits. Keys
// of resources and patients are opaque strings chosen by the caller; the
// index never interprets them. Index.Put takes one resource; Index.Delete and
// Index.RemovePatient take facts away again.
//
// Facts indexed:
//
//	Patient            gender; birth year or the "90+" band; ZIP3 of address[0]; us-core-race and
//	                   us-core-ethnicity ombCategory codes; deceased (deceasedBoolean, or deceasedDateTime present)
//	Condition          code; onsetDateTime, onsetPeriod.start or recordedDate; clinicalStatus code as status
//	Observation        code; valueQuantity (value, unit, UCUM code); valueCodeableConcept;
//	                   effectiveDateTime, effectivePeriod.start, effectiveInstant or issued.
//	                   Each component is a further observation fact (its code and value, the parent's date)
//	MedicationRequest  medicationCodeableConcept; authoredOn
//	Encounter          type codings and class (system|code); period.start
//	Procedure          code; performedDateTime or performedPeriod.start
//	Immunization       vaccineCode; occurrenceDateTime
//	DiagnosticReport   code; effectiveDateTime, effectivePeriod.start or issued
//
// Resources of other types are recorded (Index.Resources lists them for
// export) but give no facts. Dates are kept as UTC days.
//
// # Memory and persistence
//
// The index must hold millions of resources in a few hundred bytes each and
// answer within seconds of a restart. It is laid out in columns:
//
//   - Strings (codes as "system|code", units, statuses) are interned in a
//     dictionary; a fact is a fixed 48-byte struct of ids, its day, its
//     value and the offset of its coding ids in one shared slice.
//   - Facts are appended to one slice, so the postings per (kind, code) and
//     per kind are plain sorted slices of fact numbers, 4 bytes a posting,
//     scanned without hashing. A resource's facts are a contiguous range,
//     so a resource costs its key, a 4-byte slot of an open-addressing
//     table that finds it by key (keytable.go), 16 bytes and its facts.
//   - A replaced or deleted resource leaves dead facts in place (queries
//     skip them); once they outnumber the live ones, compaction renumbers
//     the live facts and rebuilds the postings and the dictionary.
//   - Patients stay numbered densely so that patient sets are bitsets: the
//     population is far smaller than the facts, and the privacy machinery
//     (privacy.go, overlap.go) works on those sets unchanged.
//
// About 155 bytes of heap per resource over ten copies of the Synthea set
// (BenchmarkIndexMemory), against 369 for the earlier layout of per-fact
// structs of strings and hash-set postings measured the same way (whose
// process RSS, garbage and GC headroom included, was about 1.4 KiB per
// resource). Roaring bitmaps (RoaringBitmap/roaring)
// were weighed for the postings: they would halve a posting list's 4 bytes
// per fact at best, since a code's facts are scattered, at the price of a
// dependency and of slower appends; the fact structs, not the postings,
// dominate, so plain sorted slices won.
//
// Index.WriteTo and ReadIndex move the live state to and from a compact
// binary snapshot (about 70 bytes per resource); reading builds a compacted
// index without extracting anything again. The snapshot is plain: package
// research seals it, binds it to a log position and replays the versions
// committed after it. Extract and Index.PutEntry split Put so that the
// writer, which has the de-identified tree in hand, extracts the facts once
// and the index takes them without decoding the copy again.
//
// # Queries
//
// A query is a JSON object with "criteria" and an optional "breakdown":
//
//	{ "criteria": { "all": [
//	    {"gender": "female"},
//	    {"age": {"ge": 18}},
//	    {"condition": {"code": [{"system": "http://snomed.info/sct", "code": "44054006"}]}, "as": "dx"},
//	    {"observation": {"code": [{"system": "http://loinc.org", "code": "4548-4"}],
//	                     "value": {"gt": 6.5}, "unit": "%"},
//	     "within": {"of": "dx", "from": {"days": 0}, "to": {"days": 365}}},
//	    {"not": {"medication": {"code": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "860975"}]}}}
//	  ]},
//	  "breakdown": ["gender", "ageBand"] }
//
// A criterion is an object with exactly one test:
//
//	{"all": [c, ...]}   every criterion holds            (AND)
//	{"any": [c, ...]}   at least one holds               (OR)
//	{"not": c}          c does not hold                  (among all indexed patients)
//	{"gender": "female"}            Patient.gender
//	{"birthYear": range}            whole numbers; never matches a "90+" patient
//	{"age": range}                  reference year minus birth year; a "90+" patient matches
//	                                only ranges holding every age from 90 up ({"ge": 18} does, {"lt": 100} does not)
//	{"zip3": "021"}, {"race": "2106-3"}, {"ethnicity": "2186-5"}   (OMB category codes)
//	{"deceased": true}
//	{"condition": fact}, {"observation": fact}, {"medication": fact}, {"encounter": fact},
//	{"procedure": fact}, {"immunization": fact}, {"report": fact}   (report = DiagnosticReport)
//
// A fact criterion holds for a patient with at least one fact meeting all of:
//
//	"code":      [{"system": s, "code": c}, ...]   any of these codings (absent: any fact of the kind)
//	"value":     range                              observation only: valueQuantity value
//	"unit":      "%"                                observation only: valueQuantity code or unit, exactly
//	"valueCode": [{"system": s, "code": c}, ...]   observation only: valueCodeableConcept codings
//	"status":    "active"                          Condition clinicalStatus code, or the resource's status
//	"date":      {"ge": "2010-01-01", "lt": "2015-01-01"}   the fact's day (YYYY-MM-DD)
//
// A range is an object with gt, ge, lt, le (at most one lower and one upper
// bound) or eq alone: {"ge": 1950, "lt": 1970}.
//
// A fact criterion may carry "as": a name (letters, digits, _ and -,
// starting with a letter, unique in the query), and "within": {"of": name,
// "from": {"days": n}, "to": {"days": m}}. With "within" a fact counts only
// if it is dated n..m days (inclusive, whole UTC days) after some fact of the
// same patient matching the named criterion; negative numbers are before, a
// missing end is unbounded, and facts without a date never count. The name
// must be in scope: given to a criterion in the same all/any list or in the
// list of an enclosing criterion. Windows must not refer to each other in a
// loop.
//
// Dates are de-identified by a per-patient shift, so an absolute "date" range
// is a range on shifted dates and only approximates calendar time; relative
// windows ("within") compare dates of one patient, shifted alike, and are
// exact. Likewise age uses the year of the reference time passed to Match
// and the birth year only, so it may be one year high before the birthday.
//
// Breakdown dimensions: gender, ageBand (0-9, 10-19, ..., 80-89, 90+),
// birthDecade (1960s, ...; 90+ for patients whose year is withheld), zip3,
// race, ethnicity (an OMB code, "multiple" or "unknown") and deceased
// ("true"/"false"). A missing value is "unknown"; every patient is in exactly
// one cell.
//
// ParseQuery is strict: unknown members, repeated members, wrong types,
// empty lists, more than MaxCriteria criteria, nesting deeper than MaxDepth
// and texts over MaxQueryBytes are errors. Errors give the member path and a
// fixed reason, never a value of the query.
//
// Query.Fingerprint identifies a query exactly, up to member order, the order
// of all/any children and code lists, number spelling and the choice of "as"
// names. Query.Shape also ignores every number, date and window bound, so
// queries that differ only in thresholds share a Shape; the gateway limits
// repeats per Shape.
//
// # Privacy
//
// Index.Count, Index.Match and Index.Breakdown see only the patients the
// caller's permit callback allows (the gateway's per-patient consent check)
// and return true counts. Index.Answer evaluates a query and releases its
// count or breakdown through Privacy (Privacy.Release and ReleaseBreakdown
// do the same without the overlap control):
//
//   - Small cells: a true count of 1..Threshold-1 (default 11, as PCORnet)
//     is suppressed: released as {"suppressed": true, "threshold": 11} with no
//     count. Zero is not suppressed.
//   - Complementary suppression: where one cell of a row is suppressed, the
//     smallest other cell is suppressed too, so the hidden one is not the
//     total minus the rest.
//   - Overlap control (Answer): a count, or a cell, whose patient set differs
//     from a set an earlier release exposed by 1..Threshold-1 permitted
//     patients is suppressed with "reason": "overlap", and so are the cells
//     that would give it back. The sets a release exposes are its total, its
//     released cells, the total minus each of them, the union of its hidden
//     cells and, per row, the unions of its hidden and of its released cells;
//     a new release is also compared with itself and with the empty set, so
//     none of its derived unions is small. Earlier releases are re-evaluated
//     on the current index from their recorded criteria (Query.CriteriaJSON),
//     with a cache per index state; the caller chooses them (the gateway: the
//     newest OverlapHistory, default 256, of the client's or, with
//     OverlapScope "all", every client's releases within RepeatWindow). A
//     repeat of a query starts from its last release's suppressions, so on
//     unchanged data it gets the identical answer.
//   - Noise: Gaussian (the default, sigma DefaultScale = 3, clamped to ±3
//     sigma) or Laplace noise of scale Scale, added after the suppression
//     decisions (which use true counts); Noise "none" turns it off. The noise
//     of a cell is drawn from HMAC-SHA256(Key, fingerprint, cell), as i2b2 and
//     Samply.Laplace cache noise: repeating a query returns the same answer,
//     so averaging repeats learns nothing. Results are rounded (RoundTo,
//     default 5; 1 turns rounding off) and never negative.
//   - Repeat limit: at most RepeatLimit (default 7, as SHRINE) queries of one
//     Shape per client per RepeatWindow (default 30 days), which bounds
//     differencing attacks that move a threshold by one. The caller keeps the
//     count in its decision log and asks Privacy.Exceeded.
//
// Not covered: combinations of three or more releases beyond the unions
// listed (a tracker built from several general queries), differences that
// come from changes of the data between two releases (new patients,
// opt-outs), releases outside the history compared (older than the window,
// beyond the bound, or, with scope "client", another client's: colluding
// clients), and combination with row-level exports. Noise with a budget
// (epsilon accounting) is left to the caller.
package cohort

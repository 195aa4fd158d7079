// Package policy decides access to patient data from the patient's FHIR R4
// Consent resources, with Rego evaluated by OPA's v1 Go SDK.
//
// An Engine compiles a policy bundle (by default the one embedded from rego/)
// and prepares the query data.fhiranchor.consent.decision once. Decide takes an
// Input holding opaque ids and the patient's Consent resources; the engine keeps
// no consent state, so a revised Consent changes the very next decision. Every
// Decision names the Consent ids and versions it rests on and the policy
// revision (by default the SHA-256 of the bundle's files). Decide fails closed:
// an evaluation error, a timeout, or an undefined or ill-shaped result denies
// and says why. Explain gives the same decision plus the rules that fired,
// by tracing the evaluation; it is for explaining, not for every request.
//
// A bundle travels as Files (file name to content: *.rego and data.json files
// only), which Encode and DecodeFiles store as deterministic JSON. Check vets a
// bundle without activating it: it MUST compile, define
// data.fhiranchor.consent.decision and have at least one test (else a
// *CompileError with one "file:row: ..." message per problem), and it reports
// each *_test.rego test's result. Replace runs the same checks and swaps the
// bundle in atomically only if every test passes (else a *TestFailureError).
//
// The policy does not read FHIR JSON directly. CompileConsent flattens each
// Consent once into lookup-friendly form (codings as "system|code" keys, nested
// provisions as a list with their ancestor chains and inherited types, period
// bounds as Unix nanoseconds; see rego/consent.rego for the shape), so the Rego
// only matches sets and compares numbers. Decide compiles Input.Consents on
// every call; a caller that keeps consents (the consent-state store) can compile
// each version once and pass it in Input.Compiled. A Consent that
// CompileConsent rejects (a read field of the wrong JSON type, a period bound
// that is not a FHIR date or dateTime) denies the whole decision.
//
// ConsentFreeKey names what a decision without consents depends on when the
// bundle's rules are the embedded ones (the action, the purpose, the client,
// its organization and roles, the patient's managing organization): a caller
// may reuse one such decision for every resource and patient of the same key
// (see consentfree.go for why that holds, and its test for the check).
//
// The embedded bundle reads R4 Consent as follows, where R4 leaves room:
//
//   - Only status "active" with scope patient-privacy counts. A consent whose
//     patient is not Input.Patient, or whose provisions nest deeper than root +
//     2 levels, denies (the caller passed something the policy cannot vouch for).
//   - policyRule OPTIN is a base deny, OPTOUT a base permit; any other rule is
//     treated as OPTIN. No active consent: the implied consent of
//     data.fhiranchor.config.implied (per action, the purposes a deployment's
//     rules permit without consent: by default TREAT, HPAYMT and HOPERAT reads,
//     any write, HRESCH research queries and exports), else
//     data.fhiranchor.config.default.
//   - An untyped root provision is the consent's own statement: under OPTIN it
//     grants what it describes, under OPTOUT it withholds it. (If it carried the
//     base effect, the "basic" example could never permit and "Out" could never
//     deny.) Untyped nested provisions inherit their parent's effect.
//   - Grants: an untyped root provision that names at least one actor in a
//     recipient role (v3-ParticipationType PRCP or IRCP) is a grant to those
//     recipients, whatever policyRule says, and an exclusive one. It permits
//     (its untyped descendants too) when the requester is one of the named
//     recipients and its other criteria match; a request that matches all its
//     criteria but actor (action, purpose, class, code, data, period,
//     dataPeriod, securityLabel) from anyone else is denied, with reason
//     "deny: not a recipient named by Consent/<id>" (a plain deny: no redaction,
//     and break-the-glass is refused only when the root names ETREAT). Actors
//     in roles that describe the data (custodian CST, author AUT...) are not
//     recipients and are ignored by this reading. This is how the "grantor"
//     example ("Patient wishes to provide XXX with read-only access", coded
//     OPTOUT) grants Patient/example read access, and how the Patients Know Best
//     sharing screen ("pkb", also OPTOUT) shares labelled data with
//     Organization/f001; read the plain way, both would withhold exactly what
//     they share. An untyped root naming no recipient keeps the meaning above.
//   - A provision applies when it and all its ancestors match. A nested
//     provision of the opposite effect is an exception; nested provisions of the
//     same effect narrow their parent, which then decides only through them
//     (this is how "smartonfhir" limits its 30-minute grant to MedicationRequest).
//     The innermost applicable provision decides; deny wins between siblings and
//     between consents.
//   - Actor matches actor.reference against every reference the requester acts
//     as: Input.Actor.Reference (the token's fhirUser), Input.Actor.Organization
//     (the organization it acts for) and Input.Actor.Acting (what the gateway
//     resolved from stored state: the practitioner and organization of the
//     PractitionerRole it signs in as). So a provision naming an Organization
//     binds the practitioners acting for it, in denials and in grants alike.
//     For an actor with no reference, its role codes match Input.Actor.Roles. Apart
//     from grants, a named actor's role is not read: roles that describe the
//     data (author, custodian) are not modelled.
//   - Actions map read -> access/use/disclose, write -> collect/correct,
//     research-query and export -> use/disclose; an unknown action denies.
//   - class matches resource-type codes only; a class in another system (such as
//     a MIME type) never matches, so such a provision neither permits nor denies.
//   - Periods are FHIR date/dateTime with the end inclusive at its precision;
//     dataPeriod needs Input.Resource.Date, and a provision with dataPeriod does
//     not apply to data without a date.
//   - A deciding deny whose chain names security labels the resource carries
//     becomes, on read only, an allow with a "redact" obligation listing those
//     labels: the caller MUST remove the labelled content (or drop the resource)
//     before returning it. Other actions get a plain deny.
//   - Break-the-glass: purpose ETREAT on read or write by a physician or nurse, or
//     under a deciding permit naming ETREAT, allows with BreakGlass set, reason
//     "break-the-glass" and an "audit-break-glass" obligation, unless the
//     deciding deny provision names ETREAT (itself or through an ancestor).
//   - Writes are also bound to the patient's managing organization, which R4
//     Consent does not express: when Input.PatientOrganization is set, a write
//     by a client bound to an organization (Input.Actor.Organization set)
//     denies ("write: client does not act for the patient's managing
//     organization") unless that is the patient's organization or the client
//     id is listed in data.fhiranchor.config.write.any_organization (default
//     empty), whatever the consents say and even under break-the-glass. A
//     client bound to no organization (a system-wide integration) and a
//     patient with no managing organization have no such constraint. The
//     gateway sets PatientOrganization from the stored Patient, never from
//     the request, and decides a change of it for the old and the new
//     organization (package access).
package policy

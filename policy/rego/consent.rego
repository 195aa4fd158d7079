# Package fhiranchor.consent decides one access request against the patient's
# FHIR R4 Consent resources (scope patient-privacy), given as input.consents.
#
# Semantics (see policy/doc.go for the reasons behind each choice):
#   - Only consents with status "active" and scope patient-privacy count.
#   - policyRule OPTIN: base deny; OPTOUT: base permit; anything else: base deny.
#   - A provision's effect is its own type, else the nearest typed ancestor's;
#     an untyped chain takes the opposite of the base rule (the consent's own
#     opt-in grant or opt-out withholding), except under a grant (below).
#   - Grant: an untyped root provision naming at least one actor in a recipient
#     role (v3-ParticipationType PRCP or IRCP) grants what it describes to those
#     recipients only, whatever policyRule says: it permits (and so do its
#     untyped descendants), its actor criterion matches only the recipients, and
#     a request that matches all its other criteria from anyone else is denied
#     ("deny: not a recipient named by Consent/<id>"; a plain deny, never a
#     redaction). Actors in other roles (custodian CST, author AUT) describe the
#     data and take no part in this.
#   - A provision applies when it and all its ancestors match the request.
#     Nested provisions of the opposite effect carve exceptions; nested
#     provisions of the same effect narrow their parent (the parent then decides
#     only through them). The innermost applicable provision decides; deny wins
#     over permit between siblings and between consents.
#   - A deciding deny on a read whose chain names security labels the resource
#     carries becomes a "redact" obligation instead of a denial.
#   - Break-the-glass: purpose ETREAT on read/write by a physician or nurse (or
#     under a permit naming ETREAT) allows and is audited, unless the deciding
#     deny provision names ETREAT.
#   - No active consent: the implied consent of data.fhiranchor.config.implied
#     (per action, the purposes permitted without a consent on file), else
#     data.fhiranchor.config.default ("deny" when absent).
#   - Write: whatever the consents say, a write to a patient with a managing
#     organization (input.patientOrganization) by a client bound to an
#     organization (input.actor.organization) denies unless that is the
#     patient's organization or the client is listed in
#     data.fhiranchor.config.write.any_organization. Break-the-glass does not
#     lift this.
#
# Each input.consents element is a Consent as policy.CompileConsent flattens it,
# once per Consent version, so that a decision mostly looks things up:
#
#   id, versionId, status   strings ("id" absent when the Consent has none)
#   patient                 patient.reference ("" when absent)
#   scope, policyRule       sets of coding keys
#   maxDepth                the depth of its most deeply nested provision (0
#                           for the root alone, -1 without provisions)
#   provisions              array, root first, then depth first; each has
#     path                  "provision", "provision.provision[1]", ... (for reasons)
#     depth                 0 for the root
#     chain, children       indices of its ancestors and itself (root first), and
#                           of its direct children
#     type                  its own type, else the nearest typed ancestor's;
#                           absent when the whole chain is untyped
#     criteria              only the criteria the provision states:
#       period, dataPeriod  {"start": ns, "end": ns}, Unix nanoseconds, end
#                           exclusive (a FHIR date's end covers its whole day,
#                           month or year); each bound only if written
#       actor               {"references": set, "roles": set,
#                           "referencesByRole": object}: actor.reference values;
#                           role codes of actors with no reference; and role
#                           coding key -> set of the references of the actors
#                           that have that role
#       action, code        sets of coding keys of the CodeableConcepts
#       purpose, class      sets of coding keys
#       securityLabel       object: coding key -> {"system": s, "code": c}
#       data                set of data.reference values
#
# A coding key is "system|code", or "|code" for a coding with no system (FHIR's
# token syntax).
package fhiranchor.consent

import rego.v1

v3_actcode := "http://terminology.hl7.org/CodeSystem/v3-ActCode"

act_reason := "http://terminology.hl7.org/CodeSystem/v3-ActReason"

consent_scope := "http://terminology.hl7.org/CodeSystem/consentscope"

consent_action := "http://terminology.hl7.org/CodeSystem/consentaction"

resource_types := "http://hl7.org/fhir/resource-types"

participation_type := "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"

# action_codes maps a gateway action to the consentaction codes it performs.
action_codes := {
	"read": {"access", "use", "disclose"},
	"write": {"collect", "correct"},
	"research-query": {"use", "disclose"},
	"export": {"use", "disclose"},
}

emergency_roles := {"physician", "nurse"}

break_glass_actions := {"read", "write"}

flip := {"permit": "deny", "deny": "permit"}

default configured_default := "deny"

configured_default := data.fhiranchor.config.default

# ---- the decision -----------------------------------------------------------

default decision := {
	"allow": false,
	"reasons": ["consent policy produced no decision"],
	"obligations": [],
	"basedOn": [],
	"breakGlass": false,
}

decision := {
	"allow": allow,
	"reasons": sort(reasons),
	"obligations": obligations,
	"basedOn": sort(based_on),
	"breakGlass": break_glass,
}

default allow := false

allow if {
	consent_allow
	not write_refused
}

allow if break_glass

consent_allow if {
	input_ok
	not no_consent
	not any_deny
}

consent_allow if {
	input_ok
	no_consent
	configured_default == "permit"
}

consent_allow if {
	input_ok
	no_consent
	implied_consent
}

input_ok if count(input_problems) == 0

no_consent if count(active) == 0

# implied lists, per action, the purposes of use the deployment's rules
# permit when a patient has no active consent on file ("*": any purpose).
# The default follows HIPAA: treatment, payment and operations reads, writes
# by the custodian, and de-identified research (opt-out). A stricter
# jurisdiction empties it; a consent on file always decides instead.
default implied := {}

implied := data.fhiranchor.config.implied

implied_consent if {
	some p in object.get(implied, input.action, [])
	p in {"*", input.purpose}
}

any_deny if {
	some e in consent_eval
	e.outcome == "deny"
}

# ---- writes: only for the patient's managing organization -----------------------

default write_any_organization := []

# write_any_organization lists client ids that may write for any organization
# (for example a migration or a national service).
write_any_organization := data.fhiranchor.config.write.any_organization

# A client whose token names no organization is not bound to one: the
# authorization server issued it for system-wide integration. A client bound
# to an organization writes only for that organization's patients.
write_refused if {
	input.action == "write"
	object.get(input, "patientOrganization", "") != ""
	object.get(input.actor, "organization", "") != ""
	not acts_for_patient_organization
}

acts_for_patient_organization if input.actor.organization == input.patientOrganization

acts_for_patient_organization if input.actor.clientId in write_any_organization

# ---- input checks (fail closed) ---------------------------------------------

input_problems contains "input.time missing" if not now_ns

input_problems contains "unknown action" if not action_key_table[input.action]

now_ns := time.parse_rfc3339_ns(input.time)

# ---- the request as coding keys ------------------------------------------------

# either_system lists the keys under which a provision's coding of `code` names
# it: with the given system or with none.
either_system(system, code) := {concat("|", [system, code]), concat("|", ["", code])}

# The constant key sets below are either_system of the codes they name, written
# out so that a decision does not build them again (consent_test.rego checks
# them against either_system and action_codes).

privacy_keys := {"http://terminology.hl7.org/CodeSystem/consentscope|patient-privacy", "|patient-privacy"}

optin_keys := {"http://terminology.hl7.org/CodeSystem/v3-ActCode|OPTIN", "|OPTIN"}

optout_keys := {"http://terminology.hl7.org/CodeSystem/v3-ActCode|OPTOUT", "|OPTOUT"}

etreat_keys := {"http://terminology.hl7.org/CodeSystem/v3-ActReason|ETREAT", "|ETREAT"}

# action_key_table maps each gateway action to the keys of the consentaction
# codes action_codes maps it to.
action_key_table := {
	"read": {
		"http://terminology.hl7.org/CodeSystem/consentaction|access", "|access",
		"http://terminology.hl7.org/CodeSystem/consentaction|use", "|use",
		"http://terminology.hl7.org/CodeSystem/consentaction|disclose", "|disclose",
	},
	"write": {
		"http://terminology.hl7.org/CodeSystem/consentaction|collect", "|collect",
		"http://terminology.hl7.org/CodeSystem/consentaction|correct", "|correct",
	},
	"research-query": {
		"http://terminology.hl7.org/CodeSystem/consentaction|use", "|use",
		"http://terminology.hl7.org/CodeSystem/consentaction|disclose", "|disclose",
	},
	"export": {
		"http://terminology.hl7.org/CodeSystem/consentaction|use", "|use",
		"http://terminology.hl7.org/CodeSystem/consentaction|disclose", "|disclose",
	},
}

action_keys := action_key_table[input.action]

purpose_keys := either_system(act_reason, input.purpose)

class_keys := either_system(resource_types, input.resource.type)

resource_code_keys := {concat("|", [object.get(c, "system", ""), c.code]) | some c in input.resource.codes}

resource_label_keys := {concat("|", [object.get(l, "system", ""), l.code]) | some l in input.resource.securityLabels}

resource_date_ns := time_lower(input.resource.date)

# ---- which consents count ---------------------------------------------------

active contains i if {
	some i, c in input.consents
	c.status == "active"
	some k in privacy_keys
	c.scope[k]
}

max_depth := 2

base_effect(c) := "permit" if {
	some k in optout_keys
	c.policyRule[k]
	not optin(c)
} else := "deny"

optin(c) if {
	some k in optin_keys
	c.policyRule[k]
}

base_name := {"permit": "OPTOUT", "deny": "OPTIN"}

# ---- grants: an untyped root naming recipients -----------------------------------

# recipient_role_keys are the actor roles that receive data: primary information
# recipient and information recipient. Other roles (custodian, author...) describe
# the data, not who gets it.
recipient_role_keys := {
	"http://terminology.hl7.org/CodeSystem/v3-ParticipationType|PRCP", "|PRCP",
	"http://terminology.hl7.org/CodeSystem/v3-ParticipationType|IRCP", "|IRCP",
}

# is_grant: a root provision is a grant to recipients (untyped, naming at least
# one actor in a recipient role).
default is_grant(_) := false

is_grant(root) if {
	not root.type
	by_role := root.criteria.actor.referencesByRole
	some k in recipient_role_keys
	by_role[k]
}

# actor_references are the references the requester acts as: its own (the
# token's fhirUser), the organization it acts for (the token's organization
# claim) and those the gateway resolved from stored state (input.actor.acting:
# the practitioner and organization of its PractitionerRole). A provision
# naming an Organization therefore binds the practitioners acting for it.
actor_references contains r if {
	some r in {input.actor.reference, object.get(input.actor, "organization", "")}
	r != ""
}

actor_references contains r if some r in object.get(input.actor, "acting", [])

# is_recipient: the requester is one of the recipients an actor criterion names.
is_recipient(actor) if {
	some k in recipient_role_keys
	some r in actor_references
	actor.referencesByRole[k][r]
}

# excludes: under a grant, the request falls under the root (it matches all of
# its criteria but actor) while the requester is not a recipient.
default excludes(_, _) := false

excludes(true, root) if {
	matches_except_actor(root)
	not is_recipient(root.criteria.actor)
}

# untyped_effect is the effect of a consent's provisions whose chain is untyped.
untyped_effect(true, _) := "permit"

untyped_effect(false, base_rule) := flip[base_rule]

# ---- one consent -----------------------------------------------------------------

# consent_eval[i] is everything the decision needs from active consent i, worked
# out once:
#   ref         {"id", "versionId"} for basedOn
#   excluded    it is a grant the request falls under from a non-recipient
#   outcome     "deny" (a problem, an exclusion or a deciding deny), "redact"
#               (only deciding denies that redact), "permit" (deciding
#               permits), else the base rule's effect
#   reasons     why, by consent id and provision path
#   provisions, effects, decisive, labels: see provisions_outcome
consent_eval[i] := {
	"ref": {"id": id, "versionId": c.versionId},
	"provisions": provs,
	"effects": r.effects,
	"decisive": r.decisive,
	"excluded": excluded,
	"outcome": outcome_of(problem, excluded, r.verdict, base_rule),
	"labels": r.labels,
	"reasons": consent_reasons(id, wrong, deep, excluded, r.reasons, base_rule),
} if {
	some i in active
	c := input.consents[i]
	id := object.get(c, "id", sprintf("#%d", [i]))
	wrong := c.patient != input.patient

	# Nesting deeper than root + 2 levels is not evaluated, so it denies.
	# (A consent compiled without maxDepth counts as too deep.)
	deep := object.get(c, "maxDepth", 1000) > max_depth
	problem := true in {wrong, deep}
	base_rule := base_effect(c)
	root := root_of(c)
	granting := is_grant(root)
	excluded := excludes(granting, root)
	provs := within_depth(c, deep)
	own := {j | some j, p in provs; own_match(j, p, granting)}
	r := provisions_outcome(id, provs, own, untyped_effect(granting, base_rule))
}

root_of(c) := p if p := c.provisions[0]
else := {}

within_depth(c, false) := c.provisions

within_depth(c, true) := {j: p | some j, p in c.provisions; p.depth <= max_depth}

# provisions_outcome works through a consent's provisions (within the evaluated
# depth, by index j in its provisions list) given those that match on their own:
#   effects     j -> "permit" or "deny"; a typed provision (its compiled type is
#               inherited from the nearest typed ancestor) permits only if typed
#               "permit", an untyped one takes the consent's untyped effect (a
#               grant permits, otherwise it does the opposite of the base rule)
#   decisive    the innermost candidates: provisions that apply (they and all
#               their ancestors match) and are not narrowed (they have no child
#               of the same effect, else they decide only through it)
#   verdict     "deny" if a deciding deny does not redact, else "redact" if one
#               redacts, else "permit" if a provision decides, else "none"
#   labels      the security labels the deciding denies redact
#   reasons     one per deciding provision
# When no provision matches on its own, none decides: that common case skips the rest.
provisions_outcome(id, provs, own, untyped) := no_provision_decides if count(own) == 0
else := {"effects": effects, "decisive": decisive, "verdict": verdict, "labels": labels, "reasons": reasons} if {
	effects := {j: provision_effect(p, untyped) | some j, p in provs}
	applies := {j | some j in own; every k in provs[j].chain { own[k] }}
	narrowed := {j | some j in applies; some k in provs[j].children; effects[k] == effects[j]}
	candidates := applies - narrowed
	below := {k | some j in candidates; some k in provs[j].chain; k != j}
	decisive := candidates - below
	denying := {j | some j in decisive; effects[j] == "deny"}
	chain_labels := {j: chain_labels_of(provs, j) | some j in denying}

	# A deciding deny whose chain names labels the resource carries redacts, on read.
	redacting := {j | input.action == "read"; some j in denying; count(chain_labels[j]) > 0}
	labels := {l | some j in redacting; some l in chain_labels[j]}
	verdict := verdict_of(count(denying - redacting) > 0, count(redacting) > 0, count(decisive) > 0)
	reasons := {sprintf("Consent/%s: %s by %s", [id, what, provs[j].path]) |
		some j in decisive
		what := object.get({r: "redact" | some r in redacting}, j, effects[j])
	}
}

no_provision_decides := {"effects": {}, "decisive": set(), "verdict": "none", "labels": set(), "reasons": set()}

verdict_of(hard_deny, redact, decided) := "deny" if hard_deny
else := "redact" if redact
else := "permit" if decided
else := "none"

outcome_of(true, _, _, _) := "deny"

outcome_of(false, true, _, _) := "deny"

outcome_of(false, false, "none", base_rule) := base_rule

outcome_of(false, false, verdict, _) := verdict if verdict != "none"

provision_effect(p, untyped) := "permit" if p.type == "permit"
else := "deny" if p.type
else := untyped

# own_match: provision j matches on its own. A grant's root matches only its
# recipients; every other provision matches when every criterion it states matches.
own_match(0, p, true) if {
	matches_except_actor(p)
	is_recipient(p.criteria.actor)
}

own_match(j, p, true) if {
	j > 0
	provision_matches(p)
}

own_match(_, p, false) if provision_matches(p)

provision_matches(p) if {
	every name, criterion in p.criteria {
		matches(name, criterion)
	}
}

matches_except_actor(p) if {
	every name, criterion in object.remove(p.criteria, {"actor"}) {
		matches(name, criterion)
	}
}

# chain_labels_of are the security labels named along provision j's chain that
# the requested resource carries.
chain_labels_of(provs, j) := {l |
	some a in provs[j].chain
	some k, l in object.get(provs[a].criteria, "securityLabel", {})
	resource_label_keys[k]
}

# consent_reasons: a problem says only that; an exclusion says only that (no
# provision applies then); else the deciding provisions, or the base rule.
consent_reasons(id, wrong, deep, excluded, decided, base_rule) := problem_reasons(id, wrong, deep) if true in {wrong, deep}
else := {sprintf("deny: not a recipient named by Consent/%s", [id])} if excluded
else := decided if count(decided) > 0
else := {sprintf("Consent/%s: %s by base policy %s", [id, base_rule, base_name[base_rule]])}

problem_reasons(id, wrong, deep) := {msg |
	wrong
	msg := sprintf("Consent/%s: consent of another patient: deny", [id])
} | {msg |
	deep
	msg := sprintf("Consent/%s: provisions nested deeper than 3 levels: deny", [id])
}

# ---- criteria (a provision lists only those it states) -------------------------

matches("period", period) if within(period, now_ns)

matches("dataPeriod", period) if within(period, resource_date_ns)

matches("actor", actor) if {
	some r in actor_references
	actor.references[r]
}

matches("actor", actor) if {
	some role in input.actor.roles
	actor.roles[role]
}

matches("action", keys) if {
	some k in action_keys
	keys[k]
}

matches("purpose", keys) if {
	some k in purpose_keys
	keys[k]
}

matches("class", keys) if {
	some k in class_keys
	keys[k]
}

matches("code", keys) if {
	some k in resource_code_keys
	keys[k]
}

matches("securityLabel", labels) if {
	some k in resource_label_keys
	labels[k]
}

matches("data", references) if references[input.resource.reference]

# within: t lies in a compiled period (bounds in ns, end exclusive, each optional).
within(period, t) if {
	object.get(period, "start", t) <= t
	t < object.get(period, "end", t + 1)
}

# ---- FHIR date/dateTime of the requested data ------------------------------------

time_lower(s) := time.parse_rfc3339_ns(s) if contains(s, "T")

time_lower(s) := time.parse_ns("2006-01-02", s) if {
	not contains(s, "T")
	count(s) == 10
}

time_lower(s) := time.parse_ns("2006-01", s) if count(s) == 7

time_lower(s) := time.parse_ns("2006", s) if count(s) == 4


# ---- reasons (consent ids, provision paths and codes; never values) -----------

reasons contains p if some p in input_problems

reasons contains msg if {
	no_consent
	not implied_consent
	msg := sprintf("no active patient-privacy consent: default %s", [configured_default])
}

reasons contains msg if {
	no_consent
	implied_consent
	msg := sprintf("no active patient-privacy consent: implied consent to %s for %s", [input.action, input.purpose])
}

reasons contains msg if {
	some e in consent_eval
	some msg in e.reasons
}

reasons contains "break-the-glass" if break_glass

reasons contains "write: client does not act for the patient's managing organization" if write_refused

# ---- basedOn and obligations --------------------------------------------------

# based_on names the consents the decision rests on: all of them under
# break-the-glass, else those that agree with it.
based_on := {e.ref | some e in consent_eval} if break_glass
else := {e.ref | some e in consent_eval; e.outcome != "deny"} if allow
else := {e.ref | some e in consent_eval; e.outcome == "deny"}

redact_labels contains l if {
	some e in consent_eval
	e.outcome == "redact"
	some l in e.labels
}

redact_obligations := [{"type": "redact", "securityLabels": sort(redact_labels)}] if {
	allow
	count(redact_labels) > 0
} else := []

glass_obligations := [{"type": "audit-break-glass"}] if break_glass
else := []

obligations := array.concat(redact_obligations, glass_obligations)

# ---- break-the-glass ----------------------------------------------------------

default break_glass := false

break_glass if {
	input.purpose == "ETREAT"
	input.action in break_glass_actions
	input_ok
	not write_refused
	not etreat_deny
	emergency_actor
}

emergency_actor if {
	some r in input.actor.roles
	r in emergency_roles
}

emergency_actor if etreat_permit

etreat_named(provs, j) if {
	some a in provs[j].chain
	some k in etreat_keys
	provs[a].criteria.purpose[k]
}

etreat_deny if {
	some e in consent_eval
	some j in e.decisive
	e.effects[j] == "deny"
	etreat_named(e.provisions, j)
}

# A grant for emergency treatment keeps emergencies to its recipients.
etreat_deny if {
	some e in consent_eval
	e.excluded
	some k in etreat_keys
	e.provisions[0].criteria.purpose[k]
}

etreat_permit if {
	some e in consent_eval
	some j in e.decisive
	e.effects[j] == "permit"
	etreat_named(e.provisions, j)
}

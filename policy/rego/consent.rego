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
#   - No active consent: data.fhiranchor.config.default ("deny" when absent).
#   - Write: whatever the consents say, a write to a patient with a managing
#     organization (input.patientOrganization) denies unless the actor acts for
#     that organization or its client is listed in
#     data.fhiranchor.config.write.any_organization. Break-the-glass does not
#     lift this.
#
# Each input.consents element is a Consent as policy.CompileConsent flattens it,
# once per Consent version, so that a decision mostly looks things up:
#
#   id, versionId, status   strings ("id" absent when the Consent has none)
#   patient                 patient.reference ("" when absent)
#   scope, policyRule       sets of coding keys
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
	count(input_problems) == 0
	count(active) > 0
	not any_deny
}

consent_allow if {
	count(input_problems) == 0
	count(active) == 0
	configured_default == "permit"
}

consent_allow if {
	count(input_problems) == 0
	count(active) == 0
	implied_consent
}

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
	some i in active
	consent_outcome[i] == "deny"
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

input_problems contains "unknown action" if not action_codes[input.action]

now_ns := time.parse_rfc3339_ns(input.time)

request_actions := action_codes[input.action]

# ---- the request as coding keys ------------------------------------------------

# either_system lists the keys under which a provision's coding of `code` names
# it: with the given system or with none.
either_system(system, code) := {concat("|", [system, code]), concat("|", ["", code])}

privacy_keys := either_system(consent_scope, "patient-privacy")

action_keys := {k | some code in request_actions; some k in either_system(consent_action, code)}

purpose_keys := either_system(act_reason, input.purpose)

class_keys := either_system(resource_types, input.resource.type)

etreat_keys := either_system(act_reason, "ETREAT")

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

# A consent about another patient means the caller passed the wrong set: deny.
wrong_patient contains i if {
	some i in active
	input.consents[i].patient != input.patient
}

max_depth := 2

# Nesting deeper than root + 2 levels is not evaluated, so it denies.
too_deep contains i if {
	some i in active
	some p in input.consents[i].provisions
	p.depth > max_depth
}

problem := wrong_patient | too_deep

policy_rule(c, code) if {
	some k in either_system(v3_actcode, code)
	c.policyRule[k]
}

base_effect(c) := "permit" if {
	policy_rule(c, "OPTOUT")
	not policy_rule(c, "OPTIN")
} else := "deny"

base_name := {"permit": "OPTOUT", "deny": "OPTIN"}

base[i] := base_effect(input.consents[i]) if some i in active

# ---- grants: an untyped root naming recipients -----------------------------------

# recipient_role_keys are the actor roles that receive data: primary information
# recipient and information recipient. Other roles (custodian, author...) describe
# the data, not who gets it.
recipient_role_keys := either_system(participation_type, "PRCP") | either_system(participation_type, "IRCP")

# grant holds the active consents whose root provision is a grant to recipients.
grant contains i if {
	some i in active
	root := input.consents[i].provisions[0]
	not root.type
	some k in recipient_role_keys
	root.criteria.actor.referencesByRole[k]
}

# is_recipient: the requester is one of the recipients an actor criterion names.
is_recipient(actor) if {
	some k in recipient_role_keys
	actor.referencesByRole[k][input.actor.reference]
}

# excluded holds the grant consents that the request falls under (it matches all
# of the root's criteria but actor) while the requester is not a recipient.
excluded contains i if {
	some i in grant
	root := input.consents[i].provisions[0]
	matches_except_actor(root)
	not is_recipient(root.criteria.actor)
}

# untyped_effect is the effect of consent i's provisions whose chain is untyped.
untyped_effect(i) := "permit" if i in grant
else := flip[base[i]]

# ---- provisions: by consent index, then by index in its provisions list --------

# evaluated[i] works through active consent i's provisions within the
# evaluated depth, by index j in its provisions list:
#   provisions  j -> provision
#   effects     j -> "permit" or "deny"; a typed provision (its compiled type is
#               inherited from the nearest typed ancestor) permits only if typed
#               "permit", an untyped one takes untyped_effect (a grant permits,
#               otherwise it does the opposite of the base rule)
#   decisive    the innermost candidates: provisions that apply (they and all
#               their ancestors match) and are not narrowed (they have no child
#               of the same effect, else they decide only through it)
evaluated[i] := {"provisions": provs, "effects": effects, "decisive": decisive} if {
	some i in active
	untyped := untyped_effect(i)
	provs := {j: p | some j, p in input.consents[i].provisions; p.depth <= max_depth}
	effects := {j: provision_effect(p, untyped) | some j, p in provs}
	own := {j | some j, p in provs; own_match(i, j, p)}
	applies := {j | some j in own; chain_matches(provs[j], own)}
	narrowed := {j | some j in applies; some k in provs[j].children; effects[k] == effects[j]}
	candidates := applies - narrowed
	decisive := {j | some j in candidates; not candidate_below(candidates, provs, j)}
}

provisions[i] := evaluated[i].provisions if some i in active

effect[i] := evaluated[i].effects if some i in active

# decisive holds [i, j] for each decisive provision j of consent i.
decisive contains [i, j] if {
	some i, e in evaluated
	some j in e.decisive
}

provision_effect(p, untyped) := "permit" if p.type == "permit"
else := "deny" if p.type
else := untyped

# own_match: provision j of consent i matches on its own. A grant's root
# matches only its recipients; every other provision matches when every
# criterion it states matches.
own_match(i, 0, p) if {
	i in grant
	matches_except_actor(p)
	is_recipient(p.criteria.actor)
}

own_match(i, j, p) if {
	not grant_root(i, j)
	provision_matches(p)
}

grant_root(i, 0) if i in grant

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

chain_matches(p, own) if {
	every k in p.chain {
		own[k]
	}
}

candidate_below(candidates, provs, j) if {
	some k in candidates
	k != j
	j in provs[k].chain
}

# ---- criteria (a provision lists only those it states) -------------------------

matches("period", period) if within(period, now_ns)

matches("dataPeriod", period) if within(period, resource_date_ns)

matches("actor", actor) if actor.references[input.actor.reference]

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

# ---- per-consent outcome ------------------------------------------------------

redactable(key) if {
	input.action == "read"
	count(chain_labels(key)) > 0
}

# chain_labels are the security labels named along a provision's chain that the
# requested resource carries.
chain_labels(key) := {l |
	provs := provisions[key[0]]
	some j in provs[key[1]].chain
	some k, l in object.get(provs[j].criteria, "securityLabel", {})
	resource_label_keys[k]
}

outcome(i) := "deny" if i in problem
else := "deny" if i in excluded
else := "deny" if {
	some key in decisive
	key[0] == i
	effect[key[0]][key[1]] == "deny"
	not redactable(key)
} else := "redact" if {
	some key in decisive
	key[0] == i
	effect[key[0]][key[1]] == "deny"
} else := "permit" if {
	some key in decisive
	key[0] == i
} else := base[i]

consent_outcome[i] := outcome(i) if some i in active

decided(i) if {
	some key in decisive
	key[0] == i
}

cid(i) := id if id := input.consents[i].id
else := sprintf("#%d", [i])

# ---- reasons (consent ids, provision paths and codes; never values) -----------

reasons contains p if some p in input_problems

reasons contains msg if {
	count(active) == 0
	not implied_consent
	msg := sprintf("no active patient-privacy consent: default %s", [configured_default])
}

reasons contains msg if {
	count(active) == 0
	implied_consent
	msg := sprintf("no active patient-privacy consent: implied consent to %s for %s", [input.action, input.purpose])
}

reasons contains msg if {
	some i in wrong_patient
	msg := sprintf("Consent/%s: consent of another patient: deny", [cid(i)])
}

reasons contains msg if {
	some i in too_deep
	msg := sprintf("Consent/%s: provisions nested deeper than 3 levels: deny", [cid(i)])
}

reasons contains msg if {
	some i in excluded
	not i in problem
	msg := sprintf("deny: not a recipient named by Consent/%s", [cid(i)])
}

reasons contains msg if {
	some key in decisive
	not key[0] in problem
	what := key_outcome(key)
	msg := sprintf("Consent/%s: %s by %s", [cid(key[0]), what, provisions[key[0]][key[1]].path])
}

reasons contains msg if {
	some i in active
	not i in problem
	not i in excluded
	not decided(i)
	msg := sprintf("Consent/%s: %s by base policy %s", [cid(i), base[i], base_name[base[i]]])
}

reasons contains "break-the-glass" if break_glass

reasons contains "write: client does not act for the patient's managing organization" if write_refused

key_outcome(key) := "redact" if {
	effect[key[0]][key[1]] == "deny"
	redactable(key)
} else := effect[key[0]][key[1]]

# ---- basedOn and obligations --------------------------------------------------

based_on contains {"id": cid(i), "versionId": input.consents[i].versionId} if {
	some i in active
	deciding(i)
}

deciding(_) if break_glass

deciding(i) if {
	not break_glass
	allow
	consent_outcome[i] != "deny"
}

deciding(i) if {
	not break_glass
	not allow
	consent_outcome[i] == "deny"
}

redact_labels contains l if {
	some key in decisive
	consent_outcome[key[0]] == "redact"
	effect[key[0]][key[1]] == "deny"
	some l in chain_labels(key)
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
	count(input_problems) == 0
	not write_refused
	not etreat_deny
	emergency_actor
}

emergency_actor if {
	some r in input.actor.roles
	r in emergency_roles
}

emergency_actor if etreat_permit

etreat_named(key) if {
	provs := provisions[key[0]]
	some j in provs[key[1]].chain
	some k in etreat_keys
	provs[j].criteria.purpose[k]
}

etreat_deny if {
	some key in decisive
	effect[key[0]][key[1]] == "deny"
	etreat_named(key)
}

# A grant for emergency treatment keeps emergencies to its recipients.
etreat_deny if {
	some i in excluded
	some k in etreat_keys
	input.consents[i].provisions[0].criteria.purpose[k]
}

etreat_permit if {
	some key in decisive
	effect[key[0]][key[1]] == "permit"
	etreat_named(key)
}

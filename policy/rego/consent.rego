# Package fhiranchor.consent decides one access request against the patient's
# FHIR R4 Consent resources (scope patient-privacy), given as input.consents.
#
# Semantics (see policy/doc.go for the reasons behind each choice):
#   - Only consents with status "active" and scope patient-privacy count.
#   - policyRule OPTIN: base deny; OPTOUT: base permit; anything else: base deny.
#   - A provision's effect is its own type, else the nearest typed ancestor's;
#     an untyped chain takes the opposite of the base rule (the consent's own
#     opt-in grant or opt-out withholding).
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
package fhiranchor.consent

import rego.v1

v3_actcode := "http://terminology.hl7.org/CodeSystem/v3-ActCode"

act_reason := "http://terminology.hl7.org/CodeSystem/v3-ActReason"

consent_scope := "http://terminology.hl7.org/CodeSystem/consentscope"

consent_action := "http://terminology.hl7.org/CodeSystem/consentaction"

resource_types := "http://hl7.org/fhir/resource-types"

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

allow if consent_allow

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

any_deny if {
	some i in active
	consent_outcome[i] == "deny"
}

# ---- input checks (fail closed) ---------------------------------------------

input_problems contains "input.time missing" if not now_ns

input_problems contains "unknown action" if not action_codes[input.action]

now_ns := time.parse_rfc3339_ns(input.time)

request_actions := action_codes[input.action]

# ---- which consents count ---------------------------------------------------

active contains i if {
	some i, c in input.consents
	c.status == "active"
	privacy_scope(c)
}

privacy_scope(c) if {
	some coding in c.scope.coding
	coding.code == "patient-privacy"
	system_is(coding, consent_scope)
}

# A consent about another patient means the caller passed the wrong set: deny.
wrong_patient contains i if {
	some i in active
	object.get(input.consents[i], ["patient", "reference"], "") != input.patient
}

# Nesting deeper than root + 2 levels is not evaluated, so it denies.
too_deep contains i if {
	some i in active
	some p1 in input.consents[i].provision.provision
	some p2 in p1.provision
	count(object.get(p2, "provision", [])) > 0
}

problem := wrong_patient | too_deep

policy_rule(c, code) if {
	some coding in c.policyRule.coding
	coding.code == code
	system_is(coding, v3_actcode)
}

base_effect(c) := "permit" if {
	policy_rule(c, "OPTOUT")
	not policy_rule(c, "OPTIN")
} else := "deny"

base_name(c) := "OPTOUT" if base_effect(c) == "permit"
else := "OPTIN"

# ---- provisions: key [consent index, path], path like ["provision", 2] --------

node[[i, []]] := p if {
	some i in active
	p := input.consents[i].provision
}

node[[i, ["provision", j]]] := p if {
	some i in active
	some j, p in input.consents[i].provision.provision
}

node[[i, ["provision", j, "provision", k]]] := p if {
	some i in active
	some j, p1 in input.consents[i].provision.provision
	some k, p in p1.provision
}

# prefixes lists the paths of a provision's ancestors and itself, root first.
prefixes(path) := [array.slice(path, 0, k) | some k in numbers.range(0, count(path)); k % 2 == 0]

effect[key] := e if {
	some key, _ in node
	[i, path] := key
	typed := [t | some pre in prefixes(path); t := node[[i, pre]].type]
	e := chain_effect(typed, input.consents[i])
}

chain_effect(typed, _) := "permit" if {
	count(typed) > 0
	typed[count(typed) - 1] == "permit"
}

chain_effect(typed, _) := "deny" if {
	count(typed) > 0
	typed[count(typed) - 1] != "permit"
}

chain_effect(typed, c) := flip[base_effect(c)] if count(typed) == 0

own_match contains key if {
	some key, p in node
	period_ok(p)
	actor_ok(p)
	action_ok(p)
	purpose_ok(p)
	class_ok(p)
	code_ok(p)
	label_ok(p)
	data_period_ok(p)
	data_ok(p)
}

applies contains key if {
	some key, _ in node
	[i, path] := key
	every pre in prefixes(path) {
		own_match[[i, pre]]
	}
}

narrowed contains key if {
	some key, p in node
	[i, path] := key
	some j, _ in p.provision
	effect[[i, array.concat(path, ["provision", j])]] == effect[key]
}

candidate contains key if {
	some key in applies
	not narrowed[key]
}

decisive contains key if {
	some key in candidate
	not has_candidate_below(key)
}

has_candidate_below(key) if {
	some other in candidate
	other[0] == key[0]
	count(other[1]) > count(key[1])
	array.slice(other[1], 0, count(key[1])) == key[1]
}

# ---- criteria (an absent or empty criterion matches everything) ---------------

empty(p, field) if count(object.get(p, field, [])) == 0

system_is(coding, system) if object.get(coding, "system", system) == system

same_coding(a, b) if {
	a.code == b.code
	object.get(a, "system", "") == object.get(b, "system", "")
}

period_ok(p) if not p.period

period_ok(p) if within(p.period, now_ns)

actor_ok(p) if empty(p, "actor")

actor_ok(p) if {
	some a in p.actor
	a.reference.reference == input.actor.reference
}

actor_ok(p) if {
	some a in p.actor
	not a.reference.reference
	some coding in a.role.coding
	coding.code in input.actor.roles
}

action_ok(p) if empty(p, "action")

action_ok(p) if {
	some cc in p.action
	some coding in cc.coding
	system_is(coding, consent_action)
	coding.code in request_actions
}

purpose_ok(p) if empty(p, "purpose")

purpose_ok(p) if {
	some coding in p.purpose
	system_is(coding, act_reason)
	coding.code == input.purpose
}

class_ok(p) if empty(p, "class")

class_ok(p) if {
	some coding in p.class
	system_is(coding, resource_types)
	coding.code == input.resource.type
}

code_ok(p) if empty(p, "code")

code_ok(p) if {
	some cc in p.code
	some coding in cc.coding
	some rc in input.resource.codes
	same_coding(coding, rc)
}

label_ok(p) if empty(p, "securityLabel")

label_ok(p) if {
	some l in p.securityLabel
	some rl in input.resource.securityLabels
	same_coding(l, rl)
}

data_period_ok(p) if not p.dataPeriod

data_period_ok(p) if within(p.dataPeriod, time_lower(input.resource.date))

data_ok(p) if empty(p, "data")

data_ok(p) if {
	some d in p.data
	d.reference.reference == input.resource.reference
}

# ---- FHIR date/dateTime periods (end inclusive at its precision) --------------

time_lower(s) := time.parse_rfc3339_ns(s) if contains(s, "T")

time_lower(s) := time.parse_ns("2006-01-02", s) if {
	not contains(s, "T")
	count(s) == 10
}

time_lower(s) := time.parse_ns("2006-01", s) if count(s) == 7

time_lower(s) := time.parse_ns("2006", s) if count(s) == 4

time_upper(s) := time_lower(s) + 1 if contains(s, "T")

time_upper(s) := time.add_date(time_lower(s), 0, 0, 1) if {
	not contains(s, "T")
	count(s) == 10
}

time_upper(s) := time.add_date(time_lower(s), 0, 1, 0) if count(s) == 7

time_upper(s) := time.add_date(time_lower(s), 1, 0, 0) if count(s) == 4

within(period, t) if {
	start_ok(period, t)
	end_ok(period, t)
}

start_ok(period, _) if not period.start

start_ok(period, t) if time_lower(period.start) <= t

end_ok(period, _) if not period.end

end_ok(period, t) if t < time_upper(period.end)

# ---- per-consent outcome ------------------------------------------------------

redactable(key) if {
	input.action == "read"
	count(chain_labels(key)) > 0
}

# chain_labels are the security labels named along a provision's chain that the
# requested resource carries.
chain_labels(key) := {{"system": object.get(l, "system", ""), "code": l.code} |
	some pre in prefixes(key[1])
	some l in object.get(node[[key[0], pre]], "securityLabel", [])
	some rl in input.resource.securityLabels
	same_coding(l, rl)
}

outcome(i) := "deny" if i in problem
else := "deny" if {
	some key in decisive
	key[0] == i
	effect[key] == "deny"
	not redactable(key)
} else := "redact" if {
	some key in decisive
	key[0] == i
	effect[key] == "deny"
} else := "permit" if {
	some key in decisive
	key[0] == i
} else := base_effect(input.consents[i])

consent_outcome[i] := outcome(i) if some i in active

decided(i) if {
	some key in decisive
	key[0] == i
}

cid(i) := object.get(input.consents[i], "id", sprintf("#%d", [i]))

path_string(path) := concat("", array.concat(["provision"], [sprintf(".provision[%d]", [j]) | some n, j in path; n % 2 == 1]))

# ---- reasons (consent ids, provision paths and codes; never values) -----------

reasons contains p if some p in input_problems

reasons contains msg if {
	count(active) == 0
	msg := sprintf("no active patient-privacy consent: default %s", [configured_default])
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
	some key in decisive
	not key[0] in problem
	what := key_outcome(key)
	msg := sprintf("Consent/%s: %s by %s", [cid(key[0]), what, path_string(key[1])])
}

reasons contains msg if {
	some i in active
	not i in problem
	not decided(i)
	msg := sprintf("Consent/%s: %s by base policy %s", [cid(i), base_effect(input.consents[i]), base_name(input.consents[i])])
}

reasons contains "break-the-glass" if break_glass

key_outcome(key) := "redact" if {
	effect[key] == "deny"
	redactable(key)
} else := effect[key]

# ---- basedOn and obligations --------------------------------------------------

based_on contains {"id": cid(i), "versionId": object.get(input.consents[i], ["meta", "versionId"], "")} if {
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
	effect[key] == "deny"
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
	not etreat_deny
	emergency_actor
}

emergency_actor if {
	some r in input.actor.roles
	r in emergency_roles
}

emergency_actor if etreat_permit

etreat_named(key) if {
	some pre in prefixes(key[1])
	some coding in object.get(node[[key[0], pre]], "purpose", [])
	coding.code == "ETREAT"
	system_is(coding, act_reason)
}

etreat_deny if {
	some key in decisive
	effect[key] == "deny"
	etreat_named(key)
}

etreat_permit if {
	some key in decisive
	effect[key] == "permit"
	etreat_named(key)
}

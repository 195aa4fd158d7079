package fhiranchor.consent_test

import rego.v1

import data.fhiranchor.consent

# Consents here are written as policy.CompileConsent compiles them (see the
# input description at the top of consent.rego).

v3_actcode := "http://terminology.hl7.org/CodeSystem/v3-ActCode"

act_reason := "http://terminology.hl7.org/CodeSystem/v3-ActReason"

consentaction := "http://terminology.hl7.org/CodeSystem/consentaction"

key(system, code) := concat("|", [system, code])

psy := {"system": v3_actcode, "code": "PSY"}

org_a := {"references": {"Organization/a"}, "roles": set()}

access := {key(consentaction, "access")}

mk(id, rule, provisions) := {
	"id": id, "versionId": "1", "status": "active",
	"scope": {key("http://terminology.hl7.org/CodeSystem/consentscope", "patient-privacy")},
	"patient": "Patient/p", "policyRule": {key(v3_actcode, rule)}, "provisions": provisions,
	"maxDepth": max(array.concat([-1], [p.depth | some p in provisions])),
}

# prov is a compiled provision; fields add its (inherited) type and its criteria.
prov(path, chain, children, fields) := object.union(
	{"path": path, "depth": count(chain) - 1, "chain": chain, "children": children, "criteria": {}},
	fields,
)

root(criteria) := prov("provision", [0], [], {"criteria": criteria})

# first_ns and after_ns bound a FHIR date: its first instant, and the first instant after it.
first_ns(date) := time.parse_ns("2006-01-02", date)

after_ns(date) := time.add_date(first_ns(date), 0, 0, 1)

req(consents) := {
	"time": "2024-06-01T12:00:00Z", "action": "read", "purpose": "TREAT",
	"actor": {"clientId": "c", "reference": "Organization/a", "roles": []},
	"patient": "Patient/p",
	"resource": {"type": "Observation", "id": "o1", "reference": "Observation/o1", "securityLabels": [], "codes": [], "date": "2024-01-01"},
	"consents": consents,
}

decide(x) := d if d := consent.decision with input as x

test_constant_key_tables if {
	consent.privacy_keys == consent.either_system(consent.consent_scope, "patient-privacy")
	consent.optin_keys == consent.either_system(v3_actcode, "OPTIN")
	consent.optout_keys == consent.either_system(v3_actcode, "OPTOUT")
	consent.etreat_keys == consent.either_system(act_reason, "ETREAT")
	consent.recipient_role_keys == consent.either_system(consent.participation_type, "PRCP") | consent.either_system(consent.participation_type, "IRCP")
	{a | some a, _ in consent.action_key_table} == {a | some a, _ in consent.action_codes}
	every action, codes in consent.action_codes {
		consent.action_key_table[action] == {k | some code in codes; some k in consent.either_system(consent.consent_action, code)}
	}
}

test_no_consent_uses_configured_default if {
	r := object.union(req([]), {"purpose": "HMARKT"})
	d := decide(r)
	not d.allow
	"no active patient-privacy consent: default deny" in d.reasons
	d2 := consent.decision with input as r with data.fhiranchor.config.default as "permit"
	d2.allow
}

test_no_consent_implies_treatment_payment_operations if {
	every p in {"TREAT", "HPAYMT", "HOPERAT"} {
		d := decide(object.union(req([]), {"purpose": p}))
		d.allow
		sprintf("no active patient-privacy consent: implied consent to read for %s", [p]) in d.reasons
	}
	not decide(object.union(req([]), {"purpose": "HRESCH"})).allow
	decide(object.union(req([]), {"action": "research-query", "purpose": "HRESCH"})).allow
	not decide(object.union(req([]), {"action": "research-query", "purpose": "TREAT"})).allow
	decide(object.union(req([]), {"action": "write", "purpose": ""})).allow
}

test_no_implied_consent_when_configured_empty if {
	d := consent.decision with input as req([]) with data.fhiranchor.config.implied as {}
	not d.allow
}

test_consent_on_file_overrides_implied_consent if {
	# An opt-in consent with no matching permit denies treatment reads that
	# implied consent alone would have allowed.
	d := decide(req([mk("c1", "OPTIN", [root({"actor": {"references": {"Organization/z"}, "roles": set()}})])]))
	not d.allow
}

test_client_without_organization_is_not_bound if {
	r := write_req([mk("c1", "OPTOUT", [])], "")
	decide(r).allow
}

test_inactive_and_other_scopes_ignored if {
	c1 := object.union(mk("c1", "OPTIN", [root({})]), {"status": "inactive"})
	c2 := object.union(mk("c2", "OPTIN", [root({})]), {"scope": {"|research"}})
	d := consent.decision with input as req([c1, c2]) with data.fhiranchor.config.default as "permit"
	d.allow
	d.basedOn == []
}

test_optout_base_permits if {
	d := decide(req([mk("c1", "OPTOUT", [])]))
	d.allow
	d.basedOn == [{"id": "c1", "versionId": "1"}]
	"Consent/c1: permit by base policy OPTOUT" in d.reasons
}

test_optin_base_denies if not decide(req([mk("c1", "OPTIN", [root({"actor": {"references": {"Organization/b"}, "roles": set()}})])])).allow

test_optin_root_grant_permits if decide(req([mk("c1", "OPTIN", [root({"actor": org_a})])])).allow

test_optout_root_withholds if {
	d := decide(req([mk("c1", "OPTOUT", [root({"actor": org_a})])]))
	not d.allow
	"Consent/c1: deny by provision" in d.reasons
}

test_period if {
	c := mk("c1", "OPTIN", [root({"period": {"start": first_ns("2024-01-01"), "end": after_ns("2024-05-31")}})])
	not decide(req([c])).allow
	decide(object.union(req([c]), {"time": "2024-05-31T23:59:59Z"})).allow
}

test_actor_role_when_no_reference if {
	c := mk("c1", "OPTIN", [root({"actor": {"references": set(), "roles": {"physician"}}})])
	not decide(req([c])).allow
	decide(object.union(req([c]), {"actor": {"reference": "Practitioner/x", "roles": ["physician"]}})).allow
}

test_action_mapping if {
	c := mk("c1", "OPTOUT", [prov("provision", [0], [], {"type": "deny", "criteria": {"actor": org_a, "action": access}})])
	not decide(req([c])).allow
	decide(object.union(req([c]), {"action": "write"})).allow
}

test_unknown_action_denies if {
	d := decide(object.union(req([mk("c1", "OPTOUT", [])]), {"action": "delete"}))
	not d.allow
	"unknown action" in d.reasons
}

test_purpose if {
	c := mk("c1", "OPTIN", [root({"purpose": {key(act_reason, "HRESCH")}})])
	not decide(req([c])).allow
	decide(object.union(req([c]), {"purpose": "HRESCH"})).allow
}

test_class_and_code if {
	c := mk("c1", "OPTIN", [root({
		"class": {key("http://hl7.org/fhir/resource-types", "Observation")},
		"code": {key("http://loinc.org", "1-8")},
	})])
	not decide(req([c])).allow
	r := req([c])
	decide(object.union(r, {"resource": object.union(r.resource, {"codes": [{"system": "http://loinc.org", "code": "1-8"}]})})).allow
}

test_data_and_data_period if {
	c := mk("c1", "OPTOUT", [
		prov("provision", [0], [1, 2], {}),
		prov("provision.provision[0]", [0, 1], [], {"type": "deny", "criteria": {"data": {"Observation/o1"}}}),
		prov("provision.provision[1]", [0, 2], [], {"type": "deny", "criteria": {"dataPeriod": {
			"start": first_ns("2020-01-01"),
			"end": after_ns("2020-12-31"),
		}}}),
	])
	not decide(req([c])).allow
	r := req([c])
	decide(object.union(r, {"resource": object.union(r.resource, {"reference": "Observation/o2"})})).allow
	not decide(object.union(r, {"resource": object.union(r.resource, {"reference": "Observation/o2", "date": "2020-12-31"})})).allow
}

test_nested_deny_carves_exception if {
	c := mk("c1", "OPTIN", [
		prov("provision", [0], [1], {"criteria": {"actor": org_a}}),
		prov("provision.provision[0]", [0, 1], [], {"type": "deny", "criteria": {"class": {"|Observation"}}}),
	])
	d := decide(req([c]))
	not d.allow
	"Consent/c1: deny by provision.provision[0]" in d.reasons
	r := req([c])
	decide(object.union(r, {"resource": object.union(r.resource, {"type": "Condition"})})).allow
}

test_nested_same_effect_narrows if {
	c := mk("c1", "OPTIN", [
		prov("provision", [0], [1], {"criteria": {"period": {"start": time.parse_ns("2006", "2024")}}}),
		prov("provision.provision[0]", [0, 1], [], {"type": "permit", "criteria": {"class": {"|MedicationRequest"}}}),
	])
	not decide(req([c])).allow
	r := req([c])
	decide(object.union(r, {"resource": object.union(r.resource, {"type": "MedicationRequest"})})).allow
}

test_deny_overrides_between_consents if {
	not decide(req([mk("c1", "OPTOUT", []), mk("c2", "OPTOUT", [root({"actor": org_a})])])).allow
}

test_security_label_deny_redacts_on_read if {
	c := mk("c1", "OPTOUT", [
		prov("provision", [0], [1], {}),
		prov("provision.provision[0]", [0, 1], [], {"type": "deny", "criteria": {"securityLabel": {key(psy.system, psy.code): psy}}}),
	])
	r := req([c])
	labelled := object.union(r, {"resource": object.union(r.resource, {"securityLabels": [psy]})})
	d := decide(labelled)
	d.allow
	d.obligations == [{"type": "redact", "securityLabels": [psy]}]
	not decide(object.union(labelled, {"action": "export"})).allow
	decide(r).obligations == []
}

test_break_glass if {
	c := mk("c1", "OPTIN", [root({"actor": {"references": {"Organization/b"}, "roles": set()}})])
	r := object.union(req([c]), {"purpose": "ETREAT", "actor": {"reference": "Practitioner/x", "roles": ["physician"]}})
	d := decide(r)
	d.allow
	d.breakGlass
	"break-the-glass" in d.reasons
	{"type": "audit-break-glass"} in d.obligations
	not decide(object.union(r, {"actor": {"reference": "Practitioner/x", "roles": ["clerk"]}})).allow
}

test_break_glass_refused_by_explicit_etreat_deny if {
	c := mk("c1", "OPTOUT", [prov("provision", [0], [], {"type": "deny", "criteria": {"purpose": {key(act_reason, "ETREAT")}}})])
	r := object.union(req([c]), {"purpose": "ETREAT", "actor": {"reference": "Practitioner/x", "roles": ["physician"]}})
	d := decide(r)
	not d.allow
	not d.breakGlass
}

test_consent_of_other_patient_denies if {
	c := object.union(mk("c1", "OPTOUT", []), {"patient": "Patient/q"})
	d := decide(req([c]))
	not d.allow
	"Consent/c1: consent of another patient: deny" in d.reasons
}

test_consent_without_max_depth_counts_as_too_deep if {
	d := decide(req([object.remove(mk("c1", "OPTOUT", []), ["maxDepth"])]))
	not d.allow
	d.reasons == ["Consent/c1: provisions nested deeper than 3 levels: deny"]
}

test_too_deep_denies if {
	c := mk("c1", "OPTOUT", [
		prov("provision", [0], [1], {}),
		prov("provision.provision[0]", [0, 1], [2], {"type": "deny"}),
		prov("provision.provision[0].provision[0]", [0, 1, 2], [3], {"type": "permit"}),
		prov("provision.provision[0].provision[0].provision[0]", [0, 1, 2, 3], [], {"type": "deny"}),
	])
	d := decide(object.union(req([c]), {"action": "write"}))
	not d.allow
	d.reasons == ["Consent/c1: provisions nested deeper than 3 levels: deny"]
}

# ---- writes and the patient's managing organization -----------------------------

write_req(consents, actor_org) := object.union(req(consents), {
	"action": "write", "patientOrganization": "Organization/mo",
	"actor": {"clientId": "c", "reference": "Organization/a", "roles": [], "organization": actor_org},
})

test_write_by_the_managing_organization if decide(write_req([mk("c1", "OPTOUT", [])], "Organization/mo")).allow

test_write_for_another_organization_denies if {
	d := decide(write_req([mk("c1", "OPTOUT", [])], "Organization/other"))
	not d.allow
	"write: client does not act for the patient's managing organization" in d.reasons
	"Consent/c1: permit by base policy OPTOUT" in d.reasons
}

test_write_without_actor_organization_is_unbound if {
	r := write_req([mk("c1", "OPTOUT", [])], "")
	decide(object.union(r, {"actor": {"clientId": "c", "reference": "Organization/a", "roles": []}})).allow
}

test_write_by_any_organization_client if {
	r := write_req([mk("c1", "OPTOUT", [])], "Organization/other")
	d := consent.decision with input as r with data.fhiranchor.config.write.any_organization as ["x", "c"]
	d.allow
	d2 := consent.decision with input as r with data.fhiranchor.config.write.any_organization as ["x"]
	not d2.allow
}

test_write_without_patient_organization_unconstrained if {
	r := write_req([mk("c1", "OPTOUT", [])], "Organization/other")
	decide(object.union(r, {"patientOrganization": ""})).allow
	decide(object.remove(r, ["patientOrganization"])).allow
}

test_write_organization_needs_consent_too if {
	not decide(write_req([mk("c1", "OPTIN", [])], "Organization/mo")).allow
}

test_read_ignores_patient_organization if {
	decide(object.union(write_req([mk("c1", "OPTOUT", [])], "Organization/other"), {"action": "read"})).allow
}

test_write_organization_not_lifted_by_break_glass if {
	r := object.union(write_req([mk("c1", "OPTOUT", [])], "Organization/other"), {"purpose": "ETREAT"})
	phys := object.union(r, {"actor": object.union(r.actor, {"roles": ["physician"]})})
	d := decide(phys)
	not d.allow
	not d.breakGlass
	d.obligations == []
	decide(object.union(phys, {"actor": object.union(phys.actor, {"organization": "Organization/mo"})})).breakGlass
}

test_write_organization_with_default_permit if {
	r := write_req([], "Organization/other")
	d := consent.decision with input as r with data.fhiranchor.config.default as "permit"
	not d.allow
	d2 := consent.decision with input as object.union(r, {"patientOrganization": ""}) with data.fhiranchor.config.default as "permit"
	d2.allow
}

# ---- grants: an untyped root naming recipients (PRCP, IRCP) ----------------------

participation := "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"

# named(by_role) is a compiled actor criterion of named actors: role key -> references.
named(by_role) := {
	"references": {r | some refs in by_role; some r in refs},
	"roles": set(),
	"referencesByRole": by_role,
}

prcp_a := named({key(participation, "PRCP"): {"Organization/a"}})

as_actor(r, ref) := object.union(r, {"actor": object.union(r.actor, {"reference": ref})})

test_grant_permits_the_recipient_whatever_policy_rule if {
	every rule in {"OPTIN", "OPTOUT"} {
		d := decide(req([mk("c1", rule, [root({"actor": prcp_a, "action": access})])]))
		d.allow
		"Consent/c1: permit by provision" in d.reasons
	}
}

test_grant_is_exclusive if {
	r := as_actor(req([mk("c1", "OPTOUT", [root({"actor": prcp_a, "action": access})])]), "Organization/b")
	d := decide(r)
	not d.allow
	d.reasons == ["deny: not a recipient named by Consent/c1"]
	d.basedOn == [{"id": "c1", "versionId": "1"}]
}

test_grant_exclusive_only_where_its_other_criteria_match if {
	# A write is not the granted access: the grant says nothing about it.
	r := as_actor(req([mk("c1", "OPTOUT", [root({"actor": prcp_a, "action": access})])]), "Organization/b")
	d := decide(object.union(r, {"action": "write"}))
	d.allow
	"Consent/c1: permit by base policy OPTOUT" in d.reasons
}

test_grant_recipient_roles if {
	every by_role in [
		{key(participation, "IRCP"): {"Organization/a"}},
		{key("", "PRCP"): {"Organization/a"}},
	] {
		c := mk("c1", "OPTOUT", [root({"actor": named(by_role)})])
		decide(req([c])).allow
		d := decide(as_actor(req([c]), "Organization/b"))
		d.reasons == ["deny: not a recipient named by Consent/c1"]
	}
}

test_grant_other_roles_are_not_recipients if {
	# The custodian named beside the recipient gets nothing from the grant.
	c := mk("c1", "OPTOUT", [root({"actor": named({
		key(participation, "CST"): {"Organization/c"},
		key(participation, "PRCP"): {"Organization/a"},
	})})])
	decide(req([c])).allow
	d := decide(as_actor(req([c]), "Organization/c"))
	not d.allow
	d.reasons == ["deny: not a recipient named by Consent/c1"]
}

test_no_recipient_keeps_the_opposite_of_the_base if {
	# Custodian and author roles name no recipient: an OPTOUT root withholds from
	# them, as before, and leaves everyone else to the base permit.
	c := mk("c1", "OPTOUT", [root({"actor": named({
		key(participation, "CST"): {"Organization/a"},
		key(participation, "AUT"): {"Practitioner/x"},
	})})])
	d := decide(req([c]))
	not d.allow
	"Consent/c1: deny by provision" in d.reasons
	decide(as_actor(req([c]), "Organization/b")).allow
}

test_typed_root_naming_a_recipient_is_not_a_grant if {
	c := mk("c1", "OPTIN", [prov("provision", [0], [], {"type": "permit", "criteria": {"actor": prcp_a}})])
	decide(req([c])).allow
	d := decide(as_actor(req([c]), "Organization/b"))
	not d.allow
	d.reasons == ["Consent/c1: deny by base policy OPTIN"]
}

test_grant_nested_provisions if {
	# Untyped nested provisions inherit the grant's permit and narrow it; a nested
	# deny carves an exception for the recipient.
	c := mk("c1", "OPTOUT", [
		prov("provision", [0], [1, 2], {"criteria": {"actor": prcp_a}}),
		prov("provision.provision[0]", [0, 1], [], {"criteria": {"class": {"|Observation"}}}),
		prov("provision.provision[1]", [0, 2], [], {"type": "deny", "criteria": {"purpose": {key(act_reason, "HRESCH")}}}),
	])
	d := decide(req([c]))
	d.allow
	"Consent/c1: permit by provision.provision[0]" in d.reasons
	r := req([c])
	other_type := object.union(r, {"resource": object.union(r.resource, {"type": "Condition"})})
	# Narrowed: the root alone does not decide, so the base does.
	decide(other_type).reasons == ["Consent/c1: permit by base policy OPTOUT"]
	not decide(object.union(r, {"purpose": "HRESCH"})).allow
}

test_grant_exclusivity_is_a_plain_deny if {
	# A non-recipient asking for labelled data the grant covers is denied, not redacted.
	c := mk("c1", "OPTOUT", [root({"actor": prcp_a, "securityLabel": {key(psy.system, psy.code): psy}})])
	r := as_actor(req([c]), "Organization/b")
	labelled := object.union(r, {"resource": object.union(r.resource, {"securityLabels": [psy]})})
	d := decide(labelled)
	not d.allow
	d.obligations == []
	decide(r).allow # unlabelled data is outside the grant
}

test_grant_exclusivity_and_break_glass if {
	c := mk("c1", "OPTOUT", [root({"actor": prcp_a})])
	r := object.union(req([c]), {"purpose": "ETREAT", "actor": {"reference": "Practitioner/er", "roles": ["physician"]}})
	decide(r).breakGlass
	etreat := mk("c1", "OPTOUT", [root({"actor": prcp_a, "purpose": {key(act_reason, "ETREAT")}})])
	d := decide(object.union(r, {"consents": [etreat]}))
	not d.allow
	not d.breakGlass
}

package fhiranchor.consent_test

import rego.v1

import data.fhiranchor.consent

optin := {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]}

optout := {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]}

privacy := {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]}

org_a := [{"reference": {"reference": "Organization/a"}}]

access := [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}]}]

psy := {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}

mk(id, rule, provision) := {
	"resourceType": "Consent", "id": id, "meta": {"versionId": "1"},
	"status": "active", "scope": privacy, "patient": {"reference": "Patient/p"},
	"policyRule": rule, "provision": provision,
}

req(consents) := {
	"time": "2024-06-01T12:00:00Z", "action": "read", "purpose": "TREAT",
	"actor": {"clientId": "c", "reference": "Organization/a", "roles": []},
	"patient": "Patient/p",
	"resource": {"type": "Observation", "id": "o1", "reference": "Observation/o1", "securityLabels": [], "codes": [], "date": "2024-01-01"},
	"consents": consents,
}

decide(x) := d if d := consent.decision with input as x

test_no_consent_uses_configured_default if {
	d := decide(req([]))
	not d.allow
	"no active patient-privacy consent: default deny" in d.reasons
	d2 := consent.decision with input as req([]) with data.fhiranchor.config.default as "permit"
	d2.allow
}

test_inactive_and_other_scopes_ignored if {
	c1 := object.union(mk("c1", optin, {}), {"status": "inactive"})
	c2 := object.union(mk("c2", optin, {}), {"scope": {"coding": [{"code": "research"}]}})
	d := consent.decision with input as req([c1, c2]) with data.fhiranchor.config.default as "permit"
	d.allow
	d.basedOn == []
}

test_optout_base_permits if {
	d := decide(req([object.remove(mk("c1", optout, {}), ["provision"])]))
	d.allow
	d.basedOn == [{"id": "c1", "versionId": "1"}]
	"Consent/c1: permit by base policy OPTOUT" in d.reasons
}

test_optin_base_denies if not decide(req([mk("c1", optin, {"actor": [{"reference": {"reference": "Organization/b"}}]})])).allow

test_optin_root_grant_permits if decide(req([mk("c1", optin, {"actor": org_a})])).allow

test_optout_root_withholds if {
	d := decide(req([mk("c1", optout, {"actor": org_a})]))
	not d.allow
	"Consent/c1: deny by provision" in d.reasons
}

test_period if {
	c := mk("c1", optin, {"period": {"start": "2024-01-01", "end": "2024-05-31"}})
	not decide(req([c])).allow
	decide(object.union(req([c]), {"time": "2024-05-31T23:59:59Z"})).allow
}

test_actor_role_when_no_reference if {
	c := mk("c1", optin, {"actor": [{"role": {"coding": [{"code": "physician"}]}}]})
	not decide(req([c])).allow
	decide(object.union(req([c]), {"actor": {"reference": "Practitioner/x", "roles": ["physician"]}})).allow
}

test_action_mapping if {
	c := mk("c1", optout, {"type": "deny", "actor": org_a, "action": access})
	not decide(req([c])).allow
	decide(object.union(req([c]), {"action": "write"})).allow
}

test_unknown_action_denies if {
	d := decide(object.union(req([object.remove(mk("c1", optout, {}), ["provision"])]), {"action": "delete"}))
	not d.allow
	"unknown action" in d.reasons
}

test_purpose if {
	c := mk("c1", optin, {"purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HRESCH"}]})
	not decide(req([c])).allow
	decide(object.union(req([c]), {"purpose": "HRESCH"})).allow
}

test_class_and_code if {
	c := mk("c1", optin, {
		"class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Observation"}],
		"code": [{"coding": [{"system": "http://loinc.org", "code": "1-8"}]}],
	})
	not decide(req([c])).allow
	r := req([c])
	decide(object.union(r, {"resource": object.union(r.resource, {"codes": [{"system": "http://loinc.org", "code": "1-8"}]})})).allow
}

test_data_and_data_period if {
	c := mk("c1", optout, {"provision": [
		{"type": "deny", "data": [{"meaning": "instance", "reference": {"reference": "Observation/o1"}}]},
		{"type": "deny", "dataPeriod": {"start": "2020", "end": "2020"}},
	]})
	not decide(req([c])).allow
	r := req([c])
	decide(object.union(r, {"resource": object.union(r.resource, {"reference": "Observation/o2"})})).allow
	not decide(object.union(r, {"resource": object.union(r.resource, {"reference": "Observation/o2", "date": "2020-12-31"})})).allow
}

test_nested_deny_carves_exception if {
	c := mk("c1", optin, {"actor": org_a, "provision": [{"type": "deny", "class": [{"code": "Observation"}]}]})
	d := decide(req([c]))
	not d.allow
	"Consent/c1: deny by provision.provision[0]" in d.reasons
	r := req([c])
	decide(object.union(r, {"resource": object.union(r.resource, {"type": "Condition"})})).allow
}

test_nested_same_effect_narrows if {
	c := mk("c1", optin, {"period": {"start": "2024"}, "provision": [{"type": "permit", "class": [{"code": "MedicationRequest"}]}]})
	not decide(req([c])).allow
	r := req([c])
	decide(object.union(r, {"resource": object.union(r.resource, {"type": "MedicationRequest"})})).allow
}

test_deny_overrides_between_consents if {
	c1 := object.remove(mk("c1", optout, {}), ["provision"])
	not decide(req([c1, mk("c2", optout, {"actor": org_a})])).allow
}

test_security_label_deny_redacts_on_read if {
	c := mk("c1", optout, {"provision": [{"type": "deny", "securityLabel": [psy]}]})
	r := req([c])
	labelled := object.union(r, {"resource": object.union(r.resource, {"securityLabels": [psy]})})
	d := decide(labelled)
	d.allow
	d.obligations == [{"type": "redact", "securityLabels": [psy]}]
	not decide(object.union(labelled, {"action": "export"})).allow
	decide(r).obligations == []
}

test_break_glass if {
	c := mk("c1", optin, {"actor": [{"reference": {"reference": "Organization/b"}}]})
	r := object.union(req([c]), {"purpose": "ETREAT", "actor": {"reference": "Practitioner/x", "roles": ["physician"]}})
	d := decide(r)
	d.allow
	d.breakGlass
	"break-the-glass" in d.reasons
	{"type": "audit-break-glass"} in d.obligations
	not decide(object.union(r, {"actor": {"reference": "Practitioner/x", "roles": ["clerk"]}})).allow
}

test_break_glass_refused_by_explicit_etreat_deny if {
	c := mk("c1", optout, {"type": "deny", "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "ETREAT"}]})
	r := object.union(req([c]), {"purpose": "ETREAT", "actor": {"reference": "Practitioner/x", "roles": ["physician"]}})
	d := decide(r)
	not d.allow
	not d.breakGlass
}

test_consent_of_other_patient_denies if {
	c := object.union(object.remove(mk("c1", optout, {}), ["provision"]), {"patient": {"reference": "Patient/q"}})
	not decide(req([c])).allow
}

test_too_deep_denies if {
	c := mk("c1", optout, {"provision": [{"type": "deny", "provision": [{"type": "permit", "provision": [{"type": "deny"}]}]}]})
	not decide(req([c])).allow
}

#!/usr/bin/env python3
"""Writes the PHI corpus: one FHIR R4 transaction Bundle per patient and
phi.json, the oracle of every planted string.

Everything here is invented. Run it from anywhere; it rewrites the *.json
files beside it (deterministically: uuids are uuid5 of fixed names).

    python3 testdata/phi-corpus/generate.py
"""

import json
import os
import re
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
LOCAL = "http://maplecrest.example/fhir/CodeSystem/"  # a made-up system
EXT = "http://maplecrest.example/fhir/StructureDefinition/"

# ---------------------------------------------------------------- the oracle

PHI = {}  # value -> entry


def phi(value, kind, check="anywhere", category="text"):
    """Registers a planted value and returns it.

    category: "text" (must leave the vault in no form) or "id" (a
    client-chosen resource id: a lookup key inside the vault, nowhere else).
    check: "anywhere" (searched as a whole word, case-insensitively, in
    every sink), "outside-export" (exact dates: searched in every sink but
    the export files, where a de-identified date may coincide by chance;
    the export is checked structurally instead) or "structural" (ages: only
    the structural checks of the export apply).
    """
    e = PHI.setdefault(value, {"value": value, "category": category, "kind": kind, "check": check})
    assert e["category"] == category and e["kind"] == kind, value
    return value


def ids(n):
    return phi(n, "client-chosen resource id (MRN-like)", category="id")


def name(s):
    return phi(s, "name")


def div(*parts):
    return {"status": "generated",
            "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>' + "</p><p>".join(parts) + "</p></div>"}


def cc(system, code, display, text=None):
    c = {"coding": [{"system": system, "code": code, "display": display}]}
    if text:
        c["text"] = text
    return c


def qty(value, unit, code=None):
    return {"value": value, "unit": unit, "system": UCUM, "code": code or unit}


def age(value):
    return {"value": value, "unit": "a", "system": UCUM, "code": "a"}


def note(text, time=None, author=None):
    n = {"text": text}
    if time:
        n["time"] = time
    if author:
        n["authorString"] = author
    return n


def ext_string(url, value):
    return {"url": EXT + url, "valueString": value}


CATEGORY_SOCIAL = [cc("http://terminology.hl7.org/CodeSystem/observation-category", "social-history", "Social History")]
CATEGORY_VITALS = [cc("http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs", "Vital Signs")]
CATEGORY_LAB = [cc("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory", "Laboratory")]
ACTIVE = cc("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active")
RESOLVED = cc("http://terminology.hl7.org/CodeSystem/condition-clinical", "resolved", "Resolved")
CONFIRMED = cc("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed")
PROBLEM = [cc("http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item", "Problem List Item")]


class Bundle:
    def __init__(self, slug, patient_ref=None):
        self.slug = slug
        self.entries = []
        self.patient = patient_ref  # "urn:uuid:..." or "Patient/MRN-..."

    def uuid(self, n):
        return "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, "https://phi-corpus.example/" + self.slug + "/" + str(n)))

    def add(self, resource, put_id=None):
        full = self.uuid(len(self.entries))
        typ = resource["resourceType"]
        if put_id:
            resource = {"resourceType": typ, "id": put_id, **{k: v for k, v in resource.items() if k != "resourceType"}}
            req = {"method": "PUT", "url": typ + "/" + put_id}
        else:
            req = {"method": "POST", "url": typ}
        self.entries.append({"fullUrl": full, "resource": resource, "request": req})
        return full

    def subj(self):
        return {"reference": self.patient}

    def write(self):
        b = {"resourceType": "Bundle", "type": "transaction", "entry": self.entries}
        with open(os.path.join(HERE, self.slug + ".json"), "w") as f:
            json.dump(b, f, indent=2, ensure_ascii=False)
            f.write("\n")
        return b


def observation(b, code, when, value=None, category=None, **more):
    o = {"resourceType": "Observation", "status": "final", "category": category or CATEGORY_LAB,
         "code": code, "subject": b.subj(), "effectiveDateTime": when, "issued": when[:10] + "T16:02:11.000-05:00"}
    if value is not None:
        o["valueQuantity"] = value
    o.update(more)
    return b.add(o)


# ------------------------------------------------ 01: a 95-year-old, PUT id

def ambrose():
    mrn = ids("MRN-7730412")
    b = Bundle("01-quillfeather", "Patient/" + mrn)
    street = phi("4417 Marrowbone Lane", "street address")
    city = phi("Cobbleton", "city")
    zipc = phi("05089", "ZIP code")
    employer = phi("Vantablack Quarry Cooperative", "employer")
    daughter = name("Perpetua"), name("Quillfeather-Ondaatje")
    brother_ssn = phi("078-05-1120", "SSN")
    b.add({
        "resourceType": "Patient",
        "text": div("Ambrose Quillfeather, born 1931-05-11, " + street + ", " + city + " VT " + zipc,
                    "Retired stonemason (" + employer + "). Daughter " + " ".join(daughter) + " holds health care proxy."),
        "extension": [
            ext_string("employer", employer),
            {"url": "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName", "valueString": name("Hollowbrook")},
            {"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
             "valueAddress": {"city": phi("Upper Gristmill", "city"), "state": "VT", "country": "US"}},
        ],
        "identifier": [
            {"type": cc("http://terminology.hl7.org/CodeSystem/v2-0203", "SS", "Social Security number"),
             "system": "http://hl7.org/fhir/sid/us-ssn", "value": phi("531-44-7821", "SSN")},
            {"type": cc("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "Medical record number"),
             "system": "http://maplecrest.example/mrn", "value": phi("MCH-00417733", "identifier value")},
            {"type": cc("http://terminology.hl7.org/CodeSystem/v2-0203", "MC", "Patient's Medicare number"),
             "system": "http://hl7.org/fhir/sid/us-mbi", "value": phi("7QX4-WE2-MK83", "health plan number")},
        ],
        "name": [{"use": "official", "family": name("Quillfeather"), "given": [name("Ambrose"), name("Tiberius")], "prefix": ["Mr."]}],
        "telecom": [{"system": "phone", "value": phi("(802) 555-0143", "phone"), "use": "home"},
                    {"system": "email", "value": phi("ambrose.quillfeather@maplecrest.example", "e-mail")}],
        "gender": "male",
        "birthDate": phi("1931-05-11", "birth date (95 years old)", check="outside-export"),
        "_birthDate": {"extension": [ext_string("birth-note", "born at home, " + street)]},
        "address": [{"use": "home", "line": [street], "city": city, "state": "VT", "postalCode": zipc, "country": "US"}],
        "maritalStatus": cc("http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "W", "Widowed"),
        "contact": [{
            "relationship": [cc("http://terminology.hl7.org/CodeSystem/v2-0131", "N", "Next-of-Kin", "Daughter and proxy")],
            "name": {"family": daughter[1], "given": [daughter[0]]},
            "telecom": [{"system": "phone", "value": phi("802-555-0178", "phone"), "use": "mobile"}],
            "address": {"line": [phi("29 Sorrel Hitch Road", "street address")], "city": phi("Tunbridge Wells Falls", "city"), "state": "VT", "postalCode": phi("05077", "ZIP code")},
            "gender": "female",
        }],
        "communication": [{"language": cc("urn:ietf:bcp:47", "en-US", "English (United States)")}],
        "generalPractitioner": [{"display": "Dr. " + name("Isolde") + " " + name("Vantongeren")}],
    }, put_id=mrn)
    observation(b, cc(LOINC, "30525-0", "Age", "Age"), "2026-09-14T10:20:00-04:00", age(95), CATEGORY_SOCIAL)
    phi("95", "age over 89", check="structural")
    observation(b, cc(LOINC, "11341-5", "History of Occupation", "Stonemason, " + employer + ", 1950-1996"),
                "2026-09-14T10:22:00-04:00", category=CATEGORY_SOCIAL,
                valueCodeableConcept={"coding": [{"system": LOCAL + "employers", "code": "VQC-01", "display": employer}],
                                      "text": "Worked 46 years for " + employer})
    observation(b, cc(LOINC, "8480-6", "Systolic blood pressure"), "2026-09-14T10:25:00-04:00", qty(148, "mm[Hg]"), CATEGORY_VITALS,
                note=[note("Measured at home by daughter " + " ".join(daughter) + " at " + street, "2026-09-14T10:30:00-04:00")])
    observation(b, cc(LOINC, "8462-4", "Diastolic blood pressure"), "2026-09-14T10:25:00-04:00", qty(86, "mm[Hg]"), CATEGORY_VITALS)
    observation(b, cc(LOINC, "29463-7", "Body weight"), "2026-03-02T09:05:00-05:00", qty(71.4, "kg"), CATEGORY_VITALS)
    enc = b.add({
        "resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HH", "display": "home health"},
        "type": [cc(SNOMED, "185349003", "Encounter for check up", "Home visit at " + street + ", " + city)],
        "subject": b.subj(),
        "participant": [{"individual": {"display": "Dr. Isolde Vantongeren"}}],
        "period": {"start": "2026-09-14T10:00:00-04:00", "end": "2026-09-14T11:10:00-04:00"},
        "serviceProvider": {"display": "Maplecrest Home Health"},
    })
    b.add({
        "resourceType": "Condition", "clinicalStatus": ACTIVE, "verificationStatus": CONFIRMED, "category": PROBLEM,
        "code": cc(SNOMED, "38341003", "Hypertensive disorder, systemic arterial (disorder)",
                   "Hypertension; daughter " + " ".join(daughter) + " manages his pill box"),
        "subject": b.subj(), "encounter": {"reference": enc},
        "onsetDateTime": "1998", "recordedDate": "2019-04-23T08:15:00-04:00",
        "note": [note("Brother John Quillfeather (SSN " + brother_ssn + ") has the same diagnosis", "2019-04-23T08:20:00-04:00")],
    })
    b.add({
        "resourceType": "Condition", "clinicalStatus": ACTIVE, "verificationStatus": CONFIRMED, "category": PROBLEM,
        "code": {"coding": [{"system": SNOMED, "code": "15188001", "display": "Hearing loss (disorder)"},
                            {"system": LOCAL + "occupational", "code": "NOISE-VQC",
                             "display": "Occupational noise exposure at " + employer}],
                 "text": "Hearing loss from the quarry"},
        "subject": b.subj(), "onsetDateTime": "2004-07", "recordedDate": "2020-02-11",
    })
    med = {"resourceType": "Medication", "id": "lisinopril-home",
           "code": cc(RXNORM, "314076", "lisinopril 10 MG Oral Tablet", "Lisinopril 10 mg, blister pack for " + " ".join(["Ambrose", "Quillfeather"]))}
    b.add({
        "resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "contained": [med], "medicationReference": {"reference": "#lisinopril-home"},
        "subject": b.subj(), "authoredOn": "2026-09-14T11:00:00-04:00",
        "requester": {"display": "Dr. Isolde Vantongeren"},
        "dosageInstruction": [{
            "sequence": 1,
            "text": "One tablet every morning; pharmacy delivers to " + street + ", " + city + "; call " + daughter[0] + " on 802-555-0178",
            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d",
                                  "boundsPeriod": {"start": "2026-09-15", "end": "2027-03-15"}}},
            "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet", "system": "http://terminology.hl7.org/CodeSystem/v3-orderableDrugForm", "code": "TAB"}}],
        }],
        "note": [note("Refills picked up by " + " ".join(daughter))],
    })
    b.add({
        "resourceType": "Device", "status": "active",
        "udiCarrier": [{"deviceIdentifier": "00844588018923", "carrierHRF": "(01)00844588018923(21)" + phi("HX-99-41727-QF", "device serial number")}],
        "manufacturer": "Otiphon Hearing Systems",
        "serialNumber": "HX-99-41727-QF",
        "deviceName": [{"name": "Ambrose's left hearing aid", "type": "user-friendly-name"}],
        "type": cc(SNOMED, "6012004", "Hearing aid, device (physical object)"),
        "patient": b.subj(),
        "url": phi("http://203.0.113.77/hearing/ambrose-q", "URL with an IPv4 address"),
        "note": [note("Remote fitting from " + phi("203.0.113.77", "IPv4 address") + " by audiologist " + name("Gwendolyn") + " " + name("Harrowgate"))],
    })
    phi("http://203.0.113.77/hearing/ambrose-q", "URL with an IPv4 address")
    john = {"family": "Quillfeather", "given": [name("John")]}
    b.add({
        "resourceType": "RelatedPerson", "patient": b.subj(), "active": True,
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-ssn", "value": brother_ssn}],
        "relationship": [cc("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "BRO", "brother")],
        "name": [john], "gender": "male",
        "birthDate": phi("1935-03-02", "relative's birth date (91 years old)", check="outside-export"),
        "telecom": [{"system": "phone", "value": phi("(802) 555-0191", "phone")}],
        "address": [{"line": [phi("7 Pellucid Mill Road", "street address")], "city": city, "state": "VT", "postalCode": zipc}],
    })
    b.add({
        "resourceType": "FamilyMemberHistory", "status": "completed", "patient": b.subj(), "date": "2026-09-14",
        "name": "John Quillfeather",
        "relationship": cc("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "BRO", "brother"),
        "sex": cc("http://hl7.org/fhir/administrative-gender", "male", "Male"),
        "bornDate": "1935-03-02",
        "condition": [{"code": cc(SNOMED, "38341003", "Hypertensive disorder, systemic arterial (disorder)"),
                       "onsetAge": age(62), "note": [note("Treated at Cobbleton Cottage Hospital")]}],
    })
    b.add({
        "resourceType": "FamilyMemberHistory", "status": "completed", "patient": b.subj(), "date": "2026-09-14",
        "name": name("Clementine") + " Quillfeather",
        "relationship": cc("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "SIS", "sister"),
        "sex": cc("http://hl7.org/fhir/administrative-gender", "female", "Female"),
        "ageAge": age(91),
        "condition": [{"code": cc(SNOMED, "49436004", "Atrial fibrillation (disorder)"), "onsetAge": age(90)}],
        "note": [note("Clementine lives with her son " + name("Evander") + " " + name("Quillfeather-Rusk") + " in " + city)],
    })
    phi("91", "relative's age over 89", check="structural")
    b.add({
        "resourceType": "Coverage", "status": "active", "beneficiary": b.subj(),
        "subscriberId": phi("VQC-RET-118204", "health plan number"),
        "relationship": cc("http://terminology.hl7.org/CodeSystem/subscriber-relationship", "self", "Self"),
        "payor": [{"display": employer + " Retiree Health Trust"}],
        "class": [{"type": cc("http://terminology.hl7.org/CodeSystem/coverage-class", "group", "Group"),
                   "value": phi("GRP-VQC-1950", "group number"), "name": employer + " retirees"}],
    })
    b.add({
        "resourceType": "Immunization", "status": "completed",
        "vaccineCode": cc(CVX, "141", "Influenza, seasonal, injectable"),
        "patient": b.subj(), "occurrenceDateTime": "2026-10-02T14:00:00-04:00",
        "lotNumber": phi("LOT-QF-55172", "lot number"),
        "note": [note("Given at home, " + street)],
    })
    b.add({
        "resourceType": "DocumentReference", "status": "current",
        "type": cc(LOINC, "34117-2", "History and physical note"),
        "subject": b.subj(), "date": "2026-09-14T12:00:00.000-04:00",
        "author": [{"display": "Dr. Isolde Vantongeren"}],
        "description": "H&P for Ambrose Quillfeather, " + street,
        "content": [{"attachment": {"contentType": "application/pdf",
                                    "url": phi("https://files.maplecrest.example/hp/quillfeather-ambrose-2026.pdf", "URL"),
                                    "title": "H and P - Ambrose Quillfeather (MCH-00417733)", "creation": "2026-09-14T12:00:00-04:00"}}],
    })
    b.add({
        "resourceType": "Practitioner",
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": phi("1993817264", "NPI")}],
        "name": [{"family": "Vantongeren", "given": ["Isolde"], "prefix": ["Dr."]}],
        "telecom": [{"system": "phone", "value": phi("802-555-0120", "phone"), "use": "work"}],
        "address": [{"line": [phi("12 Heronsgate Road", "street address")], "city": city, "state": "VT"}],
        "gender": "female",
    })
    b.add({
        "resourceType": "Communication", "status": "completed", "subject": b.subj(), "sent": "2026-09-15T09:00:00-04:00",
        "payload": [{"contentString": "Left message for " + daughter[0] + " at (802) 555-0143 about the visit"}],
    })
    return b


# -------------------------------- 02: a woman with an employer and a CGM (POST)

def henrietta():
    b = Bundle("02-marchbanks")
    b.patient = b.uuid(0)
    street = phi("92 Wickerbasket Row", "street address")
    apt = phi("Apt 3B", "address line")
    city = phi("Fennimore Crossing", "city")
    employer = phi("Corvidae Logistics", "employer")
    husband = name("Tobias") + " " + name("Oyelaran")
    mname = name("Henrietta"), name("Marchbanks-Oyelaran")
    b.add({
        "resourceType": "Patient",
        "text": div(" ".join(mname) + ", DOB 1978-06-22, " + street + " " + apt + ", " + city + " WI 53809"),
        "extension": [ext_string("employer", employer + " (dispatcher)"),
                      {"url": EXT + "preferred-pharmacy", "valueReference": {"display": "Wickerbasket Pharmacy, " + street}}],
        "identifier": [
            {"type": cc("http://terminology.hl7.org/CodeSystem/v2-0203", "SS", "Social Security number"),
             "system": "http://hl7.org/fhir/sid/us-ssn", "value": phi("604-38-2291", "SSN")},
            {"type": cc("http://terminology.hl7.org/CodeSystem/v2-0203", "DL", "Driver's license number"),
             "system": "urn:oid:2.16.840.1.113883.4.3.55", "value": phi("M621-7784-0091-05", "driver's license")},
        ],
        "name": [{"use": "official", "family": mname[1], "given": [mname[0], name("Philippa")]},
                 {"use": "maiden", "family": name("Marchbanks")}],
        "telecom": [{"system": "phone", "value": phi("608-555-0112", "phone"), "use": "mobile"},
                    {"system": "email", "value": phi("hmarchbanks78@corvidae.example", "e-mail"), "use": "work"}],
        "gender": "female",
        "birthDate": phi("1978-06-22", "birth date", check="outside-export"),
        "address": [{"line": [street, apt], "city": city, "district": phi("Grant County", "county"), "state": "WI",
                     "postalCode": phi("53809", "ZIP code"), "country": "US"}],
        "contact": [{"relationship": [cc("http://terminology.hl7.org/CodeSystem/v2-0131", "C", "Emergency Contact")],
                     "name": {"text": husband}, "telecom": [{"system": "phone", "value": phi("608-555-0139", "phone")}],
                     "organization": {"display": employer}}],
    })
    b.add({
        "resourceType": "Organization", "active": True, "name": employer,
        "alias": ["Corvidae Freight Dispatch"],
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.4.4", "value": phi("39-4471902", "employer EIN")}],
        "address": [{"line": ["1800 Ptarmigan Freight Way"], "city": city, "state": "WI"}],
    })
    observation(b, cc(LOINC, "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood"), "2025-02-03T08:40:00-06:00", qty(7.9, "%"))
    observation(b, cc(LOINC, "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood"), "2025-08-11T08:35:00-06:00", qty(7.1, "%"),
                note=[note("Results e-mailed to hmarchbanks78@corvidae.example on request")])
    observation(b, cc(LOINC, "2339-0", "Glucose [Mass/volume] in Blood",
                      "Glucose (CGM upload from " + phi("2001:db8:4a7::1f3", "IPv6 address") + ")"),
                "2025-08-11T07:10:00-06:00", qty(162, "mg/dL"))
    observation(b, cc(LOINC, "39156-5", "Body mass index (BMI) [Ratio]"), "2025-08-11T08:30:00-06:00", qty(31.2, "kg/m2"), CATEGORY_VITALS)
    observation(b, cc(LOINC, "74165-2", "History of employment status",
                      "Employed full time at " + employer), "2025-02-03T08:45:00-06:00", category=CATEGORY_SOCIAL,
                valueCodeableConcept={"coding": [{"system": SNOMED, "code": "160903007",
                                                  "display": "Full-time employment at " + employer + ", night dispatch"}]})
    b.add({
        "resourceType": "Condition", "clinicalStatus": ACTIVE, "verificationStatus": CONFIRMED, "category": PROBLEM,
        "code": cc(SNOMED, "44054006", "Diabetes mellitus type 2 (disorder)",
                   "Type 2 diabetes - diagnosed at " + employer + " occupational health"),
        "subject": b.subj(), "onsetDateTime": "2019-10-17", "recordedDate": "2019-10-21T13:00:00-05:00",
        "note": [note("Husband " + husband + " helps with injections", author=husband)],
    })
    b.add({
        "resourceType": "Condition", "clinicalStatus": RESOLVED, "verificationStatus": CONFIRMED, "category": PROBLEM,
        "code": cc(SNOMED, "72892002", "Normal pregnancy (finding)"),
        "subject": b.subj(), "onsetDateTime": "2014-01-09", "abatementDateTime": "2014-10-02",
        "recordedDate": "2014-01-20",
    })
    b.add({
        "resourceType": "Device", "status": "active",
        "serialNumber": phi("CGM-7H4K-221907", "device serial number"),
        "manufacturer": "Glycotrace",
        "deviceName": [{"name": "Henrietta CGM sensor", "type": "user-friendly-name"}],
        "type": cc(SNOMED, "337414009", "Blood glucose meters (physical object)"),
        "patient": b.subj(),
        "url": phi("http://[2001:db8:4a7::1f3]:8443/cgm/upload", "URL with an IPv6 address"),
        "version": [{"value": "fw 3.2 paired from " + "2001:db8:4a7::1f3"}],
    })
    b.add({
        "resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "medicationCodeableConcept": cc(RXNORM, "860975", "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet",
                                        "Metformin ER - paid by " + employer + " plan"),
        "subject": b.subj(), "authoredOn": "2025-02-03T09:10:00-06:00",
        "dosageInstruction": [{"text": "2 tablets with dinner; ship to " + street + " " + apt + ", " + city,
                               "patientInstruction": "Text " + phi("608-555-0112", "phone") + " when shipped",
                               "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}],
    })
    b.add({
        "resourceType": "DocumentReference", "status": "current",
        "type": cc(LOINC, "11525-3", "US Pelvis Fetus for pregnancy"),
        "subject": b.subj(), "date": "2014-05-14T10:00:00.000-05:00",
        "description": "Ultrasound for " + " ".join(mname) + ", referred by " + employer + " nurse line",
        "content": [{"attachment": {"contentType": "application/pdf",
                                    "url": phi("https://files.maplecrest.example/us/marchbanks-oyelaran-20140514.pdf", "URL"),
                                    "title": "Ultrasound - " + " ".join(mname)}}],
    })
    b.add({
        "resourceType": "QuestionnaireResponse", "status": "completed", "subject": b.subj(),
        "authored": "2025-02-03T08:20:00-06:00",
        "item": [{"linkId": "emergency-contact", "text": "Emergency contact",
                  "answer": [{"valueString": husband + ", " + phi("608-555-0139", "phone")}]},
                 {"linkId": "employer", "text": "Employer", "answer": [{"valueString": employer}]},
                 {"linkId": "email", "text": "E-mail", "answer": [{"valueString": "hmarchbanks78@corvidae.example"}]}],
    })
    b.add({
        "resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
        "type": [cc(SNOMED, "390906007", "Follow-up encounter", "Diabetes follow-up ("+ employer + " clinic)")],
        "subject": b.subj(), "period": {"start": "2025-08-11T08:00:00-06:00", "end": "2025-08-11T08:50:00-06:00"},
        "location": [{"location": {"display": "Corvidae Logistics onsite clinic, " + phi("1800 Ptarmigan Freight Way", "street address")}}],
    })
    b.add({
        "resourceType": "RelatedPerson", "patient": b.subj(),
        "relationship": [cc("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "HUSB", "husband")],
        "name": [{"text": husband}], "birthDate": phi("1975-12-30", "relative's birth date", check="outside-export"),
        "telecom": [{"system": "email", "value": phi("tobias.oyelaran@postbox.example", "e-mail")}],
    })
    return b


# ------------------------------- 03: a diabetic man, PUT id, a deceased mother

def thaddeus():
    mrn = ids("MRN-4410298")
    b = Bundle("03-pemberton", "Patient/" + mrn)
    street = phi("17 Lanternfish Court", "street address")
    city = phi("Saltmarsh Bay", "city")
    employer = phi("Halberd Finch Underwriters", "employer")
    mother = name("Ngozi") + " " + name("Pemberton-Achebe")
    b.add({
        "resourceType": "Patient",
        "identifier": [
            {"type": cc("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "Medical record number"),
             "system": "http://saltmarsh.example/mrn", "value": phi("SBH-9001-2248", "identifier value")},
            {"system": "http://hl7.org/fhir/sid/us-ssn", "value": phi("212-67-4409", "SSN")},
        ],
        "name": [{"family": "Pemberton-Achebe", "given": [name("Thaddeus"), name("Obinna")]}],
        "telecom": [{"system": "phone", "value": phi("207-555-0164", "phone")},
                    {"system": "fax", "value": phi("207-555-0165", "fax")}],
        "gender": "male", "birthDate": phi("1965-11-03", "birth date", check="outside-export"),
        "address": [{"text": street + ", " + city + ", ME " + phi("04614", "ZIP code"), "line": [street], "city": city,
                     "state": "ME", "postalCode": "04614"}],
        "extension": [ext_string("occupation-note", "Actuary at " + employer + ", " + phi("60 Gullwing Plaza", "street address"))],
        "contact": [{"relationship": [cc("http://terminology.hl7.org/CodeSystem/v2-0131", "E", "Employer")],
                     "organization": {"display": employer},
                     "telecom": [{"system": "phone", "value": phi("207-555-0100", "phone")}]}],
    }, put_id=mrn)
    dm = b.add({
        "resourceType": "Condition", "clinicalStatus": ACTIVE, "verificationStatus": CONFIRMED, "category": PROBLEM,
        "code": {"coding": [{"system": SNOMED, "code": "44054006", "display": "Diabetes mellitus type 2 (disorder)"},
                            {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9",
                             "display": "Type 2 diabetes; reported by " + employer + " wellness program"}],
                 "text": "T2DM, like his mother " + mother},
        "subject": b.subj(), "onsetDateTime": "2012-04-18T09:00:00-04:00", "recordedDate": "2012-04-19",
    })
    for i, (when, v) in enumerate([("2023-01-12", 8.4), ("2023-07-20", 7.6), ("2024-01-18", 7.2), ("2024-07-25", 6.9), ("2025-01-23", 7.0)]):
        observation(b, cc(LOINC, "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood"), when + "T08:1" + str(i) + ":00-05:00", qty(v, "%"))
    observation(b, cc(LOINC, "2093-3", "Cholesterol [Mass/volume] in Serum or Plasma"), "2025-01-23T08:15:00-05:00", qty(212, "mg/dL"))
    observation(b, cc(LOINC, "55284-4", "Blood pressure systolic and diastolic"), "2025-01-23T08:05:00-05:00", category=CATEGORY_VITALS,
                component=[{"code": cc(LOINC, "8480-6", "Systolic blood pressure"), "valueQuantity": qty(138, "mm[Hg]")},
                           {"code": cc(LOINC, "8462-4", "Diastolic blood pressure"), "valueQuantity": qty(88, "mm[Hg]")}])
    b.add({
        "resourceType": "FamilyMemberHistory", "status": "completed", "patient": b.subj(),
        "name": mother,
        "relationship": cc("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "MTH", "mother"),
        "sex": cc("http://hl7.org/fhir/administrative-gender", "female", "Female"),
        "bornDate": phi("1940-01-09", "relative's birth date", check="outside-export"),
        "deceasedDate": phi("2019-08-27", "relative's death date", check="outside-export"),
        "condition": [{"code": cc(SNOMED, "44054006", "Diabetes mellitus type 2 (disorder)"), "contributedToDeath": True,
                       "onsetString": "in her fifties, treated in " + phi("Enugu", "city")}],
        "note": [note("Mother " + mother + " died at " + phi("Saltmarsh Bay General", "facility") + "; his sister " + name("Adaeze") + " " + name("Pemberton") + " phoned 207-555-0164")],
    })
    b.add({
        "resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "medicationCodeableConcept": cc(RXNORM, "860975", "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet"),
        "subject": b.subj(), "authoredOn": "2023-01-12T09:30:00-05:00", "reasonReference": [{"reference": dm, "display": "Thaddeus' diabetes"}],
        "dosageInstruction": [{"text": "1 tab twice daily. Mail-order account " + phi("HFU-RX-77120934", "account number") + " (" + employer + ")"}],
    })
    b.add({
        "resourceType": "Procedure", "status": "completed",
        "code": cc(SNOMED, "252779009", "Single bright light fundus photography (procedure)", "Retinal photo at Lanternfish eye van"),
        "subject": b.subj(), "performedPeriod": {"start": "2024-03-05T13:00:00-05:00", "end": "2024-03-05T13:20:00-05:00"},
        "performer": [{"actor": {"display": "Optometrist " + name("Marisol") + " " + name("Quennell-Abara")}}],
        "note": [note("Images sent to " + phi("198.51.100.23", "IPv4 address") + " for grading")],
    })
    b.add({
        "resourceType": "DiagnosticReport", "status": "final",
        "code": cc(LOINC, "24323-8", "Comprehensive metabolic 2000 panel - Serum or Plasma"),
        "subject": b.subj(), "effectiveDateTime": "2025-01-23T08:15:00-05:00", "issued": "2025-01-23T17:44:00.000-05:00",
        "conclusion": "Reviewed with Thaddeus Pemberton-Achebe by phone 207-555-0164",
        "presentedForm": [{"contentType": "text/plain", "title": "CMP for SBH-9001-2248",
                           "url": phi("https://lab.saltmarsh.example/r/SBH-9001-2248/cmp", "URL")}],
    })
    b.add({
        "resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": b.subj(),
        "title": "Diabetes plan for Thaddeus",
        "description": "Walk with neighbour " + name("Rosalind") + " " + name("Ferrowby") + " along " + street,
        "period": {"start": "2025-01-23", "end": "2026-01-23"},
        "activity": [{"detail": {"status": "in-progress", "code": cc(SNOMED, "229065009", "Exercise therapy (regime/therapy)"),
                                 "description": "Gym at " + employer + " " + "60 Gullwing Plaza"}}],
    })
    b.add({
        "resourceType": "AuditEvent",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation"},
        "action": "R", "recorded": "2025-01-23T17:50:02.114-05:00", "outcome": "0",
        "agent": [{"requestor": True, "who": {"display": "Thaddeus Pemberton-Achebe (patient portal)"},
                   "network": {"address": "198.51.100.23", "type": "2"}}],
        "source": {"observer": {"display": "Saltmarsh Bay patient portal"}},
        "entity": [{"what": {"reference": "Patient/" + mrn}, "description": "Portal login by SBH-9001-2248"}],
    })
    b.add({
        "resourceType": "Goal", "lifecycleStatus": "active", "subject": b.subj(),
        "description": {"text": "HbA1c under 7 before daughter " + name("Chiamaka") + "'s wedding"},
        "startDate": "2025-01-23", "target": [{"dueDate": "2025-09-30"}],
    })
    return b


# --------------------------------------- 04: allergies, contained, markdown

def oksana():
    b = Bundle("04-drozdovskaya")
    b.patient = b.uuid(0)
    street = phi("Flat 12, 305 Quarrington Embankment", "street address")
    city = phi("Quarrington Falls", "city")
    cousin = name("Ludmila") + " " + name("Drozdovskaya")
    b.add({
        "resourceType": "Patient",
        "text": div("Oksana Drozdovskaya-Ferreira, " + street),
        "identifier": [{"system": "http://hl7.org/fhir/sid/passport-USA", "value": phi("P58823917", "passport number")}],
        "name": [{"family": name("Drozdovskaya-Ferreira"), "given": [name("Oksana")]}],
        "telecom": [{"system": "email", "value": phi("oksana.df@tundramail.example", "e-mail")},
                    {"system": "phone", "value": phi("+1 413 555 0187", "phone")},
                    {"system": "url", "value": phi("https://oksana-df.example/blog", "URL")}],
        "gender": "female", "birthDate": phi("1989-02-28", "birth date", check="outside-export"),
        "address": [{"line": [street], "city": city, "state": "MA", "postalCode": phi("01378", "ZIP code")}],
        "photo": [{"contentType": "image/png", "title": "Oksana passport photo", "data": "iVBORw0KGgo="}],
    })
    b.add({
        "resourceType": "AllergyIntolerance",
        "clinicalStatus": cc("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active", "Active"),
        "verificationStatus": cc("http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "confirmed", "Confirmed"),
        "type": "allergy", "category": ["food"], "criticality": "high",
        "code": cc(SNOMED, "91935009", "Allergy to peanut (finding)", "Peanut - first reaction at cousin " + cousin + "'s wedding"),
        "patient": b.subj(), "onsetDateTime": "2016-07-23", "recordedDate": "2016-07-25T11:00:00-04:00",
        "reaction": [{"manifestation": [cc(SNOMED, "39579001", "Anaphylaxis (disorder)")],
                      "description": "Collapsed at " + phi("Birchgrove Manor", "venue") + ", " + city + "; EpiPen given by " + cousin,
                      "onset": "2016-07-23T19:40:00-04:00", "severity": "severe"}],
        "note": [note("**Carries EpiPen.** Husband " + name("Rafael") + " " + name("Ferreira-Lindgren") + " trained")],
    })
    b.add({
        "resourceType": "Immunization", "status": "completed", "vaccineCode": cc(CVX, "208", "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, 30 mcg/0.3mL dose"),
        "patient": b.subj(), "occurrenceDateTime": "2021-04-17T10:05:00-04:00",
        "location": {"display": "Quarrington Falls Armory"}, "lotNumber": phi("EW0182", "lot number"),
    })
    b.add({
        "resourceType": "Immunization", "status": "completed", "vaccineCode": cc(CVX, "115", "Tdap"),
        "patient": b.subj(), "occurrenceDateTime": "2023-11-02T15:30:00-04:00",
        "note": [note("Before visiting " + cousin + " in " + phi("Novosibirsk", "city"))],
    })
    b.add({
        "resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "contained": [{"resourceType": "Medication", "id": "epi",
                       "code": cc(RXNORM, "727316", "0.3 ML Epinephrine 1 MG/ML Auto-Injector",
                                  "EpiPen 2-pak (Oksana + spare at " + phi("Tamarack Hollow Elementary", "employer") + ")"),
                       "extension": [ext_string("dispense-note", "Deliver to " + street)]}],
        "medicationReference": {"reference": "#epi"},
        "subject": b.subj(), "authoredOn": "2025-05-06",
        "dosageInstruction": [{"text": "Inject 0.3 mL if anaphylaxis; call 911 then " + cousin,
                               "additionalInstruction": [{"text": "Keep one at Tamarack Hollow Elementary staff room"}]}],
    })
    observation(b, cc(LOINC, "8302-2", "Body height"), "2025-05-06T09:00:00-04:00", qty(168, "cm"), CATEGORY_VITALS)
    observation(b, cc(LOINC, "29463-7", "Body weight"), "2025-05-06T09:00:00-04:00", qty(59.8, "kg"), CATEGORY_VITALS)
    observation(b, cc(LOINC, "85354-9", "Blood pressure panel with all children optional"), "2025-05-06T09:02:00-04:00", category=CATEGORY_VITALS,
                component=[{"code": cc(LOINC, "8480-6", "Systolic blood pressure"), "valueQuantity": qty(112, "mm[Hg]")},
                           {"code": cc(LOINC, "8462-4", "Diastolic blood pressure"), "valueQuantity": qty(71, "mm[Hg]")}])
    observation(b, cc(LOINC, "11341-5", "History of Occupation"), "2025-05-06T09:05:00-04:00", category=CATEGORY_SOCIAL,
                valueString="Teacher, Tamarack Hollow Elementary, " + phi("88 Thimbleweed Avenue", "street address"))
    b.add({
        "resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "code": cc(SNOMED, "395142003", "Allergy screening test (procedure)"),
        "subject": b.subj(), "authoredOn": "2025-05-06T09:30:00-04:00", "occurrenceDateTime": "2025-06-10T08:00:00-04:00",
        "patientInstruction": "Bring " + cousin + "'s reaction report; parking at " + street,
        "note": [note("Referral faxed from " + phi("413-555-0150", "fax"))],
    })
    b.add({
        "resourceType": "Communication", "status": "completed", "subject": b.subj(), "sent": "2025-05-07T08:00:00-04:00",
        "payload": [{"contentString": "Reminder sent to oksana.df@tundramail.example and to " + phi("ludmila.d@tundramail.example", "e-mail")},
                    {"contentAttachment": {"contentType": "text/plain", "title": "Letter to Oksana Drozdovskaya-Ferreira",
                                           "url": phi("https://portal.maplecrest.example/letters/oksana-df-0507.txt", "URL")}}],
    })
    b.add({
        "resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER", "display": "emergency"},
        "type": [cc(SNOMED, "50849002", "Emergency room admission (procedure)")],
        "subject": b.subj(), "period": {"start": "2016-07-23T20:05:00-04:00", "end": "2016-07-24T02:30:00-04:00"},
        "hospitalization": {"origin": {"display": "Birchgrove Manor"}, "dischargeDisposition": {"text": "Home with cousin " + cousin}},
    })
    return b


# --------------------------------------------- 05: a child with a guardian

def bartholomew():
    mrn = ids("MRN-5518760")
    b = Bundle("05-ekwueme", "Patient/" + mrn)
    mother = name("Sigrun") + " " + name("Lindqvist")
    street = phi("1206 Oriole Spinney", "street address")
    city = phi("Hollis Ferry", "city")
    b.add({
        "resourceType": "Patient",
        "name": [{"family": name("Ekwueme-Lindqvist"), "given": [name("Bartholomew")], "suffix": ["Jr."]}],
        "identifier": [{"type": cc("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "Medical record number"),
                        "system": "http://hollisferry.example/mrn", "value": phi("HFP-550-118", "identifier value")}],
        "gender": "male", "birthDate": phi("2011-08-15", "birth date", check="outside-export"),
        "address": [{"line": [street], "city": city, "state": "NH", "postalCode": phi("03049", "ZIP code")}],
        "extension": [ext_string("school", phi("Ravensworth Academy", "school")),
                      {"url": EXT + "guardian-phone", "valueContactPoint": {"system": "phone", "value": phi("603-555-0126", "phone")}}],
        "contact": [{"relationship": [cc("http://terminology.hl7.org/CodeSystem/v2-0131", "N", "Next-of-Kin")],
                     "name": {"text": mother}, "telecom": [{"system": "phone", "value": "603-555-0126"}],
                     "organization": {"display": phi("Brindlewood Paper Mill", "employer")}}],
    }, put_id=mrn)
    rp = b.add({
        "resourceType": "RelatedPerson", "patient": b.subj(),
        "relationship": [cc("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "MTH", "mother")],
        "name": [{"family": "Lindqvist", "given": ["Sigrun"]}],
        "birthDate": phi("1983-01-19", "relative's birth date", check="outside-export"),
        "telecom": [{"system": "email", "value": phi("sigrun.lindqvist@brindlewood.example", "e-mail")}],
        "address": [{"line": [street], "city": city, "state": "NH"}],
        "communication": [{"language": cc("urn:ietf:bcp:47", "sv", "Swedish")}],
    })
    b.add({
        "resourceType": "Condition", "clinicalStatus": ACTIVE, "verificationStatus": CONFIRMED, "category": PROBLEM,
        "code": cc(SNOMED, "195967001", "Asthma (disorder)", "Asthma - worse at Ravensworth Academy gym"),
        "subject": b.subj(), "onsetDateTime": "2016-02-10", "recordedDate": "2016-02-12",
        "asserter": {"reference": rp, "display": mother},
    })
    for i, (when, v) in enumerate([("2024-09-03", 310), ("2025-03-11", 335), ("2025-09-09", 352)]):
        observation(b, cc(LOINC, "19935-6", "Peak expiratory flow rate Respiratory system airway by Peak flow meter"),
                    when + "T15:0" + str(i) + ":00-04:00", qty(v, "L/min"), CATEGORY_VITALS)
    observation(b, cc(LOINC, "8302-2", "Body height"), "2025-09-09T15:10:00-04:00", qty(162, "cm"), CATEGORY_VITALS)
    b.add({
        "resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "medicationCodeableConcept": cc(RXNORM, "745679", "200 ACTUAT albuterol 0.09 MG/ACTUAT Metered Dose Inhaler",
                                        "Albuterol inhaler (one for school nurse " + name("Philomena") + " " + name("Gatesby") + ")"),
        "subject": b.subj(), "authoredOn": "2025-09-09T15:30:00-04:00",
        "dosageInstruction": [{"text": "2 puffs before PE; mother " + mother + " (603-555-0126) to be called if used twice"}],
    })
    b.add({
        "resourceType": "Immunization", "status": "completed", "vaccineCode": cc(CVX, "62", "HPV, quadrivalent"),
        "patient": b.subj(), "occurrenceDateTime": "2023-09-12T16:00:00-04:00",
        "performer": [{"actor": {"display": "School clinic, Ravensworth Academy"}}],
    })
    b.add({
        "resourceType": "Immunization", "status": "completed", "vaccineCode": cc(CVX, "62", "HPV, quadrivalent"),
        "patient": b.subj(), "occurrenceDateTime": "2024-03-19T16:00:00-04:00",
    })
    b.add({
        "resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
        "type": [cc(SNOMED, "410620009", "Well child visit (procedure)")],
        "subject": b.subj(), "period": {"start": "2025-09-09T14:45:00-04:00", "end": "2025-09-09T15:40:00-04:00"},
        "participant": [{"individual": {"reference": rp, "display": mother}}],
    })
    b.add({
        "resourceType": "DocumentReference", "status": "current",
        "type": cc(LOINC, "57017-6", "Privacy policy Organization Document"),
        "subject": b.subj(), "date": "2025-09-09T15:45:00.000-04:00",
        "description": "Asthma action plan signed by " + mother,
        "content": [{"attachment": {"contentType": "image/jpeg", "title": "Signed by Sigrun Lindqvist, " + street,
                                    "url": phi("https://files.hollisferry.example/aap/ekwueme-lindqvist.jpg", "URL"),
                                    "data": "/9j/4AAQSkZJRg=="}}],
    })
    return b


# ------------------------------- 06: a pacemaker with telemetry, care plan

def wilhelmina():
    b = Bundle("06-fairweather")
    b.patient = b.uuid(0)
    street = phi("3 Gannet Steps", "street address")
    city = phi("Port Absalom", "city")
    son = name("Leopold") + " " + name("Fairweather")
    b.add({
        "resourceType": "Patient",
        "text": div("Mrs Wilhelmina Fairweather-Nakashima, " + street + ", " + city),
        "name": [{"family": name("Fairweather-Nakashima"), "given": [name("Wilhelmina"), name("Sachiko")]}],
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-medicare", "value": phi("1EG4-TE5-MK72", "health plan number")}],
        "telecom": [{"system": "phone", "value": phi("(207) 555-0199", "phone")}],
        "gender": "female", "birthDate": phi("1946-12-01", "birth date", check="outside-export"),
        "deceasedBoolean": False,
        "address": [{"line": [street], "city": city, "state": "ME", "postalCode": phi("04101", "ZIP code"),
                     "period": {"start": "1971-05-01"}}],
        "contact": [{"relationship": [cc("http://terminology.hl7.org/CodeSystem/v2-0131", "N", "Next-of-Kin")],
                     "name": {"text": son}}],
    })
    b.add({
        "resourceType": "Device", "status": "active",
        "serialNumber": phi("PMK-88213-WFN", "device serial number"),
        "lotNumber": "L-20190611",
        "manufacturer": "Cardiolux",
        "type": cc(SNOMED, "14106009", "Cardiac pacemaker, device (physical object)", "Pacemaker, telemetry to 192.0.2.146"),
        "patient": b.subj(),
        "url": phi("http://192.0.2.146:8080/telemetry/pmk-88213", "URL with an IPv4 address"),
        "contact": [{"system": "url", "value": "http://192.0.2.146:8080/"}],
        "note": [note("Bedside monitor at " + street + " reports from " + phi("192.0.2.146", "IPv4 address"))],
        "property": [{"type": cc(LOINC, "67188-3", "Remote monitoring site", "Remote monitoring via home router at " + street)}],
    })
    b.add({
        "resourceType": "Procedure", "status": "completed",
        "code": cc(SNOMED, "307280005", "Implantation of cardiac pacemaker (procedure)"),
        "subject": b.subj(), "performedDateTime": "2019-06-12T07:45:00-04:00",
        "performer": [{"actor": {"display": "Dr. " + name("Octavian") + " " + name("Brisbois-Kahale")}}],
        "focalDevice": [{"manipulated": {"display": "Pacemaker PMK-88213-WFN"}}],
        "note": [note("Son " + son + " consented; contact (207) 555-0199")],
    })
    b.add({
        "resourceType": "Condition", "clinicalStatus": ACTIVE, "verificationStatus": CONFIRMED, "category": PROBLEM,
        "code": cc(SNOMED, "27885002", "Complete atrioventricular block (disorder)"),
        "subject": b.subj(), "onsetPeriod": {"start": "2019-05-28", "end": "2019-06-12"}, "recordedDate": "2019-05-30",
        "evidence": [{"detail": [{"display": "ECG read by Dr. Octavian Brisbois-Kahale"}]}],
    })
    b.add({
        "resourceType": "Condition", "clinicalStatus": ACTIVE, "verificationStatus": CONFIRMED, "category": PROBLEM,
        "code": cc(SNOMED, "38341003", "Hypertensive disorder, systemic arterial (disorder)"),
        "subject": b.subj(), "onsetDateTime": "2005", "recordedDate": "2008-03-14",
    })
    for when, s, d in [("2024-02-06", 152, 84), ("2024-08-13", 144, 80), ("2025-02-11", 139, 79)]:
        observation(b, cc(LOINC, "85354-9", "Blood pressure panel with all children optional"), when + "T11:00:00-05:00", category=CATEGORY_VITALS,
                    component=[{"code": cc(LOINC, "8480-6", "Systolic blood pressure"), "valueQuantity": qty(s, "mm[Hg]")},
                               {"code": cc(LOINC, "8462-4", "Diastolic blood pressure"), "valueQuantity": qty(d, "mm[Hg]")}])
    observation(b, cc(LOINC, "8867-4", "Heart rate"), "2025-02-11T11:00:00-05:00", qty(70, "/min"), CATEGORY_VITALS)
    b.add({
        "resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": b.subj(),
        "title": "Home cardiac monitoring",
        "description": "Son " + son + " checks the monitor; neighbour " + name("Hyacinth") + " " + name("Calloway-Stroud") + " has a key to " + street,
        "period": {"start": "2019-06-20"},
        "note": [note("Next transmission check with Dr. Brisbois-Kahale", "2025-02-11T12:00:00-05:00")],
    })
    b.add({
        "resourceType": "Provenance", "target": [{"reference": b.patient}],
        "recorded": "2025-02-11T12:05:00.000-05:00",
        "policy": ["http://192.0.2.146:8080/policy/fairweather-nakashima"],
        "agent": [{"who": {"display": "Telemetry gateway PMK-88213-WFN at " + street}}],
        "reason": [cc("http://terminology.hl7.org/CodeSystem/v3-ActReason", "TREAT", "treatment", "Upload for " + son)],
    })
    b.add({
        "resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "medicationCodeableConcept": cc(RXNORM, "197361", "amlodipine 5 MG Oral Tablet"),
        "subject": b.subj(), "authoredOn": "2024-02-06T11:30:00-05:00",
        "dosageInstruction": [{"text": "Daily; blister packs prepared by son Leopold Fairweather at " + phi("41 Kittiwake Row", "street address")}],
    })
    return b


# ------------------------------------- 07: a man with an MRN id and a claim

def cornelius():
    mrn = ids("MRN-9920117")
    b = Bundle("07-thistlewood", "Patient/" + mrn)
    street = phi("5506 Bramblecote Drive", "street address")
    city = phi("Lower Wexcombe", "city")
    employer = phi("Tessellate Robotics", "employer")
    wife = name("Marguerite") + " " + name("Vasquez-Thistlewood")
    b.add({
        "resourceType": "Patient",
        "name": [{"family": name("Thistlewood"), "given": [name("Cornelius")]}],
        "identifier": [{"type": cc("http://terminology.hl7.org/CodeSystem/v2-0203", "SS", "Social Security number"),
                        "system": "http://hl7.org/fhir/sid/us-ssn", "value": phi("447-19-3306", "SSN")}],
        "telecom": [{"system": "phone", "value": phi("971-555-0148", "phone")},
                    {"system": "email", "value": phi("c.thistlewood@tessellate.example", "e-mail")}],
        "gender": "male", "birthDate": phi("1955-04-30", "birth date", check="outside-export"),
        "address": [{"line": [street], "city": city, "state": "OR", "postalCode": phi("97038", "ZIP code")}],
        "maritalStatus": cc("http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "M", "Married"),
        "extension": [ext_string("employer", employer)],
    }, put_id=mrn)
    enc = b.add({
        "resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP", "display": "inpatient encounter"},
        "type": [cc(SNOMED, "32485007", "Hospital admission (procedure)", "Admission after fall at " + employer + " plant")],
        "subject": b.subj(), "period": {"start": "2024-11-18T22:40:00-08:00", "end": "2024-11-22T11:00:00-08:00"},
        "reasonCode": [cc(SNOMED, "217082002", "Accidental fall (event)", "Fell from mezzanine at " + employer)],
        "hospitalization": {"dischargeDisposition": {"text": "Home to " + street + " with wife " + wife}},
    })
    b.add({
        "resourceType": "Condition", "clinicalStatus": RESOLVED, "verificationStatus": CONFIRMED,
        "code": cc(SNOMED, "263225007", "Fracture of neck of femur (disorder)"),
        "subject": b.subj(), "encounter": {"reference": enc},
        "onsetDateTime": "2024-11-18T22:10:00-08:00", "abatementDateTime": "2025-03-01", "recordedDate": "2024-11-18T23:30:00-08:00",
        "note": [note("Workers' comp claim " + phi("WC-2024-118-5521", "claim number") + " with " + employer)],
    })
    b.add({
        "resourceType": "Procedure", "status": "completed",
        "code": cc(SNOMED, "52734007", "Total replacement of hip (procedure)"),
        "subject": b.subj(), "encounter": {"reference": enc},
        "performedPeriod": {"start": "2024-11-19T08:00:00-08:00", "end": "2024-11-19T10:25:00-08:00"},
        "usedReference": [{"display": "Implant lot HIP-LW-2291 serial " + phi("SN-77-0183-TR", "device serial number")}],
    })
    for when, v in [("2024-11-19", 9.8), ("2024-11-21", 10.6), ("2025-01-07", 12.9)]:
        observation(b, cc(LOINC, "718-7", "Hemoglobin [Mass/volume] in Blood"), when + "T06:00:00-08:00", qty(v, "g/dL"))
    observation(b, cc(LOINC, "72166-2", "Tobacco smoking status"), "2024-11-18T23:00:00-08:00", category=CATEGORY_SOCIAL,
                valueCodeableConcept=cc(SNOMED, "8517006", "Ex-smoker (finding)"))
    b.add({
        "resourceType": "Claim", "status": "active",
        "type": cc("http://terminology.hl7.org/CodeSystem/claim-type", "institutional", "Institutional"),
        "use": "claim", "patient": b.subj(), "created": "2024-11-25T10:00:00-08:00",
        "provider": {"display": "Lower Wexcombe Memorial"},
        "priority": cc("http://terminology.hl7.org/CodeSystem/processpriority", "normal", "Normal"),
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": employer + " Workers Comp Pool, member " + phi("TRW-55-99021", "member number")}}],
        "item": [{"sequence": 1, "productOrService": cc(SNOMED, "52734007", "Total replacement of hip (procedure)"),
                  "servicedDate": "2024-11-19"}],
        "total": {"value": 48211.5, "currency": "USD"},
    })
    b.add({
        "resourceType": "MedicationRequest", "status": "completed", "intent": "order",
        "medicationCodeableConcept": cc(RXNORM, "1049221", "Acetaminophen 325 MG / Oxycodone Hydrochloride 5 MG Oral Tablet"),
        "subject": b.subj(), "authoredOn": "2024-11-22T10:30:00-08:00",
        "dosageInstruction": [{"text": "1 tab q6h prn; wife " + wife + " holds the bottle",
                               "timing": {"repeat": {"boundsPeriod": {"start": "2024-11-22", "end": "2024-12-06"}}}}],
    })
    b.add({
        "resourceType": "RelatedPerson", "patient": b.subj(),
        "relationship": [cc("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "WIFE", "wife")],
        "name": [{"text": wife}], "gender": "female", "birthDate": phi("1957-10-08", "relative's birth date", check="outside-export"),
        "telecom": [{"system": "phone", "value": phi("971-555-0166", "phone")}],
    })
    return b


def main():
    bundles = [ambrose(), henrietta(), thaddeus(), oksana(), bartholomew(), wilhelmina(), cornelius()]
    planted = {v: [] for v in PHI}
    for b in bundles:
        doc = b.write()
        for i, e in enumerate(doc["entry"]):
            walk(e, "", lambda path, s: [planted[v].append(b.slug + ".json: entry[" + str(i) + "]" + path)
                                         for v in PHI if contains(s, v)])
    entries = []
    for v, e in PHI.items():
        e = dict(e)
        e["planted"] = planted[v]
        if e["check"] != "structural":
            assert planted[v], v
        entries.append(e)
    with open(os.path.join(HERE, "phi.json"), "w") as f:
        json.dump({"comment": "Every PHI string planted in the Bundles of this folder (see README.md).", "phi": entries},
                  f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(len(bundles), "bundles,", sum(len(b.entries) for b in bundles), "entries,", len(entries), "planted strings")


def contains(s, v):
    return re.search(r"(?<![A-Za-z0-9])" + re.escape(v.lower()) + r"(?![A-Za-z0-9])", s.lower()) is not None


def walk(v, path, fn):
    if isinstance(v, dict):
        for k, c in v.items():
            walk(c, path + "." + k, fn)
    elif isinstance(v, list):
        for i, c in enumerate(v):
            walk(c, path + "[" + str(i) + "]", fn)
    elif isinstance(v, str):
        fn(path, v)


if __name__ == "__main__":
    main()

package deid

import (
	"testing"
)

func TestAges(t *testing.T) {
	e := safeHarbor(t)
	ps := e.Pseudonym("1")
	days := e.DateShiftDays("Patient/1")
	shifted := func(s string) string { v, _, _ := shiftDate(s, days); return v }
	loinc := func(code string) string {
		return `{"coding":[{"system":"http://loinc.org","code":"` + code + `"}]}`
	}
	tests := []struct {
		name, in string
		o        Options
		want     string
	}{
		{
			name: "age observation over 89",
			in:   `{"resourceType":"Observation","status":"final","code":` + loinc("30525-0") + `,"valueQuantity":{"value":1140,"unit":"mo","system":"http://unitsofmeasure.org","code":"mo"}}`,
			want: `{"resourceType":"Observation","status":"final","code":` + loinc("30525-0") + `,"valueQuantity":{"value":90,"comparator":">=","unit":"years","system":"http://unitsofmeasure.org","code":"a"}}`,
		},
		{
			name: "age observation up to 89 stays",
			in:   `{"resourceType":"Observation","status":"final","code":` + loinc("30525-0") + `,"valueInteger":89}`,
			want: `{"resourceType":"Observation","status":"final","code":` + loinc("30525-0") + `,"valueInteger":89}`,
		},
		{
			name: "integer age over 89 becomes a quantity",
			in:   `{"resourceType":"Observation","status":"final","code":` + loinc("21612-7") + `,"valueInteger":104}`,
			want: `{"resourceType":"Observation","status":"final","code":` + loinc("21612-7") + `,"valueQuantity":{"value":90,"comparator":">=","unit":"years","system":"http://unitsofmeasure.org","code":"a"}}`,
		},
		{
			name: "another observation's 95 stays",
			in:   `{"resourceType":"Observation","status":"final","code":` + loinc("8302-2") + `,"valueQuantity":{"value":195,"unit":"cm","system":"http://unitsofmeasure.org","code":"cm"}}`,
			want: `{"resourceType":"Observation","status":"final","code":` + loinc("8302-2") + `,"valueQuantity":{"value":195,"unit":"cm","system":"http://unitsofmeasure.org","code":"cm"}}`,
		},
		{
			name: "birth-date observation to the year",
			in:   `{"resourceType":"Observation","status":"final","code":` + loinc("21112-8") + `,"valueDateTime":"1970-04-05"}`,
			want: `{"resourceType":"Observation","status":"final","code":` + loinc("21112-8") + `,"valueDateTime":"1970"}`,
		},
		{
			name: "relative's age range over 89",
			in:   `{"resourceType":"FamilyMemberHistory","status":"completed","patient":{"reference":"Patient/1"},"relationship":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-RoleCode","code":"AUNT"}]},"ageRange":{"low":{"value":85,"code":"a"},"high":{"value":95,"code":"a"}},"bornDate":"1950-02-03"}`,
			want: `{"resourceType":"FamilyMemberHistory","status":"completed","patient":{"reference":"Patient/` + ps + `"},"relationship":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-RoleCode","code":"AUNT"}]},"ageRange":{"low":{"value":90,"unit":"years","system":"http://unitsofmeasure.org","code":"a"}}}`,
		},
		{
			name: "relative's birth date to the year",
			in:   `{"resourceType":"FamilyMemberHistory","status":"completed","patient":{"reference":"Patient/1"},"relationship":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-RoleCode","code":"AUNT"}]},"bornDate":"1950-02-03","deceasedDate":"2001-02-03"}`,
			want: `{"resourceType":"FamilyMemberHistory","status":"completed","patient":{"reference":"Patient/` + ps + `"},"relationship":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-RoleCode","code":"AUNT"}]},"bornDate":"1950","deceasedDate":"` + shifted("2001-02-03") + `"}`,
		},
		{
			name: "patient over 89 by Subject: dates to the shifted year",
			in:   `{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/1"},"period":{"start":"2020-01-10T10:00:00Z","end":"2020-01-11"}}`,
			o:    Options{Subject: Subject{BirthDate: "1925"}},
			want: `{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/` + ps + `"},"period":{"start":"` + shifted("2020-01-10")[:4] + `","end":"` + shifted("2020-01-11")[:4] + `"}}`,
		},
		{
			name: "patient under 90 by Subject: dates shifted",
			in:   `{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"period":{"start":"2020-01-10T10:00:00Z"},"meta":{"lastUpdated":"2025-01-01T00:00:00Z","versionId":"2"}}`,
			o:    Options{Subject: Subject{BirthDate: "1936-12-31"}},
			want: `{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"period":{"start":"` + shifted("2020-01-10T10:00:00Z") + `"},"meta":{"versionId":"2"}}`,
		},
		{
			name: "required instant of a patient over 89: the year's first instant",
			in:   `{"resourceType":"Provenance","target":[{"reference":"Patient/1"}],"recorded":"2020-06-01T10:00:00Z","agent":[{"who":{"reference":"Practitioner/2"}}]}`,
			o:    Options{Subject: Subject{BirthDate: "1925-01-01"}},
			want: `{"resourceType":"Provenance","target":[{"reference":"Patient/` + ps + `"}],"recorded":"` + shifted("2020-06-01")[:4] + `-01-01T00:00:00Z","agent":[{"who":{"reference":"Practitioner/` + e.Pseudonym("2") + `"}}]}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.Patient = "Patient/1"
			res := apply(t, e, tt.in, tt.o)
			if got, want := jsonOf(t, res.Tree), canon(t, tt.want); got != want {
				t.Errorf("got  %s\nwant %s", got, want)
			}
		})
	}
}

package policy

import "testing"

func TestValidPurpose(t *testing.T) {
	if n := len(purposesOfUse); n != 59 {
		t.Errorf("v3-PurposeOfUse has 59 codes below _PurposeOfUse, the table has %d", n)
	}
	for _, ok := range []string{"TREAT", "ETREAT", "HPAYMT", "HOPERAT", "HRESCH", "PUBHLTH", "BTG", "PATRQT"} {
		if !ValidPurpose(ok) {
			t.Errorf("ValidPurpose(%q) = false", ok)
		}
	}
	for _, bad := range []string{"", "treat", "TREAT ", "Quillfeather", "_PurposeOfUse", "PurposeOfUse", "TREAT,HPAYMT", "http://terminology.hl7.org/CodeSystem/v3-ActReason|TREAT"} {
		if ValidPurpose(bad) {
			t.Errorf("ValidPurpose(%q) = true", bad)
		}
	}
}

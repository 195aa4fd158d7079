package policy

// purposesOfUse is the R4 value set v3-PurposeOfUse
// (http://terminology.hl7.org/ValueSet/v3-PurposeOfUse, 2014-03-26): the
// 59 codes below _PurposeOfUse in v3-ActReason.
var purposesOfUse = map[string]bool{
	"HMARKT":  true,
	"HOPERAT": true, "CAREMGT": true, "DONAT": true, "FRAUD": true, "GOV": true, "HACCRED": true,
	"HCOMPL": true, "HDECD": true, "HDIRECT": true, "HDM": true, "HLEGAL": true, "HOUTCOMS": true,
	"HPRGRP": true, "HQUALIMP": true, "HSYSADMIN": true, "LABELING": true, "METAMGT": true,
	"MEMADMIN": true, "MILCDM": true, "PATADMIN": true, "PATSFTY": true, "PERFMSR": true,
	"RECORDMGT": true, "SYSDEV": true, "HTEST": true, "TRAIN": true,
	"HPAYMT": true, "CLMATTCH": true, "COVAUTH": true, "COVERAGE": true, "ELIGDTRM": true,
	"ELIGVER": true, "ENROLLM": true, "MILDCRG": true, "REMITADV": true,
	"HRESCH": true, "BIORCH": true, "CLINTRCH": true, "CLINTRCHNPC": true, "CLINTRCHPC": true,
	"PRECLINTRCH": true, "DSRCH": true, "POARCH": true, "TRANSRCH": true,
	"PATRQT": true, "FAMRQT": true, "PWATRNY": true, "SUPNWK": true,
	"PUBHLTH": true, "DISASTER": true, "THREAT": true,
	"TREAT": true, "CLINTRL": true, "COC": true, "ETREAT": true, "BTG": true, "ERTREAT": true, "POPHLTH": true,
}

// ValidPurpose reports whether code is a code of the v3 PurposeOfUse value
// set. A purpose is stored verbatim in anchored decision records, which are
// never erased: anything else (free text, a name) must be refused before it
// gets there.
func ValidPurpose(code string) bool { return purposesOfUse[code] }

package access

import (
	"context"
	"testing"
)

// everyFind is a Reader whose every Find finds one id.
type everyFind struct{ Reader }

func (everyFind) Find(context.Context, string, []byte) ([]string, error) { return []string{"x"}, nil }

// TestConsentFreeReaderHidesOnlyItsPatient: the reader a patient found
// without consents is decided with hides that patient's consent token, of
// type Consent, and nothing else: not another patient's consents, not
// another type's postings of the same token.
func TestConsentFreeReaderHidesOnlyItsPatient(t *testing.T) {
	ctx := t.Context()
	r := consentFreeReader{Reader: everyFind{}, token: []byte("patient-a-token")}
	for _, c := range []struct {
		typ   string
		token string
		found bool
	}{
		{"Consent", "patient-a-token", false},
		{"Consent", "patient-b-token", true},
		{"Consent", "patient-a-toke", true},
		{"Consent", "", true},
		{"Observation", "patient-a-token", true},
	} {
		ids, err := r.Find(ctx, c.typ, []byte(c.token))
		if err != nil || (len(ids) > 0) != c.found {
			t.Errorf("Find(%s, %q) = %v, %v; want found %v", c.typ, c.token, ids, err, c.found)
		}
	}
}

package research

import (
	"errors"
	"net/http"
	"testing"

	"github.com/fhiranchor/fhiranchor/access"
)

// TestQueryErrors: requests the client got wrong fail with an *Error
// carrying the status and issue the transport sends.
func TestQueryErrors(t *testing.T) {
	s, _ := newTestService(t)
	caller := access.Caller{ClientID: "researcher"}
	cases := []struct {
		name string
		call func() error
		want Error
	}{
		{"count not a query", func() error { _, err := s.Count(t.Context(), caller, []byte(`{"nickname": "x"}`)); return err },
			Error{Status: http.StatusBadRequest, Code: "invalid"}},
		{"breakdown without dimensions", func() error {
			_, err := s.Breakdown(t.Context(), caller, []byte(`{"criteria": {"gender": "female"}}`))
			return err
		}, Error{Status: http.StatusBadRequest, Code: "required", Path: "breakdown"}},
		{"export not an object", func() error {
			_, err := s.Exports().KickOff(t.Context(), caller, "http://localhost", []byte(`[]`))
			return err
		}, Error{Status: http.StatusBadRequest, Code: "invalid"}},
		{"export of an unknown type", func() error {
			_, err := s.Exports().KickOff(t.Context(), caller, "http://localhost", []byte(`{"criteria": {"gender": "female"}, "type": ["Nope"]}`))
			return err
		}, Error{Status: http.StatusBadRequest, Code: "invalid", Path: "type"}},
		{"status of no export", func() error { _, err := s.Exports().Status(t.Context(), caller, "../etc"); return err },
			Error{Status: http.StatusNotFound, Code: "not-found"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var e *Error
			if err := c.call(); !errors.As(err, &e) {
				t.Fatalf("error = %v, want an *Error", err)
			}
			if e.Status != c.want.Status || e.Code != c.want.Code || e.Path != c.want.Path {
				t.Errorf("error = %+v, want status %d code %q path %q", e, c.want.Status, c.want.Code, c.want.Path)
			}
		})
	}
}

// TestKickOffAccepted: a kick-off answers 202 with the status URL under
// the base it was given, and the export is then the caller's alone.
func TestKickOffAccepted(t *testing.T) {
	s, _ := newTestService(t)
	e := s.Exports()
	r, err := e.KickOff(t.Context(), access.Caller{ClientID: "a"}, "https://example.org", []byte(`{"criteria": {"gender": "female"}}`))
	if err != nil {
		t.Fatal(err)
	}
	const prefix = "https://example.org/v1/cohorts/exports/"
	if r.Status != http.StatusAccepted || len(r.ContentLocation) != len(prefix)+32 || r.ContentLocation[:len(prefix)] != prefix || r.Note == "" {
		t.Fatalf("kick-off = %+v", r)
	}
	id := r.ContentLocation[len(prefix):]
	if st, err := e.Status(t.Context(), access.Caller{ClientID: "a"}, id); err != nil || st.Status != http.StatusAccepted || st.Progress != "queued" {
		t.Errorf("owner's status = %+v, %v; want 202 queued", st, err)
	}
	var ee *Error
	if _, err := e.Status(t.Context(), access.Caller{ClientID: "b"}, id); !errors.As(err, &ee) || ee.Status != http.StatusNotFound {
		t.Errorf("another client's status: %v, want 404", err)
	}
}

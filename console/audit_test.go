package console_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/internal/browsertest"
)

// TestConsoleAuditor is the auditor's and the patient's path: the decision
// log filtered by patient, client, outcome and time; a record's receipt
// verified in the browser (every step green) and, its record tampered with,
// refused at the step that catches it; the checkpoints with their
// signatures checked and the consistency of two of them; and a patient who
// sees their own records only.
func TestConsoleAuditor(t *testing.T) {
	s := browsertest.Shared(t)
	b := browsertest.New(t)
	if len(s.Patients) < 2 {
		t.Fatalf("want two patients, have %d", len(s.Patients))
	}
	me, other := s.PatientID, s.Patients[1]

	// Decisions to find: the EHR reads the patient (allow), a client
	// declaring marketing reads them (deny: no rule permits HMARKT), the EHR
	// reads someone else.
	marketing := s.TokenFor(t, auth.Claims{ClientID: "console-marketing", Scopes: []string{"system/*.read"}, TTL: time.Hour, PurposeOfUse: "HMARKT"})
	for _, r := range []struct{ tok, id string }{{s.Tokens[browsertest.RoleClinical], me}, {marketing, me}, {s.Tokens[browsertest.RoleClinical], other}} {
		resp := s.Do(t, http.MethodGet, "/Patient/"+r.id, nil, "Authorization", "Bearer "+r.tok)
		if resp.Status >= 500 {
			t.Fatalf("GET Patient/%s: %d", r.id, resp.Status)
		}
	}
	auditor := s.Tokens[browsertest.RoleAuditor]
	var denied struct {
		Decisions []struct {
			LeafIndex uint64 `json:"leafIndex"`
			Record    struct {
				Allow bool `json:"allow"`
			} `json:"record"`
		} `json:"decisions"`
	}
	resp := s.DoRoot(t, http.MethodGet, "/v1/decisions?client=console-marketing&page_size=1", nil, "Authorization", "Bearer "+auditor)
	if err := json.Unmarshal(resp.Body, &denied); err != nil || len(denied.Decisions) != 1 || denied.Decisions[0].Record.Allow {
		t.Fatalf("the marketing read is not a recorded deny: %d %s", resp.Status, resp.Body)
	}
	leaf := strconv.FormatUint(denied.Decisions[0].LeafIndex, 10)
	for deadline := time.Now().Add(30 * time.Second); ; { // anchored, so that its receipt has a proof
		r := s.DoRoot(t, http.MethodGet, "/v1/receipts/leaves/"+leaf, nil, "Authorization", "Bearer "+auditor)
		var st struct{ Status string }
		_ = json.Unmarshal(r.Body, &st)
		if st.Status == "confirmed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("receipt of leaf %s still %q", leaf, st.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}

	b.Open(s, browsertest.RoleAuditor)
	browsertest.Eval[bool](b, `location.hash = '#/audit', true`)
	b.Wait("the decision log", `document.querySelectorAll('#decisions tr').length > 0`)
	b.Wait("the checkpoints", `document.querySelectorAll('#checkpoints tr').length > 0 && !/Loading/.test(document.getElementById('cp-status').textContent)`)

	// rows applies filters and returns the rows shown: leaf, outcome, text.
	type row struct {
		Leaf, Outcome, Text string
	}
	filter := func(patient, client, outcome, since string) []row {
		t.Helper()
		browsertest.Eval[bool](b, `(() => {
			const set = (id, v) => { document.getElementById(id).value = v; };
			set('f-patient', `+jsString(patient)+`); set('f-client', `+jsString(client)+`);
			set('f-outcome', `+jsString(outcome)+`); set('f-since', `+jsString(since)+`); set('f-until', '');
			document.getElementById('log-status').textContent = '';
			document.getElementById('log-apply').click();
			return true;
		})()`)
		b.Wait("the filtered log", `/shown|No decision/.test(document.getElementById('log-status').textContent)`)
		return browsertest.Eval[[]row](b, `[...document.querySelectorAll('#decisions tr')].map((tr) => ({leaf: tr.dataset.leaf, outcome: tr.dataset.outcome, text: tr.textContent}))`)
	}

	got := filter("Patient/"+me, "", "deny", "")
	if len(got) == 0 {
		t.Fatalf("no deny listed for Patient/%s", me)
	}
	for _, r := range got {
		if r.Outcome != "deny" || !strings.Contains(r.Text, "Patient/"+me) {
			t.Errorf("patient and outcome filter: row %+v", r)
		}
	}
	if !strings.Contains(got[0].Text, "console-marketing") || got[0].Leaf != leaf {
		t.Errorf("the newest deny for Patient/%s is not the marketing read (leaf %s): %+v", me, leaf, got[0])
	}
	b.Screenshot("decision log, deny for one patient")
	for _, r := range filter("", "console-ehr", "allow", "") {
		if r.Outcome != "allow" || !strings.Contains(r.Text, "console-ehr") {
			t.Errorf("client and outcome filter: row %+v", r)
		}
	}
	if got := filter("", "", "", "2999-01-01T00:00:00"); len(got) != 0 {
		t.Errorf("a window in the future lists %d records", len(got))
	}
	if got := filter("", "console-marketing", "", time.Now().Add(-time.Hour).Format("2006-01-02T15:04:05")); len(got) == 0 {
		t.Errorf("the last hour lists no marketing read")
	}

	// Checkpoints: every signature verified in the browser, anchors shown;
	// the consistency of the first and the last, proved and checked.
	b.CheckKeyboard()
	browsertest.Eval[bool](b, `(() => { const all = document.getElementById('cp-all'); if (!all.hidden) all.click(); return true; })()`)
	b.Wait("every checkpoint", `document.querySelectorAll('#checkpoints tr').length === document.getElementById('c-from').options.length`)
	sigs := browsertest.Eval[[]string](b, `[...document.querySelectorAll('#checkpoints [data-signature]')].map((e) => e.dataset.signature)`)
	for i, sig := range sigs {
		if sig != "verified" {
			t.Errorf("checkpoint row %d: signature %q", i, sig)
		}
	}
	if a := b.Text("#card-anchor"); !strings.Contains(a, "block") {
		t.Errorf("anchoring status: %q", a)
	}
	browsertest.Eval[bool](b, `(() => {
		const from = document.getElementById('c-from'), to = document.getElementById('c-to');
		from.selectedIndex = 0; to.selectedIndex = to.options.length - 1;
		document.getElementById('c-check').click();
		return true;
	})()`)
	b.Wait("the consistency check", `!!document.getElementById('consistency-result').dataset.ok`)
	if ok := browsertest.Eval[string](b, `document.getElementById('consistency-result').dataset.ok`); ok != "true" {
		t.Errorf("consistency: %s", b.Text("#consistency-result"))
	}
	b.Screenshot("checkpoints and consistency")

	// The deny's record, verified in the browser from the log.
	filter("Patient/"+me, "console-marketing", "deny", "")
	browsertest.Eval[bool](b, `document.querySelector('#decisions button[data-verify="`+leaf+`"]').click(), true`)
	b.Wait("the verdict", `!!document.getElementById('verdict')`)
	steps := func() map[string]string {
		return browsertest.Eval[map[string]string](b, `Object.fromEntries([...document.querySelectorAll('#steps li')].map((li) => [li.dataset.step, li.dataset.ok]))`)
	}
	if st := steps(); st["receipt"] != "true" || st["signed"] != "true" || st["proof"] != "true" || st["content"] != "true" || st["anchor"] != "true" {
		t.Errorf("the record of leaf %s: steps %v\n%s", leaf, st, b.Text("#v-result"))
	}
	b.Screenshot("record verified")
	b.CheckKeyboard()

	// The same record with its outcome changed to allow is refused at the
	// content step, which the page names.
	browsertest.Eval[bool](b, `(() => {
		const ev = document.getElementById('v-evidence');
		if (!ev.value.includes('"allow":false')) return false;
		ev.value = ev.value.replace('"allow":false', '"allow":true');
		document.getElementById('v-result').replaceChildren();
		document.getElementById('v-run').click();
		return true;
	})()`)
	b.Wait("the verdict on the tampered record", `!!document.getElementById('verdict')`)
	if st := steps(); st["content"] != "false" || st["proof"] != "true" || !strings.Contains(b.Text("#verdict"), "Commitment to the content") {
		t.Errorf("the tampered record: steps %v, verdict %q", st, b.Text("#verdict"))
	}
	b.Screenshot("tampered record refused")

	// A patient sees the decisions about them, none about anyone else, and
	// no patient filter.
	browsertest.Eval[bool](b, `sessionStorage.clear(), true`)
	b.Open(s, browsertest.RolePatient)
	browsertest.Eval[bool](b, `location.hash = '#/audit', true`)
	b.Wait("the patient's log", `/shown|No decision/.test(document.getElementById('log-status').textContent)`)
	rows := browsertest.Eval[[]row](b, `[...document.querySelectorAll('#decisions tr')].map((tr) => ({leaf: tr.dataset.leaf, outcome: tr.dataset.outcome, text: tr.textContent}))`)
	if len(rows) == 0 {
		t.Errorf("the patient sees no decision about them")
	}
	for _, r := range rows {
		if strings.Contains(r.Text, "Patient/"+other) || !strings.Contains(r.Text, "Patient/"+me) {
			t.Errorf("the patient sees %+v", r)
		}
	}
	if browsertest.Eval[bool](b, `!!document.getElementById('f-patient')`) {
		t.Errorf("the patient is offered a patient filter")
	}
	b.Screenshot("patient's own decisions")
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	q, _ := json.Marshal(s)
	return string(q)
}

package console_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/fhiranchor/fhiranchor/internal/browsertest"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// policyState is what the server says, read with the admin token outside
// the browser: the oracle the page is checked against.
func policyState(t *testing.T, s *browsertest.Server) (active string, versions int, lastActivation map[string]any) {
	t.Helper()
	auth := []string{"Authorization", "Bearer " + s.Tokens[browsertest.RoleAdmin]}
	var list struct {
		Policies      []map[string]any `json:"policies"`
		ActiveVersion json.Number      `json:"activeVersion"`
	}
	decode(t, s.DoRoot(t, http.MethodGet, "/v1/policies", nil, auth...), &list)
	var acts struct {
		Activations []map[string]any `json:"activations"`
	}
	decode(t, s.DoRoot(t, http.MethodGet, "/v1/policy-activations", nil, auth...), &acts)
	if len(acts.Activations) == 0 {
		t.Fatal("no activation at all")
	}
	return list.ActiveVersion.String(), len(list.Policies), acts.Activations[0]
}

func decode(t *testing.T, r testonly.Response, v any) {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatal(err)
	}
}

// TestConsolePolicyAdmin is the policy admin's path: the active bundle
// highlighted in the editor, a failing test added and shown with its
// location, the policy edited (public-health reads implied) with a passing
// test, pushed, dry-run against both versions, compared, activated (its
// receipt shown) and rolled back, each step checked against the API.
func TestConsolePolicyAdmin(t *testing.T) {
	s := browsertest.Shared(t)
	b := browsertest.New(t)
	active0, versions0, _ := policyState(t, s)

	b.Open(s, browsertest.RoleAdmin)
	b.Wait("the policy page", `location.hash === '#/policy' && document.querySelectorAll('#versions tbody tr').length > 0`)
	b.Wait("the bundle, highlighted", `document.querySelectorAll('#policy-editor .cm-content .cm-line span[class]').length > 20`)
	if got := browsertest.Eval[string](b, `document.querySelector('#versions tr .badge') && document.querySelector('#versions tr .badge').closest('tr').dataset.version`); got != active0 {
		t.Errorf("the page marks version %q active; the server says %q", got, active0)
	}
	b.Screenshot("policy-opened")

	// A failing test, added to the test file.
	b.Click(`.file-tabs button[data-file="consent_test.rego"]`)
	b.Do(chromedp.Focus(chromedp.CSS(`#policy-editor .cm-content`)))
	b.Do(chromedp.KeyEvent(kb.End, chromedp.KeyModifiers(chromedp.ModifierCtrl)))
	b.TypeLines("", "", "test_console_fails if {", "\t1 == 2", "}")
	b.Click(`#run-tests`)
	b.Wait("the test results", `!!document.getElementById('tests-summary')`)
	if got := b.Text("#tests-summary"); !strings.HasPrefix(got, "1 of ") || !strings.Contains(got, "tests fail") {
		t.Errorf("summary %q, want one failing test", got)
	}
	failing := browsertest.Eval[[]string](b, `[...document.querySelectorAll('#tests tr.fail')].map((r) => r.textContent)`)
	if len(failing) != 1 || !strings.Contains(failing[0], "test_console_fails") || !strings.Contains(failing[0], "consent_test.rego:") ||
		!strings.Contains(failing[0], "1 == 2") {
		t.Errorf("failing rows %q, want test_console_fails at consent_test.rego with its expression", failing)
	}
	b.Screenshot("policy-failing-test")

	// Discard it; write a passing test of the edit, and the edit itself.
	b.Click(`#revert`)
	b.Wait("the bundle reopened", `!document.getElementById('tests-summary') && /^Showing version/.test(document.getElementById('policy-status').textContent)`)
	b.Click(`.file-tabs button[data-file="consent_test.rego"]`)
	b.Do(chromedp.Focus(chromedp.CSS(`#policy-editor .cm-content`)))
	b.Do(chromedp.KeyEvent(kb.End, chromedp.KeyModifiers(chromedp.ModifierCtrl)))
	b.TypeLines("", "", "test_console_public_health_read_implied if {", "\t\"PUBHLTH\" in data.fhiranchor.config.implied.read", "}")
	b.Click(`.file-tabs button[data-file="data.json"]`)
	b.Do(chromedp.Focus(chromedp.CSS(`#policy-editor .cm-content`)))
	b.Do(chromedp.KeyEvent("a", chromedp.KeyModifiers(chromedp.ModifierCtrl)))
	b.InsertText(`{"fhiranchor": {"config": {"default": "deny", "implied": {"read": ["TREAT", "HPAYMT", "HOPERAT", "PUBHLTH"], "write": ["*"], "research-query": ["HRESCH"], "export": ["HRESCH"]}, "write": {"any_organization": []}}}}`)
	b.Click(`#run-tests`)
	b.Wait("passing tests", `/^All \d+ tests pass/.test((document.getElementById('tests-summary') || {}).textContent || '')`)
	if n := browsertest.Eval[int](b, `document.querySelectorAll('#tests tr.fail').length`); n != 0 {
		t.Errorf("%d failing rows after the fix", n)
	}

	// Push, confirming a dialog that names the version and the files.
	b.Click(`#push`)
	b.Wait("the push confirmation", `document.getElementById('confirm').open`)
	if txt := b.Text("#confirm-text"); !strings.Contains(txt, "consent_test.rego") || !strings.Contains(txt, "data.json") || strings.Contains(txt, "consent.rego\n") {
		t.Errorf("push confirmation %q does not name the changed files", txt)
	}
	b.Screenshot("policy-push-confirm")
	b.Click(`#confirm-ok`)
	b.Wait("the new version", `/^Stored version/.test(document.getElementById('policy-status').textContent)`)
	active, versions, _ := policyState(t, s)
	if versions != versions0+1 || active != active0 {
		t.Fatalf("after the push the server has %d versions (want %d), active %s (want %s)", versions, versions0+1, active, active0)
	}
	pushed := browsertest.Eval[string](b, `document.querySelector('#versions tbody tr').dataset.version`)

	// Dry runs: public-health read of a patient under the pushed version
	// and under the active one.
	dryRun := func(version string) (string, []string) {
		b.Do(chromedp.SetValue(chromedp.ID("eval-version"), version),
			chromedp.SetValue(chromedp.ID("eval-action"), "read"),
			chromedp.SetValue(chromedp.ID("eval-purpose"), "PUBHLTH"),
			chromedp.SetValue(chromedp.ID("eval-patient"), "Patient/"+s.PatientID))
		browsertest.Eval[bool](b, `document.getElementById('eval-result').replaceChildren(), true`)
		b.Click(`#eval-run`)
		b.Wait("the decision", `!!document.getElementById('eval-outcome') || /failed/.test(document.getElementById('eval-result').textContent)`)
		return b.Text("#eval-outcome"), browsertest.Eval[[]string](b, `[...document.querySelectorAll('#eval-fired li')].map((l) => l.textContent)`)
	}
	if outcome, fired := dryRun(pushed); outcome != "ALLOW" || len(fired) == 0 {
		t.Errorf("dry run on the pushed version: %q, fired %q; want ALLOW with the rules that fired (%s)", outcome, fired, b.Text("#eval-result"))
	}
	b.Screenshot("policy-dry-run")
	if outcome, _ := dryRun(active0); outcome != "DENY" {
		t.Errorf("dry run on the active version: %q, want DENY (public health is not implied there)", outcome)
	}

	// The diff of the two versions.
	b.Do(chromedp.SetValue(chromedp.ID("diff-from"), active0), chromedp.SetValue(chromedp.ID("diff-to"), pushed))
	b.Click(`#diff-run`)
	b.Wait("the diff", `!!document.getElementById('diff-summary')`)
	if got := browsertest.Eval[[]string](b, `[...document.querySelectorAll('.diff-file')].map((d) => d.dataset.file + ':' + d.querySelectorAll('.cm-changedLine, .cm-changedText').length)`); len(got) != 2 ||
		!strings.HasPrefix(got[0], "consent_test.rego:") || !strings.HasPrefix(got[1], "data.json:") || strings.HasSuffix(got[0], ":0") || strings.HasSuffix(got[1], ":0") {
		t.Errorf("diff blocks %q, want consent_test.rego and data.json with changes marked", got)
	}
	b.Screenshot("policy-diff")

	// Activate the pushed version.
	b.Click(`#versions tr[data-version="` + pushed + `"] td.actions button:last-child`)
	b.Wait("the activation confirmation", `document.getElementById('confirm').open`)
	if txt := b.Text("#confirm-text"); !strings.Contains(txt, "Version "+pushed) || !strings.Contains(txt, "in place of version "+active0) || !strings.Contains(txt, "data.json") {
		t.Errorf("activation confirmation %q does not say what changes", txt)
	}
	b.Click(`#confirm-ok`)
	b.Wait("the activation's receipt", `(document.getElementById('receipt-type') || {}).textContent === 'policy-activation'`)
	active, _, last := policyState(t, s)
	if active != pushed || last["version"] != pushed {
		t.Errorf("after activating, the server's active version is %s (last activation %v), want %s", active, last, pushed)
	}
	if got := b.Text("#receipt h3"); !strings.Contains(got, "leaf "+last["leafIndex"].(string)) {
		t.Errorf("receipt heading %q, want the activation's leaf %v", got, last["leafIndex"])
	}
	b.Screenshot("policy-activated")

	// Roll back, confirming a dialog that names both versions.
	b.Click(`#rollback`)
	b.Wait("the rollback confirmation", `document.getElementById('confirm').open`)
	if txt := b.Text("#confirm-text"); !strings.Contains(txt, "from version "+pushed) || !strings.Contains(txt, "to version "+active0) {
		t.Errorf("rollback confirmation %q does not name the versions", txt)
	}
	b.Click(`#confirm-ok`)
	b.Wait("the rollback", `/^Rolled back/.test(document.getElementById('policy-status').textContent) && (document.getElementById('receipt-type') || {}).textContent === 'policy-activation'`)
	active, _, last = policyState(t, s)
	if active != active0 || last["rollback"] != true {
		t.Errorf("after the rollback the server's active version is %s (last activation %v), want %s by a rollback", active, last, active0)
	}
	b.Screenshot("policy-rolled-back")
	b.CheckRendered()
	b.CheckKeyboard()

	// An auditor reads the same versions and bundle, and gets no control
	// that changes or tests anything (the server refuses those calls too).
	b.Click(`#signout`)
	b.Open(s, browsertest.RoleAuditor)
	b.Wait("the policy page, read-only", `document.querySelectorAll('#versions tbody tr').length === `+strconv.Itoa(versions)+
		` && document.querySelector('#policy-editor .cm-content') && document.querySelector('#policy-editor .cm-content').getAttribute('contenteditable') === 'false'`)
	if n := browsertest.Eval[int](b, `document.querySelectorAll('#push, #run-tests, #rollback, #eval-form, td.actions button:not(.secondary)').length`); n != 0 {
		t.Errorf("the auditor's policy page has %d controls that change or test policy", n)
	}
	b.Screenshot("policy-auditor")
}

package console_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/fhiranchor/fhiranchor/internal/browsertest"
)

// TestConsoleResearcher is the researcher's path through the console on
// the embedded defaults (threshold 11, Gaussian noise, rounding to 5, the
// overlap control and the repeat limit on) with Synthea loaded: a cohort
// counted, a breakdown drawn as a bar chart with a cell the raw data says
// is small marked suppressed, an export run to completion and its files
// downloaded and checked against the raw Bundles (de-identified: none of
// the patients' names or identifiers), and no page with identified data.
func TestConsoleResearcher(t *testing.T) {
	patients := syntheaPatients(t)
	dim, value, small := smallCell(t, patients)
	females := 0
	for _, p := range patients {
		if p.gender == "female" {
			females++
		}
	}
	s := browsertest.Shared(t)
	b := browsertest.New(t)
	b.Open(s, browsertest.RoleResearcher)
	auth := []string{"Authorization", "Bearer " + s.Tokens[browsertest.RoleResearcher]}

	// No identified page: the shell offers research and the receipt
	// verifier only, refuses the others, and the server refuses the token
	// identified data.
	if nav := browsertest.Eval[[]string](b, `[...document.querySelectorAll('nav a')].map((a) => a.dataset.page)`); !slices.Equal(nav, []string{"verify", "research"}) {
		t.Errorf("the researcher's navigation offers %q", nav)
	}
	for _, page := range []string{"audit", "policy", "operator"} {
		browsertest.Eval[bool](b, `location.hash = '#/`+page+`', true`)
		b.Wait("the refusal of #/"+page, `document.querySelector('main h1') && document.querySelector('main h1').textContent === 'Not available'`)
	}
	b.Screenshot("no-identified-pages")
	for _, path := range []string{"/Patient", "/Patient/" + s.PatientID, "/Condition?patient=" + s.PatientID} {
		if r := s.Do(t, http.MethodGet, path, nil, auth...); r.Status != http.StatusForbidden {
			t.Errorf("GET %s with the researcher's token = %d, want 403", path, r.Status)
		}
	}

	browsertest.Eval[bool](b, `location.hash = '#/research', true`)
	b.Wait("the cohort builder", `!!document.getElementById('research-form')`)
	b.CheckKeyboard()
	b.Screenshot("builder")

	// 1. A count: women. The query shown is the one sent.
	setSelect(b, "research-gender", "female")
	if q := shownQuery(t, b); q != `{"criteria":{"gender":"female"}}` {
		t.Errorf("the builder shows %s", q)
	}
	b.Do(chromedp.Click(chromedp.ID("research-count")))
	b.Wait("the count", `/Patients: \d+/.test(document.getElementById('research-total')?.textContent || '')`)
	total := b.Text("#research-total")
	m := regexp.MustCompile(`Patients: (\d+) \(gaussian noise, rounded to 5\)`).FindStringSubmatch(total)
	if m == nil {
		t.Fatalf("the count reads %q", total)
	}
	// Gaussian noise is clamped to ±9 and rounding adds at most 2.
	if n, _ := strconv.Atoi(m[1]); math.Abs(float64(n-females)) > 11 || n%5 != 0 {
		t.Errorf("the page shows %d women; the raw data has %d", n, females)
	}
	if left := browsertest.Eval[string](b, `document.getElementById('research-repeats').dataset.left || ''`); left != "6" {
		t.Errorf("after the first query of its shape the page says %q repeats left, want 6", left)
	}
	b.Screenshot("count")

	// A coded fact with a value range, typed into the fact editor: women
	// with an HbA1c of 5.5 % or more. What the page shows follows from the
	// raw data: near 0, suppressed (1 to 10), or a count near the truth (or
	// suppressed for its overlap with the count of all women).
	setSelect(b, "research-new-kind", "observation")
	b.Do(chromedp.Click(chromedp.ID("research-add-fact")))
	b.Wait("the fact editor", `!!document.getElementById('research-fact-1-valueMin')`)
	b.Do(chromedp.SendKeys(chromedp.ID("research-fact-1-codes"), "loinc:4548-4"),
		chromedp.SendKeys(chromedp.ID("research-fact-1-valueMin"), "5.5"),
		chromedp.SendKeys(chromedp.ID("research-fact-1-unit"), "%"))
	if q := shownQuery(t, b); q != `{"criteria":{"all":[{"gender":"female"},{"observation":{"code":[{"system":"http://loinc.org","code":"4548-4"}],"value":{"ge":5.5},"unit":"%"}}]}}` {
		t.Errorf("the builder shows %s", q)
	}
	b.CheckKeyboard()
	b.Do(chromedp.Click(chromedp.ID("research-count")))
	b.Wait("the count of the fact", `/"observation"/.test(document.getElementById('research-query').textContent) && /Patients: /.test(document.getElementById('research-total')?.textContent || '') && !/Asking/.test(document.getElementById('research-result').textContent)`)
	withFact := 0
	for _, p := range patients {
		if p.gender == "female" && slices.ContainsFunc(p.hba1c, func(v float64) bool { return v >= 5.5 }) {
			withFact++
		}
	}
	shown := b.Text("#research-total")
	switch n := regexp.MustCompile(`Patients: (\d+)`).FindStringSubmatch(shown); {
	case withFact == 0 && (n == nil || atoi(n[1]) > 11): // zero is released, with noise
		t.Errorf("no woman has an HbA1c of 5.5 %% or more; the page shows %q", shown)
	case withFact >= 1 && withFact < 11 && !strings.HasPrefix(shown, "Patients: suppressed: under 11"):
		t.Errorf("%d women have an HbA1c of 5.5 %% or more; the page shows %q, not suppressed", withFact, shown)
	case withFact >= 11 && !strings.Contains(shown, "earlier release") && (n == nil || math.Abs(float64(atoi(n[1])-withFact)) > 11):
		t.Errorf("%d women have an HbA1c of 5.5 %% or more; the page shows %q", withFact, shown)
	}
	b.Screenshot("count-fact")
	b.Do(chromedp.Click(chromedp.CSS(`button[aria-label="Remove fact 1"]`)))

	// 2. A breakdown of every patient by the dimension the raw data says
	// has a small cell: drawn with a bar per cell, that cell hatched and
	// written out as suppressed.
	setSelect(b, "research-gender", "")
	b.Do(chromedp.Click(chromedp.ID("research-dim-" + dim)))
	b.Do(chromedp.Click(chromedp.ID("research-breakdown")))
	b.Wait("the chart", `document.querySelectorAll('#research-chart rect.research-bar').length > 0`)
	type cell struct {
		Values     map[string]string `json:"values"`
		Text       string            `json:"text"`
		Suppressed bool              `json:"suppressed"`
	}
	rows := browsertest.Eval[[]cell](b, `[...document.querySelectorAll('#research-cells tbody tr')].map((tr) => ({
	  values: JSON.parse(tr.dataset.values), text: tr.lastElementChild.textContent, suppressed: tr.classList.contains('suppressed') }))`)
	bars := browsertest.Eval[[]cell](b, `[...document.querySelectorAll('#research-chart rect.research-bar')].map((r) => ({
	  values: JSON.parse(r.dataset.values), text: r.getAttribute('fill') || '', suppressed: r.classList.contains('suppressed') && Number(r.getAttribute('height')) > 0 }))`)
	if len(rows) < 2 || len(bars) != len(rows) {
		t.Fatalf("%d cells in the table, %d bars in the chart", len(rows), len(bars))
	}
	if h := browsertest.Eval[int](b, `[...document.querySelectorAll('#research-chart rect.research-bar')].filter((r) => Number(r.getAttribute('height')) > 0).length`); h != len(bars) {
		t.Errorf("%d of %d bars have a height", h, len(bars))
	}
	marked := false
	for i, r := range rows {
		if r.Values[dim] != value {
			continue
		}
		marked = r.Suppressed && strings.HasPrefix(r.Text, "suppressed") &&
			bars[i].Values[dim] == value && bars[i].Suppressed && strings.HasPrefix(bars[i].Text, "url(#")
	}
	if !marked {
		t.Errorf("the cell %s=%s (%d patients in the raw data) is not shown suppressed: table %v, bars %v", dim, value, small, rows, bars)
	}
	if n := browsertest.Eval[int](b, `[...document.querySelectorAll('#research-chart text.research-bar-label.suppressed')].filter((t) => t.textContent === 'suppressed').length`); n == 0 {
		t.Error("no suppressed bar is labelled in the chart")
	}
	b.Screenshot("breakdown-suppressed")

	// A breakdown whose cells are all large (by gender: the raw data has
	// no gender under 11): every bar released, labelled with its count.
	b.Do(chromedp.Click(chromedp.ID("research-dim-"+dim)), chromedp.Click(chromedp.ID("research-dim-gender")))
	b.Do(chromedp.Click(chromedp.ID("research-breakdown")))
	b.Wait("the gender chart", `document.querySelector('#research-cells caption')?.textContent === 'Patients by Gender'`)
	genders := map[string]int{}
	for _, p := range patients {
		genders[p.gender]++
	}
	released := browsertest.Eval[map[string]string](b, `Object.fromEntries([...document.querySelectorAll('#research-chart rect.research-bar:not(.suppressed)')].map((r) => [JSON.parse(r.dataset.values).gender, r.nextElementSibling.textContent]))`)
	for g, n := range genders {
		c, err := strconv.Atoi(released[g])
		if n < 11 || err != nil || math.Abs(float64(c-n)) > 11 {
			t.Errorf("the %s bar is labelled %q; the raw data has %d", g, released[g], n)
		}
	}
	b.Screenshot("breakdown-released")
	b.Do(chromedp.Click(chromedp.ID("research-dim-gender")))

	// 3. An export of the women's Patient and Condition resources, run to
	// completion, its files downloaded.
	downloads := t.TempDir()
	if _, err := chromedp.CallBrowser(b.Context(), browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads}); err != nil {
		t.Fatalf("allow downloads: %v", err)
	}
	setSelect(b, "research-gender", "female")
	b.Do(chromedp.Click(chromedp.ID("research-type-Patient")), chromedp.Click(chromedp.ID("research-type-Condition")))
	b.Do(chromedp.Click(chromedp.ID("research-export-start")))
	b.Wait("the export's kick-off", `!!document.getElementById('research-export-progress')`)
	b.Screenshot("export-started")
	if q := shownQuery(t, b); q != `{"criteria":{"gender":"female"},"type":["Patient","Condition"]}` {
		t.Errorf("the export request shown is %s", q)
	}
	b.Wait("the export's end", `/Export finished/.test(document.getElementById('research-export-status')?.textContent || '')`)
	files := browsertest.Eval[[]string](b, `[...document.querySelectorAll('#research-files tbody tr td:first-child')].map((td) => td.textContent)`)
	slices.Sort(files)
	if !slices.Equal(files, []string{"Condition.ndjson", "Patient.ndjson"}) {
		t.Fatalf("the export lists files %q", files)
	}
	// The manifest, read by the test itself, says what each file must be.
	exportID := browsertest.Eval[string](b, `document.getElementById('research-files').dataset.export`)
	r := s.DoRoot(t, http.MethodGet, "/v1/cohorts/exports/"+exportID, nil, auth...)
	var manifest struct {
		Output []struct {
			Type   string `json:"type"`
			SHA256 string `json:"sha256"`
		} `json:"output"`
	}
	if err := json.Unmarshal(r.Body, &manifest); r.Status != http.StatusOK || err != nil {
		t.Fatalf("the export's manifest: %d %v", r.Status, err)
	}
	digests := map[string]string{}
	for _, o := range manifest.Output {
		digests[o.Type] = o.SHA256
	}
	got := map[string]string{}
	for _, typ := range []string{"Patient", "Condition"} {
		b.Do(chromedp.Click(chromedp.ID("research-download-" + typ)))
		b.Wait("the download of "+typ, `document.getElementById('research-file-`+typ+`-check')?.dataset.verified !== undefined`)
		if v := browsertest.Eval[string](b, `document.getElementById('research-file-`+typ+`-check').dataset.verified`); v != "true" {
			t.Errorf("%s.ndjson: %q (its SHA-256 or its lines do not check)", typ, b.Text("#research-file-"+typ+"-check"))
		}
		// The file the browser saved is the one the manifest commits to.
		saved := waitFile(t, filepath.Join(downloads, typ+".ndjson"))
		if sum := sha256.Sum256([]byte(saved)); hex.EncodeToString(sum[:]) != digests[typ] {
			t.Errorf("%s.ndjson: the saved file (%d bytes) is not the one the manifest names", typ, len(saved))
		}
		got[typ] = saved
	}
	b.Screenshot("export-finished")

	// The files are de-identified: no name, identifier, telecom, address,
	// birthplace or resource id of the raw Bundles, birth dates cut to
	// the year; one Patient per woman of the raw data (every patient
	// permits research by default), every Condition one of theirs.
	for typ, text := range got {
		if found := phiIn(text, patients); len(found) > 0 {
			t.Errorf("%s.ndjson holds %d identifying strings of the raw Bundles", typ, len(found))
		}
	}
	pseudonyms := map[string]bool{}
	for _, line := range lines(got["Patient"]) {
		var p struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
			Gender       string `json:"gender"`
			BirthDate    string `json:"birthDate"`
			Name         any    `json:"name"`
		}
		if err := json.Unmarshal([]byte(line), &p); err != nil {
			t.Fatalf("Patient.ndjson: %v", err)
		}
		if p.ResourceType != "Patient" || p.Gender != "female" || p.Name != nil || p.BirthDate != "" && !regexp.MustCompile(`^\d{4}$`).MatchString(p.BirthDate) {
			t.Errorf("Patient.ndjson: a %s %s with birthDate of %d characters and name %v", p.ResourceType, p.Gender, len(p.BirthDate), p.Name != nil)
		}
		pseudonyms["Patient/"+p.ID] = true
	}
	if len(pseudonyms) != females {
		t.Errorf("Patient.ndjson holds %d patients; the raw data has %d women", len(pseudonyms), females)
	}
	conditions := lines(got["Condition"])
	if len(conditions) == 0 {
		t.Error("Condition.ndjson is empty")
	}
	for _, line := range conditions {
		var c struct {
			Subject struct {
				Reference string `json:"reference"`
			} `json:"subject"`
		}
		if err := json.Unmarshal([]byte(line), &c); err != nil || !pseudonyms[c.Subject.Reference] {
			t.Errorf("Condition.ndjson: a Condition of a patient not in Patient.ndjson")
			break
		}
	}
	b.Do(chromedp.Click(chromedp.ID("research-export-delete")))
	b.Wait("the export's deletion", `/Export deleted/.test(document.getElementById('research-export-status')?.textContent || '')`)

	// 4. Every common model of the builder's unit tests, as the builder
	// writes it, is answered by the real server (count, and breakdown when
	// it has dimensions).
	for _, q := range builtQueries(t) {
		for op, body := range map[string]json.RawMessage{"count": q.Count, "breakdown": q.Breakdown} {
			if string(body) == "null" {
				continue
			}
			if r := s.DoRoot(t, http.MethodPost, "/v1/cohorts:"+op, body, append(auth, "Content-Type", "application/json")...); r.Status != http.StatusOK {
				t.Errorf("%s (%s): the server answers %d %s", q.Name, op, r.Status, r.Body)
			}
		}
	}
}

// setSelect chooses a value of a select as a user does, firing its events.
func setSelect(b *browsertest.Browser, id, value string) {
	browsertest.Eval[bool](b, `(() => { const s = document.getElementById(`+strconv.Quote(id)+`); s.value = `+strconv.Quote(value)+`;
	  s.dispatchEvent(new Event('input', { bubbles: true })); s.dispatchEvent(new Event('change', { bubbles: true })); return true; })()`)
}

// shownQuery is the query the page shows, compacted.
func shownQuery(t *testing.T, b *browsertest.Browser) string {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, []byte(b.Text("#research-query"))); err != nil {
		t.Fatalf("the query shown is not JSON: %v", err)
	}
	return buf.String()
}

// waitFile waits for the browser to finish saving a download.
func waitFile(t *testing.T, path string) string {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		data, err := os.ReadFile(path)
		if _, partial := os.Stat(path + ".crdownload"); err == nil && partial != nil && len(data) > 0 {
			return string(data)
		}
	}
	t.Fatalf("the browser saved no %s", filepath.Base(path))
	return ""
}

func lines(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

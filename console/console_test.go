package console_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/fhiranchor/fhiranchor/console"
	"github.com/fhiranchor/fhiranchor/internal/browsertest"
)

// TestMain stops the shared server (browsertest.Shared) after the last test.
func TestMain(m *testing.M) { os.Exit(browsertest.Main(m)) }

var nonceRE = regexp.MustCompile(`<meta name="csp-nonce" content="([A-Za-z0-9+/]{22})">`)

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(console.Handler())
	defer srv.Close()
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	var nonces []string
	for _, path := range []string{"/console/", "/console/index.html", "/console/policy", "/console/no/such/file.js"} {
		resp, body := get(path)
		m := nonceRE.FindStringSubmatch(body)
		csp := resp.Header.Get("Content-Security-Policy")
		switch {
		case resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/html; charset=utf-8":
			t.Errorf("%s: %d %s, want the console's index.html", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		case m == nil:
			t.Errorf("%s: index.html has no style nonce", path)
		case !strings.Contains(csp, "'nonce-"+m[1]+"'") || !strings.Contains(csp, "default-src 'self'") ||
			!strings.Contains(csp, "script-src 'self';") || strings.Contains(csp, "unsafe"):
			t.Errorf("%s: CSP %q does not pin scripts to 'self' and styles to the nonce", path, csp)
		case resp.Header.Get("Cache-Control") != "no-store":
			t.Errorf("%s: index.html may be cached: %q", path, resp.Header.Get("Cache-Control"))
		default:
			nonces = append(nonces, m[1])
		}
	}
	slices.Sort(nonces)
	if len(slices.Compact(nonces)) != 4 {
		t.Errorf("nonces repeat across answers: %q", nonces)
	}
	for path, ct := range map[string]string{
		"/console/app.js":   "text/javascript; charset=utf-8",
		"/console/app.css":  "text/css; charset=utf-8",
		"/console/icon.svg": "image/svg+xml",
	} {
		resp, body := get(path)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != ct || body == "" ||
			resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("%s: %d %q (%d bytes)", path, resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
	}
	resp, err := http.Post(srv.URL+"/console/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /console/: %d, want 405", resp.StatusCode)
	}
}

// TestNodeUnit runs the unit tests of the console's pure modules
// (console/test/*.test.mjs) with node, which make test has wherever
// make generate works.
func TestNodeUnit(t *testing.T) {
	cmd := exec.Command(nodeOrSkip(t), "--test", "test/")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "# pass") || strings.Contains(string(out), "# pass 0\n") {
		t.Fatalf("node --test ran no test:\n%s", out)
	}
}

// TestConsoleShell signs in with each role's token and checks that the
// navigation offers exactly the pages that role may use, that a bad token is
// refused with a message, and that the sign-in form works by keyboard.
func TestConsoleShell(t *testing.T) {
	s := browsertest.Shared(t)
	b := browsertest.New(t)

	b.Do(chromedp.Navigate(s.ConsoleURL()))
	b.Wait("the sign-in form", `!!document.getElementById('token')`)
	b.CheckKeyboard()
	b.Screenshot("signin")
	browsertest.Eval[bool](b, `document.getElementById('token').value = 'not-a-token', document.querySelector('form.signin button').click(), true`)
	b.Wait("the refusal", `/Sign-in failed/.test(document.getElementById('signin-status').textContent)`)

	// A sign-in link (fhiranchor token --console): the token in the
	// fragment signs in and leaves the address bar and the history.
	b.Do(chromedp.Navigate(s.ConsoleURL() + "#token=" + s.Tokens[browsertest.RoleAuditor]))
	b.Wait("the sign-in by link", `!!document.getElementById('signout') && /auditor$/.test(document.getElementById('who').textContent)`)
	if href := browsertest.Eval[string](b, `location.href`); strings.Contains(href, "token") {
		t.Errorf("the token stays in the address bar: %s", href)
	}
	browsertest.Eval[bool](b, `document.getElementById('signout').click(), true`)
	b.Wait("the sign-in form after signing out", `!!document.getElementById('token') && sessionStorage.length === 0`)

	want := map[string][]string{
		browsertest.RoleAdmin:      {"policy", "verify", "operator"},
		browsertest.RoleOperator:   {"verify", "operator"},
		browsertest.RoleAuditor:    {"policy", "audit", "verify"},
		browsertest.RolePatient:    {"audit", "verify"},
		browsertest.RoleResearcher: {"verify", "research"},
		browsertest.RoleClinical:   {"verify"},
	}
	for _, role := range []string{browsertest.RoleAdmin, browsertest.RoleOperator, browsertest.RoleAuditor, browsertest.RolePatient, browsertest.RoleResearcher, browsertest.RoleClinical} {
		browsertest.Eval[bool](b, `sessionStorage.clear(), true`)
		b.Open(s, role)
		got := browsertest.Eval[[]string](b, `[...document.querySelectorAll('nav a')].map((a) => a.dataset.page)`)
		if !slices.Equal(got, want[role]) {
			t.Errorf("%s: navigation %q, want %q", role, got, want[role])
		}
		if who := b.Text("#who"); !strings.HasSuffix(who, role) {
			t.Errorf("%s: the header says %q", role, who)
		}
		// A page the role may not use is refused by the shell (the
		// server would refuse its calls anyway).
		if !slices.Contains(want[role], "research") {
			browsertest.Eval[bool](b, `location.hash = '#/research', true`)
			b.Wait("the refusal of #/research", `document.querySelector('main h1') && document.querySelector('main h1').textContent === 'Not available'`)
		}
	}
}

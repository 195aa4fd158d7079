// Package browsertest drives the web console in the system's headless
// Chromium (Debian's chromium package; nothing downloads a browser) with
// chromedp, and runs the gateway the console is served from. A Browser fails
// its test on any console error, uncaught exception, failed page asset or
// request that leaves 127.0.0.1/localhost. Import it from _test.go files
// only.
package browsertest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Browser is one headless Chromium with one tab, owned by a test.
type Browser struct {
	t     testing.TB
	ctx   context.Context
	mu    sync.Mutex
	shots int
	// Requests counts the requests the page made, by host.
	requests map[string]int
}

// New starts headless Chromium for t and stops it when t ends. Without a
// chromium on PATH the test is skipped, unless FHIRANCHOR_INTEGRATION=1
// (CI, where .ci/run installs it): then it fails.
func New(t testing.TB) *Browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("FHIRANCHOR_INTEGRATION") == "1" {
			t.Fatalf("chromium not found (apt-get install chromium): %v", err)
		}
		t.Skip("chromium not found; set FHIRANCHOR_INTEGRATION=1 to make this a failure")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Flag("headless", "new"),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		// Nothing of the browser's own may call out either.
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("no-pings", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	b := &Browser{t: t, requests: map[string]int{}}
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithListener(b.listen))
	b.ctx = ctx
	// The first Do starts the browser (on a context with no deadline: it
	// lives as long as ctx) and turns on the events listen judges.
	err = chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, tg, cdplog.Enable, cdp.Empty{})
		return err
	}))
	if err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	return b
}

// Context is the tab's context, for chromedp calls of a test's own.
func (b *Browser) Context() context.Context { return b.ctx }

// listen fails the test on what the console must never do. It runs on
// chromedp's event goroutine: t.Errorf, never t.Fatal.
func (b *Browser) listen(ev any) {
	switch ev := ev.(type) {
	case *cdpruntime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			msg = d.Exception.Description
		}
		b.t.Errorf("browser: uncaught exception at %s:%d: %s", d.URL, d.LineNumber, msg)
	case *cdpruntime.EventConsoleAPICalled:
		if ev.Type == cdpruntime.ConsoleAPICalledTypeError || ev.Type == cdpruntime.ConsoleAPICalledTypeAssert {
			var parts []string
			for _, a := range ev.Args {
				if a.Description != "" {
					parts = append(parts, a.Description)
				} else {
					parts = append(parts, string(a.Value))
				}
			}
			b.t.Errorf("browser console.%s: %s", ev.Type, strings.Join(parts, " "))
		}
	case *cdplog.EventEntryAdded:
		e := ev.Entry
		// An API call the page answers itself (a 4xx it shows the user)
		// is logged by Chromium as a network error; the response check
		// below judges those. Everything else at error level (CSP
		// violations, failed scripts) fails the test.
		if e.Level == cdplog.EntryLevelError && e.Source != cdplog.EntrySourceNetwork {
			b.t.Errorf("browser log (%s): %s %s", e.Source, e.Text, e.URL)
		}
	case *network.EventRequestWillBeSent:
		u, err := url.Parse(ev.Request.URL)
		if err != nil {
			b.t.Errorf("browser: request to an unparsable URL")
			return
		}
		switch u.Scheme {
		case "data", "blob":
			return
		}
		host := u.Hostname()
		b.mu.Lock()
		b.requests[host]++
		b.mu.Unlock()
		if host != "127.0.0.1" && host != "localhost" {
			b.t.Errorf("browser: request leaves the gateway: %s %s://%s", ev.Request.Method, u.Scheme, u.Host)
		}
	case *network.EventResponseReceived:
		r := ev.Response
		u, err := url.Parse(r.URL)
		if err != nil || u.Scheme == "data" || u.Scheme == "blob" {
			return
		}
		api := strings.HasPrefix(u.Path, "/v1/") || strings.HasPrefix(u.Path, "/fhir/")
		switch {
		case r.Status >= 500:
			b.t.Errorf("browser: %d from %s", r.Status, u.Path)
		case r.Status >= 400 && !api:
			b.t.Errorf("browser: %d for the page asset %s", r.Status, u.Path)
		case r.Status >= 400:
			b.t.Logf("browser: %d from %s (the page shows it)", r.Status, u.Path)
		}
	}
}

// Do runs chromedp actions in the tab in order, failing the test on an
// error; each call has 30 seconds.
func (b *Browser) Do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.Screenshot("failure")
		b.t.Fatalf("browser: %v", err)
	}
}

// Eval evaluates a JavaScript expression in the page (awaiting a promise)
// and decodes its value into T, failing the test on an error.
func Eval[T any](b *Browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.Screenshot("failure")
		b.t.Fatalf("browser: evaluate: %v", err)
	}
	return v
}

// Requests returns how many requests the page made to each host.
func (b *Browser) Requests() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]int, len(b.requests))
	for h, n := range b.requests {
		out[h] = n
	}
	return out
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Screenshot writes a full-page PNG named after the test, a sequence
// number and name into $FHIRANCHOR_SCREENSHOTS, or console/screenshots/ in
// the repository (git-ignored), and logs its path. Screenshots are for a
// person to look at; a failure to write one is only logged.
func (b *Browser) Screenshot(name string) {
	b.t.Helper()
	dir := os.Getenv("FHIRANCHOR_SCREENSHOTS")
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", "..", "console", "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	b.mu.Lock()
	b.shots++
	n := b.shots
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(dir, fmt.Sprintf("%s-%02d-%s.png", unsafeName.ReplaceAllString(b.t.Name(), "_"), n, unsafeName.ReplaceAllString(name, "_")))
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	b.t.Logf("screenshot: %s", path)
}

// Open loads the console of s in the tab and signs in with the token of
// role, waiting until the shell shows its navigation.
func (b *Browser) Open(s *Server, role string) {
	b.t.Helper()
	tok, ok := s.Tokens[role]
	if !ok {
		b.t.Fatalf("browsertest: no token for role %q", role)
	}
	b.Do(chromedp.Navigate(s.ConsoleURL()),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SetValue(chromedp.ID("token"), tok),
		chromedp.Click(chromedp.CSS("form.signin button[type=submit]")),
		chromedp.WaitVisible(chromedp.ID("signout")))
}

// Wait polls a JavaScript expression until it is truthy (30 seconds at
// most), failing the test with what, then.
func (b *Browser) Wait(what, expr string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr)); err != nil {
		b.Screenshot("failure")
		b.t.Fatalf("browser: waiting for %s: %v", what, err)
	}
}

// Text returns the text content of the first element matching a CSS
// selector, or "" when none does.
func (b *Browser) Text(css string) string {
	b.t.Helper()
	return Eval[string](b, `(() => { const e = document.querySelector(`+jsString(css)+`); return e ? e.textContent : ''; })()`)
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	q, _ := json.Marshal(s)
	return string(q)
}

// Click clicks the first element matching a CSS selector once it is
// visible.
func (b *Browser) Click(css string) {
	b.t.Helper()
	b.Do(chromedp.WaitVisible(chromedp.CSS(css)), chromedp.Click(chromedp.CSS(css)))
}

// InsertText types text at the focus as one input, the way a paste does
// (Input.insertText): editors such as CodeMirror take it as typed.
func (b *Browser) InsertText(text string) {
	b.t.Helper()
	b.Do(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, input.InsertText, input.InsertTextParams{Text: text})
		return err
	}))
}

// TypeLines types lines at the focus, each as one input (as InsertText)
// followed by the Enter key alone (rawKeyDown and keyUp, no char event, so
// an editor that handles Enter itself, as CodeMirror does, gets exactly one
// line break and may indent the next line).
func (b *Browser) TypeLines(lines ...string) {
	b.t.Helper()
	for _, l := range lines {
		if l != "" {
			b.InsertText(l)
		}
		b.Do(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			for _, typ := range []input.DispatchKeyEventType{input.DispatchKeyEventTypeRawKeyDown, input.DispatchKeyEventTypeKeyUp} {
				if _, err := cdp.Call(ctx, tg, input.DispatchKeyEvent, input.DispatchKeyEventParams{
					Type: typ, Key: "Enter", Code: "Enter", WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13,
				}); err != nil {
					return err
				}
			}
			return nil
		}))
	}
}

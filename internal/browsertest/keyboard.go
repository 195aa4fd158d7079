package browsertest

import (
	"strings"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// control is a focusable element of the page as controlsJS reports it.
type control struct {
	ID   string `json:"id"`
	Tag  string `json:"tag"`
	Name string `json:"name"`
	HTML string `json:"html"`
}

// controlsJS marks and lists the page's visible, enabled controls with their
// accessible names, computed the way assistive technology starts to:
// aria-label, aria-labelledby, <label>, a button's or link's text, title.
const controlsJS = `(() => {
  const sel = 'a[href], button, input:not([type=hidden]), select, textarea, summary, [tabindex]:not([tabindex="-1"]), [contenteditable="true"]';
  const visible = (e) => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden' && !e.closest('[inert]');
  const text = (e) => (e ? e.textContent : '').replace(/\s+/g, ' ').trim();
  const nameOf = (e) => {
    const l = (e.getAttribute('aria-label') || '').trim();
    if (l) return l;
    const lb = e.getAttribute('aria-labelledby');
    if (lb) {
      const t = lb.split(/\s+/).map((id) => text(document.getElementById(id))).join(' ').trim();
      if (t) return t;
    }
    if (e.labels && e.labels.length) {
      const t = [...e.labels].map(text).join(' ').trim();
      if (t) return t;
    }
    if (['A', 'BUTTON', 'SUMMARY'].includes(e.tagName)) {
      const t = text(e);
      if (t) return t;
    }
    return (e.getAttribute('title') || '').trim();
  };
  document.querySelectorAll('[data-bt-control]').forEach((e) => e.removeAttribute('data-bt-control'));
  const out = [];
  let i = 0;
  for (const e of document.querySelectorAll(sel)) {
    if (!visible(e) || e.disabled) continue;
    e.dataset.btControl = String(i++);
    out.push({ id: e.dataset.btControl, tag: e.tagName.toLowerCase(), name: nameOf(e), html: e.outerHTML.slice(0, 160) });
  }
  return out;
})()`

// CheckKeyboard asserts over the DOM as it is now that every visible,
// enabled control has an accessible name, and that pressing Tab from the
// top of the page reaches every one of them.
func (b *Browser) CheckKeyboard() {
	b.t.Helper()

	controls := Eval[[]control](b, controlsJS)
	if len(controls) == 0 {
		b.t.Errorf("keyboard: the page has no controls")
		return
	}
	for _, c := range controls {
		if c.Name == "" {
			b.t.Errorf("keyboard: a %s has no accessible name: %s", c.Tag, c.HTML)
		}
	}
	reached := map[string]bool{}
	Eval[bool](b, `document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); true`)
	for range len(controls) + 3 {
		b.Do(chromedp.KeyEvent(kb.Tab))
		if id := Eval[string](b, `(document.activeElement && document.activeElement.dataset.btControl) || ''`); id != "" {
			reached[id] = true
		}
	}
	var missed []string
	for _, c := range controls {
		if !reached[c.ID] {
			missed = append(missed, c.HTML)
		}
	}
	if len(missed) > 0 {
		b.t.Errorf("keyboard: Tab never reaches %d of %d controls:\n%s", len(missed), len(controls), strings.Join(missed, "\n"))
	}
}

// CheckRendered asserts that the page shows no JavaScript junk: the words
// undefined, null or NaN, or [object Object], in its rendered text (what
// innerText gives: closed <details> and hidden elements are left out).
func (b *Browser) CheckRendered() {
	b.t.Helper()
	junk := Eval[[]string](b, `document.body.innerText.match(/\b(undefined|null|NaN)\b|\[object Object\]/g) || []`)
	if len(junk) > 0 {
		b.t.Errorf("the page shows %q", junk)
	}
}

// The Researcher page: a cohort builder (demographics, coded facts, value
// ranges, time windows) that shows the exact query it sends, the count and
// breakdowns as bar charts with suppressed cells marked (hatched and
// labelled, not by color alone), the repeats left for the query's shape, and
// an export with its progress and files.
//
// Every request goes through ctx.api (same origin, bearer token); server
// data only ever reaches the page as text (textContent, SVG text nodes).
import './research.css';
import {
  DIMENSIONS,
  ETHNICITIES,
  FACT_KINDS,
  GENDERS,
  RACES,
  barLayout,
  buildQuery,
  chartSeries,
  emptyFact,
  emptyModel,
  exportID,
  exportRequest,
  ndjsonSummary,
  parseBreakdown,
  parseCount,
  parseManifest,
  progress,
  queryText,
  sha256Hex,
  statusPath,
} from '../lib/cohort.js';

const SVG = 'http://www.w3.org/2000/svg';
const EXPORT_SCOPE = 'fhiranchor/cohort.export';
const DIMENSION_LABELS = {
  gender: 'Gender',
  ageBand: 'Age band',
  birthDecade: 'Birth decade',
  zip3: 'ZIP3',
  race: 'Race',
  ethnicity: 'Ethnicity',
  deceased: 'Vital status',
};

// h builds an element: attributes by setAttribute, "on<event>" as
// listeners, children as nodes or text (never HTML).
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// errorText is what an API failure says: the OperationOutcome's text the
// shell extracted (it never echoes input), or the status.
function errorText(err) {
  const o = err && err.outcome;
  if (typeof o === 'string' && o) return o;
  const issue = o && Array.isArray(o.issue) ? o.issue[0] : null;
  if (issue && (issue.diagnostics || issue.details?.text)) return String(issue.diagnostics || issue.details.text);
  if (err && err.status) return `request failed (${err.status})`;
  return err && err.message ? err.message : 'request failed';
}

let uid = 0;
function nextID(prefix) {
  uid += 1;
  return `research-${prefix}-${uid}`;
}

// field is a labelled control.
function field(label, control, hint) {
  const id = control.id || nextID('f');
  control.id = id;
  return h('div', { class: 'research-field' }, h('label', { for: id }, label), control, hint ? h('small', {}, hint) : null);
}

function select(options, value, attrs = {}) {
  const el = h('select', attrs);
  for (const o of options) {
    const opt = h('option', { value: o.value }, o.label);
    if (o.value === value) opt.selected = true;
    el.append(opt);
  }
  return el;
}

export function mount(el, ctx) {
  const model = emptyModel();
  const canExport = Array.isArray(ctx.scopes) && ctx.scopes.includes(EXPORT_SCOPE);
  let timer = null;
  let stopped = false;
  const blobURLs = [];

  const preview = h('pre', { class: 'research-query', id: 'research-query', tabindex: '0', 'aria-label': 'Query sent to the server' });
  const problems = h('ul', { class: 'research-problems', id: 'research-problems', 'aria-live': 'polite' });
  const repeats = h('p', { class: 'research-repeats', id: 'research-repeats', 'aria-live': 'polite' }, 'Repeats left: run a query to learn.');
  const result = h('section', { class: 'research-result', id: 'research-result', 'aria-live': 'polite', 'aria-label': 'Answer' });
  const factsBox = h('div', { class: 'research-facts', id: 'research-facts' });
  const exportBox = h('section', { class: 'research-export', id: 'research-export', 'aria-label': 'Export' });

  function current(withBreakdown) {
    return buildQuery(model, { withBreakdown });
  }

  // refresh shows the query a count (or a breakdown, when dimensions are
  // chosen) would send, or what keeps the builder from making one.
  function refresh() {
    const withBreakdown = model.breakdown.length > 0;
    const { query, errors } = current(withBreakdown);
    problems.replaceChildren(...errors.map((e) => h('li', {}, `${e.field}: ${e.message}`)));
    preview.textContent = query ? queryText(query) : '(no query: fix the fields listed)';
    countBtn.disabled = !current(false).query;
    breakdownBtn.disabled = !(withBreakdown && query);
    if (exportBtn) exportBtn.disabled = !current(false).query;
  }

  // ---- Demographics ----
  const bind = (control, set) => {
    control.addEventListener('input', () => {
      set(control.value);
      refresh();
    });
    return control;
  };
  const num = (label, get, set, attrs = {}) =>
    field(label, bind(h('input', { type: 'text', inputmode: 'numeric', size: '6', value: get(), ...attrs }), set));

  const demographics = h(
    'fieldset',
    { class: 'research-demographics' },
    h('legend', {}, 'Demographics'),
    field(
      'Gender',
      bind(select([{ value: '', label: 'any' }, ...GENDERS.map((g) => ({ value: g, label: g }))], model.gender, { id: 'research-gender' }), (v) => {
        model.gender = v;
      }),
    ),
    num('Age from', () => model.age.min, (v) => { model.age.min = v; }, { id: 'research-age-min' }),
    num('Age to', () => model.age.max, (v) => { model.age.max = v; }, { id: 'research-age-max' }),
    num('Born from (year)', () => model.birthYear.min, (v) => { model.birthYear.min = v; }, { id: 'research-born-min' }),
    num('Born to (year)', () => model.birthYear.max, (v) => { model.birthYear.max = v; }, { id: 'research-born-max' }),
    field('ZIP3', bind(h('input', { type: 'text', size: '4', maxlength: '3', id: 'research-zip3' }), (v) => { model.zip3 = v.trim(); })),
    field(
      'Race',
      bind(select([{ value: '', label: 'any' }, ...RACES.map((r) => ({ value: r.code, label: r.label }))], '', { id: 'research-race' }), (v) => {
        model.race = v;
      }),
    ),
    field(
      'Ethnicity',
      bind(select([{ value: '', label: 'any' }, ...ETHNICITIES.map((r) => ({ value: r.code, label: r.label }))], '', { id: 'research-ethnicity' }), (v) => {
        model.ethnicity = v;
      }),
    ),
    field(
      'Vital status',
      bind(
        select(
          [
            { value: '', label: 'any' },
            { value: 'false', label: 'alive' },
            { value: 'true', label: 'deceased' },
          ],
          '',
          { id: 'research-deceased' },
        ),
        (v) => {
          model.deceased = v;
        },
      ),
    ),
  );

  // ---- Facts ----
  function renderFacts() {
    factsBox.replaceChildren(...model.facts.map((f, i) => factEditor(f, i)));
    refresh();
  }

  function factEditor(f, i) {
    const n = i + 1;
    const text = (label, key, attrs = {}) =>
      field(label, bind(h('input', { type: 'text', value: f[key], id: `research-fact-${n}-${key}`, ...attrs }), (v) => { f[key] = v; }));
    const kind = select(
      FACT_KINDS.map((k) => ({ value: k.kind, label: k.label })),
      f.kind,
      { id: `research-fact-${n}-kind` },
    );
    kind.addEventListener('change', () => {
      f.kind = kind.value;
      if (f.kind !== 'observation') Object.assign(f, { valueMin: '', valueMax: '', unit: '', valueCodes: '' });
      renderFacts();
    });
    const exclude = h('input', { type: 'checkbox', id: `research-fact-${n}-exclude` });
    exclude.checked = f.exclude;
    exclude.addEventListener('change', () => {
      f.exclude = exclude.checked;
      refresh();
    });
    const dateInput = (label, key) =>
      // A text field, not type=date: a date input's segments each take a
      // Tab stop, and the language wants exactly YYYY-MM-DD.
      field(label, bind(h('input', { type: 'text', value: f[key], size: '10', placeholder: 'YYYY-MM-DD', id: `research-fact-${n}-${key}` }), (v) => { f[key] = v; }));
    const named = model.facts.filter((o, j) => j !== i && o.name && !o.exclude).map((o) => o.name.trim());
    const of = select([{ value: '', label: '(no window)' }, ...named.map((x) => ({ value: x, label: x }))], f.withinOf, {
      id: `research-fact-${n}-withinOf`,
    });
    of.addEventListener('change', () => {
      f.withinOf = of.value;
      refresh();
    });
    const nameInput = h('input', { type: 'text', value: f.name, size: '8', id: `research-fact-${n}-name` });
    nameInput.addEventListener('change', () => {
      f.name = nameInput.value;
      renderFacts(); // other facts' window lists name it
      document.getElementById(`research-fact-${n}-name`)?.focus();
    });
    const remove = h(
      'button',
      {
        type: 'button',
        class: 'research-remove',
        'aria-label': `Remove fact ${n}`,
        onclick: () => {
          model.facts.splice(i, 1);
          renderFacts();
        },
      },
      'Remove',
    );
    const obs = f.kind === 'observation';
    return h(
      'fieldset',
      { class: 'research-fact', id: `research-fact-${n}` },
      h('legend', {}, `Fact ${n}`),
      field('Kind', kind),
      h('div', { class: 'research-field research-check' }, exclude, h('label', { for: exclude.id }, 'Patients without such a fact')),
      text('Codes', 'codes', { size: '32', placeholder: 'sct:44054006 or http://loinc.org|4548-4' }),
      text('Status', 'status', { size: '10', placeholder: 'active' }),
      dateInput('Dated from', 'dateFrom'),
      dateInput('Dated to', 'dateTo'),
      obs
        ? h(
            'div',
            { class: 'research-value' },
            field(
              'Lower bound',
              bind(select([{ value: 'ge', label: '≥' }, { value: 'gt', label: '>' }], f.valueMinOp, { id: `research-fact-${n}-valueMinOp` }), (v) => {
                f.valueMinOp = v;
              }),
            ),
            text('Value from', 'valueMin', { size: '6', inputmode: 'decimal' }),
            field(
              'Upper bound',
              bind(select([{ value: 'le', label: '≤' }, { value: 'lt', label: '<' }], f.valueMaxOp, { id: `research-fact-${n}-valueMaxOp` }), (v) => {
                f.valueMaxOp = v;
              }),
            ),
            text('Value to', 'valueMax', { size: '6', inputmode: 'decimal' }),
            text('Unit', 'unit', { size: '6', placeholder: '%' }),
            text('Coded value', 'valueCodes', { size: '20', placeholder: 'sct:266919005' }),
          )
        : null,
      field('Name (for windows)', nameInput),
      h(
        'div',
        { class: 'research-window' },
        field('Dated relative to', of),
        text('From day', 'withinFrom', { size: '5', inputmode: 'numeric' }),
        text('To day', 'withinTo', { size: '5', inputmode: 'numeric' }),
      ),
      remove,
    );
  }

  const newKind = select(
    FACT_KINDS.map((k) => ({ value: k.kind, label: k.label })),
    'condition',
    { id: 'research-new-kind' },
  );
  const addFact = h(
    'button',
    {
      type: 'button',
      id: 'research-add-fact',
      onclick: () => {
        model.facts.push(emptyFact(newKind.value));
        renderFacts();
        document.getElementById(`research-fact-${model.facts.length}-codes`)?.focus();
      },
    },
    'Add fact',
  );
  const match = bind(
    select(
      [
        { value: 'all', label: 'all of the facts' },
        { value: 'any', label: 'any of the facts' },
      ],
      'all',
      { id: 'research-match' },
    ),
    (v) => {
      model.match = v;
    },
  );

  // ---- Breakdown ----
  const dims = h(
    'fieldset',
    { class: 'research-dims' },
    h('legend', {}, 'Break down by'),
    ...DIMENSIONS.map((d) => {
      const box = h('input', { type: 'checkbox', id: `research-dim-${d}`, value: d });
      box.addEventListener('change', () => {
        model.breakdown = model.breakdown.filter((x) => x !== d);
        if (box.checked) model.breakdown.push(d);
        refresh();
      });
      return h('span', { class: 'research-check' }, box, h('label', { for: box.id }, DIMENSION_LABELS[d]));
    }),
  );

  // ---- Actions ----
  const countBtn = h('button', { type: 'button', id: 'research-count', onclick: () => ask(false) }, 'Count');
  const breakdownBtn = h('button', { type: 'button', id: 'research-breakdown', onclick: () => ask(true) }, 'Break down');
  const exportBtn = canExport ? h('button', { type: 'button', id: 'research-export-start', onclick: () => startExport() }, 'Export') : null;

  function showRepeats(left) {
    if (left === null || left === undefined) return;
    repeats.textContent =
      left === 0
        ? 'Repeats left: 0. No more queries of this shape (the same criteria up to numbers and dates) until the repeat window passes.'
        : `Repeats left: ${left} more ${left === 1 ? 'query' : 'queries'} of this shape (the same criteria up to numbers and dates) within the repeat window.`;
    repeats.dataset.left = String(left);
  }

  async function ask(withBreakdown) {
    const { query } = current(withBreakdown);
    if (!query) return;
    const text = queryText(query);
    preview.textContent = text;
    result.replaceChildren(h('p', { class: 'research-busy' }, 'Asking…'));
    try {
      const raw = await ctx.api(withBreakdown ? '/v1/cohorts:breakdown' : '/v1/cohorts:count', {
        method: 'POST',
        body: text,
        headers: { 'Content-Type': 'application/json' },
      });
      if (stopped) return;
      const a = withBreakdown ? parseBreakdown(raw) : parseCount(raw);
      showRepeats(a.repeatsLeft);
      result.replaceChildren(...(withBreakdown ? breakdownView(a) : countView(a)).filter(Boolean));
    } catch (err) {
      if (stopped) return;
      if (err && err.status === 429) showRepeats(0);
      result.replaceChildren(h('p', { class: 'research-error', role: 'alert' }, errorText(err)));
    }
  }

  function releaseText(r) {
    return r.suppressed ? h('span', { class: 'research-suppressed' }, r.text) : h('span', { class: 'research-count-value' }, r.text);
  }

  function recordLine(a) {
    const parts = [];
    if (a.decision !== null) parts.push(`decision record ${a.decision}`);
    if (a.policyVersion !== null) parts.push(`policy version ${a.policyVersion}`);
    if (a.released) parts.push(`released SHA-256 ${a.released.slice(0, 16)}…`);
    return h('p', { class: 'research-record' }, parts.join(' · '));
  }

  function countView(a) {
    return [h('h3', {}, 'Count'), h('p', { class: 'research-total', id: 'research-total' }, 'Patients: ', releaseText(a.total)), recordLine(a)];
  }

  function breakdownView(b) {
    const chart = chartSeries(b);
    const table = h(
      'table',
      { class: 'research-table', id: 'research-cells' },
      h('caption', {}, `Patients by ${b.dimensions.map((d) => DIMENSION_LABELS[d] ?? d).join(' and ')}`),
      h('thead', {}, h('tr', {}, ...b.dimensions.map((d) => h('th', { scope: 'col' }, DIMENSION_LABELS[d] ?? d)), h('th', { scope: 'col' }, 'Patients'))),
      h(
        'tbody',
        {},
        ...b.cells.map((c) =>
          h(
            'tr',
            { class: c.suppressed ? 'suppressed' : '', 'data-values': JSON.stringify(c.values) },
            ...b.dimensions.map((d) => h('td', {}, c.label.split(' · ')[b.dimensions.indexOf(d)])),
            h('td', { class: c.suppressed ? 'research-suppressed' : '' }, c.text),
          ),
        ),
      ),
    );
    const note =
      b.suppressed > 0
        ? h('p', { class: 'research-suppressed-note' }, h('span', { class: 'research-swatch', 'aria-hidden': 'true' }), `${b.suppressed} suppressed ${b.suppressed === 1 ? 'cell' : 'cells'} (hatched): small counts, their complements, or near an earlier release.`)
        : null;
    return [
      h('h3', {}, 'Breakdown'),
      h('p', { class: 'research-total', id: 'research-total' }, 'Patients in all: ', releaseText(b.total)),
      barChart(chart, b),
      note,
      table,
      recordLine(b),
    ];
  }

  function barChart(chart, b) {
    const bars = chart.groups.length * Math.max(1, chart.series.length);
    const layout = barLayout(chart, { width: Math.min(960, Math.max(360, 120 + bars * 36 + chart.groups.length * 12)) });
    const patternID = nextID('hatch');
    const title = `Bar chart of patients by ${b.dimensions.map((d) => DIMENSION_LABELS[d] ?? d).join(' and ')}`;
    const svg = s('svg', {
      class: 'research-chart',
      id: 'research-chart',
      role: 'img',
      'aria-label': title,
      viewBox: `0 0 ${layout.width} ${layout.height}`,
      width: layout.width,
      height: layout.height,
    });
    svg.append(
      s('title', {}, title),
      s(
        'defs',
        {},
        s(
          'pattern',
          { id: patternID, patternUnits: 'userSpaceOnUse', width: '6', height: '6', patternTransform: 'rotate(45)' },
          s('rect', { width: '6', height: '6', class: 'research-hatch-bg' }),
          s('line', { x1: '0', y1: '0', x2: '0', y2: '6', class: 'research-hatch-line' }),
        ),
      ),
    );
    const base = layout.margin.top + layout.plotH;
    for (const t of layout.ticks) {
      svg.append(
        s('line', { x1: layout.margin.left, x2: layout.width - layout.margin.right, y1: t.y, y2: t.y, class: 'research-grid' }),
        s('text', { x: layout.margin.left - 6, y: t.y + 4, 'text-anchor': 'end', class: 'research-tick' }, String(t.value)),
      );
    }
    svg.append(s('line', { x1: layout.margin.left, x2: layout.width - layout.margin.right, y1: base, y2: base, class: 'research-axis' }));
    for (const bar of layout.bars) {
      const c = bar.cell;
      const rect = s('rect', {
        x: bar.x.toFixed(2),
        y: bar.y.toFixed(2),
        width: bar.width.toFixed(2),
        height: bar.height.toFixed(2),
        class: c.suppressed ? 'research-bar suppressed' : `research-bar series-${bar.series % 6}`,
        'data-cell': c.label,
        'data-values': JSON.stringify(c.values),
        fill: c.suppressed ? `url(#${patternID})` : null,
      });
      rect.append(s('title', {}, `${c.label}: ${c.text}`));
      svg.append(rect);
      const cx = bar.x + bar.width / 2;
      if (c.suppressed) {
        svg.append(
          s('text', { x: cx.toFixed(2), y: (bar.y - 4).toFixed(2), 'text-anchor': 'start', class: 'research-bar-label suppressed', transform: `rotate(-60 ${cx.toFixed(2)} ${(bar.y - 4).toFixed(2)})` }, 'suppressed'),
        );
      } else {
        svg.append(s('text', { x: cx.toFixed(2), y: (bar.y - 4).toFixed(2), 'text-anchor': 'middle', class: 'research-bar-label' }, String(c.count)));
      }
    }
    for (const g of layout.groupLabels) {
      const at = { x: g.x.toFixed(2), y: g.y.toFixed(2), class: 'research-group' };
      if (g.slant) Object.assign(at, { 'text-anchor': 'end', transform: `rotate(-35 ${at.x} ${at.y})` });
      else at['text-anchor'] = 'middle';
      svg.append(s('text', at, g.text));
    }
    const legend =
      chart.series.length > 1
        ? h(
            'ul',
            { class: 'research-legend', 'aria-label': 'Series' },
            ...chart.series.map((name, i) => h('li', {}, h('span', { class: `research-swatch series-${i % 6}`, 'aria-hidden': 'true' }), name)),
          )
        : null;
    return h('figure', { class: 'research-figure' }, svg, legend);
  }

  // ---- Export ----
  const exportTypes = ['Patient', ...FACT_KINDS.map((k) => k.resource)];
  const chosenTypes = new Set();

  function exportControls() {
    return h(
      'fieldset',
      { class: 'research-export-types' },
      h('legend', {}, 'Export resource types (none chosen: every type)'),
      ...exportTypes.map((t) => {
        const box = h('input', { type: 'checkbox', id: `research-type-${t}`, value: t });
        box.addEventListener('change', () => {
          if (box.checked) chosenTypes.add(t);
          else chosenTypes.delete(t);
        });
        return h('span', { class: 'research-check' }, box, h('label', { for: box.id }, t));
      }),
    );
  }

  let exportState = null; // {id, done}

  async function startExport() {
    const { query } = current(false);
    if (!query) return;
    if (exportState && !exportState.done) return;
    const body = exportRequest(query, exportTypes.filter((t) => chosenTypes.has(t)));
    const text = queryText(body);
    preview.textContent = text;
    const status = h('p', { class: 'research-export-status', id: 'research-export-status', role: 'status' }, 'Starting export…');
    const bar = h('progress', { id: 'research-export-progress', 'aria-label': 'Export progress' });
    exportBox.replaceChildren(h('h3', {}, 'Export'), status, bar);
    try {
      const res = await ctx.api('/v1/cohorts:export', { method: 'POST', body: text, headers: { 'Content-Type': 'application/json' }, raw: true });
      await ensureOK(res);
      const id = exportID(res.headers.get('Content-Location'));
      exportState = { id, done: false };
      exportBox.append(
        h('button', { type: 'button', id: 'research-export-cancel', onclick: () => deleteExport(id, 'Export cancelled.') }, 'Cancel export'),
      );
      poll(id, status, bar);
    } catch (err) {
      if (!stopped) status.textContent = `Export refused: ${errorText(err)}`;
    }
  }

  // ensureOK turns a raw non-2xx response into an error (should the shell
  // hand raw responses back whatever their status).
  async function ensureOK(res) {
    if (res.ok) return;
    let outcome = null;
    try {
      outcome = await res.json();
    } catch {
      outcome = null;
    }
    throw Object.assign(new Error(`request failed (${res.status})`), { status: res.status, outcome });
  }

  async function poll(id, status, bar) {
    if (stopped) return;
    try {
      const res = await ctx.api(statusPath(id), { raw: true });
      await ensureOK(res);
      if (stopped || !exportState || exportState.id !== id) return;
      if (res.status === 202) {
        const p = progress(res.headers.get('X-Progress'));
        status.textContent = `Export running: ${p.text}`;
        if (p.fraction === null) bar.removeAttribute('value');
        else bar.value = p.fraction;
        const after = Number(res.headers.get('Retry-After'));
        timer = setTimeout(() => poll(id, status, bar), Math.min(5, Number.isFinite(after) && after > 0 ? after : 1) * 1000);
        return;
      }
      const m = parseManifest(await res.json(), id);
      exportState.done = true;
      bar.value = 1;
      bar.max = 1;
      status.textContent = `Export finished: ${m.files.length} ${m.files.length === 1 ? 'file' : 'files'}` +
        (m.patients !== null ? `, ${m.patients} patients` : '') +
        (m.decision !== null ? `, decision record ${m.decision}` : '') + '.';
      document.getElementById('research-export-cancel')?.remove();
      exportBox.append(filesView(id, m));
    } catch (err) {
      if (!stopped) status.textContent = `Export failed: ${errorText(err)}`;
    }
  }

  function filesView(id, m) {
    const rows = m.files.map((f) => {
      const check = h('span', { class: 'research-file-check', id: `research-file-${f.type}-check`, 'aria-live': 'polite' });
      const btn = h(
        'button',
        { type: 'button', id: `research-download-${f.type}`, onclick: () => download(f, check) },
        `Download ${f.name}`,
      );
      return h('tr', {}, h('td', {}, f.name), h('td', {}, f.count === null ? '' : String(f.count)), h('td', {}, btn, ' ', check));
    });
    return h(
      'div',
      { class: 'research-files' },
      h(
        'table',
        { class: 'research-table', id: 'research-files', 'data-export': id },
        h('caption', {}, 'Export files (de-identified NDJSON)'),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'File'), h('th', { scope: 'col' }, 'Resources'), h('th', { scope: 'col' }, 'Download'))),
        h('tbody', {}, ...rows),
      ),
      h('button', { type: 'button', id: 'research-export-delete', onclick: () => deleteExport(id, 'Export deleted.') }, 'Delete export files'),
    );
  }

  // download fetches a file through ctx.api (with the bearer token), checks
  // its SHA-256 against the manifest and saves it through a Blob URL.
  async function download(f, check) {
    check.textContent = 'Downloading…';
    try {
      const res = await ctx.api(f.path, { raw: true });
      await ensureOK(res);
      const bytes = new Uint8Array(await res.arrayBuffer());
      const sum = await sha256Hex(bytes);
      const summary = ndjsonSummary(new TextDecoder().decode(bytes), f.type);
      const verified = f.sha256 !== '' && sum === f.sha256;
      check.textContent = `${summary.lines} lines; SHA-256 ${verified ? 'matches the manifest' : 'DOES NOT match the manifest'}`;
      check.dataset.verified = String(verified && summary.ok);
      const url = URL.createObjectURL(new Blob([bytes], { type: 'application/fhir+ndjson' }));
      blobURLs.push(url);
      const a = h('a', { href: url, download: f.name, class: 'research-save', id: `research-save-${f.type}` }, `Save ${f.name} again`);
      check.after(' ', a);
      a.click();
    } catch (err) {
      check.textContent = `Download failed: ${errorText(err)}`;
    }
  }

  async function deleteExport(id, done) {
    clearTimeout(timer);
    try {
      await ctx.api(statusPath(id), { method: 'DELETE' });
      if (exportState && exportState.id === id) exportState.done = true;
      exportBox.replaceChildren(h('h3', {}, 'Export'), h('p', { id: 'research-export-status', role: 'status' }, done));
    } catch (err) {
      exportBox.append(h('p', { class: 'research-error', role: 'alert' }, errorText(err)));
    }
  }

  el.replaceChildren(
    h(
      'div',
      { class: 'research' },
      h('h2', {}, 'Cohort builder'),
      h(
        'p',
        { class: 'research-intro' },
        'Counts come from de-identified copies of the data of patients whose consent permits research. Small counts are suppressed, released counts carry noise and are rounded, and near-identical queries are limited.',
      ),
      h(
        'form',
        { class: 'research-form', id: 'research-form', 'aria-label': 'Cohort builder', onsubmit: (e) => e.preventDefault() },
        demographics,
        h(
          'fieldset',
          { class: 'research-facts-box' },
          h('legend', {}, 'Coded facts, values and time windows'),
          field('Patients must have', match),
          factsBox,
          h('div', { class: 'research-add' }, field('New fact of kind', newKind), addFact),
        ),
        dims,
        canExport ? exportControls() : null,
        h('div', { class: 'research-actions' }, countBtn, breakdownBtn, exportBtn),
      ),
      h('h3', {}, 'Query sent'),
      problems,
      preview,
      repeats,
      result,
      canExport ? exportBox : null,
    ),
  );
  refresh();

  return () => {
    stopped = true;
    clearTimeout(timer);
    for (const u of blobURLs) URL.revokeObjectURL(u);
  };
}

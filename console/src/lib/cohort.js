// Cohort queries for the Researcher page: build the JSON the CohortService
// accepts (the query language of package cohort, `go doc ./cohort`) from the
// page's builder model, and read its answers (counts, breakdowns with
// suppressed cells, the repeats left, export progress and manifests).
//
// Pure: no DOM, no fetch. The builder is at least as strict as the server's
// parser (cohort.ParseQuery) for everything it can emit, so a query it builds
// is never refused as invalid; what it cannot build it reports as errors
// naming the builder field, before anything is sent.

/** Fact kinds of the query language, with what each can filter on. */
export const FACT_KINDS = [
  { kind: 'condition', label: 'Condition', resource: 'Condition' },
  { kind: 'observation', label: 'Observation', resource: 'Observation' },
  { kind: 'medication', label: 'Medication', resource: 'MedicationRequest' },
  { kind: 'encounter', label: 'Encounter', resource: 'Encounter' },
  { kind: 'procedure', label: 'Procedure', resource: 'Procedure' },
  { kind: 'immunization', label: 'Immunization', resource: 'Immunization' },
  { kind: 'report', label: 'Diagnostic report', resource: 'DiagnosticReport' },
];

/** Breakdown dimensions (cohort.Dimensions). */
export const DIMENSIONS = ['gender', 'ageBand', 'birthDecade', 'zip3', 'race', 'ethnicity', 'deceased'];

/** Administrative genders (FHIR). */
export const GENDERS = ['female', 'male', 'other', 'unknown'];

/** OMB race categories (us-core-race ombCategory). */
export const RACES = [
  { code: '1002-5', label: 'American Indian or Alaska Native' },
  { code: '2028-9', label: 'Asian' },
  { code: '2054-5', label: 'Black or African American' },
  { code: '2076-8', label: 'Native Hawaiian or Other Pacific Islander' },
  { code: '2106-3', label: 'White' },
];

/** OMB ethnicity categories (us-core-ethnicity ombCategory). */
export const ETHNICITIES = [
  { code: '2135-2', label: 'Hispanic or Latino' },
  { code: '2186-5', label: 'Not Hispanic or Latino' },
];

/** Short names for code systems a researcher types often. */
export const SYSTEM_ALIASES = {
  sct: 'http://snomed.info/sct',
  snomed: 'http://snomed.info/sct',
  loinc: 'http://loinc.org',
  rxnorm: 'http://www.nlm.nih.gov/research/umls/rxnorm',
  cvx: 'http://hl7.org/fhir/sid/cvx',
  icd10: 'http://hl7.org/fhir/sid/icd-10-cm',
};

// Limits of the server's parser (cohort/query.go).
const MAX_STRING_BYTES = 256;
const MAX_WINDOW_DAYS = 200 * 366;
const MAX_CRITERIA = 256;

/** A new, empty builder model: every patient, no breakdown. */
export function emptyModel() {
  return {
    gender: '',
    age: { min: '', max: '' },
    birthYear: { min: '', max: '' },
    zip3: '',
    race: '',
    ethnicity: '',
    deceased: '', // '', 'true' or 'false'
    match: 'all', // the facts: 'all' must hold, or 'any' of them
    facts: [],
    breakdown: [],
  };
}

/** A new fact of the given kind. */
export function emptyFact(kind = 'condition') {
  return {
    kind,
    exclude: false, // patients WITHOUT such a fact
    codes: '', // "system|code" (or alias:code), separated by spaces, commas or lines
    status: '',
    dateFrom: '', // YYYY-MM-DD, inclusive (shifted dates)
    dateTo: '',
    valueMin: '', // observation only
    valueMinOp: 'ge', // 'ge' or 'gt'
    valueMax: '',
    valueMaxOp: 'le', // 'le' or 'lt'
    unit: '',
    valueCodes: '',
    name: '', // "as": other facts' windows refer to it
    withinOf: '', // "within": the name of another fact
    withinFrom: '', // days after it (negative: before)
    withinTo: '',
  };
}

/**
 * parseCodes turns "sct|44054006, loinc:4548-4" into codings. Each entry is
 * system|code or alias:code (SYSTEM_ALIASES); errors name the entry's
 * position, never echoing the text.
 */
export function parseCodes(text) {
  const codings = [];
  const errors = [];
  const entries = String(text ?? '').split(/[\s,;]+/).filter((s) => s !== '');
  entries.forEach((entry, i) => {
    let system;
    let code;
    const bar = entry.indexOf('|');
    if (bar >= 0) {
      system = entry.slice(0, bar);
      code = entry.slice(bar + 1);
      if (Object.hasOwn(SYSTEM_ALIASES, system.toLowerCase())) system = SYSTEM_ALIASES[system.toLowerCase()];
    } else {
      const colon = entry.indexOf(':');
      const alias = colon > 0 ? entry.slice(0, colon).toLowerCase() : '';
      if (!Object.hasOwn(SYSTEM_ALIASES, alias)) {
        errors.push(`code ${i + 1}: write system|code or one of ${Object.keys(SYSTEM_ALIASES).join(', ')} then :code`);
        return;
      }
      system = SYSTEM_ALIASES[alias];
      code = entry.slice(colon + 1);
    }
    if (system === '' || code === '' || code.includes('|')) {
      errors.push(`code ${i + 1}: needs a system and a code`);
      return;
    }
    if (byteLength(system) > MAX_STRING_BYTES || byteLength(code) > MAX_STRING_BYTES) {
      errors.push(`code ${i + 1}: longer than ${MAX_STRING_BYTES} bytes`);
      return;
    }
    if (!codings.some((c) => c.system === system && c.code === code)) codings.push({ system, code });
  });
  return { codings, errors };
}

function byteLength(s) {
  return new TextEncoder().encode(s).length;
}

const WHOLE = /^-?\d{1,6}$/;
const DECIMAL = /^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d{1,3})?$/;
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const NAME = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;

function blank(v) {
  return v === undefined || v === null || String(v).trim() === '';
}

function validDate(s) {
  const m = DATE.exec(s);
  if (!m) return false;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (y < 1 || mo < 1 || mo > 12 || d < 1) return false;
  const t = new Date(Date.UTC(y, mo - 1, d));
  return t.getUTCMonth() === mo - 1 && t.getUTCDate() === d;
}

/**
 * buildQuery turns a builder model into a cohort query object.
 * Returns {query, errors}: query is null when errors is not empty. Each
 * error is {field, message}, field naming the builder's control
 * ("age", "facts[1].codes"...). With withBreakdown false, the model's
 * breakdown is left out (a count); with true, at least one dimension is
 * required.
 */
export function buildQuery(model, { withBreakdown = false } = {}) {
  const errors = [];
  const err = (field, message) => errors.push({ field, message });
  const demo = [];

  if (!blank(model.gender)) {
    if (!GENDERS.includes(model.gender)) err('gender', `choose one of ${GENDERS.join(', ')}`);
    else demo.push({ gender: model.gender });
  }
  for (const field of ['age', 'birthYear']) {
    const r = wholeRange(model[field], field, err, field === 'age' ? 0 : 1);
    if (r) demo.push({ [field]: r });
  }
  if (!blank(model.zip3)) {
    if (!/^\d{3}$/.test(model.zip3)) err('zip3', 'must be 3 digits');
    else demo.push({ zip3: model.zip3 });
  }
  if (!blank(model.race)) {
    if (!RACES.some((r) => r.code === model.race)) err('race', 'choose an OMB race category');
    else demo.push({ race: model.race });
  }
  if (!blank(model.ethnicity)) {
    if (!ETHNICITIES.some((r) => r.code === model.ethnicity)) err('ethnicity', 'choose an OMB ethnicity category');
    else demo.push({ ethnicity: model.ethnicity });
  }
  if (!blank(model.deceased)) {
    const d = String(model.deceased);
    if (d !== 'true' && d !== 'false') err('deceased', 'must be true or false');
    else demo.push({ deceased: d === 'true' });
  }

  const facts = model.facts ?? [];
  const names = new Map(); // name -> index
  facts.forEach((f, i) => {
    if (blank(f.name)) return;
    const name = String(f.name).trim();
    if (!NAME.test(name)) err(`facts[${i}].name`, 'a name is 1-64 letters, digits, _ or -, starting with a letter');
    else if (names.has(name)) err(`facts[${i}].name`, 'name already used');
    else if (f.exclude) err(`facts[${i}].name`, 'an excluded fact cannot be named (windows refer to facts a patient has)');
    else names.set(name, i);
  });
  const factCriteria = facts.map((f, i) => factCriterion(f, `facts[${i}]`, names, i, err));
  checkWindowLoops(facts, names, err);

  const match = model.match ?? 'all';
  if (match !== 'all' && match !== 'any') err('match', 'must be all or any');

  let breakdown;
  if (withBreakdown) {
    breakdown = [];
    (model.breakdown ?? []).forEach((d, i) => {
      if (!DIMENSIONS.includes(d)) err(`breakdown[${i}]`, 'unknown dimension');
      else if (breakdown.includes(d)) err(`breakdown[${i}]`, 'dimension repeated');
      else breakdown.push(d);
    });
    if (breakdown.length === 0) err('breakdown', 'choose at least one dimension to break down by');
  }
  if (errors.length > 0) return { query: null, errors };

  const list = [...demo];
  if (factCriteria.length > 0) {
    if (match === 'any' && factCriteria.length > 1) list.push({ any: factCriteria });
    else list.push(...factCriteria);
  }
  let criteria;
  if (list.length === 0) {
    // Every patient in the index: each is either deceased or not.
    criteria = { any: [{ deceased: true }, { deceased: false }] };
  } else if (list.length === 1) {
    criteria = list[0];
  } else {
    criteria = { all: list };
  }
  if (countCriteria(criteria) > MAX_CRITERIA) {
    return { query: null, errors: [{ field: 'facts', message: `more than ${MAX_CRITERIA} criteria` }] };
  }
  const query = { criteria };
  if (withBreakdown) query.breakdown = breakdown;
  return { query, errors: [] };
}

function countCriteria(c) {
  if (c.all) return 1 + c.all.reduce((n, x) => n + countCriteria(x), 0);
  if (c.any) return 1 + c.any.reduce((n, x) => n + countCriteria(x), 0);
  if (c.not) return 1 + countCriteria(c.not);
  return 1;
}

// wholeRange reads {min, max} (inclusive whole numbers) as {ge, le}.
function wholeRange(r, field, err, least) {
  if (!r || (blank(r.min) && blank(r.max))) return null;
  const out = {};
  let ok = true;
  for (const [end, op] of [['min', 'ge'], ['max', 'le']]) {
    if (blank(r[end])) continue;
    const s = String(r[end]).trim();
    if (!WHOLE.test(s) || Number(s) < least) {
      err(`${field}.${end}`, `must be a whole number of at most 6 digits, ${least} or more`);
      ok = false;
      continue;
    }
    out[op] = Number(s);
  }
  if (ok && out.ge !== undefined && out.le !== undefined && out.ge > out.le) {
    err(field, 'the minimum is above the maximum');
    ok = false;
  }
  return ok ? out : null;
}

function factCriterion(f, path, names, index, err) {
  const kind = FACT_KINDS.find((k) => k.kind === f.kind);
  if (!kind) {
    err(`${path}.kind`, 'unknown kind of fact');
    return null;
  }
  const spec = {};
  if (!blank(f.codes)) {
    const { codings, errors } = parseCodes(f.codes);
    errors.forEach((m) => err(`${path}.codes`, m));
    if (codings.length > 0) spec.code = codings;
  }
  const obs = f.kind === 'observation';
  if (obs) {
    const value = {};
    for (const [field, opField, allowed] of [
      ['valueMin', 'valueMinOp', ['ge', 'gt']],
      ['valueMax', 'valueMaxOp', ['le', 'lt']],
    ]) {
      if (blank(f[field])) continue;
      const s = String(f[field]).trim();
      const op = f[opField] ?? allowed[0];
      if (!allowed.includes(op)) err(`${path}.${opField}`, `must be ${allowed.join(' or ')}`);
      else if (!DECIMAL.test(s) || !Number.isFinite(Number(s))) err(`${path}.${field}`, 'must be a number');
      else value[op] = Number(s);
    }
    const lo = value.ge ?? value.gt;
    const hi = value.le ?? value.lt;
    if (lo !== undefined && hi !== undefined && lo > hi) err(`${path}.value`, 'the minimum is above the maximum');
    if (Object.keys(value).length > 0) spec.value = value;
    if (!blank(f.unit)) {
      const u = String(f.unit).trim();
      if (byteLength(u) > MAX_STRING_BYTES) err(`${path}.unit`, `longer than ${MAX_STRING_BYTES} bytes`);
      else spec.unit = u;
    }
    if (!blank(f.valueCodes)) {
      const { codings, errors } = parseCodes(f.valueCodes);
      errors.forEach((m) => err(`${path}.valueCodes`, m));
      if (codings.length > 0) spec.valueCode = codings;
    }
  } else {
    for (const field of ['valueMin', 'valueMax', 'unit', 'valueCodes']) {
      if (!blank(f[field])) err(`${path}.${field}`, 'values and units apply to observations only');
    }
  }
  if (!blank(f.status)) {
    const s = String(f.status).trim();
    if (byteLength(s) > MAX_STRING_BYTES) err(`${path}.status`, `longer than ${MAX_STRING_BYTES} bytes`);
    else spec.status = s;
  }
  const date = {};
  for (const [field, op] of [['dateFrom', 'ge'], ['dateTo', 'le']]) {
    if (blank(f[field])) continue;
    const s = String(f[field]).trim();
    if (!validDate(s)) err(`${path}.${field}`, 'must be a date YYYY-MM-DD');
    else date[op] = s;
  }
  if (date.ge && date.le && date.ge > date.le) err(`${path}.date`, 'the start is after the end');
  if (Object.keys(date).length > 0) spec.date = date;

  const c = { [f.kind]: spec };
  if (!blank(f.name) && names.get(String(f.name).trim()) === index) c.as = String(f.name).trim();
  if (!blank(f.withinOf)) {
    const of = String(f.withinOf).trim();
    if (!names.has(of)) err(`${path}.withinOf`, 'names no fact of this query (give that fact a name)');
    else if (names.get(of) === index) err(`${path}.withinOf`, 'a fact cannot be dated relative to itself');
    else {
      const within = { of };
      for (const [field, end] of [['withinFrom', 'from'], ['withinTo', 'to']]) {
        if (blank(f[field])) continue;
        const s = String(f[field]).trim();
        if (!/^-?\d{1,5}$/.test(s) || Math.abs(Number(s)) > MAX_WINDOW_DAYS) {
          err(`${path}.${field}`, `must be a whole number of days within ±${MAX_WINDOW_DAYS}`);
        } else within[end] = { days: Number(s) };
      }
      if (within.from && within.to && within.from.days > within.to.days) err(`${path}.within`, 'from is after to');
      c.within = within;
    }
  } else if (!blank(f.withinFrom) || !blank(f.withinTo)) {
    err(`${path}.withinOf`, 'a window needs the fact it is relative to');
  }
  return f.exclude ? { not: c } : c;
}

// checkWindowLoops rejects facts whose windows refer to each other in a loop.
function checkWindowLoops(facts, names, err) {
  facts.forEach((f, i) => {
    const seen = new Set([i]);
    let j = i;
    for (;;) {
      const of = blank(facts[j].withinOf) ? '' : String(facts[j].withinOf).trim();
      if (!names.has(of)) return;
      if (names.get(of) === j) return; // relative to itself: reported by factCriterion
      j = names.get(of);
      if (seen.has(j)) {
        if (j === i) err(`facts[${i}].withinOf`, 'windows refer to each other in a loop');
        return;
      }
      seen.add(j);
    }
  });
}

/** queryText is the exact text the page shows and sends. */
export function queryText(query) {
  return JSON.stringify(query, null, 2);
}

/** exportRequest is the body of POST /v1/cohorts:export. */
export function exportRequest(query, types = []) {
  const body = { criteria: query.criteria };
  const list = [...new Set(types)];
  for (const t of list) {
    if (!/^[A-Z][A-Za-z]{1,63}$/.test(t)) throw new Error('a resource type is not valid');
  }
  if (list.length > 0) body.type = list;
  return body;
}

// ---- Answers -------------------------------------------------------------

/**
 * release reads one released count (cohort.Released):
 * {count, suppressed, reason, threshold, noise, roundedTo, text}.
 * reason is "overlap" (it differs from an earlier release by a few
 * patients), "small" (fewer than threshold, or the complement of such a
 * cell: the server does not say which) or "" when released.
 */
export function release(r) {
  if (!r || typeof r !== 'object') throw new Error('malformed cohort answer: a count is not an object');
  if (r.suppressed === true) {
    const threshold = Number.isInteger(r.threshold) ? r.threshold : null;
    const reason = r.reason === 'overlap' ? 'overlap' : 'small';
    const text =
      reason === 'overlap'
        ? `suppressed: within ${threshold ?? 'a few'} patients of an earlier release`
        : `suppressed: under ${threshold ?? 'the threshold'}, or hides a cell that is`;
    return { count: null, suppressed: true, reason, threshold, noise: '', roundedTo: 1, text };
  }
  if (!Number.isInteger(r.count) || r.count < 0) throw new Error('malformed cohort answer: a count is missing');
  const noise = typeof r.noise === 'string' ? r.noise : '';
  const roundedTo = Number.isInteger(r.roundedTo) && r.roundedTo > 1 ? r.roundedTo : 1;
  const notes = [];
  if (noise) notes.push(`${noise} noise`);
  if (roundedTo > 1) notes.push(`rounded to ${roundedTo}`);
  const text = notes.length ? `${r.count} (${notes.join(', ')})` : String(r.count);
  return { count: r.count, suppressed: false, reason: '', threshold: null, noise, roundedTo, text };
}

function meta(a) {
  if (!a || typeof a !== 'object' || !a.result || typeof a.result !== 'object') {
    throw new Error('malformed cohort answer');
  }
  return {
    decision: Number.isInteger(a.decision) ? a.decision : null,
    released: typeof a.released === 'string' ? a.released : '',
    policyVersion: Number.isInteger(a.policyVersion) ? a.policyVersion : null,
    repeatsLeft: Number.isInteger(a.repeatsLeft) ? a.repeatsLeft : null,
  };
}

/** parseCount reads the answer of POST /v1/cohorts:count. */
export function parseCount(a) {
  return { kind: 'count', ...meta(a), total: release(a.result) };
}

/**
 * parseBreakdown reads the answer of POST /v1/cohorts:breakdown: the
 * dimensions, the total and the cells, each cell with its values, a label
 * and its release, sorted in the natural order of its values.
 */
export function parseBreakdown(a) {
  const m = meta(a);
  const res = a.result;
  if (!Array.isArray(res.breakdown) || !Array.isArray(res.cells)) throw new Error('malformed cohort answer: no cells');
  const dims = res.breakdown.map(String);
  const cells = res.cells.map((c) => {
    if (!c || typeof c.values !== 'object' || c.values === null) throw new Error('malformed cohort answer: a cell has no values');
    const values = {};
    for (const d of dims) values[d] = typeof c.values[d] === 'string' ? c.values[d] : 'unknown';
    return { values, label: dims.map((d) => valueLabel(d, values[d])).join(' · '), ...release(c) };
  });
  cells.sort((x, y) => {
    for (const d of dims) {
      const k = compareValues(d, x.values[d], y.values[d]);
      if (k !== 0) return k;
    }
    return 0;
  });
  return {
    kind: 'breakdown',
    ...m,
    dimensions: dims,
    total: release(res.total),
    cells,
    suppressed: cells.filter((c) => c.suppressed).length,
  };
}

/** valueLabel is a readable label of a dimension value. */
export function valueLabel(dim, v) {
  if (dim === 'race') return RACES.find((r) => r.code === v)?.label ?? v;
  if (dim === 'ethnicity') return ETHNICITIES.find((r) => r.code === v)?.label ?? v;
  if (dim === 'deceased') return v === 'true' ? 'deceased' : v === 'false' ? 'alive' : v;
  return v;
}

// compareValues orders the values of a dimension: numbers by their value
// (age bands, decades), "unknown" last, otherwise alphabetically.
export function compareValues(dim, a, b) {
  if (a === b) return 0;
  if (a === 'unknown') return 1;
  if (b === 'unknown') return -1;
  const na = parseInt(a, 10);
  const nb = parseInt(b, 10);
  if ((dim === 'ageBand' || dim === 'birthDecade') && !Number.isNaN(na) && !Number.isNaN(nb) && na !== nb) return na - nb;
  return a < b ? -1 : 1;
}

/**
 * chartSeries arranges a parsed breakdown for a grouped bar chart: one group
 * per value of the first dimension, one series per combination of the
 * others (a single series "count" for one dimension).
 */
export function chartSeries(b) {
  const [first, ...rest] = b.dimensions;
  const groups = [];
  const series = [];
  for (const c of b.cells) {
    const g = c.values[first];
    if (!groups.includes(g)) groups.push(g);
    const s = rest.length ? rest.map((d) => valueLabel(d, c.values[d])).join(' · ') : 'count';
    if (!series.includes(s)) series.push(s);
  }
  const bars = b.cells.map((c) => ({
    group: groups.indexOf(c.values[first]),
    series: rest.length ? series.indexOf(rest.map((d) => valueLabel(d, c.values[d])).join(' · ')) : 0,
    cell: c,
  }));
  return { dimension: first, groups: groups.map((g) => valueLabel(first, g)), series, bars };
}

/**
 * barLayout computes the geometry of a grouped bar chart (pure numbers, so
 * it is testable): width and height of the plot, the y ticks, and for each
 * bar its x, y, width and height. A suppressed bar gets a fixed stub height
 * (it has no count) and is drawn hatched with its text.
 */
export function barLayout(chart, { width = 640, height = 260, margin: m = { top: 16, right: 16, bottom: 56, left: 48 } } = {}) {
  // Group labels that do not fit under their group are slanted, and the
  // plot leaves them room (about 6.5 px per character at 11 px).
  const groupWidth = (width - m.left - m.right) / Math.max(1, chart.groups.length);
  const longest = Math.max(0, ...chart.groups.map((g) => String(g).length));
  const slant = longest * 6.5 > groupWidth * 0.95;
  const margin = slant ? { ...m, bottom: Math.max(m.bottom, Math.min(160, 24 + longest * 4.6)) } : m;
  height += margin.bottom - m.bottom;
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const max = Math.max(1, ...chart.bars.map((b) => b.cell.count ?? 0));
  const step = niceStep(max / 4);
  const top = Math.ceil(max / step) * step;
  const ticks = [];
  for (let v = 0; v <= top + step / 2; v += step) ticks.push({ value: v, y: margin.top + plotH - (v / top) * plotH });
  const nGroups = Math.max(1, chart.groups.length);
  const nSeries = Math.max(1, chart.series.length);
  const groupW = plotW / nGroups;
  const barW = Math.max(4, (groupW * 0.8) / nSeries);
  const stub = Math.min(plotH * 0.12, 24);
  const bars = chart.bars.map((b) => {
    const x = margin.left + b.group * groupW + groupW * 0.1 + b.series * barW;
    const h = b.cell.suppressed ? stub : (b.cell.count / top) * plotH;
    return { ...b, x, width: barW - 1, y: margin.top + plotH - h, height: h };
  });
  const groupLabels = chart.groups.map((g, i) => ({
    text: g,
    x: margin.left + i * groupW + groupW / 2,
    y: margin.top + plotH + 16,
    slant,
  }));
  return { width, height, margin, plotW, plotH, top, ticks, bars, groupLabels };
}

function niceStep(x) {
  if (x <= 1) return 1;
  const p = 10 ** Math.floor(Math.log10(x));
  for (const m of [1, 2, 5, 10]) if (m * p >= x) return m * p;
  return 10 * p;
}

// ---- Exports -------------------------------------------------------------

const EXPORT_PATH = /\/v1\/cohorts\/exports\/([0-9a-f]{32})$/;

/** exportID reads the export id from the kick-off's Content-Location. */
export function exportID(contentLocation) {
  const m = EXPORT_PATH.exec(String(contentLocation ?? '').replace(/[?#].*$/, ''));
  if (!m) throw new Error('the export answer has no status URL');
  return m[1];
}

/** statusPath is the same-origin path of an export's status. */
export function statusPath(id) {
  if (!/^[0-9a-f]{32}$/.test(id)) throw new Error('not an export id');
  return `/v1/cohorts/exports/${id}`;
}

/**
 * progress reads X-Progress ("queued", "selecting patients", "3 of 12
 * patients", ...): {text, fraction} with fraction null when unknown.
 */
export function progress(header) {
  const text = String(header ?? '').slice(0, 200) || 'in progress';
  const m = /^(\d+) of (\d+) patients$/.exec(text);
  let fraction = null;
  if (m && Number(m[2]) > 0) fraction = Math.min(1, Number(m[1]) / Number(m[2]));
  return { text, fraction };
}

/**
 * parseManifest reads a finished export's manifest. Each file gets the
 * same-origin path it is fetched from (built from the export id and the
 * file's type, never taken from the manifest's URL, so the bearer token
 * goes nowhere else); a manifest URL that is not that path is refused.
 */
export function parseManifest(m, id) {
  if (!m || typeof m !== 'object' || !Array.isArray(m.output)) throw new Error('malformed export manifest');
  const base = statusPath(id);
  const files = m.output.map((o) => {
    if (!o || typeof o.type !== 'string' || !/^[A-Z][A-Za-z]{1,63}$/.test(o.type)) throw new Error('malformed export manifest: a file has no type');
    const name = `${o.type}.ndjson`;
    const path = `${base}/files/${name}`;
    let urlPath;
    try {
      urlPath = new URL(String(o.url), 'http://same.invalid').pathname;
    } catch {
      urlPath = '';
    }
    if (!urlPath.endsWith(path)) throw new Error('export manifest names a file elsewhere');
    return {
      type: o.type,
      name,
      path,
      count: Number.isInteger(o.count) ? o.count : null,
      sha256: typeof o.sha256 === 'string' && /^[0-9a-f]{64}$/.test(o.sha256) ? o.sha256 : '',
    };
  });
  const ext = m.extension && typeof m.extension === 'object' ? m.extension : {};
  return {
    transactionTime: typeof m.transactionTime === 'string' ? m.transactionTime : '',
    files,
    errors: Array.isArray(m.error) ? m.error.length : 0,
    decision: Number.isInteger(ext.decision) ? ext.decision : null,
    released: typeof ext.released === 'string' ? ext.released : '',
    patients: Number.isInteger(ext.patients) ? ext.patients : null,
  };
}

/** sha256Hex digests bytes with WebCrypto. */
export async function sha256Hex(bytes) {
  const d = new Uint8Array(await globalThis.crypto.subtle.digest('SHA-256', bytes));
  return Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * ndjsonSummary counts the lines of an NDJSON file and checks each is a
 * JSON object of the expected resource type: {lines, ok}.
 */
export function ndjsonSummary(text, type) {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  let ok = true;
  for (const l of lines) {
    try {
      const r = JSON.parse(l);
      if (!r || r.resourceType !== type) ok = false;
    } catch {
      ok = false;
    }
  }
  return { lines: lines.length, ok };
}

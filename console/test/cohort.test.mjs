// Unit tests of src/lib/cohort.js: node --test console/test/cohort.test.mjs
// (TestNodeUnit in console/console_test.go runs every test/*.test.mjs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  barLayout,
  buildQuery,
  chartSeries,
  emptyFact,
  emptyModel,
  exportID,
  exportRequest,
  ndjsonSummary,
  parseBreakdown,
  parseCodes,
  parseCount,
  parseManifest,
  progress,
  queryText,
  release,
  sha256Hex,
  statusPath,
} from '../src/lib/cohort.js';
import { models } from './cohort_models.mjs';

const SCT = 'http://snomed.info/sct';
const LOINC = 'http://loinc.org';

function model(patch) {
  return { ...emptyModel(), ...patch };
}
function fact(kind, patch) {
  return { ...emptyFact(kind), ...patch };
}
function build(m, opts) {
  const r = buildQuery(m, opts);
  assert.deepEqual(r.errors, [], 'unexpected builder errors');
  return r.query;
}
function fields(m, opts) {
  const r = buildQuery(m, opts);
  assert.equal(r.query, null, 'a model with errors builds no query');
  return r.errors.map((e) => e.field);
}

test('an empty model counts every patient', () => {
  assert.deepEqual(build(emptyModel()), { criteria: { any: [{ deceased: true }, { deceased: false }] } });
});

test('demographics become patient tests, ranges inclusive', () => {
  const q = build(
    model({ gender: 'female', age: { min: '18', max: '65' }, birthYear: { min: '1950' }, zip3: '021', race: '2106-3', ethnicity: '2186-5', deceased: 'false' }),
  );
  assert.deepEqual(q, {
    criteria: {
      all: [
        { gender: 'female' },
        { age: { ge: 18, le: 65 } },
        { birthYear: { ge: 1950 } },
        { zip3: '021' },
        { race: '2106-3' },
        { ethnicity: '2186-5' },
        { deceased: false },
      ],
    },
  });
});

test('one criterion is the query itself, not a list of one', () => {
  assert.deepEqual(build(model({ gender: 'male' })), { criteria: { gender: 'male' } });
});

test('the exact example of the cohort package documentation', () => {
  // go doc ./cohort: women 18+, diabetes as dx, HbA1c > 6.5 % within a year
  // of it, and no metformin.
  const q = build(
    model({
      gender: 'female',
      age: { min: '18' },
      facts: [
        fact('condition', { codes: 'sct:44054006', name: 'dx' }),
        fact('observation', { codes: 'loinc:4548-4', valueMin: '6.5', valueMinOp: 'gt', unit: '%', withinOf: 'dx', withinFrom: '0', withinTo: '365' }),
        fact('medication', { codes: 'rxnorm:860975', exclude: true }),
      ],
      breakdown: ['gender', 'ageBand'],
    }),
    { withBreakdown: true },
  );
  assert.deepEqual(q, {
    criteria: {
      all: [
        { gender: 'female' },
        { age: { ge: 18 } },
        { condition: { code: [{ system: SCT, code: '44054006' }] }, as: 'dx' },
        {
          observation: { code: [{ system: LOINC, code: '4548-4' }], value: { gt: 6.5 }, unit: '%' },
          within: { of: 'dx', from: { days: 0 }, to: { days: 365 } },
        },
        { not: { medication: { code: [{ system: 'http://www.nlm.nih.gov/research/umls/rxnorm', code: '860975' }] } } },
      ],
    },
    breakdown: ['gender', 'ageBand'],
  });
});

test('facts combined with any sit in their own list beside the demographics', () => {
  const q = build(model({ gender: 'male', match: 'any', facts: [fact('procedure', {}), fact('immunization', { codes: 'cvx:140' })] }));
  assert.deepEqual(q.criteria, {
    all: [{ gender: 'male' }, { any: [{ procedure: {} }, { immunization: { code: [{ system: 'http://hl7.org/fhir/sid/cvx', code: '140' }] } }] }],
  });
});

test('time windows: absolute dates inclusive, statuses kept', () => {
  const q = build(model({ facts: [fact('condition', { codes: 'sct:1', status: 'active', dateFrom: '2010-01-01', dateTo: '2010-12-31' })] }));
  assert.deepEqual(q.criteria, { condition: { code: [{ system: SCT, code: '1' }], status: 'active', date: { ge: '2010-01-01', le: '2010-12-31' } } });
});

test('codes: system|code, aliases, duplicates dropped, errors never echo the text', () => {
  const { codings, errors } = parseCodes(`http://x.org|a sct:1\nSCT|1 loinc:2, loinc:2`);
  assert.deepEqual(codings, [
    { system: 'http://x.org', code: 'a' },
    { system: SCT, code: '1' },
    { system: LOINC, code: '2' },
  ]);
  assert.deepEqual(errors, []);
  const bad = parseCodes('John-Smith-123456789 |x y| a|b|c');
  assert.equal(bad.errors.length, 4);
  for (const e of bad.errors) assert.ok(!/John|Smith|123456789/.test(e), 'an error quotes the input');
});

test('the builder refuses what the server would refuse', () => {
  assert.deepEqual(fields(model({ gender: 'woman' })), ['gender']);
  assert.deepEqual(fields(model({ age: { min: '18.5' } })), ['age.min']);
  assert.deepEqual(fields(model({ age: { min: '-1' } })), ['age.min']);
  assert.deepEqual(fields(model({ birthYear: { min: '1234567' } })), ['birthYear.min']);
  assert.deepEqual(fields(model({ age: { min: '60', max: '20' } })), ['age']);
  assert.deepEqual(fields(model({ zip3: '02' })), ['zip3']);
  assert.deepEqual(fields(model({ race: 'white' })), ['race']);
  assert.deepEqual(fields(model({ facts: [fact('condition', { valueMin: '3' })] })), ['facts[0].valueMin']);
  assert.deepEqual(fields(model({ facts: [fact('observation', { valueMin: 'abc' })] })), ['facts[0].valueMin']);
  assert.deepEqual(fields(model({ facts: [fact('observation', { valueMin: '5', valueMax: '4' })] })), ['facts[0].value']);
  assert.deepEqual(fields(model({ facts: [fact('observation', { valueMinOp: 'lt', valueMin: '4' })] })), ['facts[0].valueMinOp']);
  assert.deepEqual(fields(model({ facts: [fact('condition', { dateFrom: '2010-02-30' })] })), ['facts[0].dateFrom']);
  assert.deepEqual(fields(model({ facts: [fact('condition', { dateFrom: '2011-01-01', dateTo: '2010-01-01' })] })), ['facts[0].date']);
  assert.deepEqual(fields(model({ facts: [fact('condition', { codes: 'nosystem' })] })), ['facts[0].codes']);
  assert.deepEqual(fields(model({ facts: [fact('condition', { unit: 'x'.repeat(300) })] })), ['facts[0].unit']);
  assert.deepEqual(fields(model({ facts: [fact('observation', { unit: 'é'.repeat(129) })] })), ['facts[0].unit'], 'bytes, not characters');
  assert.deepEqual(fields(model({ facts: [fact('condition', { name: '1dx' })] })), ['facts[0].name']);
  assert.deepEqual(fields(model({ facts: [fact('condition', { name: 'a' }), fact('condition', { name: 'a' })] })), ['facts[1].name']);
  assert.deepEqual(fields(model({ facts: [fact('condition', { name: 'a', exclude: true }), fact('report', { withinOf: 'a' })] })), [
    'facts[0].name',
    'facts[1].withinOf',
  ]);
  assert.deepEqual(fields(model({ facts: [fact('condition', { withinOf: 'nobody' })] })), ['facts[0].withinOf']);
  assert.deepEqual(fields(model({ facts: [fact('condition', { name: 'me', withinOf: 'me' })] })), ['facts[0].withinOf']);
  assert.deepEqual(fields(model({ facts: [fact('condition', { withinFrom: '3' })] })), ['facts[0].withinOf']);
  assert.deepEqual(
    fields(model({ facts: [fact('condition', { name: 'a' }), fact('report', { name: 'b', withinOf: 'a', withinFrom: '9', withinTo: '1' })] })),
    ['facts[1].within'],
  );
  assert.deepEqual(fields(model({ facts: [fact('condition', { name: 'a' }), fact('report', { withinOf: 'a', withinTo: '99999' })] })), ['facts[1].withinTo']);
  assert.deepEqual(
    fields(model({ facts: [fact('condition', { name: 'a', withinOf: 'b' }), fact('report', { name: 'b', withinOf: 'a' })] })).sort(),
    ['facts[0].withinOf', 'facts[1].withinOf'],
  );
  assert.deepEqual(fields(model({ facts: [fact('allergy', {})] })), ['facts[0].kind']);
  assert.deepEqual(fields(model({ match: 'some' })), ['match']);
  assert.deepEqual(fields(model({}), { withBreakdown: true }), ['breakdown']);
  assert.deepEqual(fields(model({ breakdown: ['gender', 'gender'] }), { withBreakdown: true }), ['breakdown[1]']);
  assert.deepEqual(fields(model({ breakdown: ['name'] }), { withBreakdown: true }), ['breakdown[0]', 'breakdown']);
});

test('every common model builds, count and breakdown, and the text shown is the query', () => {
  for (const [name, m] of Object.entries(models)) {
    const count = buildQuery(m);
    assert.deepEqual(count.errors, [], name);
    assert.ok(!('breakdown' in count.query), `${name}: a count carries no breakdown`);
    assert.deepEqual(JSON.parse(queryText(count.query)), count.query);
    if (m.breakdown.length) {
      const b = buildQuery(m, { withBreakdown: true });
      assert.deepEqual(b.errors, [], name);
      assert.deepEqual(b.query.breakdown, m.breakdown);
      assert.deepEqual(b.query.criteria, count.query.criteria, `${name}: the breakdown asks about the same patients`);
    }
  }
});

test('releases: counts, suppressed cells and overlap, with their texts', () => {
  assert.deepEqual(release({ count: 15, noise: 'gaussian', roundedTo: 5 }), {
    count: 15, suppressed: false, reason: '', threshold: null, noise: 'gaussian', roundedTo: 5, text: '15 (gaussian noise, rounded to 5)',
  });
  assert.equal(release({ count: 0 }).text, '0');
  const small = release({ suppressed: true, threshold: 11 });
  assert.equal(small.count, null);
  assert.equal(small.reason, 'small');
  assert.match(small.text, /suppressed: under 11/);
  const overlap = release({ suppressed: true, threshold: 11, reason: 'overlap' });
  assert.equal(overlap.reason, 'overlap');
  assert.match(overlap.text, /earlier release/);
  assert.throws(() => release({}), /count is missing/);
  assert.throws(() => release({ count: -1 }));
  assert.throws(() => release(null));
});

test('a count answer with the repeats left', () => {
  const a = parseCount({ result: { count: 40, noise: 'gaussian', roundedTo: 5 }, decision: 9, released: 'ab', policyVersion: 1, repeatsLeft: 6 });
  assert.equal(a.total.count, 40);
  assert.equal(a.repeatsLeft, 6);
  assert.equal(a.decision, 9);
  assert.equal(parseCount({ result: { suppressed: true, threshold: 11 } }).repeatsLeft, null, 'an older server says nothing');
  assert.throws(() => parseCount({}), /malformed/);
});

const breakdownAnswer = {
  result: {
    breakdown: ['ageBand', 'gender'],
    total: { count: 60, noise: 'gaussian', roundedTo: 5 },
    cells: [
      { values: { ageBand: '90+', gender: 'male' }, suppressed: true, threshold: 11 },
      { values: { ageBand: '10-19', gender: 'female' }, count: 15, noise: 'gaussian', roundedTo: 5 },
      { values: { ageBand: '0-9', gender: 'male' }, count: 20, noise: 'gaussian', roundedTo: 5 },
      { values: { ageBand: 'unknown', gender: 'female' }, suppressed: true, threshold: 11, reason: 'overlap' },
      { values: { ageBand: '0-9', gender: 'female' }, count: 0 },
    ],
  },
  decision: 12,
  released: 'cd',
  policyVersion: 1,
  repeatsLeft: 0,
};

test('a breakdown answer: cells in natural order, suppressed ones counted', () => {
  const b = parseBreakdown(breakdownAnswer);
  assert.deepEqual(b.dimensions, ['ageBand', 'gender']);
  assert.deepEqual(
    b.cells.map((c) => c.label),
    ['0-9 · female', '0-9 · male', '10-19 · female', '90+ · male', 'unknown · female'],
  );
  assert.equal(b.suppressed, 2);
  assert.equal(b.repeatsLeft, 0);
  assert.equal(b.total.count, 60);
  assert.throws(() => parseBreakdown({ result: { breakdown: ['gender'] } }), /no cells/);
});

test('chart series and bar geometry: every cell a bar, suppressed ones as stubs', () => {
  const b = parseBreakdown(breakdownAnswer);
  const chart = chartSeries(b);
  assert.equal(chart.dimension, 'ageBand');
  assert.deepEqual(chart.groups, ['0-9', '10-19', '90+', 'unknown']);
  assert.deepEqual(chart.series, ['female', 'male']);
  assert.equal(chart.bars.length, 5);
  const layout = barLayout(chart, { width: 400, height: 200 });
  assert.equal(layout.bars.length, 5);
  const baseline = layout.margin.top + layout.plotH;
  for (const bar of layout.bars) {
    assert.ok(Math.abs(bar.y + bar.height - baseline) < 1e-9, 'bars stand on the baseline');
    assert.ok(bar.x >= layout.margin.left && bar.x + bar.width <= layout.width - layout.margin.right + 1e-9, 'bars inside the plot');
    if (bar.cell.suppressed) assert.ok(bar.height > 0, 'a suppressed cell is drawn');
  }
  const twenty = layout.bars.find((x) => x.cell.count === 20);
  const fifteen = layout.bars.find((x) => x.cell.count === 15);
  assert.ok(Math.abs(twenty.height / fifteen.height - 20 / 15) < 1e-9, 'heights proportional to counts');
  assert.ok(layout.top >= 20 && layout.ticks.at(-1).value === layout.top);
  assert.ok(layout.groupLabels.every((g) => !g.slant), 'short labels stand upright');
  const long = barLayout({ ...chart, groups: chart.groups.map((g) => `${g} Native Hawaiian or Other Pacific Islander`) }, { width: 400, height: 200 });
  assert.ok(long.groupLabels.every((g) => g.slant), 'long labels are slanted');
  assert.ok(long.height > 200 && long.plotH === layout.plotH, 'and get room of their own below the plot');
  const one = chartSeries(parseBreakdown({ result: { breakdown: ['gender'], total: { count: 5 }, cells: [{ values: { gender: 'male' }, count: 5 }] } }));
  assert.deepEqual(one.series, ['count']);
});

test('export: request body, id from Content-Location, progress, manifest', () => {
  const q = build(model({ gender: 'female' }));
  assert.deepEqual(exportRequest(q, ['Patient', 'Condition', 'Patient']), { criteria: { gender: 'female' }, type: ['Patient', 'Condition'] });
  assert.deepEqual(exportRequest(q), { criteria: { gender: 'female' } });
  assert.throws(() => exportRequest(q, ['../x']));

  const id = '0123456789abcdef0123456789abcdef';
  assert.equal(exportID(`http://127.0.0.1:8080/v1/cohorts/exports/${id}`), id);
  assert.equal(exportID(`/v1/cohorts/exports/${id}`), id);
  assert.throws(() => exportID('/v1/cohorts/exports/../../x'));
  assert.throws(() => exportID(null));
  assert.throws(() => statusPath('x/../y'));

  assert.deepEqual(progress('3 of 12 patients'), { text: '3 of 12 patients', fraction: 0.25 });
  assert.deepEqual(progress('queued'), { text: 'queued', fraction: null });
  assert.deepEqual(progress(null), { text: 'in progress', fraction: null });

  const sum = 'a'.repeat(64);
  const m = parseManifest(
    {
      transactionTime: '2026-01-01T00:00:00Z',
      output: [{ type: 'Condition', url: `http://127.0.0.1:1/v1/cohorts/exports/${id}/files/Condition.ndjson`, count: 3, sha256: sum }],
      error: [],
      extension: { decision: 7, released: 'ff', patients: 2 },
    },
    id,
  );
  assert.deepEqual(m.files, [{ type: 'Condition', name: 'Condition.ndjson', path: `/v1/cohorts/exports/${id}/files/Condition.ndjson`, count: 3, sha256: sum }]);
  assert.equal(m.patients, 2);
  assert.equal(m.decision, 7);
  assert.throws(
    () => parseManifest({ output: [{ type: 'Condition', url: 'http://evil.example/steal' }] }, id),
    /elsewhere/,
    'a file URL that is not the export\'s own is refused',
  );
  assert.throws(() => parseManifest({ output: [{ type: '../x', url: '' }] }, id));
  assert.throws(() => parseManifest({}, id));
});

test('sha256Hex agrees with node:crypto; ndjsonSummary checks types', async () => {
  const bytes = new TextEncoder().encode('{"resourceType":"Patient"}\n{"resourceType":"Patient"}\n');
  assert.equal(await sha256Hex(bytes), createHash('sha256').update(bytes).digest('hex'));
  assert.deepEqual(ndjsonSummary(new TextDecoder().decode(bytes), 'Patient'), { lines: 2, ok: true });
  assert.deepEqual(ndjsonSummary('{"resourceType":"Condition"}\nnot json\n', 'Condition'), { lines: 2, ok: false });
  assert.deepEqual(ndjsonSummary('{"resourceType":"Condition"}\n', 'Patient'), { lines: 1, ok: false });
});

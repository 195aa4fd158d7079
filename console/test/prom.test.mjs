// Unit tests of src/lib/prom.js over text as client_golang writes it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse, rate, sum } from '../src/lib/prom.js';

const text = `# HELP fhiranchor_resources_ingested_total Resource versions stored.
# TYPE fhiranchor_resources_ingested_total counter
fhiranchor_resources_ingested_total{type="Observation"} 120
fhiranchor_resources_ingested_total{type="Patient"} 3
fhiranchor_anchor_last_age_seconds 4.5
fhiranchor_request_duration_seconds_bucket{method="/x.Y/Z",le="+Inf"} 7
odd{a="q\\"uote",b="back\\\\slash",c="new\\nline"} 1e3 1700000000000
`;

test('parse reads names, labels with escapes and values', () => {
  const s = parse(text);
  assert.equal(s.length, 5);
  assert.deepEqual(s[0], { name: 'fhiranchor_resources_ingested_total', labels: { type: 'Observation' }, value: 120 });
  assert.equal(s[2].value, 4.5);
  assert.equal(s[3].labels.le, '+Inf');
  assert.deepEqual(s[4].labels, { a: 'q"uote', b: 'back\\slash', c: 'new\nline' });
  assert.equal(s[4].value, 1000);
});

test('parse refuses what is not the text format', () => {
  assert.throws(() => parse('{oops} 1'));
  assert.throws(() => parse('x{a="1} 2'));
  assert.throws(() => parse('x notanumber'));
});

test('sum and rate', () => {
  const s = parse(text);
  assert.equal(sum(s, 'fhiranchor_resources_ingested_total'), 123);
  assert.equal(sum(s, 'fhiranchor_resources_ingested_total', { type: 'Patient' }), 3);
  assert.equal(sum(s, 'missing'), undefined);
  assert.equal(rate({ value: 100, at: 0 }, { value: 150, at: 2000 }), 25);
  assert.equal(rate({ value: 100, at: 0 }, { value: 10, at: 1000 }), 10); // restarted
  assert.equal(rate(undefined, { value: 1, at: 1 }), undefined);
});

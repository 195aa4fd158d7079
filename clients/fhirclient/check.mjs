// Interop check: drives a running fhiranchor server's FHIR search with
// fhirclient, SMART on FHIR's JavaScript client (npm, pinned; none of us
// wrote it), through its node entry, and checks every answer against the
// input Bundles and against direct requests.
//
//   FHIR_BASE=http://127.0.0.1:8080/fhir/r4 FHIR_TOKEN=$(fhiranchor token) node check.mjs
//
// One line per check: "ok  <name>" or "FAIL <name>: <why>". A failed check
// does not stop the run. Exit status 1 when anything failed, 2 on bad usage.

import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual, inspect } from 'node:util';
import smart from 'fhirclient';

const baseUrl = process.env.FHIR_BASE;
const token = process.env.FHIR_TOKEN;
if (!baseUrl || !token) {
  console.error('check.mjs: set FHIR_BASE (e.g. http://127.0.0.1:8080/fhir/r4) and FHIR_TOKEN');
  process.exit(2);
}
const syntheaDir = process.env.SYNTHEA_DIR ?? fileURLToPath(new URL('../../../shared/testdata/synthea', import.meta.url));

let version = '(version unknown)';
try {
  version = JSON.parse(readFileSync(new URL('./node_modules/fhirclient/package.json', import.meta.url), 'utf8')).version;
} catch {
  // Informational only.
}
console.log(`fhirclient ${version} against ${baseUrl}`);

// The node entry wants the incoming request and response of a SMART app's
// own server; client() uses neither (no launch, no redirect), so these
// stand-ins only carry what its constructor reads.
function fhirClient(patient) {
  const req = { url: '/', headers: { host: 'localhost' }, method: 'GET' };
  const res = { writeHead() {}, end() {}, setHeader() {} };
  const tokenResponse = { access_token: token, token_type: 'Bearer', scope: 'system/*.read system/*.write' };
  if (patient) tokenResponse.patient = patient;
  return smart(req, res).client({ serverUrl: baseUrl, tokenResponse });
}

// ---------------------------------------------------------------- harness

class Mismatch extends Error {}
function fail(msg) {
  throw new Mismatch(msg);
}
function show(v) {
  return inspect(v, { depth: 6, breakLength: Infinity });
}
function eq(what, got, want) {
  if (!isDeepStrictEqual(got, want)) fail(`${what}: got ${show(got)}, want ${show(want)}`);
}
function truthy(what, cond, got) {
  if (!cond) fail(`${what}${got === undefined ? '' : `; got ${show(got)}`}`);
}
function need(value, what) {
  if (value === undefined || value === null) fail(`skipped: needs ${what}, which an earlier check did not produce`);
  return value;
}

let failures = 0;
async function check(name, fn) {
  try {
    await fn();
    console.log(`ok  ${name}`);
  } catch (err) {
    failures++;
    const why = err instanceof Mismatch ? err.message : err && err.stack ? err.stack : show(err);
    console.log(`FAIL ${name}: ${why}`);
  }
}

/** A direct GET (no fhirclient) of a path under the base, as JSON. */
async function direct(path) {
  const res = await fetch(`${baseUrl}/${path}`, { headers: { Authorization: `Bearer ${token}`, Accept: 'application/fhir+json' } });
  const body = await res.json();
  if (res.status !== 200) fail(`GET ${path}: HTTP ${res.status} ${show(body)}`);
  return body;
}

/** Every resource of a search, fetched directly with _count=1000 and next links. */
async function directAll(path) {
  const out = [];
  let bundle = await direct(path + (path.includes('?') ? '&' : '?') + '_count=1000');
  for (;;) {
    eq(`${path}: type`, bundle.type, 'searchset');
    out.push(...(bundle.entry ?? []).filter((e) => (e.search?.mode ?? 'match') === 'match').map((e) => e.resource));
    const next = bundle.link?.find((l) => l.relation === 'next')?.url;
    if (!next) return out;
    const res = await fetch(next, { headers: { Authorization: `Bearer ${token}` } });
    bundle = await res.json();
  }
}

function ids(resources) {
  return resources.map((r) => `${r.resourceType}/${r.id}`);
}
function sameIds(what, got, want) {
  const g = ids(got);
  eq(`${what}: no duplicates`, new Set(g).size, g.length);
  eq(`${what}: ids`, [...g].sort(), ids(want).sort());
}
function codingKey(cc) {
  const c = cc?.coding?.[0];
  return c ? `${c.system}|${c.code}` : undefined;
}

// ---------------------------------------------------------------- checks

const client = fhirClient();
const loaded = []; // { patientId, own: input resources referring to the Patient }

await check('request metadata: CapabilityStatement with Observation?patient=', async () => {
  const cs = await client.request('metadata');
  eq('resourceType', cs.resourceType, 'CapabilityStatement');
  eq('fhirVersion', cs.fhirVersion, '4.0.1');
  const obs = cs.rest?.[0]?.resource?.find((r) => r.type === 'Observation');
  truthy('rest[0].resource has Observation', obs, cs.rest?.[0]?.resource?.map((r) => r.type));
  for (const p of ['patient', 'code', 'subject', 'date']) {
    truthy(`Observation searchParam ${p}`, obs.searchParam?.some((s) => s.name === p), obs.searchParam?.map((s) => s.name));
  }
  // What fhirclient's patient-scoped requests read.
  eq('getFhirRelease', await client.getFhirRelease(), 4);
});

await check('transaction: 3 Synthea Bundles', async () => {
  const files = readdirSync(syntheaDir)
    .filter((f) => f.endsWith('.json') && !/Information/.test(f))
    .map((f) => ({ f, size: statSync(join(syntheaDir, f)).size }))
    .sort((a, b) => a.size - b.size)
    .slice(3, 6); // not the fhir-kit-client check's three
  eq('Synthea Bundles', files.length, 3);
  for (const { f } of files) {
    const body = JSON.parse(readFileSync(join(syntheaDir, f), 'utf8'));
    const tr = await client.request({
      url: '',
      method: 'POST',
      body: JSON.stringify(body),
      headers: { 'Content-Type': 'application/fhir+json' },
    });
    eq(`${f}: type`, tr.type, 'transaction-response');
    eq(`${f}: entries`, tr.entry?.length, body.entry.length);
    const pi = body.entry.findIndex((e) => e.resource.resourceType === 'Patient');
    const patientId = /Patient\/([^/]+)/.exec(tr.entry[pi].response.location)?.[1];
    truthy(`${f}: Patient location`, patientId, tr.entry[pi].response.location);
    const urn = body.entry[pi].fullUrl;
    const own = body.entry.map((e) => e.resource).filter((r) => r.resourceType !== 'Patient' && JSON.stringify(r).includes(`"${urn}"`));
    loaded.push({ patientId, own });
  }
});

function busiest() {
  const l = need(loaded.length === 3 ? loaded : undefined, 'the Synthea Bundles');
  const n = (p) => p.own.filter((r) => r.resourceType === 'Observation').length;
  return [...l].sort((a, b) => n(b) - n(a))[0];
}

await check('patient.request("Observation", pageLimit 0, flat): patient= from the CapabilityStatement', async () => {
  const p = busiest();
  const pc = fhirClient(p.patientId);
  eq('client.patient.id', pc.patient.id, p.patientId);
  const got = await pc.patient.request('Observation?_count=9', { pageLimit: 0, flat: true });
  truthy('flat: an array of resources', Array.isArray(got), got);
  const want = p.own.filter((r) => r.resourceType === 'Observation');
  eq('count = the input Bundle', got.length, want.length);
  for (const o of got) eq(`${o.id}: subject`, o.subject?.reference, `Patient/${p.patientId}`);
  sameIds('= a direct search', got, await directAll(`Observation?patient=${p.patientId}`));
  // The same with onPage: one call per page (and a null result).
  const pages = [];
  const none = await pc.patient.request('Observation?_count=9', { pageLimit: 0, flat: true, onPage: (page) => pages.push(page) });
  eq('result with onPage', none, null);
  eq('pages', pages.length, Math.ceil(want.length / 9));
  sameIds('pages together', pages.flat(), got);
  const me = await pc.patient.read();
  eq('patient.read', [me.resourceType, me.id], ['Patient', p.patientId]);
});

await check('request("Observation?patient=X&code=Y", pageLimit 0, flat) per code = direct and input', async () => {
  const p = busiest();
  const counts = {};
  for (const r of p.own) if (r.resourceType === 'Observation') counts[codingKey(r.code)] = (counts[codingKey(r.code)] ?? 0) + 1;
  const codes = Object.keys(counts).sort((a, b) => counts[b] - counts[a] || (a < b ? -1 : 1)).slice(0, 4);
  truthy('coded Observations', codes.length > 0, counts);
  for (const code of codes) {
    const q = `Observation?patient=${p.patientId}&code=${encodeURIComponent(code)}`;
    const got = await client.request(`${q}&_count=2`, { pageLimit: 0, flat: true });
    eq(`${code}: count = input`, got.length, counts[code]);
    for (const o of got) eq(`${code}: ${o.id} code`, codingKey(o.code), code);
    sameIds(`${code}: = direct`, got, await directAll(q));
  }
});

await check('request Patient?_count=1 paged = direct', async () => {
  const got = await client.request('Patient?_count=1', { pageLimit: 0, flat: true });
  const want = await directAll('Patient');
  truthy('at least the loaded patients', got.length >= 3, got.length);
  sameIds('Patients', got, want);
});

await check('request Encounter with resolveReferences subject, serviceProvider', async () => {
  const p = busiest();
  const got = await client.request(`Encounter?patient=${p.patientId}&_count=4`, {
    pageLimit: 2,
    flat: true,
    resolveReferences: ['subject', 'serviceProvider'],
  });
  eq('two pages of 4', got.length, Math.min(8, p.own.filter((r) => r.resourceType === 'Encounter').length));
  const patient = await direct(`Patient/${p.patientId}`);
  for (const e of got) {
    eq(`${e.id}: subject resolved`, [e.subject?.resourceType, e.subject?.id], ['Patient', p.patientId]);
    eq(`${e.id}: subject is the Patient`, e.subject?.name, patient.name);
    const ref = /^Organization\/(.+)$/.exec(need(e.serviceProvider, 'serviceProvider').id ? `Organization/${e.serviceProvider.id}` : '');
    truthy(`${e.id}: serviceProvider resolved to an Organization`, e.serviceProvider?.resourceType === 'Organization' && ref, e.serviceProvider);
    const org = await direct(`Organization/${e.serviceProvider.id}`);
    eq(`${e.id}: serviceProvider = a direct read`, e.serviceProvider.name, org.name);
  }
});

await check('request Condition with _include=Condition:subject, graph off: references map', async () => {
  const p = [...need(loaded.length === 3 ? loaded : undefined, 'the Synthea Bundles')].sort(
    (a, b) => b.own.filter((r) => r.resourceType === 'Condition').length - a.own.filter((r) => r.resourceType === 'Condition').length,
  )[0];
  const want = p.own.filter((r) => r.resourceType === 'Condition').length;
  truthy('Conditions', want > 0, want);
  const bundle = await client.request(`Condition?patient=${p.patientId}&_include=Condition:subject`);
  eq('matches', bundle.entry.filter((e) => e.search?.mode === 'match').length, want);
  eq('included', bundle.entry.filter((e) => e.search?.mode === 'include').map((e) => `${e.resource.resourceType}/${e.resource.id}`), [`Patient/${p.patientId}`]);
  const out = await client.request(`Condition?patient=${p.patientId}`, { resolveReferences: 'subject', graph: false, pageLimit: 0 });
  truthy('references map', out.references && out.references[`Patient/${p.patientId}`], Object.keys(out.references ?? {}));
  eq('referenced Patient', out.references[`Patient/${p.patientId}`].id, p.patientId);
});

if (failures > 0) {
  console.log(`${failures} check(s) FAILED against ${baseUrl}`);
  process.exit(1);
}
console.log(`all checks passed against ${baseUrl} (fhirclient)`);

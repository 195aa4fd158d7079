// Interop check: drives a running fhiranchor server with the third-party
// fhir-kit-client npm package (a FHIR client none of us wrote) and asserts
// every answer strictly.
//
//   FHIR_BASE=http://127.0.0.1:8080/fhir/r4 FHIR_TOKEN=$(fhiranchor token) node check.mjs
//
// One line per check: "ok  <name>" or "FAIL <name>: <why>". A failed check
// does not stop the run; checks that depend on it report FAIL too. Exit
// status 1 when anything failed, 2 on bad usage.

import { randomUUID } from 'node:crypto';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual, inspect } from 'node:util';
import { Client } from 'fhir-kit-client';

const baseUrl = process.env.FHIR_BASE;
const token = process.env.FHIR_TOKEN;
if (!baseUrl || !token) {
  console.error('check.mjs: set FHIR_BASE (e.g. http://127.0.0.1:8080/fhir/r4) and FHIR_TOKEN');
  process.exit(2);
}

let kitVersion = '(version unknown)';
try {
  kitVersion = JSON.parse(readFileSync(new URL('./node_modules/fhir-kit-client/package.json', import.meta.url), 'utf8')).version;
} catch {
  // Installed elsewhere; the version line is informational only.
}
console.log(`fhir-kit-client ${kitVersion} against ${baseUrl}`);

const client = new Client({ baseUrl, customHeaders: { Authorization: `Bearer ${token}` } });

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

/** HTTP status and headers fhir-kit-client attached to a response value. */
function http(result) {
  const { response } = Client.httpFor(result);
  if (!response) fail('fhir-kit-client attached no HTTP response to the result');
  return response;
}

/** Awaits p, which must reject with an HTTP error; returns { status, data }. */
async function rejection(p) {
  let value;
  try {
    value = await p;
  } catch (err) {
    if (!err || !err.response) fail(`rejected without an HTTP response: ${err && err.stack ? err.stack : show(err)}`);
    return { status: err.response.status, data: err.response.data, err };
  }
  const status = Client.httpFor(value).response?.status;
  fail(`expected the client to reject, but it resolved (HTTP ${status}) with ${show(value)}`);
}

function isOutcome(what, data) {
  truthy(`${what}: body is not an OperationOutcome`, data && data.resourceType === 'OperationOutcome', data);
  truthy(`${what}: OperationOutcome has no issue`, Array.isArray(data.issue) && data.issue.length > 0, data.issue);
  for (const [i, is] of data.issue.entries()) {
    truthy(`${what}: issue[${i}] lacks severity/code`, typeof is.severity === 'string' && typeof is.code === 'string', is);
  }
}

/** "Type/id[/_history/vid]", relative or absolute, to { type, id, vid }. */
function parseLocation(what, loc) {
  truthy(`${what}: no location`, typeof loc === 'string' && loc !== '', loc);
  const m = /(?:^|\/)([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/([A-Za-z0-9\-.]{1,64}))?$/.exec(loc);
  if (!m) fail(`${what}: location ${show(loc)} is not [base/]Type/id[/_history/vid]`);
  return { type: m[1], id: m[2], vid: m[3] };
}

function statusCode(what, status) {
  truthy(`${what}: response.status is not a string starting with a 3-digit code`, typeof status === 'string' && /^\d{3}(\s|$)/.test(status), status);
  return Number(status.slice(0, 3));
}

let failures = 0;
async function check(name, fn) {
  try {
    await fn();
    console.log(`ok  ${name}`);
  } catch (err) {
    failures++;
    let why;
    if (err instanceof Mismatch) why = err.message;
    else if (err && err.response) why = `unexpected HTTP ${err.response.status} from ${err.config?.method} ${err.config?.url}: ${show(err.response.data)}`;
    else why = err && err.stack ? err.stack : show(err);
    console.log(`FAIL ${name}: ${why}`);
  }
}

// ---------------------------------------------------------------- checks

const run = randomUUID();
const idSystem = 'urn:fhiranchor:interop:fhir-kit-client';
const patientBody = {
  resourceType: 'Patient',
  identifier: [{ system: idSystem, value: `pt-${run}` }],
  active: true,
  name: [{ use: 'official', family: 'Kitclient', given: ['Testa', 'Synthetic'] }],
  gender: 'female',
  birthDate: '1984-03-07',
};
const newBirthDate = '1984-03-08';

let patientId; // set by create
let readBack; // set by read

await check('capabilityStatement', async () => {
  const cs = await client.capabilityStatement();
  eq('HTTP status', http(cs).status, 200);
  eq('resourceType', cs.resourceType, 'CapabilityStatement');
  eq('fhirVersion', cs.fhirVersion, '4.0.1');
  truthy('format lists json', Array.isArray(cs.format) && cs.format.some((f) => /json/.test(f)), cs.format);
});

await check('create Patient', async () => {
  const created = await client.create({ resourceType: 'Patient', body: patientBody });
  const res = http(created);
  eq('HTTP status', res.status, 201);
  eq('resourceType', created.resourceType, 'Patient');
  truthy('server assigned an id', typeof created.id === 'string' && /^[A-Za-z0-9\-.]{1,64}$/.test(created.id), created.id);
  eq('meta.versionId', created.meta?.versionId, '1');
  eq('name', created.name, patientBody.name);
  eq('birthDate', created.birthDate, patientBody.birthDate);
  const loc = parseLocation('Location header', res.headers.get('location'));
  eq('Location type/id', [loc.type, loc.id], ['Patient', created.id]);
  eq('ETag header', res.headers.get('etag'), 'W/"1"');
  patientId = created.id;
});

await check('read Patient', async () => {
  const id = need(patientId, 'the created Patient');
  const p = await client.read({ resourceType: 'Patient', id });
  eq('HTTP status', http(p).status, 200);
  eq('resourceType', p.resourceType, 'Patient');
  eq('id', p.id, id);
  eq('name', p.name, patientBody.name);
  eq('birthDate', p.birthDate, patientBody.birthDate);
  eq('identifier', p.identifier, patientBody.identifier);
  eq('meta.versionId', p.meta?.versionId, '1');
  readBack = p;
});

await check('update Patient (PUT) -> version 2', async () => {
  const id = need(patientId, 'the created Patient');
  const body = { ...need(readBack, 'the read Patient'), birthDate: newBirthDate };
  delete body.meta;
  const u = await client.update({ resourceType: 'Patient', id, body });
  eq('HTTP status', http(u).status, 200);
  eq('id', u.id, id);
  eq('meta.versionId', u.meta?.versionId, '2');
  eq('birthDate', u.birthDate, newBirthDate);
  eq('ETag header', http(u).headers.get('etag'), 'W/"2"');
  const again = await client.read({ resourceType: 'Patient', id });
  eq('read after update: meta.versionId', again.meta?.versionId, '2');
  eq('read after update: birthDate', again.birthDate, newBirthDate);
});

await check('vread Patient version 1', async () => {
  const id = need(patientId, 'the created Patient');
  const v1 = await client.vread({ resourceType: 'Patient', id, version: '1' });
  eq('HTTP status', http(v1).status, 200);
  eq('id', v1.id, id);
  eq('meta.versionId', v1.meta?.versionId, '1');
  eq('birthDate', v1.birthDate, patientBody.birthDate);
});

await check('history Patient -> 2 entries', async () => {
  const id = need(patientId, 'the created Patient');
  const h = await client.history({ resourceType: 'Patient', id });
  eq('HTTP status', http(h).status, 200);
  eq('resourceType', h.resourceType, 'Bundle');
  eq('type', h.type, 'history');
  truthy('entry is an array', Array.isArray(h.entry), h.entry);
  eq('number of entries', h.entry.length, 2);
  if (h.total !== undefined) eq('total', h.total, 2);
  // R4 3.1.0.4.1: history is sorted with the oldest version last.
  eq('versionIds newest first', h.entry.map((e) => e.resource?.meta?.versionId), ['2', '1']);
  eq('birthDates newest first', h.entry.map((e) => e.resource?.birthDate), [newBirthDate, patientBody.birthDate]);
  for (const [i, e] of h.entry.entries()) {
    eq(`entry[${i}].resource.id`, e.resource?.id, id);
    // bdl-3 / bdl-4: history entries carry both request and response.
    truthy(`entry[${i}].request.method missing (bdl-3)`, typeof e.request?.method === 'string', e.request);
    truthy(`entry[${i}].response.status missing (bdl-4)`, typeof e.response?.status === 'string', e.response);
  }
  eq('entry[].request.method', h.entry.map((e) => e.request.method), ['PUT', 'POST']);
});

await check('transaction: Patient + Observation via urn:uuid', async () => {
  const patUrn = `urn:uuid:${randomUUID()}`;
  const obsUrn = `urn:uuid:${randomUUID()}`;
  const body = {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      {
        fullUrl: patUrn,
        resource: {
          resourceType: 'Patient',
          identifier: [{ system: idSystem, value: `tx-${run}` }],
          name: [{ family: 'Kitclient', given: ['Transact'] }],
          birthDate: '1990-01-02',
        },
        request: { method: 'POST', url: 'Patient' },
      },
      {
        fullUrl: obsUrn,
        resource: {
          resourceType: 'Observation',
          status: 'final',
          code: { coding: [{ system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' }] },
          subject: { reference: patUrn },
          effectiveDateTime: '2024-05-06T07:08:09Z',
          valueQuantity: { value: 61, unit: 'beats/minute', system: 'http://unitsofmeasure.org', code: '/min' },
        },
        request: { method: 'POST', url: 'Observation' },
      },
    ],
  };
  const tr = await client.transaction({ body });
  eq('HTTP status', http(tr).status, 200);
  eq('resourceType', tr.resourceType, 'Bundle');
  eq('type', tr.type, 'transaction-response');
  truthy('entry is an array', Array.isArray(tr.entry), tr.entry);
  eq('number of entries', tr.entry.length, 2);
  eq('entry[].response.status', tr.entry.map((e) => e.response?.status), ['201 Created', '201 Created']);
  const pat = parseLocation('entry[0].response.location', tr.entry[0].response.location);
  const obs = parseLocation('entry[1].response.location', tr.entry[1].response.location);
  eq('entry[0] location type', pat.type, 'Patient');
  eq('entry[1] location type', obs.type, 'Observation');
  for (const [i, e] of tr.entry.entries()) {
    eq(`entry[${i}].response.etag`, e.response.etag, 'W/"1"');
    truthy(`entry[${i}].response.lastModified is an instant`, typeof e.response.lastModified === 'string' && !Number.isNaN(Date.parse(e.response.lastModified)), e.response.lastModified);
  }

  const o = await client.read({ resourceType: 'Observation', id: obs.id });
  eq('Observation id', o.id, obs.id);
  eq('Observation subject.reference rewritten', o.subject?.reference, `Patient/${pat.id}`);
  eq('Observation valueQuantity', o.valueQuantity, body.entry[1].resource.valueQuantity);
  const p = await client.read({ resourceType: 'Patient', id: pat.id });
  eq('transaction Patient name', p.name, body.entry[0].resource.name);
});

// A batch entry that fails must fail alone (R4 http.html, batch rules): the
// response is a batch-response with a 4xx entry, the good entry is created.
async function batchOneGoodOneBad(tag, badEntry) {
  const good = {
    resource: {
      resourceType: 'Patient',
      identifier: [{ system: idSystem, value: `batch-${tag}-${run}` }],
      name: [{ family: 'Kitclient', given: ['Batch', tag] }],
    },
    request: { method: 'POST', url: 'Patient' },
  };
  const body = { resourceType: 'Bundle', type: 'batch', entry: [good, badEntry] };
  const br = await client.batch({ body });
  eq('HTTP status', http(br).status, 200);
  eq('resourceType', br.resourceType, 'Bundle');
  eq('type', br.type, 'batch-response');
  truthy('entry is an array', Array.isArray(br.entry), br.entry);
  eq('number of entries', br.entry.length, 2);
  eq('entry[0] status code', statusCode('entry[0]', br.entry[0].response?.status), 201);
  const bad = statusCode('entry[1]', br.entry[1].response?.status);
  truthy('entry[1] status is 4xx', bad >= 400 && bad < 500, br.entry[1].response.status);
  const loc = parseLocation('entry[0].response.location', br.entry[0].response.location);
  eq('entry[0] location type', loc.type, 'Patient');
  isOutcome('entry[1].response.outcome', br.entry[1].response.outcome);
  const p = await client.read({ resourceType: 'Patient', id: loc.id });
  eq('batch Patient name', p.name, good.resource.name);
}

await check('batch: good entry + bad request (url/resource type mismatch) -> 201 + 4xx', () =>
  batchOneGoodOneBad('mismatch', {
    resource: { resourceType: 'Patient', name: [{ family: 'Kitclient', given: ['Misfiled'] }] },
    request: { method: 'POST', url: 'Observation' },
  }),
);

await check('batch: good entry + invalid resource (Observation without status/code) -> 201 + 4xx', () =>
  batchOneGoodOneBad('invalid', {
    // Observation.status and Observation.code are required (1..1).
    resource: { resourceType: 'Observation', valueString: 'no status, no code' },
    request: { method: 'POST', url: 'Observation' },
  }),
);

await check('invalid create -> 400 OperationOutcome', async () => {
  const { status, data } = await rejection(
    client.create({ resourceType: 'Patient', body: { resourceType: 'Patient', birthDate: 'not-a-date' } }),
  );
  eq('HTTP status', status, 400);
  isOutcome('response data', data);
  truthy('an issue has severity error or fatal', data.issue.some((i) => i.severity === 'error' || i.severity === 'fatal'), data.issue);
});

await check('request without token -> 401', async () => {
  const anon = new Client({ baseUrl });
  const id = patientId ?? 'does-not-matter';
  const { status, data } = await rejection(anon.read({ resourceType: 'Patient', id }));
  eq('HTTP status', status, 401);
  isOutcome('response data', data);
});

await check('delete Patient -> read 410 Gone', async () => {
  const id = need(patientId, 'the created Patient');
  const d = await client.delete({ resourceType: 'Patient', id });
  const st = http(d).status;
  truthy('delete answers 200 or 204', st === 200 || st === 204, st);
  const { status, data } = await rejection(client.read({ resourceType: 'Patient', id }));
  eq('read after delete: HTTP status', status, 410);
  isOutcome('read after delete: response data', data);
});


// ---------------------------------------------------------------- search

// A few Synthea Bundles (shared/testdata/synthea, or SYNTHEA_DIR), the
// smallest patient Bundles, pushed as transactions; every search below is
// checked against what the input Bundles hold.
const syntheaDir = process.env.SYNTHEA_DIR ?? fileURLToPath(new URL('../../../shared/testdata/synthea', import.meta.url));
const loaded = []; // { file, patientId, input: Map<urn, resource>, byType: counts of the patient's own resources }

function codingKey(cc) {
  const c = cc?.coding?.[0];
  return c ? `${c.system}|${c.code}` : undefined;
}

/** Resources of a searchset Bundle with search.mode "match" (or no mode). */
function matches(bundle) {
  return (bundle.entry ?? []).filter((e) => (e.search?.mode ?? 'match') === 'match').map((e) => e.resource);
}

function linkOf(bundle, rel) {
  return bundle.link?.find((l) => l.relation === rel)?.url;
}

function searchset(what, bundle) {
  eq(`${what}: resourceType`, bundle?.resourceType, 'Bundle');
  eq(`${what}: type`, bundle.type, 'searchset');
  for (const [i, e] of (bundle.entry ?? []).entries()) {
    truthy(`${what}: entry[${i}].fullUrl is absolute`, typeof e.fullUrl === 'string' && /^https?:\/\//.test(e.fullUrl), e.fullUrl);
  }
}

function ids(resources) {
  return resources.map((r) => `${r.resourceType}/${r.id}`);
}

function noDuplicates(what, list) {
  const seen = new Set();
  for (const x of list) {
    if (seen.has(x)) fail(`${what}: ${x} appears twice`);
    seen.add(x);
  }
}

function sameSet(what, got, want) {
  eq(`${what}: sorted`, [...got].sort(), [...want].sort());
}

await check('transaction: 3 Synthea Bundles', async () => {
  const files = readdirSync(syntheaDir)
    .filter((f) => f.endsWith('.json') && !/Information/.test(f))
    .map((f) => ({ f, size: statSync(join(syntheaDir, f)).size }))
    .sort((a, b) => a.size - b.size)
    .slice(0, 3);
  truthy(`Synthea Bundles in ${syntheaDir}`, files.length === 3, files);
  for (const { f } of files) {
    const body = JSON.parse(readFileSync(join(syntheaDir, f), 'utf8'));
    const tr = await client.transaction({ body });
    eq(`${f}: HTTP status`, http(tr).status, 200);
    eq(`${f}: entries`, tr.entry?.length, body.entry.length);
    const pi = body.entry.findIndex((e) => e.resource.resourceType === 'Patient');
    const patientId = parseLocation(`${f} Patient location`, tr.entry[pi].response.location).id;
    const urn = body.entry[pi].fullUrl;
    // The patient's own resources: those referring to the Patient.
    const own = body.entry.map((e) => e.resource).filter((r) => r.resourceType !== 'Patient' && JSON.stringify(r).includes(`"${urn}"`));
    const byType = {};
    for (const r of own) byType[r.resourceType] = (byType[r.resourceType] ?? 0) + 1;
    loaded.push({ file: f, patientId, own, byType });
  }
});

// The loaded patient with the most Observations.
function busiest() {
  const l = need(loaded.length === 3 ? loaded : undefined, 'the Synthea Bundles');
  return [...l].sort((a, b) => (b.byType.Observation ?? 0) - (a.byType.Observation ?? 0))[0];
}

let allObs; // Observation ids of the busiest loaded patient, from one unpaged search

await check('search Observation?patient= (_count=1000) = the input Bundle', async () => {
  const p = busiest();
  const bundle = await client.search({ resourceType: 'Observation', searchParams: { patient: p.patientId, _count: 1000 } });
  eq('HTTP status', http(bundle).status, 200);
  searchset('searchset', bundle);
  eq('no next link', linkOf(bundle, 'next'), undefined);
  const got = matches(bundle);
  eq('number of Observations', got.length, p.byType.Observation);
  if (bundle.total !== undefined) eq('total', bundle.total, got.length);
  for (const o of got) eq(`${o.id} subject`, o.subject?.reference, `Patient/${p.patientId}`);
  noDuplicates('ids', ids(got));
  allObs = ids(got);
});

await check('resourceSearch _count=7 + nextPage to the end, prevPage back: no duplicates, union = unpaged', async () => {
  const p = busiest();
  const want = need(allObs, 'the unpaged search');
  const pages = [];
  let page = await client.resourceSearch({ resourceType: 'Observation', searchParams: { patient: p.patientId, _count: 7 } });
  while (page) {
    searchset(`page ${pages.length + 1}`, page);
    const m = matches(page);
    truthy(`page ${pages.length + 1} has 1..7 entries`, m.length >= 1 && m.length <= 7, m.length);
    pages.push(ids(m));
    truthy('fewer pages than resources', pages.length <= want.length, pages.length);
    if (pages.length > 1) truthy(`page ${pages.length} has a previous link`, linkOf(page, 'previous') || linkOf(page, 'prev'), page.link);
    page = await client.nextPage({ bundle: page });
  }
  eq('pages', pages.length, Math.ceil(want.length / 7));
  const union = pages.flat();
  noDuplicates('paged ids', union);
  sameSet('paged union', union, want);

  // Back from the last page with prevPage: the same pages, in reverse.
  let last = await client.resourceSearch({ resourceType: 'Observation', searchParams: { patient: p.patientId, _count: 7 } });
  for (let next; (next = await client.nextPage({ bundle: last })); ) last = next;
  const back = [ids(matches(last))];
  for (let prev = await client.prevPage({ bundle: last }); prev; prev = await client.prevPage({ bundle: prev })) {
    back.unshift(ids(matches(prev)));
    truthy('prevPage terminates', back.length <= pages.length, back.length);
  }
  eq('pages walked back with prevPage', back, pages);
});

await check('search Observation?patient=&code= = the input Bundle, per code', async () => {
  const p = busiest();
  const counts = {};
  for (const r of p.own) if (r.resourceType === 'Observation') counts[codingKey(r.code)] = (counts[codingKey(r.code)] ?? 0) + 1;
  const codes = Object.keys(counts).sort().slice(0, 5);
  truthy('the patient has coded Observations', codes.length > 0, counts);
  for (const code of codes) {
    const bundle = await client.search({ resourceType: 'Observation', searchParams: { patient: p.patientId, code, _count: 1000 } });
    searchset(code, bundle);
    const got = matches(bundle);
    eq(`${code}: count`, got.length, counts[code]);
    for (const o of got) eq(`${code}: ${o.id} code`, codingKey(o.code), code);
  }
});

await check('compartmentSearch Patient/[id]/Observation = the unpaged search', async () => {
  const p = busiest();
  const bundle = await client.compartmentSearch({
    resourceType: 'Observation',
    compartment: { resourceType: 'Patient', id: p.patientId },
    searchParams: { _count: 1000 },
  });
  eq('HTTP status', http(bundle).status, 200);
  searchset('searchset', bundle);
  sameSet('ids', ids(matches(bundle)), need(allObs, 'the unpaged search'));
});

await check('POST Observation/_search (postSearch) = the unpaged search', async () => {
  const p = busiest();
  const bundle = await client.resourceSearch({
    resourceType: 'Observation',
    searchParams: { patient: p.patientId, _count: 1000 },
    options: { postSearch: true },
  });
  eq('HTTP status', http(bundle).status, 200);
  searchset('searchset', bundle);
  sameSet('ids', ids(matches(bundle)), need(allObs, 'the unpaged search'));
});

await check('search Condition?patient=&_include=Condition:subject', async () => {
  const p = [...need(loaded.length ? loaded : undefined, 'the Synthea Bundles')].sort((a, b) => (b.byType.Condition ?? 0) - (a.byType.Condition ?? 0))[0];
  truthy('a loaded patient has Conditions', p.byType.Condition > 0, p.byType);
  const bundle = await client.search({
    resourceType: 'Condition',
    searchParams: { patient: p.patientId, _include: 'Condition:subject', _count: 1000 },
  });
  searchset('searchset', bundle);
  const got = matches(bundle);
  eq('Conditions', got.length, p.byType.Condition);
  const inc = (bundle.entry ?? []).filter((e) => e.search?.mode === 'include').map((e) => e.resource);
  eq('included', ids(inc), [`Patient/${p.patientId}`]);
  if (bundle.total !== undefined) eq('total counts matches only', bundle.total, got.length);
});

await check('systemSearch [base]?_type=Patient holds the loaded Patients', async () => {
  const l = need(loaded.length === 3 ? loaded : undefined, 'the Synthea Bundles');
  const bundle = await client.systemSearch({ searchParams: { _type: 'Patient', _count: 1000 } });
  eq('HTTP status', http(bundle).status, 200);
  searchset('searchset', bundle);
  const got = ids(matches(bundle));
  noDuplicates('ids', got);
  truthy('only Patients', got.every((x) => x.startsWith('Patient/')), got);
  for (const p of l) truthy(`Patient/${p.patientId} found`, got.includes(`Patient/${p.patientId}`), got);
});

await check('search Observation?patient=&_sort=-date', async () => {
  const p = busiest();
  const bundle = await client.search({ resourceType: 'Observation', searchParams: { patient: p.patientId, _sort: '-date', _count: 1000 } });
  const dates = matches(bundle).map((o) => Date.parse(o.effectiveDateTime));
  eq('count', dates.length, p.byType.Observation);
  for (let i = 1; i < dates.length; i++) truthy(`sorted newest first at ${i}`, dates[i - 1] >= dates[i], [dates[i - 1], dates[i]]);
});

await check('operation $everything (GET, _count=1000, nextPage) = the patient and their resources', async () => {
  const p = busiest();
  let page = await client.operation({ name: 'everything', resourceType: 'Patient', id: p.patientId, method: 'GET', input: { _count: 1000 } });
  eq('HTTP status', http(page).status, 200);
  const all = [];
  while (page) {
    searchset('$everything page', page);
    all.push(...(page.entry ?? []).map((e) => e.resource));
    page = await client.nextPage({ bundle: page });
  }
  noDuplicates('ids', ids(all));
  const byType = {};
  for (const r of all) byType[r.resourceType] = (byType[r.resourceType] ?? 0) + 1;
  eq('the Patient', ids(all.filter((r) => r.resourceType === 'Patient')), [`Patient/${p.patientId}`]);
  for (const [type, n] of Object.entries(p.byType)) {
    eq(`${type} count`, byType[type], n);
  }
  sameSet('Observations', ids(all.filter((r) => r.resourceType === 'Observation')), need(allObs, 'the unpaged search'));
});

if (failures > 0) {
  console.log(`${failures} check(s) FAILED against ${baseUrl}`);
  process.exit(1);
}
console.log(`all checks passed against ${baseUrl} (fhir-kit-client)`);

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
import { readFileSync } from 'node:fs';
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

if (failures > 0) {
  console.log(`${failures} check(s) FAILED against ${baseUrl}`);
  process.exit(1);
}
console.log(`all checks passed against ${baseUrl} (fhir-kit-client)`);

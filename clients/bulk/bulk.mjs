// A FHIR Bulk Data Access (IG v2, https://hl7.org/fhir/uv/bulkdata/) client
// written from the IG only, with nothing but node's fetch: it knows nothing
// of fhiranchor beyond a base URL and a bearer token.
//
//   node bulk.mjs <kick-off path> <out dir>
//
// e.g. node bulk.mjs '$export?_type=Patient,Condition' out/system
// Env: FHIR_BASE (the FHIR base URL), FHIR_TOKEN (bearer token).
//
// Follows the IG's flow and checks what it requires of a server:
//   kick-off  GET with Accept: application/fhir+json and Prefer: respond-async
//             -> 202 and Content-Location (the status URL)
//   status    -> 202 (X-Progress, Retry-After honoured) until 200 with the
//             manifest: transactionTime, request, requiresAccessToken,
//             output[{type,url,count}], error[]
//   files     each output url (with the token when requiresAccessToken),
//             Accept: application/fhir+ndjson; every line one resource of the
//             file's type, as many lines as count; written to <out dir>
//   delete    DELETE the status URL -> 202; the status URL then answers 404
// Also checks that a kick-off without Prefer: respond-async is refused with
// a 4xx OperationOutcome. Prints a summary line; exit 1 on any failure.

import { promises as fs } from 'node:fs';
import path from 'node:path';

const base = (process.env.FHIR_BASE || '').replace(/\/$/, '');
const token = process.env.FHIR_TOKEN || '';
const [kickOffPath, outDir] = process.argv.slice(2);
if (!base || !token || !kickOffPath || !outDir) {
  console.error('usage: FHIR_BASE=... FHIR_TOKEN=... node bulk.mjs <kick-off path> <out dir>');
  process.exit(2);
}
const auth = { Authorization: `Bearer ${token}` };

function fail(msg) {
  throw new Error(msg);
}

async function main() {
  const kickOff = `${base}/${kickOffPath.replace(/^\//, '')}`;

  // The IG: a kick-off without Prefer: respond-async is an error.
  let res = await fetch(kickOff, { headers: { ...auth, Accept: 'application/fhir+json' } });
  if (res.status < 400 || res.status >= 500) fail(`kick-off without Prefer: status ${res.status}, want 4xx`);
  const oo = await res.json();
  if (oo.resourceType !== 'OperationOutcome') fail('kick-off without Prefer: not an OperationOutcome');

  res = await fetch(kickOff, { headers: { ...auth, Accept: 'application/fhir+json', Prefer: 'respond-async' } });
  if (res.status !== 202) fail(`kick-off: status ${res.status}: ${await res.text()}`);
  const status = res.headers.get('content-location');
  if (!status) fail('kick-off: no Content-Location');
  await res.arrayBuffer();

  let manifest;
  const deadline = Date.now() + 300_000;
  for (;;) {
    res = await fetch(status, { headers: { ...auth, Accept: 'application/json' } });
    if (res.status === 200) {
      manifest = await res.json();
      break;
    }
    if (res.status !== 202) fail(`status: ${res.status}: ${await res.text()}`);
    await res.arrayBuffer();
    if (Date.now() > deadline) fail('status: not complete within 5 minutes');
    const retry = Number(res.headers.get('retry-after'));
    await new Promise((r) => setTimeout(r, Number.isFinite(retry) && retry > 0 ? Math.min(retry, 5) * 1000 : 500));
  }

  for (const k of ['transactionTime', 'request', 'requiresAccessToken', 'output', 'error']) {
    if (!(k in manifest)) fail(`manifest lacks ${k}`);
  }
  if (Number.isNaN(Date.parse(manifest.transactionTime))) fail('manifest transactionTime is not an instant');
  if (!Array.isArray(manifest.output) || !Array.isArray(manifest.error)) fail('manifest output and error must be arrays');

  await fs.mkdir(outDir, { recursive: true });
  let resources = 0;
  const byType = {};
  for (const [i, o] of manifest.output.entries()) {
    if (!o.type || !o.url) fail('manifest output entry lacks type or url');
    const headers = { Accept: 'application/fhir+ndjson', ...(manifest.requiresAccessToken ? auth : {}) };
    res = await fetch(o.url, { headers });
    if (res.status !== 200) fail(`file ${o.type}: status ${res.status}`);
    const text = await res.text();
    const lines = text.split('\n').filter((l) => l.trim() !== '');
    if (typeof o.count === 'number' && o.count !== lines.length) fail(`file ${o.type}: ${lines.length} lines, count ${o.count}`);
    for (const l of lines) {
      const r = JSON.parse(l);
      if (r.resourceType !== o.type) fail(`file ${o.type}: a line is a ${r.resourceType}`);
    }
    // Without the token, a file that requires it is refused.
    if (manifest.requiresAccessToken) {
      const anon = await fetch(o.url, { headers: { Accept: 'application/fhir+ndjson' } });
      if (anon.status !== 401 && anon.status !== 403) fail(`file ${o.type} without a token: status ${anon.status}`);
      await anon.arrayBuffer();
    }
    await fs.writeFile(path.join(outDir, `${o.type}-${i}.ndjson`), text);
    resources += lines.length;
    byType[o.type] = (byType[o.type] || 0) + lines.length;
  }
  for (const e of manifest.error) {
    res = await fetch(e.url, { headers: { Accept: 'application/fhir+ndjson', ...(manifest.requiresAccessToken ? auth : {}) } });
    if (res.status !== 200) fail(`error file: status ${res.status}`);
    for (const l of (await res.text()).split('\n').filter((x) => x.trim() !== '')) {
      if (JSON.parse(l).resourceType !== 'OperationOutcome') fail('an error file line is not an OperationOutcome');
    }
  }

  res = await fetch(status, { method: 'DELETE', headers: auth });
  if (res.status !== 202) fail(`DELETE: status ${res.status}`);
  await res.arrayBuffer();
  res = await fetch(status, { headers: auth });
  if (res.status !== 404 && res.status !== 410) fail(`status after DELETE: ${res.status}, want 404`);
  await res.arrayBuffer();

  console.log(JSON.stringify({ kickOff: kickOffPath, files: manifest.output.length, resources, byType, errors: manifest.error.length }));
}

main().catch((err) => {
  console.error(`bulk.mjs: ${err.message}`);
  process.exit(1);
});

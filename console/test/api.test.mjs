// Unit tests of src/lib/api.js: what the console shows for an error, and
// that every call is same-origin and carries the token.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApiError, client, outcomeText } from '../src/lib/api.js';

test('outcomeText joins the issues of an OperationOutcome', () => {
  const oo = { resourceType: 'OperationOutcome', issue: [{ code: 'forbidden', diagnostics: 'no' }, { code: 'invalid' }] };
  assert.equal(outcomeText(403, oo), 'no; invalid');
  assert.equal(outcomeText(502, null), 'HTTP 502');
  assert.equal(outcomeText(500, { issue: 'x' }), 'HTTP 500');
});

test('client sends the bearer token and JSON, and throws ApiError', async () => {
  const calls = [];
  const fake = async (path, init) => {
    calls.push({ path, init });
    if (path === '/v1/bad') return new Response(JSON.stringify({ issue: [{ diagnostics: 'bad request' }] }), { status: 400 });
    if (path === '/v1/none') return new Response(null, { status: 204 });
    return new Response('{"ok":true}', { status: 200 });
  };
  const api = client('tok', fake);
  assert.deepEqual(await api('/v1/x', { method: 'POST', body: { a: 1 } }), { ok: true });
  assert.equal(calls[0].init.headers.Authorization, 'Bearer tok');
  assert.equal(calls[0].init.headers['Content-Type'], 'application/json');
  assert.equal(calls[0].init.body, '{"a":1}');
  assert.equal(await api('/v1/none'), null);
  await assert.rejects(api('/v1/bad'), (err) => err instanceof ApiError && err.status === 400 && err.message === 'bad request');
});

test('client refuses paths that could leave the origin', async () => {
  const api = client('tok', async () => assert.fail('fetched'));
  for (const p of ['https://evil.example/x', '//evil.example/x', 'v1/x']) {
    await assert.rejects(api(p), /same-origin/);
  }
});

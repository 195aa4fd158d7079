// SMART Backend Services against fhiranchor, from the specification
// (hl7.org/fhir/smart-app-launch/backend-services.html), not from the
// server's code: discovery, a client assertion signed with jose, the
// client_credentials grant, FHIR calls with the access token; a key rotated
// at the client's JWKS URL (served here) picked up without a restart; a key
// removed from it, and one revoked through the admin API, refused.
//
// Env: FHIR_BASE (…/fhir/r4), JWKS_PORT (the port the server was told the
// client's jwks_url is on), CLIENT_ID, ADMIN_TOKEN (scope fhiranchor/admin).
import { createServer } from "node:http";
import { randomUUID } from "node:crypto";
import { SignJWT, exportJWK, generateKeyPair } from "jose";

const base = process.env.FHIR_BASE;
const clientId = process.env.CLIENT_ID;
const adminToken = process.env.ADMIN_TOKEN;
const root = new URL(base).origin;

let failures = 0;
function check(ok, what) {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures++;
}

async function newKey(alg, kid) {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(publicKey);
  return { alg, kid, privateKey, jwk: { ...jwk, kid, alg, use: "sig" } };
}

// The client's JWKS URL: what it serves is changed by the test.
let published = [];
const jwksServer = createServer((req, res) => {
  res.setHeader("Content-Type", "application/json");
  res.end(JSON.stringify({ keys: published.map((k) => k.jwk) }));
});
await new Promise((r) => jwksServer.listen(Number(process.env.JWKS_PORT), "127.0.0.1", r));

// Discovery (SMART App Launch 2.x, section "SMART configuration").
const conf = await (await fetch(`${base}/.well-known/smart-configuration`)).json();
check(typeof conf.token_endpoint === "string", "smart-configuration names a token_endpoint");
check(conf.token_endpoint_auth_methods_supported?.includes("private_key_jwt"), "private_key_jwt supported");
check(conf.grant_types_supported?.includes("client_credentials"), "client_credentials supported");
check(conf.capabilities?.includes("client-confidential-asymmetric"), "client-confidential-asymmetric capability");
for (const alg of ["RS384", "ES384"]) {
  check(conf.token_endpoint_auth_signing_alg_values_supported?.includes(alg), `${alg} assertions supported`);
}
const tokenEndpoint = conf.token_endpoint;
const meta = await (await fetch(`${base}/metadata`)).json();
const oauth = meta.rest?.[0]?.security?.extension?.find((e) => e.url === "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris");
check(oauth?.extension?.find((e) => e.url === "token")?.valueUri === tokenEndpoint, "CapabilityStatement oauth-uris names the token endpoint");

// The authentication JWT: iss = sub = client_id, aud = token URL, exp at
// most five minutes ahead, a fresh jti; kid in the header.
async function assertion(key, claims = {}) {
  return new SignJWT({ jti: randomUUID(), ...claims })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: "JWT" })
    .setIssuer(clientId).setSubject(clientId).setAudience(tokenEndpoint)
    .setExpirationTime("4m")
    .sign(key.privateKey);
}

async function requestToken(jwt, scope = "system/Patient.cruds system/Observation.rs") {
  const res = await fetch(tokenEndpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
    body: new URLSearchParams({
      grant_type: "client_credentials",
      scope,
      client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
      client_assertion: jwt,
    }),
  });
  return { status: res.status, body: await res.json() };
}

const es = await newKey("ES384", "es-1");
const rs = await newKey("RS384", "rs-1");
published = [es];

// 1. Token, then FHIR calls with it.
let t = await requestToken(await assertion(es));
check(t.status === 200 && t.body.token_type?.toLowerCase() === "bearer" && typeof t.body.access_token === "string",
  `ES384 assertion -> access token (${t.status})`);
check(t.body.expires_in > 0 && t.body.expires_in <= 300, `expires_in ${t.body.expires_in} <= 300`);
check(t.body.scope === "system/Patient.cruds", `granted scope is the registered subset: "${t.body.scope}"`);
const auth = { Authorization: `Bearer ${t.body.access_token}`, Accept: "application/fhir+json" };
const created = await fetch(`${base}/Patient`, {
  method: "POST",
  headers: { ...auth, "Content-Type": "application/fhir+json" },
  body: JSON.stringify({ resourceType: "Patient", gender: "female", birthDate: "1970-01-01" }),
});
check(created.status === 201, `create Patient with the token (${created.status})`);
const id = (await created.json()).id;
const read = await fetch(`${base}/Patient/${id}`, { headers: auth });
check(read.status === 200, `read Patient/${id} (${read.status})`);
const search = await fetch(`${base}/Patient?gender=female`, { headers: auth });
check(search.status === 200 && (await search.json()).resourceType === "Bundle", `search Patient (${search.status})`);
const obs = await fetch(`${base}/Observation`, { headers: auth });
check(obs.status === 403, `Observation not granted: ${obs.status}`);

// 2. Refusals (OAuth errors, nothing of the request quoted).
const replay = await assertion(es);
await requestToken(replay);
t = await requestToken(replay);
check(t.status === 401 && t.body.error === "invalid_client", `replayed jti refused (${t.status} ${t.body.error})`);
t = await requestToken(await new SignJWT({ jti: randomUUID() }).setProtectedHeader({ alg: "ES384", kid: "es-1" })
  .setIssuer(clientId).setSubject(clientId).setAudience("https://elsewhere.example/token").setExpirationTime("4m").sign(es.privateKey));
check(t.status === 401 && t.body.error === "invalid_client", `wrong aud refused (${t.status})`);
t = await requestToken(await new SignJWT({ jti: randomUUID() }).setProtectedHeader({ alg: "ES384", kid: "es-1" })
  .setIssuer(clientId).setSubject(clientId).setAudience(tokenEndpoint).setExpirationTime("1h").sign(es.privateKey));
check(t.status === 401, `exp an hour ahead refused (${t.status})`);
t = await requestToken(await assertion(es), "system/Secret.cruds");
check(t.status === 400 && t.body.error === "invalid_scope" && !JSON.stringify(t.body).includes("Secret"),
  `unregistered scope refused without quoting it (${t.status} ${t.body.error})`);

// 3. Rotation at the JWKS URL: the new key is fetched on its first use.
published = [es, rs];
await new Promise((r) => setTimeout(r, 1100)); // past the server's minimum refresh interval
t = await requestToken(await assertion(rs));
check(t.status === 200, `RS384 key added at the JWKS URL accepted without a restart (${t.status})`);

// 4. A key removed from the JWKS URL is refused once the server refreshes
// (an unknown kid makes it refresh).
published = [rs];
await new Promise((r) => setTimeout(r, 1100));
t = await requestToken(await assertion({ ...es, kid: "unknown" }));
check(t.status === 401, `unknown kid refused (${t.status})`);
t = await requestToken(await assertion(es));
check(t.status === 401, `key removed from the JWKS URL refused (${t.status})`);

// 5. A key revoked through the admin API is refused at once.
const del = await fetch(`${root}/v1/clients/${clientId}/keys/${rs.kid}`, { method: "DELETE", headers: { Authorization: `Bearer ${adminToken}` } });
check(del.status === 204, `admin revokes key ${rs.kid} (${del.status})`);
t = await requestToken(await assertion(rs));
check(t.status === 401, `revoked key refused (${t.status})`);

jwksServer.close();
console.log(failures === 0 ? "all checks passed" : `${failures} check(s) failed`);
process.exit(failures === 0 ? 0 : 1);

// The in-browser receipt verifier on receipts a real gateway made
// (testdata, written by `go test ./cmd/fhiranchor -run
// TestConsoleVerifyFixtures -update-console`, which also checks them with
// `fhiranchor verify`), and on each of them tampered one field at a time.
// Oracles that do not go through the verifier (node:crypto, Node's own
// Ed25519) check what it computes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, generateKeyPairSync, sign } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";

import {
  base64Decode,
  hexDecode,
  parseLogKeys,
  parseVerifierKey,
  verifyCheckpoint,
  verifyConsistency,
  verifyReceipt,
} from "../src/lib/verify.js";

const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), "testdata");
const read = (name) => readFileSync(path.join(dir, name), "utf8");

const logKeys = read("log-key.txt");
const checkpoints = JSON.parse(read("checkpoints.json"));
const fixtures = {
  patient: { receipt: read("patient-receipt.json"), evidence: read("patient-evidence.json") },
  resource: { receipt: read("resource-receipt.json"), evidence: read("resource-evidence.json") },
  decision: { receipt: read("decision-receipt.json"), evidence: read("decision-evidence.json") },
};

// newKey makes an Ed25519 note key with node:crypto, from the format
// (c2sp.org/signed-note), not with the verifier's code.
function newKey(name) {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const pub = publicKey.export({ format: "der", type: "spki" }).subarray(-32);
  const keyBytes = Buffer.concat([Buffer.of(1), pub]);
  const hash = createHash("sha256").update(name + "\n").update(keyBytes).digest().subarray(0, 4);
  const vkey = `${name}+${hash.toString("hex")}+${keyBytes.toString("base64")}`;
  const signNote = (text) => `${text}\n\u2014 ${name} ${Buffer.concat([hash, sign(null, Buffer.from(text), privateKey)]).toString("base64")}\n`;
  return { vkey, signNote };
}

const stepsOf = (res) => Object.fromEntries(res.steps.map((s) => [s.name, s.ok]));

// edit returns the receipt with one field changed through fn(object).
function edit(text, fn) {
  const r = JSON.parse(text);
  fn(r);
  return JSON.stringify(r, null, 2);
}

// flipHex changes the first hex digit of s.
const flipHex = (s) => (s[0] === "0" ? "1" : "0") + s.slice(1);

for (const [name, f] of Object.entries(fixtures)) {
  test(`${name}: the receipt, its signed checkpoint and its evidence verify`, async () => {
    const res = await verifyReceipt({ ...f, logKeys, checkpoints });
    assert.equal(res.verdict, "VERIFIED", JSON.stringify(res.steps, null, 1));
    assert.deepEqual(stepsOf(res), { receipt: true, signed: true, proof: true, content: true, anchor: true });
  });

  test(`${name}: without a log key or evidence it verifies the proof and says what it did not check`, async () => {
    const res = await verifyReceipt({ receipt: f.receipt });
    assert.equal(res.verdict, "VERIFIED");
    assert.deepEqual(stepsOf(res), { receipt: true, signed: null, proof: true, content: null, anchor: null });
  });

  // Each tampering and the step that must catch it.
  const tampered = {
    "leaf commitment": [{ receipt: edit(f.receipt, (r) => (r.commitment = flipHex(r.commitment))) }, "proof"],
    "leaf type number": [{ receipt: edit(f.receipt, (r) => (r.leafTypeNumber = r.leafTypeNumber === 1 ? 4 : 1)) }, "proof"],
    "leaf type name and number together": [
      {
        receipt: edit(f.receipt, (r) => {
          [r.leafTypeNumber, r.leafType] = r.leafTypeNumber === 1 ? [4, "access-decision"] : [1, "resource-version"];
        }),
      },
      "proof",
    ],
    "audit path node": [{ receipt: edit(f.receipt, (r) => (r.auditPath[0] = flipHex(r.auditPath[0]))) }, "proof"],
    "audit path shortened": [{ receipt: edit(f.receipt, (r) => r.auditPath.pop()) }, "proof"],
    "leaf index": [{ receipt: edit(f.receipt, (r) => (r.leafIndex = r.leafIndex ^ 1)) }, "proof"],
    "tree size": [{ receipt: edit(f.receipt, (r) => (r.treeSize += 1)) }, "signed"],
    root: [{ receipt: edit(f.receipt, (r) => (r.root = flipHex(r.root))) }, "signed"],
    "checkpoint signature": [
      {
        receipt: edit(f.receipt, (r) => {
          const i = r.checkpoint.lastIndexOf(" ") + 10;
          r.checkpoint = r.checkpoint.slice(0, i) + (r.checkpoint[i] === "A" ? "B" : "A") + r.checkpoint.slice(i + 1);
        }),
      },
      "signed",
    ],
    "checkpoint body": [
      { receipt: edit(f.receipt, (r) => (r.checkpoint = r.checkpoint.replace(/\n\d+\n/, (m) => `\n${Number(m.trim()) + 1}\n`))) },
      "signed",
    ],
    "checkpoint removed": [{ receipt: edit(f.receipt, (r) => delete r.checkpoint) }, "signed"],
    "status pending": [{ receipt: edit(f.receipt, (r) => (r.status = "pending")) }, "proof"],
    "unknown field": [{ receipt: edit(f.receipt, (r) => (r.extra = 1)) }, "receipt"],
    salt: [{ evidence: f.evidence.replace(/"salt":"(.)/, (m, c) => `"salt":"${c === "0" ? "1" : "0"}`) }, "content"],
    "salt too short": [{ evidence: f.evidence.replace(/"salt":"../, '"salt":"') }, "content"],
    "another log key": [{ logKeys: newKey("fhiranchor.example/log").vkey }, "signed"],
  };
  if (name === "patient") {
    tampered["escaped quote"] = [{ evidence: f.evidence.replace('\\"Q\\"', "'Q'") }, "content"];
  } else if (name === "resource") {
    // 71.50 and 71.5 are the same float but not the same committed bytes.
    tampered["resource value"] = [{ evidence: f.evidence.replace("71.50", "71.5") }, "content"];
    tampered["resource unit"] = [{ evidence: f.evidence.replace('"kg"', '"lb"') }, "content"];
  } else {
    tampered["record outcome"] = [{ evidence: f.evidence.replace('"allow":true', '"allow":false') }, "content"];
    // A record is its exact bytes: the same JSON re-spaced is another record.
    tampered["record layout"] = [{ evidence: f.evidence.replace('"allow":true', '"allow": true') }, "content"];
  }
  for (const [what, [change, step]] of Object.entries(tampered)) {
    test(`${name}: tampered ${what} is refused at step ${step}`, async () => {
      const res = await verifyReceipt({ ...f, logKeys, checkpoints, ...change });
      assert.equal(res.verdict, "FAILED", JSON.stringify(res.steps, null, 1));
      assert.equal(res.ok, false);
      assert.equal(stepsOf(res)[step], false, JSON.stringify(res.steps, null, 1));
    });
  }
}

test("a resource verifies in any layout: the canonical form is hashed", async () => {
  const f = fixtures.resource;
  // Re-indent by hand, keeping number spellings (JSON.stringify would not).
  const evidence = f.evidence.replace(/,"/g, ',\n  "').replace(/\{"/g, '{\n  "');
  assert.notEqual(evidence, f.evidence);
  const res = await verifyReceipt({ ...f, evidence, logKeys });
  assert.equal(res.verdict, "VERIFIED", JSON.stringify(res.steps, null, 1));
  // And given apart, as --resource FILE --salt HEX.
  const ev = f.evidence;
  const resource = ev.slice(ev.indexOf("{", 1), ev.lastIndexOf(',"salt"'));
  const salt = /"salt":"([0-9a-f]+)"/.exec(ev)[1];
  assert.equal((await verifyReceipt({ receipt: f.receipt, resource, salt })).verdict, "VERIFIED");
});

test("the commitment is SHA-256 over domain, type, salt and the record's exact bytes (node:crypto oracle)", () => {
  const ev = fixtures.decision.evidence;
  const record = ev.slice(ev.indexOf('"record":') + 9, ev.indexOf(',"salt"'));
  const salt = Buffer.from(/"salt":"([0-9a-f]+)"/.exec(ev)[1], "hex");
  const want = createHash("sha256").update("fhiranchor/v1/commitment\0").update(Buffer.of(4)).update(salt).update(record).digest("hex");
  assert.equal(JSON.parse(fixtures.decision.receipt).commitment, want);
});

test("an erased receipt without evidence verifies as erased", async () => {
  const receipt = edit(fixtures.resource.receipt, (r) => (r.erased = true));
  const res = await verifyReceipt({ receipt, logKeys });
  assert.equal(res.verdict, "VERIFIED: anchored, content erased");
});

test("malformed inputs fail without throwing", async () => {
  for (const receipt of ["", "not json", "[]", '"x"', "{}", '{"leafIndex":-1}', '{"leafIndex":1.0}', '{"commitment":"abc"}']) {
    const res = await verifyReceipt({ receipt, logKeys });
    assert.equal(res.verdict, "FAILED", receipt);
  }
  const res = await verifyReceipt({ ...fixtures.resource, logKeys: "not a key" });
  assert.equal(stepsOf(res).signed, false);
  for (const evidence of ["{}", "[1]", '{"resource":{},"record":{},"salt":""}', '{"record":{},"salt":5}']) {
    const r = await verifyReceipt({ receipt: fixtures.decision.receipt, evidence });
    assert.equal(stepsOf(r).content, false, evidence);
  }
});

test("every listed checkpoint is signed by the log key", async () => {
  const keys = await parseLogKeys(logKeys);
  for (const cp of checkpoints.checkpoints) {
    const body = await verifyCheckpoint(cp.note, keys);
    assert.equal(String(body.size), String(cp.treeSize));
    assert.equal(Buffer.from(body.root).toString("hex"), cp.root);
  }
});

test("signed notes: an Ed25519 key made by node:crypto, signed by node:crypto", async () => {
  const name = "test.example/log";
  const { vkey, signNote } = newKey(name);
  const root = createHash("sha256").update("x").digest();
  const note = signNote(`${name}\n12\n${root.toString("base64")}\n`);
  const keys = [await parseVerifierKey(vkey)];
  const body = await verifyCheckpoint(note, keys);
  assert.equal(body.size, 12n);
  await assert.rejects(verifyCheckpoint(note.replace("\n12\n", "\n13\n"), keys), /invalid signature/);
  await assert.rejects(verifyCheckpoint(note, await parseLogKeys(logKeys)), /no trusted key/);
  // A key whose name is not the checkpoint's origin does not count.
  await assert.rejects(verifyCheckpoint(signNote(`other.example/log\n12\n${root.toString("base64")}\n`), keys), /origin/);
  await assert.rejects(parseVerifierKey(vkey.replace(/\+([0-9a-f])/, (m, c) => "+" + (c === "0" ? "1" : "0"))), /hash/);
});

test("consistency between the first and last checkpoints verifies; altered, it does not", async () => {
  const cons = JSON.parse(read("consistency.json"));
  const cps = checkpoints.checkpoints;
  const first = cps[0];
  const last = cps[cps.length - 1];
  const proof = cons.proof.map(hexDecode);
  const ok = await verifyConsistency(BigInt(cons.from), BigInt(cons.to), proof, hexDecode(first.root), hexDecode(last.root));
  assert.equal(ok, null);
  const bad = [...proof];
  bad[0] = hexDecode(flipHex(cons.proof[0]));
  assert.notEqual(await verifyConsistency(BigInt(cons.from), BigInt(cons.to), bad, hexDecode(first.root), hexDecode(last.root)), null);
  assert.notEqual(await verifyConsistency(BigInt(cons.from), BigInt(cons.to), proof, hexDecode(flipHex(first.root)), hexDecode(last.root)), null);
  assert.notEqual(await verifyConsistency(BigInt(cons.from), BigInt(cons.to), proof.slice(1), hexDecode(first.root), hexDecode(last.root)), null);
});

test("base64 is read as Go's StdEncoding reads it", () => {
  assert.deepEqual(base64Decode("AQID"), Uint8Array.of(1, 2, 3));
  assert.deepEqual(base64Decode("AQI="), Uint8Array.of(1, 2));
  assert.equal(base64Decode("AQI"), null); // no padding
  assert.equal(base64Decode("AQ I="), null); // a space
  assert.deepEqual(base64Decode("AQ=="), Uint8Array.of(1));
  assert.equal(base64Decode("AR==", { strict: true }), null); // non-zero unused bits
  assert.deepEqual(base64Decode("AR=="), Uint8Array.of(1));
});

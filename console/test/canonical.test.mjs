// The console's canonical form against the Go goldens of fhir.Canonical
// (fhir/testdata/canonical): the bytes every resource commitment is over.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";

import { canonicalJSON, parse } from "../src/lib/canonical.js";

const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "fhir", "testdata", "canonical");

for (const f of readdirSync(dir).filter((f) => f.endsWith(".json")).sort()) {
  test(`canonical form of ${f} is the Go golden`, () => {
    const input = readFileSync(path.join(dir, f), "utf8");
    const golden = readFileSync(path.join(dir, f.replace(/\.json$/, ".golden")));
    assert.deepEqual(Buffer.from(canonicalJSON(input)), golden);
  });
}

test("what fhir.Decode refuses is refused", () => {
  for (const bad of [
    '{"a":1,"a":2}', // repeated member
    '{"a":1,"\\u0061":2}', // repeated by value, not spelling
    '{"a":1} x', // trailing data
    "{'a':1}",
    '{"a":01}',
    '{"a":1.}',
    '{"a":-}',
    '{"a":"\\x"}',
    '{"a":"tab\there"}', // raw control character
    "[1,]",
    "",
  ]) {
    assert.throws(() => canonicalJSON(bad), undefined, bad);
  }
});

test("numbers keep their lexical form", () => {
  assert.equal(new TextDecoder().decode(canonicalJSON('{"b": 1.50, "a": [1e3, -0, 0.10]}')), '{"a":[1e3,-0,0.10],"b":1.50}');
});

test("members are sorted by UTF-8 bytes, not UTF-16 units", () => {
  // UTF-8 puts U+FF61 (EF BD A1) before U+1F642 (F0 9F 99 82); UTF-16
  // compares 0xFF61 with the surrogate 0xD83D and would put the emoji first.
  const out = new TextDecoder().decode(canonicalJSON('{"\u{1F642}":1,"\uFF61":2}'));
  assert.equal(out, '{"\uFF61":2,"\u{1F642}":1}');
});

test("spans are the exact text of each value", () => {
  const text = '{ "record" : {"x": [1, 2]} , "salt":"ab" }';
  const v = parse(text);
  const rec = v.members[0][1];
  assert.equal(text.slice(rec.start, rec.end), '{"x": [1, 2]}');
});

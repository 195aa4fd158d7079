// JSON the way fhiranchor's Go code reads it, for the in-browser verifier.
//
// JSON.parse cannot be used: it turns 1.50 into 1.5 (a FHIR decimal's
// precision is part of the committed bytes), keeps the last of repeated
// member names silently, and forgets where a value was in the text (a
// decision record is committed as its exact bytes). parse() keeps numbers
// as written, every member in order, and each value's span in the text.
// canonical() is fhir.Canonical (docs/canonical-form.md): no whitespace,
// members sorted by the bytes of their UTF-8 names, numbers as written,
// strings with only '"', '\\' and control characters escaped.

const enc = new TextEncoder();

/** utf8 returns the UTF-8 bytes of a string. */
export function utf8(s) {
  return enc.encode(s);
}

export class JSONError extends Error {}

// A parsed value is a node {kind, start, end, ...}: kind "object" has
// members [[name, node], ...] in text order, "array" has items, "string"
// has value (decoded), "number" has text (as written), "bool" has value,
// "null". start and end index the text (UTF-16 units) so that
// text.slice(start, end) is the value exactly as written.

/**
 * parse reads one JSON value from text. With {trailing: true} whatever
 * follows the first value is ignored (as Go's json.Decoder.Decode does);
 * otherwise only whitespace may follow.
 */
export function parse(text, { trailing = false } = {}) {
  const p = new Parser(text);
  p.ws();
  const v = p.value(0);
  p.ws();
  if (!trailing && p.i !== text.length) {
    throw new JSONError(`data after the top-level value at offset ${p.i}`);
  }
  return v;
}

const numberRe = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const maxDepth = 10000; // Go's encoding/json refuses deeper nesting too

class Parser {
  constructor(text) {
    this.t = text;
    this.i = 0;
  }
  fail(what) {
    throw new JSONError(`${what} at offset ${this.i}`);
  }
  ws() {
    const t = this.t;
    while (this.i < t.length) {
      const c = t.charCodeAt(this.i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) this.i++;
      else break;
    }
  }
  value(depth) {
    if (depth > maxDepth) this.fail("nested too deep");
    const t = this.t;
    const start = this.i;
    const c = t[this.i];
    if (c === "{") {
      this.i++;
      const members = [];
      this.ws();
      if (t[this.i] === "}") {
        this.i++;
        return { kind: "object", members, start, end: this.i };
      }
      for (;;) {
        this.ws();
        if (t[this.i] !== '"') this.fail("expected a member name");
        const name = this.string().value;
        this.ws();
        if (t[this.i] !== ":") this.fail("expected ':'");
        this.i++;
        this.ws();
        members.push([name, this.value(depth + 1)]);
        this.ws();
        if (t[this.i] === ",") {
          this.i++;
          continue;
        }
        if (t[this.i] === "}") {
          this.i++;
          return { kind: "object", members, start, end: this.i };
        }
        this.fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      this.i++;
      const items = [];
      this.ws();
      if (t[this.i] === "]") {
        this.i++;
        return { kind: "array", items, start, end: this.i };
      }
      for (;;) {
        this.ws();
        items.push(this.value(depth + 1));
        this.ws();
        if (t[this.i] === ",") {
          this.i++;
          continue;
        }
        if (t[this.i] === "]") {
          this.i++;
          return { kind: "array", items, start, end: this.i };
        }
        this.fail("expected ',' or ']'");
      }
    }
    if (c === '"') return this.string();
    for (const [word, node] of [
      ["true", { kind: "bool", value: true }],
      ["false", { kind: "bool", value: false }],
      ["null", { kind: "null" }],
    ]) {
      if (t.startsWith(word, this.i)) {
        this.i += word.length;
        return { ...node, start, end: this.i };
      }
    }
    numberRe.lastIndex = this.i;
    const m = numberRe.exec(t);
    if (m) {
      this.i += m[0].length;
      return { kind: "number", text: m[0], start, end: this.i };
    }
    this.fail("invalid value");
  }
  string() {
    const t = this.t;
    const start = this.i;
    this.i++; // opening quote
    let out = "";
    let run = this.i;
    for (;;) {
      if (this.i >= t.length) this.fail("unterminated string");
      const c = t.charCodeAt(this.i);
      if (c === 0x22) {
        out += t.slice(run, this.i);
        this.i++;
        return { kind: "string", value: out, start, end: this.i };
      }
      if (c < 0x20) this.fail("control character in string");
      if (c !== 0x5c) {
        this.i++;
        continue;
      }
      out += t.slice(run, this.i);
      const e = t[this.i + 1];
      const simple = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" }[e];
      if (simple !== undefined) {
        out += simple;
        this.i += 2;
      } else if (e === "u") {
        const hex = t.slice(this.i + 2, this.i + 6);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail("invalid \\u escape");
        // A lone surrogate stays one here; utf8() then writes U+FFFD for
        // it, as Go's decoder does.
        out += String.fromCharCode(parseInt(hex, 16));
        this.i += 6;
      } else {
        this.fail("invalid escape");
      }
      run = this.i;
    }
  }
}

/** member returns the node of an object's member, or undefined. */
export function member(node, name) {
  if (node.kind !== "object") return undefined;
  let found;
  for (const [k, v] of node.members) if (k === name) found = v;
  return found;
}

// compareUTF8 orders strings by their UTF-8 bytes, which is code point
// order (JS's < compares UTF-16 units, which differs above U+D7FF).
function compareUTF8(a, b) {
  const x = utf8(a);
  const y = utf8(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

const hexDigits = "0123456789abcdef";

function canonString(s) {
  let out = '"';
  for (const ch of s) {
    const c = ch.charCodeAt(0);
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (c < 0x20) {
      out += { 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t" }[c] ?? "\\u00" + hexDigits[c >> 4] + hexDigits[c & 15];
    } else out += ch;
  }
  return out + '"';
}

function canonNode(n) {
  switch (n.kind) {
    case "null":
      return "null";
    case "bool":
      return n.value ? "true" : "false";
    case "number":
      return n.text;
    case "string":
      return canonString(n.value);
    case "array":
      return "[" + n.items.map(canonNode).join(",") + "]";
    case "object": {
      const seen = new Set();
      for (const [k] of n.members) {
        if (seen.has(k)) throw new JSONError("repeated member name in an object");
        seen.add(k);
      }
      const ms = [...n.members].sort((a, b) => compareUTF8(a[0], b[0]));
      return "{" + ms.map(([k, v]) => canonString(k) + ":" + canonNode(v)).join(",") + "}";
    }
  }
  throw new JSONError("unknown node");
}

/**
 * canonicalJSON returns the canonical UTF-8 bytes of JSON text, as
 * fhir.CanonicalJSON does: an error for invalid JSON, trailing data or a
 * repeated member name.
 */
export function canonicalJSON(text) {
  if (typeof text === "string" && !text.isWellFormed()) throw new JSONError("not UTF-8");
  return utf8(canonNode(parse(text)));
}

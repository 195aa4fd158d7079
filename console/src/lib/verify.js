// The receipt verifier of the console: what `fhiranchor verify` checks
// (cmd/fhiranchor/verify.go), done in the browser with WebCrypto so that an
// auditor or a patient needs neither the CLI nor trust in the server that
// handed them the receipt. No DOM here; the pages show the steps.
//
// verifyReceipt returns one step per check, {name, ok, detail}, ok being
// true (passed), false (failed) or null (not checked, with the reason):
//
//   receipt  the text is a fhiranchor receipt (anchor.Receipt, strictly)
//   signed   its checkpoint is a C2SP signed note by the log's key, naming
//            the receipt's tree size and root (anchor.VerifyReceiptSigned)
//   proof    the leaf type's name and number agree and the RFC 6962 audit
//            path leads from the leaf to the root (anchor.VerifyReceipt)
//   content  the evidence and its salt hash to the commitment
//            (anchor.VerifyContent over fhir.CanonicalJSON or exact bytes)
//   anchor   the anchor the receipt names, compared with the gateway's
//            record of it when the caller passes the checkpoint listing;
//            the chain itself is not asked (the console talks to its own
//            origin only), as `fhiranchor verify` without --rpc
//
// The verdict is FAILED when any step fails; the rules (which fields,
// which lengths, which encodings are accepted) follow the Go code so that
// the two agree on every receipt (TestConsoleVerifyAgreesWithCLI).

import { JSONError, canonicalJSON, member, parse, utf8 } from "./canonical.js";

const subtle = globalThis.crypto.subtle;

export const SALT_SIZE = 32;
const HASH_SIZE = 32;
const COMMIT_DOMAIN = "fhiranchor/v1/commitment\x00";
const MAX_U64 = (1n << 64n) - 1n;

const leafTypeNames = {
  1: "resource-version",
  2: "consent-event",
  3: "policy-activation",
  4: "access-decision",
  5: "erasure",
  6: "deidentification",
};

/** leafTypeName is anchor.LeafType.String. */
export function leafTypeName(n) {
  return leafTypeNames[n] ?? `leaf-type-${n}`;
}

// ---- bytes ----

function concat(...parts) {
  const n = parts.reduce((s, p) => s + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function equal(a, b) {
  if (!a || !b || a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

/** sha256 hashes the concatenation of byte arrays. */
export async function sha256(...parts) {
  return new Uint8Array(await subtle.digest("SHA-256", concat(...parts)));
}

/** hexDecode is Go's hex.DecodeString: even length, either case; null if invalid. */
export function hexDecode(s) {
  if (typeof s !== "string" || s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) return null;
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** hexEncode writes lowercase hex. */
export function hexEncode(b) {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/**
 * base64Decode is Go's base64.StdEncoding.DecodeString (padding required;
 * '\r' and '\n' skipped; with strict, unused bits must be zero, as
 * StdEncoding.Strict()). It returns null for invalid input. atob would
 * accept more (spaces, missing padding) than the Go verifier does.
 */
export function base64Decode(s, { strict = false } = {}) {
  s = s.replace(/[\r\n]/g, "");
  if (s.length % 4 !== 0) return null;
  const out = [];
  for (let i = 0; i < s.length; i += 4) {
    const q = s.slice(i, i + 4);
    const last = i + 4 === s.length;
    const pad = q.endsWith("==") ? 2 : q.endsWith("=") ? 1 : 0;
    if (pad && !last) return null;
    const v = [];
    for (const ch of q.slice(0, 4 - pad)) {
      const x = b64.indexOf(ch);
      if (x < 0) return null;
      v.push(x);
    }
    if (v.length < 2) return null;
    const n = (v[0] << 18) | (v[1] << 12) | ((v[2] ?? 0) << 6) | (v[3] ?? 0);
    out.push((n >> 16) & 255);
    if (pad < 2) out.push((n >> 8) & 255);
    if (pad < 1) out.push(n & 255);
    if (strict && ((pad === 2 && (n & 0xffff) !== 0) || (pad === 1 && (n & 0xff) !== 0))) return null;
  }
  return new Uint8Array(out);
}

/** base64Encode writes standard padded base64. */
export function base64Encode(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    s += b64[(n >> 18) & 63] + b64[(n >> 12) & 63];
    s += i + 1 < bytes.length ? b64[(n >> 6) & 63] : "=";
    s += i + 2 < bytes.length ? b64[n & 63] : "=";
  }
  return s;
}

// ---- RFC 6962 Merkle tree (transparency-dev/merkle proof) ----

/** hashLeaf is the RFC 6962 leaf hash SHA-256(0x00 || data). */
export function hashLeaf(data) {
  return sha256(Uint8Array.of(0), data);
}

function hashChildren(l, r) {
  return sha256(Uint8Array.of(1), l, r);
}

function bitLen(x) {
  return x === 0n ? 0 : x.toString(2).length;
}

function onesCount(x) {
  let n = 0;
  for (; x > 0n; x >>= 1n) n += Number(x & 1n);
  return n;
}

function trailingZeros(x) {
  let n = 0;
  for (; x > 0n && (x & 1n) === 0n; x >>= 1n) n++;
  return n;
}

function decompInclProof(index, size) {
  const inner = bitLen(index ^ (size - 1n));
  return [inner, onesCount(index >> BigInt(inner))];
}

async function chainInner(seed, proof, index) {
  for (let i = 0; i < proof.length; i++) {
    seed = ((index >> BigInt(i)) & 1n) === 0n ? await hashChildren(seed, proof[i]) : await hashChildren(proof[i], seed);
  }
  return seed;
}

async function chainInnerRight(seed, proof, index) {
  for (let i = 0; i < proof.length; i++) {
    if (((index >> BigInt(i)) & 1n) === 1n) seed = await hashChildren(proof[i], seed);
  }
  return seed;
}

async function chainBorderRight(seed, proof) {
  for (const h of proof) seed = await hashChildren(h, seed);
  return seed;
}

/**
 * verifyInclusion checks an RFC 6962 audit path (BigInt index and size).
 * It returns null when the path leads from leafHash to root, else why not.
 */
export async function verifyInclusion(index, size, leafHash, proof, root) {
  if (index >= size) return `index is beyond size: ${index} >= ${size}`;
  const [inner, border] = decompInclProof(index, size);
  if (proof.length !== inner + border) return `wrong proof size ${proof.length}, want ${inner + border}`;
  let res = await chainInner(leafHash, proof.slice(0, inner), index);
  res = await chainBorderRight(res, proof.slice(inner));
  return equal(res, root) ? null : `the path leads to root ${hexEncode(res)}, not ${hexEncode(root)}`;
}

/**
 * verifyConsistency checks an RFC 6962 consistency proof that the tree of
 * size2 (root2) extends the tree of size1 (root1), sizes as BigInt. It
 * returns null if it does, else why not.
 */
export async function verifyConsistency(size1, size2, proof, root1, root2) {
  if (size2 < size1) return `size2 (${size2}) < size1 (${size1})`;
  if (size1 === size2) {
    if (proof.length > 0) return "size1=size2, but proof is not empty";
    return equal(root1, root2) ? null : "equal sizes with different roots";
  }
  if (size1 === 0n) return proof.length > 0 ? `expected empty proof, but got ${proof.length} components` : null;
  if (proof.length === 0) return "empty proof";
  let [inner, border] = decompInclProof(size1 - 1n, size2);
  const shift = trailingZeros(size1);
  inner -= shift;
  let seed = proof[0];
  let start = 1;
  if (size1 === 1n << BigInt(shift)) {
    seed = root1;
    start = 0;
  }
  if (proof.length !== start + inner + border) return `wrong proof size ${proof.length}, want ${start + inner + border}`;
  const p = proof.slice(start);
  const mask = (size1 - 1n) >> BigInt(shift);
  let hash1 = await chainInnerRight(seed, p.slice(0, inner), mask);
  hash1 = await chainBorderRight(hash1, p.slice(inner));
  if (!equal(hash1, root1)) return `the proof leads to old root ${hexEncode(hash1)}, not ${hexEncode(root1)}`;
  let hash2 = await chainInner(seed, p.slice(0, inner), mask);
  hash2 = await chainBorderRight(hash2, p.slice(inner));
  if (!equal(hash2, root2)) return `the proof leads to new root ${hexEncode(hash2)}, not ${hexEncode(root2)}`;
  return null;
}

// ---- signed notes (c2sp.org/signed-note, golang.org/x/mod/sumdb/note) ----

// Go's unicode.IsSpace.
const spaceRe = /[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/u;

function isValidName(name) {
  return name !== "" && name.isWellFormed() && !spaceRe.test(name) && !name.includes("+");
}

function cut(s, sep) {
  const i = s.indexOf(sep);
  return i < 0 ? [s, "", false] : [s.slice(0, i), s.slice(i + sep.length), true];
}

async function keyHash(name, key) {
  const sum = await sha256(utf8(name + "\n"), key);
  return ((sum[0] << 24) | (sum[1] << 16) | (sum[2] << 8) | sum[3]) >>> 0;
}

export class VerifyError extends Error {}

/**
 * parseVerifierKey reads a note verifier key "<name>+<hash>+<base64>"
 * (note.NewVerifier): an Ed25519 public key named after the log's origin.
 */
export async function parseVerifierKey(vkey) {
  const [name, rest] = cut(vkey, "+");
  const [hash16, key64] = cut(rest, "+");
  const key = base64Decode(key64);
  if (hash16.length !== 8 || !/^[0-9a-fA-F]{8}$/.test(hash16) || key === null || !isValidName(name) || key.length === 0) {
    throw new VerifyError("malformed verifier id");
  }
  const hash = parseInt(hash16, 16) >>> 0;
  if (hash !== (await keyHash(name, key))) throw new VerifyError("invalid verifier hash");
  if (key[0] !== 1) throw new VerifyError("unknown verifier algorithm");
  if (key.length !== 33) throw new VerifyError("malformed verifier id");
  const pub = await subtle.importKey("raw", key.slice(1), { name: "Ed25519" }, false, ["verify"]);
  return {
    name,
    hash,
    text: vkey,
    verify: (msg, sig) => subtle.verify({ name: "Ed25519" }, pub, sig, msg),
  };
}

/**
 * parseLogKeys reads verifier keys, one a line (blank lines and lines
 * starting with # skipped), as `fhiranchor verify --log-key FILE` does.
 * A key given twice counts once.
 */
export async function parseLogKeys(text) {
  const out = [];
  const seen = new Set();
  const lines = String(text ?? "").split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === "" || line.startsWith("#") || seen.has(line)) continue;
    try {
      out.push(await parseVerifierKey(line));
    } catch (e) {
      throw new VerifyError(`line ${i + 1} is not a verifier key: ${e.message}`);
    }
    seen.add(line);
  }
  return out;
}

/**
 * openNote is note.Open: it checks the signatures of a signed note and
 * returns {text, sigs} when one of verifiers signed it. Signatures by
 * unknown keys are ignored; an invalid one by a known key is an error.
 */
export async function openNote(msg, verifiers) {
  if (!msg.isWellFormed()) throw new VerifyError("malformed note");
  for (const ch of msg) {
    if (ch.charCodeAt(0) < 0x20 && ch !== "\n") throw new VerifyError("malformed note");
  }
  const split = msg.lastIndexOf("\n\n");
  if (split < 0) throw new VerifyError("malformed note");
  const text = msg.slice(0, split + 1);
  let sigs = msg.slice(split + 2);
  if (sigs.length === 0 || !sigs.endsWith("\n")) throw new VerifyError("malformed note");
  const textBytes = utf8(text);
  const verified = [];
  const unverified = [];
  const seen = new Set();
  const seenUnverified = new Set();
  let numSig = 0;
  while (sigs.length > 0) {
    const i = sigs.indexOf("\n");
    let line = sigs.slice(0, i);
    sigs = sigs.slice(i + 1);
    if (!line.startsWith("\u2014 ")) throw new VerifyError("malformed note");
    line = line.slice(2);
    const [name, sig64] = cut(line, " ");
    const sig = base64Decode(sig64);
    if (sig === null || !isValidName(name) || sig64 === "" || sig.length < 5) throw new VerifyError("malformed note");
    const hash = ((sig[0] << 24) | (sig[1] << 16) | (sig[2] << 8) | sig[3]) >>> 0;
    if (++numSig > 100) throw new VerifyError("malformed note");
    const matches = verifiers.filter((v) => v.name === name && v.hash === hash);
    if (matches.length === 0) {
      if (!seenUnverified.has(line)) {
        seenUnverified.add(line);
        unverified.push({ name, hash });
      }
      continue;
    }
    if (matches.length > 1) throw new VerifyError(`ambiguous key ${name}+${hash.toString(16).padStart(8, "0")}`);
    const id = `${name}+${hash}`;
    if (seen.has(id)) continue;
    seen.add(id);
    if (!(await matches[0].verify(textBytes, sig.slice(4)))) {
      throw new VerifyError(`invalid signature by ${name}+${hash.toString(16).padStart(8, "0")}`);
    }
    verified.push({ name, hash });
  }
  if (verified.length === 0) {
    const who = unverified.map((s) => `${s.name}+${s.hash.toString(16).padStart(8, "0")}`).join(", ") || "no signature";
    throw new VerifyError(`signed by no trusted key (${who})`);
  }
  return { text, sigs: verified };
}

function checkLine(s) {
  if (s === "") return "empty";
  for (const ch of s) {
    const c = ch.codePointAt(0);
    if (c < 0x20 || c === 0x7f) return "holds a control character";
  }
  return null;
}

/**
 * parseCheckpointBody is anchor.ParseCheckpointBody (c2sp.org/tlog-checkpoint):
 * origin, tree size (BigInt), root (32 bytes), extension lines.
 */
export function parseCheckpointBody(text) {
  if (!text.endsWith("\n")) throw new VerifyError("malformed checkpoint: text does not end with a newline");
  const lines = text.slice(0, -1).split("\n");
  if (lines.length < 3) throw new VerifyError(`malformed checkpoint: ${lines.length} lines, want at least 3`);
  lines.forEach((l, i) => {
    const why = checkLine(l);
    if (why) throw new VerifyError(`malformed checkpoint: line ${i + 1} ${why}`);
  });
  if (!/^(0|[1-9][0-9]*)$/.test(lines[1]) || BigInt(lines[1]) > MAX_U64) {
    throw new VerifyError("malformed checkpoint: the tree size is not a decimal number");
  }
  const root = base64Decode(lines[2], { strict: true });
  if (root === null || root.length !== HASH_SIZE || base64Encode(root) !== lines[2]) {
    throw new VerifyError("malformed checkpoint: the root is not 32 bytes of base64");
  }
  return { origin: lines[0], size: BigInt(lines[1]), root, extensions: lines.slice(3) };
}

/**
 * verifyCheckpoint is anchor.VerifyCheckpoint: a signed checkpoint's body,
 * if a signature by one of verifiers whose name is the checkpoint's origin
 * verifies on it.
 */
export async function verifyCheckpoint(msg, verifiers) {
  if (verifiers.length === 0) throw new VerifyError("no verifier key given");
  let n;
  try {
    n = await openNote(msg, verifiers);
  } catch (e) {
    throw new VerifyError(`checkpoint signature does not verify: ${e.message}`);
  }
  const body = parseCheckpointBody(n.text);
  if (!n.sigs.some((s) => s.name === body.origin)) {
    throw new VerifyError(`checkpoint signature does not verify: not signed by a key of origin ${JSON.stringify(body.origin)}`);
  }
  return body;
}

// ---- receipts (anchor.Receipt as encoding/json decodes it) ----

// Go's encoding/json matches member names to fields exactly or else
// case-insensitively, keeps the last of repeated members, and with
// DisallowUnknownFields refuses any other name.
function fields(node, spec, what) {
  if (node.kind === "null") return {};
  if (node.kind !== "object") throw new VerifyError(`${what} is not a JSON object`);
  const out = {};
  for (const [k, v] of node.members) {
    const f = spec[k] ? k : Object.keys(spec).find((s) => s.toLowerCase() === k.toLowerCase());
    if (!f) throw new VerifyError(`${what} has an unknown field ${JSON.stringify(k)}`);
    if (v.kind === "null" && spec[f] !== "any") continue;
    out[f] = decodeField(v, spec[f], `${what} field ${f}`);
  }
  return out;
}

function decodeField(v, type, what) {
  const bad = () => new VerifyError(`${what} is not a ${typeof type === "string" ? type : "object"}`);
  if (typeof type === "object") return fields(v, type, what);
  switch (type) {
    case "uint64":
    case "uint8": {
      if (v.kind !== "number" || !/^[0-9]+$/.test(v.text)) throw bad();
      const n = BigInt(v.text);
      if (n > (type === "uint8" ? 255n : MAX_U64)) throw bad();
      return n;
    }
    case "string":
      if (v.kind !== "string") throw bad();
      return v.value;
    case "bool":
      if (v.kind !== "bool") throw bad();
      return v.value;
    case "hex": {
      if (v.kind !== "string") throw bad();
      const b = hexDecode(v.value);
      if (b === null) throw new VerifyError(`${what} is not hex`);
      return b;
    }
    case "hex[]":
      if (v.kind !== "array") throw bad();
      return v.items.map((it, i) => (it.kind === "null" ? new Uint8Array(0) : decodeField(it, "hex", `${what}[${i}]`)));
    case "time":
      if (v.kind !== "string" || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(v.value)) throw bad();
      return v.value;
  }
  throw bad();
}

const receiptSpec = {
  leafIndex: "uint64",
  leafType: "string",
  leafTypeNumber: "uint8",
  commitment: "hex",
  status: "string",
  erased: "bool",
  treeSize: "uint64",
  root: "hex",
  auditPath: "hex[]",
  anchor: {
    seq: "uint64",
    chainId: "uint64",
    contract: "string",
    txHash: "hex",
    blockNumber: "uint64",
    blockHash: "hex",
    blockTime: "time",
  },
  checkpoint: "string",
};

/**
 * parseReceipt reads a receipt as `fhiranchor verify` does (strictly:
 * unknown fields are refused; only the first JSON value is read).
 */
export function parseReceipt(text) {
  let node;
  try {
    node = parse(text, { trailing: true });
  } catch (e) {
    throw new VerifyError(`the receipt is not JSON: ${e.message}`);
  }
  const r = fields(node, receiptSpec, "the receipt");
  return {
    leafIndex: r.leafIndex ?? 0n,
    leafType: r.leafType ?? "",
    leafTypeNumber: Number(r.leafTypeNumber ?? 0n),
    commitment: r.commitment ?? new Uint8Array(0),
    status: r.status ?? "",
    erased: r.erased ?? false,
    treeSize: r.treeSize ?? 0n,
    root: r.root ?? new Uint8Array(0),
    auditPath: r.auditPath ?? [],
    anchor: node.kind === "object" && r.anchor !== undefined ? r.anchor : null,
    checkpoint: r.checkpoint ?? "",
  };
}

function leafTypeOf(r) {
  if (leafTypeName(r.leafTypeNumber) !== r.leafType) {
    throw new VerifyError(`leaf type name and number disagree: ${JSON.stringify(r.leafType)} is not type ${r.leafTypeNumber}`);
  }
  return r.leafTypeNumber;
}

/** verifyProof is anchor.VerifyReceipt; it throws VerifyError if the receipt fails. */
export async function verifyProof(r) {
  const typ = leafTypeOf(r);
  if (r.commitment.length !== HASH_SIZE) throw new VerifyError(`malformed receipt: commitment is ${r.commitment.length} bytes, want ${HASH_SIZE}`);
  if (r.status === "pending") throw new VerifyError("the receipt is pending: no anchor covers its leaf yet; fetch it again later");
  if (r.status !== "anchored" && r.status !== "confirmed") throw new VerifyError(`malformed receipt: status ${JSON.stringify(r.status)}`);
  if (!r.anchor) throw new VerifyError(`malformed receipt: ${r.status} receipt without anchor`);
  if (r.leafIndex >= r.treeSize) throw new VerifyError(`malformed receipt: leaf index ${r.leafIndex} not in a tree of size ${r.treeSize}`);
  if (r.root.length !== HASH_SIZE) throw new VerifyError(`malformed receipt: root is ${r.root.length} bytes, want ${HASH_SIZE}`);
  r.auditPath.forEach((h, i) => {
    if (h.length !== HASH_SIZE) throw new VerifyError(`malformed receipt: audit path hash ${i} is ${h.length} bytes, want ${HASH_SIZE}`);
  });
  const leaf = await hashLeaf(concat(Uint8Array.of(typ), r.commitment));
  const why = await verifyInclusion(r.leafIndex, r.treeSize, leaf, r.auditPath, r.root);
  if (why) throw new VerifyError(`inclusion proof does not verify: leaf ${r.leafIndex} in tree of size ${r.treeSize}: ${why}`);
}

/** commit is anchor.Commit: SHA-256(domain || type || salt || canonical). */
export function commit(type, salt, canonical) {
  return sha256(utf8(COMMIT_DOMAIN), Uint8Array.of(type), salt, canonical);
}

function parseSalt(s) {
  const salt = typeof s === "string" ? hexDecode(s) : null;
  if (salt === null || salt.length !== SALT_SIZE) throw new VerifyError(`the salt must be ${SALT_SIZE} bytes of hex`);
  return salt;
}

/**
 * evidenceContent reads what a receipt commits to, as verify.go's content
 * does: an evidence document {"resource", "salt"} (hashed in canonical
 * form) or {"record", "salt"} (its exact bytes), or a resource and a salt
 * given apart. It returns null when nothing was given.
 */
export function evidenceContent({ evidence, resource, salt } = {}) {
  const has = (x) => x !== undefined && x !== null && x !== "";
  if (has(evidence) && has(resource)) throw new VerifyError("give evidence or a resource, not both");
  let resourceText;
  let saltHex = salt;
  if (has(evidence)) {
    let node;
    try {
      node = parse(evidence);
    } catch {
      node = null;
    }
    // json.Unmarshal into {resource, record json.RawMessage; salt string}:
    // names matched case-insensitively, the last repeat wins.
    let res;
    let rec;
    let badSalt = false;
    saltHex = "";
    if (node && node.kind === "object") {
      for (const [k, v] of node.members) {
        const name = k.toLowerCase();
        if (name === "resource") res = v;
        else if (name === "record") rec = v;
        else if (name === "salt") {
          if (v.kind === "string") saltHex = v.value;
          else if (v.kind !== "null") badSalt = true;
        }
      }
    }
    if (!node || (node.kind !== "object" && node.kind !== "null") || badSalt || (res === undefined) === (rec === undefined)) {
      throw new VerifyError('the evidence is neither {"resource": ..., "salt": ...} nor {"record": ..., "salt": ...}');
    }
    if (rec !== undefined) {
      const s = parseSalt(saltHex);
      // The record's bytes exactly as they are in the evidence.
      return { committed: utf8(evidence.slice(rec.start, rec.end)), salt: s, what: "record" };
    }
    resourceText = evidence.slice(res.start, res.end);
  } else if (has(resource)) {
    resourceText = resource;
  } else {
    return null;
  }
  const s = parseSalt(saltHex);
  let canonical;
  try {
    canonical = canonicalJSON(resourceText);
  } catch (e) {
    if (e instanceof JSONError) throw new VerifyError(`the resource is not JSON: ${e.message}`);
    throw e;
  }
  return { committed: canonical, salt: s, what: "resource" };
}

/** verifyContent is anchor.VerifyContent. */
export async function verifyContent(r, salt, committed) {
  const typ = leafTypeOf(r);
  if (r.commitment.length !== HASH_SIZE) throw new VerifyError(`malformed receipt: commitment is ${r.commitment.length} bytes, want ${HASH_SIZE}`);
  if (salt.length !== SALT_SIZE) throw new VerifyError(`the salt is ${salt.length} bytes, want ${SALT_SIZE}`);
  if (!equal(await commit(typ, salt, committed), r.commitment)) {
    throw new VerifyError("content does not match the commitment");
  }
}

function message(e) {
  if (e instanceof VerifyError) return e.message;
  throw e; // a bug, not a verdict
}

/**
 * verifyReceipt checks a receipt and, when given, its evidence.
 *
 * input: {receipt: text, evidence?: text, resource?: text, salt?: hex,
 * logKeys?: text (verifier keys, one a line), checkpoints?: the parsed
 * GET /v1/log/checkpoints document}. It returns {ok, verdict, steps}.
 */
export async function verifyReceipt(input) {
  const steps = [];
  const step = (name, ok, detail) => steps.push({ name, ok, detail });
  const done = () => {
    const ok = steps.every((s) => s.ok !== false);
    const erased = r && r.erased && steps.find((s) => s.name === "content")?.ok === null;
    return { ok, verdict: !ok ? "FAILED" : erased ? "VERIFIED: anchored, content erased" : "VERIFIED", steps };
  };

  let r = null;
  try {
    r = parseReceipt(input.receipt ?? "");
    step("receipt", true, `leaf ${r.leafIndex} (${r.leafType || "no type"}), ${r.status || "no status"}`);
  } catch (e) {
    step("receipt", false, `not a fhiranchor receipt: ${message(e)}`);
    return done();
  }

  // signed: the log's key signed this tree size and root.
  let keys = [];
  let keyError = null;
  try {
    keys = await parseLogKeys(input.logKeys);
  } catch (e) {
    keyError = message(e);
  }
  if (keyError) {
    step("signed", false, `log key: ${keyError}`);
  } else if (keys.length === 0) {
    step("signed", null, "not checked (no log key); the root is as the server sent it");
  } else if (r.status === "pending") {
    step("signed", null, "not checked: the receipt is pending, no checkpoint covers it yet");
  } else if (r.checkpoint === "") {
    step("signed", false, "the receipt carries no signed checkpoint");
  } else {
    try {
      const cp = await verifyCheckpoint(r.checkpoint, keys);
      if (cp.size !== r.treeSize) {
        throw new VerifyError(`the checkpoint signs tree size ${cp.size}, the receipt says ${r.treeSize}`);
      }
      if (!equal(cp.root, r.root)) {
        throw new VerifyError(`the checkpoint signs root ${hexEncode(cp.root)}, the receipt says ${hexEncode(r.root)}`);
      }
      step("signed", true, `the log key of ${cp.origin} signed tree size ${cp.size} and root ${hexEncode(cp.root)}`);
    } catch (e) {
      step("signed", false, message(e));
    }
  }

  try {
    await verifyProof(r);
    step("proof", true, `${r.leafType} leaf ${r.leafIndex} is in the tree of ${r.treeSize} leaves with root ${hexEncode(r.root)}`);
  } catch (e) {
    step("proof", false, message(e));
  }

  try {
    const c = evidenceContent(input);
    if (c) {
      await verifyContent(r, c.salt, c.committed);
      step("content", true, `the ${c.what} and salt hash to the receipt's commitment`);
    } else if (r.erased) {
      step("content", null, "erased: the leaf stays anchored but what it committed to was crypto-shredded");
    } else {
      step("content", null, "not checked (no evidence given)");
    }
  } catch (e) {
    step("content", false, message(e));
  }

  step(...anchorStep(r, input.checkpoints));
  return done();
}

// anchorStep compares the anchor a receipt names with the gateway's own
// record of it (GET /v1/log/checkpoints), if given. It cannot stand for
// asking the chain, and says so.
function anchorStep(r, listing) {
  const a = r.anchor;
  if (!a) return ["anchor", null, "the receipt names no anchor"];
  const names = `anchor ${a.seq} in contract ${a.contract ?? ""} on chain ${a.chainId ?? 0n}, transaction ${hexEncode(a.txHash ?? [])}, block ${a.blockNumber ?? 0n}`;
  if (!listing || !Array.isArray(listing.checkpoints)) return ["anchor", null, `not checked on chain; the receipt names ${names}`];
  const cp = listing.checkpoints.find((c) => c.anchor && String(c.anchor.seq) === String(a.seq));
  if (!cp) return ["anchor", false, `the gateway records no anchor ${a.seq}`];
  const rec = cp.anchor;
  if (String(rec.treeSize) !== String(r.treeSize) || String(rec.root).toLowerCase() !== hexEncode(r.root)) {
    return ["anchor", false, `the gateway's anchor ${a.seq} is root ${rec.root} of ${rec.treeSize} leaves, not the receipt's`];
  }
  return ["anchor", true, `the gateway's record of ${names} holds this root (${rec.status}); ask the chain with fhiranchor verify --rpc to check it there`];
}

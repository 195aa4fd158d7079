// Validates FHIR R4 JSON resources offline with the third-party `fhir` npm
// package (FHIR.js, Lantana Consulting Group), pinned in package.json.
//
//   node validate.mjs <file-or-dir>...
//
// Inputs: *.ndjson files (one resource per line) and *.json files (one
// resource; a Bundle is checked as its envelope, entry[].resource removed,
// plus each entry resource on its own, recursively). A directory is walked
// recursively for *.json and *.ndjson; a file named explicitly is read as
// NDJSON if its name ends in .ndjson, as JSON otherwise.
//
// stdout: one summary line per file, then one JSON line
//   {"files":N,"resources":N,"invalid":N,"byType":{"<type>":{"resources":N,"invalid":N}}}
// stderr: for each invalid resource, its file, line (where the resource's
// object starts), resourceType and the validator's error/fatal messages as
// element path + message text. Resource values are never printed: FHIR.js
// quotes values into its messages, so messages are reduced to fixed texts
// (unknown message shapes are withheld) and path segments that are not plain
// element names (e.g. an unexpected key) are masked.
//
// Exit status: 0 all valid, 1 at least one invalid resource (a JSON syntax
// error counts as one invalid resource), 2 usage or IO error (takes
// precedence).

import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import fhirPkg from 'fhir';

const { Fhir, ParseConformance, Versions } = fhirPkg;

// R4 explicitly: ParseConformance(loadCached=true) loads the package's
// pre-parsed R4 (4.0.x) StructureDefinitions and ValueSets (profiles/types.json,
// profiles/valuesets.json); the version argument selects R4 parsing rules.
const fhir = new Fhir(new ParseConformance(true, Versions.R4));
const OPTIONS = {
  // Unknown elements are errors in FHIR JSON; FHIR.js only warns by default.
  errorOnUnexpected: true,
};

// ---------------------------------------------------------------------------
// JSON parser that remembers the line on which each object starts.

class JsonSyntaxError extends Error {
  constructor(reason, line) {
    super(reason);
    this.reason = reason;
    this.line = line;
  }
}

const NUMBER_RE = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const CONTROL_RE = /[\u0000-\u001f]/;

function parseJson(text, firstLine = 1) {
  const lines = new WeakMap();
  let i = 0;
  let line = firstLine;
  const n = text.length;

  const fail = (reason) => {
    throw new JsonSyntaxError(reason, line);
  };
  const ws = () => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x0a) line++;
      else if (c !== 0x20 && c !== 0x09 && c !== 0x0d) break;
      i++;
    }
  };
  const str = () => {
    // text[i] === '"'
    let j = i + 1;
    let escaped = false;
    while (j < n) {
      const c = text.charCodeAt(j);
      if (c === 0x22) break;
      if (c === 0x5c) {
        escaped = true;
        j += 2;
        continue;
      }
      j++;
    }
    if (j >= n) fail('unterminated string');
    const raw = text.slice(i + 1, j);
    if (CONTROL_RE.test(raw)) fail('control character in string');
    let s = raw;
    if (escaped) {
      try {
        s = JSON.parse(text.slice(i, j + 1));
      } catch {
        fail('invalid escape in string');
      }
    }
    i = j + 1;
    return s;
  };
  const value = () => {
    ws();
    if (i >= n) fail('unexpected end of input');
    const c = text[i];
    if (c === '{') {
      const obj = {};
      lines.set(obj, line);
      i++;
      ws();
      if (text[i] === '}') {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail('expected a property name');
        const key = str();
        ws();
        if (text[i] !== ':') fail("expected ':'");
        i++;
        const v = value();
        if (key === '__proto__') {
          Object.defineProperty(obj, key, { value: v, enumerable: true, writable: true, configurable: true });
        } else {
          obj[key] = v;
        }
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return obj;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === '[') {
      const arr = [];
      i++;
      ws();
      if (text[i] === ']') {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(value());
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return arr;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return str();
    if (text.startsWith('true', i)) {
      i += 4;
      return true;
    }
    if (text.startsWith('false', i)) {
      i += 5;
      return false;
    }
    if (text.startsWith('null', i)) {
      i += 4;
      return null;
    }
    NUMBER_RE.lastIndex = i;
    const m = NUMBER_RE.exec(text);
    if (m) {
      i += m[0].length;
      return Number(m[0]);
    }
    fail('unexpected character');
  };

  if (text.charCodeAt(0) === 0xfeff) i = 1;
  let result;
  try {
    result = value();
  } catch (e) {
    if (e instanceof RangeError) throw new JsonSyntaxError('nesting too deep', line);
    throw e;
  }
  ws();
  if (i < n) fail('trailing data after the JSON value');
  return { value: result, lines };
}

// ---------------------------------------------------------------------------
// Redaction of validator output.

const SAFE_TYPE_RE = /^[A-Z][A-Za-z0-9]{0,63}$/;

function typeLabel(res) {
  if (res === null || typeof res !== 'object' || Array.isArray(res)) return '(not a JSON object)';
  if (!('resourceType' in res)) return '(no resourceType)';
  if (typeof res.resourceType === 'string' && SAFE_TYPE_RE.test(res.resourceType)) return res.resourceType;
  return '(malformed resourceType)';
}

// FHIR.js message shapes (validator.js of fhir@4.12.0), most embed the value.
const MESSAGE_RULES = [
  [/^Resource does not have resourceType property, or value is not a valid resource type\.$/, (m) => m],
  [/^Missing property$/, (m) => m],
  [/^Property is not an array$/, (m) => m],
  [/^Unexpected property$/, (m) => m],
  [/^A [A-Za-z0-9_]+ entry is required$/, (m) => m],
  [/^Value set "[^"]*" could not be found\.$/, (m) => m], // a spec URL, not resource data
  [/^Code ".*" (\(.*\) )?not found in value set$/s, () => 'Code not found in value set'],
  [/^Invalid format for boolean value /, () => 'Invalid format for boolean value'],
  [/^Number type expected but string received for value /, () => 'Number type expected but string received'],
  [
    /^Invalid (integer|decimal|unsigned integer|positive integer|date|dateTime|time|code|oid|id) format for value /,
    (_m, kind) => `Invalid ${kind} format`,
  ],
  [/^Invalid type for reference /, () => 'Invalid type for reference (type not allowed by the element\'s target profiles)'],
];

function redactMessage(msg) {
  if (typeof msg !== 'string') return '(no message)';
  for (const [re, fn] of MESSAGE_RULES) {
    const m = re.exec(msg);
    if (m) return fn(m[0], ...m.slice(1));
  }
  return '(message withheld: unrecognised shape)';
}

const SAFE_SEGMENT_RE = /^[A-Za-z_][A-Za-z0-9_]{0,63}(\[[0-9]+\])?$/;

function redactLocation(loc) {
  if (typeof loc !== 'string' || loc === '') return '(resource)';
  return loc
    .split('.')
    .map((seg) => (SAFE_SEGMENT_RE.test(seg) ? seg : '<?>'))
    .join('.');
}

// ---------------------------------------------------------------------------
// Resource collection and validation.

// Splits a Bundle into its envelope (entry[].resource removed) and its entry
// resources (recursively); any other resource is returned as is.
function collect(res, line, lines, out) {
  if (
    res !== null &&
    typeof res === 'object' &&
    !Array.isArray(res) &&
    res.resourceType === 'Bundle' &&
    Array.isArray(res.entry)
  ) {
    const inner = [];
    const envelope = {
      ...res,
      entry: res.entry.map((e) => {
        if (e === null || typeof e !== 'object' || Array.isArray(e) || !('resource' in e)) return e;
        inner.push(e.resource);
        const { resource: _r, ...rest } = e;
        return rest;
      }),
    };
    out.push({ res: envelope, line });
    for (const r of inner) {
      collect(r, (r && typeof r === 'object' && lines.get(r)) || line, lines, out);
    }
    return;
  }
  out.push({ res, line });
}

function validateOne(res) {
  if (res === null || typeof res !== 'object' || Array.isArray(res)) {
    return { valid: false, messages: [{ severity: 'fatal', location: '', text: 'Not a JSON object' }] };
  }
  let r;
  try {
    r = fhir.validate(res, OPTIONS);
  } catch (e) {
    // e.g. FHIR.js calls toString() on a null primitive. Only the error class
    // is reported: engine messages can quote property names or values.
    return {
      valid: false,
      messages: [{ severity: 'fatal', location: '', text: `validator threw ${e && e.name ? e.name : 'an exception'}` }],
    };
  }
  const messages = (r.messages || [])
    .filter((m) => m.severity === 'error' || m.severity === 'fatal')
    .map((m) => ({ severity: m.severity, location: redactLocation(m.location), text: redactMessage(m.message) }));
  return { valid: r.valid === true, messages };
}

const totals = { files: 0, resources: 0, invalid: 0, byType: {} };
let ioError = false;

function record(file, line, res) {
  const type = typeLabel(res);
  const { valid, messages } = validateOne(res);
  const t = (totals.byType[type] ??= { resources: 0, invalid: 0 });
  t.resources++;
  totals.resources++;
  if (!valid) {
    t.invalid++;
    totals.invalid++;
    process.stderr.write(`${file}:${line}: ${type}: invalid\n`);
    for (const m of messages) process.stderr.write(`  ${m.severity} ${m.location}: ${m.text}\n`);
    if (messages.length === 0) process.stderr.write('  (validator returned valid=false without error messages)\n');
  }
  return valid;
}

function recordSyntaxError(file, err) {
  const type = '(unparseable JSON)';
  const t = (totals.byType[type] ??= { resources: 0, invalid: 0 });
  t.resources++;
  t.invalid++;
  totals.resources++;
  totals.invalid++;
  process.stderr.write(`${file}:${err.line}: ${type}: invalid\n  fatal (json): ${err.reason}\n`);
}

function checkParsed(file, parsed, firstLine, counts) {
  const items = [];
  collect(parsed.value, parsed.lines.get(parsed.value) || firstLine, parsed.lines, items);
  for (const { res, line } of items) {
    counts.resources++;
    if (!record(file, line, res)) counts.invalid++;
  }
}

function parseOrRecord(file, text, firstLine, counts) {
  try {
    return parseJson(text, firstLine);
  } catch (e) {
    if (!(e instanceof JsonSyntaxError)) throw e;
    counts.resources++;
    counts.invalid++;
    recordSyntaxError(file, e);
    return null;
  }
}

async function checkJsonFile(file) {
  const text = await fs.readFile(file, 'utf8');
  const counts = { resources: 0, invalid: 0 };
  const parsed = parseOrRecord(file, text, 1, counts);
  if (parsed) checkParsed(file, parsed, 1, counts);
  return counts;
}

async function checkNdjsonFile(file) {
  const counts = { resources: 0, invalid: 0 };
  const rl = readline.createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  let lineNo = 0;
  for await (const text of rl) {
    lineNo++;
    if (text.trim() === '') continue;
    const parsed = parseOrRecord(file, text, lineNo, counts);
    if (parsed) checkParsed(file, parsed, lineNo, counts);
  }
  return counts;
}

async function expand(arg) {
  const st = await fs.stat(arg);
  if (!st.isDirectory()) return [arg];
  const out = [];
  const walk = async (dir) => {
    const entries = (await fs.readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile() && /\.(ndjson|json)$/i.test(e.name)) out.push(p);
    }
  };
  await walk(arg);
  return out;
}

function usage() {
  process.stderr.write(
    'usage: node validate.mjs <file-or-dir>...\n' +
      '  *.ndjson: one FHIR R4 resource per line; other files: one JSON resource or Bundle.\n' +
      '  Directories are searched recursively for *.json and *.ndjson.\n' +
      '  Exit status: 0 all valid, 1 some invalid, 2 usage or IO error.\n',
  );
}

async function main() {
  const args = process.argv.slice(2);
  if (args.length === 1 && (args[0] === '-h' || args[0] === '--help')) {
    usage();
    return 0;
  }
  const operands = args[0] === '--' ? args.slice(1) : args;
  if (operands.length === 0 || operands.some((a) => a.startsWith('-') && a !== '-' && args[0] !== '--')) {
    usage();
    return 2;
  }

  const files = [];
  for (const a of operands) {
    try {
      files.push(...(await expand(a)));
    } catch (e) {
      process.stderr.write(`${a}: cannot read: ${e.code || e.name}\n`);
      ioError = true;
    }
  }
  if (files.length === 0 && !ioError) {
    process.stderr.write('validate.mjs: no *.json or *.ndjson files found\n');
    return 2;
  }

  for (const file of files) {
    let counts;
    try {
      counts = /\.ndjson$/i.test(file) ? await checkNdjsonFile(file) : await checkJsonFile(file);
    } catch (e) {
      process.stderr.write(`${file}: cannot read: ${e.code || e.name}\n`);
      ioError = true;
      continue;
    }
    totals.files++;
    process.stdout.write(
      `${file}: ${counts.resources} resource${counts.resources === 1 ? '' : 's'}, ${counts.invalid} invalid\n`,
    );
  }

  const byType = Object.fromEntries(Object.entries(totals.byType).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  process.stdout.write(
    JSON.stringify({ files: totals.files, resources: totals.resources, invalid: totals.invalid, byType }) + '\n',
  );
  if (ioError) return 2;
  return totals.invalid > 0 ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`validate.mjs: internal error: ${e && e.name ? e.name : 'unknown'}\n`);
    process.exitCode = 2;
  },
);

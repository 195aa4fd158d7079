// Prints the query the builder makes of each model in cohort_models.mjs as
// one JSON line {"name", "count", "breakdown"} (breakdown null when the
// model has none), for console/cohort_test.go to parse with the server's
// parser.
import { buildQuery } from '../src/lib/cohort.js';
import { models } from './cohort_models.mjs';

for (const [name, m] of Object.entries(models)) {
  const count = buildQuery(m);
  if (count.errors.length) throw new Error(`${name}: ${JSON.stringify(count.errors)}`);
  let breakdown = null;
  if (m.breakdown.length) {
    const b = buildQuery(m, { withBreakdown: true });
    if (b.errors.length) throw new Error(`${name}: ${JSON.stringify(b.errors)}`);
    breakdown = b.query;
  }
  process.stdout.write(JSON.stringify({ name, count: count.query, breakdown }) + '\n');
}

// The Operator page: health, readiness, anchoring lag and ingest rate at a
// glance, from /healthz, /readyz and /metrics (the Prometheus text, which
// carries no ids or PHI), refreshed every few seconds.
import { parse, rate, sum } from '../lib/prom.js';

const every = 5000;

export function mount(root, ctx) {
  const { el } = ctx;
  const cards = el('div', { class: 'cards', id: 'operator-cards' });
  const detail = el('div', { id: 'operator-detail' });
  const status = el('p', { role: 'status', class: 'muted', id: 'operator-status' });
  const refresh = el('button', { type: 'button', id: 'operator-refresh', onclick: () => tick() }, 'Refresh now');
  root.append(
    el('h1', { tabindex: '-1' }, 'Operator'),
    el('div', { class: 'row' }, refresh, status),
    cards,
    detail,
  );

  // Readings of the counters over the last minute: rates are averaged
  // over it, so a burst between two refreshes still shows.
  const span = 60000;
  let readings = []; // [{ingested, decisions}] of {value, at}
  let stopped = false;
  let timer = null;

  async function get(path, text) {
    try {
      const res = await ctx.api(path, { raw: true, headers: { Accept: text ? 'text/plain' : 'application/json' } });
      return { ok: true, status: res.status, body: text ? await res.text() : await res.json() };
    } catch (err) {
      return { ok: false, status: err.status || 0, error: err.message };
    }
  }

  function card(id, label, value, cls, note) {
    return el('div', { class: 'card', id },
      el('div', { class: 'label' }, label),
      el('div', { class: `value ${cls || ''}` }, value),
      note ? el('div', { class: 'muted' }, note) : null);
  }

  async function tick() {
    if (stopped) return;
    clearTimeout(timer);
    const at = Date.now();
    const [health, ready, metrics] = await Promise.all([get('/healthz'), get('/readyz'), get('/metrics', true)]);
    if (stopped) return;
    let samples = null;
    let metricsNote = '';
    if (metrics.ok) {
      try {
        samples = parse(metrics.body);
      } catch (err) {
        metricsNote = `unreadable metrics: ${err.message}`;
      }
    } else {
      metricsNote = metrics.status === 404 ? '/metrics is hidden on this gateway (metrics.hide)' : `metrics: ${metrics.error}`;
    }
    const cur = samples && {
      ingested: { value: sum(samples, 'fhiranchor_resources_ingested_total') ?? 0, at },
      decisions: { value: sum(samples, 'fhiranchor_access_decisions_total') ?? 0, at },
    };
    if (cur) {
      readings.push(cur);
      while (readings.length > 2 && at - readings[1].ingested.at >= span) readings.shift();
    }
    const first = readings.length > 1 ? readings[0] : null;
    const ingestRate = first && cur ? rate(first.ingested, cur.ingested) : undefined;
    const decisionRate = first && cur ? rate(first.decisions, cur.decisions) : undefined;

    const out = [];
    out.push(card('card-health', 'Health (/healthz)', health.ok && health.body.status === 'ok' ? 'up' : 'down',
      health.ok ? 'ok' : 'error'));
    const isReady = ready.ok && ready.body.status === 'ready';
    out.push(card('card-ready', 'Readiness (/readyz)', isReady ? 'ready' : 'not ready', isReady ? 'ok' : 'error',
      isReady ? (ready.body.anchoring ? 'this process anchors' : 'another gateway anchors') : ready.error || ''));
    if (samples) {
      const age = sum(samples, 'fhiranchor_anchor_last_age_seconds');
      const pending = sum(samples, 'fhiranchor_anchor_leaves_pending');
      out.push(card('card-lag', 'Anchoring lag', age === undefined ? 'no anchor yet' : `${age.toFixed(1)} s`,
        age !== undefined && age > 300 ? 'warn' : '', `${fmt(pending)} leaves waiting for an anchor`));
      out.push(card('card-ingest', 'Ingest rate (last minute)', ingestRate === undefined ? 'measuring\u2026' : `${fmtRate(ingestRate)} /s`, '',
        `${fmt(cur.ingested.value)} resource versions stored by this process`));
      out.push(card('card-decisions', 'Access decisions (last minute)', decisionRate === undefined ? 'measuring\u2026' : `${fmtRate(decisionRate)} /s`, '',
        `${fmt(sum(samples, 'fhiranchor_access_decisions_total', { outcome: 'allow' }) ?? 0)} allowed, ` +
        `${fmt(sum(samples, 'fhiranchor_access_decisions_total', { outcome: 'deny' }) ?? 0)} denied`));
      out.push(card('card-anchors', 'Anchors mined', fmt(sum(samples, 'fhiranchor_anchors_mined_total') ?? 0), '',
        `${fmt(sum(samples, 'fhiranchor_anchor_gas_used_total') ?? 0)} gas used`));
    }
    cards.replaceChildren(...out);

    const rows = [];
    if (isReady && ready.body.vault) {
      for (const [k, v] of Object.entries(ready.body.vault).sort()) {
        if (typeof v === 'number') rows.push(el('tr', {}, el('th', { scope: 'row' }, k), el('td', {}, fmt(v))));
      }
    }
    detail.replaceChildren(...[
      el('h2', {}, 'Vault'),
      rows.length ? el('table', { id: 'vault-stats' }, el('tbody', {}, rows)) : el('p', { class: 'muted' }, 'No vault statistics (not ready).'),
      metricsNote ? el('p', { class: 'warn' }, metricsNote) : null,
    ].filter(Boolean));
    status.textContent = `Updated ${new Date(at).toLocaleTimeString()}; refreshes every ${every / 1000} s.`;
    timer = setTimeout(tick, every);
  }

  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function fmtRate(r) {
  return r >= 10 ? r.toFixed(0) : r >= 1 ? r.toFixed(1) : r.toFixed(2);
}

function fmt(n) {
  return n === undefined ? '?' : Number(n).toLocaleString('en-US');
}

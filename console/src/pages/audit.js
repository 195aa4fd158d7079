// The Decisions page, for auditors and patients: the decision log with
// filters, each record with its receipt; the log's checkpoints, their
// signatures and anchors checked in the browser; the consistency of two
// checkpoints, proved by the server and verified here.
//
// It reads GET /v1/decisions (a patient token gets its own records only:
// the server decides), /v1/receipts/leaves/N, /v1/log/checkpoints,
// /v1/log/key and /v1/log/consistency. Patient and client filter on the
// server; outcome and time filter the records loaded, newest first, and
// more pages are loaded until the time window is covered.
import './verify.css';
import {
  hexDecode,
  hexEncode,
  parseLogKeys,
  verifyCheckpoint,
  verifyConsistency,
} from '../lib/verify.js';

// handoffKey passes a record picked here to the Verify page.
export const handoffKey = 'fhiranchor.console.verifyLeaf';

const pageSize = 100;
const maxPages = 20; // a time filter reads at most this many pages back

export function mount(root, ctx) {
  const { el } = ctx;
  const auditor = ctx.scopes.includes('fhiranchor/audit');
  let alive = true;

  const patient = el('input', { id: 'f-patient', name: 'patient', placeholder: 'Patient/<id>', autocomplete: 'off' });
  const client = el('input', { id: 'f-client', name: 'client', placeholder: 'client id', autocomplete: 'off' });
  const outcome = el('select', { id: 'f-outcome', name: 'outcome' },
    el('option', { value: '' }, 'any'), el('option', { value: 'allow' }, 'allow'), el('option', { value: 'deny' }, 'deny'));
  // Plain text, not datetime-local: its sub-fields make Tab stop six times.
  const since = el('input', { id: 'f-since', name: 'since', placeholder: 'YYYY-MM-DD HH:MM', autocomplete: 'off' });
  const until = el('input', { id: 'f-until', name: 'until', placeholder: 'YYYY-MM-DD HH:MM', autocomplete: 'off' });
  const status = el('p', { id: 'log-status', role: 'status' });
  const tbody = el('tbody', { id: 'decisions' });
  const more = el('button', { type: 'button', id: 'log-more', class: 'secondary', hidden: true }, 'Load older records');

  const form = el('form', { class: 'panel row', id: 'log-filters', 'aria-label': 'Filter the decision log' },
    auditor ? field('f-patient', 'Patient', patient) : null,
    field('f-client', 'Client', client),
    field('f-outcome', 'Outcome', outcome),
    field('f-since', 'From (local time)', since),
    field('f-until', 'To (local time)', until),
    el('button', { type: 'submit', id: 'log-apply' }, 'Apply'));

  root.append(
    el('h1', { tabindex: '-1' }, auditor ? 'Decision log' : 'Who read my records'),
    el('p', { class: 'hint' }, auditor
      ? 'Every access decision the gateway made, newest first. Each record is anchored: its receipt proves it is in the log.'
      : 'The access decisions about you, newest first, each with its receipt.'),
    form,
    status,
    el('table', { class: 'decisions' },
      el('thead', {}, el('tr', {}, ['Leaf', 'Time', 'Client', 'Action', 'Purpose', 'Patient', 'Resource', 'Outcome', 'Receipt']
        .map((h) => el('th', { scope: 'col' }, h)))),
      tbody),
    more,
  );

  function field(id, text, input) {
    return el('div', { class: 'field' }, el('label', { for: id }, text), input);
  }

  // ---- decision log ----
  let next = '';
  let shown = 0;

  function filters() {
    return { outcome: outcome.value, since: localTime(since.value), until: localTime(until.value) };
  }

  function keep(entry, f) {
    const r = entry.record || {};
    if (f.outcome === 'allow' && r.allow !== true) return false;
    if (f.outcome === 'deny' && r.allow !== false) return false;
    const at = Date.parse(r.time);
    if (f.since !== null && !(at >= f.since)) return false;
    if (f.until !== null && !(at <= f.until)) return false;
    return true;
  }

  async function load(reset) {
    const f = filters();
    if (Number.isNaN(f.since) || Number.isNaN(f.until)) {
      status.textContent = 'Write times as YYYY-MM-DD or YYYY-MM-DD HH:MM[:SS], local time.';
      status.className = 'error';
      return;
    }
    if (reset) {
      next = '';
      shown = 0;
      tbody.replaceChildren();
    }
    status.textContent = 'Loading\u2026';
    status.className = '';
    try {
      for (let pages = 0; pages < maxPages; pages++) {
        const q = new URLSearchParams({ page_size: String(pageSize) });
        if (auditor && patient.value.trim()) q.set('patient', patient.value.trim());
        if (client.value.trim()) q.set('client', client.value.trim());
        if (next) q.set('page_token', next);
        const page = await ctx.api(`/v1/decisions?${q}`);
        if (!alive) return;
        const entries = page.decisions || [];
        for (const e of entries) {
          if (keep(e, f)) {
            tbody.append(row(e));
            shown++;
          }
        }
        next = page.nextPageToken || '';
        // Without an outcome or time filter a page is a page. With one,
        // read on until a page of matches is shown or, newest first, the
        // records reach back past the window's start.
        const oldest = entries.length ? Date.parse(entries[entries.length - 1].record?.time) : NaN;
        const filtered = f.outcome !== '' || f.since !== null || f.until !== null;
        if (!next || !filtered || shown >= pageSize || (f.since !== null && oldest < f.since)) break;
      }
      status.textContent = shown === 0 ? 'No decision matches.' : `${shown} decision${shown === 1 ? '' : 's'} shown.`;
      more.hidden = !next;
    } catch (err) {
      if (!alive) return;
      status.textContent = `Could not list decisions: ${err.message}`;
      status.className = 'error';
    }
  }

  function row(e) {
    const r = e.record || {};
    const resolved = e.resolved || {};
    const name = (ref) => {
      if (!ref) return '';
      const [typ, tok] = ref.split('/');
      return resolved[`${typ}/${tok}`] ? `${resolved[`${typ}/${tok}`]}${ref.slice(typ.length + tok.length + 1)}` : ref;
    };
    const leaf = String(e.leafIndex);
    const receipt = el('td', {});
    const show = el('button', { type: 'button', class: 'secondary', 'aria-label': `Show the receipt of leaf ${leaf}`, 'data-leaf': leaf }, 'Receipt');
    const verify = el('button', { type: 'button', 'aria-label': `Verify the record of leaf ${leaf} in the browser`, 'data-verify': leaf }, 'Verify');
    show.addEventListener('click', async () => {
      show.disabled = true;
      try {
        const res = await ctx.api(`/v1/receipts/leaves/${encodeURIComponent(leaf)}`, { raw: true });
        const text = await res.text();
        const rc = JSON.parse(text);
        receipt.append(el('details', { open: true },
          el('summary', {}, `${rc.status}, tree of ${rc.treeSize ?? '?'}${rc.anchor ? `, anchor ${rc.anchor.seq}` : ''}`),
          el('pre', { class: 'receipt' }, text)));
      } catch (err) {
        receipt.append(el('p', { class: 'error' }, `No receipt: ${err.message}`));
        show.disabled = false;
      }
    });
    verify.addEventListener('click', () => {
      sessionStorage.setItem(handoffKey, leaf);
      ctx.navigate('#/verify');
    });
    receipt.append(el('div', { class: 'row' }, show, verify));
    return el('tr', { 'data-leaf': leaf, 'data-outcome': r.allow ? 'allow' : 'deny' },
      el('td', { class: 'mono' }, leaf),
      el('td', {}, r.time ? new Date(r.time).toLocaleString() : ''),
      el('td', {}, r.client || ''),
      el('td', {}, r.action || ''),
      el('td', {}, r.purpose || ''),
      el('td', { class: 'mono' }, name(r.patient)),
      el('td', { class: 'mono' }, name(r.resource)),
      el('td', {},
        el('span', { class: `badge ${r.allow ? 'permit' : 'deny'}` }, r.allow ? 'allow' : 'deny'),
        r.breakGlass ? el('span', { class: 'badge warn' }, 'break-glass') : null,
        (r.reasons || []).length ? el('div', { class: 'hint' }, r.reasons.join('; ')) : null),
      receipt);
  }

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    load(true);
  });
  more.addEventListener('click', () => load(false));

  // ---- checkpoints, anchors and consistency ----
  const cpStatus = el('p', { id: 'cp-status', role: 'status' });
  const cpBody = el('tbody', { id: 'checkpoints' });
  const allCps = el('button', { type: 'button', id: 'cp-all', class: 'secondary', hidden: true, onclick: () => showCheckpoints(true) }, 'Show every checkpoint');
  const fromSel = el('select', { id: 'c-from', name: 'from' });
  const toSel = el('select', { id: 'c-to', name: 'to' });
  const consResult = el('p', { id: 'consistency-result', role: 'status' });
  const consForm = el('form', { class: 'panel row', id: 'consistency', 'aria-label': 'Check consistency between two checkpoints' },
    field('c-from', 'Older checkpoint (tree size)', fromSel),
    field('c-to', 'Newer checkpoint (tree size)', toSel),
    el('button', { type: 'submit', id: 'c-check' }, 'Check consistency'));
  const anchorSummary = el('div', { class: 'cards', id: 'anchoring' });
  root.append(
    el('h2', {}, 'Checkpoints and anchoring'),
    el('p', { class: 'hint' }, 'Each checkpoint is the log\u2019s signed tree size and root. Signatures are checked here, in the browser, with the log key; ',
      'compare that key with the one published out of band.'),
    anchorSummary,
    cpStatus,
    el('table', { class: 'checkpoints' },
      el('thead', {}, el('tr', {}, ['Tree size', 'Root', 'Written', 'Signature', 'Anchor', 'Chain', 'Transaction', 'Block', 'Confirmations', 'Lag']
        .map((h) => el('th', { scope: 'col' }, h)))),
      cpBody),
    allCps,
    el('h2', {}, 'Consistency'),
    el('p', { class: 'hint' }, 'The server proves that the newer tree extends the older one (RFC 6962); the proof is verified here against the two signed roots.'),
    consForm,
    consResult,
  );

  let cps = [];
  let keys = [];

  async function loadCheckpoints() {
    cpStatus.textContent = 'Loading checkpoints\u2026';
    try {
      const [listing, keyText] = await Promise.all([
        ctx.api('/v1/log/checkpoints'),
        ctx.api('/v1/log/key', { raw: true }).then((r) => r.text()).catch(() => ''),
      ]);
      if (!alive) return;
      keys = keyText ? await parseLogKeys(keyText) : [];
      cps = listing.checkpoints || [];
      await showCheckpoints(false);
      summary(listing);
      fromSel.replaceChildren(...cps.map((cp) => el('option', { value: String(cp.treeSize) }, String(cp.treeSize))));
      toSel.replaceChildren(...cps.map((cp) => el('option', { value: String(cp.treeSize) }, String(cp.treeSize))));
      if (cps.length) toSel.value = String(cps[cps.length - 1].treeSize);
      cpStatus.textContent = cps.length ? `${cps.length} checkpoint${cps.length === 1 ? '' : 's'}; log key ${keys.length ? keys[0].name : 'not served: signatures not checked'}.` : 'No checkpoint yet.';
    } catch (err) {
      if (!alive) return;
      cpStatus.textContent = `Could not list checkpoints: ${err.message}`;
      cpStatus.className = 'error';
    }
  }

  const cpShown = 20;

  // showCheckpoints lists the newest checkpoints (all of them with every),
  // each signature checked in the browser.
  async function showCheckpoints(every) {
    const rows = [];
    for (const cp of [...cps].reverse().slice(0, every ? undefined : cpShown)) rows.push(await cpRow(cp));
    if (!alive) return;
    cpBody.replaceChildren(...rows);
    allCps.hidden = every || cps.length <= cpShown;
    allCps.textContent = `Show all ${cps.length} checkpoints`;
  }

  async function signatureOf(cp) {
    if (!cp.note) return ['unsigned', 'warn'];
    if (!keys.length) return ['not checked', 'warn'];
    try {
      const body = await verifyCheckpoint(cp.note, keys);
      if (String(body.size) !== String(cp.treeSize) || hexEncode(body.root) !== String(cp.root).toLowerCase()) {
        return ['signs another tree', 'fail'];
      }
      return ['verified', 'pass'];
    } catch {
      return ['invalid', 'fail'];
    }
  }

  async function cpRow(cp) {
    const a = cp.anchor;
    const [sig, cls] = await signatureOf(cp);
    const lag = a && a.blockTime && cp.time ? Math.max(0, (Date.parse(a.blockTime) - Date.parse(cp.time)) / 1000) : null;
    return el('tr', { 'data-size': String(cp.treeSize) },
      el('td', { class: 'mono' }, String(cp.treeSize)),
      el('td', { class: 'mono', title: cp.root }, short(cp.root)),
      el('td', {}, cp.time ? new Date(cp.time).toLocaleString() : ''),
      el('td', {}, el('span', { class: `badge ${cls}`, 'data-signature': sig }, sig)),
      el('td', {}, a ? `#${a.seq} ${a.status}` : 'not anchored'),
      el('td', {}, a ? `${a.chainId} ${a.contract}` : ''),
      el('td', { class: 'mono', title: a?.txHash || '' }, a ? short(a.txHash) : ''),
      el('td', {}, a && a.blockNumber ? String(a.blockNumber) : ''),
      el('td', {}, a && a.confirmations !== undefined ? String(a.confirmations) : ''),
      el('td', {}, lag === null ? '' : `${lag.toFixed(0)} s`));
  }

  function summary(listing) {
    const anchored = cps.filter((cp) => cp.anchor && (cp.anchor.status === 'anchored' || cp.anchor.status === 'confirmed'));
    const last = anchored[anchored.length - 1];
    const newest = cps[cps.length - 1];
    const card = (label, value, id) => el('div', { class: 'card', id }, el('div', { class: 'value' }, value), el('div', { class: 'label' }, label));
    const lagS = newest && last && newest !== last ? (Date.now() - Date.parse(newest.time)) / 1000 : 0;
    anchorSummary.replaceChildren(
      card('leaves in the log', String(listing.treeSize ?? 0), 'card-size'),
      card('leaves anchored on chain', last ? String(last.treeSize) : '0', 'card-anchored'),
      card('chain', last ? `${last.anchor.chainId}` : '\u2014', 'card-chain'),
      card('latest anchor', last ? `#${last.anchor.seq}, block ${last.anchor.blockNumber}, ${last.anchor.confirmations ?? 0} conf.` : '\u2014', 'card-anchor'),
      card('anchoring lag', newest === last || !newest ? 'none' : `${Math.round(lagS)} s`, 'card-lag'));
  }

  consForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const a = cps.find((cp) => String(cp.treeSize) === fromSel.value);
    const b = cps.find((cp) => String(cp.treeSize) === toSel.value);
    consResult.className = '';
    if (!a || !b) return;
    if (BigInt(a.treeSize) > BigInt(b.treeSize)) {
      consResult.textContent = 'Choose the older checkpoint first.';
      consResult.className = 'error';
      return;
    }
    consResult.textContent = 'Checking\u2026';
    try {
      const res = await ctx.api(`/v1/log/consistency?from=${encodeURIComponent(a.treeSize)}&to=${encodeURIComponent(b.treeSize)}`);
      const [sa] = await signatureOf(a);
      const [sb] = await signatureOf(b);
      const proof = (res.proof || []).map(hexDecode);
      if (proof.some((h) => h === null || h.length !== 32)) throw new Error('the proof holds a malformed hash');
      const why = await verifyConsistency(BigInt(a.treeSize), BigInt(b.treeSize), proof, hexDecode(a.root), hexDecode(b.root));
      if (why) {
        consResult.textContent = `Not consistent: ${why}.`;
        consResult.className = 'error';
        consResult.dataset.ok = 'false';
      } else {
        const signed = sa === 'verified' && sb === 'verified' ? 'both roots signed by the log key' : 'roots as the server lists them (signatures: ' + sa + ', ' + sb + ')';
        consResult.textContent = `Consistent: the tree of ${b.treeSize} leaves extends the tree of ${a.treeSize} (${proof.length} proof hashes, ${signed}).`;
        consResult.className = 'ok';
        consResult.dataset.ok = 'true';
      }
    } catch (err) {
      consResult.textContent = `Could not check: ${err.message}`;
      consResult.className = 'error';
      consResult.dataset.ok = 'false';
    }
  });

  load(true);
  loadCheckpoints();
  return () => {
    alive = false;
  };
}

// localTime reads "YYYY-MM-DD[ HH:MM[:SS]]" (or with a T) as local time
// in milliseconds: null when empty, NaN when malformed.
function localTime(s) {
  s = s.trim();
  if (!s) return null;
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2}))?)?$/.exec(s);
  if (!m) return NaN;
  const [y, mo, d, h, mi, sec] = m.slice(1).map((x) => Number(x || 0));
  const t = new Date(y, mo - 1, d, h, mi, sec);
  return t.getMonth() === mo - 1 && t.getDate() === d ? t.getTime() : NaN;
}

function short(hex) {
  return hex ? `${String(hex).slice(0, 12)}\u2026` : '';
}

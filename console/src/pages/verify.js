// The Verify a receipt page: a receipt and its evidence, pasted, uploaded,
// fetched for a resource version or picked from the decision log, checked
// entirely in the browser (lib/verify.js: WebCrypto SHA-256 and Ed25519,
// the RFC 6962 inclusion proof, the signed checkpoint, the commitment
// against the content), each step shown passing or failing.
//
// The server is asked only for the inputs (receipt, evidence, log key,
// checkpoint listing), never for a verdict; a receipt and key saved from
// elsewhere verify with no server at all.
import './verify.css';
import { verifyReceipt } from '../lib/verify.js';
import { handoffKey } from './audit.js';

const stepTitles = {
  receipt: 'Receipt',
  signed: 'Signed checkpoint',
  proof: 'Inclusion proof',
  content: 'Commitment to the content',
  anchor: 'Anchor',
};

export function mount(root, ctx) {
  const { el } = ctx;
  let alive = true;

  const receipt = el('textarea', { id: 'v-receipt', name: 'receipt', rows: 10, spellcheck: 'false', autocomplete: 'off' });
  const evidence = el('textarea', { id: 'v-evidence', name: 'evidence', rows: 6, spellcheck: 'false', autocomplete: 'off' });
  const logKey = el('textarea', { id: 'v-key', name: 'logkey', rows: 2, spellcheck: 'false', autocomplete: 'off' });
  const receiptFile = el('input', { id: 'v-receipt-file', type: 'file', accept: '.json,application/json' });
  const evidenceFile = el('input', { id: 'v-evidence-file', type: 'file', accept: '.json,application/json' });
  const compare = el('input', { id: 'v-compare', type: 'checkbox', checked: true });
  const keyNote = el('p', { class: 'hint', id: 'v-key-note' });
  const result = el('section', { id: 'v-result', 'aria-live': 'polite', 'aria-label': 'Verification result' });

  const ref = el('input', { id: 'v-ref', name: 'ref', placeholder: 'Patient/p1/_history/1', autocomplete: 'off' });
  const refStatus = el('p', { role: 'status', id: 'v-ref-status' });
  const pick = el('select', { id: 'v-pick', name: 'pick' }, el('option', { value: '' }, 'Loading the decision log\u2026'));
  const pickStatus = el('p', { role: 'status', id: 'v-pick-status' });

  const field = (id, text, input, ...rest) => el('div', { class: 'field' }, el('label', { for: id }, text), input, ...rest);

  const fetchForm = el('form', { class: 'panel', id: 'v-fetch', 'aria-label': 'Fetch a receipt from this gateway' },
    el('div', { class: 'row' },
      field('v-pick', 'A record of the decision log', pick),
      el('button', { type: 'button', id: 'v-pick-load', onclick: () => loadLeaf(pick.value) }, 'Load record'),
      field('v-ref', 'or a resource version', ref),
      el('button', { type: 'submit', id: 'v-ref-load' }, 'Load version')),
    pickStatus, refStatus);

  const form = el('form', { id: 'v-form', 'aria-label': 'Receipt and evidence' },
    el('div', { class: 'verify-grid' },
      el('div', {},
        field('v-receipt', 'Receipt (JSON)', receipt),
        field('v-receipt-file', 'or upload a receipt file', receiptFile)),
      el('div', {},
        field('v-evidence', 'Evidence (optional): {"resource", "salt"} or {"record", "salt"}', evidence),
        field('v-evidence-file', 'or upload an evidence file', evidenceFile),
        field('v-key', 'Log verifier key(s), one a line', logKey, keyNote),
        el('div', { class: 'check' }, compare, el('label', { for: 'v-compare' }, 'Compare the anchor with the gateway\u2019s record of it')))),
    el('div', { class: 'row' },
      el('button', { type: 'submit', id: 'v-run' }, 'Verify in this browser'),
      el('button', { type: 'button', class: 'secondary', id: 'v-clear', onclick: () => {
        receipt.value = '';
        evidence.value = '';
        result.replaceChildren();
      } }, 'Clear')));

  root.append(
    el('h1', { tabindex: '-1' }, 'Verify a receipt'),
    el('p', { class: 'hint' }, 'Every check runs here, in your browser, with WebCrypto: nothing you paste is sent anywhere. ',
      'It checks what `fhiranchor verify` checks: the log\u2019s signature on the checkpoint, the inclusion proof, and that the evidence hashes to the commitment.'),
    fetchForm, form, result);

  for (const [input, target] of [[receiptFile, receipt], [evidenceFile, evidence]]) {
    input.addEventListener('change', async () => {
      const f = input.files && input.files[0];
      if (f) target.value = await f.text();
    });
  }

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    run();
  });

  fetchForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const m = /^([A-Z][A-Za-z]+)\/([A-Za-z0-9.-]{1,64})\/_history\/([0-9]+)$/.exec(ref.value.trim());
    refStatus.className = '';
    if (!m) {
      refStatus.textContent = 'Write the version as Type/id/_history/N.';
      refStatus.className = 'error';
      return;
    }
    const path = m.slice(1).map(encodeURIComponent);
    refStatus.textContent = 'Fetching\u2026';
    try {
      receipt.value = await text(`/v1/receipts/${path[0]}/${path[1]}/_history/${path[2]}`);
      evidence.value = await text(`/v1/evidence/${path[0]}/${path[1]}/_history/${path[2]}`).catch((err) => {
        refStatus.textContent = `Receipt loaded; no evidence: ${err.message}`;
        return '';
      });
      if (refStatus.textContent === 'Fetching\u2026') refStatus.textContent = 'Receipt and evidence loaded.';
      await run();
    } catch (err) {
      refStatus.textContent = `Could not fetch: ${err.message}`;
      refStatus.className = 'error';
    }
  });

  // text fetches a document as its exact bytes: a record is committed as
  // written, so it must not go through JSON.parse and back.
  async function text(path) {
    const res = await ctx.api(path, { raw: true });
    return res.text();
  }

  async function loadLeaf(leaf) {
    if (!leaf) return;
    pickStatus.className = '';
    pickStatus.textContent = `Fetching leaf ${leaf}\u2026`;
    try {
      receipt.value = await text(`/v1/receipts/leaves/${encodeURIComponent(leaf)}`);
      evidence.value = await text(`/v1/decisions/${encodeURIComponent(leaf)}`);
      pickStatus.textContent = `Receipt and record of leaf ${leaf} loaded.`;
      await run();
    } catch (err) {
      pickStatus.textContent = `Could not fetch leaf ${leaf}: ${err.message}`;
      pickStatus.className = 'error';
    }
  }

  let listing = null;
  async function checkpoints() {
    if (!compare.checked) return null;
    if (!listing) listing = await ctx.api('/v1/log/checkpoints').catch(() => null);
    return listing;
  }

  async function run() {
    result.replaceChildren(el('p', { role: 'status' }, 'Verifying\u2026'));
    const res = await verifyReceipt({
      receipt: receipt.value,
      evidence: evidence.value.trim() ? evidence.value : undefined,
      logKeys: logKey.value,
      checkpoints: await checkpoints(),
    });
    if (!alive) return;
    const failed = res.steps.find((s) => s.ok === false);
    result.replaceChildren(
      el('h2', { id: 'verdict', class: res.ok ? 'ok' : 'error', 'data-ok': String(res.ok), tabindex: '-1' },
        res.ok ? `\u2713 ${res.verdict}` : `\u2717 FAILED at ${stepTitles[failed.name] || failed.name}`),
      el('ol', { class: 'steps', id: 'steps' },
        res.steps.map((s) => el('li', { class: `step ${s.ok === true ? 'pass' : s.ok === false ? 'fail' : 'skip'}`, 'data-step': s.name, 'data-ok': String(s.ok) },
          el('span', { class: 'mark', 'aria-hidden': 'true' }, s.ok === true ? '\u2713' : s.ok === false ? '\u2717' : '\u2013'),
          el('strong', {}, `${stepTitles[s.name] || s.name}: `),
          el('span', { class: 'sr-only' }, s.ok === true ? 'passed. ' : s.ok === false ? 'failed. ' : 'not checked. '),
          el('span', { class: 'detail' }, s.detail)))));
    result.querySelector('#verdict').focus();
  }

  // The log key as this gateway serves it; a careful verifier replaces it
  // with the one published out of band.
  ctx.api('/v1/log/key', { raw: true }).then((r) => r.text()).then((k) => {
    if (!alive) return;
    if (!logKey.value) logKey.value = k.trim();
    keyNote.textContent = 'Filled in from this gateway (GET /v1/log/key). Compare it with the key the operator publishes elsewhere: a server could sign with a key of its own.';
  }).catch(() => {
    if (alive) keyNote.textContent = 'This gateway serves no log key: paste the published one to check signatures.';
  });

  // The decision log to pick from: an auditor's, or a patient's own.
  const mayList = ctx.scopes.includes('fhiranchor/audit') || ctx.scopes.includes('fhiranchor/patient.self');
  if (mayList) {
    ctx.api('/v1/decisions?page_size=50').then((page) => {
      if (!alive) return;
      const ds = page.decisions || [];
      pick.replaceChildren(el('option', { value: '' }, ds.length ? 'Choose a record\u2026' : 'No decision recorded'),
        ...ds.map((d) => {
          const r = d.record || {};
          const who = (d.resolved && Object.values(d.resolved).find((v) => v.startsWith('Patient/'))) || r.patient || '';
          return el('option', { value: String(d.leafIndex) }, `#${d.leafIndex} ${r.time || ''} ${r.client || ''} ${r.action || ''} ${who} ${r.allow ? 'allow' : 'deny'}`);
        }));
    }).catch((err) => {
      if (alive) pick.replaceChildren(el('option', { value: '' }, `Decision log unavailable: ${err.message}`));
    });
  } else {
    pick.replaceChildren(el('option', { value: '' }, 'This token may not read the decision log'));
    pick.disabled = true;
  }

  // A record picked on the Decisions page.
  const handed = sessionStorage.getItem(handoffKey);
  if (handed) {
    sessionStorage.removeItem(handoffKey);
    loadLeaf(handed);
  }

  return () => {
    alive = false;
  };
}

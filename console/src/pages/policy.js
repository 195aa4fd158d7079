// The Policy page: stored versions and their activation history; a
// version's Rego and data.json in an editor; its tests; a dry-run decision
// with the rules that fired; a diff between two versions; push, activate
// and roll back behind a confirmation that names what changes, with the
// activation's receipt. Everything goes through PolicyService
// (proto/fhiranchor/v1/policy.proto), as `fhiranchor policy` does.
import { EditorState } from '@codemirror/state';
import { EditorView, keymap, lineNumbers, highlightActiveLine, drawSelection } from '@codemirror/view';
import { defaultKeymap, history, historyKeymap } from '@codemirror/commands';
import { syntaxHighlighting, defaultHighlightStyle, bracketMatching } from '@codemirror/language';
import { json } from '@codemirror/lang-json';
import { MergeView } from '@codemirror/merge';
import { rego } from '../lib/rego.js';
import './policy.css';

const adminScope = 'fhiranchor/policy.admin';

// protojson writes int64 as strings and leaves false and zero out.
const num = (v) => (v === undefined || v === null || v === '' ? 0 : Number(v));
const short = (rev) => (rev || '').slice(0, 12);

export function mount(root, ctx) {
  const { el, api } = ctx;
  const admin = ctx.scopes.includes(adminScope);
  const views = []; // editors to destroy on unmount
  let editor = null; // the bundle editor's EditorView
  let states = new Map(); // file name -> EditorState
  let current = ''; // file shown
  let base = null; // {version, revision, files} the editor started from
  let policies = [];
  let activeVersion = 0;
  let activations = [];

  const status = el('p', { role: 'status', id: 'policy-status', class: 'muted' });
  const say = (text, cls) => {
    status.textContent = text;
    status.className = cls || 'muted';
  };
  const fail = (what) => (err) => say(`${what} failed: ${err.message}`, 'error');

  // --- versions and history ---------------------------------------------
  const versionsBody = el('tbody');
  const activationsBody = el('tbody');
  const receiptBox = el('div', { id: 'receipt', 'aria-live': 'polite' });

  // --- editor -------------------------------------------------------------
  const fileTabs = el('div', { class: 'file-tabs', role: 'group', 'aria-label': 'Bundle files' });
  const editorHost = el('div', { id: 'policy-editor', class: 'editor-host' });
  const editorTitle = el('h2', { id: 'editor-title' }, 'Bundle');
  const testsBox = el('div', { id: 'test-results', 'aria-live': 'polite' });
  const editorButtons = el('div', { class: 'row' });

  // --- dry run ------------------------------------------------------------
  const evalVersion = el('select', { id: 'eval-version' });
  const evalAction = el('select', { id: 'eval-action' },
    ['read', 'write', 'research-query', 'export'].map((a) => el('option', { value: a }, a)));
  const evalPurpose = el('input', { id: 'eval-purpose', value: 'TREAT', size: 10 });
  const evalActor = el('input', { id: 'eval-actor', placeholder: 'Practitioner/p1', size: 18 });
  const evalRoles = el('input', { id: 'eval-roles', placeholder: 'physician', size: 12 });
  const evalPatient = el('input', { id: 'eval-patient', placeholder: 'Patient/<id>', size: 24 });
  const evalType = el('input', { id: 'eval-type', value: 'Observation', size: 14 });
  const evalLabels = el('input', { id: 'eval-labels', placeholder: 'system|code, ...', size: 30 });
  const evalOut = el('div', { id: 'eval-result', 'aria-live': 'polite' });

  // --- diff ---------------------------------------------------------------
  const diffFrom = el('select', { id: 'diff-from' });
  const diffTo = el('select', { id: 'diff-to' });
  const diffOut = el('div', { id: 'diff-result' });

  // --- confirmation -------------------------------------------------------
  const dialogText = el('div', { id: 'confirm-text' });
  const dialogOK = el('button', { type: 'button', id: 'confirm-ok', class: 'danger' }, 'Confirm');
  const dialogCancel = el('button', { type: 'button', id: 'confirm-cancel', class: 'secondary' }, 'Cancel');
  const dialog = el('dialog', { id: 'confirm', 'aria-labelledby': 'confirm-title' },
    el('h2', { id: 'confirm-title' }, 'Confirm'), dialogText, el('div', { class: 'row' }, dialogOK, dialogCancel));

  function field(label, input) {
    return el('div', { class: 'field' }, el('label', { for: input.id }, label), input);
  }

  // (append and replaceChildren would write a null as the text "null")
  root.append(...[
    el('h1', { tabindex: '-1' }, 'Policy'),
    status,
    el('section', { 'aria-labelledby': 'versions-title' },
      el('h2', { id: 'versions-title' }, 'Versions'),
      el('table', { id: 'versions' },
        el('thead', {}, el('tr', {}, ['Version', 'Revision', 'Created', 'Author', 'State', 'Actions'].map((h) => el('th', { scope: 'col' }, h)))),
        versionsBody),
      admin ? el('div', { class: 'row' },
        el('button', { type: 'button', id: 'rollback', class: 'secondary', onclick: () => confirmRollback() }, 'Roll back\u2026')) : null,
      el('h2', { id: 'history-title' }, 'Activation history'),
      el('table', { id: 'activations', 'aria-labelledby': 'history-title' },
        el('thead', {}, el('tr', {}, ['Time', 'Version', 'Revision', 'Previous', 'Client', 'Kind', 'Leaf', 'Receipt'].map((h) => el('th', { scope: 'col' }, h)))),
        activationsBody),
      receiptBox),
    el('section', { 'aria-labelledby': 'editor-title' },
      editorTitle, fileTabs, editorHost, editorButtons, testsBox),
    admin ? el('section', { 'aria-labelledby': 'eval-title' },
      el('h2', { id: 'eval-title' }, 'Dry-run a decision'),
      el('p', { class: 'hint' }, 'The decision a version would make, with the rules that fired. It reads the patient\u2019s current consents and records nothing.'),
      el('form', { id: 'eval-form', class: 'row', onsubmit: (ev) => { ev.preventDefault(); evaluate(); } },
        field('Version', evalVersion), field('Action', evalAction), field('Purpose', evalPurpose),
        field('Actor', evalActor), field('Actor roles', evalRoles), field('Patient', evalPatient),
        field('Resource type', evalType), field('Security labels', evalLabels),
        el('button', { type: 'submit', id: 'eval-run' }, 'Evaluate')),
      evalOut) : null,
    el('section', { 'aria-labelledby': 'diff-title' },
      el('h2', { id: 'diff-title' }, 'Compare two versions'),
      el('form', { class: 'row', onsubmit: (ev) => { ev.preventDefault(); showDiff(); } },
        field('From version', diffFrom), field('To version', diffTo),
        el('button', { type: 'submit', id: 'diff-run' }, 'Show differences')),
      diffOut),
    dialog,
  ].filter(Boolean));

  // --- loading ------------------------------------------------------------
  async function refresh() {
    const [list, acts] = await Promise.all([api('/v1/policies'), api('/v1/policy-activations')]);
    policies = (list.policies || []).map((p) => ({ ...p, version: num(p.version) }));
    activeVersion = num(list.activeVersion);
    activations = (acts.activations || []).map((a) => ({ ...a, version: num(a.version), previous: num(a.previous), leafIndex: num(a.leafIndex) }));
    renderVersions();
    renderActivations();
    fillVersionSelects();
  }

  function renderVersions() {
    versionsBody.replaceChildren(...policies.map((p) => el('tr', { 'data-version': p.version },
      el('td', {}, String(p.version)),
      el('td', { class: 'mono', title: p.revision }, short(p.revision)),
      el('td', {}, p.created || ''),
      el('td', {}, p.author || ''),
      el('td', {}, p.version === activeVersion ? el('span', { class: 'badge pass' }, 'active') : ''),
      el('td', { class: 'actions' },
        el('button', { type: 'button', class: 'secondary', onclick: () => openVersion(p.version).catch(fail('Opening')) }, `Open version ${p.version}`),
        admin && p.version !== activeVersion
          ? el('button', { type: 'button', onclick: () => confirmActivate(p.version).catch(fail('Activation')) }, `Activate version ${p.version}\u2026`)
          : null))));
  }

  function renderActivations() {
    activationsBody.replaceChildren(...activations.map((a) => el('tr', {},
      el('td', {}, a.time || ''),
      el('td', {}, String(a.version)),
      el('td', { class: 'mono', title: a.revision }, short(a.revision)),
      el('td', {}, a.previous ? String(a.previous) : '\u2014'),
      el('td', {}, a.client || ''),
      el('td', {}, a.rollback ? 'rollback' : 'activation'),
      el('td', {}, String(a.leafIndex)),
      el('td', {}, el('button', { type: 'button', class: 'secondary', onclick: () => showReceipt(a).catch(fail('Receipt')) }, `Receipt of leaf ${a.leafIndex}`)))));
  }

  function fillVersionSelects() {
    const opts = (sel, withActive) => {
      const keep = sel.value;
      sel.replaceChildren(
        ...(withActive ? [el('option', { value: '0' }, `active (version ${activeVersion})`)] : []),
        ...policies.map((p) => el('option', { value: String(p.version) }, `version ${p.version} (${short(p.revision)})`)));
      if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
    };
    opts(evalVersion, true);
    opts(diffFrom, false);
    opts(diffTo, false);
    if (policies.length > 1 && diffFrom.value === diffTo.value) {
      diffFrom.value = String(policies[1].version);
      diffTo.value = String(policies[0].version);
    }
  }

  async function getVersion(v) {
    const p = await api(`/v1/policies/${encodeURIComponent(v)}`);
    return { version: num(p.version), revision: p.revision, files: p.files || {} };
  }

  // --- editor -------------------------------------------------------------
  function extensionsFor(name, readOnly) {
    const lang = name.endsWith('.rego') ? [rego] : name.endsWith('.json') ? [json()] : [];
    return [
      lineNumbers(), highlightActiveLine(), drawSelection(), history(), bracketMatching(),
      keymap.of([...defaultKeymap, ...historyKeymap]),
      syntaxHighlighting(defaultHighlightStyle), lang,
      EditorView.cspNonce.of(ctx.nonce || ''),
      EditorView.contentAttributes.of({ 'aria-label': `${name}${readOnly ? ' (read-only)' : ''}` }),
      EditorState.readOnly.of(readOnly), EditorView.editable.of(!readOnly),
      EditorView.lineWrapping,
    ];
  }

  async function openVersion(v) {
    const p = await getVersion(v);
    base = p;
    states = new Map();
    for (const name of Object.keys(p.files).sort()) {
      states.set(name, EditorState.create({ doc: p.files[name], extensions: extensionsFor(name, !admin) }));
    }
    editorTitle.textContent = `Bundle of version ${p.version}`;
    testsBox.replaceChildren();
    const names = [...states.keys()];
    current = names.find((n) => n.endsWith('.rego') && !n.endsWith('_test.rego')) || names[0] || '';
    renderTabs();
    if (!editor) {
      editor = new EditorView({ state: states.get(current), parent: editorHost });
      views.push(editor);
    } else {
      editor.setState(states.get(current));
    }
    editorButtons.replaceChildren(...(admin ? [
      el('button', { type: 'button', id: 'run-tests', onclick: () => runTests().catch(fail('Testing')) }, 'Run tests'),
      el('button', { type: 'button', id: 'push', onclick: () => confirmPush().catch(fail('Push')) }, 'Push as a new version\u2026'),
      el('button', { type: 'button', id: 'revert', class: 'secondary', onclick: () => openVersion(base.version).catch(fail('Opening')) }, 'Discard edits'),
    ] : []));
    say(`Showing version ${p.version}${admin ? '; edits stay here until you push them' : ''}.`);
  }

  function renderTabs() {
    fileTabs.replaceChildren(...[...states.keys()].map((name) => el('button', {
      type: 'button', class: 'tab secondary', 'aria-pressed': String(name === current), 'data-file': name,
      onclick: () => switchTo(name),
    }, name)));
  }

  function switchTo(name) {
    if (!editor || name === current) return;
    states.set(current, editor.state);
    current = name;
    editor.setState(states.get(name));
    renderTabs();
  }

  function editedFiles() {
    if (editor) states.set(current, editor.state);
    const files = {};
    for (const [name, st] of states) files[name] = st.doc.toString();
    return files;
  }

  function changedNames(a, b) {
    const names = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    return names.filter((n) => a[n] !== b[n]);
  }

  function renderTests(res, title) {
    const tests = res.tests || [];
    const failed = tests.filter((t) => !t.pass);
    const rows = tests.map((t) => el('tr', { class: t.pass ? 'pass' : 'fail' },
      el('td', {}, el('span', { class: `badge ${t.pass ? 'pass' : 'fail'}` }, t.pass ? 'pass' : 'FAIL')),
      el('td', { class: 'mono' }, t.name),
      el('td', { class: 'mono' }, t.message || ''),
      el('td', {}, `${num(t.durationMicros)} \u00b5s`)));
    testsBox.replaceChildren(...[
      el('h3', {}, title),
      res.compiled === false || (res.errors && res.errors.length)
        ? el('div', { class: 'panel error', id: 'compile-errors' }, el('strong', {}, 'Does not compile:'),
          el('ul', {}, (res.errors || []).map((e) => el('li', { class: 'mono' }, e))))
        : el('p', { id: 'tests-summary', class: failed.length ? 'error' : 'ok' },
          failed.length ? `${failed.length} of ${tests.length} tests fail.` : `All ${tests.length} tests pass.`,
          res.revision ? ` Revision ${short(res.revision)}.` : ''),
      tests.length ? el('table', { id: 'tests' },
        el('thead', {}, el('tr', {}, ['Result', 'Test', 'Where it failed', 'Time'].map((h) => el('th', { scope: 'col' }, h)))),
        el('tbody', {}, rows)) : null,
    ].filter(Boolean));
  }

  async function runTests() {
    say('Running the tests\u2026');
    const res = await api('/v1/policies:test', { method: 'POST', body: { files: editedFiles() } });
    renderTests(res, 'Test results');
    say(res.passed ? 'The tests pass.' : 'The bundle does not pass its tests.', res.passed ? 'ok' : 'error');
  }

  // --- confirmations ------------------------------------------------------
  function confirm(title, lines, okText) {
    return new Promise((resolve) => {
      dialog.querySelector('#confirm-title').textContent = title;
      dialogText.replaceChildren(...lines.map((l) => (typeof l === 'string' ? el('p', {}, l) : l)));
      dialogOK.textContent = okText;
      const done = (ok) => {
        dialogOK.onclick = null;
        dialogCancel.onclick = null;
        dialog.onclose = null;
        if (dialog.open) dialog.close();
        resolve(ok);
      };
      dialogOK.onclick = () => done(true);
      dialogCancel.onclick = () => done(false);
      dialog.onclose = () => done(false);
      dialog.showModal();
      dialogCancel.focus();
    });
  }

  const fileList = (names) => (names.length ? el('ul', {}, names.map((n) => el('li', { class: 'mono' }, n))) : el('p', {}, 'No file differs.'));

  async function confirmPush() {
    const files = editedFiles();
    const changed = base ? changedNames(base.files, files) : Object.keys(files);
    const next = policies.length ? Math.max(...policies.map((p) => p.version)) + 1 : 1;
    const ok = await confirm('Push a new version',
      [`This stores the edited bundle as version ${next} (if its tests pass). It does not activate it: version ${activeVersion} keeps deciding.`,
        `Files changed from version ${base ? base.version : '?'}:`, fileList(changed)],
      `Push version ${next}`);
    if (!ok) return;
    const res = await api('/v1/policies', { method: 'POST', body: { files } });
    const v = num(res.policy && res.policy.version);
    await refresh();
    await openVersion(v);
    renderTests({ tests: res.tests, compiled: true, revision: res.policy && res.policy.revision }, `Tests of version ${v}`);
    say(`Stored version ${v} (revision ${short(res.policy && res.policy.revision)}); it is not active.`, 'ok');
  }

  async function confirmActivate(v) {
    const [target, active] = await Promise.all([getVersion(v), activeVersion ? getVersion(activeVersion) : null]);
    const changed = changedNames(active ? active.files : {}, target.files);
    const ok = await confirm(`Activate version ${v}`,
      [`Version ${v} (revision ${short(target.revision)}) will decide every access from now on, in place of version ${activeVersion}` +
        `${active ? ` (revision ${short(active.revision)})` : ''}. The activation is recorded in the log and anchored.`,
      'Files that differ:', fileList(changed)],
      `Activate version ${v}`);
    if (!ok) return;
    const act = await api(`/v1/policies/${v}:activate`, { method: 'POST', body: {} });
    await afterActivation(act, `Version ${v} is active.`);
  }

  async function confirmRollback() {
    try {
      const last = activations[0];
      const prev = last ? last.previous : 0;
      if (!prev) {
        say('There is no earlier version to roll back to.', 'error');
        return;
      }
      const [from, to] = await Promise.all([getVersion(activeVersion), getVersion(prev)]);
      const ok = await confirm('Roll back',
        [`Roll back from version ${activeVersion} (revision ${short(from.revision)}) to version ${prev} (revision ${short(to.revision)}), the version active before it.`,
          'Files that differ:', fileList(changedNames(from.files, to.files))],
        `Roll back to version ${prev}`);
      if (!ok) return;
      const act = await api('/v1/policies:rollback', { method: 'POST', body: {} });
      await afterActivation(act, `Rolled back: version ${num(act.version)} is active.`);
    } catch (err) {
      fail('Rollback')(err);
    }
  }

  async function afterActivation(act, message) {
    await refresh();
    say(message, 'ok');
    await showReceipt({ ...act, version: num(act.version), leafIndex: num(act.leafIndex), previous: num(act.previous) });
  }

  async function showReceipt(a) {
    const r = await api(`/v1/receipts/leaves/${a.leafIndex}`);
    const anchorInfo = r.anchor
      ? `anchored in block ${r.anchor.blockNumber} of chain ${r.anchor.chainId}, transaction ${r.anchor.txHash}`
      : 'not anchored yet';
    receiptBox.replaceChildren(el('div', { class: 'panel' },
      el('h3', {}, `Receipt of the activation of version ${a.version} (leaf ${a.leafIndex})`),
      el('dl', { class: 'kv' },
        el('dt', {}, 'Status'), el('dd', { id: 'receipt-status' }, String(r.status || '')),
        el('dt', {}, 'Leaf type'), el('dd', { id: 'receipt-type' }, String(r.leafType || '')),
        el('dt', {}, 'Commitment'), el('dd', { class: 'mono' }, String(r.commitment || '')),
        el('dt', {}, 'Anchor'), el('dd', {}, anchorInfo)),
      el('details', {}, el('summary', {}, 'The receipt as JSON'), el('pre', { class: 'mono' }, JSON.stringify(r, null, 2))),
      el('button', { type: 'button', class: 'secondary', onclick: () => showReceipt(a).catch(fail('Receipt')) }, 'Refresh the receipt')));
  }

  // --- dry run ------------------------------------------------------------
  async function evaluate() {
    const list = (s, spaces) => s.split(spaces ? /[\s,]+/ : /,/).map((x) => x.trim()).filter(Boolean);
    const body = {
      version: evalVersion.value, action: evalAction.value, purpose: evalPurpose.value.trim(),
      actor: evalActor.value.trim(), actorRoles: list(evalRoles.value, true), patient: evalPatient.value.trim(),
      resourceType: evalType.value.trim(), securityLabels: list(evalLabels.value, false),
    };
    try {
      const r = await api('/v1/policies:evaluate', { method: 'POST', body });
      const allow = !!r.allow;
      evalOut.replaceChildren(el('div', { class: 'panel' },
        el('p', {}, el('span', { id: 'eval-outcome', class: `badge ${allow ? 'permit' : 'deny'}` }, allow ? 'ALLOW' : 'DENY'),
          r.breakGlass ? ' (break-the-glass)' : '',
          ` by version ${num(r.policyVersion)} (revision ${short(r.policyRevision)})`),
        el('h3', {}, 'Reasons'), el('ul', { id: 'eval-reasons' }, (r.reasons || []).map((x) => el('li', {}, x))),
        el('h3', {}, 'Obligations'),
        (r.obligations || []).length
          ? el('ul', { id: 'eval-obligations' }, r.obligations.map((o) => el('li', {}, o.type, (o.securityLabels || []).length ? `: ${o.securityLabels.join(', ')}` : '')))
          : el('p', { id: 'eval-obligations', class: 'muted' }, 'None.'),
        el('h3', {}, 'Rules that fired'),
        el('ul', { id: 'eval-fired' }, (r.fired || []).map((x) => el('li', { class: 'mono' }, x))),
        (r.basedOn || []).length ? el('p', {}, `Based on consents: ${r.basedOn.map((c) => `${c.id}/_history/${c.versionId}`).join(', ')}`) : null));
      say('Dry run done; nothing was recorded.');
    } catch (err) {
      evalOut.replaceChildren(el('p', { class: 'error' }, `Evaluation failed: ${err.message}`));
    }
  }

  // --- diff ---------------------------------------------------------------
  let merges = [];
  async function showDiff() {
    for (const m of merges) m.destroy();
    merges = [];
    const [a, b] = await Promise.all([getVersion(diffFrom.value), getVersion(diffTo.value)]);
    const names = [...new Set([...Object.keys(a.files), ...Object.keys(b.files)])].sort();
    const changed = names.filter((n) => a.files[n] !== b.files[n]);
    const blocks = [el('p', { id: 'diff-summary' }, changed.length
      ? `${changed.length} of ${names.length} files differ between version ${a.version} and version ${b.version}.`
      : `Versions ${a.version} and ${b.version} have the same files.`)];
    diffOut.replaceChildren(...blocks);
    for (const n of changed) {
      const box = el('div', { class: 'diff-file', 'data-file': n });
      const label = n in a.files ? (n in b.files ? 'changed' : 'removed') : 'added';
      diffOut.append(el('h3', {}, `${n} (${label})`), box);
      const ro = (side) => [
        lineNumbers(), syntaxHighlighting(defaultHighlightStyle), n.endsWith('.rego') ? rego : n.endsWith('.json') ? json() : [],
        EditorView.cspNonce.of(ctx.nonce || ''), EditorState.readOnly.of(true), EditorView.editable.of(false),
        EditorView.contentAttributes.of({ 'aria-label': `${n} in version ${side}` }), EditorView.lineWrapping,
      ];
      merges.push(new MergeView({
        a: { doc: a.files[n] || '', extensions: ro(a.version) },
        b: { doc: b.files[n] || '', extensions: ro(b.version) },
        parent: box, collapseUnchanged: { margin: 3, minSize: 6 }, highlightChanges: true, gutter: true,
      }));
    }
  }

  refresh()
    .then(() => openVersion(activeVersion || (policies[0] && policies[0].version)))
    .catch(fail('Loading the policies'));

  return () => {
    for (const v of views) v.destroy();
    for (const m of merges) m.destroy();
    if (dialog.open) dialog.close();
  };
}

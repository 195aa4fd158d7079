// The console's shell: sign-in with a bearer token, navigation among the
// pages the token's scopes may use (learned from GET /v1/whoami), hash
// routing, and the ctx every page gets (see console/README in the repo's
// README "Console" section).
import './app.css';
import { client } from './lib/api.js';
import { el, clear } from './lib/dom.js';
import * as policy from './pages/policy.js';
import * as operator from './pages/operator.js';
import * as audit from './pages/audit.js';
import * as verify from './pages/verify.js';
import * as research from './pages/research.js';

// pages in navigation order; scopes: any one of them shows the page (the
// server checks every call regardless); none: every signed-in token.
const pages = [
  { hash: '#/policy', title: 'Policy', module: policy, scopes: ['fhiranchor/policy.admin', 'fhiranchor/audit'] },
  { hash: '#/audit', title: 'Decisions', module: audit, scopes: ['fhiranchor/audit', 'fhiranchor/patient.self'] },
  { hash: '#/verify', title: 'Verify a receipt', module: verify, scopes: null },
  { hash: '#/research', title: 'Research', module: research, scopes: ['fhiranchor/cohort.query', 'fhiranchor/cohort.export'] },
  { hash: '#/operator', title: 'Operator', module: operator, scopes: ['fhiranchor/admin', 'fhiranchor/policy.admin'] },
];

const tokenKey = 'fhiranchor.console.token';
const root = document.getElementById('app');
let session = null; // {token, clientId, role, scopes}
let cleanup = null;

function allowed(page, scopes) {
  return !page.scopes || page.scopes.some((s) => scopes.includes(s));
}

function visiblePages() {
  return session ? pages.filter((p) => allowed(p, session.scopes)) : [];
}

function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

async function signIn(token) {
  const me = await client(token)('/v1/whoami');
  session = { token, clientId: me.client_id, role: me.role, scopes: me.scopes || [] };
  sessionStorage.setItem(tokenKey, token);
}

function signOut() {
  sessionStorage.removeItem(tokenKey);
  session = null;
  render();
}

function renderSignIn(message) {
  if (cleanup) cleanup();
  cleanup = null;
  clear(root);
  const input = el('textarea', { id: 'token', name: 'token', rows: 4, autocomplete: 'off', spellcheck: 'false', required: true });
  const status = el('p', { id: 'signin-status', role: 'status', class: message ? 'error' : '' }, message || '');
  const form = el(
    'form',
    { class: 'signin', 'aria-labelledby': 'signin-title' },
    el('h1', { id: 'signin-title' }, 'Sign in to fhiranchor'),
    el('label', { for: 'token' }, 'Bearer token'),
    input,
    el('p', { class: 'hint' }, 'Paste an access token from your identity provider or the gateway\u2019s token endpoint. ',
      'On a local gateway, `fhiranchor token --scope fhiranchor/policy.admin` prints one signed by its development key. ',
      'The token stays in this tab (session storage) and is sent only to this gateway.'),
    el('button', { type: 'submit' }, 'Sign in'),
    status,
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    status.textContent = 'Checking the token\u2026';
    status.className = '';
    try {
      await signIn(input.value.trim());
      render();
    } catch (err) {
      status.textContent = `Sign-in failed: ${err.message}`;
      status.className = 'error';
    }
  });
  root.append(el('main', { id: 'main' }, form));
  input.focus();
}

function render() {
  if (!session) {
    renderSignIn();
    return;
  }
  clear(root);
  const nav = el('nav', { 'aria-label': 'Pages' },
    el('ul', {}, visiblePages().map((p) => el('li', {}, el('a', { href: p.hash, 'data-page': p.hash.slice(2) }, p.title)))));
  root.append(
    el('header', { class: 'top' },
      el('span', { class: 'brand' }, 'fhiranchor'),
      nav,
      el('span', { class: 'who', id: 'who' }, `${session.clientId} \u00b7 ${session.role}`),
      el('button', { type: 'button', id: 'signout', onclick: signOut }, 'Sign out')),
    el('main', { id: 'main', tabindex: '-1' }),
  );
  route();
}

function route() {
  if (!session) return;
  const main = document.getElementById('main');
  if (!main) return;
  const visible = visiblePages();
  if (!location.hash || location.hash === '#' || location.hash === '#/') {
    if (visible.length) {
      location.replace(visible[0].hash);
      return;
    }
  }
  if (cleanup) {
    try {
      cleanup();
    } catch (err) {
      console.warn('page cleanup failed', err);
    }
    cleanup = null;
  }
  clear(main);
  for (const a of document.querySelectorAll('nav a')) {
    if (a.getAttribute('href') === location.hash) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const page = visible.find((p) => p.hash === location.hash);
  if (!page) {
    main.append(el('h1', { tabindex: '-1' }, 'Not available'),
      el('p', {}, visible.length ? 'This token may not use that page. Choose one above.' : 'This token holds no scope any console page uses.'));
    return;
  }
  document.title = `${page.title} \u00b7 fhiranchor console`;
  const ctx = {
    api: client(session.token),
    scopes: session.scopes.slice(),
    role: session.role,
    clientId: session.clientId,
    navigate,
    el,
    nonce: cspNonce(),
  };
  const section = el('section', { class: `page page-${page.hash.slice(2)}`, 'aria-label': page.title });
  main.append(section);
  const done = page.module.mount(section, ctx);
  cleanup = typeof done === 'function' ? done : null;
}

// cspNonce is the style nonce the server put in index.html for this load;
// libraries that inject <style> elements need it (the CSP admits no other
// inline style).
function cspNonce() {
  const m = document.querySelector('meta[name="csp-nonce"]');
  return m ? m.getAttribute('content') : '';
}

// fragmentToken takes a token handed over in the fragment (#token=..., as
// `fhiranchor token --console` prints it) and wipes it from the address bar
// and the history entry; fragments never reach the server.
function fragmentToken() {
  const m = /^#token=([A-Za-z0-9._~-]+)$/.exec(location.hash);
  if (!m) return '';
  history.replaceState(null, '', location.pathname);
  return m[1];
}

window.addEventListener('hashchange', () => {
  if (/^#token=/.test(location.hash)) start();
  else route();
});

async function start() {
  const token = fragmentToken() || sessionStorage.getItem(tokenKey);
  if (token) {
    try {
      await signIn(token);
    } catch (err) {
      sessionStorage.removeItem(tokenKey);
      renderSignIn(`Sign-in failed: ${err.message}`);
      return;
    }
  }
  render();
}

start();

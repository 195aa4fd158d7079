// The console's one way to call the gateway: same origin, bearer token,
// JSON in and out, and errors as ApiError carrying the server's
// OperationOutcome (whose text quotes nothing the client sent).

// ApiError is thrown for a non-2xx answer.
export class ApiError extends Error {
  constructor(status, outcome) {
    super(outcomeText(status, outcome));
    this.name = 'ApiError';
    this.status = status;
    this.outcome = outcome;
  }
}

// outcomeText is what a page shows for an error: the OperationOutcome's
// issue diagnostics, or the HTTP status.
export function outcomeText(status, outcome) {
  const issues = outcome && Array.isArray(outcome.issue) ? outcome.issue : [];
  const text = issues.map((i) => i.diagnostics || (i.details && i.details.text) || i.code).filter(Boolean);
  if (text.length) return text.join('; ');
  if (outcome && typeof outcome.message === 'string') return outcome.message;
  return `HTTP ${status}`;
}

// client returns api(path, {method, body, headers, raw}) for a token.
// A plain-object body is sent as JSON; a string body as it is.
export function client(token, fetchFn = globalThis.fetch.bind(globalThis)) {
  return async function api(path, opts = {}) {
    if (typeof path !== 'string' || !path.startsWith('/') || path.startsWith('//')) {
      throw new Error('api paths are same-origin and absolute');
    }
    const headers = { Accept: 'application/json', ...(opts.headers || {}) };
    if (token) headers.Authorization = `Bearer ${token}`;
    let body = opts.body;
    if (body !== undefined && typeof body !== 'string' && !(body instanceof Blob) && !(body instanceof FormData) && !(body instanceof URLSearchParams)) {
      body = JSON.stringify(body);
      if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) headers['Content-Type'] = 'application/json';
    }
    const res = await fetchFn(path, { method: opts.method || 'GET', headers, body, credentials: 'omit', cache: 'no-store' });
    if (!res.ok) {
      let outcome = null;
      try {
        outcome = await res.json();
      } catch {
        outcome = null;
      }
      throw new ApiError(res.status, outcome);
    }
    if (opts.raw) return res;
    if (res.status === 204) return null;
    const text = await res.text();
    return text ? JSON.parse(text) : null;
  };
}

// Komoku's HTTP API as the page uses it: every request goes to this origin,
// with `Authorization: Bearer <token>` once the user gave a token (kept in
// localStorage). The event stream is read with fetch, not EventSource, which
// cannot send that header.

const TOKEN_KEY = 'komoku.token';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let authListener = () => {};

// `listener(message)` is called when the API refuses the token (or needs
// one): the page then asks for it.
export function onAuthNeeded(listener) {
  authListener = listener;
}

export function token() {
  return localStorage.getItem(TOKEN_KEY) || '';
}

export function setToken(value) {
  if (value) localStorage.setItem(TOKEN_KEY, value);
  else localStorage.removeItem(TOKEN_KEY);
}

function headers(extra = {}) {
  const h = {...extra};
  const t = token();
  if (t) h['Authorization'] = 'Bearer ' + t;
  return h;
}

async function refusal(res) {
  let code = 'http_' + res.status;
  let message = `HTTP ${res.status}`;
  try {
    const body = await res.json();
    if (body && body.error) ({code, message} = body.error);
  } catch (e) {
    // not JSON: keep the status
  }
  if (res.status === 401) {
    authListener(token() ? 'The token was refused: ' + message : message);
  }
  return new ApiError(res.status, code, message);
}

// GET /api/v1/<path> with `params` (an object; an array value repeats the
// parameter); the parsed JSON, or an ApiError.
export async function get(path, params = {}, signal) {
  const res = await fetch(url(path, params), {headers: headers(), signal});
  if (!res.ok) throw await refusal(res);
  return res.json();
}

// POST /api/v1/komoku: a Komoku JSON query; its `result`, or an ApiError.
export async function komoku(query) {
  const res = await fetch('/api/v1/komoku', {
    method: 'POST',
    headers: headers({'Content-Type': 'application/json'}),
    body: JSON.stringify(query),
  });
  if (!res.ok) throw await refusal(res);
  const body = await res.json();
  if (body.error) throw new ApiError(res.status, body.error.code, body.error.message);
  return body.result;
}

export function url(path, params = {}) {
  const q = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined || value === null) continue;
    for (const v of Array.isArray(value) ? value : [value]) q.append(name, String(v));
  }
  const s = q.toString();
  return '/api/v1/' + path + (s ? '?' + s : '');
}

// Reads GET /api/v1/stream for `keys` (names or filters such as `#`) until
// `signal` aborts, reconnecting after a failure. `handlers.open()` runs once
// the server listens (each connection), `handlers.event(name, data)` for
// each event. With `sinceOf()` (called at each connection, epoch seconds or
// null) a reconnection asks for the changes since then first, so nothing is
// missed; the caller drops what it has already seen.
export function stream(keys, handlers, signal, sinceOf = () => null) {
  let delay = 1000;
  const run = async () => {
    while (!signal.aborted) {
      try {
        const since = sinceOf();
        const res = await fetch(url('stream', {key: keys, since}), {headers: headers(), signal});
        if (!res.ok) throw await refusal(res);
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        let opened = false;
        for (;;) {
          const {value, done} = await reader.read();
          if (done) break;
          if (!opened) {
            opened = true;
            delay = 1000;
            handlers.open && handlers.open();
          }
          buffer += value;
          let end;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            let name = 'message';
            let data = '';
            for (const line of block.split('\n')) {
              if (line.startsWith('event: ')) name = line.slice(7);
              else if (line.startsWith('data: ')) data += line.slice(6);
            }
            if (data) handlers.event(name, JSON.parse(data));
          }
        }
      } catch (e) {
        if (signal.aborted) return;
        handlers.error && handlers.error(e);
        if (e instanceof ApiError && e.status === 401) return;  // waits for a token
      }
      if (signal.aborted) return;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 30000);
    }
  };
  run();
}

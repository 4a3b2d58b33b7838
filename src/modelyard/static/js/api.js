// The HTTP client of the dashboard. Errors are problem+json: {title, detail, code, hint}.
// A page's first GET requests may be started before its code arrives (`prefetch`); the page's
// own `get` of the same path then takes that answer instead of asking again.

const KEY_STORE = "modelyard.apiKey";
const prefetched = new Map(); // path -> the promise of its answer

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.detail || body?.title || `HTTP ${status}`);
    this.status = status;
    this.code = body?.code || "http_error";
    this.detail = body?.detail || this.message;
    this.hint = body?.hint || "";
    this.body = body;
  }
}

export function apiKey() {
  return localStorage.getItem(KEY_STORE) || "";
}

// The key prompt: one at a time, shared by every request that met a 401 meanwhile, and not
// asked again on this page once it was cancelled or the key typed was refused: a page that
// polls would otherwise ask forever. Reloading the page asks again.
let keyPrompt = null; // the prompt on screen: a promise of the key typed ("" if none)
let keyRefused = false;
const REFUSED_HINT = "The API key was refused or not given: reload the page to enter another.";

function askForKey() {
  if (keyRefused) return Promise.resolve("");
  if (!keyPrompt) {
    keyPrompt = Promise.resolve()
      .then(() => {
        const typed = window.prompt("modelyard needs an API key (it is kept in this browser):");
        const key = (typed || "").trim();
        if (key) localStorage.setItem(KEY_STORE, key);
        else keyRefused = true;
        return key;
      })
      .finally(() => {
        keyPrompt = null;
      });
  }
  return keyPrompt;
}

function keyWasRefused(key) {
  keyRefused = true;
  if (apiKey() === key) localStorage.removeItem(KEY_STORE);
}

function headers(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

export async function api(path, { method = "GET", body, signal, retried = false } = {}) {
  const init = {
    method,
    signal,
    headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }),
  };
  if (body !== undefined) init.body = JSON.stringify(body);
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, {
      detail: "modelyard is not reachable",
      code: "network_error",
      hint: "Is the modelyard server running?",
    });
  }
  const sent = init.headers.Authorization?.slice("Bearer ".length) || "";
  if (resp.status === 401 && !retried) {
    // A key typed while this request was on its way is tried before anyone is asked.
    const key = apiKey() && apiKey() !== sent ? apiKey() : await askForKey();
    if (key) return api(path, { method, body, signal, retried: true });
  } else if (resp.status === 401) {
    keyWasRefused(sent);
  }
  if (resp.status === 204) return null;
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { detail: text };
  }
  if (resp.status === 401 && keyRefused) throw new ApiError(401, { ...data, hint: REFUSED_HINT });
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

/** Start GET requests now, for a page whose code is still on its way. */
export function prefetch(paths) {
  for (const path of paths) {
    if (prefetched.has(path)) continue;
    const answer = api(path);
    answer.catch(() => {}); // reported to the page that takes it
    prefetched.set(path, answer);
  }
}

/** Forget prefetched answers nobody took (the user went to another page). */
export function dropPrefetched() {
  prefetched.clear();
}

export function get(path, opts = {}) {
  const early = prefetched.get(path);
  if (early && !opts.signal) {
    prefetched.delete(path);
    return early;
  }
  return api(path, opts);
}

export const post = (path, body, opts = {}) =>
  api(path, { ...opts, method: "POST", body: body ?? {} });
export const patch = (path, body) => api(path, { method: "PATCH", body });
export const del = (path) => api(path, { method: "DELETE" });

/** Fetch a file the API answers (an export, with this browser's key) and let the browser save
 *  it, under the server's Content-Disposition name or `fallback`. */
export async function download(path, fallback) {
  const resp = await fetch(path, { headers: headers() });
  if (!resp.ok) throw new ApiError(resp.status, await resp.json().catch(() => null));
  const name = /filename="([^"]+)"/.exec(resp.headers.get("Content-Disposition") || "");
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await resp.blob());
  link.download = name ? name[1] : fallback;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

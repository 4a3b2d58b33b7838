// The HTTP client of the dashboard. Errors are problem+json: {title, detail, code, hint}.

const KEY_STORE = "modelyard.apiKey";

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

function headers(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

export async function api(path, { method = "GET", body, signal } = {}) {
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
  if (resp.status === 401 && !init._retried) {
    const key = window.prompt("modelyard needs an API key (it is kept in this browser):");
    if (key) {
      localStorage.setItem(KEY_STORE, key.trim());
      return api(path, { method, body, signal, _retried: true });
    }
  }
  if (resp.status === 204) return null;
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { detail: text };
  }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

export const get = (path, opts) => api(path, opts);
export const post = (path, body, opts = {}) =>
  api(path, { ...opts, method: "POST", body: body ?? {} });
export const patch = (path, body) => api(path, { method: "PATCH", body });
export const del = (path) => api(path, { method: "DELETE" });

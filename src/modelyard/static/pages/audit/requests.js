// The Audit page's API calls: the filtered entries, and an export as a file download.
import { ApiError, apiKey, get } from "../../js/api.js";
import { PATHS } from "../../js/paths.js";

/** The query string of a filter ({key, action, outcome, since, until}; empty values left out). */
export function auditQuery(filter, extra = {}) {
  const params = new URLSearchParams(extra);
  for (const [name, value] of Object.entries(filter)) {
    if (value) params.set(name, value);
  }
  return params.toString();
}

export const readAudit = (filter) => get(`${PATHS.audit}?${auditQuery(filter, { limit: 500 })}`);

/** Fetch the export (with the key this browser keeps) and hand it to the browser as a file. */
export async function downloadAudit(filter, format) {
  const key = apiKey();
  const resp = await fetch(`${PATHS.audit}/export?${auditQuery(filter, { format })}`, {
    headers: key ? { Authorization: `Bearer ${key}` } : {},
  });
  if (!resp.ok) throw new ApiError(resp.status, await resp.json().catch(() => null));
  const name = /filename="([^"]+)"/.exec(resp.headers.get("Content-Disposition") || "");
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await resp.blob());
  link.download = name ? name[1] : `audit.${format}`;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

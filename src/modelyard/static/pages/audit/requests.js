// The Audit page's API calls: the filtered entries, and an export as a file download.
import { download, get } from "../../js/api.js";
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

/** The export, downloaded as a file. */
export const downloadAudit = (filter, format) =>
  download(`${PATHS.audit}/export?${auditQuery(filter, { format })}`, `audit.${format}`);

// Formatting helpers shared by the pages.

export function bytes(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  let v = Number(n);
  while (Math.abs(v) >= 1000 && i < units.length - 1) {
    v /= 1000;
    i += 1;
  }
  return `${v.toFixed(v >= 100 || i === 0 ? 0 : 1)} ${units[i]}`;
}

export function rate(bps) {
  return bps ? `${bytes(bps)}/s` : "—";
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

/** How long ago `iso` was, relative at every age as `ollama list` shows it. No locale date:
 * a page's first date formatter costs some 50 ms in a fresh tab (its data loads then). */
export function ago(iso) {
  if (!iso) return "never";
  const seconds = (Date.now() - Date.parse(iso)) / 1000;
  if (seconds < 2) return "just now";
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  const days = seconds / 86400;
  if (days < 30) return `${Math.round(days)} d ago`;
  if (days < 365) return `${Math.round(days / 30.44)} mo ago`;
  return `${Math.round(days / 365.25)} y ago`;
}

/** The local time of day of `date`, HH:MM:SS (no `Intl`, as above). */
export function clock(date = new Date()) {
  return [date.getHours(), date.getMinutes(), date.getSeconds()]
    .map((n) => String(n).padStart(2, "0"))
    .join(":");
}

export function ms(value) {
  return value === null || value === undefined ? "—" : `${Math.round(value)} ms`;
}

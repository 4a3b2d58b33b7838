// The log viewer of a managed instance (Providers page) and of a download (Downloads page):
// level filter, search, live follow over a WebSocket, and the whole file as a download. The
// level of a line is guessed as the server guesses it (runtimes/log_files.py), so followed
// lines are filtered the way loaded ones are.
import { ApiError, apiKey, get } from "./api.js";
import { h } from "./dom.js";
import { toastError } from "./toast.js";

const ERROR =
  /\b(error|fatal|panic|critical|failed|failure|exception|traceback)\b|level=error|ended with (signal|exit code [1-9])|out of memory/i;
const WARNING = /\bwarn(ing)?\b|level=warn|memory watchdog kills/i;
const RANK = { debug: 0, info: 1, warning: 2, error: 3 };
const KEEP_LINES = 2000; // followed lines shown at most

const levelOf = (line) => (ERROR.test(line) ? "error" : WARNING.test(line) ? "warning" : "info");

/** A log's last lines at `level` or above that contain `q` (both routes take the same query). */
export function readLog(path, { level = "", q = "" } = {}) {
  const params = new URLSearchParams({ lines: 500 });
  if (level) params.set("level", level);
  if (q) params.set("q", q);
  return get(`${path}?${params}`);
}

/** Hand the file at `path` to the browser as a download named `name` (with this browser's key). */
export async function saveFile(path, name) {
  const key = apiKey();
  const resp = await fetch(path, { headers: key ? { Authorization: `Bearer ${key}` } : {} });
  if (!resp.ok) throw new ApiError(resp.status, await resp.json().catch(() => null));
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await resp.blob());
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

/**
 * A viewer of one log. `source`: `load({level, q})` answers `{path, lines}`, `socketPath` is
 * its follow WebSocket, `download()` saves the whole file.
 */
export function logViewer(source) {
  const level = h(
    "select",
    { name: "level", "aria-label": "Level" },
    h("option", { value: "" }, "All levels"),
    h("option", { value: "warning" }, "Warnings and errors"),
    h("option", { value: "error" }, "Errors"),
  );
  const search = h("input", { type: "search", name: "q", placeholder: "Search the log" });
  const followBox = h("input", { type: "checkbox", name: "follow" });
  const path = h("div", { class: "small muted log-path" });
  const pre = h("pre", { class: "log", "data-testid": "log-lines" });
  let socket = null;
  let seq = 0;

  const wanted = (line) =>
    (!level.value || RANK[levelOf(line)] >= RANK[level.value]) &&
    (!search.value || line.toLowerCase().includes(search.value.toLowerCase()));

  function show(lines, append) {
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    const kept = append ? [...pre.textContent.split("\n"), ...lines] : lines;
    const text = kept.slice(-KEEP_LINES).join("\n");
    pre.textContent = text || (level.value || search.value ? "(no line matches)" : "(empty log)");
    if (atBottom || !append) pre.scrollTop = pre.scrollHeight;
  }

  async function reload() {
    const mine = ++seq;
    try {
      const log = await source.load({ level: level.value, q: search.value.trim() });
      if (mine !== seq) return;
      path.textContent = log.path;
      show(log.lines, false);
    } catch (err) {
      if (mine === seq) pre.textContent = err.message;
    }
  }

  function stopFollowing() {
    if (socket) socket.close();
    socket = null;
  }

  function startFollowing() {
    stopFollowing();
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const key = apiKey();
    const query = key ? `?access_token=${encodeURIComponent(key)}` : "";
    const ws = new WebSocket(`${proto}://${location.host}${source.socketPath}${query}`);
    let first = true;
    ws.onmessage = (msg) => {
      const data = JSON.parse(msg.data);
      if (data.error) {
        pre.textContent = data.error;
        return;
      }
      // The first message is the tail as of now: it replaces what was loaded before, so no
      // line written in between goes missing; then each batch is appended.
      show(data.lines.filter(wanted), !first);
      first = false;
    };
    ws.onclose = () => {
      if (socket === ws) followBox.checked = false;
    };
    socket = ws;
  }

  let soon = null;
  const reloadSoon = () => {
    clearTimeout(soon);
    soon = setTimeout(reload, 250);
  };
  level.addEventListener("change", reload);
  search.addEventListener("input", reloadSoon);
  followBox.addEventListener("change", () =>
    followBox.checked ? startFollowing() : stopFollowing(),
  );
  const download = h(
    "button",
    {
      class: "btn btn-small",
      type: "button",
      onclick: () => source.download().catch(toastError),
    },
    "Download",
  );
  const el = h(
    "div",
    { class: "log-viewer" },
    h(
      "div",
      { class: "toolbar log-tools" },
      level,
      search,
      h("label", { class: "switch" }, followBox, "Follow"),
      download,
    ),
    path,
    pre,
  );
  return {
    el,
    reload: () => (socket ? Promise.resolve() : reload()), // a followed log is already fresh
    close() {
      clearTimeout(soon);
      stopFollowing();
    },
  };
}

// The app shell: navigation from the page registry, the hash router, the live-connection
// indicator. Each page's first API requests and module preloads start in boot.js.
import { pageTitle, pageUrl, parseHash, startPage } from "./boot.js";
import { h, render } from "./dom.js";
import { events } from "./events.js";
import { PAGES } from "./pages.js";
import { toast, toastError } from "./toast.js";

const RELOADED = "modelyard.reloadedFor";
const LIVE_AFTER_MS = 1000;
let current = { name: null, cleanup: null, module: null };

function drawNav() {
  render(
    document.getElementById("nav"),
    PAGES.map((page) => h("a", { href: `#/${page.name}`, "data-page": page.name }, page.title)),
  );
}

function markNav(name) {
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.page === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

/** A page module that 404s as `stale_dashboard` means modelyard was upgraded under this tab:
 * load the new dashboard (once per version, so a broken file cannot loop). */
async function reloadIfStale(url) {
  const answer = await fetch(url).catch(() => null);
  if (answer?.status !== 404) return false;
  const problem = await answer.json().catch(() => null);
  if (problem?.code !== "stale_dashboard" || sessionStorage.getItem(RELOADED) === url) {
    return false;
  }
  sessionStorage.setItem(RELOADED, url);
  location.reload();
  return true;
}

async function route() {
  const { name, args } = parseHash();
  const root = document.getElementById("page");
  if (current.name === name && current.module?.update) {
    current.module.update(args);
    return;
  }
  if (typeof current.cleanup === "function") current.cleanup();
  current = { name, cleanup: null, module: null };
  startPage(name, args);
  const url = pageUrl(name);
  markNav(name);
  document.title = `${pageTitle(name)} · modelyard`;
  render(root, h("div", { class: "loading" }, "Loading…"));
  try {
    const module = (await import(url)).default;
    if (current.name !== name) return;
    render(root);
    root.dataset.page = name;
    current.module = module;
    current.cleanup = await module.mount(root, { args });
  } catch (err) {
    if (await reloadIfStale(url)) return;
    render(
      root,
      h(
        "div",
        { class: "empty" },
        h("h2", {}, "This page failed to load"),
        h("p", {}, String(err.message || err)),
      ),
    );
    toastError(err);
  }
}

function showConnection(state) {
  const el = document.getElementById("conn");
  el.dataset.state = state;
  el.querySelector(".conn-label").textContent =
    state === "open" ? "Live" : state === "connecting" ? "Connecting…" : "Reconnecting…";
}

// Alerts show on every page as they fire and resolve (a firing one stays until dismissed).
function showAlert({ data }) {
  const firing = data.status === "firing";
  toast(`${firing ? "Alert" : "Resolved"}: ${data.summary}`, {
    kind: firing ? "error" : "success",
    hint:
      firing && data.details?.last_log_line ? `Last log line: ${data.details.last_log_line}` : "",
    timeout: firing ? 0 : undefined,
  });
}

drawNav();
window.addEventListener("hashchange", route);
events.on("alert.changed", showAlert);
events.onState(showConnection);
// Live updates connect once the first page has drawn what it read (or after LIVE_AFTER_MS,
// should its answers be slow): the snapshot the server builds for a new socket would
// otherwise compete with that page's first answers. The page loses nothing: every snapshot
// makes its listeners read their state again.
let connecting = false;
const connectLive = () => {
  if (connecting) return;
  connecting = true;
  events.connect();
};
setTimeout(connectLive, LIVE_AFTER_MS);
route().finally(connectLive);

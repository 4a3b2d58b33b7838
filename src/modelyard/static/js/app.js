// The app shell: navigation from the page registry, the hash router, the live-connection
// indicator. On each route the page's first API requests start at once, and all of its
// modules are preloaded together (index.html lists them), so neither waits for the other.
import { dropPrefetched, prefetch } from "./api.js";
import { h, render } from "./dom.js";
import { events } from "./events.js";
import { loadKinds } from "./kinds.js";
import { DEFAULT_PAGE, PAGES } from "./pages.js";
import { toastError } from "./toast.js";

const BASE = new URL("../", import.meta.url); // /static/<version>/
const RELOADED = "modelyard.reloadedFor";
const byName = new Map(PAGES.map((page) => [page.name, page]));
const pageModules = JSON.parse(document.getElementById("page-modules")?.textContent || "{}");
const preloaded = new Set();
let current = { name: null, cleanup: null, module: null };

function parseHash() {
  const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  return { name: byName.has(name) ? name : DEFAULT_PAGE, args: rest.map(decodeURIComponent) };
}

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

function preload(name) {
  for (const path of pageModules[name] || []) {
    if (preloaded.has(path)) continue;
    preloaded.add(path);
    document.head.append(h("link", { rel: "modulepreload", href: new URL(path, BASE).href }));
  }
}

/** A page module that 404s as `stale_dashboard` means modelyard was upgraded under this tab:
 * load the new dashboard (once per version, so a broken file cannot loop). */
async function reloadIfStale(url) {
  const answer = await fetch(url).catch(() => null);
  if (answer?.status !== 404) return false;
  const problem = await answer.json().catch(() => null);
  if (problem?.code !== "stale_dashboard" || sessionStorage.getItem(RELOADED) === BASE.href) {
    return false;
  }
  sessionStorage.setItem(RELOADED, BASE.href);
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
  dropPrefetched();
  prefetch(byName.get(name).requests(args));
  const url = new URL(`pages/${name}/index.js`, BASE).href;
  preload(name);
  markNav(name);
  document.title = `${byName.get(name).title} · modelyard`;
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

loadKinds().catch(() => {}); // every page labels providers; a page that needs them reports a failure
drawNav();
window.addEventListener("hashchange", route);
route();
events.onState(showConnection);
events.connect();

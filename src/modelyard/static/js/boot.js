// The first module the dashboard runs (index.html loads it async, with its small graph): it
// starts the current page's first API requests and the preloads of all the page's modules
// (index.html lists them) while the rest of the shell is still on its way.
import { dropPrefetched, prefetch } from "./api.js";
import { loadKinds } from "./kinds.js";
import { DEFAULT_PAGE, PAGES } from "./pages.js";

const BASE = new URL("../", import.meta.url); // /static/<version>/
const byName = new Map(PAGES.map((page) => [page.name, page]));
const pageModules = JSON.parse(document.getElementById("page-modules")?.textContent || "{}");
const preloaded = new Set();
let startedPage = null;

/** The page the URL names (the default one for anything else) and its arguments. */
export function parseHash() {
  const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  return { name: byName.has(name) ? name : DEFAULT_PAGE, args: rest.map(decodeURIComponent) };
}

export const pageUrl = (name) => new URL(`pages/${name}/index.js`, BASE).href;
export const pageTitle = (name) => byName.get(name).title;

function preload(name) {
  const links = [];
  for (const path of pageModules[name] || []) {
    if (preloaded.has(path)) continue;
    preloaded.add(path);
    const link = document.createElement("link");
    link.rel = "modulepreload";
    link.href = new URL(path, BASE).href;
    links.push(link);
  }
  document.head.append(...links);
}

/** Start page `name`: its first API requests, then its modules (once per arrival on it). */
export function startPage(name, args) {
  if (startedPage === name) return;
  startedPage = name;
  dropPrefetched(); // answers another page wanted
  prefetch(byName.get(name).requests(args));
  preload(name);
}

loadKinds().catch(() => {}); // every page labels providers; a page that needs them reports it
const first = parseHash();
startPage(first.name, first.args);

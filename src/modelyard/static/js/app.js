// The app shell: hash router, navigation, live-connection indicator.

import { h, render } from "./dom.js";
import { events } from "./events.js";
import { toastError } from "./toast.js";

const PAGES = {
  models: "Models",
  get: "Get models",
  downloads: "Downloads",
  providers: "Providers",
  chat: "Chat",
  system: "System",
};
const DEFAULT_PAGE = "models";

let current = { name: null, cleanup: null };

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [name, ...rest] = raw.split("/");
  return { name: PAGES[name] ? name : DEFAULT_PAGE, args: rest.map(decodeURIComponent) };
}

async function route() {
  const { name, args } = parseHash();
  const root = document.getElementById("page");
  if (current.name === name && current.module?.update) {
    current.module.update(args);
    return;
  }
  if (typeof current.cleanup === "function") current.cleanup();
  current = { name, cleanup: null };
  for (const link of document.querySelectorAll("#nav a")) {
    link.toggleAttribute("aria-current", link.dataset.page === name);
    if (link.dataset.page === name) link.setAttribute("aria-current", "page");
  }
  document.title = `${PAGES[name]} · modelyard`;
  render(root, h("div", { class: "loading" }, "Loading…"));
  try {
    const module = (await import(`/static/pages/${name}.js`)).default;
    if (current.name !== name) return;
    render(root);
    root.dataset.page = name;
    current.module = module;
    current.cleanup = await module.mount(root, { args });
  } catch (err) {
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

window.addEventListener("hashchange", route);
events.onState(showConnection);
events.connect();
route();

// Downloads: every task the server has, live. The list comes from GET /api/downloads (so a
// reload shows the same tasks) and download.* events keep each card current.
import { h, render } from "../../js/dom.js";
import { events } from "../../js/events.js";
import { rate } from "../../js/format.js";
import { logViewer } from "../../js/logview.js";
import { toastError } from "../../js/toast.js";
import { clearFinished, downloadAction } from "./actions.js";
import { ACTIVE, downloadCard, patchCard, RUNNING } from "./card.js";
import { downloadLogSource, listDownloads } from "./requests.js";

const FILTER_KEY = "modelyard.downloads.filter";
const LOG_REFRESH_MS = 1000;

function summaryText(tasks) {
  if (!tasks.length) return "Nothing downloaded yet.";
  const count = (...states) => tasks.filter((t) => states.includes(t.state)).length;
  const running = count(...RUNNING);
  const queued = count("queued");
  const paused = count("paused");
  const finished = tasks.length - running - queued - paused;
  const speed = tasks
    .filter((t) => t.state === "downloading")
    .reduce((n, t) => n + (t.speed_bps || 0), 0);
  return (
    `${running} running · ${queued} queued · ${paused} paused · ${finished} finished` +
    (speed ? ` · ${rate(speed)}` : "")
  );
}

function emptyList(anyTask) {
  return h(
    "div",
    { class: "empty" },
    h("h2", {}, anyTask ? "No active downloads" : "No downloads yet"),
    h("p", {}, "Start one on ", h("a", { href: "#/get" }, "Get models"), "."),
  );
}

function downloadsPage(els) {
  const state = {
    tasks: new Map(), // id -> task
    logs: new Map(), // id -> {viewer, fetchedAt} of the open logs
    busy: new Set(),
    filter: localStorage.getItem(FILTER_KEY) || "all",
  };
  const cardOf = (id) => els.list.querySelector(`[data-id="${CSS.escape(id)}"]`);
  const shows = (t) => state.filter === "all" || ACTIVE.has(t.state);
  const page = {
    state,
    els,
    async load() {
      try {
        const { downloads } = await listDownloads();
        state.tasks = new Map(downloads.map((t) => [t.id, t]));
        page.draw();
      } catch (err) {
        toastError(err);
      }
    },
    card: (t) =>
      downloadCard(t, {
        busy: state.busy.has(t.id),
        log: state.logs.get(t.id)?.viewer.el, // the same element across redraws
        onAction: page.act,
      }),
    draw() {
      els.summary.textContent = summaryText([...state.tasks.values()]);
      const shown = [...state.tasks.values()]
        .filter(shows)
        // Newest first. ISO times compare as strings; `localeCompare` would build a collator
        // (tens of milliseconds in a fresh tab, before the first card is drawn).
        .sort((a, b) => (a.created_at < b.created_at) - (a.created_at > b.created_at));
      render(els.list, shown.length ? shown.map(page.card) : emptyList(state.tasks.size > 0));
    },
    /** Redraw task `t`'s card alone when it stays in the list, else the whole list. */
    redraw(t) {
      const old = cardOf(t.id);
      if (old && shows(t)) old.replaceWith(page.card(t));
      else page.draw();
    },
    /** A progress event: numbers in place while the state stays, else a redraw. */
    patch(t) {
      const el = cardOf(t.id);
      if (!el || el.dataset.state !== t.state || state.busy.has(t.id)) page.redraw(t);
      else patchCard(el, t);
    },
    act(t, action) {
      if (action === "log") return page.toggleLog(t);
      return downloadAction(page, t, action);
    },
    async toggleLog(t) {
      if (state.logs.has(t.id)) {
        page.closeLog(t.id);
        page.redraw(t);
        return;
      }
      state.logs.set(t.id, { viewer: logViewer(downloadLogSource(t.id)), fetchedAt: 0 });
      page.redraw(t);
      await page.refreshLog(t.id);
    },
    closeLog(id) {
      state.logs.get(id)?.viewer.close();
      state.logs.delete(id);
    },
    /** Read the open log again (a followed one is fresh already). */
    async refreshLog(id) {
      const entry = state.logs.get(id);
      if (!entry) return;
      entry.fetchedAt = Date.now();
      await entry.viewer.reload();
    },
  };
  return page;
}

function filterButtons(page, box) {
  const { state } = page;
  render(
    box,
    [
      ["active", "Active"],
      ["all", "All"],
    ].map(([value, label]) =>
      h(
        "button",
        {
          class: "btn btn-small",
          type: "button",
          "aria-pressed": String(state.filter === value),
          onclick: () => {
            state.filter = value;
            localStorage.setItem(FILTER_KEY, value);
            filterButtons(page, box);
            page.draw();
          },
        },
        label,
      ),
    ),
  );
}

function follow(page) {
  const { state } = page;
  const onTask = (ev) => {
    const t = ev.data;
    const isNew = !state.tasks.has(t.id);
    state.tasks.set(t.id, t);
    if (isNew) {
      page.draw();
      return;
    }
    page.els.summary.textContent = summaryText([...state.tasks.values()]);
    if (ev.type === "download.progress") page.patch(t);
    else page.redraw(t);
    const log = state.logs.get(t.id);
    if (log && (ev.type === "download.state" || Date.now() - log.fetchedAt > LOG_REFRESH_MS)) {
      page.refreshLog(t.id);
    }
  };
  const offs = [
    events.on("download.state", onTask),
    events.on("download.progress", onTask),
    events.on("download.removed", (ev) => {
      state.tasks.delete(ev.data.id);
      page.closeLog(ev.data.id);
      page.draw();
    }),
    // Every (re)connect: the events missed meanwhile are gone, so read the list again.
    events.onSnapshot(() => page.load(), false),
  ];
  return () => {
    for (const off of offs) off();
  };
}

export default {
  async mount(root) {
    const els = {
      list: h("div", { class: "download-list", id: "download-list" }),
      summary: h("p", { class: "page-sub", id: "download-summary" }, "Loading…"),
    };
    const page = downloadsPage(els);
    const filters = h("div", { class: "segmented", role: "group", "aria-label": "Show" });
    const clearButton = h(
      "button",
      { class: "btn", id: "clear-finished", onclick: () => clearFinished(page) },
      "Clear finished",
    );
    render(
      root,
      h(
        "div",
        { class: "page-head" },
        h("div", {}, h("h1", {}, "Downloads"), els.summary),
        h(
          "div",
          { class: "toolbar" },
          filters,
          clearButton,
          h("a", { class: "btn btn-primary", href: "#/get" }, "Get models"),
        ),
      ),
      els.list,
    );
    filterButtons(page, filters);
    const unfollow = follow(page);
    await page.load();
    return () => {
      unfollow();
      for (const id of [...page.state.logs.keys()]) page.closeLog(id); // their WebSockets
    };
  },
};

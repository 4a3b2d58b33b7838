// Models: one catalog of every instance's models — search, filters, sort, pages, table or
// cards, multi-select with batch actions, start/stop/delete/recreate, the details drawer, and
// live state from model.state / catalog.changed events, and what the scheduler says of each
// model (loading, in flight, queued, idle unload, last eviction) from model.schedule events.
import { h, render } from "../../js/dom.js";
import { events } from "../../js/events.js";
import { loadKinds } from "../../js/kinds.js";
import { toastError } from "../../js/toast.js";
import { recommendedSection } from "../get/recommended.js";
import { modelAction } from "./actions.js";
import { drawBatchBar, showBatchProgress } from "./batch.js";
import { modelCards } from "./cards.js";
import { drawPager } from "./pager.js";
import { FIRST_QUERY, listInstances, modelKey, modelSchedule, searchModels } from "./requests.js";
import { modelTable } from "./table.js";
import { drawHead, filterPanel, pageHead } from "./toolbar.js";

// The details drawer and its usage chart (with the chart library) are not needed for the
// first rows: they load after them.
let drawerModule = null;
const loadDrawer = async () => {
  drawerModule ??= await import("./drawer.js");
  return drawerModule;
};

const VIEW_KEY = "modelyard.models.view";
const RELOAD_DELAY_MS = 250;

function initialState() {
  return {
    ...FIRST_QUERY,
    total: 0,
    models: [],
    selected: new Map(), // modelKey -> model
    busy: new Set(), // modelKeys with an action running
    view: localStorage.getItem(VIEW_KEY) || (window.innerWidth < 720 ? "cards" : "table"),
    seq: 0,
    managed: new Set(), // "provider/id" of the instances modelyard runs (see rules.js)
    schedule: new Map(), // provider/instance/name -> the scheduler's view (model.schedule)
  };
}

function emptyList(filtered) {
  return h(
    "div",
    { class: "empty panel" },
    h("h2", {}, filtered ? "No models match" : "No models yet"),
    h(
      "p",
      {},
      filtered
        ? "Change the search or the filters."
        : "Download one from Get models, or put GGUF files in the models directory and press Sync.",
    ),
  );
}

/** The page object every part draws from and acts through. */
function modelsPage(els) {
  const state = initialState();
  const page = {
    state,
    timers: { search: null, reload: null },
    async load() {
      const seq = ++state.seq;
      try {
        const [found, instances, schedule] = await Promise.all([
          searchModels(state),
          listInstances().catch(() => null),
          modelSchedule().catch(() => null),
        ]);
        if (seq !== state.seq) return;
        if (schedule) {
          const seenAt = Date.now();
          state.schedule = new Map(schedule.models.map((v) => [v.key, { ...v, seenAt }]));
        }
        if (instances) {
          const managed = instances.instances.filter((i) => i.managed);
          state.managed = new Set(managed.map((i) => `${i.provider}/${i.id}`));
        }
        Object.assign(state, { models: found.models, total: found.total });
        if (!found.models.length && state.page > 1 && found.total) {
          page.query({ page: Math.ceil(found.total / state.pageSize) });
          return;
        }
        page.draw();
      } catch (err) {
        toastError(err);
      }
    },
    reloadSoon() {
      clearTimeout(page.timers.reload);
      page.timers.reload = setTimeout(page.load, RELOAD_DELAY_MS);
    },
    /** Change the query (back to its first page unless one is given) and search again. */
    query(changes) {
      Object.assign(state, { page: 1 }, changes);
      page.load();
    },
    sortBy(field) {
      if (state.sort === field) page.query({ order: state.order === "asc" ? "desc" : "asc" });
      else page.query({ sort: field, order: field === "name" ? "asc" : "desc" });
    },
    setView(view) {
      state.view = view;
      localStorage.setItem(VIEW_KEY, view);
      page.draw();
    },
    /** Select (or unselect) `models`; with none, clear the selection. */
    select(models = null, on = false) {
      if (!models) state.selected.clear();
      for (const m of models || []) {
        if (on) state.selected.set(modelKey(m), m);
        else state.selected.delete(modelKey(m));
      }
      page.draw();
    },
    act: (m, action) => modelAction(page, m, action),
    openDetails: (m) =>
      loadDrawer()
        .then((drawer) => drawer.openDrawer(page, m))
        .catch(toastError),
    draw() {
      drawHead(page, els);
      const filtered = state.q || state.status || state.provider || state.source || state.size;
      if (!state.models.length) render(els.list, emptyList(filtered));
      else render(els.list, state.view === "table" ? modelTable(page) : modelCards(page));
      drawPager(page, els.pager);
      drawBatchBar(page, els.batch);
    },
  };
  return page;
}

/** Follow the catalog live; returns the unsubscribe. */
function follow(page) {
  const { state } = page;
  const offs = [
    events.on("model.state", ({ data: d }) => {
      const m = state.models.find(
        (x) => x.provider === d.provider && x.instance_id === d.instance_id && x.name === d.name,
      );
      if (!m || d.status === "removed" || (state.status && d.status !== state.status)) {
        page.reloadSoon();
        return;
      }
      Object.assign(m, { status: d.status, loaded: d.details });
      page.draw();
    }),
    events.on("model.schedule", ({ data }) => {
      state.schedule.set(data.key, { ...data, seenAt: Date.now() });
      page.draw();
    }),
    events.on("catalog.changed", page.reloadSoon),
    events.on("batch.progress", (ev) => showBatchProgress(ev.data)),
    events.onSnapshot(page.reloadSoon, false),
  ];
  return () => {
    for (const off of offs) off();
  };
}

export default {
  async mount(root) {
    await loadKinds().catch(toastError);
    const els = {
      list: h("div", { id: "model-list" }),
      pager: h("div", { class: "pager", id: "model-pager" }),
      batch: h("div", {
        class: "panel batch-bar hidden",
        id: "batch-bar",
        role: "region",
        "aria-label": "Selected models",
      }),
    };
    const recommended = h("div", { class: "section", id: "recommended" });
    const page = modelsPage(els);
    render(
      root,
      pageHead(page, els),
      filterPanel(page, els),
      els.batch,
      els.list,
      els.pager,
      recommended,
    );
    const unfollow = follow(page);
    await page.load();
    recommendedSection(recommended);
    loadDrawer().catch(() => {}); // ready before a first click; a failure shows on that click
    return () => {
      clearTimeout(page.timers.search);
      clearTimeout(page.timers.reload);
      unfollow();
      drawerModule?.closeDrawer(); // none is open if it never loaded
    };
  },
};

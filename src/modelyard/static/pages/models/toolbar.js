// The Models page's head (title, count, view switch, Sync) and its search and filters.
import { h } from "../../js/dom.js";
import { allKinds, allSources, sourceLabel } from "../../js/kinds.js";
import { sync } from "./actions.js";
import { SIZES } from "./requests.js";

const STATUSES = ["loaded", "starting", "available", "downloading", "failed"];
const SORTS = { name: "Name", size: "Size", modified: "Modified", status: "Status" };
const SEARCH_DELAY_MS = 200;

const option = (value, label, selected = false) => h("option", { value, selected }, label);

function filterSelects(page) {
  const select = (id, label, ...options) =>
    h(
      "select",
      { id, "aria-label": label, onchange: (ev) => page.query({ [field(id)]: ev.target.value }) },
      options,
    );
  return [
    select(
      "filter-status",
      "Status",
      option("", "Any status"),
      STATUSES.map((s) => option(s, s)),
    ),
    select(
      "filter-provider",
      "Provider",
      option("", "All providers"),
      allKinds().map((k) => option(k.kind, k.label)),
    ),
    select(
      "filter-source",
      "Source",
      option("", "Any source"),
      allSources().map((s) => option(s, sourceLabel(s))),
    ),
    select(
      "filter-size",
      "Size",
      Object.entries(SIZES).map(([value, [label]]) => option(value, label, value === "")),
    ),
  ];
}

const field = (id) => id.replace(/^filter-/, "");

function searchBox(page) {
  const input = h("input", {
    type: "search",
    id: "model-search",
    placeholder: "Search models…",
    "aria-label": "Search models",
    autocomplete: "off",
  });
  input.addEventListener("input", () => {
    clearTimeout(page.timers.search);
    page.timers.search = setTimeout(() => page.query({ q: input.value.trim() }), SEARCH_DELAY_MS);
  });
  return input;
}

/** The sort field and direction; `els.sort` and `els.order` are redrawn by the page. */
function sortBox(page, els) {
  els.sort = h(
    "select",
    {
      id: "sort-field",
      "aria-label": "Sort by",
      onchange: (ev) => page.query({ sort: ev.target.value }),
    },
    Object.entries(SORTS).map(([value, label]) => option(value, label, value === "name")),
  );
  els.order = h("button", {
    class: "btn",
    id: "sort-order",
    type: "button",
    title: "Sort direction",
    onclick: () => page.query({ order: page.state.order === "asc" ? "desc" : "asc" }),
  });
  return h("div", { class: "row sort-box" }, els.sort, els.order);
}

export function pageHead(page, els) {
  els.summary = h("p", { class: "page-sub", id: "models-summary" }, "Loading…");
  els.views = ["table", "cards"].map((view) =>
    h(
      "button",
      {
        class: "btn btn-small",
        type: "button",
        "data-view": view,
        onclick: () => page.setView(view),
      },
      view === "table" ? "Table" : "Cards",
    ),
  );
  const syncButton = h("button", { class: "btn", id: "sync-models", type: "button" }, "Sync");
  syncButton.addEventListener("click", () => sync(page, syncButton));
  return h(
    "div",
    { class: "page-head" },
    h("div", {}, h("h1", {}, "Models"), els.summary),
    h(
      "div",
      { class: "toolbar" },
      h("div", { class: "segmented", role: "group", "aria-label": "View" }, els.views),
      syncButton,
    ),
  );
}

export function filterPanel(page, els) {
  return h(
    "div",
    { class: "panel filters" },
    searchBox(page),
    filterSelects(page),
    sortBox(page, els),
  );
}

/** The head's parts that follow the state: the count, the sort direction, the view. */
export function drawHead(page, els) {
  const { total, order, view } = page.state;
  const s = page.state;
  const filtered = s.q || s.status || s.provider || s.source || s.size;
  els.summary.textContent = `${total} ${total === 1 ? "model" : "models"}${filtered ? " match" : ""}`;
  els.order.textContent = order === "asc" ? "↑ Asc" : "↓ Desc";
  els.order.setAttribute("aria-label", order === "asc" ? "Ascending" : "Descending");
  els.sort.value = s.sort;
  for (const b of els.views) b.setAttribute("aria-pressed", String(b.dataset.view === view));
}

// The models as a table: sortable headers, a select-all box, one row per model.
import { afterPaint, h } from "../../js/dom.js";
import { ago, bytes } from "../../js/format.js";
import { kindLabel } from "../../js/kinds.js";
import { actionCell, nameLink, scheduleNote, selectBox, statusBadge } from "./cells.js";
import { modelKey } from "./requests.js";

function sortHeader(page, field, label, cls = "") {
  const { sort, order } = page.state;
  const active = sort === field;
  const arrow = order === "asc" ? " ↑" : " ↓";
  return h(
    "th",
    { class: cls, "aria-sort": active ? (order === "asc" ? "ascending" : "descending") : null },
    h(
      "button",
      { class: "sort", type: "button", onclick: () => page.sortBy(field) },
      label,
      active ? arrow : "",
    ),
  );
}

function selectAllBox(page) {
  const { models, selected } = page.state;
  return h("input", {
    type: "checkbox",
    id: "select-all",
    "aria-label": "Select all on this page",
    checked: models.length > 0 && models.every((m) => selected.has(modelKey(m))),
    onchange: (ev) => page.select(models, ev.target.checked),
  });
}

function head(page) {
  return h(
    "thead",
    {},
    h(
      "tr",
      {},
      h("th", { class: "col-check" }, selectAllBox(page)),
      sortHeader(page, "name", "Name"),
      h("th", {}, "Provider"),
      sortHeader(page, "status", "Status"),
      sortHeader(page, "size", "Size", "num"),
      h("th", { class: "col-wide" }, "Params"),
      h("th", { class: "col-wide" }, "Quant"),
      h("th", { class: "col-wide" }, "Mode"),
      sortHeader(page, "modified", "Modified", "col-wide"),
      h("th", {}, "Actions"),
    ),
  );
}

function modelRow(page, m) {
  return h(
    "tr",
    { dataset: { key: modelKey(m), name: m.name, status: m.status } },
    h("td", { class: "col-check" }, selectBox(page, m)),
    h(
      "td",
      { class: "model-cell" },
      nameLink(page, m),
      m.meta?.error ? h("div", { class: "field-error small" }, m.meta.error) : null,
    ),
    h("td", {}, kindLabel(m.provider), h("div", { class: "muted small" }, m.instance_id)),
    h("td", {}, statusBadge(m), scheduleNote(page, m)),
    h("td", { class: "num" }, bytes(m.size)),
    h("td", { class: "col-wide" }, m.parameter_size || "—"),
    h("td", { class: "col-wide mono" }, m.quantization || "—"),
    h("td", { class: "col-wide" }, m.mode),
    h("td", { class: "col-wide", title: m.modified_at }, m.modified_at ? ago(m.modified_at) : "—"),
    h("td", {}, actionCell(page, m)),
  );
}

// The rows drawn in the table's first frame (more than a screen holds); the others follow it,
// so a page of 50 shows as soon as its first rows are laid out.
const FIRST_ROWS = 20;

export function modelTable(page) {
  const { models } = page.state;
  const body = h(
    "tbody",
    {},
    models.slice(0, FIRST_ROWS).map((m) => modelRow(page, m)),
  );
  if (models.length > FIRST_ROWS) {
    afterPaint().then(() => {
      // Unless another draw replaced this table meanwhile (it draws its own rows).
      if (body.isConnected && page.state.models === models) {
        body.append(...models.slice(FIRST_ROWS).map((m) => modelRow(page, m)));
      }
    });
  }
  return h("div", { class: "panel table-wrap model-table" }, h("table", {}, head(page), body));
}

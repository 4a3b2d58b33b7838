// The parts of one model that the table and the cards both show.
import { h } from "../../js/dom.js";
import { modelKey } from "./requests.js";
import { actionButtons } from "./rules.js";

export function statusBadge(m) {
  return h(
    "span",
    { class: "badge", dataset: { state: m.status }, "data-testid": "status" },
    m.status,
  );
}

export function selectBox(page, m) {
  const key = modelKey(m);
  return h("input", {
    type: "checkbox",
    "data-testid": "select",
    "aria-label": `Select ${m.name}`,
    checked: page.state.selected.has(key),
    onchange: (ev) => page.select([m], ev.target.checked),
  });
}

export function nameLink(page, m) {
  return h(
    "button",
    { class: "btn-link model-name", type: "button", onclick: () => page.openDetails(m) },
    m.name,
  );
}

export function actionCell(page, m) {
  const busy = page.state.busy.has(modelKey(m));
  return h(
    "div",
    { class: "row model-actions" },
    actionButtons(m, page.state.managed, { busy, onAction: (action) => page.act(m, action) }),
  );
}

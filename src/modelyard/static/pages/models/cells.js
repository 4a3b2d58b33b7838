// The parts of one model that the table and the cards both show.
import { h } from "../../js/dom.js";
import { duration } from "../../js/format.js";
import { modelKey, scheduleKey } from "./requests.js";
import { actionButtons } from "./rules.js";

const EVICTED = {
  ttl: "unloaded after its idle time",
  evicted: "evicted to make room",
  requested: "stopped",
  died: "its server died",
  load_failed: "its load failed",
  runtime: "unloaded by its runtime",
};

export function statusBadge(m) {
  return h(
    "span",
    { class: "badge", dataset: { state: m.status }, "data-testid": "status" },
    m.status,
  );
}

/** What the scheduler says of a model: loading progress, requests in flight and queued, the
 * time left before an idle unload, or why it last left memory. Nothing it has not seen. */
export function scheduleNote(page, m) {
  const view = page.state.schedule.get(scheduleKey(m));
  if (!view) return null;
  const parts = [];
  if (view.state === "loading") {
    parts.push(`loading ${Math.round((view.load_progress || 0) * 100)}%`);
  } else if (view.state === "unloading") parts.push("unloading");
  if (view.in_flight) parts.push(`${view.in_flight} in flight`);
  if (view.queued) parts.push(`${view.queued} queued`);
  if (view.state === "loaded" && view.ttl_left_s != null) {
    const since = (Date.now() - (view.seenAt || Date.now())) / 1000;
    parts.push(`idle unload in ${duration(view.ttl_left_s - since)}`);
  }
  if (view.pinned) parts.push("pinned");
  const eviction = view.last_eviction;
  if (view.state === "unloaded" && eviction) {
    const why = EVICTED[eviction.reason] || eviction.reason;
    parts.push(eviction.for_model ? `${why} for ${eviction.for_model}` : why);
  }
  if (!parts.length) return null;
  return h(
    "div",
    {
      class: "muted small schedule-note",
      "data-testid": "schedule",
      dataset: { state: view.state },
    },
    parts.join(" · "),
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

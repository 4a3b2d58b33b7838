// A card's History or Logs panel. The panel element lives across redraws of its card, so it
// keeps its content (and a reader's scroll position) until fresh content replaces it.

import { drawChart, readHistory } from "../../js/charts.js";
import { h, render } from "../../js/dom.js";
import { ms } from "../../js/format.js";
import { logViewer } from "../../js/logview.js";
import { showContainer } from "./container.js";
import { containerStats, instanceHistory, instanceLogSource } from "./requests.js";

/** The open panel of card `k` (null when none); `boxes`: key -> {what, el, seq}. */
export function panelBox(state, k) {
  const what = state.instances.has(k) ? state.open.get(k) : null;
  if (!what) {
    closePanel(state, k);
    return null;
  }
  let box = state.boxes.get(k);
  if (box?.what !== what) {
    closePanel(state, k);
    box = { what, seq: 0, el: h("div", { class: "card-extra", "data-extra": what }, "Loading…") };
    state.boxes.set(k, box);
  }
  return box.el;
}

/** Forget card `k`'s panel, closing a followed log's WebSocket. */
export function closePanel(state, k) {
  state.boxes.get(k)?.viewer?.close();
  state.boxes.delete(k);
}

const upSeries = (inst) => `provider.${inst.provider}/${inst.id}.up`;

function historyTable(checks) {
  if (!checks.length) return h("p", { class: "muted" }, "No checks yet.");
  return h(
    "table",
    { class: "history" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["When", "State", "Latency", "Reason"].map((t) => h("th", {}, t)),
      ),
    ),
    h(
      "tbody",
      {},
      checks.map((c) =>
        h(
          "tr",
          {},
          h("td", {}, new Date(c.checked_at).toLocaleTimeString()),
          h("td", {}, h("span", { class: "badge", dataset: { state: c.state } }, c.state)),
          h("td", {}, ms(c.latency_ms)),
          h("td", { class: "mono" }, c.reason_code || ""),
        ),
      ),
    ),
  );
}

/** Load (again) the content of card `k`'s open panel; an answer overtaken by a later request,
 * or for a panel closed or switched meanwhile, is dropped. */
export async function fillPanel(state, k) {
  const entry = state.boxes.get(k);
  const inst = state.instances.get(k);
  if (!entry || !inst) return;
  const seq = ++entry.seq;
  const current = () => state.boxes.get(k) === entry && entry.seq === seq;
  try {
    if (entry.what === "history") {
      const [{ checks }, timeline] = await Promise.all([
        instanceHistory(inst),
        readHistory([upSeries(inst)], "1h").catch(() => null),
      ]);
      if (!current()) return;
      const chart = h("div", { class: "chart timeline", "data-testid": "up-timeline" });
      render(entry.el, h("div", { class: "small muted" }, "Up (1) or down (0), the last hour"));
      entry.el.append(chart, historyTable(checks));
      if (timeline) {
        const line = [{ name: upSeries(inst), label: "up", color: "#059669" }];
        await drawChart(chart, line, timeline, { step: true, height: 90, range: [0, 1] });
      }
    } else if (entry.what === "container") {
      const use = await containerStats(inst);
      if (current()) showContainer(entry.el, inst, use);
    } else {
      if (!entry.viewer) {
        entry.viewer = logViewer(instanceLogSource(inst));
        render(entry.el, entry.viewer.el);
      }
      await entry.viewer.reload();
    }
  } catch (err) {
    if (current()) render(entry.el, h("p", { class: "field-error" }, err.message));
  }
}

// A card's History or Logs panel. The panel element lives across redraws of its card, so it
// keeps its content (and a reader's scroll position) until fresh content replaces it.
import { h, render } from "../../js/dom.js";
import { ms } from "../../js/format.js";
import { showContainer } from "./container.js";
import { containerStats, instanceHistory, instanceLogs } from "./requests.js";

/** The open panel of card `k` (null when none); `boxes`: key -> {what, el, seq}. */
export function panelBox(state, k) {
  const what = state.instances.has(k) ? state.open.get(k) : null;
  if (!what) {
    state.boxes.delete(k);
    return null;
  }
  let box = state.boxes.get(k);
  if (box?.what !== what) {
    box = { what, seq: 0, el: h("div", { class: "card-extra", "data-extra": what }, "Loading…") };
    state.boxes.set(k, box);
  }
  return box.el;
}

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

function showLog(box, { lines, path }) {
  const text = lines.join("\n") || "(empty log)";
  const pre = box.querySelector("pre.log");
  if (!pre) {
    render(
      box,
      h("div", { class: "small muted log-path" }, path),
      h("pre", { class: "log" }, text),
    );
    return;
  }
  // In place: a reader scrolled up in the log stays where they are.
  box.querySelector(".log-path").textContent = path;
  if (pre.textContent !== text) pre.textContent = text;
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
      const { checks } = await instanceHistory(inst);
      if (current()) render(entry.el, historyTable(checks));
    } else if (entry.what === "container") {
      const use = await containerStats(inst);
      if (current()) showContainer(entry.el, inst, use);
    } else {
      const log = await instanceLogs(inst);
      if (current()) showLog(entry.el, log);
    }
  } catch (err) {
    if (current()) render(entry.el, h("p", { class: "field-error" }, err.message));
  }
}

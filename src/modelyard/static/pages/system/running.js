// The models running now, with the memory each uses and their total.
import { h } from "../../js/dom.js";
import { bytes } from "../../js/format.js";
import { kindLabel } from "../../js/kinds.js";

function modelRow(m) {
  return h(
    "tr",
    { dataset: { name: m.name } },
    h("td", { class: "model-cell" }, m.name),
    h("td", {}, `${kindLabel(m.provider)} · ${m.instance_id}`),
    h("td", {}, h("span", { class: "badge", dataset: { state: m.status } }, m.status)),
    h("td", { class: "num", "data-testid": "model-memory" }, m.memory ? bytes(m.memory) : "—"),
    h("td", { class: "num col-wide" }, m.vram ? bytes(m.vram) : "—"),
    h("td", { class: "num mono col-wide" }, m.pid ?? "—"),
  );
}

export function runningModels(r) {
  if (!r.models.length) {
    return h(
      "div",
      { class: "panel empty", id: "running-models" },
      h("h2", {}, "No model is running"),
      h("p", {}, "Start one on the Models page; it will show here with the memory it uses."),
    );
  }
  const th = (label, cls) => h("th", { class: cls }, label);
  return h(
    "div",
    { class: "panel table-wrap system-table", id: "running-models" },
    h(
      "table",
      {},
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          th("Model"),
          th("Provider"),
          th("Status"),
          th("Memory", "num"),
          th("VRAM", "num col-wide"),
          th("PID", "num col-wide"),
        ),
      ),
      h("tbody", {}, r.models.map(modelRow)),
      h(
        "tfoot",
        {},
        h(
          "tr",
          {},
          h("td", { colspan: "3" }, h("strong", {}, "Total")),
          h("td", { class: "num" }, h("strong", {}, bytes(r.models_memory))),
          h("td", { colspan: "2", class: "col-wide" }),
        ),
      ),
    ),
  );
}

// The models as cards (the view phones start in).
import { h } from "../../js/dom.js";
import { bytes } from "../../js/format.js";
import { kindLabel } from "../../js/kinds.js";
import { actionCell, nameLink, scheduleNote, selectBox, statusBadge } from "./cells.js";
import { modelKey } from "./requests.js";

function modelCard(page, m) {
  const params = [m.parameter_size, m.quantization].filter(Boolean).join(" · ");
  return h(
    "article",
    {
      class: "panel card model-card",
      dataset: { key: modelKey(m), name: m.name, status: m.status },
    },
    h(
      "div",
      { class: "card-head" },
      selectBox(page, m),
      h(
        "div",
        { class: "grow" },
        h("div", { class: "card-title" }, nameLink(page, m)),
        h("div", { class: "card-sub" }, `${kindLabel(m.provider)} · ${m.instance_id}`),
      ),
      statusBadge(m),
    ),
    scheduleNote(page, m),
    h(
      "dl",
      { class: "kv" },
      h("dt", {}, "Size"),
      h("dd", {}, bytes(m.size)),
      h("dt", {}, "Params"),
      h("dd", {}, params || "—"),
      h("dt", {}, "Mode"),
      h("dd", {}, m.mode),
      m.loaded?.memory ? [h("dt", {}, "Memory"), h("dd", {}, bytes(m.loaded.memory))] : null,
    ),
    actionCell(page, m),
  );
}

export function modelCards(page) {
  return h(
    "div",
    { class: "grid model-cards" },
    page.state.models.map((m) => modelCard(page, m)),
  );
}

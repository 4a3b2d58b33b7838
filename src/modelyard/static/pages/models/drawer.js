// A model's details drawer: its state and actions, then what modelyard knows about it.
import { h, render } from "../../js/dom.js";
import { ggufMetadata, memoryEstimate, overview, recordedSource, running } from "./details.js";
import { modelDetails } from "./requests.js";
import { actionButtons } from "./rules.js";
import { usageSection } from "./usage.js";

export function closeDrawer() {
  document.querySelector(".drawer")?.remove();
}

function drawDetails(page, body, m, d, close) {
  const onAction = (action) => {
    close();
    page.act(m, action);
  };
  const usage = usageSection(m);
  render(
    body,
    h(
      "div",
      { class: "row drawer-actions" },
      h("span", { class: "badge", dataset: { state: d.status } }, d.status),
      h("span", { class: "spacer" }),
      actionButtons({ ...m, ...d }, page.state.managed, {
        recreate: false,
        emphasis: true,
        onAction,
      }),
    ),
    overview(d),
    d.status === "loaded" ? running(d) : null,
    usage.el,
    d.gguf ? ggufMetadata(d.gguf) : null,
    d.estimate ? memoryEstimate(d.estimate, d.fit) : null,
    d.source_request ? recordedSource(d.source_request) : null,
  );
  usage.load(); // after render: a chart takes its box's width
}

/** Open the details drawer of model `m` (Escape or × closes it). */
export async function openDrawer(page, m) {
  closeDrawer();
  const body = h("div", { class: "drawer-body" }, h("p", { class: "muted" }, "Loading…"));
  const onKey = (ev) => {
    if (ev.key === "Escape") close();
  };
  const close = () => {
    drawer.remove();
    document.removeEventListener("keydown", onKey);
  };
  const drawer = h(
    "aside",
    { class: "drawer", id: "model-drawer", role: "dialog", "aria-label": `Details of ${m.name}` },
    h(
      "div",
      { class: "drawer-head" },
      h("h2", {}, m.name),
      h(
        "button",
        { class: "btn btn-small", type: "button", "aria-label": "Close", onclick: close },
        "×",
      ),
    ),
    body,
  );
  document.body.append(drawer);
  document.addEventListener("keydown", onKey);
  try {
    drawDetails(page, body, m, await modelDetails(m), close);
  } catch (err) {
    render(
      body,
      h("p", { class: "field-error" }, err.detail || err.message),
      err.hint ? h("p", { class: "muted" }, err.hint) : null,
    );
  }
}

// The recommended models (Get models and the foot of Models): installed, or one click away.
import { h, render } from "../../js/dom.js";
import { bytes } from "../../js/format.js";
import { kindLabel } from "../../js/kinds.js";
import { toast, toastError } from "../../js/toast.js";
import { installRecommended, listRecommended } from "./requests.js";

async function install(item, button) {
  button.disabled = true;
  try {
    const task = await installRecommended(item.id);
    toast(`Downloading ${item.name}`, {
      kind: "success",
      hint: task?.id ? "Follow it on the Downloads page." : "",
    });
  } catch (err) {
    toastError(err);
    button.disabled = false;
  }
}

function installButton(item) {
  const button = h(
    "button",
    { class: "btn btn-small btn-primary", type: "button", "data-install": item.id },
    "Install",
  );
  button.addEventListener("click", () => install(item, button));
  return button;
}

function recommendedCard(item) {
  return h(
    "article",
    { class: "panel card rec-card", dataset: { id: item.id } },
    h(
      "div",
      { class: "card-head" },
      h(
        "div",
        { class: "grow" },
        h("div", { class: "card-title" }, item.name.split("/").pop()),
        h(
          "div",
          { class: "card-sub" },
          `${kindLabel(item.provider)} · ~${bytes(item.size)} · ${item.mode}`,
        ),
      ),
      item.installed
        ? h("span", { class: "badge", dataset: { state: "loaded" } }, "installed")
        : installButton(item),
    ),
    h("p", { class: "rec-desc" }, item.description),
    h(
      "div",
      { class: "row" },
      item.tags.map((t) => h("span", { class: "badge plain" }, t)),
    ),
  );
}

/** Fill `box` with the recommended models, the panel open when `open`. */
export async function recommendedSection(box, { open = false } = {}) {
  try {
    const { models } = await listRecommended();
    const installed = models.filter((m) => m.installed).length;
    render(
      box,
      h(
        "details",
        { class: "panel rec-panel", open },
        h(
          "summary",
          {},
          h("strong", {}, "Recommended models"),
          h("span", { class: "muted" }, ` · ${installed} of ${models.length} installed`),
        ),
        h("div", { class: "grid rec-grid" }, models.map(recommendedCard)),
      ),
    );
  } catch (err) {
    toastError(err);
  }
}

// The bar of selected models and the batch actions it runs.
import { confirmDialog, h, render } from "../../js/dom.js";
import { toast, toastError } from "../../js/toast.js";
import { modelKey, runBatch } from "./requests.js";

const capitalized = (word) => word[0].toUpperCase() + word.slice(1);

export function drawBatchBar(page, bar) {
  const n = page.state.selected.size;
  bar.classList.toggle("hidden", n === 0);
  if (!n) return;
  render(
    bar,
    h("strong", {}, `${n} selected`),
    h("span", { class: "muted small", id: "batch-progress" }),
    h("span", { class: "spacer" }),
    ["start", "stop", "delete"].map((action) =>
      h(
        "button",
        {
          class: `btn btn-small${action === "delete" ? " btn-danger" : ""}`,
          type: "button",
          "data-batch": action,
          onclick: () => batch(page, action),
        },
        capitalized(action),
      ),
    ),
    h("button", { class: "btn btn-small", type: "button", onclick: () => page.select() }, "Clear"),
  );
}

function confirmDelete(items) {
  const names = items
    .slice(0, 5)
    .map((m) => m.name)
    .join(", ");
  return confirmDialog({
    title: `Delete ${items.length} ${items.length === 1 ? "model" : "models"}?`,
    body:
      `${names}${items.length > 5 ? ", …" : ""} will be removed from disk. ` +
      "Running GGUF models must be stopped first.",
    confirm: "Delete",
    danger: true,
  });
}

async function batch(page, action) {
  const { state } = page;
  const items = [...state.selected.values()];
  if (action === "delete" && !(await confirmDelete(items))) return;
  for (const m of items) state.busy.add(modelKey(m));
  page.draw();
  try {
    const res = await runBatch(action, items);
    const failed = res.results.filter((r) => !r.ok);
    toast(`${action}: ${res.ok} done${failed.length ? `, ${failed.length} failed` : ""}`, {
      kind: failed.length ? "error" : "success",
      hint: failed.map((r) => `${r.name}: ${r.error}`).join("; "),
    });
    state.selected.clear();
  } catch (err) {
    toastError(err);
  } finally {
    for (const m of items) state.busy.delete(modelKey(m));
    await page.load();
  }
}

/** Live progress of a running batch (batch.progress events). */
export function showBatchProgress(data) {
  const el = document.getElementById("batch-progress");
  if (el) el.textContent = `${data.action}: ${data.done}/${data.total}`;
}

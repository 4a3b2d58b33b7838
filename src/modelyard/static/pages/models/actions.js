// One model's actions (start, stop, delete, recreate) and Sync, with the confirmations they need.
import { confirmDialog } from "../../js/dom.js";
import { toast, toastError } from "../../js/toast.js";
import { changeModel, deleteModel, modelKey, syncCatalog } from "./requests.js";

const DESTRUCTIVE = {
  delete: ["Delete", "removed from disk"],
  recreate: ["Recreate", "deleted and downloaded again from where it came from"],
};

function confirmDestructive(m, action) {
  const [verb, what] = DESTRUCTIVE[action];
  return confirmDialog({
    title: `${verb} ${m.name}?`,
    body: `${m.name} will be ${what}.`,
    confirm: verb,
    danger: true,
  });
}

async function perform(m, action, force) {
  if (action === "delete") {
    await deleteModel(m);
    toast(`Deleted ${m.name}`, { kind: "success" });
  } else {
    const res = await changeModel(m, action, force);
    toast(`${m.name}: ${res.status}`, { kind: "success" });
  }
}

/** Run `action` on model `m` (confirming destructive ones; offering to start a model that
 * may not fit in memory anyway), then read the page again. */
export async function modelAction(page, m, action, force = false) {
  if (DESTRUCTIVE[action] && !force && !(await confirmDestructive(m, action))) return;
  const key = modelKey(m);
  page.state.busy.add(key);
  page.draw();
  try {
    await perform(m, action, force);
  } catch (err) {
    if (err.code !== "insufficient_memory" || force) {
      toastError(err);
    } else {
      page.state.busy.delete(key);
      const again = await confirmDialog({
        title: "It may not fit in memory",
        body: `${err.detail}. ${err.hint}`,
        confirm: "Start anyway",
        danger: true,
      });
      if (again) return modelAction(page, m, action, true);
    }
  } finally {
    page.state.busy.delete(key);
    await page.load();
  }
}

export async function sync(page, button) {
  button.disabled = true;
  try {
    const r = await syncCatalog();
    const errors = r.errors || [];
    toast(
      `Synced: ${r.added} added, ${r.updated} updated, ${r.removed} removed` +
        (errors.length ? ` · ${errors.length} unreachable` : ""),
      {
        kind: errors.length ? "error" : "success",
        hint: errors.map((e) => `${e.provider}/${e.instance_id}: ${e.code}`).join("; "),
      },
    );
    await page.load();
  } catch (err) {
    toastError(err);
  } finally {
    button.disabled = false;
  }
}

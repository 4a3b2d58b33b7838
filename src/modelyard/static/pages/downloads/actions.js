// A download's actions, with the confirmations the destructive ones need, and Clear finished.
import { confirmDialog } from "../../js/dom.js";
import { toast, toastError } from "../../js/toast.js";
import { ACTIVE, nameOf } from "./card.js";
import { changeDownload, deleteDownload } from "./requests.js";

function confirmation(t, action) {
  if (action === "delete") {
    return {
      title: `Delete the download of ${nameOf(t)}?`,
      body: ACTIVE.has(t.state)
        ? "It is stopped and its partial file removed."
        : "The task and its log are forgotten. A downloaded model stays; delete models on the Models page.",
      confirm: "Delete",
      danger: true,
    };
  }
  if (action === "cancel") {
    return {
      title: `Cancel ${nameOf(t)}?`,
      body: "The partial file is removed; a retry starts from the beginning.",
      confirm: "Cancel download",
      danger: true,
    };
  }
  return null;
}

/** Run `action` on task `t` after any confirmation; false when the user declined. */
export async function downloadAction(page, t, action) {
  const question = confirmation(t, action);
  if (question && !(await confirmDialog(question))) return;
  const { state } = page;
  state.busy.add(t.id);
  page.redraw(t);
  try {
    if (action === "delete") {
      await deleteDownload(t.id);
      state.tasks.delete(t.id);
      page.closeLog(t.id);
      toast(`Deleted the download of ${nameOf(t)}`);
    } else {
      const fresh = await changeDownload(t.id, action);
      state.tasks.set(fresh.id, fresh);
    }
  } catch (err) {
    toastError(err);
  } finally {
    state.busy.delete(t.id);
    if (state.tasks.has(t.id)) page.redraw(state.tasks.get(t.id));
    else page.draw();
  }
}

export async function clearFinished(page) {
  const finished = [...page.state.tasks.values()].filter((t) => !ACTIVE.has(t.state));
  if (!finished.length) {
    toast("Nothing to clear");
    return;
  }
  const ok = await confirmDialog({
    title: `Clear ${finished.length} finished download${finished.length > 1 ? "s" : ""}?`,
    body: "Their tasks and logs are forgotten; downloaded models stay.",
    confirm: "Clear",
  });
  if (!ok) return;
  for (const t of finished) {
    try {
      await deleteDownload(t.id);
      page.state.tasks.delete(t.id);
    } catch (err) {
      toastError(err);
    }
  }
  page.draw();
}

// Starting a download from a form: the button waits, a refusal is said under the form.
import { toast } from "../../js/toast.js";
import { startDownload } from "./requests.js";

/** POST the download `body`; the task, or null after writing why not into `error`. */
export async function submitDownload(body, button, error) {
  error.textContent = "";
  button.disabled = true;
  try {
    const task = await startDownload(body);
    const name = task.model_name || task.filename || task.url;
    toast(`${task.state === "completed" ? "Already downloaded" : "Downloading"} ${name}`, {
      kind: "success",
      hint: "Follow it on the Downloads page.",
    });
    return task;
  } catch (err) {
    error.textContent = `${err.detail}${err.hint ? ` — ${err.hint}` : ""}`;
    return null;
  } finally {
    button.disabled = false;
  }
}

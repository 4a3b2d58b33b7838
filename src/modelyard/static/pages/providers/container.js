// A container instance's panel: its resource use, and recreating it with another tag of its
// configured image (what the image runs comes from the config file only).
import { h, render } from "../../js/dom.js";
import { bytes } from "../../js/format.js";
import { toast, toastError } from "../../js/toast.js";
import { recreateContainer } from "./requests.js";

function recreateForm(inst) {
  const tag = h("input", {
    name: "tag",
    placeholder: "tag (empty: the configured one)",
    "aria-label": "Image tag",
    maxlength: "128",
  });
  const button = h("button", { class: "btn btn-small", type: "submit" }, "Recreate");
  const submit = async (event) => {
    event.preventDefault();
    button.disabled = true;
    try {
      const s = await recreateContainer(inst, tag.value.trim());
      toast(`${inst.provider}/${inst.id}: recreated from ${s.container?.image ?? "?"}`, {
        kind: s.state === "ERROR" ? "error" : "success",
        hint: s.state === "ERROR" ? s.hint : "",
      });
    } catch (err) {
      toastError(err);
    } finally {
      button.disabled = false;
    }
  };
  return h(
    "form",
    { class: "toolbar", "data-testid": "recreate", onsubmit: submit },
    h("span", { class: "small muted" }, `${inst.image.split(":")[0]}:`),
    tag,
    button,
  );
}

function useList(use) {
  const pair = (term, value) => [h("dt", {}, term), h("dd", {}, value)];
  const running = use.cpu_percent !== null;
  const limit = use.memory_limit_bytes ? ` of ${bytes(use.memory_limit_bytes)}` : "";
  return h(
    "dl",
    { class: "kv", "data-testid": "container-use" },
    pair("Container", `${use.name} · ${use.status}`),
    pair("Image", use.image),
    pair("CPU", running ? `${use.cpu_percent.toFixed(1)} %` : "—"),
    pair("Memory", running ? `${bytes(use.memory_bytes)}${limit}` : "—"),
    pair("Processes", running ? String(use.pids) : "—"),
  );
}

/** Show `use` (a ContainerUse) of `inst` in `box`; the recreate form, once there, stays (with
 * what is typed in it) while the figures are refreshed. */
export function showContainer(box, inst, use) {
  const shown = box.querySelector("[data-testid=container-use]");
  if (shown) shown.replaceWith(useList(use));
  else render(box, useList(use), recreateForm(inst));
}

// The form that adds an instance, or edits one added through the API. Which fields it offers
// follows the chosen kind's capabilities: "Managed" where modelyard can run the server, a
// GGUF model where that server runs one model, the API key marked required where it is; a
// managed instance's restart policy and memory limit. No command or key variable: only the
// config file sets those (the API refuses them).
import { h, render } from "../../js/dom.js";
import { allKinds, can, loadKinds } from "../../js/kinds.js";
import { toast } from "../../js/toast.js";
import { addInstance, editInstance } from "./requests.js";

const MIB = 2 ** 20;
const RESTART_POLICIES = [
  ["", "Default (the config file's restart)"],
  ["no", "No"],
  ["on-failure", "On failure"],
  ["always", "Always"],
];

function fields(inst) {
  return {
    provider: h(
      "select",
      { name: "provider", disabled: Boolean(inst) },
      allKinds().map((k) =>
        h("option", { value: k.kind, selected: inst?.provider === k.kind }, k.label),
      ),
    ),
    id: h("input", {
      name: "id",
      required: true,
      placeholder: "my-server",
      disabled: Boolean(inst),
      value: inst?.id ?? "",
      pattern: "[A-Za-z0-9][A-Za-z0-9._\\-]{0,63}",
    }),
    baseUrl: h("input", {
      name: "base_url",
      required: true,
      placeholder: "http://127.0.0.1:8081",
      value: inst?.base_url ?? "",
    }),
    apiKey: h("input", { name: "api_key", type: "password", autocomplete: "off" }),
    model: h("input", {
      name: "model",
      placeholder: "/path/to/model.gguf",
      value: inst?.model ?? "",
    }),
    mode: h(
      "select",
      { name: "mode" },
      ["llm", "embed", "rerank"].map((m) =>
        h("option", { value: m, selected: inst?.mode === m }, m),
      ),
    ),
    managed: h("input", { type: "checkbox", name: "managed", checked: Boolean(inst?.managed) }),
    restart: h(
      "select",
      { name: "restart" },
      RESTART_POLICIES.map(([value, label]) =>
        h("option", { value, selected: (inst?.restart ?? "") === value }, label),
      ),
    ),
    memoryLimit: h("input", {
      name: "memory_limit_mib",
      type: "number",
      min: "64",
      step: "1",
      placeholder: "none",
      value: inst?.memory_limit_bytes ? String(Math.round(inst.memory_limit_bytes / MIB)) : "",
    }),
  };
}

/** Show the fields the chosen kind can use. */
function fitToKind(f, labels, inst) {
  const kind = f.provider.value;
  const manageable = can(kind, "manageable");
  labels.managed.classList.toggle("hidden", !manageable);
  labels.model.classList.toggle("hidden", !manageable || can(kind, "loads_models"));
  if (!manageable) f.managed.checked = false;
  for (const label of [labels.restart, labels.memoryLimit]) {
    label.classList.toggle("hidden", !f.managed.checked);
  }
  const keyNeeded = can(kind, "needs_api_key") ? "required" : "optional";
  f.apiKey.placeholder = inst?.has_api_key ? "unchanged (type to replace)" : keyNeeded;
}

function requestBody(f, editing) {
  const body = { base_url: f.baseUrl.value.trim(), managed: f.managed.checked, mode: f.mode.value };
  if (!editing) body.id = f.id.value.trim();
  if (f.model.value.trim()) body.model = f.model.value.trim();
  if (f.apiKey.value) body.api_key = f.apiKey.value;
  // Only a managed process is restarted or limited; null puts an edited one back to the default.
  const mib = f.memoryLimit.value.trim();
  if (f.managed.checked) {
    body.restart = f.restart.value || null;
    body.memory_limit_bytes = mib ? Math.round(Number(mib) * MIB) : 0;
  } else if (editing) {
    body.restart = null;
    body.memory_limit_bytes = 0;
  }
  return body;
}

/** Fill `box` with the add form, or with `inst` the edit form; `done()` after a save. */
export async function showInstanceForm(box, inst, done) {
  await loadKinds(); // its provider list: asked for as the page loaded, maybe not here yet
  const f = fields(inst);
  const labels = {
    managed: h("label", { class: "switch" }, f.managed, "Managed (modelyard starts and stops it)"),
    model: h("label", {}, "GGUF model (a server modelyard runs)", f.model),
    restart: h("label", {}, "Restart", f.restart),
    memoryLimit: h("label", {}, "Memory limit (MiB)", f.memoryLimit),
  };
  const error = h("div", { class: "field-error wide" });
  const close = () => box.classList.add("hidden");
  const form = h(
    "form",
    { class: "form" },
    h("label", {}, "Provider", f.provider),
    h("label", {}, "Id", f.id),
    h("label", {}, "Base URL", f.baseUrl),
    h("label", {}, "API key", f.apiKey),
    labels.model,
    h("label", {}, "Mode", f.mode),
    labels.managed,
    labels.restart,
    labels.memoryLimit,
    h(
      "p",
      { class: "muted wide", "data-role": "config-only" },
      "A managed server runs the provider's own runtime. A command line or a key read from an " +
        "environment variable can be set only in the config file (docs/CONFIGURATION.md). " +
        "A new base URL drops the stored API key unless you type one here.",
    ),
    error,
    h(
      "div",
      { class: "row wide" },
      h("button", { class: "btn btn-primary", type: "submit" }, inst ? "Save" : "Add"),
      h("button", { class: "btn", type: "button", onclick: close }, "Cancel"),
    ),
  );
  f.provider.addEventListener("change", () => fitToKind(f, labels, inst));
  f.managed.addEventListener("change", () => fitToKind(f, labels, inst));
  fitToKind(f, labels, inst);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    const body = requestBody(f, Boolean(inst));
    try {
      if (inst) await editInstance(inst, body);
      else await addInstance(f.provider.value, body);
      toast(`${inst ? "Saved" : "Added"} ${f.provider.value}/${inst?.id ?? body.id}`, {
        kind: "success",
      });
      close();
      await done();
    } catch (err) {
      error.textContent = `${err.detail}${err.hint ? ` — ${err.hint}` : ""}`;
    }
  });
  render(box, h("h2", {}, inst ? `Edit ${inst.provider}/${inst.id}` : "Add an instance"), form);
  box.classList.remove("hidden");
  (inst ? f.baseUrl : f.id).focus();
  box.scrollIntoView({ block: "nearest" });
}
